"""Interleaved timing of prototype variants against mmuemu's raw and fast modes.

    python -m bench.fillproto.compare [--reps 5] [--arch x86_64] [--pages 4096]
        [--touches 8000000] [VARIANT ...]

A variant is ``mmuemu:MODE`` (``python -m mmuemu run --mode MODE``) or
``proto:OPTS`` with the prototype's options joined by commas, e.g.
``proto:--fill=mmuemu,--chain=3,--block=mmuemu``, optionally prefixed with
environment settings and ``@``: ``LIBUNICORN_PATH=/path/to/build@mmuemu:fast``
(a locally built libunicorn), or ``TREE=/other/checkout@mmuemu:fast`` (that
checkout's mmuemu, for before/after comparisons). Every repetition runs all
variants once, in an order rotated per repetition; each is its own process and
its time is ``emu_start`` only (``--clock cpu``: the emulating thread's CPU
time, steadier on a loaded machine). Prints the median, min and max per variant
and its ratio to the first variant, with the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

DEFAULT = ["mmuemu:raw", "mmuemu:fast", "proto:--mode=raw", "proto:",
           "proto:--block=mmuemu", "proto:--fill=mmuemu,--chain=3,--block=mmuemu"]


def run_one(variant: str, binary: str, args: list[str], clock: str = "wall") -> float:
    envs, _, rest = variant.rpartition("@")
    kind, _, opts = rest.partition(":")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    for kv in filter(None, envs.split(",")):
        k, _, v = kv.partition("=")
        env[k] = v
    cwd = env.pop("TREE", str(REPO))  # another checkout's mmuemu (TREE=/path@mmuemu:fast)
    key = f"{clock}_seconds"
    with tempfile.NamedTemporaryFile(suffix=".json") as tf:
        if kind == "mmuemu":
            if clock == "cpu":
                env["PYTHONPATH"] = cwd  # that tree's mmuemu
                cmd = [sys.executable, str(Path(__file__).with_name("cputime.py")), tf.name,
                       "run", "-q", "--mode", opts, binary, *args]
            else:
                cmd = [sys.executable, "-m", "mmuemu", "run", "-q", "--mode", opts,
                       "--stats", tf.name, binary, *args]
            subprocess.run(cmd, check=True, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
            return float(json.load(open(tf.name))[key])
        cmd = [sys.executable, "-m", "bench.fillproto", "--json",
               *[o for o in opts.split(",") if o], binary, *args]
        p = subprocess.run(cmd, check=True, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        return float(json.loads(p.stderr.strip().splitlines()[-1])[key])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fillproto.compare")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--arch", default="x86_64")
    p.add_argument("--pages", type=int, default=4096)
    p.add_argument("--touches", type=int, default=8_000_000)
    p.add_argument("--program", default="tlb_stress")
    p.add_argument("--args", default=None, help="the guest's arguments (default: tlb_stress "
                                                  "PAGES TOUCHES/PAGES)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: emu_start's wall time; cpu: the emulating thread's CPU time "
                        "(steadier when other work shares the cores)")
    p.add_argument("variants", nargs="*")
    a = p.parse_args(argv)
    variants = a.variants or DEFAULT
    binary = str(REPO / "guest" / "bin" / a.arch / a.program)
    if a.args is not None:
        args = a.args.split()
    else:
        args = [str(a.pages), str(max(1, a.touches // a.pages))] if a.program == "tlb_stress" else []
    times: dict[str, list[float]] = {v: [] for v in variants}
    load0 = os.getloadavg()
    for rep in range(a.reps):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for v in order:
            times[v].append(run_one(v, binary, args, a.clock))
    load1 = os.getloadavg()
    base = statistics.median(times[variants[0]])
    print(f"{a.program} {' '.join(args)} on {a.arch}, {a.reps} reps interleaved, {a.clock} time, "
          f"load {load0[0]:.2f} -> {load1[0]:.2f}")
    for v in variants:
        t = times[v]
        med = statistics.median(t)
        print(f"  {v:58s} {med:7.3f} s  ({min(t):.3f}-{max(t):.3f})  {med / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
