"""Translation lookaside buffers: the architected TLB hierarchy (pure-Python reference).

This module is the specification of the native exact-mode model
(``mmuemu/emu/_native/exact.c``); ``tests/emu/test_exact.py`` feeds the same
random access and invalidation sequences to both and compares every counter
and every way of every set.

Model (4 KiB pages only, user-mode accesses):

* A :class:`SetAssocTlb` has ``entries / ways`` sets. The set of a page is
  ``vpn % sets`` (vpn = va >> 12). Real CPUs hash more VA bits into the index
  (Intel's STLB and Arm's L2 TLB use undocumented hashes), so conflict
  patterns here are those of the plain modulo index, not of a given chip.
* An entry is tagged ``(vpn, asid, global)`` and carries the permissions the
  walk granted (UC_PROT_* bits: READ 1, WRITE 2, EXEC 4). It matches a
  lookup for ``(vpn, asid)`` if the vpn is equal and the entry is global or
  its ASID (PCID) is equal. Fills keep at most one matching entry per
  ``(vpn, asid)`` in a set (:meth:`SetAssocTlb.insert`).
* A lookup hits only if a matching entry also allows the access. A matching
  entry without the permission is a miss: the hardware walks again (x86 sets
  D on the first write through a clean entry, arm64 DBM likewise), and the
  refill replaces that entry in place.
* Replacement per set: ``lru`` (true LRU: a per-TLB clock stamps each way on
  hit and on fill; the victim is the first invalid way, else the oldest) or
  ``plru`` (bit-PLRU, also called MRU-bit or NRU: a hit or fill sets the way's
  bit, and when every bit of the set is then set, all others are cleared; the
  victim is the first invalid way, else the first way whose bit is clear).
  Bit-PLRU works for any associativity (Neoverse N1's L2 is 5-way), unlike
  tree-PLRU.
* :class:`TlbHierarchy`: fetches go to L1i, reads and writes to L1d; an L1
  miss looks up the unified L2; an L2 hit fills the L1; an L2 miss walks and
  fills L2 then L1. The levels are non-inclusive: an L2 eviction leaves the
  L1 copy alone.

Invalidations are objects (gem5's ``tlbi_op.hh`` style): each op says which
TLB entries (:meth:`TlbiOp.match`) and which walk-cache entries
(:meth:`TlbiOp.match_walk`) it removes. The x86 ops follow the Intel SDM
vol. 3A 4.10.4 (INVLPG and INVPCID also drop every paging-structure-cache
entry of the PCID; a CR3 write without the no-flush bit drops the PCID's
non-global entries), the arm64 ones the Arm ARM D8.13 (TLBI VAE1IS drops the
VA's entries of the ASID plus global ones, and the walk-cache entries for
the VA; VALE1IS only last-level entries).

:class:`MmuModel` ties the hierarchy, the walk caches (:mod:`mmuemu.hw.pwc`)
and the current address space (root, ASID) together.

:class:`LinuxTlbFlush` says which of these ops Linux issues for
``flush_tlb_page``/``flush_tlb_range``/``flush_tlb_mm`` and on an address-space
switch, per architecture, including the ASID/PCID allocation policy.
"""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Hashable, Optional

from mmuemu._types import PAGE_SHIFT, Access, Arch
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import PteFormat
from mmuemu.hw.pwc import CachedWalk, PagingStructureCaches, WalkCacheEntry, WalkStats, walk_cached

#: Permission bits of a TLB entry (Unicorn's uc_prot values).
PERM_READ = 1
PERM_WRITE = 2
PERM_EXEC = 4
#: The permission an access needs.
NEED: dict[Access, int] = {Access.READ: PERM_READ, Access.WRITE: PERM_WRITE,
                           Access.FETCH: PERM_EXEC}

REPLACEMENT_POLICIES = ("lru", "plru")


