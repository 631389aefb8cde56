"""``python -m bench``: run the workloads under every variant and write the results.

    python -m bench                 # full run (about 7 minutes here), README table
    python -m bench --quick         # about 2 minutes
    python -m bench --workloads tlb,compute --arch x86_64 --variants raw,fast --reps 3
    python -m bench --profile anon_touch [--arch x86_64] [--mode fast]

Outputs: ``bench/results/<date>-<tier>.json`` (every run and the summary),
``bench/results/<date>-<tier>.md`` and ``bench/results/latest.md`` (the table).
A later run on the same day is ``<date>-<HHMM>-<tier>``: it does not
overwrite the first.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from bench import report, variants as variants_mod, workloads as workloads_mod
from bench.runner import GUEST_ENV, RunRecord, measure
from bench.workloads import ARCHES, REPO

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_REPS = {"smoke": 1, "quick": 3, "full": 7}
#: per-run limit; a cell (workload, arch, variant) that hits it is not rerun
DEFAULT_TIMEOUT = {"smoke": 30.0, "quick": 10.0, "full": 30.0}


def machine_info() -> dict[str, Any]:
    """CPU, cores, kernel, library versions, and the repository commit."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(), "host_arch": platform.machine(),
        "kernel": platform.release(), "python": platform.python_version(),
    }
    try:
        meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0]
        info["mem_total"] = " ".join(meminfo.split()[1:])
    except OSError:
        pass
    for mod in ("unicorn", "capstone", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - reported, not fatal
            info[mod] = "?"
    try:
        import mmuemu
        info["mmuemu"] = mmuemu.__version__
    except Exception:  # pragma: no cover
        info["mmuemu"] = "?"
    info["mmuemu_path"] = variants_mod.mmuemu_location()
    info["host_memory"] = host_memory_settings()
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        # changed code, that is: not the benchmark's earlier results or the docs
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                "--", "mmuemu", "guest", "bench", "setup.py", "pyproject.toml",
                                ":(exclude)bench/results", ":(exclude)*.md"],
                               cwd=REPO, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        if head:
            info["git"] = head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def _selected(path: str) -> Optional[str]:
    """The bracketed choice of a sysfs setting ("always [madvise] never" -> madvise)."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else text


def host_memory_settings() -> dict[str, Any]:
    """What decides the cost of the guest RAM's first touch here, and its spread.

    Emulated physical memory is a numpy array, which numpy backs with
    transparent huge pages where the kernel allows them (madvise mode, unless
    NUMPY_MADVISE_HUGEPAGE=0). On a VM whose balloon reports free pages
    (page_reporting_order 9: 2 MiB blocks), a 2 MiB block may have been
    given back to the host, and its first touch then costs hundreds of host
    faults: 1.0 to 10.5 us a page copied into fresh memory in one minute on
    this machine, against 3.2 to 4.0 us with 4 KiB pages (bench/README.md,
    "Noise"). Recorded so a spread can be read against them.
    """
    out: dict[str, Any] = {
        "thp": _selected("/sys/kernel/mm/transparent_hugepage/enabled"),
        "thp_defrag": _selected("/sys/kernel/mm/transparent_hugepage/defrag"),
        "numpy_madvise_hugepage": os.environ.get("NUMPY_MADVISE_HUGEPAGE", "default"),
    }
    order = _selected("/sys/module/page_reporting/parameters/page_reporting_order")
    out["free_page_reporting_order"] = int(order) if order and order.isdigit() else None
    return out


def result_stem(out_dir: Path, now: _dt.datetime, tier: str) -> str:
    """``<date>-<tier>``, or ``<date>-<HHMM>-<tier>`` when the day's file exists:
    a second run on the same day keeps the first one's results."""
    stem = f"{now:%Y-%m-%d}-{tier}"
    if (out_dir / f"{stem}.json").exists():
        stem = f"{now:%Y-%m-%d-%H%M}-{tier}"
    return stem


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench",
                                description="mmuemu benchmark: each workload on both "
                                "architectures under raw, fast, exact, trace, native and "
                                "qemu, interleaved, several repetitions.")
    tier = p.add_mutually_exclusive_group()
    tier.add_argument("--quick", dest="tier", action="store_const", const="quick",
                      help="smaller workloads, 3 repetitions (about 2 minutes)")
    tier.add_argument("--full", dest="tier", action="store_const", const="full",
                      help=f"full-size workloads, {DEFAULT_REPS['full']} repetitions (the default)")
    tier.add_argument("--tier", choices=workloads_mod.TIERS, help=argparse.SUPPRESS)
    p.add_argument("--reps", type=int, metavar="N",
                   help=f"repetitions per cell (default: {DEFAULT_REPS['quick']} quick, "
                        f"{DEFAULT_REPS['full']} full)")
    p.add_argument("--workloads", metavar="LIST",
                   help="comma list of workload names or kinds (tlb, fault, file, cow, "
                        "compute); default all")
    p.add_argument("--arch", metavar="LIST", default=",".join(ARCHES),
                   help="comma list of architectures (default x86_64,aarch64)")
    p.add_argument("--variants", metavar="LIST",
                   help=f"comma list from {', '.join(variants_mod.BY_NAME)} (default "
                        f"{','.join(variants_mod.DEFAULT_VARIANTS)})")
    p.add_argument("--out", metavar="DIR", default=str(RESULTS),
                   help="where to write the JSON and Markdown (default bench/results)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="per-run time limit; a cell that hits it is not rerun "
                        "(default 10 quick, 30 full)")
    p.add_argument("--no-probe", action="store_true",
                   help="do not probe mmuemu variants with a tiny run before timing")
    p.add_argument("--list", action="store_true",
                   help="list workloads and variants (with availability) and exit")
    p.add_argument("--profile", metavar="WORKLOAD",
                   help="instead of benchmarking, run WORKLOAD once under cProfile and "
                        "print the top functions")
    p.add_argument("--mode", default="fast", help="--profile: the mmuemu mode (default fast)")
    p.add_argument("--top", type=int, default=30, help="--profile: rows to print")
    return p


