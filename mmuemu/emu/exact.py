"""ctypes glue for exact mode (``mmuemu/emu/_native/exact.c``).

Exact mode runs every guest access through the architected TLB hierarchy
(split L1i/L1d over a unified L2), the page-walk caches and, on a miss, a
page walk, all in native code with the rules of :class:`mmuemu.hw.tlb.MmuModel`
(the pure-Python reference). It is an observer: Unicorn's soft TLB still
translates (``UC_TLB_VIRTUAL``, the fast path's fill hook), and this model
keeps the architected state and statistics beside it.

:meth:`ExactMmu.attach` does the Unicorn side, and replaces the fast path's
own fill hook registration (do not register ``NativeFastPath.tlb_fill_addr``
as well):

* maps guest RAM ``windows`` times into Unicorn's physical space (window 0 is
  the caller's ``mem_map_ptr`` at 0), because memory hooks see physical
  addresses and a frame can be mapped at several virtual pages (see the
  comment at the top of ``exact.c``);
* registers the fill hook (the fast path's fill, then the window choice), a
  ``UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE`` hook (L1d) and a ``UC_HOOK_BLOCK``
  hook (L1i: once per page a block spans);
* unless ``MMUEMU_EXACT_SYNC_PC=1`` is set, lets the block hook switch off
  Unicorn's CPU-state sync before each memory hook (:func:`skip_sync_offset`,
  and the comment at the top of ``exact.c``). That sync
  (``cpu_restore_state``) is unconditional in Unicorn 2.1.4 for every hooked
  access; the hooks here read no registers, and it cost a third of exact
  mode's time on small working sets.

The machine then registers its Python page-fault fill hook after it, and
must pass every paddr it fills through :meth:`ExactMmu.fill_paddr`; and call
:meth:`ExactMmu.uc_flushed` after each flush of Unicorn's soft TLB.

Invalidations (:meth:`ExactMmu.invalidate`) take :class:`mmuemu.hw.tlb.TlbiOp`
objects; :class:`mmuemu.hw.tlb.LinuxTlbFlush` says which ones Linux issues.

Two helpers serve the machine in every mode: :class:`TlbMaintenance` turns the
kernel's ``flush_tlb_*`` requests and address-space switches into those ops
(counted; applied to the exact model when there is one), and
:func:`hw_stats` builds the ``tlb``/``walks``/``flushes``/``cycles`` stats.

Lifetime: the :class:`ExactMmu` (its state and the :class:`PhysMem` and
:class:`NativeFastPath` it points at) must outlive the hooks; delete them
(or the ``Uc``) before :meth:`ExactMmu.close`.
"""
from __future__ import annotations

import ctypes
import functools
import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import unicorn
from unicorn.unicorn_py3.unicorn import uclib

from mmuemu._types import Access, Arch
from mmuemu.emu.native import (
    ARCH_CODES, UC_CTL_FLUSH_CODE, NativeFastPath, NativeResource,
    SoftTlbSizing, UcLike, _func_addr, hook_add_native,
)
from mmuemu.hw.cost import CostCounters, TlbCounts, estimate
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.profile import Profile
from mmuemu.hw.pte import LEVELS
from mmuemu.hw.pwc import CACHED_LEVELS
from mmuemu.hw.tlb import (
    LINUX_TLB_FLUSH, HierarchyStats, LinuxTlbFlush, Outcome, TlbConfig, TlbiOp, TlbStats,
)

STATE_VERSION = 3
#: Guest RAM mappings into Unicorn's physical space (window 0 included).
DEFAULT_WINDOWS = 16
_REBUILD = "rebuild: pip install -e . or python setup.py build_ext --inplace"
_XC_VALID, _XC_GLOBAL, _XC_WRITABLE, _XC_NX, _PERM_SHIFT = 1, 2, 4, 8, 4
_NO_VA = 0xFFFF_FFFF_FFFF_FFFF


