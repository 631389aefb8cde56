"""Exact mode (mmuemu/emu/_native/exact.c through mmuemu/emu/exact.py).

* Differential: the C model against the pure-Python reference
  (mmuemu.hw.tlb.MmuModel) on random accesses, invalidations, context
  switches and page-table edits: same outcome per access, same counters,
  the same entry in every way of every TLB and walk cache.
* Under Unicorn, with the hooks registered as the machine registers them:
  analytic TLB counts for a loop touching W pages cyclically R rounds,
  the D-bit re-walk, iTLB lookups per block and per page a block spans,
  ASID retention across an address-space switch, invalidation, and the
  PA -> VA recovery when many virtual pages share a frame.
* With the machine (when it has exact mode): fast and exact agree on every
  fault count, and exact adds the TLB figures.

The benchmark (``MMUEMU_BENCH=1``) measures exact mode against raw Unicorn
and the fast path on a TLB-stressing loop.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pytest
import unicorn
from unicorn import arm64_const, x86_const
from unicorn.unicorn_py3.unicorn import Uc

from mmuemu._types import Access, Arch
from mmuemu.emu.exact import ExactMmu, ExactState, XcCache, XcEntry, load_library
from mmuemu.emu.native import NativeFastPath, hook_add_native
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.profile import DEFAULT_PROFILE, Profile, load_profile
from mmuemu.hw.pte import PteFormat, VmProt
from mmuemu.hw.tlb import (
    Cr3Write, FlushAll, FlushAsid, FlushVa, Invlpg, InvpcidAddr, InvpcidAll, InvpcidAllGlobal,
    InvpcidSingle, MmuModel, Outcome, TlbiAside1is, TlbiOp, TlbiVae1is, TlbiVale1is,
    TlbiVmalle1is,
)
from tests.hw.test_pwc import FORMATS, RO, RX, SHARED_RW, PageTables

ARCHES = [pytest.param(Arch.X86_64, id="x86_64"), pytest.param(Arch.ARM64, id="arm64")]
PAGE = 4096


def test_state_layout_matches_the_library() -> None:
    lib = load_library()  # raises ImportError on any size or offset mismatch
    assert lib is load_library()
    assert ctypes_size(ExactState) > ctypes_size(XcCache) > ctypes_size(XcEntry) == 24


def ctypes_size(t: Any) -> int:
    import ctypes
    return ctypes.sizeof(t)


# --- differential: C model == Python reference ------------------------------------------------

GEOMETRIES = [
    # l1i, l1d, l2 overrides, extra overrides
    pytest.param(["l1i=4x4", "l1d=8x8", "l2=32x4"], id="small-fa-lru"),
    pytest.param(["l1i=4x2", "l1d=10x2", "l2=24x3", "tlb.l1d.replacement=plru",
                  "tlb.l2.replacement=plru"], id="nonpow2-plru"),
    pytest.param(["l1i=8x8", "l1d=16x4", "l2=64x4", "tlb.l1i.replacement=plru"], id="mixed"),
    pytest.param([], id="profile-default"),
    # 16 ways and more are found through exact.c's tag index (sets of 1, 2 and 4)
    pytest.param(["l1i=32x16", "l1d=24x24", "l2=64x16", "tlb.l2.replacement=plru"],
                 id="wide-indexed"),
]


@dataclass
class World:
    phys: PhysMem
    fmt: PteFormat
    tables: list[PageTables]
    vas: list[int]


def _world(arch: Arch, rng: random.Random) -> World:
    fmt = FORMATS[arch]
    phys = PhysMem(4 << 20)
    tables = [PageTables(phys, fmt, first_pfn=1), PageTables(phys, fmt, first_pfn=200)]
    # pages in a few 2 MiB / 1 GiB / 512 GiB regions, so every walk-cache level matters
    bases = [0x40_0000, 0x60_0000, 0x4000_0000, 0x80_0000_0000]
    vas = sorted({rng.choice(bases) + rng.randrange(48) * PAGE for _ in range(70)})
    vas.append(fmt.task_size + PAGE)  # beyond TASK_SIZE: the walk faults at once
    for pt in tables:
        for va in vas[:-1]:
            if rng.random() < 0.85:
                _remap(rng, pt, va)
    return World(phys, fmt, tables, vas)


def _remap(rng: random.Random, pt: PageTables, va: int) -> None:
    prot = rng.choice([SHARED_RW, SHARED_RW, RO, RX, VmProt(True, True, True, True)])
    pt.map(va, 1000 + rng.randrange(20), prot, glob=rng.random() < 0.08,
           dirty=rng.random() < 0.6)


def _random_op(rng: random.Random, vpns: list[int]) -> TlbiOp:
    asid = rng.choice([1, 2, 3])
    vpn = rng.choice(vpns)
    return rng.choice([
        FlushAll(), FlushAsid(asid=asid), FlushVa(vpn=vpn, asid=asid),
        Invlpg(vpn=vpn, asid=asid), InvpcidAddr(vpn=vpn, asid=asid),
        InvpcidSingle(asid=asid), InvpcidAll(), InvpcidAllGlobal(),
        Cr3Write(pcid=asid, noflush=rng.random() < 0.5),
        TlbiVae1is(vpn=vpn, asid=asid), TlbiVale1is(vpn=vpn, asid=asid),
        TlbiAside1is(asid=asid), TlbiVmalle1is(),
    ])


def _compare(ref: MmuModel, nat: ExactMmu, where: str) -> None:
    st = nat.stats()
    assert st.tlb == ref.tlb.stats, where
    ws = ref.walk_stats
    assert (st.walks, list(st.walk_refs), list(st.pwc_hits), st.walk_faults) == \
        (ws.count, ws.refs, ws.pwc_hits, ws.faults), where
    for i, t in enumerate(ref.tlb.levels()):
        assert nat.tlb_contents(i) == t.contents(), f"{where}: TLB {i}"
    assert nat.pwc_contents() == ref.pwc.contents(), f"{where}: walk caches"
    assert st.invalidated == sum(t.invalidated for t in ref.tlb.levels()), where


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("overrides", GEOMETRIES)
def test_native_model_matches_reference(arch: Arch, overrides: list[str]) -> None:
    profile = load_profile(DEFAULT_PROFILE[arch], overrides)
    for seed in range(3):
        rng = random.Random(seed * 101 + len(overrides) + (arch is Arch.ARM64) * 7)
        w = _world(arch, rng)
        ref = MmuModel(w.phys, w.fmt, profile.l1i, profile.l1d, profile.l2, profile.pwc)
        nat = ExactMmu(w.phys, arch, profile, windows=1)
        contexts = [(w.tables[0].root, 1), (w.tables[0].root, 2), (w.tables[1].root, 3)]
        vpns = [va >> 12 for va in w.vas]
        outcomes: dict[Outcome, int] = {}
        hot = w.vas[:12]
        for step in range(2500):
            if step % 200 == 0:  # a working set that moves: L1 hits, L2 hits and misses
                hot = rng.sample(w.vas, 12)
            r = rng.random()
            if r < 0.88:
                va = rng.choice(hot if rng.random() < 0.8 else w.vas) | rng.randrange(PAGE)
                access = rng.choice([Access.READ, Access.READ, Access.WRITE, Access.FETCH])
                expect = ref.access(va, access)
                assert nat.access(va, access) is expect, f"seed {seed} step {step}"
                outcomes[expect] = outcomes.get(expect, 0) + 1
            elif r < 0.94:
                op = _random_op(rng, vpns)
                assert nat.invalidate(op) == ref.invalidate(op), f"seed {seed} {op}"
            elif r < 0.97:
                root, asid = rng.choice(contexts)
                ref.set_context(root, asid)
                nat.set_context(root, asid)
            else:  # edit a PTE without telling anyone: both may use stale entries alike
                va = rng.choice(w.vas[:-1])
                pt = rng.choice(w.tables)
                if rng.random() < 0.3:
                    pt.set_pte(va, 0)
                else:
                    _remap(rng, pt, va)
            if step % 250 == 0:
                _compare(ref, nat, f"seed {seed} step {step}")
        _compare(ref, nat, f"seed {seed} end")
        nat.close()
        assert min(outcomes.get(o, 0) for o in Outcome) > 20, outcomes


# --- under Unicorn ------------------------------------------------------------------------------

CODE_VA, DATA_VA = 0x40_0000, 0x1000_0000
CODE_PFN, DATA_PFN = 0x100, 0x200


@dataclass(frozen=True)
class Isa:
    uc_arch: int
    uc_mode: int
    base: int  # data base register
    rounds: int
    pages: int
    stride: int
    result: int
    # loop: outer { p = base; n = pages; inner { load [p]; p += stride; } } ; nop
    loop: bytes
    loop_end: int
    # the same with "store [p + 8]" after the load
    loop_rw: bytes
    loop_rw_end: int
    # load [base + 0xffc] (crosses a page); nop
    split: bytes
    split_end: int
    # load [base]; branch to this address + 0x1000
    chain: bytes


ISAS = {
    # x86-64: rdi base, rcx rounds, r8 pages, r9 stride, rax result
    #   outer: mov rsi, rdi; mov rdx, r8
    #   inner: mov rax, [rsi]; add rsi, r9; dec rdx; jnz inner; dec rcx; jnz outer; nop
    Arch.X86_64: Isa(
        unicorn.UC_ARCH_X86, unicorn.UC_MODE_64, x86_const.UC_X86_REG_RDI,
        x86_const.UC_X86_REG_RCX, x86_const.UC_X86_REG_R8, x86_const.UC_X86_REG_R9,
        x86_const.UC_X86_REG_RAX,
        bytes.fromhex("4889fe4c89c2488b064c01ce48ffca75f548ffc975ea90"), 0x16,
        # inner: mov rax, [rsi]; mov [rsi+8], rax; add rsi, r9; ...
        bytes.fromhex("4889fe4c89c2488b06488946084c01ce48ffca75f148ffc975e690"), 0x1A,
        bytes.fromhex("488b87fc0f000090"), 7,  # mov rax, [rdi+0xffc]; nop
        bytes.fromhex("488b07e9f80f0000"),  # mov rax, [rdi]; jmp .+0x1000
    ),
    # arm64: x0 base, x2 rounds, x5 pages, x6 stride, x1 result
    #   outer: mov x3, x0; mov x4, x5
    #   inner: ldr x1, [x3]; add x3, x3, x6; subs x4, x4, #1; b.ne inner;
    #          subs x2, x2, #1; b.ne outer; nop
    Arch.ARM64: Isa(
        unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM, arm64_const.UC_ARM64_REG_X0,
        arm64_const.UC_ARM64_REG_X2, arm64_const.UC_ARM64_REG_X5, arm64_const.UC_ARM64_REG_X6,
        arm64_const.UC_ARM64_REG_X1,
        bytes.fromhex("e30300aae40305aa610040f96300068b840400f1a1ffff54420400f121ffff541f2003d5"),
        0x20,
        # inner: ldr x1, [x3]; str x1, [x3, #8]; add x3, x3, x6; ...
        bytes.fromhex("e30300aae40305aa610040f9610400f96300068b840400f181ffff54420400f1"
                      "01ffff541f2003d5"), 0x24,
        bytes.fromhex("07f03f91e10040f91f2003d5"), 8,  # add x7, x0, #0xffc; ldr x1, [x7]; nop
        bytes.fromhex("010040f9ff030014"),  # ldr x1, [x0]; b .+0x1000
    ),
}


@dataclass
class Rig:
    arch: Arch
    isa: Isa
    uc: Uc
    phys: PhysMem
    pt: PageTables
    fast: NativeFastPath
    exact: ExactMmu
    profile: Profile
    python_fills: list[tuple[int, int]]
    late: dict[int, int]  # va -> pfn mapped by the Python fault hook on first touch

    def run(self, begin: int, until: int) -> None:
        self.uc.emu_start(begin, until)
        self.fast.raise_pending()

    def set(self, reg: int, value: int) -> None:
        self.uc.reg_write(reg, value)


def make_rig(arch: Arch, overrides: list[str] | None = None, *, windows: int = 16,
             code: bytes | None = None, mem: int = 16 << 20) -> Rig:
    isa = ISAS[arch]
    fmt = FORMATS[arch]
    phys = PhysMem(mem)
    uc = Uc(isa.uc_arch, isa.uc_mode)
    if arch is Arch.ARM64:
        uc.ctl_set_page_size(4096)
    uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
    uc.mem_map_ptr(0, phys.size, unicorn.UC_PROT_ALL, phys.address())
    pt = PageTables(phys, fmt)
    pt.map(CODE_VA, CODE_PFN, RX)
    phys.write(CODE_PFN << 12, code if code is not None else isa.loop)
    fast = NativeFastPath(phys, arch)
    fast.set_root(pt.root)
    profile = load_profile(DEFAULT_PROFILE[arch], overrides or [])
    exact = ExactMmu(phys, arch, profile, windows=windows)
    exact.set_context(pt.root, 1)
    exact.attach(uc, fast)
    python_fills: list[tuple[int, int]] = []
    late: dict[int, int] = {}

    def page_fault(uc: Uc, vaddr: int, access: int, entry: Any, data: Any) -> bool:
        """The machine's slow path: map a 'late' page, walk, fill through the window."""
        python_fills.append((vaddr, access))
        page = vaddr & ~0xFFF
        if page not in late:
            return False
        pt.map(page, late[page], SHARED_RW)
        res = fast.walk(vaddr, Access(access))
        if not res.ok:
            return False
        entry.paddr = exact.fill_paddr(uc, vaddr, res.pa, Access(access))
        entry.perms = res.perms
        return True

    uc.hook_add(unicorn.UC_HOOK_TLB_FILL, page_fault)
    hook_add_native(uc, unicorn.UC_HOOK_BLOCK, fast.block_hook_addr, fast.state_addr)
    fast.set_stop(uc)
    return Rig(arch, isa, uc, phys, pt, fast, exact, profile, python_fills, late)


