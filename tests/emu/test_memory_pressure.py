"""Guests under memory pressure, through the CLI, on both architectures.

A run in less emulated memory than the guest touches must print exactly
what an unconstrained run prints (nothing lost), swap (pswpout, pswpin,
major faults) only when memory is short, give the same trace twice, and
leave no swap file behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARCHES, guest

SHORT = "2M"  # 511 frames, min watermark 45


def run(tmp_path: Path, arch: str, argv: list[str], *opts: str) -> tuple[str, dict[str, Any]]:
    stats = tmp_path / "stats.json"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "mmuemu", "run", "-q", "--root", str(tmp_path),
                        "--stats", str(stats), *opts, guest(arch, argv[0]), *argv[1:]],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return p.stdout, json.loads(stats.read_text())


CASES = [
    ("swap_stress", ["swap_stress", "1200", "3"]),
    ("fork_swap", ["fork_swap", "600"]),
]


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name,argv", CASES, ids=[c[0] for c in CASES])
def test_anon_working_set_larger_than_memory_swaps_and_loses_nothing(
        tmp_path: Path, arch: str, name: str, argv: list[str]) -> None:
    plenty, s0 = run(tmp_path, arch, argv)
    short, s1 = run(tmp_path, arch, argv, "--mem", SHORT)
    assert short == plenty and "OK" in short
    v0, v1 = s0["vmstat"], s1["vmstat"]
    # memory is plentiful: no reclaim at all
    assert (v0["pswpout"], v0["pswpin"], s0["faults"]["major"]) == (0, 0, 0)
    assert v0["pgscan_kswapd"] == v0["pgscan_direct"] == 0
    # memory is short: pages went out and came back, with major faults
    assert v1["pswpout"] > 0 and v1["pswpin"] > 0 and s1["faults"]["major"] > 0
    assert s1["faults"]["by_type"]["swap"] >= s1["faults"]["major"]
    assert v1["pgscan_kswapd"] > 0 and v1["pgsteal_kswapd"] > 0
    # never below the min watermark, and all swap is given back at exit
    mem = s1["memory"]
    assert mem["min_free_pages"] >= mem["watermarks"]["min"]
    assert mem["swap"]["used_pages"] == 0 and mem["swap_cache_pages"] == 0
    assert not list(tmp_path.glob("mmuemu-swap-*"))  # the swap file is gone


@pytest.mark.parametrize("arch", ARCHES)
def test_file_pages_are_evicted_and_refault(tmp_path: Path, arch: str) -> None:
    """A file twice the size of memory: clean page-cache pages are dropped
    (never swapped) and read again with major faults; the data survives,
    including changes written through a shared mapping."""
    argv = ["file_heavy", "fh.dat", "1024", "2"]
    plenty, s0 = run(tmp_path, arch, argv)
    short, s1 = run(tmp_path, arch, argv, "--mem", SHORT)
    assert short == plenty and "file_heavy: OK" in short
    v1 = s1["vmstat"]
    assert v1["pswpout"] == 0  # the anonymous part fits; file pages go back to the file
    assert v1["pgsteal_kswapd"] + v1["pgsteal_direct"] > 0
    assert s1["faults"]["major"] > s0["faults"]["major"]


@pytest.mark.parametrize("arch", ARCHES)
def test_reclaim_is_deterministic(tmp_path: Path, arch: str) -> None:
    traces = []
    for i in range(2):
        out = tmp_path / f"t{i}.mmtrace"
        run(tmp_path, arch, ["fork_swap", "400"], "--mem", SHORT, "--trace", str(out))
        traces.append(out.read_bytes())
    assert traces[0] == traces[1]


@pytest.mark.parametrize("arch", ARCHES)
def test_no_swap_means_the_oom_killer(tmp_path: Path, arch: str) -> None:
    """Without swap the anonymous pages cannot go anywhere: the OOM killer
    kills a process with Linux's log lines, and the parent sees SIGKILL."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "mmuemu", "run", "-q", "--mem", SHORT,
                        "--swap", "0", guest(arch, "fork_swap"), "300"],
                       capture_output=True, text=True, env=env, timeout=300)
    killed = [ln for ln in p.stderr.splitlines() if ln.startswith("Out of memory: Killed process")]
    assert len(killed) == 1 and "Traceback" not in p.stderr
    assert "invoked oom-killer" in p.stderr
    if "Killed process 2 " in killed[0]:
        assert "parent: child killed by signal 9" in p.stdout and p.returncode == 1
    else:
        assert p.returncode == 128 + 9


def test_software_access_flag_faults_on_arm64_without_hafdbs(tmp_path: Path) -> None:
    """walk.hw_access_flag = false: a PTE whose AF reclaim cleared faults on
    its next use, and the kernel sets AF (pte_mkyoung): spurious faults."""
    argv = ["swap_stress", "1200", "2"]
    _, hw = run(tmp_path, "aarch64", argv, "--mem", SHORT)
    out, sw = run(tmp_path, "aarch64", argv, "--mem", SHORT, "--tlb", "walk.hw_access_flag=false")
    assert "OK" in out
    assert sw["config"]["hw_access_flag"] is False
    assert hw["faults"]["by_type"]["spurious"] == 0
    assert sw["faults"]["by_type"]["spurious"] > 0
