"""Records to rows: the part of tracing that runs where the trace is written.

The emulator's tracer (:mod:`mmuemu.emu.tracing`) records, per event, only
what can change later, as plain values in one flat list. Everything that is
a pure function of those values, the kind's name, the page index, the
outcome, the pfn and the cycle estimate, is derived here: in the writer
process (:mod:`mmuemu.trace.background`), or inline in the emulator. This
module knows nothing of the kernel model, Unicorn or capstone, so the writer
process starts quickly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from mmuemu.trace.schema import KINDS, TraceHeader
from mmuemu.trace.writer import TraceWriter, open_writer

if TYPE_CHECKING:
    from mmuemu.trace.background import BackgroundWriter

#: Trace kinds by (the handler's FaultKind value, its detail); see
#: ``mmuemu.kernel.mm_types.FaultKind``. Keyed by strings: records hold no
#: enum members.
_FAULT_KIND_NAMES: dict[tuple[str, str], str] = {
    ("anon", ""): "fault.anon",
    ("zero", ""): "fault.zero",
    ("file", ""): "fault.file",
    ("cow", ""): "fault.cow",
    ("wp", "zero"): "fault.wp_zero",
    ("wp", "reuse"): "fault.wp_reuse",
    ("wp", ""): "fault.wp_reuse",
    ("shared", ""): "fault.shared",
    ("swap", ""): "fault.swap",
    ("spurious", ""): "fault.spurious",
}
_SIGNAL_OUTCOMES = {11: "segv", 7: "sigbus", 9: "oom"}


def fault_kind_name(value: str, detail: str) -> str:
    """The trace kind of a fault resolved by the handler whose FaultKind value is
    ``value`` (``"wp"``), with the handler's ``detail`` (``"zero"``)."""
    name = _FAULT_KIND_NAMES.get((value, detail)) or _FAULT_KIND_NAMES.get((value, ""))
    if name is None:
        name = f"fault.{value}"
        return name if name in KINDS else "fault.spurious"
    return name


#: How a VMA's addresses are named: (role, origin, down, heap). The page index
#: of ``addr`` is ``(addr - origin) >> 12``, or for a stack (``down``)
#: ``(origin - 1 - addr) >> 12`` with ``origin`` the VMA's end. A bss VMA merged
#: with the heap has ``heap`` = start_brk: addresses from there on are
#: ``heap[(addr - heap) >> 12]``. A plain tuple of plain values (see the module
#: docstring).
Placement = tuple[str, int, bool, int]


def place(placement: Optional[Placement], addr: int) -> tuple[str, int]:
    """(role, page index) of ``addr`` in a VMA placed as ``placement``; ``("", -1)``
    for None (no VMA holds ``addr``)."""
    if placement is None:
        return "", -1
    role, origin, down, heap = placement
    if down:
        return role, (origin - 1 - addr) >> 12
    if heap and addr >= heap:
        return "heap", (addr - heap) >> 12
    return role, (addr - origin) >> 12


#: Records, one per event, until :meth:`mmuemu.emu.tracing.FaultTracer._drain` derives the rest; each
#: is :data:`_RECORD` values appended to one flat list (a tuple per event would be
#: one more object for the collector to count, and collect the whole heap for).
#: A fault: _FAULT, insns, pid, kind, detail, addr, access, user, pc, insn,
#: signal, major, pte, placement. ``kind`` is the handler's FaultKind value with
#: its ``detail``, or ``kind`` is the kind's name and ``detail`` None; ``pte`` is
#: the PTE's raw value (None: no PTE, or a signal). Any other event: _OTHER,
#: insns, pid, kind, addr, length, outcome, prot, flags, result, role,
#: page, placement, None, where ``role`` None means "place ``addr`` by
#: ``placement``".
_FAULT = 0
_OTHER = 1
_RECORD = 14