def _map_data(rig: Rig, pages: int, stride: int = PAGE, *, dirty: bool = True,
              pfn: Optional[Callable[[int], int]] = None, prot: VmProt = SHARED_RW) -> None:
    for i in range(pages):
        frame = pfn(i) if pfn else DATA_PFN + i
        rig.pt.map(DATA_VA + i * stride, frame, prot, dirty=dirty)
        rig.phys.write_u64(frame << 12, 1000 + i)


def _run_loop(rig: Rig, pages: int, rounds: int, *, rw: bool = False,
              stride: int = PAGE) -> None:
    isa = rig.isa
    rig.set(isa.base, DATA_VA)
    rig.set(isa.rounds, rounds)
    rig.set(isa.pages, pages)
    rig.set(isa.stride, stride)
    rig.run(CODE_VA, CODE_VA + (isa.loop_rw_end if rw else isa.loop_end))


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("entries, pages", [(8, 5), (8, 8), (8, 9), (48, 48), (48, 49)])
def test_cyclic_pages_under_a_fully_associative_lru_dtlb(arch: Arch, entries: int,
                                                          pages: int) -> None:
    rounds = 20
    rig = make_rig(arch, [f"l1d={entries}x{entries}", "l2=1024x4"])
    _map_data(rig, pages)
    _run_loop(rig, pages, rounds)
    st = rig.exact.stats()
    assert st.unknown == 0
    assert st.lookups[Access.READ] == pages * rounds and st.lookups[Access.WRITE] == 0
    misses = pages if pages <= entries else pages * rounds
    assert (st.tlb.l1d.misses, st.tlb.l1d.hits) == (misses, pages * rounds - misses)
    # the L2 holds everything: compulsory misses only (+1 for the code page)
    assert st.tlb.l2.misses == pages + 1 and st.walks == pages + 1
    # iTLB: one lookup per block (the loop is in one page), one compulsory miss
    assert st.lookups[Access.FETCH] == rig.fast.blocks
    assert (st.tlb.l1i.misses, st.tlb.l1i.hits) == (1, rig.fast.blocks - 1)


