"""The TLB reference model (mmuemu/hw/tlb.py) against analytic expectations.

* Fully associative LRU of E entries, W pages touched cyclically R rounds:
  W compulsory misses when W <= E, W*R misses when W > E (LRU always evicts
  the page needed next).
* Set-associative conflicts: pages with equal vpn % sets compete for one
  set's ways.
* ASIDs / PCIDs keep translations across an address-space switch; without
  them every switch flushes, so every round misses again.
* Invalidation ops remove exactly the entries the architecture says; the
  kernel model issues them on munmap and mprotect.
"""
from __future__ import annotations

from pathlib import Path
from typing import Hashable

import pytest

from mmuemu._types import Access, Arch
from mmuemu.hw.arm64.pte import Arm64Pte
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.tlb import (
    ARM64_MAX_TLBI_OPS, FLUSH_OP_NAMES, LINUX_TLB_FLUSH, X86_FLUSH_CEILING, X86_NR_DYN_ASIDS,
    Arm64TlbFlush, LinuxTlbFlush, Cr3Write, FlushAll, FlushAsid, FlushVa, Invlpg, InvpcidAddr, InvpcidAll,
    InvpcidAllGlobal, InvpcidSingle, MmuModel, Outcome, SetAssocTlb, TlbConfig, TlbEntry,
    TlbHierarchy, TlbiOp, TlbiAside1is, TlbiVae1is, TlbiVale1is, TlbiVmalle1is, X86TlbFlush,
)
from mmuemu.hw.x86_64.pte import X86_64Pte
from mmuemu.kernel.fault import AccessType, do_user_addr_fault
from mmuemu.kernel.mm_types import MmStruct
from mmuemu.kernel.mmap import (
    MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, do_mmap, do_mprotect, do_munmap,
)
from mmuemu.hw.pte import VmProt
from tests.conftest import make_rig
from tests.hw.test_pwc import FORMATS, PageTables

VmProtRX = VmProt(True, False, True, False)
ARCHES = [pytest.param(Arch.X86_64, id="x86_64"), pytest.param(Arch.ARM64, id="arm64")]
PAGE = 4096
R = Access.READ


def _cyclic_misses(tlb: SetAssocTlb, vpns: list[int], rounds: int) -> int:
    misses = 0
    for _ in range(rounds):
        for vpn in vpns:
            if tlb.lookup(vpn, 0, 1) is None:
                misses += 1
                tlb.insert(TlbEntry(vpn=vpn, asid=0, global_=False, perms=1))
    assert misses == tlb.stats.misses
    return misses


@pytest.mark.parametrize("replacement", ["lru", "plru"])
@pytest.mark.parametrize("entries, pages", [(8, 1), (8, 5), (8, 8), (8, 9), (8, 16),
                                            (48, 48), (48, 49), (64, 200)])
def test_fully_associative_cyclic(entries: int, pages: int, replacement: str) -> None:
    rounds = 5
    tlb = SetAssocTlb(TlbConfig(entries, entries, replacement=replacement))
    misses = _cyclic_misses(tlb, list(range(100, 100 + pages)), rounds)
    if pages <= entries:
        assert misses == pages
    elif replacement == "lru":
        assert misses == pages * rounds
    else:  # bit-PLRU is not LRU: cyclic overflow still misses, but not always every time
        assert pages < misses <= pages * rounds
    assert tlb.stats.hits == pages * rounds - misses


def test_set_associative_conflicts() -> None:
    cfg = TlbConfig(entries=8, ways=2)  # 4 sets x 2 ways
    rounds = 6
    # three pages in set 0 through two ways: every access misses
    assert _cyclic_misses(SetAssocTlb(cfg), [0, 4, 8], rounds) == 3 * rounds
    # two pages in set 0: they fit
    assert _cyclic_misses(SetAssocTlb(cfg), [0, 4], rounds) == 2
    # eight pages spread over the four sets fill the TLB exactly: compulsory only
    assert _cyclic_misses(SetAssocTlb(cfg), list(range(8)), rounds) == 8
    # a ninth page in set 1 (vpn 9): set 1 then holds three pages and thrashes
    pages = list(range(8)) + [9]
    misses = _cyclic_misses(SetAssocTlb(cfg), pages, rounds)
    assert misses == 6 + 3 * rounds  # sets 0, 2, 3: 6 compulsory; set 1 (1, 5, 9) thrashes


