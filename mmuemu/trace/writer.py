"""Streaming trace writers: JSON Lines (``.jsonl``) and columnar binary (``.mmtrace``).

Both keep at most one chunk of events in memory, whatever the run's length:
the JSON Lines writer formats each event as it comes (into a buffered file),
the binary writer packs a compressed column chunk every
:data:`container.CHUNK_EVENTS` events. Events come one at a time
(:meth:`~TraceWriter.write`, a :class:`TraceEvent`) or as a batch
(:meth:`~TraceWriter.write_flat`, one flat list of field values: how the
emulator's tracer hands them over). Output is deterministic: the same events and header give
the same bytes, however they were handed over. :func:`open_writer` picks
the encoding from the file suffix.
"""
from __future__ import annotations

import json
import os
from types import TracebackType
from typing import Any, BinaryIO, Optional, Protocol, Self, Sequence, TextIO

from mmuemu.trace import container
from mmuemu.trace.columns import NFIELDS, ColumnBuilder, event_row
from mmuemu.trace.schema import TraceEvent, TraceHeader

JSONL_SUFFIXES = (".jsonl",)
BINARY_SUFFIXES = (".mmtrace",)


class TraceWriter(Protocol):
    """Accepts events in order; :meth:`close` writes the end record."""

    path: str
    n_events: int
    #: events per chunk: a caller that batches rows hands over this many at a time
    chunk_events: int

    def write(self, ev: TraceEvent) -> None:
        """Append one event (``ev.seq`` must be the next sequence number)."""

    def write_flat(self, values: Sequence[Any]) -> None:
        """Append events given flat: each event's field values in ``schema.FIELDS``
        order (``seq`` first, consecutive), event after event. The same bytes as
        :meth:`write` of the equal events."""

    def close(self) -> None:
        """Write the end record and close the file (idempotent)."""

    def abandon(self) -> None:
        """Close the file without the end record: the run that fed it did not
        finish, and readers will say the trace is truncated (idempotent)."""


def trace_encoding(path: str | os.PathLike[str]) -> str:
    """``"jsonl"`` or ``"binary"`` from the suffix; ValueError for anything else."""
    name = os.fspath(path)
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(BINARY_SUFFIXES):
        return "binary"
    raise ValueError(f"{name}: unknown trace suffix (use .jsonl for JSON Lines or "
                     ".mmtrace for the columnar binary form)")


def open_writer(path: str | os.PathLike[str], header: TraceHeader,
                chunk_events: int = container.CHUNK_EVENTS) -> "JsonlWriter | BinaryWriter":
    """A writer for ``path``, chosen by suffix, with ``header`` already written.

    Raises ValueError for an unknown suffix and OSError if the file cannot be created.
    """
    if trace_encoding(path) == "jsonl":
        return JsonlWriter(path, header)
    return BinaryWriter(path, header, chunk_events)


