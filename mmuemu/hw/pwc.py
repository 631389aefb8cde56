"""Page-walk caches and the walk that uses them (pure-Python reference).

x86-64 paging-structure caches (Intel SDM vol. 3A 4.10.3): the PML4 cache
(tag VA[47:39]), the PDPTE cache (VA[47:30]) and the PDE cache (VA[47:21]).
An entry holds the next table's physical address plus the permissions
accumulated down to it (R/W ANDed, XD ORed; only entries with U/S set are
cached). A walk looks for the longest match first (PDE, then PDPTE, then
PML4) and reads only the levels below it: a PDE-cache hit leaves one memory
reference, the PTE. Entries are tagged with the PCID. G applies only to leaf
entries, so walk-cache entries are never global.

arm64 walk cache (Arm Neoverse N1 / Cortex-A76 TRM, "walk cache RAM: holds
the result of a stage 1 translation up to but not including the last
level"): the same structure. Level ``n`` caches the level-``n`` table
descriptor, tagged by the VA bits above that level's output; N1 is
configured with only the level-2 cache.

Here every level is a small fully associative LRU cache of ``entries``
(0 = the level is not cached); the sizes are in the profile (``[pwc]``).

The walk (:func:`walk_cached`) follows the rules of
:func:`mmuemu.hw.walker.walk` (the specification of the fill-path walker)
with two differences, both because in exact mode it runs after Unicorn's
fill has already walked for the same access:

* it never writes the tables: no accessed flag in table entries, no leaf
  A/D or AF/DBM write-back. The permissions it returns are computed from the
  entry the hardware would write back (``fmt.hw_update``), so a write walk
  grants WRITE as the real walker's would;
* it ignores ``hw_af`` (the fill path has faulted, and the kernel has set
  the flags, before this walk runs).

It counts one memory reference per table entry read, per level, and one
walk-cache hit per walk that started below level 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from mmuemu._types import Access
from mmuemu.hw.arm64 import pte as a64
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import ADDR_MASK, LEVELS, PteFormat
from mmuemu.hw.walker import PROT_EXEC, PROT_READ, PROT_WRITE, TABLE_RULES
from mmuemu.hw.x86_64 import pte as x86

#: levels with a walk cache (0 .. LEVELS-2: every level that points at a table)
CACHED_LEVELS = LEVELS - 1

#: The profile keys of the three walk-cache levels, per page-table format name.
PWC_LEVEL_NAMES: dict[str, tuple[str, str, str]] = {
    x86.X86_64Pte.name: ("pml4e", "pdpte", "pde"),
    a64.Arm64Pte.name: ("l0", "l1", "l2"),
}


def prefix_shift(level: int) -> int:
    """The tag of a level-``level`` walk-cache entry is ``va >> prefix_shift(level)``."""
    return 39 - 9 * level


@dataclass(frozen=True, slots=True)
class WalkCacheEntry:
    """A cached table entry of ``level``: it points at the level+1 table.

    Attributes:
        level: 0 .. 2, the level of the entry cached.
        prefix: ``va >> prefix_shift(level)`` for the addresses it serves.
        asid: ASID / PCID the walk ran under.
        table: physical address of the next-level table.
        writable: R/W ANDed over this entry and those above it (x86; else True).
        nx: XD ORed over this entry and those above it (x86; else False).
    """

    level: int
    prefix: int
    asid: int
    table: int
    writable: bool
    nx: bool

    def covers(self, va: int) -> bool:
        """Is this entry used to translate ``va``?"""
        return va >> prefix_shift(self.level) == self.prefix


class WalkCache:
    """One level's cache: fully associative, LRU, tagged ``(prefix, asid)``."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.ways: list[Optional[WalkCacheEntry]] = [None] * entries
        self.age = [0] * entries
        self.clock = 0

    def _touch(self, w: int) -> None:
        self.clock += 1
        self.age[w] = self.clock

    def lookup(self, prefix: int, asid: int) -> Optional[WalkCacheEntry]:
        for w, e in enumerate(self.ways):
            if e is not None and e.prefix == prefix and e.asid == asid:
                self._touch(w)
                return e
        return None

    def insert(self, entry: WalkCacheEntry) -> None:
        if not self.entries:
            return
        for w, e in enumerate(self.ways):
            if e is not None and e.prefix == entry.prefix and e.asid == entry.asid:
                break
        else:
            w = next((i for i, e in enumerate(self.ways) if e is None), -1)
            if w < 0:
                w = self.age.index(min(self.age))
        self.ways[w] = entry
        self._touch(w)

    def invalidate(self, match: Callable[[WalkCacheEntry], bool]) -> int:
        n = 0
        for w, e in enumerate(self.ways):
            if e is not None and match(e):
                self.ways[w] = None
                self.age[w] = 0
                n += 1
        return n