def test_set_index_is_vpn_modulo_sets_even_when_not_a_power_of_two() -> None:
    tlb = SetAssocTlb(TlbConfig(entries=10, ways=2))  # 5 sets
    assert [tlb.set_index(v) for v in (0, 4, 5, 7, 12)] == [0, 4, 0, 2, 2]
    assert _cyclic_misses(tlb, [0, 5, 10], 4) == 12  # all in set 0


def test_plru_differs_from_lru_where_it_should() -> None:
    """Fill A B C D, touch A B C; bit-PLRU then evicts A (all bits were set by C,
    so only C's stays), true LRU evicts D (the oldest)."""
    a, b, c, d, e = 0, 1, 2, 3, 4
    for policy, evicted in (("lru", d), ("plru", a)):
        tlb = SetAssocTlb(TlbConfig(4, 4, replacement=policy))
        for vpn in (a, b, c, d):
            tlb.insert(TlbEntry(vpn, 0, False, 1))
        for vpn in (a, b, c):
            assert tlb.lookup(vpn, 0, 1) is not None
        tlb.insert(TlbEntry(e, 0, False, 1))
        left = {x[0] for x in tlb.contents()[0] if x is not None}
        assert left == {a, b, c, d, e} - {evicted}, policy


def test_a_match_without_the_permission_is_a_miss_and_is_replaced_in_place() -> None:
    tlb = SetAssocTlb(TlbConfig(4, 4))
    tlb.insert(TlbEntry(7, 1, False, 1))  # read-only fill (clean page)
    assert tlb.lookup(7, 1, 2) is None  # a write: walk again
    tlb.insert(TlbEntry(7, 1, False, 3))
    assert tlb.lookup(7, 1, 2) is not None
    assert sum(x is not None for x in tlb.contents()[0]) == 1


def test_global_entries_serve_every_asid_and_replace_the_pages_other_entries() -> None:
    tlb = SetAssocTlb(TlbConfig(4, 4))
    tlb.insert(TlbEntry(7, 1, False, 1))
    tlb.insert(TlbEntry(7, 2, False, 1))
    assert tlb.lookup(7, 3, 1) is None
    tlb.insert(TlbEntry(7, 3, True, 1))
    assert [x for x in tlb.contents()[0] if x] == [(7, 3, True, 1)]
    assert all(tlb.lookup(7, asid, 1) is not None for asid in (1, 2, 9))


# --- the hierarchy ---------------------------------------------------------------------------

def _model(arch: Arch, l1d: TlbConfig, l2: TlbConfig, pages: int,
           pwc: tuple[int, int, int] = (0, 0, 0)) -> tuple[MmuModel, int]:
    phys = PhysMem(4 << 20)
    pt = PageTables(phys, FORMATS[arch])
    base = 0x1000_0000
    for i in range(pages):
        pt.map(base + i * PAGE, 0x200 + i)
    m = MmuModel(phys, FORMATS[arch], TlbConfig(16, 4), l1d, l2, pwc)
    m.set_context(pt.root, 1)
    return m, base


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("pages", [4, 8, 9, 40])
def test_hierarchy_l1_misses_l2_hits_and_walks(arch: Arch, pages: int) -> None:
    rounds = 4
    l1d, l2 = TlbConfig(8, 8), TlbConfig(64, 4)
    m, base = _model(arch, l1d, l2, pages)
    for _ in range(rounds):
        for i in range(pages):
            m.access(base + i * PAGE + 8, R)
    st = m.tlb.stats
    l1_misses = pages if pages <= 8 else pages * rounds
    assert st.l1d.misses == l1_misses and st.l1d.hits == pages * rounds - l1_misses
    # 64 entries, 16 sets x 4: 40 consecutive pages spread 2 or 3 per set -> all stay
    assert st.l2.misses == pages and st.l2.hits == l1_misses - pages
    assert m.walk_stats.count == pages and m.walk_stats.mem_refs == 4 * pages
    assert st.l1i.hits == st.l1i.misses == 0


def test_fetches_use_the_itlb_and_share_the_l2() -> None:
    m, base = _model(Arch.X86_64, TlbConfig(8, 8), TlbConfig(64, 4), 2)
    assert m.access(base, Access.FETCH) is Outcome.FAULT  # PAGE_SHARED is NX on x86
    pt_fmt = X86_64Pte()
    phys, root = m.phys, m.root
    code = 0x40_0000
    pt = PageTables(phys, pt_fmt, first_pfn=0x300)
    pt.root = root
    pt.map(code, 0x280, VmProtRX)
    assert m.access(code, Access.FETCH) is Outcome.WALK
    assert m.access(code + 4, Access.FETCH) is Outcome.L1_HIT
    assert m.access(code + 8, R) is Outcome.L2_HIT  # the data side finds it in the L2
    assert m.tlb.stats.l1i.as_dict() == {"hits": 1, "misses": 2}
    assert m.tlb.stats.l1d.misses == 1  # the NX fetch missed in the iTLB, not here


