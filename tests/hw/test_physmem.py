"""Emulated physical memory: whole-frame clear and copy touch exactly one frame."""
from __future__ import annotations

import pytest

from mmuemu.hw.physmem import PhysMem

PAGE = 4096


@pytest.fixture
def mem() -> PhysMem:
    m = PhysMem(8 * PAGE)
    for pfn in range(8):  # each frame's bytes: its number, then a ramp
        m.write(pfn * PAGE, bytes([pfn]) + bytes(i % 251 for i in range(1, PAGE)))
    return m


def test_clear_page_zeroes_its_frame_only(mem: PhysMem) -> None:
    before = [mem.read(p * PAGE, PAGE) for p in range(8)]
    mem.zero_frame(3)
    assert mem.read(3 * PAGE, PAGE) == bytes(PAGE)
    for p in (0, 1, 2, 4, 5, 6, 7):
        assert mem.read(p * PAGE, PAGE) == before[p]


def test_copy_page_copies_one_frame_over_another(mem: PhysMem) -> None:
    before = [mem.read(p * PAGE, PAGE) for p in range(8)]
    mem.copy_frame(6, 2)
    assert mem.read(6 * PAGE, PAGE) == before[2]
    for p in (0, 1, 2, 3, 4, 5, 7):
        assert mem.read(p * PAGE, PAGE) == before[p]
    # what the page-table view and the guest's view (buf) see is the same memory
    assert int(mem.buf[6 * PAGE]) == 2 and mem.read_u64(6 * PAGE) == mem.read_u64(2 * PAGE)
