"""The ``mmuemu`` command line.

    mmuemu run [options] BINARY [GUEST ARGS...]

Everything after BINARY goes to the guest, even words that start with '-'.
Errors are one line on stderr and a non-zero exit status: 2 for bad usage
or input, the guest's own status otherwise (128+signal when it dies of one).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

from mmuemu import __version__
from mmuemu._types import Arch
from mmuemu.config import KernelConfig, RunConfig
from mmuemu.trace.background import TraceWriterError
from mmuemu.trace.cli import (
    add_run_trace_options, add_trace_commands, run_trace_command, start_trace_writer,
    tracer_from_args,
)

if TYPE_CHECKING:
    from mmuemu.emu.machine import Machine, RunResult

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"mmuemu: error: {message}\n")


#: the smallest --mem: the loader, page tables and the min watermark need a few hundred pages
MIN_MEM_BYTES = 2 << 20


def parse_size(text: str) -> int:
    """'256M', '1G', '65536', '64K' → bytes."""
    m = re.fullmatch(r"(\d+)([KMGkmg]?)(i?[Bb])?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256M or 1G)")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    return int(m.group(1)) * mult


def _positive_int(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return v


def build_parser() -> _Parser:
    """The argument parser (also used to document the options in the README)."""
    p = _Parser(prog="mmuemu", description="MMU and Linux page-fault emulator for static "
                "x86-64 and arm64 guests.")
    p.add_argument("--version", action="version", version=f"mmuemu {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    run = sub.add_parser("run", help="run a static guest binary through the MMU and fault model",
                         description="Run BINARY; everything after it goes to the guest.")
    run.add_argument("--stats", metavar="FILE", help="write the run's counters as JSON to FILE")
    run.add_argument("--quiet", "-q", action="store_true",
                     help="no counter summary on stderr")
    run.add_argument("--root", metavar="DIR", default=".",
                     help="sandbox directory that is the guest's / and cwd (default: .)")
    run.add_argument("--mode", choices=["fast", "exact", "raw"], default="fast",
                     help="fast: native page walks on soft-TLB fills, Python on faults "
                          "(default); exact: also every access through the profile's "
                          "architected TLBs and walk caches (exact hit/miss counts); "
                          "raw: no MMU model, every page mapped up front (the benchmark floor)")
    run.add_argument("--profile", metavar="NAME|FILE",
                     help="hardware profile: skylake (x86-64 default), neoverse-n1 (arm64 "
                          "default), or a TOML file (copy one from mmuemu/hw/profiles/)")
    run.add_argument("--tlb", metavar="KEY=VALUE", action="append", default=[],
                     help="override a profile field: l1i/l1d/l2=ENTRIESxWAYS (l1d=32x4), or "
                          "any dotted field (tlb.l2.replacement=plru, cost.base_cpi=0.8); "
                          "repeatable")
    run.add_argument("--strict", action="store_true",
                     help="an unsupported syscall stops the run instead of returning -ENOSYS")
    run.add_argument("--arch", choices=[a.label for a in Arch],
                     help="expect this architecture (it is read from the ELF anyway)")
    run.add_argument("--mem", type=parse_size, default=KernelConfig().mem_bytes,
                     metavar="SIZE", help="emulated physical memory (default 1G, at least 2M); "
                                          "zone watermarks follow from it")
    run.add_argument("--swap", type=parse_size, default=None, metavar="SIZE",
                     help="swap device size (default twice --mem; 0 = no swap). The device is "
                          "a temporary host file, removed at the end of the run")
    run.add_argument("--swappiness", type=_positive_int, default=KernelConfig().swappiness,
                     metavar="N", help="vm.swappiness, 0-200 (default 60)")
    run.add_argument("--page-cluster", type=_positive_int, default=KernelConfig().page_cluster,
                     metavar="N", help="vm.page-cluster: swap readahead reads 2**N pages "
                                       "(default 3)")
    run.add_argument("--fault-around-bytes", type=_positive_int, metavar="N",
                     default=KernelConfig().fault_around_bytes,
                     help="fault-around window in bytes (default 65536; 4096 turns it off)")
    run.add_argument("--ra-pages", type=_positive_int, metavar="N",
                     default=KernelConfig().ra_pages, help="readahead window in pages (default 32)")
    run.add_argument("--no-zero-page", action="store_true",
                     help="read faults on anonymous memory allocate a page (no zero page)")
    run.add_argument("--page-cache", choices=["warm", "cold"], default="warm",
                     help="files start in the page cache (warm, default) or not (cold)")
    run.add_argument("--log", metavar="FILE",
                     help="write the kernel log (segfaults of child tasks, /proc/mtest "
                          "output) to FILE instead of stderr")
    run.add_argument("--inspect-at", nargs=3, metavar=("SYSCALL", "COMMAND", "ARG"),
                     help="after the guest's SYSCALL-th system call, run an inspector "
                          "command as if written to /proc/mtest: findpage 0xADDR (in the "
                          "calling task) or findtask PID")
    run.add_argument("--debug-vm", action="store_true",
                     help="check the VMA tree (validate_mm, browse_rb), the anon_vma and "
                          "i_mmap interval trees and every page's mapcount after each syscall")
    run.add_argument("--quantum", type=_positive_int, default=RunConfig().quantum, metavar="N",
                     help="scheduler time slice in guest instructions when several tasks "
                          "run (default 50000)")
    run.add_argument("--soft-tlb-max", type=_positive_int, default=RunConfig().soft_tlb_max,
                     metavar="N", help="let Unicorn's soft TLB grow to about N entries by "
                                       "flushing it when it overflows (default 1048576; "
                                       "256 = never). Changes tlb-fills, never faults")
    run.add_argument("--insn-limit", type=_positive_int, default=0, metavar="N",
                     help="stop the guest after N instructions (exit 124)")
    run.add_argument("--time-limit", type=_seconds, default=0.0, metavar="SECONDS",
                     help="stop the guest after this much wall time (exit 124)")
    add_run_trace_options(run)
    run.add_argument("binary", metavar="BINARY", help="static x86-64 or aarch64 ELF executable")
    run.add_argument("guest_args", nargs=argparse.REMAINDER, metavar="ARGS",
                     help="arguments for the guest")
    add_trace_commands(sub)
    return p


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def summary(stats: dict[str, Any], argv: Sequence[str]) -> str:
    """A perf-stat-like counter summary."""
    f = stats["faults"]
    lines = [f"\n Performance counter stats for '{' '.join(argv)}' "
             f"(mmuemu, {stats['arch']}):\n"]

    def row(value: int, name: str, note: str = "") -> None:
        lines.append(f"{_fmt_count(value):>18}      {name:<22}{('# ' + note) if note else ''}"
                     .rstrip())

    row(stats["instructions"], "instructions")
    row(stats["syscalls"], "syscalls")
    row(f["total"], "page-faults", f"{f['minor']:,} minor, {f['major']:,} major")
    for kind, n in f["by_type"].items():
        if n:
            row(n, f"  {kind}")
    row(stats["tlb_fills"], "tlb-fills", "soft-TLB refills (Unicorn)")
    row(stats["page_walks"], "page-walks", f"{stats['page_walk_mem_refs']:,} table reads")
    tlb = stats.get("tlb")
    if tlb:
        for level in ("l1i", "l1d", "l2"):
            hits, misses = tlb[level]["hits"], tlb[level]["misses"]
            lookups = hits + misses
            row(misses, f"{level}-tlb-misses",
                f"{100 * misses / lookups:.2f}% of {lookups:,} lookups" if lookups else "")
        w = stats["walks"]
        row(w["count"], "tlb-walks",
            f"{w['mem_refs']:,} table reads, {w['pwc_hits']:,} walk-cache hits")
    vm = stats.get("vmstat") or {}
    scanned = vm.get("pgscan_kswapd", 0) + vm.get("pgscan_direct", 0)
    if scanned or vm.get("oom_kill"):
        stolen = vm.get("pgsteal_kswapd", 0) + vm.get("pgsteal_direct", 0)
        row(scanned, "pages-scanned", f"kswapd {vm.get('pgscan_kswapd', 0):,}, direct "
            f"{vm.get('pgscan_direct', 0):,}; {stolen:,} reclaimed")
        row(vm.get("pswpout", 0), "swap-out", "pages written to swap (pswpout)")
        row(vm.get("pswpin", 0), "swap-in", f"pages read from swap (pswpin), "
            f"{vm.get('swap_ra', 0):,} by readahead")
        if vm.get("oom_kill"):
            row(vm["oom_kill"], "oom-kills")
    flushes = stats.get("flushes") or {}
    if flushes:
        row(sum(flushes.values()), "tlb-invalidations",
            ", ".join(f"{n:,} {op}" for op, n in sorted(flushes.items())))
    cache = stats.get("cache")
    if cache:
        kernel = cache["kernel"]
        kinsns = {op: n for op, n in kernel["insns"].items() if n}
        ginsns = {op: n for op, n in cache["guest"]["insns"].items() if n}
        syncs = kernel["calls"]["sync_icache_dcache"]
        hooks = sum(kernel["calls"].values())
        noops = sum(kernel["noop_calls"].values())
        if kinsns or syncs:
            row(sum(kinsns.values()), "cache-maintenance",
                f"kernel, {syncs:,} pages synced for exec: "
                + ", ".join(f"{n:,} {op}" for op, n in kinsns.items()))
        elif hooks:
            row(hooks, "cache-flush-calls", f"flush_cache_*/flush_dcache_page; all no-ops "
                f"on {stats['arch']}" if noops == hooks else "")
        if ginsns:
            row(sum(ginsns.values()), "guest-cache-insns",
                ", ".join(f"{n:,} {op}" for op, n in ginsns.items()))
    if "cycles" in stats:
        note = f"{stats['profile']['name']} profile"
        if stats.get("cycles_estimated"):
            note += "; TLB part estimated (exact needs --mode exact)"
        row(stats["cycles"], "cycles", note)
    lines.append("")
    lines.append(f"{stats['wall_seconds']:>18.6f} seconds time elapsed")
    return "\n".join(lines) + "\n"


def run_frozen(machine: "Machine") -> "RunResult":
    """``machine.run()`` with the objects made before it out of the collector's way.

    What exists when the run starts (the modules, the machine, the kernel
    model's set-up) lives as long as the run. Left in the collector's young
    generations, it is walked again by the first middle-generation
    collections of the run: about 4 ms of a ``cow_fork 8192`` run in two
    collections, against 1 ms in one with the objects frozen
    (``gc.freeze()``; bench/README.md, item 9). They are unfrozen afterwards,
    so a caller that goes on (a test calling ``main``) gets its collector back
    as it was.
    """
    gc.freeze()
    try:
        return machine.run()
    finally:
        gc.unfreeze()


def cmd_run(args: argparse.Namespace) -> int:
    """``mmuemu run``."""
    if args.mem < MIN_MEM_BYTES or args.mem % 4096:
        print("mmuemu: error: --mem must be a multiple of 4K and at least 2M", file=sys.stderr)
        return EXIT_USAGE
    if args.swap is not None and args.swap % 4096:
        print("mmuemu: error: --swap must be a multiple of 4K", file=sys.stderr)
        return EXIT_USAGE
    if args.swappiness > 200:
        print("mmuemu: error: --swappiness must be between 0 and 200", file=sys.stderr)
        return EXIT_USAGE
    if args.page_cluster > 10:
        print("mmuemu: error: --page-cluster must be between 0 and 10", file=sys.stderr)
        return EXIT_USAGE
    if args.fault_around_bytes < 4096 or args.fault_around_bytes & (args.fault_around_bytes - 1):
        print("mmuemu: error: --fault-around-bytes must be a power of two >= 4096",
              file=sys.stderr)
        return EXIT_USAGE
    kconfig = KernelConfig(mem_bytes=args.mem, fault_around_bytes=args.fault_around_bytes,
                           ra_pages=args.ra_pages, use_zero_page=not args.no_zero_page,
                           page_cache=args.page_cache,
                           swap_bytes=-1 if args.swap is None else args.swap,
                           swappiness=args.swappiness, page_cluster=args.page_cluster)
    inspect: tuple[int, str] | None = None
    if args.inspect_at:
        n, cmd, arg = args.inspect_at
        if not n.isdigit() or cmd not in ("findpage", "findtask"):
            print("mmuemu: error: --inspect-at wants SYSCALL_COUNT findpage|findtask ARG",
                  file=sys.stderr)
            return EXIT_USAGE
        inspect = (int(n), f"{cmd}{arg}")
    if args.quantum < 1000:
        print("mmuemu: error: --quantum must be at least 1000 instructions", file=sys.stderr)
        return EXIT_USAGE
    rconfig = RunConfig(mode=args.mode, root=args.root, strict=args.strict,
                        insn_limit=args.insn_limit, time_limit=args.time_limit,
                        quantum=args.quantum, log=args.log or "", inspect_at=inspect,
                        debug_vm=args.debug_vm, soft_tlb_max=args.soft_tlb_max)
    # the trace writer process starts up while the emulator is imported
    writer = start_trace_writer(args)
    from mmuemu.emu.machine import Machine, MachineError

    try:
        tracer = tracer_from_args(args, writer)
    except ValueError as e:
        print(f"mmuemu: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        machine = Machine(args.binary, list(args.guest_args), kconfig, rconfig,
                          expect_arch=Arch(args.arch) if args.arch else None, tracer=tracer,
                          profile=args.profile, tlb_overrides=args.tlb)
        result = run_frozen(machine)
    except MachineError as e:
        print(f"mmuemu: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, MemoryError) as e:
        print(f"mmuemu: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # an emulator bug: one line, the traceback on request
        if os.environ.get("MMUEMU_DEBUG"):
            raise
        where = ""
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        print(f"mmuemu: internal error: {type(e).__name__}: {e}{where} "
              "(set MMUEMU_DEBUG=1 for the traceback)", file=sys.stderr)
        return 70  # EX_SOFTWARE
    finally:
        trace_close = time.perf_counter()
        trace_error = ""
        if tracer is not None:
            try:
                tracer.close()  # the end record, even when the run failed
            except (OSError, TraceWriterError) as e:
                trace_error = f"--trace {tracer.path}: {getattr(e, 'strerror', None) or e}"
                print(f"mmuemu: error: {trace_error}", file=sys.stderr)
        trace_close = time.perf_counter() - trace_close
    if trace_error:
        return EXIT_USAGE
    sys.stdout.flush()
    if result.message:
        print(result.message, file=sys.stderr)
    stats = machine.stats()
    if tracer is not None:
        # the events still waiting are formatted and written here, after the
        # guest stopped: part of what tracing costs (the benchmark adds it)
        stats["trace_close_seconds"] = round(trace_close, 6)
        stats["trace"] = tracer.stats()
    if args.stats:
        try:
            with open(args.stats, "w") as fh:
                json.dump(stats, fh, indent=2, sort_keys=False)
                fh.write("\n")
        except OSError as e:
            print(f"mmuemu: error: --stats {args.stats}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
    if not args.quiet:
        sys.stderr.write(summary(stats, [args.binary, *args.guest_args]))
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmuemu`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "trace":
            return run_trace_command(args)
    except KeyboardInterrupt:
        print("mmuemu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    parser.error(f"unknown command {args.command}")


#: numpy's OpenBLAS starts a thread pool at import whose threads spin for
#: about 80 ms of CPU before they sleep. mmuemu does no linear algebra; on a
#: two-core machine those threads (one in the emulator, one in the trace
#: writer process) take a core from the emulator during a short run.
_SINGLE_THREADED_BLAS = {"OPENBLAS_NUM_THREADS": "1"}


def console_main() -> NoReturn:
    """setuptools console-script wrapper."""
    for name, value in _SINGLE_THREADED_BLAS.items():  # before anything imports numpy
        os.environ.setdefault(name, value)
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(code)
