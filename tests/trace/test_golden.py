"""Every guest program on both architectures against its golden trace in traces/.

Run ``python -m pytest --update-traces`` to rewrite the goldens after an
intended change, then review ``git diff traces/``.
"""
from __future__ import annotations

import pytest

from tests.conftest import ARCHES
from tests.trace.conftest import GoldenChecker, golden_run, guest_programs
from tests.trace.harness import TRACES

CASES = [(arch, prog) for arch in ARCHES for prog in guest_programs(arch)]


@pytest.mark.parametrize("arch,program", CASES, ids=[f"{a}-{p}" for a, p in CASES])
def test_trace_matches_golden(golden: GoldenChecker, arch: str, program: str) -> None:
    golden.check(arch, golden_run(program))


@pytest.mark.parametrize("arch", ARCHES)
def test_no_stale_goldens(arch: str) -> None:
    """Every golden belongs to a bundled program's golden run (none left behind)."""
    expected = {golden_run(p).path(TRACES, arch).name for p in guest_programs(arch)}
    present = {p.name for p in (TRACES / arch).glob("*.jsonl")}
    assert present <= expected, f"stale goldens in traces/{arch}: {sorted(present - expected)}"
