"""Page-walk caches (mmuemu/hw/pwc.py): which levels a walk skips, and invalidation.

Expected reference counts come from the paging structures: a full walk reads
one entry per level (4); a PDE-cache (x86) / level-2 walk-cache (arm64) hit
leaves only the leaf (1); a PDPTE hit 2; a PML4E hit 3.
"""
from __future__ import annotations

import random

import pytest

from mmuemu._types import Access, Arch
from mmuemu.hw import walker
from mmuemu.hw.arm64 import pte as a64
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import ADDR_MASK, PteFormat, VmProt
from mmuemu.hw.pwc import PagingStructureCaches, WalkStats, walk_cached
from mmuemu.hw.tlb import (
    Cr3Write, FlushAll, Invlpg, InvpcidSingle, TlbiAside1is, TlbiVae1is, TlbiVale1is,
)
from mmuemu.hw.x86_64 import pte as x86

FORMATS: dict[Arch, PteFormat] = {Arch.X86_64: x86.X86_64Pte(), Arch.ARM64: a64.Arm64Pte()}
ARCHES = [pytest.param(Arch.X86_64, id="x86_64"), pytest.param(Arch.ARM64, id="arm64")]
RW = VmProt(True, True, False, False)
RO = VmProt(True, False, False, False)
RX = VmProt(True, False, True, False)
SHARED_RW = VmProt(True, True, False, True)
PAGE = 4096


class PageTables:
    """Page tables built as the kernel builds them; tables from frame 1 up."""

    def __init__(self, phys: PhysMem, fmt: PteFormat, first_pfn: int = 1) -> None:
        self.phys = phys
        self.fmt = fmt
        self.next_pfn = first_pfn
        self.root = self._alloc()

    def _alloc(self) -> int:
        pa = self.next_pfn << 12
        self.next_pfn += 1
        return pa

    def _leaf_pa(self, va: int) -> int:
        table = self.root
        for level in range(3):
            epa = table + 8 * self.fmt.index(va, level)
            entry = self.phys.read_u64(epa)
            if not self.fmt.table_present(entry):
                entry = self.fmt.mk_table(self._alloc())
                self.phys.write_u64(epa, entry)
            table = entry & ADDR_MASK
        return table + 8 * self.fmt.index(va, 3)

    def map(self, va: int, pfn: int, prot: VmProt = SHARED_RW, *, glob: bool = False,
            dirty: bool = True) -> None:
        """Map one page (dirty and young by default, so no fill needs a write-back)."""
        pte = self.fmt.pfn_pte(pfn, self.fmt.protection_map(prot))
        pte = self.fmt.pte_mkyoung(pte)
        if dirty and prot.write and prot.shared:
            pte = self.fmt.pte_mkdirty(pte)
        if glob:
            pte = pte | x86._PAGE_GLOBAL if self.fmt.name == "x86_64" else pte & ~a64.PTE_NG
        self.phys.write_u64(self._leaf_pa(va), pte)

    def set_pte(self, va: int, pte: int) -> None:
        self.phys.write_u64(self._leaf_pa(va), pte)

    def leaf(self, va: int) -> int:
        return self.phys.read_u64(self._leaf_pa(va))


def _walk(phys: PhysMem, pt: PageTables, pwc: PagingStructureCaches, stats: WalkStats,
          va: int, access: Access = Access.READ, asid: int = 1) -> int:
    res = walk_cached(phys, pt.fmt, pt.root, va, access, asid, pwc, stats)
    assert res.ok
    return res.mem_refs


@pytest.mark.parametrize("arch", ARCHES)
def test_neighbouring_page_walk_reads_only_the_leaf(arch: Arch) -> None:
    phys = PhysMem(1 << 20)
    pt = PageTables(phys, FORMATS[arch])
    base = 0x40_0000
    for i in range(3):
        pt.map(base + i * PAGE, 0x80 + i)
    pwc = PagingStructureCaches((0, 0, 4))  # only the level-2 (PDE / L2 descriptor) cache
    stats = WalkStats()
    assert _walk(phys, pt, pwc, stats, base) == 4
    assert _walk(phys, pt, pwc, stats, base + PAGE) == 1
    assert _walk(phys, pt, pwc, stats, base + 2 * PAGE + 8) == 1
    assert stats.count == 3 and stats.refs == [1, 1, 1, 3] and stats.pwc_hits == [0, 0, 2]
    assert stats.mem_refs == 6 and stats.refs_saved == 6


@pytest.mark.parametrize("arch", ARCHES)
def test_longest_prefix_decides_how_many_levels_are_skipped(arch: Arch) -> None:
    phys = PhysMem(1 << 20)
    pt = PageTables(phys, FORMATS[arch])
    va = 0x40_0000
    same_1g = va + (2 << 20)  # another 2 MiB region (PDE), same PDPTE
    same_512g = va + (1 << 30)  # another 1 GiB region (PDPTE), same PML4E
    far = va + (1 << 39)  # another PML4E
    for i, a in enumerate((va, same_1g, same_512g, far)):
        pt.map(a, 0x80 + i)
    pwc = PagingStructureCaches((2, 4, 32))
    stats = WalkStats()
    assert [_walk(phys, pt, pwc, stats, a) for a in (va, same_1g, same_512g, far)] == [4, 2, 3, 4]
    assert stats.pwc_hits == [1, 1, 0]
    assert [_walk(phys, pt, pwc, stats, a) for a in (va, same_1g, same_512g, far)] == [1, 1, 1, 1]


