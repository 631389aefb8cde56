"""The native fast path (mmuemu/emu/_native/fastpath.c through mmuemu/emu/native.py).

* Differential: the C walker against the pure-Python reference
  (mmuemu/hw/walker.py) on random page tables, access by access: same
  result and the same bytes in physical memory afterwards.
* The block-count table and the fill hook, called directly through ctypes.
* End to end under Unicorn on both architectures: the native TLB-fill hook
  resolves every mapped page, a Python fill hook registered after it sees
  only the real fault, and the native block hook counts instructions exactly.
"""
from __future__ import annotations

import ctypes
import gc
import random
import sys
from dataclasses import dataclass
from typing import Any

import capstone  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import pytest
import unicorn
from unicorn import arm64_const, x86_const
from unicorn.unicorn_py3.unicorn import Uc, UcError

from mmuemu._types import Access, Arch
from mmuemu.emu.native import (
    COUNT_ERROR, STATE_VERSION, MmuemuState, NativeFastPath, emu_starter, hook_add_native,
    hook_del_native, load_library, uc_tlb_flusher,
)
from mmuemu.hw import walker
from mmuemu.hw.arm64 import pte as a64
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import ADDR_MASK, PteFormat, VmProt
from mmuemu.hw.x86_64 import pte as x86

FORMATS: dict[Arch, PteFormat] = {Arch.X86_64: x86.X86_64Pte(), Arch.ARM64: a64.Arm64Pte()}
ARCHES = [pytest.param(Arch.X86_64, id="x86_64"), pytest.param(Arch.ARM64, id="arm64")]

BLOCK_HOOK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                              ctypes.c_void_p)
STOP_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class UcTlbEntry(ctypes.Structure):
    _fields_ = [("paddr", ctypes.c_uint64), ("perms", ctypes.c_uint32)]


TLB_FILL = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                            ctypes.POINTER(UcTlbEntry), ctypes.c_void_p)


def test_state_layout_matches_the_library() -> None:
    lib = load_library()  # raises ImportError on any size/offset/mask mismatch
    size = ctypes.c_uint32()
    assert lib.mmuemu_state_layout(ctypes.byref(size)) == STATE_VERSION
    assert size.value == ctypes.sizeof(MmuemuState)
    assert lib.mmuemu_addr_mask() == ADDR_MASK


# --- differential: C walker == Python walker ---------------------------------------------

LEVEL_INDICES = (0, 1, 2, 255, 511)  # x86 level-0 index >= 256 is above TASK_SIZE


def _leaf_prots(arch: Arch) -> list[int]:
    if arch is Arch.X86_64:
        return [x86.PAGE_NONE, x86.PAGE_SHARED, x86.PAGE_SHARED_EXEC, x86.PAGE_COPY,
                x86.PAGE_COPY_EXEC, x86.PAGE_READONLY, x86.PAGE_READONLY_EXEC]
    return [a64.PAGE_NONE, a64.PAGE_SHARED, a64.PAGE_SHARED_EXEC, a64.PAGE_READONLY,
            a64.PAGE_READONLY_EXEC, a64.PAGE_EXECONLY]


def _random_entry(rng: random.Random, arch: Arch, fmt: PteFormat, nframes: int) -> int:
    """An entry that may be read at any level: a table pointer (sometimes out of
    RAM, sometimes with x86 U/RW/A cleared or NX set), a leaf with random A/D
    state, empty, or garbage."""
    kind = rng.random()
    if kind < 0.45:
        entry = fmt.mk_table(rng.randrange(nframes + 8) << 12)  # a few beyond RAM
        if arch is Arch.X86_64:
            for bit, p in ((x86._PAGE_USER, 0.1), (x86._PAGE_RW, 0.15),
                           (x86._PAGE_ACCESSED, 0.3)):
                if rng.random() < p:
                    entry &= ~bit
            if rng.random() < 0.15:
                entry |= x86._PAGE_NX
        return entry
    if kind < 0.85:
        entry = fmt.pfn_pte(rng.randrange(1 << 20), rng.choice(_leaf_prots(arch)))
        flips: tuple[int, ...]
        if arch is Arch.X86_64:
            flips = (x86._PAGE_ACCESSED, x86._PAGE_DIRTY, x86._PAGE_USER)
        else:
            flips = (a64.PTE_AF, a64.PTE_RDONLY, a64.PTE_DBM, a64.PTE_USER)
        for bit in flips:
            if rng.random() < 0.3:
                entry ^= bit
        return entry
    if kind < 0.93:
        return 0
    return rng.getrandbits(64)


