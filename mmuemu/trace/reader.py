"""One reader for both trace encodings, streaming, with strict validation.

:func:`open_trace` tells the encodings apart by their first bytes, not by
the file name. Readers yield events (:meth:`TraceReader.events`) or column
chunks (:meth:`TraceReader.chunks`) and never hold more than one chunk.
Anything wrong with the file (not a trace, another schema version, bad
JSON, a bad field, a sequence gap, a checksum mismatch, a missing end
record) raises :class:`TraceFormatError` with a one-line message naming the
file and the line (JSON Lines) or byte offset (binary).
"""
from __future__ import annotations

import json
import operator
import os
import zlib
from types import TracebackType
from typing import Any, BinaryIO, Iterator, Optional, Self

import numpy as np

from mmuemu.trace import container
from mmuemu.trace.columns import COLUMN_DTYPES, NO_PC, ROW_BYTES, EventChunk
from mmuemu.trace.container import unpack_columns
from mmuemu.trace.schema import (
    ACCESSES, DEFAULTS, FIELDS, HEX_FIELDS, JSONL_MAGIC_KEY, KINDS, REQUIRED_FIELDS, SCHEMA_VERSION,
    STRING_FIELDS, TraceEvent, TraceHeader,
)

try:  # an optional accelerator: same results, about 3x faster on big JSON Lines files
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads  # type: ignore[assignment]

_INT_FIELDS = frozenset(f for f in FIELDS if f not in STRING_FIELDS and f != "user")
_ACCESS_OK = frozenset(ACCESSES) | {""}
_KNOWN_KEYS = frozenset(FIELDS)
_REQUIRED_KEYS = frozenset(REQUIRED_FIELDS)
_KIND_SET = frozenset(KINDS)
#: Events per chunk from JSON Lines: parsed objects are bulky (~1.5 KB each)
JSONL_CHUNK_EVENTS = 8192
#: the JSON value of each optional field when a line leaves it out
_JSON_DEFAULTS: dict[str, Any] = dict(DEFAULTS)
_GET_FIELDS = operator.itemgetter(*FIELDS)


class TraceFormatError(Exception):
    """The file is not a valid trace of a supported version; the message is one line."""


def open_trace(path: str | os.PathLike[str]) -> "JsonlReader | BinaryReader":
    """Open a trace of either encoding. Raises TraceFormatError or OSError."""
    name = os.fspath(path)
    with open(name, "rb") as fh:
        head = fh.read(len(container.MAGIC))
    if head == container.MAGIC:
        return BinaryReader(name)
    if head[:1] == b"{":
        return JsonlReader(name)
    if not head:
        raise TraceFormatError(f"{name}: empty file, not a trace")
    raise TraceFormatError(f"{name}: offset 0: not an mmuemu trace (neither JSON Lines nor "
                           "the binary form)")


def _check_version(where: str, version: int) -> None:
    if version != SCHEMA_VERSION:
        raise TraceFormatError(f"{where}: unsupported trace version {version} "
                               f"(this mmuemu reads version {SCHEMA_VERSION})")


