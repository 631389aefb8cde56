"""Golden traces: a fresh trace compared with the one kept in ``traces/``.

``traces/<arch>/<program>[-<arg>...].jsonl`` holds the trace of one guest
run with the default knobs. A test reruns the program, then
:func:`check_golden` compares the fresh trace with the golden one through
``trace diff`` (default normalisation: addresses, pcs, pfns and instruction
counts may move; kinds, VMA roles, page indices, accesses and outcomes may
not) and returns the readable diff when they differ. With ``update`` the
fresh trace replaces the golden one instead (``pytest --update-traces``).
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mmuemu.trace.diff import diff_traces, render


@dataclass(frozen=True, slots=True)
class GoldenRun:
    """One guest run that has a golden trace."""

    program: str
    args: tuple[str, ...] = ()
    #: files the run expects in its root: (name, size in bytes), filled deterministically
    files: tuple[tuple[str, int], ...] = ()
    #: emulated memory (--mem) in bytes; 0 = the default. A small size makes a
    #: run that reclaims and swaps.
    mem: int = 0

    @property
    def name(self) -> str:
        """``anon_touch-16``: the program and its arguments, safe as a file name
        (``...-mem2M`` when it runs in a smaller memory)."""
        parts = [self.program, *(re.sub(r"[^A-Za-z0-9_.]", "_", a) for a in self.args)]
        if self.mem:
            parts.append(f"mem{self.mem >> 20}M" if not self.mem & 0xFFFFF
                         else f"mem{self.mem >> 10}K")
        return "-".join(parts)

    def path(self, traces: Path, arch: str) -> Path:
        """Where the golden trace for ``arch`` lives."""
        return traces / arch / f"{self.name}.jsonl"

    def prepare(self, root: Path) -> None:
        """Create :attr:`files` in ``root`` (byte i of a file is i * 7 mod 251)."""
        for name, size in self.files:
            (root / name).write_bytes(bytes((i * 7) % 251 for i in range(size)))


def check_golden(golden: Path, fresh: Path, update: bool = False) -> Optional[str]:
    """None when ``fresh`` matches ``golden`` (or was just written there), else the report."""
    if update:
        golden.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fresh, golden)
        return None
    if not golden.exists():
        return (f"no golden trace {os.fspath(golden)}; create it with "
                "'python -m pytest --update-traces'")
    res = diff_traces(golden, fresh)
    if res.equivalent:
        return None
    return (f"the fault trace differs from its golden {os.fspath(golden)} "
            "(if the change is intended: python -m pytest --update-traces)\n" + render(res))