def _random_va(rng: random.Random, fmt: PteFormat) -> int:
    r = rng.random()
    if r < 0.03:
        return fmt.task_size + rng.randrange(1 << 20)
    if r < 0.05:
        return rng.getrandbits(64)
    va = 0
    for level in range(4):
        va |= rng.choice(LEVEL_INDICES) << (39 - 9 * level)
    return va | rng.randrange(4096)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("hw_af", [True, False], ids=["hw_af", "sw_af"])
def test_native_walk_matches_reference(arch: Arch, hw_af: bool) -> None:
    fmt = FORMATS[arch]
    outcomes: dict[tuple[bool, int], int] = {}
    for seed in range(40):
        rng = random.Random(seed * 7919 + (arch is Arch.ARM64) * 2 + hw_af)
        nframes = 24
        ref = PhysMem(nframes * 4096)
        for frame in range(nframes):
            for idx in LEVEL_INDICES:
                if rng.random() < 0.8:
                    ref.write_u64(frame * 4096 + 8 * idx,
                                  _random_entry(rng, arch, fmt, nframes))
        twin = PhysMem(ref.size)
        twin.buf[:] = ref.buf
        root = rng.randrange(nframes) << 12 | rng.choice((0, 0x18))
        native = NativeFastPath(twin, arch, hw_af)
        native.set_root(root)
        for _ in range(300):
            va = _random_va(rng, fmt)
            access = rng.choice(list(Access))
            expect = walker.walk(ref, fmt, root, va, access, hw_af=hw_af)
            got = native.walk(va, access)
            assert got == expect, f"seed {seed} va {va:#x} {access.name}"
            assert np.array_equal(ref.buf, twin.buf), f"seed {seed} va {va:#x} {access.name}"
            key = (expect.ok, expect.level)
            outcomes[key] = outcomes.get(key, 0) + 1
        native.close()
    # the random tables reach every kind of outcome
    for key in [(True, 3), (False, 0), (False, 1), (False, 2), (False, 3)]:
        assert outcomes.get(key, 0) >= 20, outcomes


def test_native_walk_counters() -> None:
    fmt = FORMATS[Arch.X86_64]
    phys = PhysMem(1 << 20)
    gt = _GuestTables(phys, fmt)
    gt.map(0x1000, 0x80, x86.PAGE_SHARED & ~x86._PAGE_ACCESSED)
    native = NativeFastPath(phys, Arch.X86_64)
    native.set_root(gt.root)
    res = native.walk(0x1234, Access.WRITE)
    assert res.ok and res.pa == 0x80000 and res.mem_refs == 4
    assert native.walks == 1
    assert native.walk_refs == (1, 1, 1, 1)
    assert native.ad_updates == 1  # the leaf got A and D in one write-back
    res = native.walk(0x5000, Access.READ, count=False)  # level-3 entry empty
    assert not res.ok and res.level == 3
    assert native.walks == 1 and native.walk_mem_refs == 4


