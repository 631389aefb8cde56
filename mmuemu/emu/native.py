"""ctypes glue for the native fast path (``mmuemu/emu/_native/fastpath.c``).

The C code is built as the extension module :mod:`mmuemu.emu._fastpath`; its
Python module is empty, and this module loads the same shared object with
:class:`ctypes.CDLL` to reach the C functions:

* ``mmuemu_tlb_fill`` — a ``UC_HOOK_TLB_FILL`` callback walking the guest's
  page tables in emulated physical memory (the rules of
  :func:`mmuemu.hw.walker.walk`, which is its specification). It resolves
  every miss the tables allow and returns False on a fault, so the next fill
  hook registered runs only for real faults.
* ``mmuemu_tlb_fill_faulting`` — the same walk, and on a fault the handler
  set by :meth:`NativeFastPath.set_fault_handler` (the Python page-fault
  path, called from C with two integers), then the walk again: fast mode's
  single fill hook, without the binding's per-call Python wrapper.
* ``mmuemu_block`` — a ``UC_HOOK_BLOCK`` callback counting instructions per
  basic block; a new (address, size) is counted once by a Python callback
  (capstone), later executions are a hash-table lookup.

Register them with :func:`hook_add_native` (the Python binding's ``hook_add``
only takes Python callables), passing :attr:`NativeFastPath.state_addr` as
user data. Lifetime: the :class:`NativeFastPath` (its state, its count
callback and the :class:`PhysMem` it points at) must outlive every hook that
uses it; delete the hooks (or the ``Uc``) before :meth:`NativeFastPath.close`.
"""
from __future__ import annotations

import _ctypes
import ctypes
import functools
import importlib
from types import TracebackType
from typing import Any, Callable, Optional, Protocol, TypeVar

from unicorn import unicorn_const
from unicorn.unicorn_py3.unicorn import UcError, uclib

from mmuemu._types import Access, Arch
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import ADDR_MASK, LEVELS
from mmuemu.hw.walker import WalkResult

_R = TypeVar("_R", bound="NativeResource")

STATE_VERSION = 6
ARCH_CODES: dict[Arch, int] = {Arch.X86_64: 0, Arch.ARM64: 1}
#: What a count_block callback returns to report failure (emulation stops).
COUNT_ERROR = 0xFFFF_FFFF
#: OR-ed into a count_block answer: do not cache this block's count, ask again
#: at its next execution (the caller counts something in it per execution).
UNCACHED_BLOCK = 1 << 31
_NO_PTE = 0xFFFF_FFFF_FFFF_FFFF
_NO_BLOCK = 0xFFFF_FFFF  # EMPTY_SIZE in fastpath.c
#: fault_vaddr outside the fault handler (MMUEMU_NO_FAULT)
NO_FAULT = 0xFFFF_FFFF_FFFF_FFFF
_U64 = 1 << 64
_REBUILD = "rebuild: pip install -e . or python setup.py build_ext --inplace"

#: ``uc_ctl`` control code of a soft-TLB flush (UC_CTL_TLB_FLUSH, write, no args).
UC_CTL_FLUSH_CODE = (unicorn_const.UC_CTL_IO_WRITE << 30) | unicorn_const.UC_CTL_TLB_FLUSH
#: Unicorn's soft TLB starts with this many entries per MMU mode (QEMU's
#: CPU_TLB_DYN_DEFAULT_BITS); a growth ceiling at or below it turns growth off.
SOFT_TLB_INITIAL = 256

CountBlock = Callable[[int, int], int]
#: ``uint32_t count_block(uint64_t address, uint32_t size)``
COUNT_BLOCK_CFUNC = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint32)
#: ``handler(vaddr, access)``: true resolved, false not
FaultHandler = Callable[[int, int], int]