@pytest.mark.parametrize("arch", ARCHES)
def test_no_walk_cache_means_four_references_every_time(arch: Arch) -> None:
    phys = PhysMem(1 << 20)
    pt = PageTables(phys, FORMATS[arch])
    pt.map(0x40_0000, 0x80)
    pwc = PagingStructureCaches((0, 0, 0))
    stats = WalkStats()
    assert [_walk(phys, pt, pwc, stats, 0x40_0000) for _ in range(3)] == [4, 4, 4]
    assert stats.pwc_hits == [0, 0, 0]


def test_walk_cache_is_lru_and_tagged_by_asid() -> None:
    phys = PhysMem(1 << 20)
    pt = PageTables(phys, FORMATS[Arch.X86_64])
    regions = [0x40_0000 + i * (2 << 20) for i in range(3)]  # three PDEs
    for i, r in enumerate(regions):
        pt.map(r, 0x80 + i)
    pwc = PagingStructureCaches((0, 0, 2))
    stats = WalkStats()
    for r in regions:  # three PDEs through a 2-entry cache: the first is evicted
        _walk(phys, pt, pwc, stats, r)
    assert _walk(phys, pt, pwc, stats, regions[2]) == 1
    assert _walk(phys, pt, pwc, stats, regions[0]) == 4  # evicted (LRU)
    assert _walk(phys, pt, pwc, stats, regions[0], asid=2) == 4  # another PCID: no match


@pytest.mark.parametrize("op, refs_after", [
    (Invlpg(vpn=0x999, asid=1), 4),  # INVLPG drops every PSC entry of the current PCID
    (Invlpg(vpn=0x999, asid=2), 1),  # ... but not another PCID's
    (InvpcidSingle(asid=1), 4),
    (Cr3Write(pcid=1, noflush=True), 1),
    (Cr3Write(pcid=1, noflush=False), 4),
    (TlbiVale1is(vpn=0x400, asid=1), 1),  # last level only: walk caches kept
    (TlbiVae1is(vpn=0x400, asid=1), 4),  # the VA's walk entries
    (TlbiVae1is(vpn=0x400 + 512 * 512, asid=1), 1),  # another 1 GiB: its entries only
    (TlbiVae1is(vpn=0x400, asid=2), 1),
    (TlbiAside1is(asid=1), 4),
    (FlushAll(), 4),
])
def test_invalidation_of_walk_caches(op: Invlpg, refs_after: int) -> None:
    phys = PhysMem(1 << 20)
    pt = PageTables(phys, FORMATS[Arch.X86_64])
    va = 0x40_0000
    pt.map(va, 0x80)
    pwc = PagingStructureCaches((2, 4, 32))
    stats = WalkStats()
    _walk(phys, pt, pwc, stats, va)
    pwc.invalidate(op.match_walk)
    assert _walk(phys, pt, pwc, stats, va) == refs_after


@pytest.mark.parametrize("arch", ARCHES)
def test_read_only_walk_agrees_with_the_fill_walker_and_writes_nothing(arch: Arch) -> None:
    """Same ok/perms/level/refs as mmuemu.hw.walker.walk on random tables
    (with and without walk caches), and no byte of memory changed."""
    fmt = FORMATS[arch]
    rng = random.Random(7 + (arch is Arch.ARM64))
    phys = PhysMem(64 * PAGE)
    pt = PageTables(phys, fmt)
    vas = [rng.randrange(1 << 36) << 12 & (fmt.task_size - 1) for _ in range(6)]
    vas += [vas[0] + PAGE * i for i in range(1, 6)] + [fmt.task_size + PAGE]
    prots = [RW, RO, RX, SHARED_RW, VmProt(False, False, False, False)]
    for va in vas[:-1]:
        if rng.random() < 0.85:
            pt.map(va, 40 + rng.randrange(20), rng.choice(prots), dirty=rng.random() < 0.5)
            if rng.random() < 0.2:
                pt.set_pte(va, fmt.pte_mkold(pt.leaf(va)))
    before = phys.buf.copy()
    with_pwc = PagingStructureCaches((2, 4, 8))
    without = PagingStructureCaches((0, 0, 0))
    seen = set()
    for _ in range(400):
        va = rng.choice(vas) | rng.randrange(PAGE)
        access = rng.choice(list(Access))
        twin = PhysMem(phys.size)
        twin.buf[:] = phys.buf
        ref = walker.walk(twin, fmt, pt.root, va, access, hw_af=True)
        got = walk_cached(phys, fmt, pt.root, va, access, 1, without, WalkStats())
        cached = walk_cached(phys, fmt, pt.root, va, access, 1, with_pwc, WalkStats())
        assert (got.ok, got.perms, got.level, got.mem_refs) == \
            (ref.ok, ref.perms, ref.level, ref.mem_refs), (hex(va), access)
        assert (cached.ok, cached.perms) == (ref.ok, ref.perms)
        seen.add((ref.ok, ref.level))
    assert (phys.buf == before).all()
    assert {(True, 3), (False, 3)} <= seen


def test_global_leaf_is_reported() -> None:
    for arch, fmt in FORMATS.items():
        phys = PhysMem(1 << 20)
        pt = PageTables(phys, fmt)
        pt.map(0x1000, 0x80, glob=True)
        pt.map(0x2000, 0x81)
        pwc = PagingStructureCaches((0, 0, 0))
        g = walk_cached(phys, fmt, pt.root, 0x1000, Access.READ, 1, pwc, WalkStats())
        ng = walk_cached(phys, fmt, pt.root, 0x2000, Access.READ, 1, pwc, WalkStats())
        assert g.global_ and not ng.global_, arch


def test_walk_cache_sizes_are_checked() -> None:
    with pytest.raises(ValueError):
        PagingStructureCaches((1, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PagingStructureCaches((1, -2, 3))