def test_tlb_fill_hook_called_directly() -> None:
    fmt = FORMATS[Arch.ARM64]
    phys = PhysMem(1 << 20)
    gt = _GuestTables(phys, fmt)
    gt.map(0x7000, 0x90, a64.PAGE_SHARED)
    native = NativeFastPath(phys, Arch.ARM64)
    native.set_root(gt.root)
    fill = TLB_FILL(native.tlb_fill_addr)
    entry = UcTlbEntry()
    assert fill(None, 0x7008, Access.READ, ctypes.byref(entry), native.state_addr)
    assert (entry.paddr, entry.perms) == (0x90000, walker.PROT_READ)
    assert fill(None, 0x7008, Access.WRITE, ctypes.byref(entry), native.state_addr)
    assert entry.perms == walker.PROT_READ | walker.PROT_WRITE
    assert not fill(None, 0x7008, Access.FETCH, ctypes.byref(entry), native.state_addr)  # UXN
    assert not fill(None, 0x9000, Access.READ, ctypes.byref(entry), native.state_addr)
    assert (native.fills, native.fills_resolved, native.fills_faulted) == (4, 2, 2)
    assert native.fills_by_access == {Access.READ: 2, Access.WRITE: 1, Access.FETCH: 1}


# --- the block-count table -------------------------------------------------------------

def test_block_table_counts_each_block_once_and_grows() -> None:
    native = NativeFastPath(PhysMem(4096), Arch.X86_64)
    hook = BLOCK_HOOK(native.block_hook_addr)
    asked: list[tuple[int, int]] = []

    def count(address: int, size: int) -> int:
        asked.append((address, size))
        return (address >> 4) % 7 + size % 5

    native.set_count_block(count)
    blocks = [(0x400000 + 16 * i, 4 + i % 9) for i in range(5000)]
    blocks.append((0x400000, 100))  # same address, another size: another block
    expect = sum((a >> 4) % 7 + s % 5 for a, s in blocks)
    for _ in range(3):
        for address, size in blocks:
            hook(None, address, size, native.state_addr)
    assert sorted(asked) == sorted(blocks)  # each counted once
    assert native.insns == 3 * expect
    assert native.blocks == 3 * len(blocks)
    assert native.block_misses == len(blocks)
    assert native.blocks_cached == len(blocks)
    cap = native._state.tab_cap
    assert cap & (cap - 1) == 0 and len(blocks) * 10 <= cap * 7  # grown, load <= 70%

    native.clear_block_table()
    assert native.blocks_cached == 0
    hook(None, blocks[7][0], blocks[7][1], native.state_addr)
    assert len(asked) == len(blocks) + 1  # forgotten: counted again
    native.close()
    native.close()  # idempotent


def test_block_hook_without_count_callback_counts_blocks_only() -> None:
    native = NativeFastPath(PhysMem(4096), Arch.ARM64)
    hook = BLOCK_HOOK(native.block_hook_addr)
    hook(None, 0x1000, 8, native.state_addr)
    assert (native.insns, native.blocks) == (0, 1)


def test_insn_limit_stops_before_the_block_that_would_pass_it() -> None:
    native = NativeFastPath(PhysMem(4096), Arch.X86_64)
    hook = BLOCK_HOOK(native.block_hook_addr)
    stops: list[int | None] = []

    def record_stop(uc: int | None) -> int:
        stops.append(uc)
        return 0

    stop = STOP_FN(record_stop)
    native.set_stop_fn(ctypes.cast(stop, ctypes.c_void_p).value)
    native.set_count_block(lambda address, size: 3)
    native.set_insn_limit(10)
    for _ in range(3):
        hook(0x1234, 0x1000, 9, native.state_addr)
    assert (native.insns, native.blocks, native.limit_hit, stops) == (9, 3, False, [])
    hook(0x1234, 0x1000, 9, native.state_addr)  # 12 > 10: not run, stop
    assert native.insns == 9 and native.blocks == 3
    assert native.limit_hit and stops == [0x1234]
    native.set_insn_limit(0)
    assert not native.limit_hit


def test_count_block_error_stops_and_is_reraised() -> None:
    native = NativeFastPath(PhysMem(4096), Arch.X86_64)
    hook = BLOCK_HOOK(native.block_hook_addr)
    stops: list[int | None] = []

    def record_stop(uc: int | None) -> int:
        stops.append(uc)
        return 0

    stop = STOP_FN(record_stop)
    native.set_stop_fn(ctypes.cast(stop, ctypes.c_void_p).value)

    def broken(address: int, size: int) -> int:
        raise RuntimeError("cannot read code")

    native.set_count_block(broken)
    hook(0x99, 0x1000, 4, native.state_addr)
    assert native.count_error and stops == [0x99]
    assert native.blocks == 0 and native.blocks_cached == 0
    with pytest.raises(RuntimeError, match="cannot read code"):
        native.raise_pending()
    native.raise_pending()  # only once
    native.set_count_block(lambda address, size: COUNT_ERROR)  # out of range
    hook(0x99, 0x1000, 4, native.state_addr)
    with pytest.raises(ValueError):
        native.raise_pending()