@pytest.mark.parametrize("arch, pages, expect_misses", [
    # Skylake L1d: 16 sets x 4 ways. 64 consecutive pages: 4 per set, they fit.
    (Arch.X86_64, 64, lambda p, r: p),
    # 65 pages: set 0 gets 5 pages through 4 ways (LRU: all 5 miss every round)
    (Arch.X86_64, 65, lambda p, r: 60 + 5 * r),
    # stride of 16 pages: every page in set 0; 5 of them through 4 ways
    (Arch.X86_64, -5, lambda p, r: 5 * r),
    # N1 L1d is fully associative: 48 fit, 49 do not
    (Arch.ARM64, 48, lambda p, r: p),
    (Arch.ARM64, 49, lambda p, r: p * r),
])
def test_profile_geometry_conflicts(arch: Arch, pages: int,
                                    expect_misses: Callable[[int, int], int]) -> None:
    rounds = 10
    rig = make_rig(arch)
    stride = PAGE
    if pages < 0:
        pages, stride = -pages, 16 * PAGE
    _map_data(rig, pages, stride)
    _run_loop(rig, pages, rounds, stride=stride)
    st = rig.exact.stats()
    assert st.tlb.l1d.misses == expect_misses(pages, rounds)
    assert st.unknown == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_walk_caches_leave_one_reference_per_neighbouring_page(arch: Arch) -> None:
    pages = 20
    rig = make_rig(arch)
    _map_data(rig, pages)
    _run_loop(rig, pages, 2)
    st = rig.exact.stats()
    assert st.walks == pages + 1  # and the code page first
    # code: 4 reads. First data page: x86 hits the PDPTE cache the code walk
    # filled (same 1 GiB): PDE + PTE; N1 caches level 2 only: 4 reads. Then
    # every data page hits the cached level-2 entry: 1 read each.
    first = 2 if arch is Arch.X86_64 else 4
    assert st.walk_mem_refs == 4 + first + (pages - 1)
    assert st.pwc_hits[2] == pages - 1


