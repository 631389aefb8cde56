"""The columnar binary container (``.mmtrace``): layout constants and chunk packing.

File layout (all integers little-endian)::

    file    := header chunk* footer
    header  := "MMUTRACE" u16 version u16 0 u32 json_len  json[json_len]
    chunk   := "MTCH" u32 n u64 first_seq u32 strings_len u32 payload_len u32 crc32
               strings[strings_len]  payload[payload_len]
    footer  := "MTEN" u64 n_events u32 n_chunks u32 crc32(n_events, n_chunks)

``strings`` is a UTF-8 JSON list of the strings first used in this chunk
(appended to the file's string table, in order). ``payload`` is
zlib-compressed: the columns of :data:`columns.COLUMN_DTYPES`, each as ``n``
packed values, in that order. ``crc32`` covers strings and payload as stored.
"""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from mmuemu.trace.columns import COLUMN_DTYPES, EventChunk

MAGIC = b"MMUTRACE"
HEADER = struct.Struct("<8sHHI")
CHUNK_MAGIC = b"MTCH"
CHUNK = struct.Struct("<4sIQIII")
FOOTER_MAGIC = b"MTEN"
FOOTER = struct.Struct("<4sQII")
FOOTER_BODY = struct.Struct("<QI")
#: Events per chunk the writer aims for; readers accept any size up to MAX_CHUNK_EVENTS.
#: A chunk is converted to columns and compressed when it is full, so at the
#: end of a run the emulator waits for the last, partial one: 1024 events
#: bound that wait to about 1 ms (4096 made it 2-4 ms, a third of what a
#: trace cost an `anon_touch 20000` run). Files are no larger for it.
CHUNK_EVENTS = 1 << 10
MAX_CHUNK_EVENTS = 1 << 22
MAX_HEADER_BYTES = 1 << 24
ZLIB_LEVEL = 1


def pack_chunk(chunk: EventChunk, new_strings: list[str]) -> bytes:
    """A chunk record for ``chunk`` whose string table grew by ``new_strings``."""
    strings = json.dumps(new_strings, ensure_ascii=False, separators=(",", ":")).encode()
    payload = zlib.compress(b"".join(chunk.columns[name].astype(dt, copy=False).tobytes()
                                     for name, dt in COLUMN_DTYPES.items()), ZLIB_LEVEL)
    crc = zlib.crc32(payload, zlib.crc32(strings))
    return CHUNK.pack(CHUNK_MAGIC, len(chunk), chunk.first_seq, len(strings), len(payload),
                      crc) + strings + payload


def unpack_columns(raw: bytes, n: int) -> dict[str, np.ndarray]:
    """Split an uncompressed payload of ``n`` events into its columns (no copy)."""
    cols: dict[str, np.ndarray] = {}
    off = 0
    for name, dt in COLUMN_DTYPES.items():
        size = n * dt.itemsize
        cols[name] = np.frombuffer(raw, dtype=dt, count=n, offset=off)
        off += size
    return cols


def pack_footer(n_events: int, n_chunks: int) -> bytes:
    """The end marker with the totals the reader checks."""
    body = FOOTER_BODY.pack(n_events, n_chunks)
    return FOOTER.pack(FOOTER_MAGIC, n_events, n_chunks, zlib.crc32(body))