@dataclass(frozen=True, slots=True)
class TlbConfig:
    """Geometry and timing of one TLB.

    Attributes:
        entries: total entries (sets * ways).
        ways: associativity; ``ways == entries`` is fully associative.
        latency: cycles a hit at this level costs (the cost model's input).
        replacement: ``"lru"`` or ``"plru"`` (see the module docstring).
    """

    entries: int
    ways: int
    latency: float = 0.0
    replacement: str = "lru"

    def __post_init__(self) -> None:
        if self.entries <= 0 or self.ways <= 0:
            raise ValueError("a TLB needs entries > 0 and ways > 0")
        if self.entries % self.ways:
            raise ValueError(f"ways {self.ways} does not divide entries {self.entries}")
        if self.replacement not in REPLACEMENT_POLICIES:
            raise ValueError(f"replacement must be one of {REPLACEMENT_POLICIES}")
        if self.latency < 0:
            raise ValueError("latency must not be negative")

    @property
    def sets(self) -> int:
        return self.entries // self.ways

    def geometry(self) -> str:
        """``ENTRIESxWAYS``, the override syntax."""
        return f"{self.entries}x{self.ways}"


@dataclass(frozen=True, slots=True)
class TlbEntry:
    """One cached translation: tag ``(vpn, asid, global_)`` and the permissions."""

    vpn: int
    asid: int
    global_: bool
    perms: int

    def matches(self, vpn: int, asid: int) -> bool:
        """Would this entry translate ``vpn`` for address space ``asid``?"""
        return self.vpn == vpn and (self.global_ or self.asid == asid)


@dataclass(slots=True)
class TlbStats:
    """Lookups of one TLB level (gem5's TlbStats, hits and misses only)."""

    hits: int = 0
    misses: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}


class SetAssocTlb:
    """A set-associative TLB with per-set LRU or bit-PLRU replacement."""

    def __init__(self, config: TlbConfig) -> None:
        self.config = config
        self.nsets = config.sets
        self.ways = config.ways
        self.plru = config.replacement == "plru"
        self.sets: list[list[Optional[TlbEntry]]] = [[None] * self.ways
                                                     for _ in range(self.nsets)]
        # LRU: last-use clock per way; PLRU: the way's MRU bit (0/1).
        self.age: list[list[int]] = [[0] * self.ways for _ in range(self.nsets)]
        self.clock = 0
        self.stats = TlbStats()
        #: entries removed by invalidations
        self.invalidated = 0

    def set_index(self, vpn: int) -> int:
        """The set ``vpn`` maps to: ``vpn % sets`` (see the module docstring)."""
        return vpn % self.nsets

    def _touch(self, s: int, w: int) -> None:
        age = self.age[s]
        if not self.plru:
            self.clock += 1
            age[w] = self.clock
            return
        age[w] = 1
        if all(age):
            for i in range(self.ways):
                age[i] = 1 if i == w else 0

    def _victim(self, s: int) -> int:
        ways = self.sets[s]
        for w, e in enumerate(ways):
            if e is None:
                return w
        age = self.age[s]
        if self.plru:
            return age.index(0)  # never all set: _touch clears the others
        return age.index(min(age))

    def probe(self, vpn: int, asid: int) -> Optional[TlbEntry]:
        """The entry that would translate ``vpn``, without counting or touching."""
        for e in self.sets[self.set_index(vpn)]:
            if e is not None and e.matches(vpn, asid):
                return e
        return None

    def lookup(self, vpn: int, asid: int, need: int) -> Optional[TlbEntry]:
        """Look ``vpn`` up for an access needing ``need`` permission bits.

        Returns the entry on a hit (counted, and made most recently used), or
        None on a miss (counted), including a match that lacks the permission.
        """
        s = self.set_index(vpn)
        for w, e in enumerate(self.sets[s]):
            if e is not None and e.matches(vpn, asid):
                if e.perms & need == need:
                    self._touch(s, w)
                    self.stats.hits += 1
                    return e
                break
        self.stats.misses += 1
        return None

    def insert(self, entry: TlbEntry) -> None:
        """Fill ``entry`` into its set.

        The set keeps at most one entry matching any ``(vpn, asid)``: the
        entry that matches the new one (same vpn, and global or same ASID)
        is replaced in place, and a global fill also removes the page's other
        entries (it serves every ASID); the first such way is reused. With no
        such entry, the victim way is taken.
        """
        s = self.set_index(entry.vpn)
        ways = self.sets[s]
        slot = -1
        for w, e in enumerate(ways):
            if e is not None and e.vpn == entry.vpn and (
                    entry.global_ or e.global_ or e.asid == entry.asid):
                if slot < 0:
                    slot = w
                else:
                    ways[w] = None
                    self.age[s][w] = 0
        if slot < 0:
            slot = self._victim(s)
        ways[slot] = entry
        self._touch(s, slot)

    def invalidate(self, op: TlbiOp) -> int:
        """Drop every entry ``op`` matches; returns how many."""
        n = 0
        sets = range(self.nsets) if op.vpn is None else (self.set_index(op.vpn),)
        for s in sets:
            ways = self.sets[s]
            for w, e in enumerate(ways):
                if e is not None and op.match(e):
                    ways[w] = None
                    self.age[s][w] = 0
                    n += 1
        self.invalidated += n
        return n

    def contents(self) -> list[list[Optional[tuple[int, int, bool, int]]]]:
        """Every way of every set as ``(vpn, asid, global, perms)`` or None (for tests)."""
        return [[None if e is None else (e.vpn, e.asid, e.global_, e.perms) for e in ways]
                for ways in self.sets]


