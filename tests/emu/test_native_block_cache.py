"""The block hook's one-entry cache (the last block looked up) in front of the
count table: it must give the table's answers, never a stale one."""
from __future__ import annotations

import ctypes

from mmuemu._types import Arch
from mmuemu.emu.native import NativeFastPath
from mmuemu.hw.physmem import PhysMem

BLOCK_HOOK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                              ctypes.c_void_p)


def _native(counts: dict[tuple[int, int], int], asked: list[tuple[int, int]]) -> NativeFastPath:
    native = NativeFastPath(PhysMem(4096), Arch.X86_64)

    def count(address: int, size: int) -> int:
        asked.append((address, size))
        return counts[(address, size)]

    native.set_count_block(count)
    return native


def test_repeated_and_alternating_blocks_count_as_the_table_does() -> None:
    counts = {(0x401000, 12): 3, (0x401010, 7): 2, (0x401000, 20): 5}
    asked: list[tuple[int, int]] = []
    native = _native(counts, asked)
    hook = BLOCK_HOOK(native.block_hook_addr)
    seq = [(0x401000, 12)] * 5 + [(0x401010, 7), (0x401000, 12)] * 4 + [(0x401000, 20)] * 3
    for address, size in seq:
        hook(None, address, size, native.state_addr)
    assert native.insns == sum(counts[b] for b in seq)
    assert native.blocks == len(seq)
    assert sorted(asked) == sorted(counts)  # each block counted once
    native.close()


def test_the_cache_starts_empty_and_is_cleared_with_the_table() -> None:
    # a block at address 0 of size 0 must not match the initial (empty) cache
    counts = {(0, 0): 4, (0x2000, 8): 1}
    asked: list[tuple[int, int]] = []
    native = _native(counts, asked)
    hook = BLOCK_HOOK(native.block_hook_addr)
    hook(None, 0, 0, native.state_addr)
    assert (native.insns, asked) == (4, [(0, 0)])
    hook(None, 0x2000, 8, native.state_addr)
    hook(None, 0x2000, 8, native.state_addr)  # now the cached block
    counts[(0x2000, 8)] = 6  # the guest's code changed ...
    native.clear_block_table()  # ... and the machine said so
    hook(None, 0x2000, 8, native.state_addr)
    assert native.insns == 4 + 1 + 1 + 6
    assert asked == [(0, 0), (0x2000, 8), (0x2000, 8)]
    native.close()