class _Closing:
    """Context-manager support shared by the writers."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class JsonlWriter(_Closing):
    """One JSON object per line: the header, the events, then ``{"end":true,...}``.

    Optional fields equal to their default are left out, so lines stay short;
    ``addr`` and ``pc`` are ``"0x..."`` strings.
    """

    def __init__(self, path: str | os.PathLike[str], header: TraceHeader) -> None:
        self.path = os.fspath(path)
        self.n_events = 0
        self.chunk_events = container.CHUNK_EVENTS
        self._fh: Optional[TextIO] = open(self.path, "w", encoding="utf-8", newline="\n",
                                          buffering=1 << 16)
        self._quoted: dict[str, str] = {}
        self._fh.write(json.dumps(header.to_json(), separators=(",", ":"),
                                  ensure_ascii=False) + "\n")

    def _q(self, s: str) -> str:
        q = self._quoted.get(s)
        if q is None:
            if len(self._quoted) > 1 << 16:
                self._quoted.clear()
            q = self._quoted[s] = json.dumps(s, ensure_ascii=False)
        return q

    def write(self, ev: TraceEvent) -> None:
        self.write_flat(event_row(ev))

    def write_flat(self, values: Sequence[Any]) -> None:
        fh = self._fh
        if fh is None:
            raise ValueError(f"{self.path}: write after close")
        it = iter(values)
        fh.write("".join(map(self._line, zip(*(it,) * NFIELDS))))
        self.n_events += len(values) // NFIELDS

    def _line(self, row: tuple[Any, ...]) -> str:
        """One event line, newline included."""
        (seq, insns, cycles, pid, arch, kind, addr, length, access, user, role, page, pc, insn,
         outcome, pfn, prot, flags, result) = row
        q = self._q
        line = (f'{{"seq":{seq},"insns":{insns},"cycles":{cycles},"pid":{pid},'
                f'"arch":{q(arch)},"kind":{q(kind)},"addr":"{addr:#x}"')
        if length:
            line += f',"length":{length}'
        if access:
            line += f',"access":{q(access)}'
        if user:
            line += ',"user":true'
        if role:
            line += f',"role":{q(role)}'
        if page != -1:
            line += f',"page":{page}'
        if pc is not None:
            line += f',"pc":"{pc:#x}"'
        if insn:
            line += f',"insn":{q(insn)}'
        if outcome:
            line += f',"outcome":{q(outcome)}'
        if pfn is not None:
            line += f',"pfn":{pfn}'
        if prot:
            line += f',"prot":{prot}'
        if flags:
            line += f',"flags":{flags}'
        if result:
            line += f',"result":{result}'
        return line + "}\n"

    def close(self) -> None:
        if self._fh is not None:
            self._fh.write(f'{{"end":true,"events":{self.n_events}}}\n')
            self._fh.close()
            self._fh = None

    def abandon(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class BinaryWriter(_Closing):
    """Column chunks of :data:`container.CHUNK_EVENTS` events, zlib-compressed."""

    def __init__(self, path: str | os.PathLike[str], header: TraceHeader,
                 chunk_events: int = container.CHUNK_EVENTS) -> None:
        if not 0 < chunk_events <= container.MAX_CHUNK_EVENTS:
            raise ValueError(f"chunk_events must be in 1..{container.MAX_CHUNK_EVENTS}")
        self.path = os.fspath(path)
        self.n_events = 0
        self.n_chunks = 0
        self.chunk_events = chunk_events
        self._fh: Optional[BinaryIO] = open(self.path, "wb")
        self._strings: list[str] = []
        self._written_strings = 0
        self._builder = ColumnBuilder(self._strings, {})
        meta = json.dumps(header.to_json(), separators=(",", ":"), ensure_ascii=False).encode()
        self._fh.write(container.HEADER.pack(container.MAGIC, header.version, 0, len(meta)))
        self._fh.write(meta)

    def write(self, ev: TraceEvent) -> None:
        if self._fh is None:
            raise ValueError(f"{self.path}: write after close")
        self._builder.add(ev)
        self.n_events += 1
        if len(self._builder) >= self.chunk_events:
            self._flush()

    def write_flat(self, values: Sequence[Any]) -> None:
        if self._fh is None:
            raise ValueError(f"{self.path}: write after close")
        b = self._builder
        i, n = 0, len(values) // NFIELDS
        while i < n:  # chunks break every chunk_events events, however events arrive
            take = min(n - i, self.chunk_events - len(b))
            b.add_flat(values if take == n else values[i * NFIELDS:(i + take) * NFIELDS])
            i += take
            if len(b) >= self.chunk_events:
                self._flush()
        self.n_events += n

    def _flush(self) -> None:
        assert self._fh is not None
        if not len(self._builder):
            return
        chunk = self._builder.take()  # codes its strings, growing the table
        new = self._strings[self._written_strings:]
        self._written_strings = len(self._strings)
        self._fh.write(container.pack_chunk(chunk, new))
        self.n_chunks += 1

    def close(self) -> None:
        if self._fh is not None:
            self._flush()
            self._fh.write(container.pack_footer(self.n_events, self.n_chunks))
            self._fh.close()
            self._fh = None

    def abandon(self) -> None:
        if self._fh is not None:
            self._flush()
            self._fh.close()
            self._fh = None