class _ReaderBase:
    path: str
    header: TraceHeader
    #: events read, once the end record has been checked
    n_events: Optional[int]
    #: string table of the chunks' string codes (grows as chunks are read)
    strings: list[str]

    def events(self) -> Iterator[TraceEvent]:
        raise NotImplementedError

    def chunks(self, size: int = container.CHUNK_EVENTS) -> Iterator[EventChunk]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class JsonlReader(_ReaderBase):
    """JSON Lines: header line, one event per line, ``{"end":true,"events":N}``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.n_events = None
        self.strings = []
        self._fh: Optional[BinaryIO] = open(path, "rb")
        first = self._fh.readline()
        try:
            obj = _loads(first)
        except ValueError:
            self.close()
            raise TraceFormatError(f"{path}:1: header is not valid JSON") from None
        if not isinstance(obj, dict) or JSONL_MAGIC_KEY not in obj:
            self.close()
            raise TraceFormatError(f"{path}:1: not an mmuemu trace (no {JSONL_MAGIC_KEY!r} "
                                   "header)")
        try:
            _check_version(f"{path}:1", obj[JSONL_MAGIC_KEY])
            self.header = TraceHeader.from_json(obj)
        except ValueError as e:
            self.close()
            raise TraceFormatError(f"{path}:1: {e}") from None
        except TraceFormatError:
            self.close()
            raise
        self._started = False

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _err(self, lineno: int, what: str) -> TraceFormatError:
        self.close()
        return TraceFormatError(f"{self.path}:{lineno}: {what}")

    def _raw(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, parsed object) per event line; checks the end record."""
        if self._started or self._fh is None:
            raise ValueError(f"{self.path}: a reader can be iterated once; open it again")
        self._started = True
        fh = self._fh
        lineno = 1
        n = 0
        loads = _loads
        for raw in fh:
            lineno += 1
            if not raw.endswith(b"\n"):
                raise self._err(lineno, "truncated: the last line has no newline")
            try:
                obj = loads(raw)
            except ValueError:
                raise self._err(lineno, "not valid JSON (corrupt or truncated line)") from None
            if type(obj) is not dict:
                raise self._err(lineno, "not a JSON object")
            if "end" in obj:
                if obj.get("end") is not True or obj.get("events") != n or len(obj) != 2:
                    raise self._err(lineno, f"bad end record (expected "
                                            f'{{"end":true,"events":{n}}})')
                if fh.read(1):
                    raise self._err(lineno + 1, "data after the end record")
                self.n_events = n
                self.close()
                return
            n += 1
            yield lineno, obj
        raise self._err(lineno + 1, f"truncated: no end record after {n} events")

    def _check(self, lineno: int, obj: dict[str, Any], seq: int) -> dict[str, Any]:
        """Validate one event object (event ``seq``); returns TraceEvent keywords."""
        for k, v in obj.items():
            if k in HEX_FIELDS:
                if v is None and k == "pc":
                    continue
                if type(v) is not str or not v.startswith("0x"):
                    raise self._err(lineno, f"field {k!r} must be a \"0x...\" string")
                try:
                    obj[k] = int(v, 16)
                except ValueError:
                    raise self._err(lineno, f"field {k!r}: bad hex {v!r}") from None
            elif k in _INT_FIELDS:
                if type(v) is not int and not (v is None and k == "pfn"):
                    raise self._err(lineno, f"field {k!r} must be an integer")
                if v is not None and not -(1 << 63) <= v < (1 << 64):
                    raise self._err(lineno, f"field {k!r} out of range")
            elif k == "user":
                if type(v) is not bool:
                    raise self._err(lineno, "field 'user' must be true or false")
            elif k in STRING_FIELDS:
                if type(v) is not str:
                    raise self._err(lineno, f"field {k!r} must be a string")
            else:
                raise self._err(lineno, f"unknown field {k!r}")
        for f in REQUIRED_FIELDS:
            if f not in obj:
                raise self._err(lineno, f"missing field {f!r}")
        if obj["seq"] != seq:
            raise self._err(lineno, f"sequence gap: seq {obj['seq']} where {seq} was expected")
        if obj["kind"] not in KINDS:
            raise self._err(lineno, f"unknown event kind {obj['kind']!r}")
        if obj.get("access", "") not in _ACCESS_OK:
            raise self._err(lineno, f"unknown access {obj['access']!r}")
        return obj

    def events(self) -> Iterator[TraceEvent]:
        for seq, (lineno, obj) in enumerate(self._raw()):
            yield TraceEvent(**self._check(lineno, obj, seq))

    def chunks(self, size: int = JSONL_CHUNK_EVENTS) -> Iterator[EventChunk]:
        """Column chunks, validated a column at a time (a bad chunk is rechecked line by
        line to name the first bad line)."""
        index: dict[str, int] = {}
        lines: list[int] = []
        objs: list[dict[str, Any]] = []
        seq = 0
        for lineno, obj in self._raw():
            lines.append(lineno)
            objs.append(obj)
            if len(objs) >= size:
                yield self._columns(lines, objs, seq, index)
                seq += len(objs)
                lines, objs = [], []
        if objs:
            yield self._columns(lines, objs, seq, index)

    def _columns(self, lines: list[int], objs: list[dict[str, Any]], seq: int,
                 index: dict[str, int]) -> EventChunk:
        cols = _fast_columns(objs, seq, self.strings, index)
        if cols is None:  # something is wrong: find the first bad line
            for i, (lineno, obj) in enumerate(zip(lines, objs)):
                self._check(lineno, obj, seq + i)
            raise self._err(lines[0], f"an integer out of range in lines {lines[0]}-{lines[-1]}")
        return EventChunk(first_seq=seq, columns=cols, strings=self.strings)


