"""Running guests: under mmuemu (CLI or in-process) and natively / under qemu-user."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmuemu.config import RunConfig
from tests.conftest import GUEST_BIN, REPO


@dataclass
class Outcome:
    """What a run printed and how it ended (shell-style status: 128+signal)."""

    stdout: bytes
    stderr: bytes
    status: int
    stats: dict[str, Any] | None = None


def binary(arch: str, name: str) -> str:
    return str(GUEST_BIN / arch / name)


def run_mmuemu(arch: str, name: str, args: list[str], cwd: Path,
               extra: list[str] | None = None, timeout: float = 120) -> Outcome:
    """``python -m mmuemu run`` in ``cwd`` (the sandbox root), with --stats."""
    stats_path = cwd / ".mmuemu-stats.json"
    cmd = [sys.executable, "-m", "mmuemu", "run", "--quiet", "--root", str(cwd),
           "--stats", str(stats_path), *(extra or []), binary(arch, name), *args]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout, env=env)
    stats = None
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        stats_path.unlink()
    return Outcome(p.stdout, p.stderr, p.returncode, stats)


def qemu_aarch64() -> str | None:
    return shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")


def run_native(arch: str, name: str, args: list[str], cwd: Path) -> Outcome | None:
    """The reference run: the host CPU for x86-64, qemu-user for aarch64 (None if absent)."""
    if arch == "x86_64":
        cmd = [binary(arch, name), *args]
    else:
        q = qemu_aarch64()
        if q is None:
            return None
        cmd = [q, binary(arch, name), *args]
    # the same environment mmuemu gives its guests
    env = dict(e.split("=", 1) for e in RunConfig().env)
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=120, env=env)
    status = p.returncode if p.returncode >= 0 else 128 - p.returncode
    return Outcome(p.stdout, p.stderr, status)