# --- end to end under Unicorn --------------------------------------------------------------

CODE_VA, DATA_VA, LATE_VA = 0x40_0000, 0x60_0000, 0x80_0000
CODE_PFN, DATA_PFN, LATE_PFN = 0x100, 0x101, 0x102
LATE_VALUE = 0x1234_5678_9ABC
LOOPS = 1000

# x86-64:  mov ecx, 1000 / L: add qword [rdi], 1 / dec rcx / jnz L / mov rax, [rsi]
X86_CODE = bytes.fromhex("b9e8030000" "48830701" "48ffc9" "75f7" "488b06")
# arm64:  mov x2, #1000 / L: ldr x1,[x0] / add x1,x1,#1 / str x1,[x0] / subs x2,x2,#1 /
#         b.ne L / ldr x3, [x4]
A64_CODE = b"".join(w.to_bytes(4, "little") for w in (
    0xD2807D02, 0xF9400001, 0x91000421, 0xF9000001, 0xF1000442, 0x54FFFF81, 0xF9400083))


@dataclass(frozen=True)
class GuestSpec:
    code: bytes
    first_block: int  # instructions in the block at CODE_VA (setup + one iteration)
    loop_block: int  # instructions per further iteration
    tail_block: int  # the late read after the loop
    uc_arch: int
    uc_mode: int
    data_reg: int
    late_reg: int
    result_reg: int
    cs: tuple[int, int]


GUESTS = {
    Arch.X86_64: GuestSpec(X86_CODE, 4, 3, 1, unicorn.UC_ARCH_X86, unicorn.UC_MODE_64,
                           x86_const.UC_X86_REG_RDI, x86_const.UC_X86_REG_RSI,
                           x86_const.UC_X86_REG_RAX, (capstone.CS_ARCH_X86, capstone.CS_MODE_64)),
    Arch.ARM64: GuestSpec(A64_CODE, 6, 5, 1, unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM,
                          arm64_const.UC_ARM64_REG_X0, arm64_const.UC_ARM64_REG_X4,
                          arm64_const.UC_ARM64_REG_X3,
                          (capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)),
}


class _GuestTables:
    """Page tables built the way the kernel would: tables allocated from frame 1 up."""

    def __init__(self, phys: PhysMem, fmt: PteFormat) -> None:
        self.phys = phys
        self.fmt = fmt
        self.next_pfn = 1
        self.root = self._alloc()

    def _alloc(self) -> int:
        pa = self.next_pfn << 12
        self.next_pfn += 1
        return pa

    def map(self, va: int, pfn: int, prot: int) -> None:
        table = self.root
        for level in range(3):
            epa = table + 8 * self.fmt.index(va, level)
            entry = self.phys.read_u64(epa)
            if not self.fmt.table_present(entry):
                entry = self.fmt.mk_table(self._alloc())
                self.phys.write_u64(epa, entry)
            table = entry & ADDR_MASK
        self.phys.write_u64(table + 8 * self.fmt.index(va, 3), self.fmt.pfn_pte(pfn, prot))

    def leaf(self, va: int) -> int:
        table = self.root
        for level in range(3):
            table = self.phys.read_u64(table + 8 * self.fmt.index(va, level)) & ADDR_MASK
        return self.phys.read_u64(table + 8 * self.fmt.index(va, 3))


@dataclass
class Rig:
    uc: Uc
    phys: PhysMem
    tables: _GuestTables
    native: NativeFastPath
    spec: GuestSpec
    python_fills: list[tuple[int, int]]


