"""Events as columns: the in-memory chunk both readers yield and the binary writer packs.

A chunk holds up to a few tens of thousands of events as one numpy array
per field. String fields hold codes into a string table that belongs to the
reader (or writer) and only grows, so codes stay valid across chunks.
Absent integers use sentinels: ``pc`` = 2**64-1, ``pfn`` = -1, ``page`` = -1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

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


def _row_event(seq: int, row: dict[str, Any], strings: Sequence[str]) -> TraceEvent:
    for name in STRING_FIELDS:
        row[name] = strings[row[name]]
    if row["pc"] == NO_PC:
        row["pc"] = None
    if row["pfn"] < 0:
        row["pfn"] = None
    row["user"] = bool(row["user"])
    return TraceEvent(seq=seq, **row)


class ColumnBuilder:
    """Collects events and hands them out as column chunks (bounded by the caller).

    Events are kept as they come and turned into columns at :meth:`take`, one
    list comprehension per field: cheaper per event than appending to 18 lists.
    """

    def __init__(self, strings: list[str], index: dict[str, int]) -> None:
        self.strings = strings
        self.index = index
        self.events: list[TraceEvent] = []

    def __len__(self) -> int:
        return len(self.events)

    def code(self, s: str) -> int:
        """The string's code, adding it to the table on first sight."""
        c = self.index.get(s)
        if c is None:
            c = self.index[s] = len(self.strings)
            self.strings.append(s)
        return c

    def add(self, ev: TraceEvent) -> None:
        """Append one event."""
        self.events.append(ev)

    def take(self) -> EventChunk:
        """The collected events as a chunk; the builder starts empty again."""
        evs = self.events
        self.events = []
        code = self.code
        cols: dict[str, np.ndarray] = {}
        for name, dt in COLUMN_DTYPES.items():
            if name in STRING_FIELDS:
                vals: list[int] = [code(getattr(e, name)) for e in evs]
            elif name == "pc":
                vals = [NO_PC if e.pc is None else e.pc & _MASK64 for e in evs]
            elif name == "pfn":
                vals = [-1 if e.pfn is None else e.pfn for e in evs]
            elif name in ("addr", "length"):
                vals = [getattr(e, name) & _MASK64 for e in evs]
            else:
                vals = [getattr(e, name) for e in evs]
            cols[name] = np.array(vals, dtype=dt)
        return EventChunk(first_seq=evs[0].seq if evs else 0, columns=cols,
                          strings=self.strings)
