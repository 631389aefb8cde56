"""Where a fast-mode fault's time goes: timers around the fault path, in process.

    python -m bench.faultpath                        # cow_fork 8192, x86-64, 5 runs
    python -m bench.faultpath --arch aarch64 --prefault anon_touch 20000

Each run builds a :class:`~mmuemu.emu.machine.Machine` and times
``user_addr_fault`` (the whole Python fault path), ``PhysMem.zero_frame``
and ``PhysMem.copy_frame`` (clear_page / copy_page, which carry the host's
first touch of the emulated RAM) with ``time.perf_counter``. ``--prefault``
writes the first 256 MiB of emulated RAM before the run, contents unchanged,
so that the host's first touch is not in the figures. The timers add about
0.2 µs to each timed call. Each run is its own process (module state and the
host's memory start fresh), so runs of two checkouts can be interleaved:
``cd /other/checkout && python -m bench.faultpath`` (each run imports the
mmuemu of its working directory).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
PREFAULT_BYTES = 256 << 20


def _timed(acc: dict[str, list[float]], key: str,
           fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            e = acc.setdefault(key, [0.0, 0])
            e[0] += time.perf_counter() - t
            e[1] += 1
    return wrapper


def one_run(arch: str, program: str, args: list[str], prefault: bool,
            trace: bool = False) -> dict[str, Any]:
    """One run in this process: total emulation seconds and the timed parts."""
    from mmuemu.config import KernelConfig, RunConfig
    from mmuemu.emu import machine
    from mmuemu.emu.tracing import FaultTracer
    from mmuemu.hw import physmem

    acc: dict[str, list[float]] = {}
    machine.user_addr_fault = _timed(acc, "fault", machine.user_addr_fault)  # type: ignore
    physmem.PhysMem.zero_frame = _timed(acc, "zero_frame", physmem.PhysMem.zero_frame)  # type: ignore
    physmem.PhysMem.copy_frame = _timed(acc, "copy_frame", physmem.PhysMem.copy_frame)  # type: ignore
    with tempfile.TemporaryDirectory(prefix="mmuemu-faultpath-") as root:
        tracer = FaultTracer(os.path.join(root, "run.mmtrace"), argv=args) if trace else None
        m = machine.Machine(str(REPO / "guest" / "bin" / arch / program), args,
                            KernelConfig(), RunConfig(mode="fast", root=root), tracer=tracer)
        if tracer is not None:  # the recorder the fault path calls (C, bound at attach)
            tracer.fault = _timed(acc, "record", tracer.fault)  # type: ignore[method-assign]
            m.kern.trace = tracer  # the kernel's probe is bound at attach: bind the timed one
        if prefault:
            buf = m.kern.phys.buf
            n = min(PREFAULT_BYTES, len(buf))
            buf[:n:4096] = buf[:n:4096].copy()  # a write per host page, same bytes
        acc.clear()
        t = time.perf_counter()
        with open(os.devnull, "w") as devnull:
            saved, sys.stdout = sys.stdout, devnull
            try:
                m.run()
            finally:
                sys.stdout = saved
        total = time.perf_counter() - t
        if tracer is not None:
            tracer.close()
    return {"total": total, **{k: {"seconds": v[0], "calls": v[1]} for k, v in acc.items()}}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.faultpath", description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="x86_64", choices=("x86_64", "aarch64"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--prefault", action="store_true",
                    help="write the first 256 MiB of emulated RAM before each run")
    ap.add_argument("--trace", action="store_true",
                    help="record a binary fault trace (the recorder's calls are timed as 'record')")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("program", nargs="?", default="cow_fork")
    ap.add_argument("args", nargs="*", default=None)
    a = ap.parse_args(argv)
    args = a.args if a.args else (["8192"] if a.program == "cow_fork" else [])
    if a.one:
        print(json.dumps(one_run(a.arch, a.program, args, a.prefault, a.trace)))
        return 0
    rows = []
    for _ in range(a.runs):
        cmd = [sys.executable, "-m", "bench.faultpath", "--one", "--arch", a.arch,
               *(["--prefault"] if a.prefault else []), *(["--trace"] if a.trace else []),
               a.program, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
            print(f"bench.faultpath: run failed: {last}", file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{a.program} {' '.join(args)} on {a.arch}, fast mode, {a.runs} runs"
          f"{', RAM pre-touched' if a.prefault else ''}{', traced' if a.trace else ''} (median, min-max):")
    totals = [r["total"] for r in rows]
    print(f"  emulation     {statistics.median(totals):.3f} s ({min(totals):.3f}-{max(totals):.3f})")
    for key in ("fault", "record", "zero_frame", "copy_frame"):
        per = [r[key]["seconds"] / r[key]["calls"] * 1e6 for r in rows if key in r and r[key]["calls"]]
        if not per:
            continue
        calls = rows[0][key]["calls"]
        share = statistics.median(r[key]["seconds"] / r["total"] for r in rows if key in r)
        print(f"  {key:<12} {statistics.median(per):5.1f} us a call ({min(per):.1f}-{max(per):.1f}), "
              f"{calls} calls, {share:.0%} of the run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
