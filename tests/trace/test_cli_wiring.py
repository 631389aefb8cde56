"""``mmuemu run --trace`` and ``mmuemu trace ...`` through the real command line.

These run once ``mmuemu/cli.py`` is wired to :mod:`mmuemu.trace.cli` (the
wiring patch); before that they are skipped.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from mmuemu import cli
from mmuemu.trace import read_all
from tests.trace.harness import TRACES, guest_path


def _wired() -> bool:
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            cli.build_parser().parse_args(["run", "--trace", "x.jsonl", "prog"])
    except SystemExit:
        return False
    return True


WIRED_CLI = _wired()
pytestmark = pytest.mark.skipif(not WIRED_CLI, reason="mmuemu/cli.py is not wired to traces yet")


@pytest.mark.parametrize("suffix", [".jsonl", ".mmtrace"])
def test_run_trace_matches_golden(tmp_path: Path, suffix: str,
                                  capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"t{suffix}"
    rc = cli.main(["run", "-q", "--root", str(tmp_path), "--trace", str(out),
                   guest_path("x86_64", "anon_touch"), "16"])
    assert rc == 0
    assert cli.main(["trace", "diff", "-q", str(TRACES / "x86_64" / "anon_touch-16.jsonl"),
                     str(out)]) == 0
    header, events = read_all(out)
    assert header.program == "anon_touch" and events[0].user is False  # exec's stack fault


def test_run_trace_events_filter(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.jsonl"
    assert cli.main(["run", "-q", "--trace", str(out), "--trace-events", "mm,exit",
                     guest_path("aarch64", "anon_touch"), "4"]) == 0
    kinds = {e.kind for e in read_all(out)[1]}
    assert kinds == {"mm.mmap", "mm.munmap", "task.exit"}


@pytest.mark.parametrize("args,message", [
    (["--trace", "X/t.txt"], "unknown trace suffix"),
    (["--trace", "X/no/dir/t.jsonl"], "--trace X/no/dir/t.jsonl: No such file or directory"),
    (["--trace", "X/t.jsonl", "--trace-events", "nope"], "unknown trace event 'nope'"),
])
def test_run_trace_bad_options(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                               args: list[str], message: str) -> None:
    argv = [a.replace("X", str(tmp_path)) for a in args]
    assert cli.main(["run", *argv, guest_path("x86_64", "hello")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and message.replace("X", str(tmp_path)) in err


def test_trace_commands_exit_codes(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    x86, arm = (str(TRACES / a / "anon_touch-16.jsonl") for a in ("x86_64", "aarch64"))
    assert cli.main(["trace", "diff", "--cross-arch", x86, arm]) == 0
    assert cli.main(["trace", "diff", x86, arm]) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(Path(x86).read_text()[:-40])
    assert cli.main(["trace", "diff", x86, str(bad)]) == 2
    assert cli.main(["trace", "stats", str(bad)]) == 2
    err = capfd.readouterr().err.splitlines()
    assert err[-1].startswith(f"mmuemu: error: {bad}:") and "truncated" in err[-1]
