"""The emulator's trace sink: kernel tracepoints → enriched events → a trace writer.

:class:`FaultTracer` implements :class:`mmuemu.kernel.tracepoints.TraceSink`.
The kernel reports what it did (a fault and its handler, an mm syscall, a
TLB-flush request); the tracer adds what only the machine knows: the
sequence number, the instruction count and cycle estimate, the pc and the
faulting instruction (capstone), the VMA described portably (role and page
index, see :func:`vma_place`) and the pfn the PTE now maps. Events outside
the filter are dropped before any of that work.

Faults are the hot path, so recording is split in two. At the event, the
tracer captures only what can change later, packed into one bytearray
(:data:`mmuemu.trace.derive.RECORD`, 80 bytes an event): the instruction
count, the pc and its instruction text (from a cache), the PTE's raw value
(a later fault, COW, zap or swap-out rewrites it) and the VMA's
:data:`Placement` (the VMA may be split, grown, mprotected or unmapped
later; placements are remembered per VMA while the fields they depend on
stay the same). Strings and placements are numbered once
(:class:`~mmuemu.trace.derive.Interner`). In fast mode the common case of
that step runs in C (:mod:`mmuemu.emu._tracerec`, with the pc the native
fill hook read), and the Python methods take the rest. What is a pure
function of the record, the cycle estimate, the kind's name, the page
index, the outcome and the pfn, is derived by a :class:`RecordDeriver`
later: by default in the writer process (:mod:`mmuemu.trace.background`),
which gets the records a batch at a time and formats and writes them on
another core while the run goes on; inline, when a chunk's worth of events
is handed to the writer (:meth:`FaultTracer._drain`) or when the trace is
closed. The bytes are the same as deriving everything at the event. No
object per event and no reference to a kernel object is held: the garbage
collector has nothing more to count or to walk, where a record object per
event used to bring on a full collection of the whole heap (tens of ms) in
a run of a few ten thousand faults.

Wiring: ``Machine.__init__`` calls :meth:`FaultTracer.attach` before exec,
so exec's own faults are traced; ``Machine.run`` calls
:meth:`FaultTracer.task_exit` when the guest ends. Attaching sets the tracer
as ``kern.trace``, which binds the kernel's probes
(:class:`~mmuemu.kernel.tracepoints.Tracepoints`): the fault path calls
``kern.tracepoints.page_fault`` and the TLB glue ``kern.tracepoints.tlb_flush``,
the C recorders in fast mode. Tracing only reads machine
state (page tables through the kernel's own lookup, never the walker), so a
traced run counts exactly what an untraced one does.
"""
from __future__ import annotations

import ctypes
import functools
import operator
import os
import struct
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import capstone  # type: ignore[import-untyped, unused-ignore]

from mmuemu._types import Arch
from mmuemu.kernel.mm_types import VM, MmStruct, VmAreaStruct, VmFault
from mmuemu.kernel.mmap import find_vma
from mmuemu.kernel.pgtable import pte_offset_lookup
from mmuemu.kernel.sched import TaskStruct
from mmuemu.kernel.vma_tree import VmaTree
from mmuemu.trace.background import BackgroundWriter
from mmuemu.trace.background import supported as background_supported
from mmuemu.trace.schema import ALL_EVENTS, KINDS, EventFilter, TraceHeader
from mmuemu.trace.derive import (_FAULT, _FAULT_KIND_NAMES, _OTHER, F_MAJOR,  # noqa: F401
                                  F_NAMED, F_PC, F_PLACED, F_PTE, F_USER, RECORD, U32, U64,
                                  _SIGNAL_OUTCOMES, Batch, Interner, Placement, RecordDeriver,
                                  _DerivingSink, deriving_sink, fault_kind_name, place)
from mmuemu.trace.writer import trace_encoding

try:
    from mmuemu.emu import _tracerec
except ImportError:  # not built: the Python method records every fault
    _tracerec = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from mmuemu.emu.machine import Machine, RunResult

#: Every kind a fault can be reported as (what :func:`fault_kind` can return).
FAULT_KINDS: frozenset[str] = frozenset(k for k in KINDS if k.startswith("fault."))
_FLUSH_KINDS = {"page": "flush.tlb_page", "range": "flush.tlb_range", "mm": "flush.tlb_mm",
                "icache": "flush.icache"}
