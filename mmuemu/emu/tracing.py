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

import os
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import capstone

from mmuemu._types import Arch
from mmuemu.kernel.mm_types import VM, FaultKind, MmStruct, VmAreaStruct, VmFault
from mmuemu.kernel.mmap import find_vma
from mmuemu.kernel.pgtable import pte_offset_lookup
from mmuemu.kernel.sched import TaskStruct
from mmuemu.trace.schema import ALL_EVENTS, EventFilter, TraceEvent, TraceHeader
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


def fault_kind(vmf: Optional[VmFault]) -> str:
    """The trace kind of a handled fault (``fault.bad_area`` when no handler ran)."""
    if vmf is None:
        return "fault.bad_area"
    return _FAULT_KINDS.get((vmf.kind, vmf.detail)) or _FAULT_KINDS[(vmf.kind, "")]


def vma_place(mm: MmStruct, vma: VmAreaStruct, addr: int, exe_path: str) -> tuple[str, int]:
    """(role, page index) of ``addr`` inside ``vma``: where it is, portably.

    Roles: ``text`` / ``rodata`` / ``data`` (private mappings of the executable
    ``exe_path``: executable, read-only, writable), ``bss`` (anonymous, between
    the end of the data and start_brk), ``heap`` (anonymous, from start_brk;
    pages counted from start_brk, so a bss VMA merged with the heap still
    numbers the heap from 0), ``stack`` (VM_GROWSDOWN; pages counted down from
    vm_end, since vm_start moves as the stack grows), ``shmem``,
    ``file:<basename>`` and ``anon``.
    """
    flags = vma.vm_flags
    if flags & VM.GROWSDOWN:
        return "stack", (vma.vm_end - 1 - addr) >> 12
    page = (addr - vma.vm_start) >> 12
    ops = vma.vm_ops
    if ops is not None and ops.name == "shmem_vm_ops":
        return "shmem", page
    f = vma.vm_file
    if f is not None:
        if f.f_inode.host_path == exe_path and not flags & VM.SHARED:
            if flags & VM.EXEC:
                return "text", page
            return ("data" if flags & VM.WRITE else "rodata"), page
        return "file:" + os.path.basename(f.path), page
    brk = mm.start_brk
    if brk and vma.vm_start <= brk < vma.vm_end or brk and vma.vm_start == brk:
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
        self._disasm: dict[tuple[int, bytes], str] = {}

    # --- wiring ---------------------------------------------------------------------
    def attach(self, machine: "Machine", cycles_fn: Optional[Callable[[], int]] = None) -> None:
        """Start tracing ``machine`` (before exec): write the header, become kern.trace.

        ``cycles_fn`` gives the cycle estimate at an event; without one it is
        the instruction count (CPI 1) until the hardware cost model exists.
        """
        self._machine = machine
        native = machine.native
        self._insns: Callable[[], int] = lambda: native.insns
        self._cycles: Callable[[], int] = cycles_fn or self._insns
        self._arch = machine.spec.name
        self._uc = machine.uc
        self._pc_reg = machine.regs[machine.spec.pc_reg]
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
    def _emit(self, task: TaskStruct, kind: str, addr: int, **fields: object) -> None:
        w = self._writer
        if w is None:
            return
        w.write(TraceEvent(seq=self._seq, insns=self._insns(), cycles=self._cycles(),
                           pid=task.pid, arch=self._arch, kind=kind, addr=addr,
                           **fields))  # type: ignore[arg-type]
        self._seq += 1

    def _place(self, mm: MmStruct, vma: Optional[VmAreaStruct], addr: int) -> tuple[str, int]:
        if vma is None or not vma.vm_start <= addr < vma.vm_end:
            return "", -1
        return vma_place(mm, vma, addr, self._exe)

    def _pfn(self, mm: MmStruct, addr: int) -> Optional[int]:
        pte_pa = pte_offset_lookup(mm, addr)
        if pte_pa is None:
            return None
        pte = int(self._phys.u64[pte_pa >> 3])
        fmt = self._fmt
        return fmt.pte_pfn(pte) if fmt.pte_present(pte) else None

    def _code(self, mm: MmStruct, va: int, n: int) -> bytes:
        """Up to ``n`` bytes of mapped memory at ``va`` (short at an unmapped page)."""
        out = b""
        while n > 0:
            pfn = self._pfn(mm, va)
            if pfn is None:
                break
            take = min(n, 4096 - (va & 0xFFF))
            out += self._phys.read((pfn << 12) | (va & 0xFFF), take)
            va += take
            n -= take
        return out

    def _insn(self, mm: MmStruct, pc: int) -> str:
        """The instruction at ``pc``, disassembled (cached by address and bytes)."""
        code = self._code(mm, pc, 15 if self._arch == "x86_64" else 4)
        key = (pc, code)
        text = self._disasm.get(key)
        if text is None:
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
        kind = fault_kind(vmf)
        if kind not in self.events.kinds or self._writer is None:
            return
        mm = task.mm
        role, page = self._place(mm, vma, address)
        if signal:
            outcome = _SIGNAL_OUTCOMES.get(signal, f"sig{signal}")
            pfn = None
        else:
            outcome = "major" if major else "minor"
            pfn = self._pfn(mm, address)
        pc: Optional[int] = None
        insn = ""
        if user:
            pc = int(self._uc.reg_read(self._pc_reg))
            insn = self._insn(mm, pc)
        self._emit(task, kind, address, access=access, user=user, role=role, page=page,
                   pc=pc, insn=insn, outcome=outcome, pfn=pfn, result=signal)

    def mm_op(self, task: TaskStruct, op: str, start: int, length: int, prot: int,
              flags: int, result: int) -> None:
        """An mm syscall returned ``result``; brk is placed by its new break."""
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
        k = _FLUSH_KINDS.get(kind, "flush.tlb_mm")
        if k not in self.events.kinds or self._writer is None:
            return
        role, page = self._place(mm, find_vma(mm, start), start) if kind != "mm" else ("", -1)
        self._emit(self._machine.task, k, start, length=max(0, end - start), role=role,
                   page=page)

    def task_exit(self, task: TaskStruct, result: "RunResult") -> None:
        """The task ended: exit status, or 128+signal, or a limit."""
        if "task.exit" not in self.events.kinds:
            return
        self._emit(task, "task.exit", 0, outcome=_EXIT_OUTCOMES.get(result.stop_reason, "limit"),
                   result=result.exit_code)