def _list(wls: list[workloads_mod.Workload], vs: list[variants_mod.Variant], tier: str) -> int:
    avail, caps = variants_mod.detect(vs)
    print(f"workloads ({tier}):")
    for w in wls:
        print(f"  {w.name:<16} {w.label(tier):<34} {w.what}")
    print(f"variants (mmuemu run --mode choices: {', '.join(caps.modes) or '?'}):")
    for v in vs:
        a = avail[v.name]
        state = "available" if a.available else f"unavailable: {a.reason}"
        extra = "; ".join(f"{k}: {r}" for k, r in a.arch_reasons.items())
        print(f"  {v.name:<12} {state}{' (' + extra + ')' if extra else ''}\n"
              f"  {'':<12} {v.what}")
    return 0


def profile(workload: workloads_mod.Workload, arch: str, mode: str, tier: str, top: int) -> int:
    """One mmuemu run under cProfile; prints the top functions by own time."""
    import pstats

    with tempfile.TemporaryDirectory(prefix="mmuemu-bench-prof-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        workload.setup(root, tier)
        prof = Path(tmp) / "run.prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "mmuemu", "run",
               "--mode", mode, "--root", str(root), str(workload.binary(arch)),
               *workload.argv(tier)]
        print("$ " + shlex.join(cmd), file=sys.stderr)
        rc = subprocess.run(cmd, cwd=root).returncode
        if not prof.exists():
            return rc or 1
        stats = pstats.Stats(str(prof))
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        return rc


def variant_order(vs: Sequence[variants_mod.Variant], rep: int) -> list[variants_mod.Variant]:
    """The order of the variants in repetition ``rep``: as given, then reversed.

    Neighbours stay neighbours (fast runs next to raw and next to trace, the
    pairs the targets compare), and what runs first after the previous
    workload alternates, so an effect of the order cancels over two
    repetitions. The machine's slowdowns come in bursts of seconds
    (bench/README.md, "How it measures"), which two runs back to back
    mostly share.
    """
    return list(vs) if rep % 2 == 0 else list(reversed(vs))


