"""Ctrl-C stops a guest that never calls back into Python, and the run still
ends properly: exit 130, the kernel-style message, a complete trace, stats."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.trace.harness import guest_path


def _interrupt(tmp_path: Path, mmuemu_args: list[str], ready: Callable[[], bool],
               settle: float) -> str:
    """Run ``mmuemu run -q <mmuemu_args>`` (a guest that loops for ever), wait
    until ``ready()`` (at most 120 s) and ``settle`` seconds more, send
    SIGINT, check it ended as interrupted and return its stderr (killed, if
    it does not end within 30 s)."""
    proc = subprocess.Popen([sys.executable, "-m", "mmuemu", "run", "-q", *mmuemu_args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not ready() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        time.sleep(settle)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted (SIGINT)"
    assert "Traceback" not in err
    return err


def test_sigint_stops_a_guest_looping_in_native_code(tmp_path: Path) -> None:
    trace, stats = tmp_path / "t.jsonl", tmp_path / "s.json"
    # 4096 pages for ever: once Unicorn's soft TLB has grown, no Python runs.
    # Interrupted past start-up (the writer process has flushed events to
    # the file), half a second into the loop.
    _interrupt(tmp_path, ["--trace", str(trace), "--stats", str(stats),
                          guest_path("x86_64", "tlb_stress"), "4096", "1000000000"],
               lambda: trace.exists() and trace.stat().st_size >= 256 << 10, 0.5)
    last = json.loads(trace.read_text().splitlines()[-1])
    assert last["end"] is True and last["events"] > 4096
    st = json.loads(stats.read_text())
    assert st["stop_reason"] == "interrupted" and st["exit_code"] == 130
    assert st["instructions"] > 10_000_000  # it was well into the loop


@pytest.mark.parametrize("mode", ["raw", "exact"])
def test_sigint_stops_raw_and_exact_mode_loops(tmp_path: Path, mode: str) -> None:
    """The same in the other modes: raw maps every page up front and exact
    runs every access through its C model, so neither calls into Python
    while the loop runs; only the native watcher can stop them."""
    stats = tmp_path / "s.json"
    _interrupt(tmp_path, ["--mode", mode, "--stats", str(stats),
                          guest_path("x86_64", "tlb_stress"), "64", "1000000000"],
               lambda: True, 3)  # past start-up, into the loop
    st = json.loads(stats.read_text())
    assert st["stop_reason"] == "interrupted" and st["mode"] == mode
    assert st["instructions"] > 1_000_000