# --- invalidation operations ------------------------------------------------------------

class TlbScope(enum.IntEnum):
    """Which TLB entries an op removes (the native encoding)."""

    NONE = 0
    ALL = 1  # every entry, global ones too
    ALL_NONGLOBAL = 2  # every non-global entry
    ASID = 3  # non-global entries of one ASID
    VA = 4  # entries translating one vpn for the ASID, and global ones for it
    VA_NONGLOBAL = 5  # non-global entries translating one vpn for the ASID


class WalkScope(enum.IntEnum):
    """Which walk-cache (paging-structure-cache) entries an op removes."""

    NONE = 0
    ALL = 1
    ASID = 2  # every entry of one ASID
    VA_ASID = 3  # entries of the ASID used to translate the vpn


@dataclass(frozen=True, slots=True)
class NativeTlbi:
    """An op as the C model takes it: ``(tlb_scope, walk_scope, asid, vpn)``."""

    tlb_scope: int
    walk_scope: int
    asid: int
    vpn: int


@dataclass(frozen=True, slots=True)
class TlbiOp(abc.ABC):
    """An invalidation: which entries it matches, in TLBs and in walk caches.

    Subclasses fix ``TLB_SCOPE`` and ``WALK_SCOPE``; ``asid`` and ``vpn`` are
    their operands where the scope uses them (else 0 / None).
    """

    TLB_SCOPE: ClassVar[TlbScope]
    WALK_SCOPE: ClassVar[WalkScope]
    #: the name flush counters and the cost model use
    NAME: ClassVar[str]

    @property
    def asid(self) -> int:
        return 0

    @property
    def vpn(self) -> Optional[int]:
        """The page an address-based op targets; None for the others."""
        return None

    def match(self, e: TlbEntry) -> bool:
        """Does this op remove TLB entry ``e``?"""
        scope = self.TLB_SCOPE
        if scope is TlbScope.NONE:
            return False
        if scope is TlbScope.ALL:
            return True
        if scope is TlbScope.ALL_NONGLOBAL:
            return not e.global_
        if scope is TlbScope.ASID:
            return not e.global_ and e.asid == self.asid
        if e.vpn != self.vpn:
            return False
        if scope is TlbScope.VA:
            return e.global_ or e.asid == self.asid
        return not e.global_ and e.asid == self.asid  # VA_NONGLOBAL

    def match_walk(self, e: WalkCacheEntry) -> bool:
        """Does this op remove walk-cache entry ``e``?"""
        scope = self.WALK_SCOPE
        if scope is WalkScope.NONE:
            return False
        if scope is WalkScope.ALL:
            return True
        if e.asid != self.asid:
            return False
        if scope is WalkScope.ASID:
            return True
        vpn = self.vpn
        assert vpn is not None
        return e.covers(vpn << PAGE_SHIFT)

    def encode(self) -> NativeTlbi:
        """The op for the native model."""
        vpn = self.vpn
        return NativeTlbi(int(self.TLB_SCOPE), int(self.WALK_SCOPE), self.asid,
                          0 if vpn is None else vpn)