def _fast_columns(objs: list[dict[str, Any]], seq: int, strings: list[str],
                  index: dict[str, int]) -> Optional[dict[str, np.ndarray]]:
    """Columns of already-parsed event objects, or None if any is invalid."""
    n = len(objs)
    nf = len(FIELDS)
    defaults = _JSON_DEFAULTS
    merged = [{**defaults, **o} for o in objs]
    if any(len(m) != nf for m in merged):
        return None  # an unknown field
    try:
        rows = list(map(_GET_FIELDS, merged))
    except KeyError:
        return None  # a required field is missing
    columns = dict(zip(FIELDS, zip(*rows)))
    if list(columns["seq"]) != list(range(seq, seq + n)):
        return None
    cols: dict[str, np.ndarray] = {}
    try:
        for name, dt in COLUMN_DTYPES.items():
            vals: Any = columns[name]
            types = set(map(type, vals))
            if name in STRING_FIELDS:
                if types != {str}:
                    return None
                if name == "kind" and not set(vals) <= _KIND_SET:
                    return None
                if name == "access" and not set(vals) <= _ACCESS_OK:
                    return None
                for v in dict.fromkeys(vals):  # new strings get codes in first-seen order
                    if v not in index:
                        index[v] = len(strings)
                        strings.append(v)
                vals = list(map(index.__getitem__, vals))
            elif name in HEX_FIELDS:
                if not types <= ({str, type(None)} if name == "pc" else {str}):
                    return None
                vals = [NO_PC if v is None else _hex(v) for v in vals]
            elif name == "user":
                if not types <= {bool}:
                    return None
            elif name == "pfn":
                if not types <= {int, type(None)}:
                    return None
                vals = [-1 if v is None else v for v in vals]
            elif types != {int}:
                return None
            cols[name] = np.array(vals, dtype=dt)
    except (ValueError, OverflowError):
        return None
    return cols


def _hex(v: str) -> int:
    if v[:2] != "0x":
        raise ValueError(v)
    return int(v, 16)


