"""Every guest program on both architectures against its golden trace in traces/.

Run ``python -m pytest --update-traces`` to rewrite the goldens after an
intended change, then review ``git diff traces/``.
"""
from __future__ import annotations

import pytest

from mmuemu.trace.golden import GoldenRun

from tests.conftest import ARCHES
from tests.trace.conftest import PRESSURE_GOLDEN_RUNS, GoldenChecker, golden_run, guest_programs
from tests.trace.harness import TRACES

CASES = [(arch, prog) for arch in ARCHES for prog in guest_programs(arch)]


@pytest.mark.parametrize("arch,program", CASES, ids=[f"{a}-{p}" for a, p in CASES])
def test_trace_matches_golden(golden: GoldenChecker, arch: str, program: str) -> None:
    golden.check(arch, golden_run(program))


PRESSURE = [(arch, run) for arch in ARCHES for run in PRESSURE_GOLDEN_RUNS]


@pytest.mark.parametrize("arch,run", PRESSURE, ids=[f"{a}-{r.name}" for a, r in PRESSURE])
def test_trace_under_memory_pressure_matches_golden(golden: GoldenChecker, arch: str,
                                                    run: GoldenRun) -> None:
    """Reclaim is deterministic: a run that swaps gives the same trace every time."""
    golden.check(arch, run)


@pytest.mark.parametrize("arch", ARCHES)
def test_no_stale_goldens(arch: str) -> None:
    """Every golden belongs to a bundled program's golden run (none left behind)."""
    expected = {golden_run(p).path(TRACES, arch).name for p in guest_programs(arch)}
    expected |= {r.path(TRACES, arch).name for r in PRESSURE_GOLDEN_RUNS}
    present = {p.name for p in (TRACES / arch).glob("*.jsonl")}
    assert present <= expected, f"stale goldens in traces/{arch}: {sorted(present - expected)}"
