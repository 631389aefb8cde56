"""Events as columns: the in-memory chunk both readers yield and the binary writer packs.

A chunk holds up to a few tens of thousands of events as one numpy array
per field. String fields hold codes into a string table that belongs to the
reader (or writer) and only grows, so codes stay valid across chunks.
Absent integers use sentinels: ``pc`` = 2**64-1, ``pfn`` = -1, ``page`` = -1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from mmuemu.trace.schema import FIELDS, STRING_FIELDS, TraceEvent

#: Column dtypes (little-endian) in record order; ``seq`` is implicit (first_seq + i).
COLUMN_DTYPES: dict[str, np.dtype] = {
    "insns": np.dtype("<i8"), "cycles": np.dtype("<i8"), "pid": np.dtype("<i4"),
    "arch": np.dtype("<u4"), "kind": np.dtype("<u4"), "addr": np.dtype("<u8"),
    "length": np.dtype("<u8"), "access": np.dtype("<u4"), "user": np.dtype("u1"),
    "role": np.dtype("<u4"), "page": np.dtype("<i8"), "pc": np.dtype("<u8"),
    "insn": np.dtype("<u4"), "outcome": np.dtype("<u4"), "pfn": np.dtype("<i8"),
    "prot": np.dtype("<i8"), "flags": np.dtype("<i8"), "result": np.dtype("<i8"),
}
assert tuple(COLUMN_DTYPES) == FIELDS[1:], "columns must follow the schema's field order"
#: Bytes per event in the unpacked column payload.
ROW_BYTES = sum(d.itemsize for d in COLUMN_DTYPES.values())
NO_PC = (1 << 64) - 1
_MASK64 = (1 << 64) - 1


@dataclass(slots=True)
class EventChunk:
    """A run of consecutive events, one array per field."""

    first_seq: int
    columns: dict[str, np.ndarray]
    #: the owner's string table: code → string
    strings: Sequence[str]

    def __len__(self) -> int:
        return len(self.columns["kind"])

    def event(self, i: int) -> TraceEvent:
        """Event ``i`` of the chunk as a :class:`TraceEvent`."""
        return _row_event(self.first_seq + i, {k: v[i].item() for k, v in self.columns.items()},
                          self.strings)

    def events(self) -> Iterator[TraceEvent]:
        """The chunk's events in order."""
        lists = {k: v.tolist() for k, v in self.columns.items()}
        strings = self.strings
        names = list(lists)
        for i, row in enumerate(zip(*lists.values())):
            yield _row_event(self.first_seq + i, dict(zip(names, row)), strings)


def _row_event(seq: int, row: dict[str, int], strings: Sequence[str]) -> TraceEvent:
    for name in STRING_FIELDS:
        row[name] = strings[row[name]]  # type: ignore[call-overload]
    pc: Optional[int] = row["pc"]
    row["pc"] = None if pc == NO_PC else pc
    pfn: Optional[int] = row["pfn"]
    row["pfn"] = None if pfn is not None and pfn < 0 else pfn
    row["user"] = bool(row["user"])
    return TraceEvent(seq=seq, **row)  # type: ignore[arg-type]


class ColumnBuilder:
    """Collects events into column lists and hands out chunks (bounded by the caller)."""

    def __init__(self, strings: list[str], index: dict[str, int]) -> None:
        self.strings = strings
        self.index = index
        self.rows: dict[str, list[int]] = {name: [] for name in COLUMN_DTYPES}
        self.first_seq: Optional[int] = None

    def __len__(self) -> int:
        return len(self.rows["kind"])

    def code(self, s: str) -> int:
        """The string's code, adding it to the table on first sight."""
        c = self.index.get(s)
        if c is None:
            c = self.index[s] = len(self.strings)
            self.strings.append(s)
        return c

    def add(self, ev: TraceEvent) -> None:
        """Append one event."""
        if self.first_seq is None:
            self.first_seq = ev.seq
        r = self.rows
        code = self.code
        r["insns"].append(ev.insns)
        r["cycles"].append(ev.cycles)
        r["pid"].append(ev.pid)
        r["arch"].append(code(ev.arch))
        r["kind"].append(code(ev.kind))
        r["addr"].append(ev.addr & _MASK64)
        r["length"].append(ev.length & _MASK64)
        r["access"].append(code(ev.access))
        r["user"].append(1 if ev.user else 0)
        r["role"].append(code(ev.role))
        r["page"].append(ev.page)
        r["pc"].append(NO_PC if ev.pc is None else ev.pc & _MASK64)
        r["insn"].append(code(ev.insn))
        r["outcome"].append(code(ev.outcome))
        r["pfn"].append(-1 if ev.pfn is None else ev.pfn)
        r["prot"].append(ev.prot)
        r["flags"].append(ev.flags)
        r["result"].append(ev.result)

    def take(self) -> EventChunk:
        """The collected events as a chunk; the builder starts empty again."""
        cols = {name: np.array(vals, dtype=COLUMN_DTYPES[name])
                for name, vals in self.rows.items()}
        chunk = EventChunk(first_seq=self.first_seq or 0, columns=cols, strings=self.strings)
        for vals in self.rows.values():
            vals.clear()
        self.first_seq = None
        return chunk