class BinaryReader(_ReaderBase):
    """The ``.mmtrace`` container of :mod:`mmuemu.trace.container`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.n_events = None
        self._fh: Optional[BinaryIO] = open(path, "rb")
        fh = self._fh
        raw = fh.read(container.HEADER.size)
        if len(raw) < container.HEADER.size:
            raise self._err(len(raw), "truncated header")
        magic, version, _, meta_len = container.HEADER.unpack(raw)
        if magic != container.MAGIC:
            raise self._err(0, "not an mmuemu trace")
        try:
            _check_version(f"{path}: offset 8", version)
        except TraceFormatError:
            self.close()
            raise
        if meta_len > container.MAX_HEADER_BYTES:
            raise self._err(12, f"header length {meta_len} is implausible (corrupt)")
        meta = fh.read(meta_len)
        if len(meta) < meta_len:
            raise self._err(container.HEADER.size + len(meta), "truncated header")
        try:
            obj = json.loads(meta)
            if not isinstance(obj, dict):
                raise ValueError("header is not a JSON object")
            self.header = TraceHeader.from_json(obj)
        except ValueError as e:
            raise self._err(container.HEADER.size, f"bad header: {e}") from None
        if self.header.version != version:
            raise self._err(container.HEADER.size, "header version disagrees with the file's")
        self._offset = container.HEADER.size + meta_len
        self._started = False
        self.strings = []

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _err(self, offset: int, what: str) -> TraceFormatError:
        self.close()
        return TraceFormatError(f"{self.path}: offset {offset}: {what}")

    def _read(self, n: int, at: int, what: str) -> bytes:
        assert self._fh is not None
        data = self._fh.read(n)
        if len(data) < n:
            raise self._err(at, f"truncated {what} ({len(data)} of {n} bytes)")
        return data

    def chunks(self, size: int = container.CHUNK_EVENTS) -> Iterator[EventChunk]:
        """The stored chunks as they are (``size`` is ignored: the writer chose it)."""
        if self._started or self._fh is None:
            raise ValueError(f"{self.path}: a reader can be iterated once; open it again")
        self._started = True
        fh = self._fh
        seq = 0
        n_chunks = 0
        strings = self.strings
        kind_ok: list[bool] = []
        while True:
            at = self._offset
            tag = fh.read(4)
            if len(tag) < 4:
                raise self._err(at, f"truncated: no end marker after {seq} events")
            if tag == container.FOOTER_MAGIC:
                self._footer(at, tag, seq, n_chunks)
                return
            if tag != container.CHUNK_MAGIC:
                raise self._err(at, f"corrupt: bad chunk marker {tag!r}")
            rest = self._read(container.CHUNK.size - 4, at, "chunk header")
            _, n, first, s_len, p_len, crc = container.CHUNK.unpack(tag + rest)
            if not 0 < n <= container.MAX_CHUNK_EVENTS:
                raise self._err(at, f"corrupt chunk: {n} events")
            if first != seq:
                raise self._err(at, f"sequence gap: chunk starts at seq {first}, "
                                    f"{seq} was expected")
            if p_len > n * ROW_BYTES + 1024 + n or s_len > container.MAX_HEADER_BYTES:
                raise self._err(at, "corrupt chunk: implausible lengths")
            body_at = at + container.CHUNK.size
            s_raw = self._read(s_len, body_at, "chunk")
            payload = self._read(p_len, body_at + s_len, "chunk")
            if zlib.crc32(payload, zlib.crc32(s_raw)) != crc:
                raise self._err(at, "corrupt chunk: checksum mismatch")
            try:
                new = json.loads(s_raw)
                raw = zlib.decompress(payload)
            except (ValueError, zlib.error) as e:
                raise self._err(at, f"corrupt chunk: {e}") from None
            if not isinstance(new, list) or not all(isinstance(s, str) for s in new):
                raise self._err(at, "corrupt chunk: bad string table")
            if len(raw) != n * ROW_BYTES:
                raise self._err(at, f"corrupt chunk: {len(raw)} payload bytes for {n} events")
            strings.extend(new)
            kind_ok.extend(s in KINDS for s in new)
            cols = unpack_columns(raw, n)
            limit = len(strings)
            for name in STRING_FIELDS:
                if int(cols[name].max()) >= limit:
                    raise self._err(at, f"corrupt chunk: {name} code out of range")
            if not np.asarray(kind_ok, dtype=bool)[cols["kind"]].all():
                raise self._err(at, "corrupt chunk: unknown event kind")
            self._offset = body_at + s_len + p_len
            seq += n
            n_chunks += 1
            yield EventChunk(first_seq=first, columns=cols, strings=strings)

    def _footer(self, at: int, tag: bytes, seq: int, n_chunks: int) -> None:
        rest = self._read(container.FOOTER.size - 4, at, "end marker")
        _, n_events, n_ch, crc = container.FOOTER.unpack(tag + rest)
        if zlib.crc32(container.FOOTER_BODY.pack(n_events, n_ch)) != crc:
            raise self._err(at, "corrupt end marker: checksum mismatch")
        if n_events != seq or n_ch != n_chunks:
            raise self._err(at, f"end marker says {n_events} events in {n_ch} chunks, "
                                f"the file holds {seq} in {n_chunks}")
        assert self._fh is not None
        if self._fh.read(1):
            raise self._err(at + container.FOOTER.size, "data after the end marker")
        self.n_events = seq
        self.close()

    def events(self) -> Iterator[TraceEvent]:
        for chunk in self.chunks():
            yield from chunk.events()


def read_all(path: str | os.PathLike[str]) -> tuple[TraceHeader, list[TraceEvent]]:
    """Header and every event of a (small) trace, for tests and tools."""
    with open_trace(path) as r:
        return r.header, list(r.events())