@dataclass(frozen=True, slots=True)
class _AsidOp(TlbiOp):
    asid: int  # a field where the base class has a read-only property


@dataclass(frozen=True, slots=True)
class _VaOp(TlbiOp):
    vpn: int
    asid: int


# generic ops (architecture-neutral tests and tools)
@dataclass(frozen=True, slots=True)
class FlushAll(TlbiOp):
    """Every TLB and walk-cache entry, global ones too."""

    TLB_SCOPE = TlbScope.ALL
    WALK_SCOPE = WalkScope.ALL
    NAME = "flush_all"


@dataclass(frozen=True, slots=True)
class FlushAsid(_AsidOp):
    """Every non-global entry of one ASID, and its walk-cache entries."""

    TLB_SCOPE = TlbScope.ASID
    WALK_SCOPE = WalkScope.ASID
    NAME = "flush_asid"


@dataclass(frozen=True, slots=True)
class FlushVa(_VaOp):
    """One page's entries for an ASID (and global ones), and its walk-cache entries."""

    TLB_SCOPE = TlbScope.VA
    WALK_SCOPE = WalkScope.VA_ASID
    NAME = "flush_va"


# x86-64 (Intel SDM vol. 3A 4.10.4.1, vol. 2 INVLPG / INVPCID)
@dataclass(frozen=True, slots=True)
class Invlpg(_VaOp):
    """INVLPG: the page's entries for the current PCID and global ones for the
    page; every paging-structure-cache entry of the current PCID."""

    TLB_SCOPE = TlbScope.VA
    WALK_SCOPE = WalkScope.ASID
    NAME = "invlpg"


@dataclass(frozen=True, slots=True)
class InvpcidAddr(_VaOp):
    """INVPCID type 0 (individual address): the page's non-global entries for
    the PCID; the PCID's paging-structure-cache entries."""

    TLB_SCOPE = TlbScope.VA_NONGLOBAL
    WALK_SCOPE = WalkScope.ASID
    NAME = "invpcid"


@dataclass(frozen=True, slots=True)
class InvpcidSingle(_AsidOp):
    """INVPCID type 1 (single context): the PCID's non-global entries and
    paging-structure-cache entries."""

    TLB_SCOPE = TlbScope.ASID
    WALK_SCOPE = WalkScope.ASID
    NAME = "invpcid"


@dataclass(frozen=True, slots=True)
class InvpcidAllGlobal(TlbiOp):
    """INVPCID type 2 (all contexts, including globals)."""

    TLB_SCOPE = TlbScope.ALL
    WALK_SCOPE = WalkScope.ALL
    NAME = "invpcid"


@dataclass(frozen=True, slots=True)
class InvpcidAll(TlbiOp):
    """INVPCID type 3 (all contexts, globals kept)."""

    TLB_SCOPE = TlbScope.ALL_NONGLOBAL
    WALK_SCOPE = WalkScope.ALL
    NAME = "invpcid"


@dataclass(frozen=True, slots=True)
class Cr3Write(TlbiOp):
    """MOV to CR3 loading ``pcid``. Without the no-flush bit (CR3[63]) it drops
    the PCID's non-global entries and paging-structure-cache entries; with
    it, nothing. Without CR4.PCIDE every CR3 write uses PCID 0 and flushes."""

    pcid: int
    noflush: bool

    NAME = "cr3_write"

    @property
    def asid(self) -> int:
        return self.pcid

    def match(self, e: TlbEntry) -> bool:
        return not self.noflush and not e.global_ and e.asid == self.pcid

    def match_walk(self, e: WalkCacheEntry) -> bool:
        return not self.noflush and e.asid == self.pcid

    def encode(self) -> NativeTlbi:
        if self.noflush:
            return NativeTlbi(int(TlbScope.NONE), int(WalkScope.NONE), self.pcid, 0)
        return NativeTlbi(int(TlbScope.ASID), int(WalkScope.ASID), self.pcid, 0)


