"""Running one measurement: a child process, its wall time and its rusage.

Each run is its own process, so runs are isolated and the child's peak RSS
is the kernel's ``ru_maxrss`` from :func:`os.wait4`. The whole-process wall
time is measured around fork/exec/wait; mmuemu runs also report the time
spent inside the emulation loop (``wall_seconds`` in the ``--stats`` JSON),
which excludes Python start-up, imports and ELF loading.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

#: the guest's environment for native and qemu runs (mmuemu gives its own)
GUEST_ENV = {"PATH": "/bin:/usr/bin", "HOME": "/", "TERM": "dumb", "LANG": "C"}


@dataclass
class RunRecord:
    """One run of one workload under one variant."""

    workload: str
    arch: str
    variant: str
    rep: int
    argv: list[str]
    ok: bool = False
    status: str = ""                     # ok | failed: ... | unavailable: ...
    exit_code: Optional[int] = None
    process_seconds: Optional[float] = None
    emu_seconds: Optional[float] = None  # inside the emulation loop (mmuemu only)
    maxrss_kib: Optional[int] = None
    host_minflt: Optional[int] = None
    host_majflt: Optional[int] = None
    instructions: Optional[int] = None
    faults: Optional[int] = None
    faults_by_type: dict[str, int] = field(default_factory=dict)
    tlb_fills: Optional[int] = None
    syscalls: Optional[int] = None
    trace_bytes: Optional[int] = None
    stdout: str = ""
    stderr_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _reason(exit_code: int, stderr: str) -> str:
    """A one-line reason for a failed run: the exit status and what the child said."""
    lines = [ln.strip().removeprefix("mmuemu: warning: ")
             for ln in stderr.splitlines() if ln.strip()]
    notes = [ln for ln in lines if "warning" in ln or "unsupported" in ln][:1]
    if lines and lines[-1] not in notes:
        notes.append(lines[-1])
    what = f"exit {exit_code}" if exit_code >= 0 else f"killed by signal {-exit_code}"
    text = f"{what}: {'; '.join(notes)}" if notes else what
    return text if len(text) <= 200 else text[:197] + "..."


def run_process(argv: list[str], cwd: Path, timeout: float,
                env: Optional[dict[str, str]] = None) -> tuple[int, float, Any, str, str, bool]:
    """Run ``argv``; (exit code or -signal, wall seconds, rusage, stdout, stderr, timed_out)."""
    out_path = cwd.parent / f".bench-out-{os.getpid()}-{threading.get_ident()}"
    err_path = cwd.parent / f".bench-err-{os.getpid()}-{threading.get_ident()}"
    timed_out = False
    with open(out_path, "w+b") as out, open(err_path, "w+b") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, env=env,
                                stdin=subprocess.DEVNULL)

        def kill() -> None:
            nonlocal timed_out
            timed_out = True
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, rusage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: do not leave the child running
            timer.cancel()
            kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    os.unlink(out_path)
    os.unlink(err_path)
    return proc.returncode, wall, rusage, stdout, stderr, timed_out


def measure(record: RunRecord, cwd: Path, timeout: float, stats_path: Optional[Path],
            trace_path: Optional[Path], env: Optional[dict[str, str]]) -> RunRecord:
    """Run ``record.argv`` and fill in the record."""
    code, wall, ru, stdout, stderr, timed_out = run_process(record.argv, cwd, timeout, env)
    record.exit_code = code
    record.process_seconds = round(wall, 6)
    record.maxrss_kib = int(ru.ru_maxrss)
    record.host_minflt = int(ru.ru_minflt)
    record.host_majflt = int(ru.ru_majflt)
    record.stdout = stdout[:2000]
    record.stderr_tail = stderr[-2000:]
    if timed_out:
        record.status = f"failed: timed out after {timeout:g} s"
        return record
    if code != 0:
        record.status = f"failed: {_reason(code, stderr)}"
        return record
    if stats_path is not None:
        try:
            stats = json.loads(stats_path.read_text())
        except (OSError, ValueError) as e:
            record.status = f"failed: no --stats JSON ({e})"
            return record
        record.emu_seconds = stats.get("wall_seconds")
        if record.emu_seconds is not None and stats.get("trace_close_seconds"):
            # a trace's last chunk is written after the guest stopped: count it
            record.emu_seconds = round(record.emu_seconds + stats["trace_close_seconds"], 6)
        record.instructions = stats.get("instructions")
        faults = stats.get("faults") or {}
        record.faults = faults.get("total")
        record.faults_by_type = {k: v for k, v in (faults.get("by_type") or {}).items() if v}
        record.tlb_fills = stats.get("tlb_fills")
        record.syscalls = stats.get("syscalls")
        try:
            stats_path.unlink()
        except OSError:
            pass
    if trace_path is not None:
        try:
            record.trace_bytes = trace_path.stat().st_size
            trace_path.unlink()
        except OSError:
            record.status = "failed: the run wrote no trace file"
            return record
    record.ok = True
    record.status = "ok"
    return record
