"""Bad trace files: one-line errors naming the line or byte offset, exit status 2."""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from mmuemu.trace import TraceFormatError, read_all
from mmuemu.trace.cli import main as trace_main
from mmuemu.trace.container import CHUNK, HEADER
from tests.trace.test_format import sample_events, write


def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "t.jsonl"
    write(path, sample_events())
    return path


def binary(tmp_path: Path) -> Path:
    path = tmp_path / "t.mmtrace"
    write(path, sample_events(), chunk_events=3)
    return path


def edit_line(path: Path, lineno: int, fn: "object") -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[lineno - 1] = fn(lines[lineno - 1])  # type: ignore[operator]
    path.write_text("".join(lines))


def expect(path: Path, pattern: str) -> str:
    with pytest.raises(TraceFormatError) as info:
        read_all(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert re.search(pattern, msg), msg
    return msg


# --- JSON Lines -----------------------------------------------------------------------
def test_jsonl_truncated_mid_line(tmp_path: Path) -> None:
    path = jsonl(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:data.index(b'"kind":"mm.mmap"')])
    expect(path, r"t\.jsonl:4: truncated")


def test_jsonl_truncated_at_line_boundary(tmp_path: Path) -> None:
    path = jsonl(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:4]))
    expect(path, r"t\.jsonl:5: truncated: no end record after 3 events")


def test_jsonl_corrupt_json(tmp_path: Path) -> None:
    path = jsonl(tmp_path)
    edit_line(path, 3, lambda s: s.replace('"kind"', '"ki\x00nd', 1).replace(",", ";", 1))
    expect(path, r"t\.jsonl:3: not valid JSON")


def test_jsonl_wrong_version(tmp_path: Path) -> None:
    path = jsonl(tmp_path)
    edit_line(path, 1, lambda s: s.replace('"mmuemu_trace":1', '"mmuemu_trace":2'))
    expect(path, r"t\.jsonl:1: unsupported trace version 2 \(this mmuemu reads version 1\)")


@pytest.mark.parametrize("change,pattern", [
    (lambda s: s.replace('"seq":2', '"seq":5'), r":4: sequence gap: seq 5 where 2"),
    (lambda s: s.replace('"mm.mmap"', '"mm.nope"'), r":4: unknown event kind 'mm.nope'"),
    (lambda s: s.replace('"insns":20', '"insns":"20"'), r":4: field 'insns' must be an integer"),
    (lambda s: s.replace('"addr":"0x', '"addr":"zz'), r":4: field 'addr' must be a \"0x"),
    (lambda s: s.replace('"pid":1,', '"pid":1,"colour":3,'), r":4: unknown field 'colour'"),
    (lambda s: s.replace('"pid":1,', ''), r":4: missing field 'pid'"),
])
def test_jsonl_bad_field(tmp_path: Path, change: object, pattern: str) -> None:
    path = jsonl(tmp_path)
    edit_line(path, 4, change)
    expect(path, pattern)


def test_jsonl_bad_end_record(tmp_path: Path) -> None:
    path = jsonl(tmp_path)
    edit_line(path, 9, lambda s: s.replace('"events":7', '"events":8'))
    expect(path, r":9: bad end record")
    path.write_text(path.read_text().replace('"events":8', '"events":7') + "{}\n")
    expect(path, r":10: data after the end record")


def test_not_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"hello": 1}) + "\n")
    expect(path, r"x\.jsonl:1: not an mmuemu trace")
    path.write_bytes(b"\x7fELF....")
    expect(path, r"offset 0: not an mmuemu trace")
    path.write_bytes(b"")
    expect(path, r"empty file")


# --- binary ------------------------------------------------------------------------------
def chunk_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    _, _, _, meta = HEADER.unpack_from(data)
    off = HEADER.size + meta
    out = []
    while data[off:off + 4] == b"MTCH":
        out.append(off)
        _, _, _, s_len, p_len, _ = CHUNK.unpack_from(data, off)
        off += CHUNK.size + s_len + p_len
    return out


def test_binary_truncated_inside_chunk(tmp_path: Path) -> None:
    path = binary(tmp_path)
    offs = chunk_offsets(path)
    path.write_bytes(path.read_bytes()[:offs[1] + 40])
    expect(path, rf"t\.mmtrace: offset {offs[1] + CHUNK.size}: truncated chunk")


def test_binary_truncated_at_chunk_boundary(tmp_path: Path) -> None:
    path = binary(tmp_path)
    offs = chunk_offsets(path)
    path.write_bytes(path.read_bytes()[:offs[2]])
    expect(path, rf"offset {offs[2]}: truncated: no end marker after 6 events")


def test_binary_flipped_payload_byte(tmp_path: Path) -> None:
    path = binary(tmp_path)
    offs = chunk_offsets(path)
    data = bytearray(path.read_bytes())
    data[offs[1] + CHUNK.size + 5] ^= 0x40
    path.write_bytes(bytes(data))
    expect(path, rf"offset {offs[1]}: corrupt chunk: checksum mismatch")


def test_binary_bad_chunk_marker(tmp_path: Path) -> None:
    path = binary(tmp_path)
    offs = chunk_offsets(path)
    data = bytearray(path.read_bytes())
    data[offs[2]:offs[2] + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    expect(path, rf"offset {offs[2]}: corrupt: bad chunk marker")


def test_binary_wrong_version(tmp_path: Path) -> None:
    path = binary(tmp_path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 8, 7)
    path.write_bytes(bytes(data))
    expect(path, r"t\.mmtrace: offset 8: unsupported trace version 7")


def test_binary_bad_footer_and_trailing_data(tmp_path: Path) -> None:
    path = binary(tmp_path)
    good = path.read_bytes()
    data = bytearray(good)
    data[-12] ^= 1  # the event count in the footer
    path.write_bytes(bytes(data))
    expect(path, rf"offset {len(good) - 20}: corrupt end marker")
    path.write_bytes(good + b"x")
    expect(path, rf"offset {len(good)}: data after the end marker")


# --- through the command line -------------------------------------------------------------
@pytest.mark.parametrize("command", [["stats"], ["diff", "--cross-arch", "GOOD"],
                                     ["plot", "-o", "out.png"], ["convert", "OUT"]])
def test_cli_reports_bad_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          command: list[str]) -> None:
    good = jsonl(tmp_path)
    bad = binary(tmp_path)
    bad.write_bytes(bad.read_bytes()[:-3])
    argv = [command[0], str(bad)] + [str(good) if a == "GOOD" else
                                     str(tmp_path / "c.jsonl") if a == "OUT" else
                                     str(tmp_path / a) if a.endswith(".png") else a
                                     for a in command[1:]]
    pytest.importorskip("matplotlib") if command[0] == "plot" else None
    assert trace_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mmuemu: error: ")
    assert "t.mmtrace: offset" in err
    assert not (tmp_path / "c.jsonl").exists()


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert trace_main(["stats", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.jsonl: No such file" in err


def test_jsonl_integer_out_of_range(tmp_path: Path) -> None:
    path = jsonl(tmp_path)
    edit_line(path, 4, lambda s: s.replace('"insns":20', f'"insns":{1 << 70}'))
    # orjson reads it as a float, json as a big int: either way line 4 is named
    expect(path, r":4: field 'insns' (out of range|must be an integer)")
    with pytest.raises(TraceFormatError, match=r"t\.jsonl:\d+: "):
        from mmuemu.trace.reader import open_trace
        with open_trace(path) as r:
            list(r.chunks())