# arm64 (Arm ARM D8.13, C5.5 TLBI)
@dataclass(frozen=True, slots=True)
class TlbiVae1is(_VaOp):
    """TLBI VAE1IS: entries for the VA with the ASID, and global ones; walk-cache
    entries used to translate the VA."""

    TLB_SCOPE = TlbScope.VA
    WALK_SCOPE = WalkScope.VA_ASID
    NAME = "tlbi_vae1is"


@dataclass(frozen=True, slots=True)
class TlbiVale1is(_VaOp):
    """TLBI VALE1IS: last-level entries only; walk caches are kept."""

    TLB_SCOPE = TlbScope.VA
    WALK_SCOPE = WalkScope.NONE
    NAME = "tlbi_vale1is"


@dataclass(frozen=True, slots=True)
class TlbiAside1is(_AsidOp):
    """TLBI ASIDE1IS: every non-global entry of the ASID, walk caches included."""

    TLB_SCOPE = TlbScope.ASID
    WALK_SCOPE = WalkScope.ASID
    NAME = "tlbi_aside1is"


@dataclass(frozen=True, slots=True)
class TlbiVmalle1is(TlbiOp):
    """TLBI VMALLE1IS: everything at EL1&0, global entries too."""

    TLB_SCOPE = TlbScope.ALL
    WALK_SCOPE = WalkScope.ALL
    NAME = "tlbi_vmalle1is"


#: Op names per architecture (the keys of a profile's ``[cost.flush]`` table).
FLUSH_OP_NAMES: dict[Arch, tuple[str, ...]] = {
    Arch.X86_64: (Invlpg.NAME, InvpcidSingle.NAME, Cr3Write.NAME),
    Arch.ARM64: (TlbiVae1is.NAME, TlbiVale1is.NAME, TlbiAside1is.NAME, TlbiVmalle1is.NAME),
}


# --- the hierarchy -----------------------------------------------------------------------

class Outcome(enum.IntEnum):
    """Where an access found its translation (the native model returns the same codes)."""

    L1_HIT = 0
    L2_HIT = 1
    WALK = 2  # missed both levels; the walk succeeded and filled them
    FAULT = 3  # missed both levels; the walk faulted (nothing filled)


@dataclass(slots=True)
class HierarchyStats:
    """Hits and misses per level."""

    l1i: TlbStats = field(default_factory=TlbStats)
    l1d: TlbStats = field(default_factory=TlbStats)
    l2: TlbStats = field(default_factory=TlbStats)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"l1i": self.l1i.as_dict(), "l1d": self.l1d.as_dict(), "l2": self.l2.as_dict()}


Walk = Callable[[int, Access], CachedWalk]


class TlbHierarchy:
    """Split L1 instruction and data TLBs over a unified L2."""

    def __init__(self, l1i: TlbConfig, l1d: TlbConfig, l2: TlbConfig) -> None:
        self.l1i = SetAssocTlb(l1i)
        self.l1d = SetAssocTlb(l1d)
        self.l2 = SetAssocTlb(l2)

    @property
    def stats(self) -> HierarchyStats:
        return HierarchyStats(self.l1i.stats, self.l1d.stats, self.l2.stats)

    def levels(self) -> tuple[SetAssocTlb, SetAssocTlb, SetAssocTlb]:
        return (self.l1i, self.l1d, self.l2)

    def access(self, va: int, access: Access, asid: int, walk: Walk) -> Outcome:
        """One access: L1 (i or d), then L2, then ``walk(va, access)``."""
        vpn = va >> PAGE_SHIFT
        need = NEED[access]
        l1 = self.l1i if access is Access.FETCH else self.l1d
        if l1.lookup(vpn, asid, need) is not None:
            return Outcome.L1_HIT
        e = self.l2.lookup(vpn, asid, need)
        if e is not None:
            l1.insert(e)
            return Outcome.L2_HIT
        res = walk(va, access)
        if not res.ok:
            return Outcome.FAULT
        e = TlbEntry(vpn=vpn, asid=asid, global_=res.global_, perms=res.perms)
        self.l2.insert(e)
        l1.insert(e)
        return Outcome.WALK

    def invalidate(self, op: TlbiOp) -> int:
        """Apply ``op`` to every level; returns the entries removed."""
        return sum(t.invalidate(op) for t in self.levels())