class XcEntry(ctypes.Structure):
    """Mirror of ``struct xc_entry``."""

    _fields_ = [("data", ctypes.c_uint64),
                ("asid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("prev", ctypes.c_uint32), ("next", ctypes.c_uint32)]


class XcCache(ctypes.Structure):
    """Mirror of ``struct xc_cache``."""

    _fields_ = [("sets", ctypes.c_uint32), ("ways", ctypes.c_uint32),
                ("plru", ctypes.c_uint32), ("mru", ctypes.c_uint32),
                ("words", ctypes.c_uint32), ("index_bits", ctypes.c_uint32),
                ("hits", ctypes.c_uint64), ("misses", ctypes.c_uint64),
                ("invalidated", ctypes.c_uint64),
                ("e", ctypes.POINTER(XcEntry)), ("tags", ctypes.POINTER(ctypes.c_uint64)),
                ("set", ctypes.c_void_p),
                ("valid", ctypes.c_void_p), ("mrubits", ctypes.c_void_p)]


class ExactState(ctypes.Structure):
    """Mirror of ``struct exact_state`` (field order and types must match the C)."""

    _fields_ = [
        ("version", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("phys", ctypes.c_void_p),
        ("phys_size", ctypes.c_uint64),
        ("root", ctypes.c_uint64),
        ("arch", ctypes.c_uint32),
        ("asid", ctypes.c_uint32),
        ("tlb", XcCache * 3),
        ("pwc", XcCache * CACHED_LEVELS),
        ("walks", ctypes.c_uint64),
        ("walk_refs", ctypes.c_uint64 * LEVELS),
        ("pwc_hits", ctypes.c_uint64 * CACHED_LEVELS),
        ("walk_faults", ctypes.c_uint64),
        ("lookups", ctypes.c_uint64 * 3),
        ("outcomes", ctypes.c_uint64 * 4),
        ("owner", ctypes.c_void_p),
        ("nframes", ctypes.c_uint64),
        ("nwindows", ctypes.c_uint32),
        ("window_shift", ctypes.c_uint32),
        ("gen", ctypes.c_uint64),
        ("pending_flush", ctypes.c_uint32),
        ("pad0", ctypes.c_uint32),
        ("alias_fills", ctypes.c_uint64),
        ("uc_flushes", ctypes.c_uint64),
        ("steals", ctypes.c_uint64),
        ("unknown", ctypes.c_uint64),
        ("fp_fill", ctypes.c_void_p),
        ("fp_state", ctypes.c_void_p),
        ("ctl", ctypes.c_void_p),
        ("ctl_flush", ctypes.c_uint32),
        ("skip_sync_off", ctypes.c_uint32),
        ("sizing", SoftTlbSizing),
    ]


_StatePtr = ctypes.POINTER(ExactState)


def _set_prototypes(lib: ctypes.CDLL) -> None:
    u64, u32, vp = ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p
    lib.mmuemu_exact_access.restype = ctypes.c_int
    lib.mmuemu_exact_access.argtypes = [_StatePtr, u64, ctypes.c_int]
    lib.mmuemu_exact_invalidate.restype = u64
    lib.mmuemu_exact_invalidate.argtypes = [_StatePtr, ctypes.c_int, ctypes.c_int, u32, u64]
    lib.mmuemu_exact_set_context.restype = None
    lib.mmuemu_exact_set_context.argtypes = [_StatePtr, u64, u32]
    lib.mmuemu_exact_alias.restype = u64
    lib.mmuemu_exact_alias.argtypes = [_StatePtr, vp, u64, u64, ctypes.c_int]
    lib.mmuemu_exact_uc_flushed.restype = None
    lib.mmuemu_exact_uc_flushed.argtypes = [_StatePtr]
    lib.mmuemu_exact_va_of.restype = u64
    lib.mmuemu_exact_va_of.argtypes = [_StatePtr, u64]
    lib.mmuemu_exact_alloc.restype = ctypes.c_int
    lib.mmuemu_exact_alloc.argtypes = [_StatePtr]
    lib.mmuemu_exact_free.restype = None
    lib.mmuemu_exact_free.argtypes = [_StatePtr]
    lib.mmuemu_exact_layout.restype = u32
    lib.mmuemu_exact_layout.argtypes = [ctypes.POINTER(u32)]
    lib.mmuemu_exact_offset.restype = u32
    lib.mmuemu_exact_offset.argtypes = [u32]


@functools.cache
def load_library() -> ctypes.CDLL:
    """The exact-mode shared object, prototypes set and layout checked (loaded once)."""
    path = importlib.import_module("mmuemu.emu._exact").__file__
    if path is None:  # pragma: no cover - a built extension always has a file
        raise ImportError("mmuemu.emu._exact has no file to load")
    lib = ctypes.CDLL(path)
    try:
        _set_prototypes(lib)
    except AttributeError as e:
        raise ImportError(f"mmuemu.emu._exact is stale ({e}); {_REBUILD}") from None
    sizes = (ctypes.c_uint32 * 3)()
    version = lib.mmuemu_exact_layout(sizes)
    expect = (ctypes.sizeof(ExactState), ctypes.sizeof(XcCache), ctypes.sizeof(XcEntry))
    if version != STATE_VERSION or tuple(sizes) != expect:
        raise ImportError(f"mmuemu.emu._exact is stale: state v{version} sizes {tuple(sizes)}, "
                          f"expected v{STATE_VERSION} {expect} ({_REBUILD})")
    for i, (name, *_) in enumerate(ExactState._fields_):
        off = lib.mmuemu_exact_offset(i)
        if off != getattr(ExactState, name).offset:
            raise ImportError(f"mmuemu.emu._exact: field {name} at offset {off}, "
                              f"ctypes mirror says {getattr(ExactState, name).offset}")
    return lib


#: Environment variable: ``1`` keeps Unicorn's CPU-state sync before every memory hook.
SYNC_PC_ENV = "MMUEMU_EXACT_SYNC_PC"
_PROBE_MAX = 1 << 20


@functools.cache
def skip_sync_offset() -> int:
    """Offset of ``uc_struct.skip_sync_pc_on_exit`` in the loaded libunicorn, or 0.

    Unicorn 2.1.4 calls ``cpu_restore_state()`` before every ``UC_HOOK_MEM_*``
    callback unless that private flag is set (``exact.c`` explains why exact
    mode sets it). The struct is private, so its offset is found on a scratch
    engine, within the engine's allocation: ``uc_emu_stop`` must change one
    byte (``stop_request``) from 0 to 1, and a PC write then exactly two more,
    the next byte (``quit_request``) and the flag. Anything else (another
    Unicorn major version, another layout) gives 0: Unicorn's own behaviour,
    slower but the same counts.
    """
    try:
        if unicorn.uc_version()[0] != 2:
            return 0
        libc = ctypes.CDLL(None)
        usable = libc.malloc_usable_size
        usable.restype = ctypes.c_size_t
        usable.argtypes = [ctypes.c_void_p]
        uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        rip = unicorn.x86_const.UC_X86_REG_RIP
        uc.reg_read(rip)  # the engine initialises itself lazily, on its first use
        handle = uc._uch
        addr = handle.value if isinstance(handle, ctypes.c_void_p) else int(handle)
        if not addr:
            return 0
        n = int(usable(addr))
        if not 0 < n <= _PROBE_MAX:
            return 0
        before = ctypes.string_at(addr, n)
        uclib.uc_emu_stop(handle)
        stopped = ctypes.string_at(addr, n)
        uc.reg_write(rip, 0x1000)
        pc_written = ctypes.string_at(addr, n)
        del uc
    except Exception:  # no malloc_usable_size, an unexpected binding: keep the sync
        return 0

    def flips(a: bytes, b: bytes) -> Optional[list[int]]:
        out = [i for i in range(n) if a[i] != b[i]]
        return out if all(a[i] == 0 and b[i] == 1 for i in out) else None

    stop = flips(before, stopped)
    pc = flips(stopped, pc_written)
    if stop is None or pc is None or len(stop) != 1 or len(pc) != 2 or stop[0] + 1 not in pc:
        return 0
    flag = pc[0] if pc[1] == stop[0] + 1 else pc[1]
    return flag if flag > stop[0] + 1 else 0


@dataclass(frozen=True, slots=True)
class ExactStats:
    """Counters of the exact model.

    Attributes:
        tlb: hits and misses per level.
        walks: architected walks (L2 misses).
        walk_refs: table reads per level (0 = top).
        pwc_hits: walks that started below level n+1 thanks to the level-n walk cache.
        walk_faults: walks that found no valid translation (the access faulted).
        lookups: accesses looked up, by kind (read, write, fetch).
        invalidated: TLB entries removed by invalidations.
        alias_fills, uc_flushes, steals, unknown: the PA -> VA machinery (see
            ``exact.c``); ``unknown`` must stay 0 for the counts to be exact.
    """

    tlb: HierarchyStats
    walks: int
    walk_refs: tuple[int, ...]
    pwc_hits: tuple[int, ...]
    walk_faults: int
    lookups: dict[Access, int]
    invalidated: int
    alias_fills: int
    uc_flushes: int
    steals: int
    unknown: int

    @property
    def walk_mem_refs(self) -> int:
        return sum(self.walk_refs)

    def as_dict(self) -> dict[str, Any]:
        """The ``tlb`` and ``walks`` fields of the stats JSON (and the PA→VA details)."""
        return {
            "tlb": {**self.tlb.as_dict(), "exact": True},
            "walks": {"count": self.walks, "mem_refs": self.walk_mem_refs,
                      "pwc_hits": sum(self.pwc_hits), "faults": self.walk_faults,
                      "mem_refs_by_level": list(self.walk_refs),
                      "pwc_hits_by_level": list(self.pwc_hits),
                      "mem_refs_saved": sum((lvl + 1) * n
                                            for lvl, n in enumerate(self.pwc_hits)),
                      "exact": True},
            "exact_model": {"lookups": {a.name.lower(): n for a, n in self.lookups.items()},
                            "invalidated": self.invalidated, "alias_fills": self.alias_fills,
                            "uc_flushes": self.uc_flushes, "steals": self.steals,
                            "unknown_addresses": self.unknown},
        }


class UcMapper(UcLike, Protocol):
    """A ``unicorn.Uc`` as :meth:`ExactMmu.attach` uses it."""

    def mem_map_ptr(self, address: int, size: int, perms: int, ptr: int) -> None: ...


def _configure(cache: XcCache, cfg: TlbConfig) -> None:
    cache.sets = cfg.sets
    cache.ways = cfg.ways
    cache.plru = 1 if cfg.replacement == "plru" else 0


class ExactMmu(NativeResource):
    """One CPU's exact-mode MMU model (native).

    Args:
        phys: guest physical memory (read by the walks; mapped by :meth:`attach`).
        arch: the guest architecture.
        profile: TLB geometry and walk-cache sizes.
        windows: mappings of guest RAM into Unicorn's physical space (>= 1);
            more windows mean fewer Unicorn flushes when many virtual pages
            share a frame (the zero page).
        sync_pc: keep Unicorn's CPU-state sync before each memory hook
            (slower; the counts are the same). Default: the ``MMUEMU_EXACT_SYNC_PC``
            environment variable, else False where :func:`skip_sync_offset` works.
    """

    def __init__(self, phys: PhysMem, arch: Arch, profile: Profile,
                 windows: int = DEFAULT_WINDOWS, sync_pc: Optional[bool] = None) -> None:
        if windows < 1:
            raise ValueError("exact mode needs at least one window")
        self._lib = load_library()
        self._phys = phys
        self.arch = arch
        self.profile = profile
        st = ExactState()
        self._state = st
        self._ptr = ctypes.pointer(st)
        st.version = STATE_VERSION
        st.size = ctypes.sizeof(ExactState)
        st.phys = phys.address()
        st.phys_size = phys.size
        st.arch = ARCH_CODES[arch]
        for i, cfg in enumerate((profile.l1i, profile.l1d, profile.l2)):
            _configure(st.tlb[i], cfg)
        for level, n in enumerate(profile.pwc):
            st.pwc[level].sets = 1 if n else 0
            st.pwc[level].ways = n
        st.nframes = phys.nr_frames
        st.nwindows = windows
        st.window_shift = max(12, (phys.size - 1).bit_length())
        if not self._lib.mmuemu_exact_alloc(self._ptr):
            raise MemoryError("exact mode: cannot allocate the TLB model")
        self._closed = False
        if sync_pc is None:
            sync_pc = os.environ.get(SYNC_PC_ENV, "") not in ("", "0")
        self.sync_pc = sync_pc
        self._fastpath: Optional[NativeFastPath] = None
        self.state_addr: int = ctypes.addressof(st)
        self.tlb_fill_addr: int = _func_addr(self._lib.mmuemu_exact_tlb_fill)
        self.mem_hook_addr: int = _func_addr(self._lib.mmuemu_exact_mem)
        self.block_hook_addr: int = _func_addr(self._lib.mmuemu_exact_block)

    # --- wiring to Unicorn ---------------------------------------------------------------
    @property
    def windows(self) -> int:
        return int(self._state.nwindows)

    @property
    def skips_pc_sync(self) -> bool:
        """True once :meth:`attach` let the block hook switch Unicorn's state sync off."""
        return bool(self._state.skip_sync_off)

    def window_base(self, w: int) -> int:
        """Unicorn physical address of window ``w``."""
        return w << int(self._state.window_shift)

    def attach(self, uc: UcMapper, fastpath: NativeFastPath) -> list[int]:
        """Map windows 1.. and register the fill, memory and block hooks.

        ``uc`` must already map guest RAM at physical 0 (window 0) and run
        with ``UC_TLB_VIRTUAL``. Returns the native hook handles.
        """
        st = self._state
        self._fastpath = fastpath  # keep its state alive while we call into it
        st.fp_fill = fastpath.tlb_fill_addr
        st.fp_state = fastpath.state_addr
        st.ctl = _func_addr(uclib.uc_ctl)
        st.ctl_flush = UC_CTL_FLUSH_CODE
        st.skip_sync_off = 0 if self.sync_pc else skip_sync_offset()
        for w in range(1, self.windows):
            uc.mem_map_ptr(self.window_base(w), self._phys.size, unicorn.UC_PROT_ALL,
                           self._phys.address())
        return [
            hook_add_native(uc, unicorn.UC_HOOK_TLB_FILL, self.tlb_fill_addr, self.state_addr),
            hook_add_native(uc, unicorn.UC_HOOK_MEM_READ | unicorn.UC_HOOK_MEM_WRITE,
                            self.mem_hook_addr, self.state_addr),
            hook_add_native(uc, unicorn.UC_HOOK_BLOCK, self.block_hook_addr, self.state_addr),
        ]

    def fill_paddr(self, uc: Optional[UcLike], va: int, pa: int, access: Access) -> int:
        """The paddr a fill of ``va`` -> ``pa`` must hand Unicorn (its window).

        For fill hooks other than :meth:`attach`'s (the Python page-fault
        hook). ``uc`` lets it flush Unicorn's soft TLB when every window of
        the frame is in use (data fills only).
        """
        handle = None if uc is None else uc._uch
        return int(self._lib.mmuemu_exact_alias(self._ptr, handle, va, pa, int(access)))

    def uc_flushed(self) -> None:
        """Unicorn's soft TLB was flushed: every window of every frame is free again."""
        self._lib.mmuemu_exact_uc_flushed(self._ptr)

    def grow_soft_tlb(self, max_entries: int) -> None:
        """Let the fill hook flush Unicorn's soft TLB so that QEMU grows it, up
        to about ``max_entries`` (``_native/softtlb.h``; <= 256: off). The fast
        path's own policy must stay off: this fill wraps it."""
        self._state.sizing.start(max_entries)

    @property
    def soft_tlb(self) -> SoftTlbSizing:
        """The soft-TLB sizing state."""
        return self._state.sizing

    def va_of(self, hook_address: int) -> Optional[int]:
        """The virtual address behind a memory-hook address (None if unknown)."""
        va = int(self._lib.mmuemu_exact_va_of(self._ptr, hook_address))
        return None if va == _NO_VA else va

    # --- the model ---------------------------------------------------------------------------
    def set_context(self, root: int, asid: int) -> None:
        """Load a translation root (CR3 / TTBR0 base) and ASID/PCID; invalidates nothing."""
        self._lib.mmuemu_exact_set_context(self._ptr, root, asid)

    @property
    def root(self) -> int:
        return int(self._state.root)

    @property
    def asid(self) -> int:
        return int(self._state.asid)

    def invalidate(self, op: TlbiOp) -> int:
        """Apply a TLB maintenance op; returns the TLB entries it removed."""
        n = op.encode()
        return int(self._lib.mmuemu_exact_invalidate(self._ptr, n.tlb_scope, n.walk_scope,
                                                     n.asid, n.vpn))

    def access(self, va: int, access: Access) -> Outcome:
        """Look one access up directly (as the hooks do, without Unicorn)."""
        return Outcome(self._lib.mmuemu_exact_access(self._ptr, va, int(access)))

    # --- counters and contents ---------------------------------------------------------------
    def stats(self) -> ExactStats:
        st = self._state

        def level(i: int) -> TlbStats:
            return TlbStats(hits=int(st.tlb[i].hits), misses=int(st.tlb[i].misses))

        return ExactStats(
            tlb=HierarchyStats(l1i=level(0), l1d=level(1), l2=level(2)),
            walks=int(st.walks), walk_refs=tuple(int(v) for v in st.walk_refs),
            pwc_hits=tuple(int(v) for v in st.pwc_hits), walk_faults=int(st.walk_faults),
            lookups={a: int(st.lookups[a - Access.READ]) for a in Access},
            invalidated=sum(int(st.tlb[i].invalidated) for i in range(3)),
            alias_fills=int(st.alias_fills), uc_flushes=int(st.uc_flushes),
            steals=int(st.steals), unknown=int(st.unknown))

    def tlb_contents(self, level: int) -> list[list[Optional[tuple[int, int, bool, int]]]]:
        """TLB ``level`` (0 l1i, 1 l1d, 2 l2) as :meth:`SetAssocTlb.contents` shows it."""
        c = self._state.tlb[level]
        out: list[list[Optional[tuple[int, int, bool, int]]]] = []
        for s in range(c.sets):
            row: list[Optional[tuple[int, int, bool, int]]] = []
            for w in range(c.ways):
                e = c.e[s * c.ways + w]
                row.append(None if not e.flags & _XC_VALID else
                           (int(c.tags[s * c.ways + w]), int(e.asid), bool(e.flags & _XC_GLOBAL),
                            (e.flags >> _PERM_SHIFT) & 7))
            out.append(row)
        return out

    def pwc_contents(self) -> list[list[Optional[tuple[int, int, int, bool, bool]]]]:
        """Walk caches as :meth:`PagingStructureCaches.contents` shows them."""
        out: list[list[Optional[tuple[int, int, int, bool, bool]]]] = []
        for level in range(CACHED_LEVELS):
            c = self._state.pwc[level]
            row: list[Optional[tuple[int, int, int, bool, bool]]] = []
            for w in range(c.ways):
                e = c.e[w]
                row.append(None if not e.flags & _XC_VALID else
                           (int(c.tags[w]), int(e.asid), int(e.data),
                            bool(e.flags & _XC_WRITABLE), bool(e.flags & _XC_NX)))
            out.append(row)
        return out

    # --- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        """Free the native tables. Hooks using this state must be gone already."""
        if not self._closed:
            self._lib.mmuemu_exact_free(self._ptr)
            self._closed = True



# --- the machine's side, in every mode --------------------------------------------------------

class TlbMaintenance:
    """The kernel's TLB maintenance as the architecture's ops (asm/tlbflush.h).

    The machine's flush glue calls this besides flushing Unicorn's soft TLB.
    Each request becomes the ops Linux issues (:class:`LinuxTlbFlush`:
    INVLPG / CR3 writes on x86-64, TLBI on arm64, with Linux's PCID/ASID
    allocation), counted by op name in every mode and applied to ``exact``
    when there is one. Address spaces are named by ``mm.context_id`` (never
    reused, like Linux's ``ctx_id``).
    """

    def __init__(self, arch: Arch, profile: Profile, exact: Optional[ExactMmu] = None) -> None:
        self.exact = exact
        self.linux: LinuxTlbFlush = LINUX_TLB_FLUSH[arch](
            profile.asid_bits, sink=None if exact is None else exact.invalidate)
        # the requests go straight to the architecture's (one call fewer per
        # flush: COW faults flush a page each)
        self.flush_tlb_page: Callable[[int, int], None] = self.linux.flush_tlb_page
        self.flush_tlb_range: Callable[[int, int, int], None] = self.linux.flush_tlb_range
        self.flush_tlb_mm: Callable[[int], None] = self.linux.flush_tlb_mm

    @property
    def counts(self) -> dict[str, int]:
        """Ops issued, by name (the ``flushes`` stats)."""
        return dict(self.linux.counts)

    def switch_mm(self, context_id: int, root: int) -> int:
        """switch_mm(): load ``root`` for address space ``context_id``; returns its ASID/PCID."""
        asid = self.linux.switch_mm(context_id)
        if self.exact is not None:
            self.exact.set_context(root, asid)
        return asid

    def clear_flush_young(self, context_id: int, addr: int) -> bool:
        """ptep_clear_flush_young(); True if the architecture invalidated."""
        return self.linux.clear_flush_young(context_id, addr)

    def uc_flushed(self) -> None:
        """Unicorn's soft TLB was just flushed."""
        if self.exact is not None:
            self.exact.uc_flushed()


def hw_stats(profile: Profile, maint: TlbMaintenance, fastpath: NativeFastPath, *,
             syscalls: int, faults_by_type: dict[str, int], major_faults: int,
             cache_insns: Optional[dict[str, int]] = None) -> dict[str, Any]:
    """The hardware part of the stats JSON.

    ``tlb`` (exact mode only: hits and misses of l1i, l1d, l2), ``walks``
    (exact: architected walks with walk-cache hits; fast/raw: the fill-path
    walks, marked ``"exact": false``), ``flushes`` (ops by name), ``cycles``,
    ``cycles_breakdown``, ``cycles_estimated`` (the components computed from a
    proxy) and ``profile``; in exact mode also ``exact_model``.
    """
    out: dict[str, Any] = {"profile": profile.as_dict()}
    tlb: Optional[TlbCounts] = None
    if maint.exact is not None:
        ex = maint.exact.stats()
        out.update(ex.as_dict())
        t = ex.tlb
        tlb = TlbCounts(l1i_hits=t.l1i.hits, l1i_misses=t.l1i.misses, l1d_hits=t.l1d.hits,
                        l1d_misses=t.l1d.misses, l2_hits=t.l2.hits, l2_misses=t.l2.misses)
        walks, walk_refs = ex.walks, ex.walk_mem_refs
    else:
        walks, walk_refs = fastpath.walks, fastpath.walk_mem_refs
        out["walks"] = {"count": walks, "mem_refs": walk_refs, "pwc_hits": None, "exact": False,
                        "note": "fill-path walks (one per Unicorn soft-TLB fill, plus the retry "
                                "after each fault); no architected TLB in this mode"}
    flushes = maint.counts
    out["flushes"] = flushes
    est = estimate(profile, CostCounters(
        instructions=fastpath.insns, syscalls=syscalls, faults_by_type=dict(faults_by_type),
        major_faults=major_faults, tlb=tlb, walks=walks, walk_mem_refs=walk_refs,
        flushes=flushes, cache_insns=cache_insns or {}))
    out["cycles"] = est.cycles
    out["cycles_breakdown"] = dict(est.breakdown)
    out["cycles_estimated"] = list(est.estimated)
    return out