class SoftTlbSizing(ctypes.Structure):
    """Mirror of ``struct softtlb_sizing`` (``_native/softtlb.h``: when to flush
    Unicorn's soft TLB so that QEMU grows it)."""

    _fields_ = [
        ("fills", ctypes.c_uint64),
        ("estimate", ctypes.c_uint64),
        ("max_estimate", ctypes.c_uint64),
        ("grow_flushes", ctypes.c_uint64),
        ("pending", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]

    def start(self, max_entries: int) -> None:
        """softtlb_init(): the estimate at Unicorn's initial size, growth up to ``max_entries``."""
        self.fills = 0
        self.estimate = SOFT_TLB_INITIAL
        self.max_estimate = max_entries
        self.grow_flushes = 0
        self.pending = 0

    def as_dict(self) -> dict[str, int]:
        """The ``soft_tlb`` stats: the growth ceiling, the estimated size, the flushes made."""
        return {"max_entries": int(self.max_estimate), "estimated_entries": int(self.estimate),
                "grow_flushes": int(self.grow_flushes)}


class MmuemuState(ctypes.Structure):
    """Mirror of ``struct mmuemu_state`` (field order and types must match the C)."""

    _fields_ = [
        ("version", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("phys", ctypes.c_void_p),
        ("phys_size", ctypes.c_uint64),
        ("root", ctypes.c_uint64),
        ("arch", ctypes.c_uint32),
        ("hw_af", ctypes.c_uint32),
        ("fills", ctypes.c_uint64),
        ("fills_resolved", ctypes.c_uint64),
        ("fills_faulted", ctypes.c_uint64),
        ("fills_by_access", ctypes.c_uint64 * 3),
        ("walks", ctypes.c_uint64),
        ("walk_refs", ctypes.c_uint64 * LEVELS),
        ("ad_updates", ctypes.c_uint64),
        ("last_pte_pa", ctypes.c_uint64),
        ("insns", ctypes.c_uint64),
        ("blocks", ctypes.c_uint64),
        ("insn_limit", ctypes.c_uint64),
        ("limit_hit", ctypes.c_uint32),
        ("count_error", ctypes.c_uint32),
        ("count_block", ctypes.c_void_p),
        ("stop_fn", ctypes.c_void_p),
        ("tab", ctypes.c_void_p),
        ("tab_cap", ctypes.c_uint64),
        ("tab_used", ctypes.c_uint64),
        ("block_misses", ctypes.c_uint64),
        ("last_block_address", ctypes.c_uint64),
        ("last_block_size", ctypes.c_uint32),
        ("last_block_ninsns", ctypes.c_uint32),
        ("sizing", SoftTlbSizing),
        ("ctl", ctypes.c_void_p),
        ("ctl_flush", ctypes.c_uint32),
        ("pad2", ctypes.c_uint32),
        ("fault_handler", ctypes.c_void_p),  # PyObject *, borrowed
        ("reg_read", ctypes.c_void_p),
        ("pc_reg", ctypes.c_uint32),
        ("pad3", ctypes.c_uint32),
        ("fault_vaddr", ctypes.c_uint64),
        ("fault_pc", ctypes.c_uint64),
        ("flush_ctl", ctypes.c_void_p),
        ("flush_code", ctypes.c_uint32),
        ("flush_deferred", ctypes.c_uint32),
        ("flushes_elided", ctypes.c_uint64),
    ]


_StatePtr = ctypes.POINTER(MmuemuState)


class UcLike(Protocol):
    """A ``unicorn.Uc``: all this module needs is its engine handle (``_uch``).

    (A Protocol because mypy resolves ``unicorn.Uc`` to the binding's py2 class
    while the py3 class is the one that runs.)
    """

    _uch: Any


def _set_prototypes(lib: ctypes.CDLL) -> None:
    """Declare the C signatures (the hook callbacks are only ever called by Unicorn)."""
    u32p = ctypes.POINTER(ctypes.c_uint32)
    lib.mmuemu_walk.restype = ctypes.c_int
    lib.mmuemu_walk.argtypes = [_StatePtr, ctypes.c_uint64, ctypes.c_int,
                                ctypes.POINTER(ctypes.c_uint64), u32p,
                                ctypes.POINTER(ctypes.c_int)]
    lib.mmuemu_uc_flushed.restype = None
    lib.mmuemu_uc_flushed.argtypes = [_StatePtr]
    lib.mmuemu_block_table_clear.restype = None
    lib.mmuemu_block_table_clear.argtypes = [_StatePtr]
    lib.mmuemu_state_free_tables.restype = None
    lib.mmuemu_state_free_tables.argtypes = [_StatePtr]
    lib.mmuemu_state_layout.restype = ctypes.c_uint32
    lib.mmuemu_state_layout.argtypes = [u32p]
    lib.mmuemu_state_offset.restype = ctypes.c_uint32
    lib.mmuemu_state_offset.argtypes = [ctypes.c_uint32]
    lib.mmuemu_addr_mask.restype = ctypes.c_uint64
    lib.mmuemu_addr_mask.argtypes = []


@functools.cache
def load_library() -> ctypes.CDLL:
    """The fast-path shared object, prototypes set and layout checked (loaded once)."""
    path = importlib.import_module("mmuemu.emu._fastpath").__file__
    if path is None:  # pragma: no cover - a built extension always has a file
        raise ImportError("mmuemu.emu._fastpath has no file to load")
    lib = ctypes.CDLL(path)
    try:
        _set_prototypes(lib)
    except AttributeError as e:
        raise ImportError(f"mmuemu.emu._fastpath is stale ({e}); {_REBUILD}") from None
    if lib.mmuemu_addr_mask() != ADDR_MASK:
        raise ImportError(f"mmuemu.emu._fastpath is stale: it masks table addresses with "
                          f"{lib.mmuemu_addr_mask():#x}, mmuemu.hw.pte.ADDR_MASK is {ADDR_MASK:#x} "
                          f"({_REBUILD})")
    size = ctypes.c_uint32()
    version = lib.mmuemu_state_layout(ctypes.byref(size))
    if version != STATE_VERSION or size.value != ctypes.sizeof(MmuemuState):
        raise ImportError(f"mmuemu.emu._fastpath is stale: state v{version} of {size.value} "
                          f"bytes, expected v{STATE_VERSION} of {ctypes.sizeof(MmuemuState)} "
                          f"({_REBUILD})")
    for i, (name, *_) in enumerate(MmuemuState._fields_):
        off = lib.mmuemu_state_offset(i)
        if off != getattr(MmuemuState, name).offset:
            raise ImportError(f"mmuemu.emu._fastpath: field {name} at offset {off}, "
                              f"ctypes mirror says {getattr(MmuemuState, name).offset}")
    return lib


def _func_addr(func: _ctypes.CFuncPtr) -> int:
    """Address of a ctypes foreign function."""
    addr = ctypes.cast(func, ctypes.c_void_p).value
    assert addr is not None
    return int(addr)


def uc_handle(uc: UcLike) -> ctypes.c_void_p:
    """``uc``'s ``uc_engine *``, converted once for calls without argtypes."""
    handle = uc._uch
    return ctypes.c_void_p(handle.value if isinstance(handle, ctypes.c_void_p) else handle)


def emu_starter(uc: UcLike) -> Callable[[int, int, int, int], None]:
    """``uc.emu_start(begin, until, timeout, count)`` that keeps the GIL.

    The binding calls ``uc_emu_start`` through a ``ctypes.CDLL``, which
    releases the GIL for the call; every fault and system call then takes it
    back on entering Python and drops it on leaving (PyGILState_Ensure and
    Release, about 420 instructions a fault, 1.2% of a COW fault's). Called
    through a ``ctypes.PyDLL`` handle it stays held, and those calls find it
    theirs. Nothing else in the process needs it meanwhile: Ctrl-C is
    watched by a native thread (emu/interrupt.py), Unicorn's timeout by its
    own. Raises as the binding's ``emu_start`` does: UcError for a failed
    start, else what a binding hook raised (kept in ``uc._hook_exception``).
    """
    start = ctypes.PyDLL(uclib._name).uc_emu_start
    start.restype = ctypes.c_int
    start.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
                      ctypes.c_size_t]
    handle = uc_handle(uc)

    def emu_start(begin: int, until: int, timeout: int = 0, count: int = 0) -> None:
        setattr(uc, "_hook_exception", None)
        status = start(handle, begin, until, timeout, count)
        if status != unicorn_const.UC_ERR_OK:
            raise UcError(status)
        raised = getattr(uc, "_hook_exception", None)
        if raised is not None:
            raise raised
    return emu_start


def uc_tlb_flusher(uc: UcLike) -> Callable[[], None]:
    """A function dropping every translation in ``uc``'s soft TLB (libunicorn's
    ``uc_ctl(UC_CTL_TLB_FLUSH)``), with its arguments converted once.

    The binding's ``Uc.ctl`` costs about 2.4 µs a call, this about 1.1 µs
    (most of it the flush itself), and fast mode flushes on every COW and
    write-protect fault. Raises UcError as the binding does.
    """
    c_handle = uc_handle(uc)
    c_code = ctypes.c_int(UC_CTL_FLUSH_CODE)
    # a private handle on the same library: no argtypes, the converted values go through
    ctl = ctypes.CDLL(uclib._name).uc_ctl
    ctl.restype = ctypes.c_int

    def flush() -> None:
        status = ctl(c_handle, c_code)
        if status != unicorn_const.UC_ERR_OK:
            raise UcError(status)
    return flush


def hook_add_native(uc: UcLike, htype: int, callback_addr: int, user_data: int,
                    begin: int = 1, end: int = 0) -> int:
    """uc_hook_add() with a native callback: ``htype`` calls the C function at
    ``callback_addr`` with ``user_data`` (e.g. :attr:`NativeFastPath.state_addr`).

    Only for hook types whose uc_hook_add takes no extra arguments (TLB_FILL,
    BLOCK, CODE, MEM_*, INTR). ``begin > end`` (the default) means everywhere.
    Returns the hook handle; remove it with :func:`hook_del_native`, not
    ``uc.hook_del`` (the binding keeps no Python callback for it).
    """
    handle = ctypes.c_size_t()
    status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), ctypes.c_int32(htype),
                               ctypes.c_void_p(callback_addr), ctypes.c_void_p(user_data),
                               ctypes.c_uint64(begin), ctypes.c_uint64(end))
    if status != unicorn_const.UC_ERR_OK:
        raise UcError(status)
    return int(handle.value)