def make_rig(arch: Arch, faulting_hook: bool = False) -> Rig:
    """A guest loop on tables in emulated memory. The page fault is handled by
    a Python fill hook after the native one or, with ``faulting_hook``, by the
    handler of the single ``mmuemu_tlb_fill_faulting`` hook."""
    spec = GUESTS[arch]
    fmt = FORMATS[arch]
    phys = PhysMem(4 << 20)
    uc = Uc(spec.uc_arch, spec.uc_mode)
    if arch is Arch.ARM64:
        uc.ctl_set_page_size(4096)  # must precede anything that initialises the engine
    uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
    uc.mem_map_ptr(0, phys.size, unicorn.UC_PROT_ALL, phys.address())
    tables = _GuestTables(phys, fmt)
    tables.map(CODE_VA, CODE_PFN, fmt.protection_map(VmProt(True, False, True, False)))
    tables.map(DATA_VA, DATA_PFN, fmt.protection_map(VmProt(True, True, False, True)))
    phys.write(CODE_PFN << 12, spec.code)
    phys.write_u64(LATE_PFN << 12, LATE_VALUE)

    native = NativeFastPath(phys, arch)
    native.set_root(tables.root)
    md = capstone.Cs(*spec.cs)

    def count_block(address: int, size: int) -> int:
        res = native.walk(address, Access.FETCH, count=False)
        assert res.ok
        code = phys.read(res.pa | (address & 0xFFF), size)
        return sum(1 for _ in md.disasm_lite(code, address))

    python_fills: list[tuple[int, int]] = []

    def page_fault(uc: Uc, vaddr: int, access: int, entry: Any, data: Any) -> bool:
        """The slow path: 'handle_mm_fault' maps the late page, then fills."""
        python_fills.append((vaddr, access))
        if vaddr & ~0xFFF != LATE_VA:
            return False
        tables.map(LATE_VA, LATE_PFN, fmt.protection_map(VmProt(True, False, False, False)))
        res = native.walk(vaddr, Access(access))
        entry.paddr = res.pa
        entry.perms = res.perms
        return res.ok

    def fault_handler(vaddr: int, access: int) -> int:
        """The same slow path for the native hook: map, and let C fill."""
        python_fills.append((vaddr, access))
        if vaddr & ~0xFFF != LATE_VA:
            return 0
        tables.map(LATE_VA, LATE_PFN, fmt.protection_map(VmProt(True, False, False, False)))
        return 1

    if faulting_hook:
        native.set_fault_handler(fault_handler)
        hook_add_native(uc, unicorn.UC_HOOK_TLB_FILL, native.tlb_fill_faulting_addr,
                        native.state_addr)
    else:
        hook_add_native(uc, unicorn.UC_HOOK_TLB_FILL, native.tlb_fill_addr, native.state_addr)
        uc.hook_add(unicorn.UC_HOOK_TLB_FILL, page_fault)
    hook_add_native(uc, unicorn.UC_HOOK_BLOCK, native.block_hook_addr, native.state_addr)
    native.set_count_block(count_block)
    native.set_stop(uc)
    uc.reg_write(spec.data_reg, DATA_VA)
    uc.reg_write(spec.late_reg, LATE_VA)
    return Rig(uc, phys, tables, native, spec, python_fills)