@pytest.mark.parametrize("arch", ARCHES)
def test_first_write_to_a_clean_page_walks_again(arch: Arch) -> None:
    """A read fill of a clean page grants no write (x86 D clear, arm64 DBM with
    AP[2] set): the first store misses and walks again; then both hit."""
    pages, rounds = 6, 5
    rig = make_rig(arch, code=ISAS[arch].loop_rw)
    _map_data(rig, pages, dirty=False)
    _run_loop(rig, pages, rounds, rw=True)
    st = rig.exact.stats()
    assert st.lookups[Access.READ] == st.lookups[Access.WRITE] == pages * rounds
    assert st.tlb.l1d.misses == 2 * pages and st.walks == 2 * pages + 1
    assert all(FORMATS[arch].pte_dirty(rig.pt.leaf(DATA_VA + i * PAGE)) for i in range(pages))


@pytest.mark.parametrize("arch", ARCHES)
def test_an_access_crossing_a_page_looks_up_both(arch: Arch) -> None:
    isa = ISAS[arch]
    rig = make_rig(arch, code=isa.split)
    rig.pt.map(DATA_VA, DATA_PFN, SHARED_RW)
    rig.pt.map(DATA_VA + PAGE, DATA_PFN + 7, SHARED_RW)  # not physically contiguous
    rig.phys.write((DATA_PFN << 12) + 0xFFC, bytes([1, 2, 3, 4]))
    rig.phys.write((DATA_PFN + 7) << 12, bytes([5, 6, 7, 8]))
    rig.set(isa.base, DATA_VA)
    rig.run(CODE_VA, CODE_VA + isa.split_end)
    assert rig.uc.reg_read(isa.result) == 0x0807060504030201
    st = rig.exact.stats()
    assert st.lookups[Access.READ] == 2 and st.tlb.l1d.misses == 2