_EXIT_OUTCOMES = {"exit": "exit", "signal": "signal"}
_DISASM_CACHE_MAX = 4096
#: VMAs whose placement is remembered; past this the memo starts again
_VMA_MEMO_MAX = 4096
#: items in the C recorders' memo of the last placement, and entries in each of
#: their memos of recent objects (tracerec.c: VMA_MEMO_LEN, MEMO_WAYS)
_VMA_MEMO_LEN: int = getattr(_tracerec, "VMA_MEMO_LEN", 0)
_MEMO_WAYS: int = getattr(_tracerec, "MEMO_WAYS", 1)
#: the numbers a recorder's ctx packs (tracerec.c: struct ctx_words): the host
#: addresses of the native insns, fault_vaddr and fault_pc, guest RAM's address
#: and size, and the batch size in bytes
_CTX_WORDS = struct.Struct("=6Q")
#: bits in the bitmap of cached instructions' pages (tracerec.c: INSN_PAGE_BITS)
_INSN_PAGE_BITS: int = getattr(_tracerec, "INSN_PAGE_BITS", 8)
_SENTINEL = 0x5A5A_A5A5_5A5A_A5A5


def pc_reader(uc: Any, reg: int) -> Callable[[], int]:
    """A fast reader of one 64-bit register (libunicorn's uc_reg_read through ctypes).

    The binding's ``Uc.reg_read`` costs about 2 µs; its ``uclib.uc_reg_read``,
    which converts each argument through ``argtypes``, 0.35 µs; the same C
    function called with arguments converted once, 0.2 µs. Each reader is
    checked against the binding, and the next one is tried if it disagrees
    or the library's layout is not the expected one.
    """
    expected = int(uc.reg_read(reg))
    try:
        from unicorn.unicorn_py3.unicorn import uclib
        handle = uc._uch
        buf = ctypes.c_uint64()
        ref = ctypes.byref(buf)
        fn = uclib.uc_reg_read
        # a private handle on the same library: its uc_reg_read has no argtypes,
        # so the pre-converted arguments go straight through
        raw = ctypes.CDLL(uclib._name).uc_reg_read
        raw.restype = ctypes.c_int
        c_handle = ctypes.c_void_p(handle.value if isinstance(handle, ctypes.c_void_p) else handle)
        c_reg = ctypes.c_int(reg)

        def read_raw() -> int:
            raw(c_handle, c_reg, ref)
            return buf.value

        def read() -> int:
            fn(handle, reg, ref)
            return buf.value
        for reader in (read_raw, read):
            buf.value = expected ^ _SENTINEL  # the call must overwrite it
            try:
                if reader() == expected:
                    return reader
            except (ctypes.ArgumentError, OSError):
                continue
    except (ImportError, AttributeError, TypeError, OSError, ctypes.ArgumentError):
        pass
    return lambda: int(uc.reg_read(reg))


def fault_kind(vmf: Optional[VmFault]) -> str:
    """The trace kind of a handled fault (``fault.bad_area`` when no handler ran).

    Never raises: a handler kind the schema does not know yet is reported as
    ``fault.<kind>`` if the schema has it, else as ``fault.spurious``.
    """
    if vmf is None:
        return "fault.bad_area"
    return fault_kind_name(vmf.kind.value, vmf.detail)


#: What a :data:`Placement` is computed from, read at the event: vm_start,
#: vm_end, vm_flags, vm_ops, vm_file, vm_private_data, mm.start_brk, mm.end_data.
#: (``vm_ops`` and ``vm_file`` are fixed objects once mmap has returned, and
#: their names with them.)
VmaSnapshot = tuple[int, int, int, Any, Any, object, int, int]


def vma_snapshot(mm: MmStruct, vma: VmAreaStruct) -> VmaSnapshot:
    """The fields of ``vma`` and ``mm`` its placement depends on, now."""
    return (vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_ops, vma.vm_file,
            vma.vm_private_data, mm.start_brk, mm.end_data)