def _run(rig: Rig) -> None:
    rig.uc.emu_start(CODE_VA, CODE_VA + len(rig.spec.code))
    rig.native.raise_pending()


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("faulting_hook", [False, True], ids=["two-hooks", "faulting-hook"])
def test_unicorn_end_to_end(arch: Arch, faulting_hook: bool) -> None:
    rig = make_rig(arch, faulting_hook)
    spec, native = rig.spec, rig.native
    _run(rig)
    assert rig.phys.read_u64(DATA_PFN << 12) == LOOPS
    assert rig.uc.reg_read(spec.result_reg) == LATE_VALUE
    # setup + LOOPS iterations + the late read; the block at `until` never runs
    assert native.insns == spec.first_block + (LOOPS - 1) * spec.loop_block + spec.tail_block
    assert native.insns == {Arch.X86_64: 1 + 3 * LOOPS + 1, Arch.ARM64: 1 + 5 * LOOPS + 1}[arch]
    assert native.blocks == 1 + (LOOPS - 1) + 1
    assert native.block_misses == 3
    # the Python hook saw only the one real fault
    assert rig.python_fills == [(LATE_VA, Access.READ)]
    assert native.fills_faulted == 1
    # code fetch, data read (clean shared page: read-only entry), data write
    # (refill; the walker marks it dirty), late read (faults, then Python fills)
    # the faulting hook's retry walk after the fault is a native fill call
    # too; the two-hook rig's Python hook fills without the native counters
    retry = 1 if faulting_hook else 0
    assert native.fills_by_access == {Access.READ: 2 + retry, Access.WRITE: 1, Access.FETCH: 1}
    assert native.fills_resolved == 3 + retry
    leaf = rig.tables.leaf(DATA_VA)
    assert rig.tables.fmt.pte_dirty(leaf) and rig.tables.fmt.pte_young(leaf)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("limit", [100, 1001])
def test_unicorn_insn_limit(arch: Arch, limit: int) -> None:
    rig = make_rig(arch)
    spec, native = rig.spec, rig.native
    native.set_insn_limit(limit)
    _run(rig)
    assert native.limit_hit
    # whole blocks while they fit under the limit; the next one does not run
    iterations = 1 + (limit - spec.first_block) // spec.loop_block
    assert native.insns == spec.first_block + (iterations - 1) * spec.loop_block
    assert native.insns <= limit
    assert rig.phys.read_u64(DATA_PFN << 12) == iterations
    assert rig.python_fills == []


@pytest.mark.parametrize("arch", ARCHES)
def test_faulting_hook_unresolved_fault_stops(arch: Arch) -> None:
    """A handler answering 0 leaves the access unfilled: Unicorn stops the run
    with an unmapped-read error, and the handler ran once for it."""
    rig = make_rig(arch, faulting_hook=True)
    rig.native.set_fault_handler(lambda vaddr, access: rig.python_fills.append((vaddr, access)) or 0)
    with pytest.raises(UcError):
        _run(rig)
    assert rig.python_fills == [(LATE_VA, Access.READ)]
    assert rig.native.fills_faulted == 1
    assert rig.uc.reg_read(rig.spec.result_reg) != LATE_VALUE


