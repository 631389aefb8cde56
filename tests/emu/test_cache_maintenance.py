"""Cache maintenance under Unicorn: the guest's own instructions (counted per
execution from the blocks that hold them) and the kernel's I-cache syncs, on
the icache_sync guest, which generates code at run time.

Per round the guest writes one 64-byte line of code, and on arm64 runs
dc cvau, dsb ish, ic ivau, dsb ish, isb for it; on x86-64 one clflush. The
kernel (arm64) syncs a page when it maps a new page executable: the first
round's page, and with "remap" every round's, never the same page rewritten
by user space. Differences between runs of R and 1 rounds cancel the
program's own text pages.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mmuemu.config import RunConfig
from mmuemu.emu.machine import Machine
from mmuemu.emu.tracing import FaultTracer
from mmuemu.trace import read_all
from tests.conftest import guest, have

GUEST_PER_ROUND = {"aarch64": {"dc_cvau": 1, "ic_ivau": 1, "dsb": 2, "isb": 1},
                   "x86_64": {"clflush": 1}}
SYNC = {"dc_cvau": 64, "ic_ivau": 64, "dsb": 2, "isb": 1}


def _run(arch: str, args: list[str], tmp: Path, mode: str = "fast") -> tuple[Any, dict, str, list]:
    trace = tmp / f"{arch}-{'-'.join(args)}-{mode}.jsonl"
    with FaultTracer(str(trace), argv=args) as tracer:
        m = Machine(guest(arch, "icache_sync"), args,
                    rconfig=RunConfig(mode=mode, root=tempfile.mkdtemp(prefix="mmuemu-ic-")),
                    tracer=tracer)
        res = m.run()
    _, events = read_all(trace)
    return res, m.stats(), str(trace), events


def _nonzero(d: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in d.items() if v}


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_guest_cache_maintenance_is_counted_per_execution(arch: str, tmp_path: Path,
                                                          capfd: pytest.CaptureFixture) -> None:
    rounds = 7
    res, st, _, _ = _run(arch, [str(rounds)], tmp_path)
    assert res.exit_code == 0
    assert f"rounds={rounds} same-page sum={sum(1000 + r for r in range(rounds))}" \
        in capfd.readouterr().out
    want = {k: v * rounds for k, v in GUEST_PER_ROUND[arch].items()}
    assert _nonzero(st["cache"]["guest"]["insns"]) == want
    cost = st["profile"]["cost"]["cache"]
    kernel = st["cache"]["kernel"]["insns"]
    assert st["cycles_breakdown"]["cache_maintenance"] == round(
        sum(n * cost[op] for op, n in want.items()) + sum(n * cost[op] for op, n in kernel.items()))


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_the_kernel_syncs_new_executable_pages_only(arch: str, tmp_path: Path) -> None:
    one = _run(arch, ["1"], tmp_path)[1]["cache"]["kernel"]
    same = _run(arch, ["6"], tmp_path)[1]["cache"]["kernel"]
    remap = _run(arch, ["6", "remap"], tmp_path)[1]["cache"]["kernel"]
    syncs = [k["calls"]["sync_icache_dcache"] for k in (one, same, remap)]
    if arch == "x86_64":
        assert syncs == [0, 0, 0]
        for k in (one, same, remap):
            assert _nonzero(k["insns"]) == {} and k["calls"] == k["noop_calls"]
        return
    # the program's text pages and the first code page, then nothing for the
    # same page rewritten 5 times, and one more per new page with remap
    assert syncs[0] >= 2 and syncs[1] == syncs[0] and syncs[2] == syncs[0] + 5
    for k, n in zip((one, same, remap), syncs):
        assert _nonzero(k["insns"]) == {op: v * n for op, v in SYNC.items()}
        assert k["lines"] == {"d": 64 * n, "i": 64 * n}


def test_each_kernel_sync_is_a_flush_icache_trace_event(tmp_path: Path) -> None:
    for args in (["3"], ["3", "remap"]):
        _, st, _, events = _run("aarch64", args, tmp_path)
        icache = [e for e in events if e.kind == "flush.icache"]
        assert len(icache) == st["cache"]["kernel"]["calls"]["sync_icache_dcache"]
        assert {e.role for e in icache} >= {"text", "anon"}
    _, _, _, events = _run("x86_64", ["3"], tmp_path)
    assert not [e for e in events if e.kind == "flush.icache"]


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_fast_and_exact_count_the_same(arch: str, tmp_path: Path) -> None:
    runs = {mode: _run(arch, ["4", "remap"], tmp_path, mode)[1] for mode in ("fast", "exact")}
    assert runs["fast"]["cache"] == runs["exact"]["cache"]
    assert runs["fast"]["faults"] == runs["exact"]["faults"]


def test_the_guest_prints_what_it_prints_natively(tmp_path: Path) -> None:
    path = guest("x86_64", "icache_sync")
    native = subprocess.run([path, "5", "remap"], capture_output=True, text=True, timeout=30)
    mm = subprocess.run([sys.executable, "-m", "mmuemu", "run", "-q", "--root", str(tmp_path), path,
                         "5", "remap"], capture_output=True, text=True, timeout=60)
    assert (mm.returncode, mm.stdout) == (native.returncode, native.stdout)
    if have("qemu-aarch64"):
        a64 = guest("aarch64", "icache_sync")
        q = subprocess.run(["qemu-aarch64", a64, "5", "remap"], capture_output=True, text=True,
                           timeout=30)
        mm = subprocess.run([sys.executable, "-m", "mmuemu", "run", "-q", "--root", str(tmp_path), a64,
                             "5", "remap"], capture_output=True, text=True, timeout=60)
        assert (mm.returncode, mm.stdout) == (q.returncode, q.stdout)