def vma_placement(snap: VmaSnapshot, exe_path: str) -> Placement:
    """The :data:`Placement` of a VMA from its snapshot (the rules of :func:`vma_place`)."""
    start, end, flags, ops, f, private, brk, end_data = snap
    if flags & VM.GROWSDOWN:
        return ("stack", end, True, 0)
    if ops is not None:
        if ops.name == "shmem_vm_ops":
            return ("shmem", start, False, 0)
        if ops.name == "special_mapping_vmops" and isinstance(private, str):
            return (private.strip("[]"), start, False, 0)  # vdso, vvar
    if f is not None:
        if f.f_inode.host_path == exe_path and not flags & VM.SHARED:
            if flags & VM.EXEC:
                return ("text", start, False, 0)
            return ("data" if flags & VM.WRITE else "rodata", start, False, 0)
        return ("file:" + os.path.basename(f.path), start, False, 0)
    if brk and start <= brk < end:
        return ("bss", start, False, brk)
    if brk and end <= brk and end > (end_data & ~0xFFF):
        return ("bss", start, False, 0)
    return ("anon", start, False, 0)


def vma_place(mm: MmStruct, vma: VmAreaStruct, addr: int, exe_path: str) -> tuple[str, int]:
    """(role, page index) of ``addr`` inside ``vma``: where it is, portably.

    Roles: ``text`` / ``rodata`` / ``data`` (private mappings of the executable
    ``exe_path``: executable, read-only, writable), ``bss`` (anonymous, between
    the end of the data and start_brk), ``heap`` (anonymous, from start_brk;
    pages counted from start_brk, so a bss VMA merged with the heap still
    numbers the heap from 0), ``stack`` (VM_GROWSDOWN; pages counted down from
    vm_end, since vm_start moves as the stack grows), ``shmem``, ``vdso`` and
    ``vvar`` (special mappings), ``file:<basename>`` and ``anon``.
    """
    return place(vma_placement(vma_snapshot(mm, vma), exe_path), addr)


_HotState = tuple[bytearray, dict[VmAreaStruct, tuple[VmaSnapshot, Placement]],
                  dict[tuple[int, int], str], Callable[[], int], Callable[[], int],
                  Callable[[int], int], int]


def insns_reader(native: Any) -> Callable[[], int]:
    """A reader of ``native.insns``, the guest instruction count.

    The property reads the ``insns`` field of the native state, whose address
    is ``native.state_addr``; a :class:`MmuemuState` placed there and a C-level
    getter read the same field without the property's Python frame (about half
    the cost). Falls back to the property if the two disagree.
    """
    prop = functools.partial(operator.attrgetter("insns"), native)
    try:
        from mmuemu.emu.native import MmuemuState
        view = MmuemuState.from_address(native.state_addr)
        direct: Callable[[], int] = functools.partial(operator.attrgetter("insns"), view)
        if direct() == prop():
            return direct
    except (ImportError, AttributeError, TypeError, ValueError):
        pass
    return prop


#: Events per batch sent to the writer process: small enough that the process
#: keeps up during the run, large enough that a send costs little per event.
BACKGROUND_BATCH_EVENTS = 1024

#: The classes whose attributes the C recorder reads (vmf, task, mm, vma, the
#: mm's VMA tree): it reads their __slots__ members in place, without
#: getattr's type lookup, and any other object through getattr.
RECORDED_CLASSES: tuple[type, ...] = (VmFault, TaskStruct, MmStruct, VmAreaStruct, VmaTree)