class MmuModel:
    """The exact-mode MMU: TLB hierarchy, walk caches and the current address space.

    Walks on a miss read the tables in ``phys`` and never write them (the
    Unicorn fill path has already set accessed/dirty bits; see
    :func:`mmuemu.hw.pwc.walk_cached`).
    """

    def __init__(self, phys: PhysMem, fmt: PteFormat, l1i: TlbConfig, l1d: TlbConfig,
                 l2: TlbConfig, pwc_entries: tuple[int, int, int]) -> None:
        self.phys = phys
        self.fmt = fmt
        self.tlb = TlbHierarchy(l1i, l1d, l2)
        self.pwc = PagingStructureCaches(pwc_entries)
        self.walk_stats = WalkStats()
        self.root = 0
        self.asid = 0

    def set_context(self, root: int, asid: int) -> None:
        """Load a new translation root and ASID/PCID (no invalidation by itself)."""
        self.root = root
        self.asid = asid

    def _walk(self, va: int, access: Access) -> CachedWalk:
        return walk_cached(self.phys, self.fmt, self.root, va, access, self.asid, self.pwc,
                           self.walk_stats)

    def access(self, va: int, access: Access) -> Outcome:
        """Translate one user-mode access through the hierarchy."""
        return self.tlb.access(va, access, self.asid, self._walk)

    def invalidate(self, op: TlbiOp) -> int:
        """Apply ``op`` to the TLBs and the walk caches; returns TLB entries removed."""
        self.pwc.invalidate(op.match_walk)
        return self.tlb.invalidate(op)


# --- what Linux issues ---------------------------------------------------------------------

#: arch/x86/mm/tlb.c: tlb_single_page_flush_ceiling (pages; above it, a full flush)
X86_FLUSH_CEILING = 33
#: arch/x86/include/asm/tlbflush.h: TLB_NR_DYN_ASIDS (PCIDs kept per CPU)
X86_NR_DYN_ASIDS = 6
#: arch/arm64/include/asm/tlbflush.h: MAX_TLBI_OPS = PTRS_PER_PTE (pages; from it, flush_tlb_mm)
ARM64_MAX_TLBI_OPS = 512

Sink = Callable[[TlbiOp], object]


#: the names flush_tlb_page counts its one op under (issue_op's key, inline there)
_INVLPG = Invlpg.NAME
_TLBI_VALE1IS = TlbiVale1is.NAME


class LinuxTlbFlush(abc.ABC):
    """The TLB maintenance Linux does, as architected ops sent to a sink.

    One CPU. ``mm`` is any hashable key for an address space. Each op is
    counted by name in :attr:`counts` and passed to ``sink`` (the exact model;
    None in fast mode, where the ops are only counted).
    """

    def __init__(self, asid_bits: int, sink: Optional[Sink] = None) -> None:
        self.asid_bits = asid_bits
        self.sink = sink
        self.counts: dict[str, int] = {}
        self.current: Optional[Hashable] = None

    def issue(self, op: TlbiOp) -> None:
        self.counts[op.NAME] = self.counts.get(op.NAME, 0) + 1
        if self.sink is not None:
            self.sink(op)

    def issue_op(self, cls: type[TlbiOp], *operands: int | bool) -> None:
        """:meth:`issue` ``cls(*operands)`` (its fields in order), built only if
        a sink takes it: fast mode counts ops by name, and a frozen dataclass
        costs more to make (about 1.5 µs) than the rest of a flush request.
        Positional, so that a call builds no keyword dict (every COW break
        flushes a page)."""
        name = cls.NAME
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.sink is not None:
            self.sink(cls(*operands))

    @abc.abstractmethod
    def switch_mm(self, mm: Hashable) -> int:
        """Make ``mm`` current (switch_mm_irqs_off / check_and_switch_context);
        returns its ASID/PCID."""

    @abc.abstractmethod
    def flush_tlb_page(self, mm: Hashable, addr: int) -> None: ...

    @abc.abstractmethod
    def flush_tlb_range(self, mm: Hashable, start: int, end: int) -> None: ...

    @abc.abstractmethod
    def flush_tlb_mm(self, mm: Hashable) -> None: ...

    @abc.abstractmethod
    def clear_flush_young(self, mm: Hashable, addr: int) -> bool:
        """ptep_clear_flush_young() after clearing an accessed bit; True if it
        invalidated anything."""