class RecordDeriver:
    """Derives the rest of each waiting record's fields: rows for a writer.

    The kind's name, the page index, the outcome and the pfn are pure
    functions of what the record holds, so this runs wherever the trace is
    written (in the emulator, or in the writer process after the records
    crossed a pipe) and gives the same rows. ``seq`` numbers the events
    across calls.
    """

    def __init__(self, arch: str, pte_present: Callable[[int], bool],
                 pte_pfn: Callable[[int], int], cpi: float = 1) -> None:
        self.arch = arch
        #: cycles = round(insns * cpi): the trace's cycle column (see the header)
        self.cpi = cpi
        self.pte_present = pte_present
        self.pte_pfn = pte_pfn
        #: the sequence number of the next event
        self.seq = 0

    def rows(self, recs: Sequence[Any]) -> list[Any]:
        """``recs`` (flat, :data:`_RECORD` values each) as rows, flat, in
        ``schema.FIELDS`` order (see :meth:`TraceWriter.write_flat`)."""
        seq = self.seq
        arch, cpi = self.arch, self.cpi
        present, pte_pfn = self.pte_present, self.pte_pfn
        out: list[Any] = []
        last_kind: Optional[str] = None
        last_detail: Optional[str] = None
        last_name = ""
        it = iter(recs)
        for rec in zip(*(it,) * _RECORD):
            insns = rec[1]
            cycles = insns if cpi == 1 else round(insns * cpi)
            if rec[0] == _FAULT:
                (_, _, pid, kind, detail, addr, access, user, pc, insn, signal,
                 major, pte, pl) = rec
                if detail is None:
                    name = kind
                elif kind == last_kind and detail == last_detail:
                    name = last_name
                else:
                    name = last_name = fault_kind_name(kind, detail)
                    last_kind, last_detail = kind, detail
                pfn: Optional[int] = None
                if signal:
                    outcome = _SIGNAL_OUTCOMES.get(signal, f"sig{signal}")
                else:
                    outcome = "major" if major else "minor"
                    if pte is not None and present(pte):
                        pfn = pte_pfn(pte)
                if pl is None:
                    role, page = "", -1
                elif pl[2] or pl[3]:
                    role, page = place(pl, addr)
                else:
                    role, page = pl[0], (addr - pl[1]) >> 12
                out += (seq, insns, cycles, pid, arch, name, addr, 0, access, user, role, page,
                        pc, insn, outcome, pfn, 0, 0, signal)
            else:
                (_, _, pid, name, addr, length, outcome, prot, flags, result, role,
                 page, pl, _) = rec
                if role is None:
                    role, page = place(pl, addr)
                out += (seq, insns, cycles, pid, arch, name, addr, length, "", False, role,
                        page, None, "", outcome, None, prot, flags, result)
            seq += 1
        self.seq = seq
        return out


class _DerivingSink:
    """The writer process's end: records in, rows to a trace writer, out to the file."""

    def __init__(self, writer: TraceWriter, deriver: RecordDeriver) -> None:
        self.writer = writer
        self.deriver = deriver

    def consume(self, batch: list[Any]) -> None:
        self.writer.write_flat(self.deriver.rows(batch))

    def finish(self) -> dict[str, Any]:
        self.writer.close()
        return {"events": self.writer.n_events}

    def abandon(self) -> None:
        self.writer.abandon()


def start_writer() -> "BackgroundWriter":
    """A writer process for :class:`mmuemu.emu.tracing.FaultTracer` (its
    ``writer`` argument), started now. Raises OSError if it cannot be."""
    from mmuemu.trace.background import BackgroundWriter
    return BackgroundWriter(deriving_sink)


def deriving_sink(setup: tuple[str, TraceHeader, str, Any, float]) -> _DerivingSink:
    """The writer process's sink, from what :meth:`FaultTracer.attach` sends:
    the trace path, its header, the architecture, the PTE format and the CPI."""
    path, header, arch, fmt, cpi = setup
    return _DerivingSink(open_writer(path, header),
                         RecordDeriver(arch, fmt.pte_present, fmt.pte_pfn, cpi))
