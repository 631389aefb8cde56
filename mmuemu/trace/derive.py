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

import struct
from typing import TYPE_CHECKING, Any, Callable, Optional

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


#: Records, one per event, until :meth:`mmuemu.emu.tracing.FaultTracer._drain`
#: hands them over: packed, :data:`RECORD` bytes each, in one bytearray (no
#: Python object per event: nothing for the collector to count, and a batch
#: crosses the pipe as one bytes object). Strings and placements are numbered
#: once (:class:`Interner`; 0 is None) and the new ones travel with the batch
#: that first uses them. Fields: tag, flags, signal, pid, insns, addr, a, b,
#: c, d and six numbered objects:
#:
#: * a fault (tag _FAULT): a = pc (flag F_PC), b = the PTE's raw value (flag
#:   F_PTE: none for a signal or without a PTE), objects kind, detail,
#:   access, instruction text, placement. ``kind`` is the handler's
#:   FaultKind value with its ``detail``, or (flag F_NAMED) the kind's name.
#:   Flags F_USER and F_MAJOR are the fault's.
#: * any other event (tag _OTHER): a = length, b = result (two's complement),
#:   c = page, d = flags, the last field prot, objects kind, outcome, role,
#:   unused, placement; flag F_PLACED: the role and page are ``addr`` placed
#:   by the placement.
RECORD = struct.Struct("<BBBxIQQQQqQIIIIII")
_FAULT = 0
_OTHER = 1
F_USER, F_MAJOR, F_PC, F_PTE, F_NAMED, F_PLACED = 1, 2, 4, 8, 16, 32
U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
#: A batch as it is handed over: the objects numbered since the last batch, and
#: the packed records.
Batch = tuple[list[Any], bytes]


class Interner:
    """Numbers the strings and placements records refer to (1, 2, ...; None
    is 0), and remembers which numbers are new since :meth:`take_new`."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}
        self.new: list[Any] = []

    def id(self, obj: Any) -> int:
        if obj is None:
            return 0
        ids = self.ids
        n = ids.get(obj)
        if n is None:
            n = ids[obj] = len(ids) + 1
            self.new.append(obj)
        return n

    def take_new(self) -> list[Any]:
        new = self.new[:]
        self.new.clear()
        return new


class RecordDeriver:
    """Derives the rest of each waiting record's fields: rows for a writer.

    The kind's name, the page index, the outcome and the pfn are pure
    functions of what the record holds, so this runs wherever the trace is
    written (in the emulator, or in the writer process after the records
    crossed a pipe) and gives the same rows. ``seq`` numbers the events,
    and the numbered objects accumulate, across calls.
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
        #: the numbered objects, by number (0: None)
        self.objs: list[Any] = [None]

    def rows(self, batch: Batch) -> list[Any]:
        """A batch's records as rows, flat, in ``schema.FIELDS`` order (see
        :meth:`TraceWriter.write_flat`)."""
        new, data = batch
        objs = self.objs
        objs += new
        seq = self.seq
        arch, cpi = self.arch, self.cpi
        present, pte_pfn = self.pte_present, self.pte_pfn
        out: list[Any] = []
        last_kind = last_detail = -1
        last_name = ""
        for (tag, flags, signal, pid, insns, addr, a, b, c, d, k, det, acc, ins, pl_id,
             prot) in RECORD.iter_unpack(data):
            cycles = insns if cpi == 1 else round(insns * cpi)
            pl = objs[pl_id]
            if tag == _FAULT:
                if flags & F_NAMED:
                    name = objs[k]
                elif k == last_kind and det == last_detail:
                    name = last_name
                else:
                    name = last_name = fault_kind_name(objs[k], objs[det])
                    last_kind, last_detail = k, det
                pfn: Optional[int] = None
                if signal:
                    outcome = _SIGNAL_OUTCOMES.get(signal, f"sig{signal}")
                else:
                    outcome = "major" if flags & F_MAJOR else "minor"
                    if flags & F_PTE and present(b):
                        pfn = pte_pfn(b)
                if pl is None:
                    role, page = "", -1
                elif pl[2] or pl[3]:
                    role, page = place(pl, addr)
                else:
                    role, page = pl[0], (addr - pl[1]) >> 12
                out += (seq, insns, cycles, pid, arch, name, addr, 0, objs[acc],
                        bool(flags & F_USER), role, page, a if flags & F_PC else None,
                        objs[ins], outcome, pfn, 0, 0, signal)
            else:
                if flags & F_PLACED:
                    role, page = place(pl, addr)
                else:
                    role, page = objs[acc], c
                result = b - (1 << 64) if b >> 63 else b
                out += (seq, insns, cycles, pid, arch, objs[k], addr, a, "", False, role,
                        page, None, "", objs[det], None, prot, d, result)
            seq += 1
        self.seq = seq
        return out


class _DerivingSink:
    """The writer process's end: records in, rows to a trace writer, out to the file."""

    def __init__(self, writer: TraceWriter, deriver: RecordDeriver) -> None:
        self.writer = writer
        self.deriver = deriver

    def consume(self, batch: Batch) -> None:
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
    the trace path, its header, the architecture, the PTE format's class and
    the CPI."""
    path, header, arch, fmt_class, cpi = setup
    fmt = fmt_class()
    return _DerivingSink(open_writer(path, header),
                         RecordDeriver(arch, fmt.pte_present, fmt.pte_pfn, cpi))
