"""Trace benchmarks (not collected by pytest): write overhead and diff at scale.

    python -m tests.trace.bench_trace overhead        # traced vs untraced runs
    python -m tests.trace.bench_trace diff [N]        # two synthetic N-event traces (1M)

``diff`` runs each ``trace diff`` in a fresh process and reports its wall
time and peak RSS (ru_maxrss of the child).
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from mmuemu.trace.schema import TraceEvent, TraceHeader
from mmuemu.trace.writer import open_writer

#: runs ``mmuemu trace`` in a child and reports the child's own peak RSS on stderr
_CHILD = ("import resource, sys\n"
          "from mmuemu.trace.cli import main\n"
          "rc = main(sys.argv[1:])\n"
          "print('RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
          "sys.exit(rc)\n")


def _best(fn: "object", reps: int) -> float:
    """Least CPU time (process_time: steadier than wall time on a shared machine)."""
    times = []
    for _ in range(reps):
        t = time.process_time()
        fn()  # type: ignore[operator]
        times.append(time.process_time() - t)
    return min(times)


def overhead(reps: int = 7) -> None:
    """Wall time of whole runs (machine construction included) with and without --trace."""
    from mmuemu.config import RunConfig
    from mmuemu.emu.machine import Machine
    from tests.trace.harness import guest_path, run_traced
    cases = [("anon_touch", ["20000"]), ("tlb_stress", ["4096", "8"]), ("file_read", ["2000"])]
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("x86_64", "aarch64"):
            for prog, args in cases:
                def plain() -> None:
                    Machine(guest_path(arch, prog), args, rconfig=RunConfig(root=tmp)).run()

                def traced(suffix: str) -> "object":
                    return lambda: run_traced(arch, prog, args, Path(tmp) / f"t{suffix}", tmp)
                sys.stdout.flush()
                base = _best(plain, reps)
                tj = _best(traced(".jsonl"), reps)
                tb = _best(traced(".mmtrace"), reps)
                n = sum(1 for _ in open(Path(tmp) / "t.jsonl")) - 2
                print(f"{arch:8} {prog} {' '.join(args):10} events {n:>7,}  untraced "
                      f"{base:6.3f}s  jsonl {tj:6.3f}s ({tj / base:4.2f}x)  mmtrace {tb:6.3f}s "
                      f"({tb / base:4.2f}x)", flush=True)


def synthetic(path: Path, n: int, seed: int, base: Optional[list[int]] = None) -> None:
    """A plausible big trace: anon/file faults over many pages, mm ops and flushes."""
    rng = random.Random(seed)
    header = TraceHeader(arch="x86_64", program="synthetic", argv=(str(n),))
    kinds = [("fault.anon", "anon", "write"), ("fault.zero", "heap", "read"),
             ("fault.file", "file:data.bin", "read"), ("fault.cow", "data", "write"),
             ("fault.wp_zero", "heap", "write")]
    with open_writer(path, header) as w:
        insns = 0
        for seq in range(n):
            insns += rng.randint(1, 40)
            r = rng.random()
            page = rng.randrange(1 << 18)
            if r < 0.9:
                kind, role, access = kinds[page % len(kinds)]
                ev = TraceEvent(seq, insns, insns, 1, "x86_64", kind, 0x7F0000000000 + page * 4096,
                                access=access, user=True, role=role, page=page,
                                pc=0x401000 + (page % 64) * 4, insn="mov byte ptr [rax], cl",
                                outcome="minor", pfn=page + 100)
            elif r < 0.97:
                ev = TraceEvent(seq, insns, insns, 1, "x86_64", "flush.tlb_page",
                                0x7F0000000000 + page * 4096, length=4096, role="anon",
                                page=page)
            else:
                ev = TraceEvent(seq, insns, insns, 1, "x86_64", "mm.mmap", 0x7F0000000000,
                                length=4096 * (1 + page % 32), role="anon", page=0, prot=3,
                                flags=0x22, result=0x7F0000000000)
            w.write(ev)


def perturb(src: Path, dst: Path, edits: int, seed: int) -> None:
    """dst = src with ``edits`` events dropped or duplicated at random places."""
    from mmuemu.trace.reader import open_trace
    rng = random.Random(seed)
    with open_trace(src) as r:
        n = r.header
        spots = set(rng.sample(range(1, 900_000), edits))
        with open_writer(dst, n) as w:
            seq = 0
            i = 0
            for chunk in r.chunks():
                for ev in chunk.events():
                    i += 1
                    if i in spots and i % 2:
                        continue  # dropped
                    copies = 2 if i in spots else 1
                    for _ in range(copies):
                        w.write(TraceEvent(seq, *[getattr(ev, f) for f in
                                                  TraceEvent.__dataclass_fields__][1:]))
                        seq += 1


def diff_bench(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        synthetic(d / "a.mmtrace", n, 1)
        perturb(d / "a.mmtrace", d / "b.mmtrace", 1000, 2)
        print(f"generated 2 x {n:,} events in {time.perf_counter() - t:.1f}s; sizes "
              f"{(d / 'a.mmtrace').stat().st_size / 1e6:.1f} MB", flush=True)
        for fmt in (".mmtrace", ".jsonl"):
            if fmt == ".jsonl":
                for name in ("a", "b"):
                    subprocess.run([sys.executable, "-m", "mmuemu.trace", "convert",
                                    str(d / f"{name}.mmtrace"), str(d / f"{name}.jsonl")],
                                   check=True)
                print(f"jsonl size {(d / 'a.jsonl').stat().st_size / 1e6:.1f} MB")
            for args in (["diff", str(d / f"a{fmt}"), str(d / f"b{fmt}")],
                         ["diff", str(d / f"a{fmt}"), str(d / f"a{fmt}")],
                         ["stats", str(d / f"a{fmt}")]):
                t = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", _CHILD, *args],
                                      capture_output=True, text=True)
                wall = time.perf_counter() - t
                rss = [int(x.split()[1]) for x in proc.stderr.splitlines()
                       if x.startswith("RSS_KB")]
                line = [s for s in proc.stdout.splitlines()
                        if s.startswith(("DIFF", "equiv", "  faults"))]
                same = " (A vs A)" if args[0] == "diff" and args[1] == args[-1] else ""
                print(f"{args[0]}{same} {fmt:9} exit {proc.returncode}  {wall:5.2f}s  "
                      f"peak RSS {rss[0] / 1024 if rss else -1:5.0f} MB  "
                      f"{line[0].strip() if line else proc.stderr[-200:]}", flush=True)
        base = subprocess.run([sys.executable, "-c", "import resource, numpy, mmuemu.trace.diff"
                               "; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                              capture_output=True, text=True).stdout.strip()
        print(f"baseline: python + numpy + mmuemu.trace.diff imported: {int(base) / 1024:.0f} MB")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "overhead"
    if what == "overhead":
        overhead()
    else:
        diff_bench(int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
    os._exit(0)
