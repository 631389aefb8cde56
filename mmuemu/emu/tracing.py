"""The emulator's trace sink: kernel tracepoints → enriched events → a trace writer.

:class:`FaultTracer` implements :class:`mmuemu.kernel.tracepoints.TraceSink`.
The kernel reports what it did (a fault and its handler, an mm syscall, a
TLB-flush request); the tracer adds what only the machine knows: the
sequence number, the instruction count and cycle estimate, the pc and the
faulting instruction (capstone), the VMA described portably (role and page
index, see :func:`vma_place`) and the pfn the PTE now maps. Events outside
the filter are dropped before any of that work.

Wiring: ``Machine.__init__`` calls :meth:`FaultTracer.attach` before exec,
so exec's own faults are traced; ``Machine.run`` calls
:meth:`FaultTracer.task_exit` when the guest ends; the TLB glue reports
flushes through ``mm.kernel.trace.tlb_flush``. Tracing only reads machine
state (page tables through the kernel's own lookup, never the walker), so a
traced run counts exactly what an untraced one does.
"""
from __future__ import annotations

import ctypes
import os
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import capstone  # type: ignore[import-untyped, unused-ignore]

from mmuemu._types import Arch
from mmuemu.kernel.mm_types import VM, FaultKind, MmStruct, VmAreaStruct, VmFault
from mmuemu.kernel.mmap import find_vma
from mmuemu.kernel.pgtable import pte_offset_lookup
from mmuemu.kernel.sched import TaskStruct
from mmuemu.trace.schema import ALL_EVENTS, KINDS, EventFilter, TraceEvent, TraceHeader
from mmuemu.trace.writer import TraceWriter, open_writer, trace_encoding

if TYPE_CHECKING:
    from mmuemu.emu.machine import Machine, RunResult

_FAULT_KINDS: dict[tuple[FaultKind, str], str] = {
    (FaultKind.ANON, ""): "fault.anon",
    (FaultKind.ZERO, ""): "fault.zero",
    (FaultKind.FILE, ""): "fault.file",
    (FaultKind.COW, ""): "fault.cow",
    (FaultKind.WP, "zero"): "fault.wp_zero",
    (FaultKind.WP, "reuse"): "fault.wp_reuse",
    (FaultKind.WP, ""): "fault.wp_reuse",
    (FaultKind.SHARED, ""): "fault.shared",
    (FaultKind.SWAP, ""): "fault.swap",
    (FaultKind.SPURIOUS, ""): "fault.spurious",
}
_SIGNAL_OUTCOMES = {11: "segv", 7: "sigbus", 9: "oom"}
_FLUSH_KINDS = {"page": "flush.tlb_page", "range": "flush.tlb_range", "mm": "flush.tlb_mm",
                "icache": "flush.icache"}
_EXIT_OUTCOMES = {"exit": "exit", "signal": "signal"}
_DISASM_CACHE_MAX = 4096


def pc_reader(uc: Any, reg: int) -> Callable[[], int]:
    """A fast reader of one 64-bit register (libunicorn's uc_reg_read through ctypes).

    The binding's ``Uc.reg_read`` costs about 2 µs, this 0.4 µs; it falls back to
    the binding if the library's layout is not the expected one.
    """
    try:
        from unicorn.unicorn_py3.unicorn import uclib
        handle = uc._uch
        buf = ctypes.c_uint64()
        ref = ctypes.byref(buf)
        fn = uclib.uc_reg_read

        def read() -> int:
            fn(handle, reg, ref)
            return buf.value
        if read() == int(uc.reg_read(reg)):
            return read
    except (ImportError, AttributeError, ctypes.ArgumentError):
        pass
    return lambda: int(uc.reg_read(reg))


