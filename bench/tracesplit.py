"""What a trace costs in wall time, split between the emulator and the writer process.

    python -m bench.tracesplit                          # anon_touch 20000, x86-64, 21 repetitions
    python -m bench.tracesplit --arch aarch64 --reps 15 cow_fork 8192

Four variants of the same fast-mode run, each in its own process, in a
rotating order within every repetition:

* ``plain``: no trace;
* ``recorder``: the tracer records every event (the C recorder, the
  Python calls into it) and a writer process is started, but no batch is
  sent to it: what recording costs the emulator's thread;
* ``pipe``: the batches cross the pipe to the writer process, which reads
  and unpacks them and writes nothing: the pipe and the child's wake-ups;
* ``trace``: the full trace (the writer derives, compresses and writes).

Time is the emulation's wall time plus closing the trace, as in
``python -m bench`` (bench/README.md, "How it measures"). Each variant's
median and minimum are printed with their ratio to ``plain``, and the
median of the ratios within each repetition. The differences between
neighbouring rows are the parts: recorder - plain is the emulator's own
cost, pipe - recorder the hand-over, trace - pipe the writer's work on the
other core. On this VM single runs spread 20-70% (item 5 of the README),
so use many repetitions; ``python -m bench.instructions --whole`` counts
the emulator's side without the noise.
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
from typing import Any, Optional, Sequence

from mmuemu.trace.background import BackgroundWriter
# what the trace writer's own module imports (numpy among them): the writer
# processes of the pipe and recorder variants start up as the real one does,
# before the run, not when the first frame arrives
import mmuemu.trace.derive  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("plain", "recorder", "pipe", "trace")


class DiscardingSink:
    """The ``pipe`` variant's writer: takes each batch and keeps nothing."""

    def __init__(self) -> None:
        self.batches = 0

    def consume(self, batch: Any) -> None:
        self.batches += 1

    def finish(self) -> dict[str, Any]:
        return {"events": 0, "batches": self.batches}

    def abandon(self) -> None:
        pass


def discarding_sink(setup: Any) -> DiscardingSink:
    """The sink factory the ``pipe`` variant's writer process runs."""
    return DiscardingSink()


class UnsentWriter(BackgroundWriter):
    """The ``recorder`` variant's writer: started, sent its setup, then no batch."""

    def send(self, batch: list[Any]) -> None:
        pass


def one_run(variant: str, arch: str, program: str, args: list[str]) -> dict[str, Any]:
    """One run of ``variant`` in this process: emulation and trace-closing
    seconds, and what the writer process reported (``{}`` untraced)."""
    from mmuemu.trace.derive import deriving_sink
    # by this module's name, not __main__'s: the writer process imports the sink factory
    from bench.tracesplit import UnsentWriter, discarding_sink

    writer: Optional[BackgroundWriter] = None
    if variant == "trace":
        writer = BackgroundWriter(deriving_sink)
    elif variant == "pipe":
        writer = BackgroundWriter(discarding_sink)
    elif variant == "recorder":
        writer = UnsentWriter(discarding_sink)
    from mmuemu.config import KernelConfig, RunConfig
    from mmuemu.emu.machine import Machine
    from mmuemu.emu.tracing import FaultTracer

    with tempfile.TemporaryDirectory(prefix="mmuemu-tracesplit-") as root:
        tracer = FaultTracer(os.path.join(root, "run.mmtrace"), argv=args, writer=writer) \
            if writer is not None else None
        m = Machine(str(REPO / "guest" / "bin" / arch / program), args, KernelConfig(),
                    RunConfig(mode="fast", root=root), tracer=tracer)
        result = m.run()
        t = time.perf_counter()
        if tracer is not None:
            tracer.close()
        close = time.perf_counter() - t
    return {"wall": result.wall_seconds, "close": close,
            "writer": tracer.stats() if tracer is not None else {}}


def _quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 4:
        return min(xs), max(xs)
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tracesplit",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="x86_64", choices=("x86_64", "aarch64"))
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("program", nargs="?", default="anon_touch")
    ap.add_argument("args", nargs="*", default=None)
    a = ap.parse_args(argv)
    args = a.args if a.args else (["20000"] if a.program == "anon_touch" else [])
    if a.one:
        figures = one_run(a.one, a.arch, a.program, args)
        with open(a.out, "w") as fh:
            json.dump(figures, fh)
        return 0
    if a.reps < 1:
        print("bench.tracesplit: --reps must be at least 1", file=sys.stderr)
        return 2
    env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
           "PYTHONPATH": str(REPO)}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="mmuemu-tracesplit-") as tmp:
        out = os.path.join(tmp, "run.json")
        for rep in range(a.reps):
            k = rep % len(VARIANTS)
            for variant in VARIANTS[k:] + VARIANTS[:k]:
                cmd = [sys.executable, "-m", "bench.tracesplit", "--one", variant, "--out", out,
                       "--arch", a.arch, a.program, *args]
                run = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, timeout=600)
                if run.returncode != 0:
                    last = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
                    print(f"bench.tracesplit: {variant} run failed: {last}", file=sys.stderr)
                    return 1
                with open(out) as fh:
                    fig = json.load(fh)
                times[variant].append(fig["wall"] + fig["close"])
    plain = times["plain"]
    print(f"{a.program} {' '.join(args)} on {a.arch}, fast mode, {a.reps} repetitions: "
          "emulation + closing the trace, seconds")
    print(f"  {'variant':<9} {'median':>7} {'min':>7} {'q1':>7} {'q3':>7}   "
          f"{'x plain (median / min / paired)':>32}")
    for v in VARIANTS:
        xs = times[v]
        q1, q3 = _quartiles(xs)
        paired = statistics.median(x / p for x, p in zip(xs, plain))
        print(f"  {v:<9} {statistics.median(xs):7.4f} {min(xs):7.4f} {q1:7.4f} {q3:7.4f}   "
              f"{statistics.median(xs) / statistics.median(plain):10.3f} "
              f"{min(xs) / min(plain):6.3f} {paired:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