class X86TlbFlush(LinuxTlbFlush):
    """arch/x86/mm/tlb.c (Linux 6.x, PTI off).

    PCIDs: with ``asid_bits > 0`` (CR4.PCIDE) each CPU keeps
    TLB_NR_DYN_ASIDS address spaces; PCID = slot + 1, slots reused round
    robin (choose_new_asid), and reusing a slot for another mm means a
    flushing CR3 write. Without PCIDs every switch flushes (PCID 0).
    A flush for an mm that is not current is deferred to its next switch
    (the tlb_gen check). With PTI, user translations would live under the
    user PCID and flush_tlb_one_user would add an INVPCID: not modelled.
    """

    def __init__(self, asid_bits: int, sink: Optional[Sink] = None) -> None:
        super().__init__(asid_bits, sink)
        self.slots: list[Optional[Hashable]] = [None] * X86_NR_DYN_ASIDS
        #: pcid_of(current), kept by switch_mm()
        self.current_pcid = 0
        self.stale: set[int] = set()  # slots whose PCID must be flushed on next use
        self.next_slot = 0

    def pcid_of(self, mm: Hashable) -> Optional[int]:
        if not self.asid_bits:
            return 0 if mm == self.current else None
        for i, owner in enumerate(self.slots):
            if owner == mm:
                return i + 1
        return None

    def switch_mm(self, mm: Hashable) -> int:
        if not self.asid_bits:
            self.current = mm
            self.current_pcid = 0
            self.issue_op(Cr3Write, 0, False)  # pcid, noflush
            return 0
        pcid = self.pcid_of(mm)
        need_flush = False
        if pcid is None:
            slot = self.next_slot
            self.next_slot = (slot + 1) % X86_NR_DYN_ASIDS
            self.slots[slot] = mm
            pcid = slot + 1
            need_flush = True
        elif pcid - 1 in self.stale:
            need_flush = True
        self.stale.discard(pcid - 1)
        self.current = mm
        self.current_pcid = pcid
        self.issue_op(Cr3Write, pcid, not need_flush)  # pcid, noflush
        return pcid

    def _flush_all(self, mm: Hashable) -> None:
        pcid = self.pcid_of(mm)
        if pcid is None:
            return  # not cached on this CPU: nothing to flush
        if mm != self.current:
            self.stale.add(pcid - 1)
            return
        self.issue_op(Cr3Write, pcid, False)  # flush_tlb_local()

    def flush_tlb_page(self, mm: Hashable, addr: int) -> None:
        """flush_tlb_page(): flush_tlb_mm_range() of one page, unrolled: one
        INVLPG if ``mm`` is current, else the full flush."""
        if mm != self.current:
            self._flush_all(mm)  # (nothing if mm has no PCID here)
            return
        # flush_tlb_one_user(): issue_op(Invlpg, ...), inline (every COW break)
        counts = self.counts
        counts[_INVLPG] = counts.get(_INVLPG, 0) + 1
        if self.sink is not None:
            self.sink(Invlpg(addr >> PAGE_SHIFT, self.current_pcid))

    def flush_tlb_range(self, mm: Hashable, start: int, end: int) -> None:
        """flush_tlb_mm_range(): INVLPG at start, start + 4096, ... below end
        (no rounding, as flush_tlb_func() does), or a full flush above the ceiling."""
        pcid = self.pcid_of(mm)
        if pcid is None or end <= start:
            return
        if mm != self.current or (end - start) >> PAGE_SHIFT > X86_FLUSH_CEILING:
            self._flush_all(mm)
            return
        for addr in range(start, end, 1 << PAGE_SHIFT):
            self.issue_op(Invlpg, addr >> PAGE_SHIFT, pcid)  # flush_tlb_one_user()

    def flush_tlb_mm(self, mm: Hashable) -> None:
        self._flush_all(mm)

    def clear_flush_young(self, mm: Hashable, addr: int) -> bool:
        """arch/x86/mm/pgtable.c: "clearing the accessed bit without a TLB
        flush doesn't cause data corruption", so x86 does not flush."""
        return False