def fault_kind(vmf: Optional[VmFault]) -> str:
    """The trace kind of a handled fault (``fault.bad_area`` when no handler ran).

    Never raises: a handler kind the schema does not know yet is reported as
    ``fault.<kind>`` if the schema has it, else as ``fault.spurious``.
    """
    if vmf is None:
        return "fault.bad_area"
    kind = _FAULT_KINDS.get((vmf.kind, vmf.detail)) or _FAULT_KINDS.get((vmf.kind, ""))
    if kind is None:
        kind = f"fault.{vmf.kind.value}"
        return kind if kind in KINDS else "fault.spurious"
    return kind


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
    flags = vma.vm_flags
    if flags & VM.GROWSDOWN:
        return "stack", (vma.vm_end - 1 - addr) >> 12
    page = (addr - vma.vm_start) >> 12
    ops = vma.vm_ops
    if ops is not None:
        if ops.name == "shmem_vm_ops":
            return "shmem", page
        if ops.name == "special_mapping_vmops" and isinstance(vma.vm_private_data, str):
            return vma.vm_private_data.strip("[]"), page  # vdso, vvar
    f = vma.vm_file
    if f is not None:
        if f.f_inode.host_path == exe_path and not flags & VM.SHARED:
            if flags & VM.EXEC:
                return "text", page
            return ("data" if flags & VM.WRITE else "rodata"), page
        return "file:" + os.path.basename(f.path), page
    brk = mm.start_brk
    if brk and vma.vm_start <= brk < vma.vm_end:
        if addr >= brk:
            return "heap", (addr - brk) >> 12
        return "bss", page
    if brk and vma.vm_end <= brk and vma.vm_end > (mm.end_data & ~0xFFF):
        return "bss", page
    return "anon", page