class FaultTracer:
    """A :class:`TraceSink` writing enriched events to a trace file.

    Events are recorded (see the module docstring) and handed over in
    batches. In the background (the default where the platform has posix_spawn), a
    :class:`~mmuemu.trace.background.BackgroundWriter` child derives, formats
    and writes them while the run goes on, and :meth:`close` waits for it to
    finish the last batch. Inline, batches are a writer chunk
    (:attr:`TraceWriter.chunk_events`) and are derived and written here, so a
    trace of fewer events is formatted and packed by :meth:`close`, after the
    run. Either way at most one chunk is held in memory, and the bytes are
    the same.

    Args:
        path: the trace file; ``.jsonl`` or ``.mmtrace`` (checked, and the file
            created, at once, so a bad path fails before the run).
        events: which kinds to keep.
        argv: the guest arguments after the program, for the header.
        background: write in a child process (None: where the platform can).
        writer: that child, started already (:func:`start_writer`, early in
            the command line, so the child starts up while the emulator
            imports); implies ``background``.
    """

    def __init__(self, path: str | os.PathLike[str], events: EventFilter = ALL_EVENTS,
                 argv: Sequence[str] = (), background: Optional[bool] = None,
                 writer: Optional[BackgroundWriter] = None) -> None:
        self.path = os.fspath(path)
        trace_encoding(self.path)
        open(self.path, "wb").close()
        self.events = events
        self.argv = tuple(argv)
        self.background = writer is not None or \
            (background_supported() if background is None else background)
        #: inline: the sink records are derived and written through, set by attach()
        self._sink: Optional[_DerivingSink] = None
        self._finished_background: Optional[BackgroundWriter] = None
        #: started now, so it imports while the machine is built (see BackgroundWriter)
        self._background: Optional[BackgroundWriter] = \
            writer if writer is not None else \
            BackgroundWriter(deriving_sink) if self.background else None
        #: what the writer reported at close (see stats())
        self._writer_info: dict[str, Any] = {}
        #: records not yet written, packed (see derive.RECORD); one bytearray for
        #: the tracer's life, and the numbering of the objects they refer to
        self._pending = bytearray()
        self._interner = Interner()
        #: events written (the sequence number of the first record waiting)
        self._written = 0
        #: every fault kind is kept, so a fault's kind can be named later
        self._all_faults = FAULT_KINDS <= events.kinds
        #: (mm context id, pc) → instruction text
        self._disasm: dict[tuple[int, int], str] = {}
        #: a bit per page (pc >> 12, modulo the bitmap's size) of each cached
        #: instruction, of any address space: the C flush recorder tests a flushed
        #: page's bit instead of scanning _disasm (a bit set for another page is
        #: harmless: the Python method then decides)
        self._insn_pages = bytearray(_INSN_PAGE_BITS // 8)
        #: the C recorder's memo of recent instructions (_MEMO_WAYS entries [context
        #: id, pc, text]): see _forget_insn_memo()
        self._insn_memo: list[Any] = [None, None, None] * _MEMO_WAYS
        #: VMA → (its snapshot, its placement) as last seen
        self._vmas: dict[VmAreaStruct, tuple[VmaSnapshot, Placement]] = {}
        #: the C recorders' memo of the last placement they found: [VMA, placement,
        #: the objects its snapshot's fields held] (checked by identity; emptied
        #: with _vmas, so that no VMA is kept alive)
        self._vma_memo: list[Any] = [None] * _VMA_MEMO_LEN
        self._exited: set[int] = set()
        #: set by attach(), None before and after close(): see attach()
        self._hot: Optional[_HotState] = None

    # --- wiring ---------------------------------------------------------------------
    def attach(self, machine: "Machine", cpi: float = 1) -> None:
        """Start tracing ``machine`` (before exec): write the header, become kern.trace.

        An event's ``cycles`` is its instruction count times ``cpi`` (the
        profile's base CPI), rounded; worked out when the event is written.
        """
        self._machine = machine
        self._insns = insns_reader(machine.native)
        self._arch = machine.spec.name
        self._read_pc = pc_reader(machine.uc, machine.regs[machine.spec.pc_reg])
        self._exe = os.path.realpath(machine.path)
        self._fmt = machine.kern.fmt
        self._phys = machine.phys
        self._pte_word = machine.phys.words.__getitem__
        self._cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64) \
            if machine.spec.arch is Arch.X86_64 else \
            capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        profile = machine.profile
        header = TraceHeader(arch=self._arch, program=os.path.basename(machine.path),
                             argv=self.argv, config=machine.kconfig.as_dict(),
                             events=self.events.names(),
                             cycles=f"insns x cost.base_cpi {profile.cost.base_cpi:g} "
                                    f"(profile {profile.name}); the full estimate, with "
                                    f"TLB, walks, faults and flushes, is in --stats")
        # the PTE format's class, not the machine's object: pickling an object
        # reads its __dict__, and from then on Python 3.11 reads its attributes
        # without specializing (the fault path reads the format's masks on
        # every fault: about 17 ns a read instead of 2)
        setup = (self.path, header, self._arch, type(self._fmt), cpi)
        if self._background is not None:
            self._background.start(setup)
            batch = BACKGROUND_BATCH_EVENTS
        else:
            self._sink = deriving_sink(setup)
            batch = max(1, self._sink.writer.chunk_events)
        #: what the fault path reads, in one attribute: the records, the placements,
        #: the disassembly cache, the readers, and the batch size in list items
        self._hot = (self._pending, self._vmas, self._disasm, self._read_pc, self._insns,
                     self._pte_word, batch * RECORD.size)
        self._use_native_recorder(machine, batch * RECORD.size)
        machine.kern.trace = self

    def _use_native_recorder(self, machine: "Machine", batch_bytes: int) -> None:
        """Record faults with ``record_fault`` (``mmuemu.emu._tracerec``, bound
        to its ctx by ``fault_recorder``) where it can: fast mode (its fill
        hook publishes the pc), every fault kind kept, and the extension
        built; and page and range TLB flushes with ``record_flush`` (bound by
        ``flush_recorder``, when the filter keeps them). Each records the
        common case and hands the rest to the Python method (:meth:`fault`,
        :meth:`tlb_flush`), so the records are the same either way."""
        if _tracerec is None or machine.exact is not None or machine.raw_mode \
                or not self._all_faults or type(self).fault is not FaultTracer.fault \
                or getattr(_tracerec, "RECORD_SIZE", None) != RECORD.size \
                or getattr(_tracerec, "WORDS_SIZE", None) != _CTX_WORDS.size \
                or not _VMA_MEMO_LEN:
            return  # (a subclass's own fault() must see every fault; a stale build)
        native = machine.native
        native.capture_fault_pc(machine.uc, machine.regs[machine.spec.pc_reg])
        ids = self._interner
        classes = RECORDED_CLASSES
        layout = (_tracerec.slot_layout(*classes), classes)
        insns_at = native.field_addr("insns")
        words = _CTX_WORDS.pack(insns_at, native.field_addr("fault_vaddr"),
                                native.field_addr("fault_pc"), machine.phys.address(),
                                machine.phys.size, batch_bytes)
        ctx = (self._pending, self._vmas, self._disasm, words,
               FaultTracer.fault.__get__(self), self._drain, ids.ids, ids.new, layout,
               [None] * (10 * _MEMO_WAYS), self._insn_memo, [None, None] * _MEMO_WAYS,
               self._vma_memo)
        #: the instance attribute the kernel's trace.fault(...) finds first
        self.fault = _tracerec.fault_recorder(ctx)  # type: ignore[method-assign]
        if {"flush.tlb_page", "flush.tlb_range"} <= self.events.kinds \
                and type(self).tlb_flush is FaultTracer.tlb_flush:
            flush_words = _CTX_WORDS.pack(insns_at, 0, 0, 0, 0, batch_bytes)
            flush_ctx = (self._pending, self._vmas, self._disasm, flush_words,
                         FaultTracer.tlb_flush.__get__(self), self._drain, machine.kern,
                         ids.ids, ids.new, "page", "range", _FLUSH_KINDS["page"],
                         _FLUSH_KINDS["range"], layout, [None] * (10 * _MEMO_WAYS),
                         self._vma_memo, self._insn_pages)
            self.tlb_flush = _tracerec.flush_recorder(  # type: ignore[method-assign]
                flush_ctx)

    def close(self) -> None:
        """Write the waiting events and the end record; later events are dropped.

        Raises TraceWriterError if the writer process failed, OSError if the
        inline writer did.
        """
        if self._sink is None and self._background is None:
            return
        try:
            self._drain()
        finally:
            self._hot = None
            self.__dict__.pop("fault", None)  # the native recorders, if attached
            self.__dict__.pop("tlb_flush", None)
            machine = getattr(self, "_machine", None)
            if machine is not None and machine.kern.trace is self:
                machine.kern.trace = self  # the kernel's probes: the methods again
            self._pending.clear()
            self._forget_placements()
            background, self._background = self._background, None
            sink, self._sink = self._sink, None
            if background is not None:
                # kept: the process may still be exiting, and is reaped when this goes
                self._finished_background = background
                self._writer_info = {"writer": "process", "events": self._written,
                                     **background.close()}
            elif sink is not None:
                self._writer_info = {"writer": "inline", "events": self._written,
                                     **sink.finish()}

    def stats(self) -> dict[str, Any]:
        """How the trace was written: ``writer`` (``process`` or ``inline``),
        ``events``, and for a writer process its own ``cpu_seconds``."""
        return dict(self._writer_info) if self._writer_info else \
            {"writer": "process" if self.background else "inline", "events": self.n_events}

    def __enter__(self) -> "FaultTracer":
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def n_events(self) -> int:
        """Events recorded so far (written, or waiting for the next chunk or close)."""
        return self._written + len(self._pending) // RECORD.size

    # --- records → the writer --------------------------------------------------------
    def hand_over(self) -> None:
        """Send the waiting records to the writer process now, not when the
        batch is full. The machine calls this before a task's exit: tearing
        its address space down takes a while (a 20,000-page zap is about
        10 ms), and the writer derives the records meanwhile instead of
        while :meth:`close` waits. The trace is the same: batches only
        carry records, in order. Inline, the records wait for their chunk."""
        if self._background is not None:
            self._drain()

    def _drain(self) -> None:
        """Hand the waiting records over: to the writer process as they are, or
        (inline) derived into rows and straight to the writer."""
        recs = self._pending
        if not recs:
            return
        if self._background is not None:
            # the bytearray itself: marshal copies it into the frame (the child
            # reads bytes), so the records are not copied twice
            self._background.send((self._interner.take_new(), recs))
        elif self._sink is not None:
            batch: Batch = (self._interner.take_new(), bytes(recs))
            self._sink.consume(batch)
        else:
            return
        self._written += len(recs) // RECORD.size
        recs.clear()

    # --- helpers --------------------------------------------------------------------
    def _placement(self, mm: MmStruct, vma: Optional[VmAreaStruct],
                   addr: int) -> Optional[Placement]:
        """The placement of the VMA holding ``addr`` (None if ``vma`` does not).

        Remembered per VMA while :func:`vma_snapshot` of it stays the same.
        """
        if vma is None or not vma.vm_start <= addr < vma.vm_end:
            return None
        snap = vma_snapshot(mm, vma)
        ent = self._vmas.get(vma)
        if ent is not None and ent[0] == snap:
            return ent[1]
        return self._new_placement(vma, snap)

    def _forget_insn_memo(self) -> None:
        """Make the C recorder's memo of instructions answer nothing (an entry of
        _disasm was dropped: the instruction there may have changed), and
        bring the set of cached instructions' pages down to what is left."""
        self._insn_memo[0::3] = [None] * (len(self._insn_memo) // 3)
        self._insn_pages[:] = bytes(len(self._insn_pages))
        for _, pc in self._disasm:
            self._mark_insn_page(pc)

    def _mark_insn_page(self, pc: int) -> None:
        """Set the bit of ``pc``'s page in the bitmap of cached instructions' pages."""
        i = (pc >> 12) % _INSN_PAGE_BITS
        self._insn_pages[i >> 3] |= 1 << (i & 7)

    def _forget_placements(self) -> None:
        self._vmas.clear()
        self._vma_memo[:] = [None] * _VMA_MEMO_LEN

    def _new_placement(self, vma: VmAreaStruct, snap: VmaSnapshot) -> Placement:
        if len(self._vmas) >= _VMA_MEMO_MAX:
            self._forget_placements()
        pl = vma_placement(snap, self._exe)
        self._vmas[vma] = (snap, pl)
        return pl

    def _emit(self, task: TaskStruct, kind: str, addr: int, length: int = 0,
              role: Optional[str] = "", page: int = -1, placement: Optional[Placement] = None,
              outcome: str = "", prot: int = 0, flags: int = 0, result: int = 0) -> None:
        """Record a non-fault event; ``role`` None places ``addr`` by ``placement``."""
        if self._hot is None:
            return
        pending, _, _, _, insns_fn, _, batch = self._hot
        n = self._interner.id
        pending += RECORD.pack(
            _OTHER, F_PLACED if role is None else 0, 0, task.pid, insns_fn(), addr & U64,
            length & U64, result & U64, page if role is not None else -1, flags & U64, n(kind),
            n(outcome), n(role), 0, n(placement), prot & U32)
        if len(pending) >= batch:
            self._drain()

    def _pte_pfn(self, pte_pa: Optional[int]) -> Optional[int]:
        if pte_pa is None:
            return None
        pte = self._pte_word(pte_pa >> 3)
        fmt = self._fmt
        return fmt.pte_pfn(pte) if fmt.pte_present(pte) else None

    def _code(self, mm: MmStruct, va: int, n: int) -> bytes:
        """Up to ``n`` bytes of mapped memory at ``va`` (short at an unmapped page)."""
        out = b""
        while n > 0:
            pfn = self._pte_pfn(pte_offset_lookup(mm, va))
            if pfn is None:
                break
            take = min(n, 4096 - (va & 0xFFF))
            out += self._phys.read((pfn << 12) | (va & 0xFFF), take)
            va += take
            n -= take
        return out

    def _insn(self, mm: MmStruct, pc: int) -> str:
        """The instruction at ``pc``, disassembled.

        Cached by (address space, pc) until the address space changes (an mm
        syscall, or a TLB flush covering the pc, drops the entry): code that
        rewrites itself in place through a writable alias, with neither, would be
        shown stale.
        """
        key = (mm.context_id, pc)
        text = self._disasm.get(key)
        if text is None:
            code = self._code(mm, pc, 15 if self._arch == "x86_64" else 4)
            text = "(undecodable)"
            for _, _, mnemonic, op_str in self._cs.disasm_lite(code, pc, 1):
                text = f"{mnemonic} {op_str}".strip()
            if len(self._disasm) >= _DISASM_CACHE_MAX:
                self._disasm.clear()
                self._forget_insn_memo()
            self._disasm[key] = text
            self._mark_insn_page(pc)
        return text

    # --- the TraceSink protocol ---------------------------------------------------------
    def fault(self, task: TaskStruct, address: int, access: str, vmf: Optional[VmFault],
              vma: Optional[VmAreaStruct], major: bool, signal: int, user: bool) -> None:
        """A page fault, resolved or ending in a signal.

        The hot path: it records what can change later and leaves the rest to
        :meth:`_drain`. (:meth:`_placement` is inlined.)
        """
        hot = self._hot
        if hot is None:
            return
        kind: str
        detail: Optional[str]
        if vmf is None:
            kind, detail = "fault.bad_area", None
            if kind not in self.events.kinds:
                return
        elif self._all_faults:
            kind, detail = vmf.kind._value_, vmf.detail
        else:
            kind, detail = fault_kind(vmf), None
            if kind not in self.events.kinds:
                return
        pending, vmas, disasm, read_pc, insns_fn, pte_word, batch = hot
        mm = task.mm
        pte: Optional[int] = None
        if not signal:
            pte_pa = vmf.pte_pa if vmf is not None and vmf.pte_pa else \
                pte_offset_lookup(mm, address)
            if pte_pa is not None:
                pte = pte_word(pte_pa >> 3)
        pl: Optional[Placement] = None
        if vma is not None and vma.vm_start <= address < vma.vm_end:
            snap = (vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_ops, vma.vm_file,
                    vma.vm_private_data, mm.start_brk, mm.end_data)
            ent = vmas.get(vma)
            pl = ent[1] if ent is not None and ent[0] == snap else \
                self._new_placement(vma, snap)
        pc: Optional[int] = None
        insn = ""
        if user:
            pc = read_pc()
            insn = disasm.get((mm.context_id, pc)) or self._insn(mm, pc)
        n = self._interner.id
        pending += RECORD.pack(
            _FAULT, (F_USER if user else 0) | (F_MAJOR if major else 0)
            | (F_PC if pc is not None else 0) | (F_PTE if pte is not None else 0)
            | (F_NAMED if detail is None else 0), signal, task.pid, insns_fn(), address,
            pc or 0, pte or 0, 0, 0, n(kind), n(detail), n(access), n(insn), n(pl), 0)
        if len(pending) >= batch:
            self._drain()

    def mm_op(self, task: TaskStruct, op: str, start: int, length: int, prot: int,
              flags: int, result: int) -> None:
        """An mm syscall returned ``result``; brk is placed by its new break."""
        self._disasm.clear()
        self._forget_insn_memo()
        self._forget_placements()  # VMAs may be gone: do not keep them alive
        kind = "mm." + op
        if kind not in self.events.kinds or self._hot is None:
            return
        mm = task.mm
        if op == "brk":
            self._emit(task, kind, start, length=length, role="heap",
                       page=(result - mm.start_brk) >> 12, prot=prot, flags=flags, result=result)
        else:
            self._emit(task, kind, start, length=length, role=None,
                       placement=self._placement(mm, find_vma(mm, start), start), prot=prot,
                       flags=flags, result=result)

    def tlb_flush(self, mm: MmStruct, kind: str, start: int, end: int) -> None:
        """A TLB (or I-cache) maintenance request from the kernel.

        Frequent (a flush per COW or write-protect fault), so :meth:`_emit` and
        :meth:`_placement` are inlined as in :meth:`fault`.
        """
        disasm = self._disasm
        if kind == "mm":
            disasm.clear()
            self._forget_insn_memo()
        elif kind != "icache" and disasm:
            cid = mm.context_id
            dropped = [k for k in disasm if k[0] == cid and start <= k[1] < end]
            for key in dropped:
                del disasm[key]
            if dropped:
                self._forget_insn_memo()
        hot = self._hot
        name = _FLUSH_KINDS.get(kind, "flush.tlb_mm")
        if hot is None or name not in self.events.kinds:
            return
        pending, vmas, _, _, insns_fn, _, batch = hot
        running: TaskStruct = self._machine.task
        task = running if running.mm is mm else self._owner(mm)
        role: Optional[str] = ""
        pl: Optional[Placement] = None
        if kind != "mm":
            role = None  # placed by pl, or nowhere
            vma = find_vma(mm, start)
            if vma is not None and vma.vm_start <= start < vma.vm_end:
                snap = (vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_ops, vma.vm_file,
                        vma.vm_private_data, mm.start_brk, mm.end_data)
                ent = vmas.get(vma)
                pl = ent[1] if ent is not None and ent[0] == snap else \
                    self._new_placement(vma, snap)
        n = self._interner.id
        pending += RECORD.pack(
            _OTHER, F_PLACED if role is None else 0, 0, task.pid, insns_fn(), start & U64,
            max(0, end - start) & U64, 0, -1, 0, n(name), n(""), n(role), 0, n(pl), 0)
        if len(pending) >= batch:
            self._drain()

    def _owner(self, mm: MmStruct) -> TaskStruct:
        """The task whose address space ``mm`` is: the running one, as a rule."""
        running: TaskStruct = self._machine.task
        if running.mm is mm:
            return running
        tasks: dict[int, TaskStruct] = getattr(self._machine.kern, "tasks", {})
        return next((t for _, t in sorted(tasks.items()) if t.mm is mm), running)

    def fork(self, parent: TaskStruct, child: TaskStruct) -> None:
        """fork/clone made ``child`` (a proposed tracepoint in copy_process)."""
        if "task.fork" in self.events.kinds:
            self._emit(parent, "task.fork", 0, result=child.pid)

    def exit(self, task: TaskStruct, code: int, signal: int = 0) -> None:
        """do_exit(): ``task`` ended with ``code``, or was killed by ``signal``
        (a proposed tracepoint in do_exit; each pid gets one task.exit)."""
        if task.pid in self._exited:
            return
        self._exited.add(task.pid)
        if "task.exit" in self.events.kinds:
            self._emit(task, "task.exit", 0, outcome="signal" if signal else "exit",
                       result=128 + signal if signal else code & 0xFF)

    def task_exit(self, task: TaskStruct, result: "RunResult") -> None:
        """The run ended (called by the machine): the exit status, 128+signal, or a
        limit. Skipped when do_exit already reported this task."""
        if task.pid in self._exited:
            return
        self._exited.add(task.pid)
        if "task.exit" in self.events.kinds:
            self._emit(task, "task.exit", 0,
                       outcome=_EXIT_OUTCOMES.get(result.stop_reason, "limit"),
                       result=result.exit_code)