# --- address-space switches --------------------------------------------------------------------

def _two_spaces(arch: Arch, asid_bits: int, pages: int, rounds: int,
                mms: int = 2) -> tuple[MmuModel, LinuxTlbFlush]:
    phys = PhysMem(8 << 20)
    fmt = FORMATS[arch]
    roots = []
    next_pfn = 1
    for k in range(mms):
        pt = PageTables(phys, fmt, first_pfn=next_pfn)
        for i in range(pages):
            pt.map(0x1000_0000 + i * PAGE, 0x400 + k * pages + i)
        next_pfn = pt.next_pfn
        roots.append(pt.root)
    m = MmuModel(phys, fmt, TlbConfig(16, 4), TlbConfig(64, 64), TlbConfig(1024, 8), (0, 0, 4))
    flush = LINUX_TLB_FLUSH[arch](asid_bits, sink=m.invalidate)
    for _ in range(rounds):
        for k in range(mms):
            asid = flush.switch_mm(k)
            m.set_context(roots[k], asid)
            for i in range(pages):
                m.access(0x1000_0000 + i * PAGE, R)
    return m, flush


@pytest.mark.parametrize("arch, bits", [(Arch.X86_64, 12), (Arch.ARM64, 16), (Arch.ARM64, 8)])
def test_asids_keep_translations_across_switches(arch: Arch, bits: int) -> None:
    pages, rounds = 10, 5
    m, flush = _two_spaces(arch, bits, pages, rounds)
    st = m.tlb.stats
    assert st.l1d.misses == 2 * pages  # both spaces fit in the 64-entry L1d
    assert st.l1d.hits == 2 * pages * (rounds - 1)
    assert m.walk_stats.count == 2 * pages
    if arch is Arch.X86_64:  # two new PCIDs, then no-flush CR3 writes
        assert flush.counts == {"cr3_write": 2 * rounds}
    else:
        assert flush.counts == {}


@pytest.mark.parametrize("arch", ARCHES)
def test_without_asids_every_switch_flushes(arch: Arch) -> None:
    pages, rounds = 10, 5
    m, flush = _two_spaces(arch, 0, pages, rounds)
    assert m.tlb.stats.l1d.misses == 2 * pages * rounds
    assert m.walk_stats.count == 2 * pages * rounds
    name = "cr3_write" if arch is Arch.X86_64 else "tlbi_vmalle1is"
    assert flush.counts == {name: 2 * rounds}


def test_x86_keeps_six_pcids_per_cpu() -> None:
    """TLB_NR_DYN_ASIDS = 6: six address spaces keep their translations, a
    seventh makes every switch reuse (and flush) a PCID slot."""
    pages, rounds = 4, 3
    m, _ = _two_spaces(Arch.X86_64, 12, pages, rounds, mms=X86_NR_DYN_ASIDS)
    assert m.tlb.stats.l1d.misses == X86_NR_DYN_ASIDS * pages
    m, _ = _two_spaces(Arch.X86_64, 12, pages, rounds, mms=X86_NR_DYN_ASIDS + 1)
    assert m.tlb.stats.l1d.misses == (X86_NR_DYN_ASIDS + 1) * pages * rounds


def test_arm64_asid_rollover_flushes_everything() -> None:
    flush = Arm64TlbFlush(asid_bits=2)  # ASIDs 1..3
    assert [flush.switch_mm(k) for k in "abc"] == [1, 2, 3]
    assert flush.switch_mm("a") == 1 and flush.counts == {}
    assert flush.switch_mm("d") == 1 and flush.counts == {"tlbi_vmalle1is": 1}
    assert flush.switch_mm("a") == 2  # a new generation: "a" gets a new ASID


# --- invalidation ops -----------------------------------------------------------------------

ENTRIES = [TlbEntry(vpn, asid, glob, 1) for vpn in (5, 6) for asid in (1, 2)
           for glob in (False, True)]


def _matched(op: TlbiOp) -> set[tuple[int, int, bool]]:
    return {(e.vpn, e.asid, e.global_) for e in ENTRIES if op.match(e)}


def _all(pred: object) -> set[tuple[int, int, bool]]:
    assert callable(pred)
    return {(e.vpn, e.asid, e.global_) for e in ENTRIES if pred(e)}