@pytest.mark.parametrize("arch", ARCHES)
def test_blocks_spanning_two_pages_look_up_both(arch: Arch) -> None:
    isa = ISAS[arch]
    rig = make_rig(arch, code=b"")
    start = CODE_VA + PAGE - 8  # the loop straddles the code page boundary
    rig.pt.map(CODE_VA + PAGE, CODE_PFN + 9, RX)
    rig.phys.write((CODE_PFN << 12) + PAGE - 8, isa.loop[:8])
    rig.phys.write((CODE_PFN + 9) << 12, isa.loop[8:])
    blocks: list[tuple[int, int]] = []
    rig.uc.hook_add(unicorn.UC_HOOK_BLOCK, lambda uc, a, s, d: blocks.append((a, s)))
    _map_data(rig, 3)
    rig.set(isa.base, DATA_VA)
    rig.set(isa.rounds, 4)
    rig.set(isa.pages, 3)
    rig.set(isa.stride, PAGE)
    rig.run(start, start + isa.loop_end)
    expect = sum(((a + s - 1) >> 12) - (a >> 12) + 1 for a, s in blocks)
    spanning = [b for b in blocks if (b[0] >> 12) != ((b[0] + b[1] - 1) >> 12)]
    # QEMU's x86 translator lets a block run into the next page; its A64
    # translator ends the block at the page boundary instead
    assert bool(spanning) is (arch is Arch.X86_64)
    assert {a >> 12 for a, _ in blocks} == {CODE_VA >> 12, (CODE_VA >> 12) + 1} \
        or arch is Arch.X86_64
    st = rig.exact.stats()
    assert st.lookups[Access.FETCH] == expect
    assert st.tlb.l1i.misses == 2 and st.lookups[Access.READ] == 12


