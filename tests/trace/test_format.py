"""Trace encodings: round trips, chunking, conversion and event filters."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmuemu.trace import EventFilter, EventFilterError, TraceEvent, TraceHeader, read_all
from mmuemu.trace.cli import main as trace_main
from mmuemu.trace.reader import open_trace
from mmuemu.trace.schema import KINDS, STRING_FIELDS
from mmuemu.trace.writer import open_writer, trace_encoding

HEADER = TraceHeader(arch="x86_64", program="demo", argv=("1", "ü"), config={"k": 1},
                     events=("all",))
SUFFIXES = [".jsonl", ".mmtrace"]


def sample_events(n: int = 7) -> list[TraceEvent]:
    """Events exercising every optional field, sentinels and extremes."""
    base = [
        TraceEvent(0, 0, 0, 1, "x86_64", "fault.anon", 0x7FFFFFFFEF7D, access="write",
                   role="stack", page=0, outcome="minor", pfn=9),
        TraceEvent(1, 10, 12, 1, "x86_64", "fault.file", 0x401000, access="exec", user=True,
                   role="text", page=0, pc=0x401150, insn="xor ebp, ebp", outcome="minor",
                   pfn=4),
        TraceEvent(2, 20, 25, 1, "x86_64", "mm.mmap", 0x7FFFF7FFC000, length=12288,
                   role="file:dät \"q\".bin", page=0, prot=3, flags=0x22,
                   result=0x7FFFF7FFC000),
        TraceEvent(3, 30, 31, 1, "x86_64", "mm.brk", 0, role="heap", page=-1, result=-12),
        TraceEvent(4, 40, 41, 1, "x86_64", "fault.bad_area", (1 << 64) - 1, access="read",
                   user=True, pc=0, insn="(undecodable)", outcome="segv", result=11),
        TraceEvent(5, 50, 51, 7, "x86_64", "flush.tlb_range", 0x1000, length=1 << 40),
        TraceEvent(6, 60, 61, 1, "x86_64", "task.exit", 0, outcome="signal", result=139),
    ]
    return base[:n]


def write(path: Path, events: list[TraceEvent], chunk_events: int = 1 << 15) -> None:
    w = open_writer(path, HEADER, chunk_events=chunk_events) if path.suffix == ".mmtrace" \
        else open_writer(path, HEADER)
    with w:
        for ev in events:
            w.write(ev)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    events = sample_events()
    write(path, events)
    header, back = read_all(path)
    assert header == HEADER
    assert back == events


def test_binary_round_trip_many_chunks(tmp_path: Path) -> None:
    path = tmp_path / "t.mmtrace"
    events = sample_events()
    write(path, events, chunk_events=3)
    with open_trace(path) as r:
        sizes = [len(c) for c in r.chunks()]
    assert sizes == [3, 3, 1]
    assert read_all(path)[1] == events


def test_empty_trace(tmp_path: Path) -> None:
    for suffix in SUFFIXES:
        path = tmp_path / f"e{suffix}"
        write(path, [])
        assert read_all(path) == (HEADER, [])


def test_chunks_agree_between_encodings(tmp_path: Path) -> None:
    events = sample_events()
    cols = []
    for suffix in SUFFIXES:
        write(tmp_path / f"t{suffix}", events)
        with open_trace(tmp_path / f"t{suffix}") as r:
            (chunk,) = list(r.chunks())
            cols.append({k: [chunk.strings[x] for x in v] if k in STRING_FIELDS
                         else v.tolist() for k, v in chunk.columns.items()})
    assert cols[0] == cols[1]


def test_convert_both_ways_is_lossless(tmp_path: Path) -> None:
    src = tmp_path / "a.jsonl"
    write(src, sample_events())
    assert trace_main(["convert", str(src), str(tmp_path / "b.mmtrace")]) == 0
    assert trace_main(["convert", str(tmp_path / "b.mmtrace"), str(tmp_path / "c.jsonl")]) == 0
    assert (tmp_path / "c.jsonl").read_bytes() == src.read_bytes()


def test_suffix_chooses_encoding() -> None:
    assert trace_encoding("x.jsonl") == "jsonl"
    assert trace_encoding("x.mmtrace") == "binary"
    with pytest.raises(ValueError, match="unknown trace suffix"):
        trace_encoding("x.txt")


def test_jsonl_is_one_event_per_line_and_omits_defaults(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write(path, sample_events(1))
    lines = path.read_text().splitlines()
    assert lines[0].startswith('{"mmuemu_trace":1,')
    assert lines[1] == ('{"seq":0,"insns":0,"cycles":0,"pid":1,"arch":"x86_64",'
                        '"kind":"fault.anon","addr":"0x7fffffffef7d","access":"write",'
                        '"role":"stack","page":0,"outcome":"minor","pfn":9}')
    assert lines[2] == '{"end":true,"events":1}'


def test_binary_is_smaller_for_long_traces(tmp_path: Path) -> None:
    ev = sample_events(2)[1]
    events = [TraceEvent(i, i * 13, i * 13, 1, "x86_64", "fault.anon", 0x7FFF0000 + i * 4096,
                         access="write", user=True, role="anon", page=i, pc=ev.pc,
                         insn=ev.insn, outcome="minor", pfn=100 + i) for i in range(5000)]
    write(tmp_path / "t.jsonl", events)
    write(tmp_path / "t.mmtrace", events)
    assert (tmp_path / "t.mmtrace").stat().st_size * 5 < (tmp_path / "t.jsonl").stat().st_size
    assert read_all(tmp_path / "t.mmtrace")[1] == events


_u64 = st.integers(0, (1 << 64) - 1)
_i63 = st.integers(-(1 << 62), (1 << 62))
_text = st.text(max_size=12)


@st.composite
def _events(draw: st.DrawFn) -> list[TraceEvent]:
    n = draw(st.integers(0, 6))
    return [TraceEvent(
        seq=i, insns=draw(st.integers(0, 1 << 40)), cycles=draw(st.integers(0, 1 << 40)),
        pid=draw(st.integers(0, 1 << 20)), arch=draw(st.sampled_from(["x86_64", "aarch64"])),
        kind=draw(st.sampled_from(list(KINDS))), addr=draw(_u64), length=draw(_u64),
        access=draw(st.sampled_from(["", "read", "write", "exec"])), user=draw(st.booleans()),
        role=draw(_text), page=draw(st.integers(-1, 1 << 40)),
        pc=draw(st.none() | st.integers(0, (1 << 64) - 2)), insn=draw(_text),
        outcome=draw(_text), pfn=draw(st.none() | st.integers(0, 1 << 40)),
        prot=draw(_i63), flags=draw(_i63), result=draw(_i63)) for i in range(n)]


@settings(max_examples=40, deadline=None)
@given(events=_events())
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory,
                             events: list[TraceEvent]) -> None:
    d = tmp_path_factory.mktemp("rt")
    for suffix in SUFFIXES:
        write(d / f"t{suffix}", events, chunk_events=4)
        assert read_all(d / f"t{suffix}")[1] == events


def test_event_filter_words() -> None:
    f = EventFilter.parse("fault,mm")
    assert "fault.cow" in f and "mm.brk" in f and "flush.tlb_page" not in f
    assert EventFilter.parse("cow").kinds == {"fault.cow"}
    assert EventFilter.parse("exit").kinds == {"task.exit"}
    assert EventFilter.parse("mmap,munmap").kinds == {"mm.mmap", "mm.munmap"}
    assert not EventFilter.parse("all,-flush").kinds & {k for k in KINDS if "flush" in k}
    assert EventFilter.parse("all").names() == ("all",)
    with pytest.raises(EventFilterError, match="unknown trace event 'faults'"):
        EventFilter.parse("faults")


def test_chunk_columns_use_sentinels(tmp_path: Path) -> None:
    path = tmp_path / "t.mmtrace"
    write(path, sample_events())
    with open_trace(path) as r:
        (chunk,) = list(r.chunks())
    assert chunk.columns["pc"][0] == np.uint64((1 << 64) - 1)
    assert chunk.columns["pfn"][2] == -1