@pytest.mark.parametrize("op, expect", [
    (FlushAll(), lambda e: True),
    (FlushAsid(asid=1), lambda e: e.asid == 1 and not e.global_),
    (FlushVa(vpn=5, asid=1), lambda e: e.vpn == 5 and (e.global_ or e.asid == 1)),
    (Invlpg(vpn=5, asid=1), lambda e: e.vpn == 5 and (e.global_ or e.asid == 1)),
    (InvpcidAddr(vpn=5, asid=1), lambda e: e.vpn == 5 and e.asid == 1 and not e.global_),
    (InvpcidSingle(asid=2), lambda e: e.asid == 2 and not e.global_),
    (InvpcidAllGlobal(), lambda e: True),
    (InvpcidAll(), lambda e: not e.global_),
    (Cr3Write(pcid=1, noflush=False), lambda e: e.asid == 1 and not e.global_),
    (Cr3Write(pcid=1, noflush=True), lambda e: False),
    (TlbiVae1is(vpn=6, asid=2), lambda e: e.vpn == 6 and (e.global_ or e.asid == 2)),
    (TlbiVale1is(vpn=6, asid=2), lambda e: e.vpn == 6 and (e.global_ or e.asid == 2)),
    (TlbiAside1is(asid=2), lambda e: e.asid == 2 and not e.global_),
    (TlbiVmalle1is(), lambda e: True),
])
def test_invalidation_ops_match_exactly_what_they_should(op: TlbiOp, expect: object) -> None:
    assert _matched(op) == _all(expect)
    tlb = SetAssocTlb(TlbConfig(64, 64))
    for e in ENTRIES:  # 8 distinct tags (a global fill would replace its page's others)
        tlb.sets[0][ENTRIES.index(e)] = e
    removed = tlb.invalidate(op)
    assert removed == len(_all(expect)) == tlb.invalidated
    left = {(x[0], x[1], x[2]) for x in tlb.contents()[0] if x is not None}
    assert left == {(e.vpn, e.asid, e.global_) for e in ENTRIES} - _all(expect)


def test_flush_op_names_cover_the_ops_linux_issues() -> None:
    assert set(FLUSH_OP_NAMES[Arch.X86_64]) == {"invlpg", "invpcid", "cr3_write"}
    assert set(FLUSH_OP_NAMES[Arch.ARM64]) == {"tlbi_vae1is", "tlbi_vale1is", "tlbi_aside1is",
                                                "tlbi_vmalle1is"}


# --- what Linux issues ------------------------------------------------------------------------

def test_x86_flush_policy() -> None:
    ops: list[TlbiOp] = []
    f = X86TlbFlush(asid_bits=12, sink=ops.append)
    pcid = f.switch_mm("mm")
    assert ops == [Cr3Write(pcid=pcid, noflush=False)]  # a new PCID is flushed once
    ops.clear()
    f.flush_tlb_page("mm", 0x5123)
    assert ops == [Invlpg(vpn=5, asid=pcid)]
    ops.clear()
    f.flush_tlb_range("mm", 0x10000, 0x10000 + X86_FLUSH_CEILING * PAGE)
    assert len(ops) == X86_FLUSH_CEILING and all(isinstance(o, Invlpg) for o in ops)
    ops.clear()
    f.flush_tlb_range("mm", 0x10000, 0x10000 + (X86_FLUSH_CEILING + 1) * PAGE)
    assert ops == [Cr3Write(pcid=pcid, noflush=False)]
    ops.clear()
    f.flush_tlb_mm("mm")
    assert ops == [Cr3Write(pcid=pcid, noflush=False)]
    ops.clear()
    f.flush_tlb_mm("other")  # never ran here: nothing cached, nothing to do
    assert ops == []


def test_x86_flush_of_a_switched_out_mm_is_deferred_to_its_next_switch() -> None:
    ops: list[TlbiOp] = []
    f = X86TlbFlush(asid_bits=12, sink=ops.append)
    a = f.switch_mm("a")
    b = f.switch_mm("b")
    ops.clear()
    f.flush_tlb_range("a", 0, PAGE)
    assert ops == []
    assert f.switch_mm("a") == a and ops == [Cr3Write(pcid=a, noflush=False)]
    ops.clear()
    assert f.switch_mm("b") == b and ops == [Cr3Write(pcid=b, noflush=True)]