def run_bench(args: argparse.Namespace, tier: str, wls: list[workloads_mod.Workload],
              arches: list[str], vs: list[variants_mod.Variant], argv: Sequence[str]) -> int:
    reps = args.reps or DEFAULT_REPS[tier]
    timeout = args.timeout or DEFAULT_TIMEOUT[tier]
    started = time.time()
    load_start = _loadavg()
    avail, caps = variants_mod.detect(vs, probe=not args.no_probe)
    for v in vs:
        if not avail[v.name].available:
            print(f"bench: {v.name}: unavailable: {avail[v.name].reason}", file=sys.stderr)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mmuemu-bench-"))
    root = work / "root"
    scratch = work / "out"
    root.mkdir()
    scratch.mkdir()
    records: list[RunRecord] = []
    timed_out: dict[tuple[str, str, str], str] = {}
    plan = [(w, a) for w in wls for a in arches]
    cells = [(w, a, v) for (w, a) in plan for v in vs if avail[v.name].for_arch(a)[0]]
    total = len(cells) * reps
    done = 0
    try:
        for w in wls:
            w.setup(root, tier)
        mmuemu_env = variants_mod.mmuemu_env()
        for rep in range(reps):
            for w, a in plan:
                for v in variant_order(vs, rep):
                    if not avail[v.name].for_arch(a)[0]:
                        continue
                    run_id = f"r{rep}-{w.name}-{a}-{v.name}"
                    cmd, stats, trace = variants_mod.command(
                        v, a, w.binary(a), w.argv(tier), root, scratch, run_id)
                    rec = RunRecord(workload=w.name, arch=a, variant=v.name, rep=rep, argv=cmd)
                    cell = (w.name, a, v.name)
                    if cell in timed_out:
                        rec.status = f"{timed_out[cell]} (not rerun)"
                    else:
                        env = mmuemu_env if v.kind == "mmuemu" else dict(GUEST_ENV)
                        measure(rec, root, timeout, stats, trace, env)
                        if rec.status.startswith("failed: timed out"):
                            timed_out[cell] = rec.status
                    records.append(rec)
                    done += 1
                    t = rec.emu_seconds if rec.emu_seconds is not None else rec.process_seconds
                    elapsed = time.time() - started
                    eta = elapsed / done * (total - done)
                    print(f"[{done}/{total} {elapsed:4.0f}s eta {eta:4.0f}s] rep {rep + 1} "
                          f"{w.name} {a} {v.name}: "
                          + (f"{t:.3f} s ({rec.process_seconds:.2f} s process)"
                             if rec.ok and t is not None and rec.process_seconds is not None
                             else rec.status), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.check_outputs(records)
    rows = report.summarise(records, [w.name for w in wls], arches, [v.name for v in vs], avail)
    targets = report.check_targets(rows)
    first_touch = report.first_touch_table(rows, tier)
    now = _dt.datetime.now().astimezone()
    meta: dict[str, Any] = {
        "schema": 1,
        "tier": tier,
        "date": now.strftime("%Y-%m-%d %H:%M %Z"),
        "reps": reps,
        "command": "python -m bench " + shlex.join(list(argv)) if argv else "python -m bench",
        "elapsed_seconds": time.time() - started,
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
        "machine": machine_info(),
        "labels": {w.name: w.label(tier) for w in wls},
    }
    meta["machine"]["qemu"] = avail["qemu"].tool if "qemu" in avail else ""
    doc = {
        **meta,
        "timing_note": report.__doc__.split("\n\n", 1)[1].strip(),
        "workloads": [{"name": w.name, "kind": w.kind, "program": w.program,
                       "args": list(w.argv(tier)), "what": w.what} for w in wls],
        "variants": [{"name": v.name, "kind": v.kind, "what": v.what,
                      "available": avail[v.name].available,
                      "reason": avail[v.name].reason,
                      "arch_reasons": avail[v.name].arch_reasons,
                      "tool": avail[v.name].tool} for v in vs],
        "mmuemu_cli": {"modes": list(caps.modes), "error": caps.error},
        "summary": [r.to_json() for r in rows],
        "targets": [t.to_json() for t in targets],
        "first_touch": first_touch,
        "runs": [r.to_json() for r in records],
    }
    stem = result_stem(out_dir, now, tier)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    md = report.markdown(meta, rows, targets, first_touch)
    (out_dir / f"{stem}.md").write_text(md)
    (out_dir / "latest.md").write_text(md)
    print(md)
    print(f"bench: wrote {json_path} and {out_dir / 'latest.md'}", file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    tier = args.tier or "full"
    try:
        wls = workloads_mod.select(args.workloads)
        vs = variants_mod.select(args.variants)
    except ValueError as e:
        parser.error(str(e))
    arches = [a.strip() for a in args.arch.split(",") if a.strip()]
    for a in arches:
        if a not in ARCHES:
            parser.error(f"unknown architecture {a!r} (choose from {', '.join(ARCHES)})")
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.list:
        return _list(wls, vs, tier)
    if args.profile:
        try:
            (w,) = workloads_mod.select(args.profile)[:1]
        except ValueError as e:
            parser.error(str(e))
        return profile(w, arches[0], args.mode, tier, args.top)
    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)  # clean up the scratch directory on kill
    try:
        return run_bench(args, tier, wls, arches, vs, argv)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