def _switch(rig: Rig, root: int, asid: int, op: Optional[TlbiOp]) -> None:
    """An address-space switch: both walkers' root, the exact context, Unicorn's
    (untagged) soft TLB flushed."""
    rig.fast.set_root(root)
    rig.exact.set_context(root, asid)
    if op is not None:
        rig.exact.invalidate(op)
    rig.uc.ctl(unicorn.unicorn_const.UC_CTL_TLB_FLUSH, unicorn.unicorn_const.UC_CTL_IO_WRITE)
    rig.exact.uc_flushed()


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("tagged", [True, False], ids=["asids", "flush"])
def test_asids_keep_translations_across_a_switch(arch: Arch, tagged: bool) -> None:
    pages, switches = 8, 6
    rig = make_rig(arch)
    _map_data(rig, pages)
    root_a = rig.pt.root
    other = PageTables(rig.phys, FORMATS[arch], first_pfn=0x500)
    other.map(CODE_VA, CODE_PFN, RX)
    for i in range(pages):  # same virtual pages, other frames
        other.map(DATA_VA + i * PAGE, 0x600 + i, SHARED_RW)
        rig.phys.write_u64((0x600 + i) << 12, 5000 + i)
    roots = [(root_a, 1), (other.root, 2)]
    values = []
    for k in range(switches):
        root, asid = roots[k % 2]
        if tagged:
            op: Optional[TlbiOp] = Cr3Write(pcid=asid, noflush=True) \
                if arch is Arch.X86_64 else None
        else:
            op = Cr3Write(pcid=0, noflush=False) if arch is Arch.X86_64 else TlbiVmalle1is()
            asid = 0
        _switch(rig, root, asid, op)
        _run_loop(rig, pages, 1)
        values.append(rig.uc.reg_read(rig.isa.result))
    assert values == [1000 + 7, 5000 + 7] * (switches // 2)  # the guest saw each space
    st = rig.exact.stats()
    per_space = pages + 1  # data pages and the code page (L1d + L1i misses)
    misses = st.tlb.l1d.misses + st.tlb.l1i.misses
    assert misses == (2 * per_space if tagged else switches * per_space)
    assert st.unknown == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_invalidated_page_misses_once_and_shows_the_new_frame(arch: Arch) -> None:
    pages = 4
    rig = make_rig(arch)
    _map_data(rig, pages)
    _run_loop(rig, pages, 2)
    before = rig.exact.stats().tlb.l1d.misses
    va = DATA_VA + 3 * PAGE
    rig.pt.map(va, 0x700, SHARED_RW)  # the kernel moves the page ...
    rig.phys.write_u64((0x700 << 12) + 8 * 3, 4242)
    op = Invlpg(vpn=va >> 12, asid=1) if arch is Arch.X86_64 else TlbiVale1is(vpn=va >> 12,
                                                                              asid=1)
    assert rig.exact.invalidate(op) == 2  # ... and flushes it (L1d and L2 held it)
    rig.uc.ctl(unicorn.unicorn_const.UC_CTL_TLB_FLUSH, unicorn.unicorn_const.UC_CTL_IO_WRITE)
    rig.exact.uc_flushed()
    rig.phys.write_u64((0x700 << 12), 4242)
    _run_loop(rig, pages, 3)
    assert rig.uc.reg_read(rig.isa.result) == 4242
    assert rig.exact.stats().tlb.l1d.misses == before + 1


@pytest.mark.parametrize("arch", ARCHES)
def test_many_virtual_pages_on_one_frame(arch: Arch) -> None:
    """A zero-page-like frame mapped read-only at 40 virtual pages, through 2
    windows: data fills must flush Unicorn's TLB; the counts stay exact."""
    pages, rounds = 40, 3
    rig = make_rig(arch, ["l1d=64x64", "l2=1024x4"], windows=2)
    _map_data(rig, pages, pfn=lambda i: 0x300, prot=RO)
    rig.phys.write_u64(0x300 << 12, 77)
    _run_loop(rig, pages, rounds)
    assert rig.uc.reg_read(rig.isa.result) == 77
    st = rig.exact.stats()
    assert st.unknown == 0 and st.uc_flushes >= pages // 2 - 1
    assert st.lookups[Access.READ] == pages * rounds
    assert st.tlb.l1d.misses == pages  # they all fit in 64 entries


@pytest.mark.parametrize("arch", ARCHES)
def test_code_frame_at_many_virtual_pages(arch: Arch) -> None:
    """One code frame at 6 consecutive virtual pages, each block jumping to the
    next: fetch fills steal a window and the block hook flushes; exact counts."""
    n = 6
    isa = ISAS[arch]
    rig = make_rig(arch, code=isa.chain, windows=2)
    for i in range(1, n):
        rig.pt.map(CODE_VA + i * PAGE, CODE_PFN, RX)
    _map_data(rig, 1)
    rig.set(isa.base, DATA_VA)
    rig.run(CODE_VA, CODE_VA + (n - 1) * PAGE)
    st = rig.exact.stats()
    assert st.unknown == 0 and st.steals >= 1
    assert st.lookups[Access.FETCH] == n - 1 and st.tlb.l1i.misses == n - 1
    assert st.lookups[Access.READ] == n - 1 and st.tlb.l1d.misses == 1


@pytest.mark.parametrize("arch", ARCHES)
def test_pages_filled_by_the_python_fault_hook(arch: Arch) -> None:
    pages, rounds = 5, 4
    rig = make_rig(arch, ["l1d=8x8"])
    for i in range(pages):
        rig.late[DATA_VA + i * PAGE] = DATA_PFN + i
        rig.phys.write_u64((DATA_PFN + i) << 12, 1000 + i)
    _run_loop(rig, pages, rounds)
    assert [v & ~0xFFF for v, _ in rig.python_fills] == [DATA_VA + i * PAGE for i in range(pages)]
    assert rig.uc.reg_read(rig.isa.result) == 1000 + pages - 1
    st = rig.exact.stats()
    assert st.unknown == 0 and st.tlb.l1d.misses == pages
    assert st.lookups[Access.READ] == pages * rounds


def test_va_of_and_fill_paddr() -> None:
    phys = PhysMem(1 << 20)
    exact = ExactMmu(phys, Arch.X86_64, load_profile("skylake"), windows=3)
    assert exact.window_base(1) == 1 << 20
    assert exact.fill_paddr(None, 0x5000, 0x3000, Access.READ) == 0x3000
    assert exact.fill_paddr(None, 0x9000, 0x3000, Access.READ) == (1 << 20) | 0x3000
    assert exact.fill_paddr(None, 0x5000, 0x3000, Access.WRITE) == 0x3000  # its own window
    assert exact.va_of(0x3010) == 0x5010 and exact.va_of((1 << 20) | 0x3FF8) == 0x9FF8
    assert exact.va_of((2 << 20) | 0x3000) is None and exact.va_of(0x4000) is None
    exact.uc_flushed()
    assert exact.va_of(0x3010) is None  # a new generation: every owner forgotten
    exact.close()
    exact.close()


# --- the machine: fast and exact agree on faults --------------------------------------------------

def _machine_has_exact_mode() -> bool:
    from mmuemu.emu import machine
    return "exact" in getattr(machine, "MODES", ())


needs_exact_machine = pytest.mark.skipif(not _machine_has_exact_mode(),
                                         reason="the machine has no exact mode yet")


def _run_machine(arch: str, prog: str, args: list[str], mode: str,
                 overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    from mmuemu.config import RunConfig
    from mmuemu.emu.machine import Machine
    from tests.conftest import guest
    import tempfile
    path = guest(arch, prog)  # skips if this checkout lacks the program
    root = tempfile.mkdtemp(prefix="mmuemu-exact-")  # the guest's files stay out of the repo
    m = Machine(path, args, rconfig=RunConfig(mode=mode, root=root),  # type: ignore[call-arg]
                tlb_overrides=overrides)
    res = m.run()
    assert res.exit_code == 0, (mode, res)
    stats: dict[str, Any] = m.stats()
    return stats


@needs_exact_machine
@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("prog, args", [
    ("anon_touch", ["64"]), ("anon_read", ["40"]), ("file_read", ["64"]),
    ("brk_heap", ["32"]), ("madvise_dontneed", []), ("data_bss", []), ("file_cow", []),
    ("file_shared", []), ("tlb_stress", ["300", "3"]), ("stack_grow", ["300"]),
    ("cow_fork", []), ("mmap_fork", []), ("mprotect_split", []), ("mremap_grow", []),
    ("munmap_hole", []),
])
def test_fast_and_exact_agree_on_every_fault_count(arch: str, prog: str,
                                                   args: list[str]) -> None:
    fast = _run_machine(arch, prog, args, "fast")
    exact = _run_machine(arch, prog, args, "exact")
    for key in ("faults", "instructions", "syscalls", "vmstat", "mm", "exit_code",
                "tlb_flush_requests", "flushes"):
        assert fast[key] == exact[key], key
    assert exact["exact_model"]["unknown_addresses"] == 0
    t = exact["tlb"]
    assert t["exact"] and exact["walks"]["count"] == t["l2"]["misses"]
    assert t["l1i"]["misses"] + t["l1d"]["misses"] == t["l2"]["hits"] + t["l2"]["misses"]
    assert "tlb" not in fast and fast["walks"]["exact"] is False
    for st in (fast, exact):
        assert st["cycles"] == sum(st["cycles_breakdown"].values()) > 0
    assert fast["cycles_estimated"] and not exact["cycles_estimated"]


@needs_exact_machine
@pytest.mark.parametrize("arch, overrides, pages, level, thrash", [
    # N1 L1d: 48 entries, fully associative, LRU
    ("aarch64", (), 40, "l1d", False), ("aarch64", (), 200, "l1d", True),
    # Skylake L1d: 16 sets x 4; 200 consecutive pages put 12-13 in every set
    ("x86_64", (), 40, "l1d", False), ("x86_64", (), 200, "l1d", True),
    # L2: N1 256 sets x 5, Skylake 128 sets x 12
    ("aarch64", (), 1000, "l2", False), ("aarch64", (), 2000, "l2", True),
    ("x86_64", (), 1000, "l2", False), ("x86_64", (), 2000, "l2", True),
    # an override: a 16-entry fully associative L1d
    ("x86_64", ("l1d=16x16",), 12, "l1d", False), ("x86_64", ("l1d=16x16",), 20, "l1d", True),
])
def test_tlb_stress_each_extra_round_costs_w_misses_or_none(
        arch: str, overrides: tuple[str, ...], pages: int, level: str, thrash: bool) -> None:
    """tlb_stress W R: one load and one store per page per round. An extra
    round adds W misses where W pages overflow the level (LRU, cyclic), and
    none where they fit (the load misses; the store to the same page hits)."""
    runs = [_run_machine(arch, "tlb_stress", [str(pages), str(r)], "exact", overrides)
            for r in (2, 4)]
    for kind in ("read", "write"):  # (+ a few more when printf prints a longer checksum)
        delta = runs[1]["exact_model"]["lookups"][kind] - runs[0]["exact_model"]["lookups"][kind]
        assert 2 * pages <= delta <= 2 * pages + 8, kind
    misses = runs[1]["tlb"][level]["misses"] - runs[0]["tlb"][level]["misses"]
    assert misses == (2 * pages if thrash else 0)
    walks = runs[1]["walks"]["count"] - runs[0]["walks"]["count"]
    assert walks == (2 * pages if thrash and level == "l2" else 0)


def test_the_state_sync_flag_is_found_on_this_unicorn() -> None:
    """Unicorn 2.1.4 (the pinned version) has the private flag; the probe finds
    one byte past stop_request/quit_request, not 0 (which means 'keep the sync')."""
    from mmuemu.emu.exact import skip_sync_offset
    assert skip_sync_offset() > 0


@needs_exact_machine
@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("prog, args", [
    ("tlb_stress", ["300", "3"]), ("cow_fork", []), ("segv", []), ("munmap_hole", []),
])
def test_skipping_unicorns_state_sync_changes_no_count_and_no_pc(
        arch: str, prog: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The block hook switches off Unicorn's CPU-state sync before memory hooks
    (exact.c); with the sync kept (MMUEMU_EXACT_SYNC_PC=1) every count, the
    guest's exit and the segfault line (its ip) are the same."""
    from mmuemu.config import RunConfig
    from mmuemu.emu.exact import SYNC_PC_ENV
    from mmuemu.emu.machine import Machine
    from tests.conftest import guest
    import tempfile
    path = guest(arch, prog)
    out = []
    for sync in ("1", "0"):
        monkeypatch.setenv(SYNC_PC_ENV, sync)
        m = Machine(path, args, rconfig=RunConfig(mode="exact",
                                                  root=tempfile.mkdtemp(prefix="mmuemu-sync-")))
        res = m.run()
        assert m.exact is not None and m.exact.skips_pc_sync == (sync == "0")
        st = m.stats()
        # the architected counts; exact_model's alias_fills, uc_flushes and steals
        # count how the PA -> VA map was kept in Unicorn's table, whose size QEMU
        # changes with wall time (its 100 ms resize windows): not compared
        model = st["exact_model"]
        out.append((res.exit_code, res.signal, res.message,
                    {k: st[k] for k in ("faults", "instructions", "tlb", "walks",
                                        "flushes", "cycles")},
                    model["lookups"], model["invalidated"], model["unknown_addresses"]))
    assert out[0] == out[1]
    if prog == "segv":
        assert out[0][1] == 11 and " ip " in out[0][2]


@needs_exact_machine
def test_cli_profile_and_override_errors_are_one_line(tmp_path: Any) -> None:
    import subprocess
    import sys
    from tests.conftest import guest
    path = guest("x86_64", "hello")
    for extra, expect in (
            (["--tlb", "l1d=32x5"], "override 'l1d=32x5': tlb.l1d.ways: 5 does not divide "
                                    "entries 32"),
            (["--profile", "neoverse-n1"], "profile neoverse-n1 is for aarch64, the program "
                                           "is x86_64"),
            (["--profile", "zen9"], "unknown profile 'zen9'")):
        p = subprocess.run([sys.executable, "-m", "mmuemu", "run", "--mode", "exact", *extra,
                            path], capture_output=True, text=True)
        assert p.returncode == 2
        assert p.stderr.count("\n") == 1 and expect in p.stderr, p.stderr


# --- benchmark (opt-in) ------------------------------------------------------------------------

BENCH = os.environ.get("MMUEMU_BENCH") == "1"


def _bench_raw(arch: Arch, pages: int, rounds: int) -> float:
    """Raw Unicorn: default TLB mode, the data identity-mapped, no hooks."""
    isa = ISAS[arch]
    uc = Uc(isa.uc_arch, isa.uc_mode)
    phys = PhysMem(64 << 20)
    uc.mem_map_ptr(0, phys.size, unicorn.UC_PROT_ALL, phys.address())
    phys.write(CODE_PFN << 12, isa.loop)
    uc.reg_write(isa.base, DATA_PFN << 12)
    uc.reg_write(isa.rounds, rounds)
    uc.reg_write(isa.pages, pages)
    uc.reg_write(isa.stride, PAGE)
    t = time.perf_counter()
    uc.emu_start(CODE_PFN << 12, (CODE_PFN << 12) + isa.loop_end)
    return time.perf_counter() - t


def _bench_rig(arch: Arch, pages: int, rounds: int, exact: bool) -> tuple[float, Rig | None]:
    isa = ISAS[arch]
    if exact:
        rig = make_rig(arch, mem=64 << 20)
        _map_data(rig, pages)
        uc = rig.uc
    else:
        rig = None
        fmt = FORMATS[arch]
        phys = PhysMem(64 << 20)
        uc = Uc(isa.uc_arch, isa.uc_mode)
        if arch is Arch.ARM64:
            uc.ctl_set_page_size(4096)
        uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
        uc.mem_map_ptr(0, phys.size, unicorn.UC_PROT_ALL, phys.address())
        pt = PageTables(phys, fmt)
        pt.map(CODE_VA, CODE_PFN, RX)
        phys.write(CODE_PFN << 12, isa.loop)
        for i in range(pages):
            pt.map(DATA_VA + i * PAGE, DATA_PFN + i, SHARED_RW)
        fast = NativeFastPath(phys, arch)
        fast.set_root(pt.root)
        hook_add_native(uc, unicorn.UC_HOOK_TLB_FILL, fast.tlb_fill_addr, fast.state_addr)
        hook_add_native(uc, unicorn.UC_HOOK_BLOCK, fast.block_hook_addr, fast.state_addr)
        _bench_rig.keep = (phys, fast)  # type: ignore[attr-defined]
    uc.reg_write(isa.base, DATA_VA)
    uc.reg_write(isa.rounds, rounds)
    uc.reg_write(isa.pages, pages)
    uc.reg_write(isa.stride, PAGE)
    t = time.perf_counter()
    uc.emu_start(CODE_VA, CODE_VA + isa.loop_end)
    return time.perf_counter() - t, rig


@pytest.mark.skipif(not BENCH, reason="set MMUEMU_BENCH=1 to run the benchmark")
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("pages", [4096, 16])
def test_benchmark(arch: Arch, pages: int) -> None:
    accesses = 1 << 24 if pages > 16 else 1 << 23
    rounds = accesses // pages
    raw = min(_bench_raw(arch, pages, rounds) for _ in range(3))
    fast = min(_bench_rig(arch, pages, rounds, False)[0] for _ in range(3))
    runs = [_bench_rig(arch, pages, rounds, True) for _ in range(3)]
    exact = min(t for t, _ in runs)
    rig = runs[0][1]
    assert rig is not None
    st = rig.exact.stats()
    assert st.lookups[Access.READ] == pages * rounds
    n = pages * rounds
    print(f"\n{arch.label} {pages} pages, {n:,} loads: raw {raw:.3f}s "
          f"({raw / n * 1e9:.1f} ns/access), fast {fast:.3f}s ({fast / raw:.2f}x raw), "
          f"exact {exact:.3f}s ({exact / raw:.2f}x raw, {exact / fast:.2f}x fast, "
          f"+{(exact - raw) / n * 1e9:.1f} ns/access over raw); "
          f"L1d misses {st.tlb.l1d.misses:,}, L2 misses {st.tlb.l2.misses:,}")