def hook_del_native(uc: UcLike, handle: int) -> None:
    """Remove a hook added by :func:`hook_add_native`."""
    status = uclib.uc_hook_del(uc._uch, ctypes.c_size_t(handle))
    if status != unicorn_const.UC_ERR_OK:
        raise UcError(status)


class NativeResource:
    """Native state released by ``close()``: as a context manager and on
    garbage collection. Subclasses implement ``close()`` (idempotent)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class NativeFastPath(NativeResource):
    """One CPU's native state: page-walk context, counters, block-count table.

    Args:
        phys: the guest's physical memory (the C code reads and writes it in place).
        arch: the guest architecture (selects the page-table format).
        hw_af: arm64 hardware Access Flag / dirty-bit management (FEAT_HAFDBS);
            ignored on x86-64, whose A/D bits are always hardware-managed.
    """

    def __init__(self, phys: PhysMem, arch: Arch, hw_af: bool = True) -> None:
        self._lib = load_library()
        self._phys = phys  # keep the buffer alive while C points into it
        self.arch = arch
        self._state = MmuemuState()
        self._ptr = ctypes.pointer(self._state)
        st = self._state
        st.version = STATE_VERSION
        st.size = ctypes.sizeof(MmuemuState)
        st.phys = phys.address()
        st.phys_size = phys.size
        st.arch = ARCH_CODES[arch]
        st.hw_af = 1 if hw_af else 0
        st.last_block_size = _NO_BLOCK  # the block hook's one-entry cache starts empty
        st.fault_vaddr = NO_FAULT
        self._count_cb: Optional[ctypes._CFunctionType] = None
        self._count_fn: Optional[CountBlock] = None
        self._fault_handler: Optional[FaultHandler] = None
        #: an exception raised by the count_block callback (emulation was stopped)
        self.pending_error: Optional[BaseException] = None
        self._closed = False
        self.state_addr: int = ctypes.addressof(st)
        self.tlb_fill_addr: int = _func_addr(self._lib.mmuemu_tlb_fill)
        self.tlb_fill_faulting_addr: int = _func_addr(self._lib.mmuemu_tlb_fill_faulting)
        self.block_hook_addr: int = _func_addr(self._lib.mmuemu_block)

    # --- configuration ----------------------------------------------------------------
    @property
    def hw_af(self) -> bool:
        return bool(self._state.hw_af)

    @property
    def root(self) -> int:
        """CR3 / TTBR0 of the address space the walker uses."""
        return int(self._state.root)

    def set_root(self, pa: int) -> None:
        """Switch address space (CR3 / TTBR0 write). Unicorn's soft TLB must be
        flushed by the caller as well."""
        self._state.root = pa

    def set_count_block(self, fn: Optional[CountBlock]) -> None:
        """Install ``fn(address, size) -> instructions`` for blocks not seen yet.

        An exception in ``fn`` (or a count outside 0 .. 2**32-2) is kept in
        :attr:`pending_error` and stops emulation (if a stop function is set);
        call :meth:`raise_pending` after ``emu_start`` returns.
        """
        if fn is None:
            self._count_cb = None
            self._count_fn = None
            self._state.count_block = None
            return

        def trampoline(address: int, size: int) -> int:
            try:
                n = fn(address, size)
                if not 0 <= n < COUNT_ERROR:
                    raise ValueError(f"count_block({address:#x}, {size}) returned {n}")
                return n
            except BaseException as e:  # never unwind through C
                if self.pending_error is None:
                    self.pending_error = e
                return COUNT_ERROR

        cb = COUNT_BLOCK_CFUNC(trampoline)
        self._count_fn = fn
        self._count_cb = cb
        self._state.count_block = _func_addr(cb)

    def set_fault_handler(self, fn: Optional[FaultHandler]) -> None:
        """Install ``fn(vaddr, access) -> 1 | 0`` as the page-fault handler of the
        ``mmuemu_tlb_fill_faulting`` hook (:attr:`tlb_fill_faulting_addr`): it
        runs when the walk faults; 1 says the fault was resolved (the hook walks
        again and fills), 0 that it was not (no fill: the run stops).

        The C hook calls ``fn`` itself (vectorcall, with the GIL taken), not
        through a ctypes callback, which cost about 1,000 instructions a
        fault. ``fn`` must not raise: an exception would be reported as
        unraisable and count as 0. (The machine's handler keeps it and stops
        the run.) This object holds the reference the C state borrows.
        """
        self._fault_handler = fn
        # CPython: id() is the object's address, the PyObject * the C calls
        self._state.fault_handler = None if fn is None else id(fn)

    def capture_fault_pc(self, uc: UcLike, pc_reg: int) -> None:
        """Have ``mmuemu_tlb_fill_faulting`` read the guest pc (register
        ``pc_reg``, through libunicorn's ``uc_reg_read``) before it calls the
        fault handler, and publish it with the address: while the handler
        runs, :attr:`fault_vaddr` is the faulting address and
        :attr:`fault_pc` the pc; otherwise ``fault_vaddr`` is
        :data:`NO_FAULT`."""
        if getattr(uc, "_uch", None) is None:
            raise TypeError(f"expected an open unicorn.Uc, got {type(uc).__name__}")
        self._state.pc_reg = pc_reg
        self._state.reg_read = _func_addr(uclib.uc_reg_read)

    @property
    def fault_vaddr(self) -> int:
        return int(self._state.fault_vaddr)

    @property
    def fault_pc(self) -> int:
        return int(self._state.fault_pc)

    def field_addr(self, name: str) -> int:
        """The address of one 64-bit field of the native state (for readers
        that bypass ctypes: the C trace recorder)."""
        field = getattr(MmuemuState, name)
        if field.size != 8:
            raise ValueError(f"{name} is not a 64-bit field")
        return self.state_addr + int(field.offset)

    def set_stop_fn(self, addr: Optional[int]) -> None:
        """Function ``int stop(uc_engine *)`` the block hook calls to end a run."""
        self._state.stop_fn = addr

    def set_stop(self, uc: UcLike) -> None:
        """Let the block hook stop ``uc`` (through libunicorn's ``uc_emu_stop``)."""
        if getattr(uc, "_uch", None) is None:
            raise TypeError(f"expected an open unicorn.Uc, got {type(uc).__name__}")
        self.set_stop_fn(_func_addr(uclib.uc_emu_stop))

    def set_insn_limit(self, n: int) -> None:
        """Run at most ``n`` instructions (0: no limit); clears limit_hit.

        The hook stops emulation at the entry of the first block that would
        take :attr:`insns` past ``n``; that block does not run, so ``insns``
        stays exact (whole blocks, at most ``n``). Needs :meth:`set_stop`.
        """
        if n < 0:
            raise ValueError("instruction limit must be >= 0")
        self._state.insn_limit = n
        self._state.limit_hit = 0

    def grow_soft_tlb(self, uc: Optional[UcLike], max_entries: int,
                      ctl_addr: Optional[int] = None) -> None:
        """Let the fill hook flush ``uc``'s soft TLB so that QEMU grows it, up to
        about ``max_entries`` (``_native/softtlb.h``); ``max_entries`` <= 256
        turns that off. Every other flush of ``uc``'s TLB must be reported with
        :meth:`uc_flushed`. ``ctl_addr``: the ``int ctl(uc_engine *, int, ...)``
        to call instead of libunicorn's ``uc_ctl`` (then ``uc`` may be None)."""
        if ctl_addr is None:
            if getattr(uc, "_uch", None) is None:
                raise TypeError(f"expected an open unicorn.Uc, got {type(uc).__name__}")
            ctl_addr = _func_addr(uclib.uc_ctl)
        st = self._state
        on = max_entries > SOFT_TLB_INITIAL
        st.sizing.start(max_entries)
        st.ctl_flush = UC_CTL_FLUSH_CODE
        st.ctl = ctl_addr if on else None

    def uc_flushed(self) -> None:
        """Unicorn's soft TLB was just flushed (by the kernel model's request)."""
        self._lib.mmuemu_uc_flushed(self._ptr)

    def uc_tlb_flusher(self, uc: UcLike, ctl_addr: Optional[int] = None) -> Callable[[], None]:
        """:func:`uc_tlb_flusher` and :meth:`uc_flushed` in one foreign call
        (``mmuemu_flush_uc_tlb``), arguments converted once. Raises UcError as
        the binding does (and the sizing then does not count the flush).
        ``ctl_addr``: another ``uc_ctl`` (tests)."""
        c_handle = uc_handle(uc)
        c_code = ctypes.c_int(UC_CTL_FLUSH_CODE)
        c_ctl = ctypes.c_void_p(_func_addr(uclib.uc_ctl) if ctl_addr is None else ctl_addr)
        c_state = ctypes.c_void_p(self.state_addr)
        # a private handle on the library: no argtypes, the converted values go through
        fn = ctypes.CDLL(self._lib._name).mmuemu_flush_uc_tlb
        fn.restype = ctypes.c_int

        def flush() -> None:
            status = fn(c_state, c_ctl, c_handle, c_code)
            if status != unicorn_const.UC_ERR_OK:
                raise UcError(status)
        return flush

    def flush_deferral(self, ctl_addr: Optional[int] = None) -> memoryview:
        """Where the fault handler marks a flush of Unicorn's TLB as left to
        the refill of the faulting page: store 1 in the returned one-item
        view (``view[0] = 1``) while the handler runs. When the refill
        succeeds Unicorn writes that page's new entry over the old one, so
        nothing is flushed; otherwise ``mmuemu_tlb_fill_faulting`` flushes
        Unicorn's TLB (through ``uc_ctl``, or ``ctl_addr`` in tests), as
        :meth:`uc_tlb_flusher`'s flush would. A store, not a foreign call:
        it is made on every COW fault."""
        st = self._state
        st.flush_ctl = _func_addr(uclib.uc_ctl) if ctl_addr is None else ctl_addr
        st.flush_code = UC_CTL_FLUSH_CODE
        flag = (ctypes.c_uint32 * 1).from_buffer(st, MmuemuState.flush_deferred.offset)
        return memoryview(flag).cast("B").cast("I")

    @property
    def flushes_elided(self) -> int:
        """Flushes left to the refill of the faulting page (see
        :meth:`flush_deferral`) that the refill made unnecessary."""
        return int(self._state.flushes_elided)

    @property
    def soft_tlb(self) -> SoftTlbSizing:
        """The soft-TLB sizing state (read it; :meth:`grow_soft_tlb` sets it)."""
        return self._state.sizing

    def clear_block_table(self) -> None:
        """Forget every block's instruction count (guest code changed)."""
        self._lib.mmuemu_block_table_clear(self._ptr)

    def raise_pending(self) -> None:
        """Re-raise (once) an exception the count_block callback caught."""
        e, self.pending_error = self.pending_error, None
        if e is not None:
            self._state.count_error = 0
            raise e

    # --- the walk -----------------------------------------------------------------------
    def walk(self, va: int, access: Access, *, count: bool = True) -> WalkResult:
        """The native page walk (same rules and result as :func:`mmuemu.hw.walker.walk`).

        Accessed/dirty updates are written to physical memory either way;
        ``count=False`` leaves the walk counters (walks, walk_refs) as they were,
        for walks the hardware would not have done (e.g. reading code to count it).
        """
        st = self._state
        if va < 0 or va >= _U64:
            return WalkResult(ok=False, pa=0, perms=0, level=0, mem_refs=0, pte_pa=-1)
        refs_before = tuple(st.walk_refs)
        walks_before = st.walks
        pa = ctypes.c_uint64()
        perms = ctypes.c_uint32()
        level = ctypes.c_int()
        ok = self._lib.mmuemu_walk(self._ptr, va, int(access), ctypes.byref(pa),
                                   ctypes.byref(perms), ctypes.byref(level))
        refs = sum(st.walk_refs) - sum(refs_before)
        if not count:
            for i, v in enumerate(refs_before):
                st.walk_refs[i] = v
            st.walks = walks_before
        last = st.last_pte_pa
        return WalkResult(ok=bool(ok), pa=pa.value, perms=perms.value, level=level.value,
                          mem_refs=refs, pte_pa=-1 if last == _NO_PTE else int(last))

    # --- counters -----------------------------------------------------------------------
    @property
    def fills(self) -> int:
        """Unicorn TLB fills seen by the native hook."""
        return int(self._state.fills)

    @property
    def fills_resolved(self) -> int:
        """Fills resolved from the page tables (no fault)."""
        return int(self._state.fills_resolved)

    @property
    def fills_faulted(self) -> int:
        """Fills passed on to the next (Python, page-fault) hook."""
        return int(self._state.fills_faulted)

    @property
    def fills_by_access(self) -> dict[Access, int]:
        """Fills per access kind."""
        return {a: int(self._state.fills_by_access[a - Access.READ]) for a in Access}

    @property
    def walks(self) -> int:
        """Page walks done (fills plus counted Python walks)."""
        return int(self._state.walks)

    @property
    def walk_refs(self) -> tuple[int, ...]:
        """Page-table entries read, per level (0 = top)."""
        return tuple(int(v) for v in self._state.walk_refs)

    @property
    def walk_mem_refs(self) -> int:
        """Page-table entries read in all walks."""
        return sum(self.walk_refs)

    @property
    def ad_updates(self) -> int:
        """Entries the walker wrote back (accessed/dirty updates)."""
        return int(self._state.ad_updates)

    @property
    def insns(self) -> int:
        """Guest instructions counted (whole blocks, at block entry)."""
        return int(self._state.insns)

    @property
    def blocks(self) -> int:
        """Basic blocks executed."""
        return int(self._state.blocks)

    @property
    def block_misses(self) -> int:
        """Blocks counted by the Python callback (new (address, size) pairs)."""
        return int(self._state.block_misses)

    @property
    def blocks_cached(self) -> int:
        """Distinct blocks in the count table."""
        return int(self._state.tab_used)

    @property
    def insn_limit(self) -> int:
        return int(self._state.insn_limit)

    @property
    def limit_hit(self) -> bool:
        """The instruction limit stopped emulation."""
        return bool(self._state.limit_hit)

    @property
    def count_error(self) -> bool:
        """The count_block callback failed and emulation was stopped."""
        return bool(self._state.count_error)

    # --- lifetime -----------------------------------------------------------------------
    def close(self) -> None:
        """Free the native tables. Hooks using this state must be gone already."""
        if not self._closed:
            self._lib.mmuemu_state_free_tables(self._ptr)
            self._state.count_block = None
            self._count_cb = None
            self._count_fn = None
            self._state.fault_handler = None
            self._fault_handler = None  # drops the handler (and what it refers to)
            self._closed = True