def test_arm64_flush_policy() -> None:
    ops: list[TlbiOp] = []
    f = Arm64TlbFlush(asid_bits=16, sink=ops.append)
    asid = f.switch_mm("mm")
    assert ops == []
    f.flush_tlb_page("mm", 0x5123)
    assert ops == [TlbiVale1is(vpn=5, asid=asid)]
    ops.clear()
    f.flush_tlb_range("mm", 0, (ARM64_MAX_TLBI_OPS - 1) * PAGE)
    assert len(ops) == ARM64_MAX_TLBI_OPS - 1 and all(isinstance(o, TlbiVae1is) for o in ops)
    ops.clear()
    f.flush_tlb_range("mm", 0, ARM64_MAX_TLBI_OPS * PAGE)
    assert ops == [TlbiAside1is(asid=asid)]
    ops.clear()
    f.flush_tlb_mm("mm")
    assert ops == [TlbiAside1is(asid=asid)]
    assert f.counts == {"tlbi_vale1is": 1, "tlbi_vae1is": ARM64_MAX_TLBI_OPS - 1,
                        "tlbi_aside1is": 2}


# --- the kernel model issues them: munmap, mprotect --------------------------------------------

class ModelFlush:
    """The kernel's TlbFlushOps driving LinuxTlbFlush into an MmuModel."""

    def __init__(self, flush: LinuxTlbFlush) -> None:
        self.flush = flush

    def key(self, mm: MmStruct) -> Hashable:
        return id(mm)

    def flush_tlb_page(self, mm: MmStruct, addr: int) -> None:
        self.flush.flush_tlb_page(id(mm), addr)

    def flush_tlb_range(self, mm: MmStruct, start: int, end: int) -> None:
        self.flush.flush_tlb_range(id(mm), start, end)

    def flush_tlb_mm(self, mm: MmStruct) -> None:
        self.flush.flush_tlb_mm(id(mm))


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_munmap_and_mprotect_invalidate(arch: str, tmp_path: Path) -> None:
    rig = make_rig(arch, tmp_path)
    a = Arch(arch)
    fmt = X86_64Pte() if a is Arch.X86_64 else Arm64Pte()
    mm = rig.task.mm
    m = MmuModel(rig.kern.phys, fmt, TlbConfig(16, 4), TlbConfig(16, 4), TlbConfig(256, 4),
                 (2, 4, 16))
    flush = LINUX_TLB_FLUSH[a](16 if a is Arch.ARM64 else 12, sink=m.invalidate)
    rig.kern.tlb = ModelFlush(flush)
    m.set_context(mm.pgd, flush.switch_mm(id(mm)))
    n = 4
    addr = do_mmap(mm, None, 0, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    for i in range(n):
        assert do_user_addr_fault(rig.task, addr + i * PAGE, AccessType.WRITE).signal == 0
        assert m.access(addr + i * PAGE, Access.WRITE) is Outcome.WALK
        assert m.access(addr + i * PAGE, Access.WRITE) is Outcome.L1_HIT

    # mprotect(PROT_READ) downgrades: the writable translations must go
    assert do_mprotect(mm, addr, n * PAGE, PROT_READ) == 0
    for i in range(n):
        assert m.tlb.l1d.probe((addr >> 12) + i, m.asid) is None
        assert m.access(addr + i * PAGE, Access.WRITE) is Outcome.FAULT
        assert m.access(addr + i * PAGE, R) is Outcome.WALK

    # munmap: no translation may survive, and a walk finds nothing
    assert do_munmap(mm, addr, 2 * PAGE) == 0
    for i in range(2):
        assert all(t.probe((addr >> 12) + i, m.asid) is None for t in m.tlb.levels())
        assert m.access(addr + i * PAGE, R) is Outcome.FAULT
    assert m.access(addr + 2 * PAGE, R) is Outcome.L1_HIT  # the rest stays mapped and cached
    assert sum(flush.counts.values()) >= 2


def test_hierarchy_levels_and_stats_dict() -> None:
    h = TlbHierarchy(TlbConfig(4, 4), TlbConfig(4, 2), TlbConfig(8, 2))
    assert [t.nsets for t in h.levels()] == [1, 2, 4]
    assert h.stats.as_dict() == {"l1i": {"hits": 0, "misses": 0},
                                 "l1d": {"hits": 0, "misses": 0},
                                 "l2": {"hits": 0, "misses": 0}}


@pytest.mark.parametrize("kwargs", [dict(entries=0, ways=1), dict(entries=8, ways=3),
                                    dict(entries=8, ways=2, replacement="fifo"),
                                    dict(entries=8, ways=2, latency=-1)])
def test_tlb_config_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TlbConfig(**kwargs)  # type: ignore[arg-type]
