"""Swap-entry PTEs in each architecture's own encoding (the swap issue's groundwork).

Expected bit positions come from the kernel headers: x86-64 pgtable_64.h
(type in bits 63:59, offset inverted in bits 58:9 — SWP_OFFSET_FIRST_BIT =
_PAGE_BIT_PROTNONE + 1) and arm64 pgtable.h
(type in bits 7:3, offset from bit 8).
"""
from __future__ import annotations

import random

import pytest

from mmuemu.hw.arm64.pte import Arm64Pte
from mmuemu.hw.pte import PteFormat
from mmuemu.hw.x86_64.pte import X86_64Pte


@pytest.mark.parametrize("fmt", [X86_64Pte(), Arm64Pte()], ids=["x86_64", "aarch64"])
def test_round_trip_and_never_present(fmt: PteFormat) -> None:
    rng = random.Random(7)
    for _ in range(2000):
        t, off = rng.randrange(32), rng.randrange(1 << 40)
        pte = fmt.swp_entry_to_pte(t, off)
        assert fmt.pte_to_swp_entry(pte) == (t, off)
        assert not fmt.pte_present(pte) and not fmt.pte_none(pte) and fmt.is_swap_pte(pte)
    with pytest.raises(ValueError):
        fmt.swp_entry_to_pte(32, 0)


def test_x86_64_layout() -> None:
    pte = X86_64Pte().swp_entry_to_pte(3, 0x1234)
    assert pte >> 59 == 3                       # type in the top five bits
    assert pte & 0x1FF == 0                      # P ... PROTNONE (bits 0-8) clear
    # the offset sits inverted from bit 9: its low bits read as ~0x1234
    assert (pte >> 9) & 0xFFFF == (~0x1234) & 0xFFFF


def test_arm64_layout() -> None:
    pte = Arm64Pte().swp_entry_to_pte(3, 0x1234)
    assert pte == (3 << 3) | (0x1234 << 8)
    assert not pte & 1 and not pte & (1 << 58)  # not valid, not PROT_NONE
