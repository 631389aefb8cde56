"""Fixtures for trace tests: golden runs and the golden-trace checker.

``golden`` reruns a guest program with a tracer and compares the fresh
trace with ``traces/<arch>/<name>.jsonl`` through ``trace diff``; a
difference fails the test with the readable diff. ``pytest --update-traces``
(see ``tests/conftest.py``) rewrites the goldens instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from mmuemu.config import KernelConfig
from mmuemu.trace.golden import GoldenRun, check_golden
from tests.trace.harness import GUEST_BIN, TRACES, run_traced

#: Small arguments per guest program so golden files stay small. A program
#: not listed here runs with no arguments.
GOLDEN_RUNS: dict[str, GoldenRun] = {r.program: r for r in [
    GoldenRun("hello"),
    GoldenRun("anon_touch", ("16",)),
    GoldenRun("anon_read", ("8",)),
    GoldenRun("file_read", ("8",)),
    GoldenRun("brk_heap", ("8",)),
    GoldenRun("stack_grow", ("100",)),
    GoldenRun("segv"),
    GoldenRun("exit_code", ("3",)),
    GoldenRun("args", ("a", "b")),
    GoldenRun("compute", ("1000",)),
    GoldenRun("tlb_stress", ("16", "2")),
    GoldenRun("data_bss"),
    GoldenRun("getrusage_self"),
    GoldenRun("enosys"),
    GoldenRun("open_path", ("+made.txt", "made.txt", "missing.txt")),
    GoldenRun("cow_fork", ("8",)),
    GoldenRun("mmap_fork", ("4",)),
    GoldenRun("devzero_shared", ("4",)),
    GoldenRun("file_cow", ("4",)),
    GoldenRun("file_read_back", ("8",)),
    GoldenRun("file_scan", ("scan.dat", "1", "512"), files=(("scan.dat", 8 * 4096),)),
    GoldenRun("file_shared", ("4",)),
    GoldenRun("madvise_dontneed", ("4",)),
    GoldenRun("rw_loop", ("2",)),
    GoldenRun("mprotect_split", ("8",)),
    GoldenRun("mremap_grow", ("4",)),
    GoldenRun("munmap_hole", ("8",)),
    GoldenRun("swap_stress", ("256", "2")),
    GoldenRun("fork_swap", ("64",)),
    GoldenRun("file_heavy", ("fh.dat", "32", "1")),
    GoldenRun("icache_sync", ("3", "remap")),
]}


#: Runs under memory pressure: reclaim, swap-out, swap-in and refaults in the trace.
PRESSURE_GOLDEN_RUNS: list[GoldenRun] = [
    GoldenRun("swap_stress", ("520", "2"), mem=2 << 20),
    GoldenRun("fork_swap", ("320",), mem=2 << 20),
    GoldenRun("file_heavy", ("fh.dat", "480", "1"), mem=2 << 20),
]


def guest_programs(arch: str) -> list[str]:
    """Every bundled guest program of ``arch``."""
    d = GUEST_BIN / arch
    return sorted(p.name for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def golden_run(program: str) -> GoldenRun:
    """The golden run of ``program`` (no arguments unless listed)."""
    return GOLDEN_RUNS.get(program, GoldenRun(program))


@dataclass
class GoldenChecker:
    """Runs a program traced and compares with (or, when updating, rewrites) its golden."""

    tmp: Path
    update: bool

    def trace(self, arch: str, run: GoldenRun, kconfig: Optional[KernelConfig] = None,
              out: Optional[Path] = None) -> Path:
        """A fresh trace of ``run`` on ``arch`` (in a private root)."""
        root = self.tmp / f"root-{arch}-{run.name}"
        root.mkdir(exist_ok=True)
        run.prepare(root)
        out = out or self.tmp / f"{arch}-{run.name}.jsonl"
        if kconfig is None and run.mem:
            kconfig = KernelConfig(mem_bytes=run.mem)
        run_traced(arch, run.program, run.args, out, root, kconfig)
        return out

    def check(self, arch: str, run: GoldenRun, kconfig: Optional[KernelConfig] = None) -> None:
        """Fail the test with the readable diff when the fresh trace differs."""
        fresh = self.trace(arch, run, kconfig)
        problem = check_golden(run.path(TRACES, arch), fresh, self.update and kconfig is None)
        if problem is not None:
            pytest.fail(problem, pytrace=False)

    def compare(self, arch: str, run: GoldenRun, kconfig: KernelConfig) -> Optional[str]:
        """The diff report of a run under ``kconfig`` against the golden (None if equal)."""
        return check_golden(run.path(TRACES, arch), self.trace(arch, run, kconfig))


@pytest.fixture
def golden(tmp_path: Path, update_traces: bool) -> GoldenChecker:
    return GoldenChecker(tmp_path, update_traces)