class Arm64TlbFlush(LinuxTlbFlush):
    """arch/arm64/include/asm/tlbflush.h and mm/context.c (Linux 6.x, no FEAT_TLBIRANGE).

    ASIDs 1 .. 2**asid_bits - 1 are handed out in order; when they run out a
    new generation starts with TLBI VMALLE1IS (flush_context) and numbering
    restarts. Switching never invalidates otherwise. ``asid_bits = 0``
    (untagged, for experiments): every switch does TLBI VMALLE1IS.
    flush_tlb_page is TLBI VALE1IS (leaf only); flush_tlb_range is TLBI
    VAE1IS per page (walk caches too), or flush_tlb_mm from MAX_TLBI_OPS
    pages; flush_tlb_mm is TLBI ASIDE1IS.
    """

    def __init__(self, asid_bits: int, sink: Optional[Sink] = None) -> None:
        super().__init__(asid_bits, sink)
        self.asids: dict[Hashable, int] = {}
        self.next_asid = 1

    def switch_mm(self, mm: Hashable) -> int:
        self.current = mm
        if not self.asid_bits:
            self.asids[mm] = 0
            self.issue_op(TlbiVmalle1is)
            return 0
        asid = self.asids.get(mm)
        if asid is None:
            if self.next_asid >= 1 << self.asid_bits:  # rollover: new generation
                self.asids.clear()
                self.next_asid = 1
                self.issue_op(TlbiVmalle1is)
            asid = self.next_asid
            self.next_asid += 1
            self.asids[mm] = asid
        return asid

    def flush_tlb_page(self, mm: Hashable, addr: int) -> None:
        asid = self.asids.get(mm)
        if asid is not None:  # issue_op(TlbiVale1is, ...), inline (every COW break)
            counts = self.counts
            counts[_TLBI_VALE1IS] = counts.get(_TLBI_VALE1IS, 0) + 1
            if self.sink is not None:
                self.sink(TlbiVale1is(addr >> PAGE_SHIFT, asid))

    def flush_tlb_range(self, mm: Hashable, start: int, end: int) -> None:
        """__flush_tlb_range(): start and end rounded out to pages, TLBI VAE1IS
        per page, or flush_tlb_mm() from MAX_TLBI_OPS pages."""
        asid = self.asids.get(mm)
        first, last = start >> PAGE_SHIFT, (end + (1 << PAGE_SHIFT) - 1) >> PAGE_SHIFT
        if asid is None or last <= first:
            return
        if last - first >= ARM64_MAX_TLBI_OPS:
            self.flush_tlb_mm(mm)
            return
        for vpn in range(first, last):
            self.issue_op(TlbiVae1is, vpn, asid)

    def flush_tlb_mm(self, mm: Hashable) -> None:
        asid = self.asids.get(mm)
        if asid is not None:
            self.issue_op(TlbiAside1is, asid)

    def clear_flush_young(self, mm: Hashable, addr: int) -> bool:
        """flush_tlb_page_nosync(): TLBI VALE1IS, no DSB."""
        asid = self.asids.get(mm)
        if asid is None:
            return False
        self.issue_op(TlbiVale1is, addr >> PAGE_SHIFT, asid)
        return True


#: The Linux flush policy per architecture.
LINUX_TLB_FLUSH: dict[Arch, type[LinuxTlbFlush]] = {
    Arch.X86_64: X86TlbFlush,
    Arch.ARM64: Arm64TlbFlush,
}