class FaultTracer:
    """A :class:`TraceSink` writing enriched events to a trace file.

    Args:
        path: the trace file; ``.jsonl`` or ``.mmtrace`` (checked, and the file
            created, at once, so a bad path fails before the run).
        events: which kinds to keep.
        argv: the guest arguments after the program, for the header.
    """

    def __init__(self, path: str | os.PathLike[str], events: EventFilter = ALL_EVENTS,
                 argv: Sequence[str] = ()) -> None:
        self.path = os.fspath(path)
        trace_encoding(self.path)
        open(self.path, "wb").close()
        self.events = events
        self.argv = tuple(argv)
        self._writer: Optional[TraceWriter] = None
        self._seq = 0
        #: (mm context id, pc) → instruction text
        self._disasm: dict[tuple[int, int], str] = {}
        self._exited: set[int] = set()

    # --- wiring ---------------------------------------------------------------------
    def attach(self, machine: "Machine", cycles_fn: Optional[Callable[[], int]] = None) -> None:
        """Start tracing ``machine`` (before exec): write the header, become kern.trace.

        ``cycles_fn`` gives the cycle estimate at an event; without one it is
        the instruction count (CPI 1) until the hardware cost model exists.
        """
        self._machine = machine
        native = machine.native
        self._insns: Callable[[], int] = lambda: native.insns
        #: None: the cycle estimate is the instruction count (CPI 1)
        self._cycles: Optional[Callable[[], int]] = cycles_fn
        self._arch = machine.spec.name
        self._read_pc = pc_reader(machine.uc, machine.regs[machine.spec.pc_reg])
        self._exe = os.path.realpath(machine.path)
        self._fmt = machine.kern.fmt
        self._phys = machine.phys
        self._cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64) \
            if machine.spec.arch is Arch.X86_64 else \
            capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        header = TraceHeader(arch=self._arch, program=os.path.basename(machine.path),
                             argv=self.argv, config=machine.kconfig.as_dict(),
                             events=self.events.names())
        self._writer = open_writer(self.path, header)
        machine.kern.trace = self

    def close(self) -> None:
        """Write the end record; later events are dropped."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "FaultTracer":
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def n_events(self) -> int:
        """Events written so far."""
        return self._seq

    # --- helpers --------------------------------------------------------------------
    def _emit(self, task: TaskStruct, kind: str, addr: int, length: int = 0, role: str = "",
              page: int = -1, outcome: str = "", prot: int = 0, flags: int = 0,
              result: int = 0) -> None:
        """A non-fault event (faults build theirs inline: they are the hot path)."""
        w = self._writer
        if w is None:
            return
        insns = self._insns()
        cycles = insns if self._cycles is None else self._cycles()
        w.write(TraceEvent(self._seq, insns, cycles, task.pid, self._arch, kind, addr, length,
                           "", False, role, page, None, "", outcome, None, prot, flags, result))
        self._seq += 1

    def _place(self, mm: MmStruct, vma: Optional[VmAreaStruct], addr: int) -> tuple[str, int]:
        if vma is None or not vma.vm_start <= addr < vma.vm_end:
            return "", -1
        return vma_place(mm, vma, addr, self._exe)

    def _pte_pfn(self, pte_pa: Optional[int]) -> Optional[int]:
        if pte_pa is None:
            return None
        pte = int(self._phys.u64[pte_pa >> 3])
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
            self._disasm[key] = text
        return text

    # --- the TraceSink protocol ---------------------------------------------------------
    def fault(self, task: TaskStruct, address: int, access: str, vmf: Optional[VmFault],
              vma: Optional[VmAreaStruct], major: bool, signal: int, user: bool) -> None:
        """A page fault, resolved or ending in a signal."""
        kind = _FAULT_KINDS.get((vmf.kind, vmf.detail)) if vmf is not None else "fault.bad_area"
        if kind is None:
            kind = fault_kind(vmf)
        w = self._writer
        if kind not in self.events.kinds or w is None:
            return
        mm = task.mm
        if vma is None or not vma.vm_start <= address < vma.vm_end:
            role, page = "", -1
        else:
            role, page = vma_place(mm, vma, address, self._exe)
        pfn: Optional[int] = None
        if signal:
            outcome = _SIGNAL_OUTCOMES.get(signal, f"sig{signal}")
        else:
            outcome = "major" if major else "minor"
            pte_pa = vmf.pte_pa if vmf is not None and vmf.pte_pa else \
                pte_offset_lookup(mm, address)
            pfn = self._pte_pfn(pte_pa)
        pc: Optional[int] = None
        insn = ""
        if user:
            pc = self._read_pc()
            insn = self._insn(mm, pc)
        insns = self._insns()
        cycles = insns if self._cycles is None else self._cycles()
        w.write(TraceEvent(self._seq, insns, cycles, task.pid, self._arch, kind, address, 0,
                           access, user, role, page, pc, insn, outcome, pfn, 0, 0, signal))
        self._seq += 1

    def mm_op(self, task: TaskStruct, op: str, start: int, length: int, prot: int,
              flags: int, result: int) -> None:
        """An mm syscall returned ``result``; brk is placed by its new break."""
        self._disasm.clear()
        kind = "mm." + op
        if kind not in self.events.kinds or self._writer is None:
            return
        mm = task.mm
        if op == "brk":
            role, page = "heap", (result - mm.start_brk) >> 12
        else:
            role, page = self._place(mm, find_vma(mm, start), start)
        self._emit(task, kind, start, length=length, role=role, page=page, prot=prot,
                   flags=flags, result=result)

    def tlb_flush(self, mm: MmStruct, kind: str, start: int, end: int) -> None:
        """A TLB (or I-cache) maintenance request from the kernel."""
        if kind == "mm":
            self._disasm.clear()
        elif kind != "icache" and self._disasm:
            cid = mm.context_id
            for key in [k for k in self._disasm if k[0] == cid and start <= k[1] < end]:
                del self._disasm[key]
        k = _FLUSH_KINDS.get(kind, "flush.tlb_mm")
        if k not in self.events.kinds or self._writer is None:
            return
        role, page = self._place(mm, find_vma(mm, start), start) if kind != "mm" else ("", -1)
        self._emit(self._owner(mm), k, start, length=max(0, end - start), role=role,
                   page=page)

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