class PagingStructureCaches:
    """The walk caches of levels 0 .. 2 (x86 PML4E/PDPTE/PDE; arm64 L0/L1/L2)."""

    def __init__(self, entries: tuple[int, int, int]) -> None:
        if len(entries) != CACHED_LEVELS or any(n < 0 for n in entries):
            raise ValueError(f"walk-cache sizes must be {CACHED_LEVELS} counts >= 0")
        self.levels = [WalkCache(n) for n in entries]

    def lookup(self, va: int, asid: int) -> Optional[WalkCacheEntry]:
        """The deepest cached entry serving ``va`` (PDE before PDPTE before PML4E)."""
        for level in range(CACHED_LEVELS - 1, -1, -1):
            cache = self.levels[level]
            if cache.entries:
                e = cache.lookup(va >> prefix_shift(level), asid)
                if e is not None:
                    return e
        return None

    def insert(self, entry: WalkCacheEntry) -> None:
        self.levels[entry.level].insert(entry)

    def invalidate(self, match: Callable[[WalkCacheEntry], bool]) -> int:
        """Drop every entry ``match`` accepts; returns how many."""
        return sum(c.invalidate(match) for c in self.levels)

    def contents(self) -> list[list[Optional[tuple[int, int, int, bool, bool]]]]:
        """Every way as ``(prefix, asid, table, writable, nx)`` or None (for tests)."""
        return [[None if e is None else (e.prefix, e.asid, e.table, e.writable, e.nx)
                 for e in c.ways] for c in self.levels]


@dataclass(slots=True)
class WalkStats:
    """What the exact-mode walker did."""

    count: int = 0
    refs: list[int] = field(default_factory=lambda: [0] * LEVELS)
    pwc_hits: list[int] = field(default_factory=lambda: [0] * CACHED_LEVELS)
    faults: int = 0

    @property
    def mem_refs(self) -> int:
        return sum(self.refs)

    @property
    def refs_saved(self) -> int:
        """Memory references the walk caches saved (a level-n hit saves n + 1)."""
        return sum((level + 1) * n for level, n in enumerate(self.pwc_hits))

    def as_dict(self) -> dict[str, object]:
        return {"count": self.count, "mem_refs": self.mem_refs,
                "pwc_hits": sum(self.pwc_hits), "faults": self.faults,
                "mem_refs_by_level": list(self.refs),
                "pwc_hits_by_level": list(self.pwc_hits),
                "mem_refs_saved": self.refs_saved}


@dataclass(frozen=True, slots=True)
class CachedWalk:
    """Outcome of one exact-mode walk.

    Attributes:
        ok: the access is allowed.
        perms: UC_PROT_* bits of the translation (0 on a fault).
        global_: the leaf is global (x86 G; arm64 nG clear).
        mem_refs: table entries read by this walk.
        level: where the walk stopped (3 = leaf).
    """

    ok: bool
    perms: int
    global_: bool
    mem_refs: int
    level: int


def _is_global(fmt: PteFormat, pte: int) -> bool:
    if fmt.name == a64.Arm64Pte.name:
        return not pte & a64.PTE_NG
    return bool(pte & x86._PAGE_GLOBAL)


def walk_cached(phys: PhysMem, fmt: PteFormat, root_pa: int, va: int, access: Access,
                asid: int, pwc: PagingStructureCaches, stats: WalkStats) -> CachedWalk:
    """Translate ``va`` for ``access`` using and filling the walk caches (no writes).

    See the module docstring for how this differs from
    :func:`mmuemu.hw.walker.walk`.
    """
    rules = TABLE_RULES[fmt.name]
    stats.count += 1
    refs = 0

    def fault(level: int) -> CachedWalk:
        stats.faults += 1
        return CachedWalk(ok=False, perms=0, global_=False, mem_refs=refs, level=level)

    if va < 0 or va >= fmt.task_size:
        return fault(0)
    size = phys.size
    table = root_pa & ADDR_MASK
    writable, nx = True, False
    start = 0
    hit = pwc.lookup(va, asid)
    if hit is not None:
        stats.pwc_hits[hit.level] += 1
        start = hit.level + 1
        table, writable, nx = hit.table, hit.writable, hit.nx
    leaf = LEVELS - 1
    for level in range(start, leaf):
        entry_pa = table + 8 * fmt.index(va, level)
        if entry_pa + 8 > size:
            return fault(level)
        entry = phys.read_u64(entry_pa)
        refs += 1
        stats.refs[level] += 1
        if not fmt.table_present(entry):
            return fault(level)
        if rules.user and not entry & rules.user:
            return fault(level)
        if rules.write and not entry & rules.write:
            writable = False
        if entry & rules.nx:
            nx = True
        table = entry & ADDR_MASK
        pwc.insert(WalkCacheEntry(level=level, prefix=va >> prefix_shift(level), asid=asid,
                                  table=table, writable=writable, nx=nx))

    entry_pa = table + 8 * fmt.index(va, leaf)
    if entry_pa + 8 > size:
        return fault(leaf)
    pte = phys.read_u64(entry_pa)
    refs += 1
    stats.refs[leaf] += 1
    if (access == Access.WRITE and not writable) or (access == Access.FETCH and nx):
        return fault(leaf)
    new = fmt.hw_update(pte, access)
    if new is None:
        return fault(leaf)
    perms_of = fmt.leaf_perms(new)
    perms = 0
    if perms_of.read:
        perms |= PROT_READ
    if perms_of.exec and not nx:
        perms |= PROT_EXEC
    if writable and fmt.fill_writable(new):
        perms |= PROT_WRITE
    return CachedWalk(ok=True, perms=perms, global_=_is_global(fmt, new), mem_refs=refs,
                      level=leaf)