@pytest.mark.parametrize("arch", ARCHES)
def test_faulting_hook_handler_that_raises_counts_as_unresolved(
        arch: Arch, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C hook calls the handler itself: an exception it raises is reported
    as unraisable (naming the handler) and the fault as not resolved, so the
    run stops with the access unfilled instead of unwinding through Unicorn."""
    rig = make_rig(arch, faulting_hook=True)
    reported: list[tuple[type, object]] = []
    monkeypatch.setattr(sys, "unraisablehook",
                        lambda u: reported.append((u.exc_type, u.object)))

    def handler(vaddr: int, access: int) -> int:
        rig.python_fills.append((vaddr, access))
        raise RuntimeError("model failure")

    rig.native.set_fault_handler(handler)
    with pytest.raises(UcError):
        _run(rig)
    assert reported == [(RuntimeError, handler)]
    assert rig.python_fills == [(LATE_VA, Access.READ)]
    assert rig.uc.reg_read(rig.spec.result_reg) != LATE_VALUE


def test_fault_handler_stays_alive_while_installed() -> None:
    """The C state borrows the handler: the NativeFastPath keeps it alive, so a
    handler made on the spot (a closure nobody else holds) still runs."""
    rig = make_rig(Arch.X86_64, faulting_hook=True)
    seen: list[int] = []

    def install() -> None:
        late = rig.tables

        def handler(vaddr: int, access: int) -> int:
            seen.append(vaddr)
            late.map(LATE_VA, LATE_PFN, late.fmt.protection_map(VmProt(True, False, False, False)))
            return 1

        rig.native.set_fault_handler(handler)

    install()
    gc.collect()
    _run(rig)
    assert seen == [LATE_VA]
    assert rig.uc.reg_read(rig.spec.result_reg) == LATE_VALUE


def test_hook_del_native() -> None:
    rig = make_rig(Arch.X86_64)
    handle = hook_add_native(rig.uc, unicorn.UC_HOOK_BLOCK, rig.native.block_hook_addr,
                             rig.native.state_addr)
    hook_del_native(rig.uc, handle)
    _run(rig)
    assert rig.native.insns == 2 + 3 * LOOPS  # counted once, by the remaining hook
    with pytest.raises(UcError):
        hook_add_native(rig.uc, -1, rig.native.block_hook_addr, 0)  # every bit: invalid



@pytest.mark.parametrize("arch", ARCHES)
def test_uc_tlb_flusher_drops_unicorns_cached_translations(arch: Arch) -> None:
    """A second run of the loop needs no fill while Unicorn's soft TLB holds
    its pages; after uc_tlb_flusher() every page it touches is filled again."""
    rig = make_rig(arch)
    _run(rig)
    first = rig.native.fills
    _run(rig)
    assert rig.native.fills == first
    uc_tlb_flusher(rig.uc)()
    _run(rig)
    assert rig.native.fills - first >= 3  # code, data and the late page


def _plain_x86_loop(n: int) -> tuple[Uc, int, int]:
    """A plain Unicorn (no MMU model) with ``n`` turns of ``dec rcx; jnz``:
    (uc, start, end)."""
    uc = Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    code = bytes.fromhex("48ffc9" "75fb")  # dec rcx; jnz -5
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, code)
    uc.reg_write(x86_const.UC_X86_REG_RCX, n)
    return uc, 0x1000, 0x1000 + len(code)


def test_emu_starter_runs_holding_the_gil() -> None:
    """The guest runs to ``until`` as with the binding's emu_start, and no
    other Python thread runs meanwhile: with the switch interval long, the
    GIL leaves the emulating thread only if it lets go, which the binding's
    emu_start does for the whole run (a spinning thread then counts
    hundreds of turns while the hooks wait for it: ``_gil_turns_during``)."""
    uc, start, end = _plain_x86_loop(50_000)
    turns = _gil_turns_during(uc, lambda: emu_starter(uc)(start, end, 0, 0))
    assert uc.reg_read(x86_const.UC_X86_REG_RCX) == 0
    assert turns <= 1
    uc2, start2, end2 = _plain_x86_loop(50_000)  # the check itself can fail:
    assert _gil_turns_during(uc2, lambda: uc2.emu_start(start2, end2)) > 100


def _gil_turns_during(uc: Uc, run: Any) -> int:
    """How many times a thread that yields the GIL at every turn ran while
    ``run()`` emulated ``uc`` (which calls a Python block hook throughout)."""
    import threading
    import time

    turns: list[int] = []
    ready, stop = threading.Event(), threading.Event()

    def spin() -> None:
        ready.set()
        while not stop.is_set():
            turns.append(1)
            time.sleep(0)  # lets the GIL go, and asks for it back

    uc.hook_add(unicorn.UC_HOOK_BLOCK, lambda *args: None)
    interval = sys.getswitchinterval()
    t = threading.Thread(target=spin, daemon=True)
    try:
        sys.setswitchinterval(30.0)  # no forced hand-over during the run
        t.start()
        ready.wait()
        before = len(turns)
        run()
        during = len(turns) - before
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        t.join()
    return during


def test_emu_starter_raises_what_a_binding_hook_raised() -> None:
    uc, start, end = _plain_x86_loop(10)

    def on_code(uc: Any, address: int, size: int, user_data: Any) -> None:
        raise KeyError("from the hook")

    uc.hook_add(unicorn.UC_HOOK_CODE, on_code)
    with pytest.raises(KeyError, match="from the hook"):
        emu_starter(uc)(start, end, 0, 0)


def test_emu_starter_raises_ucerror_for_a_failed_start() -> None:
    uc, _, _ = _plain_x86_loop(1)
    with pytest.raises(UcError):
        emu_starter(uc)(0x9000, 0x9004, 0, 0)  # nothing mapped there
