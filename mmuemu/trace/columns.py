"""Events as columns: the in-memory chunk both readers yield and the binary writer packs.

A chunk holds up to a few tens of thousands of events as one numpy array
per field. String fields hold codes into a string table that belongs to the
reader (or writer) and only grows, so codes stay valid across chunks.
Absent integers use sentinels: ``pc`` = 2**64-1, ``pfn`` = -1, ``page`` = -1.
"""
from __future__ import annotations

from dataclasses import dataclass
import operator
from typing import Any, Callable, Iterator, Sequence

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


#: Values per event in a flat list of events (see :class:`ColumnBuilder`).
NFIELDS = len(FIELDS)


class ColumnBuilder:
    """Collects events and hands them out as column chunks (bounded by the caller).

    Events are kept flat: one list holding each event's field values in
    :data:`FIELDS` order (``seq`` first), event after event. :meth:`take`
    slices a column out of it per field, then converts each column at once.
    That is cheaper per event than appending to 18 lists, and it needs no
    object per event: the emulator's tracer hands over a whole batch as one
    flat list.
    """

    def __init__(self, strings: list[str], index: dict[str, int]) -> None:
        self.strings = strings
        self.index = index
        self.values: list[Any] = []

    def __len__(self) -> int:
        return len(self.values) // NFIELDS

    def code(self, s: str) -> int:
        """The string's code, adding it to the table on first sight."""
        c = self.index.get(s)
        if c is None:
            c = self.index[s] = len(self.strings)
            self.strings.append(s)
        return c

    def add(self, ev: TraceEvent) -> None:
        """Append one event."""
        self.values += event_row(ev)

    def add_flat(self, values: Sequence[Any]) -> None:
        """Append events given flat (each event's field values in :data:`FIELDS` order)."""
        self.values += values

    def take(self) -> EventChunk:
        """The collected events as a chunk; the builder starts empty again.

        New strings join the table in the order the fields are stored and,
        within a field, in event order, so the same events give the same table
        however they were added.
        """
        values = self.values
        self.values = []
        index = self.index
        cols: dict[str, np.ndarray] = {}
        n = len(values) // NFIELDS
        for k, (name, dt) in enumerate(COLUMN_DTYPES.items(), start=1):  # seq is field 0
            col: list[Any] = values[k::NFIELDS]
            if name in STRING_FIELDS:
                seen = dict.fromkeys(col)  # first-seen order, as code() one by one
                for s in seen:
                    if s not in index:
                        index[s] = len(self.strings)
                        self.strings.append(s)
                if len(seen) == 1:  # arch, and often access and outcome
                    cols[name] = np.full(n, index[col[0]], dtype=dt)
                else:
                    cols[name] = np.fromiter(map(index.__getitem__, col), dtype=dt, count=n)
                continue
            if name == "pc":
                col = [NO_PC if v is None else v for v in col]
            elif name == "pfn":
                col = [-1 if v is None else v for v in col]
            if dt.kind == "u" and dt.itemsize == 8:  # addr, length, pc: unsigned 64-bit
                cols[name] = _u64_array(col)
            else:
                cols[name] = np.fromiter(col, dtype=dt, count=n)
        return EventChunk(first_seq=values[0] if values else 0, columns=cols,
                          strings=self.strings)


def _u64_array(col: list[int]) -> np.ndarray:
    """``col`` as unsigned 64-bit values, wrapped modulo 2**64 (a negative address
    is its two's complement); converted directly when every value fits."""
    try:
        return np.fromiter(col, dtype=_U8, count=len(col))
    except (OverflowError, DeprecationWarning):
        return np.fromiter([v & _MASK64 for v in col], dtype=_U8, count=len(col))


_U8 = np.dtype("<u8")

#: A :class:`TraceEvent` as a row: its field values in :data:`FIELDS` order.
event_row: Callable[[TraceEvent], tuple[Any, ...]] = operator.attrgetter(*FIELDS)
