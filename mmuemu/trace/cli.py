"""Command-line glue for traces: ``mmuemu trace diff|stats|plot|convert`` and ``run --trace``.

:func:`add_trace_commands` adds the ``trace`` command to the top-level
subparsers; :func:`run_trace_command` runs whichever subcommand was chosen.
:func:`add_run_trace_options` and :func:`tracer_from_args` give ``mmuemu
run`` its ``--trace FILE``, ``--trace-events LIST`` and ``--trace-writer``. Heavy modules are
imported only when a command runs, so ``mmuemu run`` starts as fast as before.

Exit status: ``diff`` 0 equivalent, 1 different; every command 2 on an
error (a bad, truncated or corrupt trace, a missing file), with one line on
stderr naming the file and the line or byte offset.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from mmuemu.emu.tracing import FaultTracer
    from mmuemu.trace.background import BackgroundWriter

EXIT_TROUBLE = 2


def _nonneg(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return v


def add_run_trace_options(run: argparse.ArgumentParser) -> None:
    """``--trace FILE`` and ``--trace-events LIST`` for ``mmuemu run``."""
    run.add_argument("--trace", metavar="FILE",
                     help="write a fault trace: FILE.jsonl (JSON Lines) or FILE.mmtrace "
                          "(columnar binary, for long runs)")
    run.add_argument("--trace-events", metavar="LIST", default="all",
                     help="events to trace: all (default), groups fault,tlb,flush,mm,task,"
                          "reclaim, kinds such as fault.cow or mmap; -NAME removes")
    run.add_argument("--trace-writer", choices=("process", "inline"), default="process",
                     help="format and write the trace in a child process, next to the "
                          "emulator (default), or inline, in the emulator's own process; "
                          "the trace is the same bytes either way")


def start_trace_writer(args: argparse.Namespace) -> Optional["BackgroundWriter"]:
    """The writer process ``--trace`` (with ``--trace-writer process``) will
    use, started now: call this before importing the emulator, so the child
    starts up while the emulator does. None if not needed or not possible
    (the tracer then starts its own, or writes inline)."""
    if not getattr(args, "trace", None) or getattr(args, "trace_writer", "process") != "process":
        return None
    from mmuemu.trace.background import supported
    if not supported():
        return None
    from mmuemu.trace.derive import start_writer
    try:
        return start_writer()
    except OSError:
        return None


def tracer_from_args(args: argparse.Namespace,
                     writer: Optional["BackgroundWriter"] = None) -> Optional["FaultTracer"]:
    """The tracer ``--trace`` asks for, or None; ``writer`` is the writer
    process from :func:`start_trace_writer`, if one was started.

    Raises ValueError with a one-line message for a bad suffix, a bad event
    word or a file that cannot be created (the file is created here, before
    the run).
    """
    if not getattr(args, "trace", None):
        return None
    from mmuemu.emu.tracing import FaultTracer
    from mmuemu.trace.schema import EventFilter
    events = EventFilter.parse(args.trace_events)
    try:
        background = None if getattr(args, "trace_writer", "process") == "process" else False
        return FaultTracer(args.trace, events, argv=list(getattr(args, "guest_args", [])),
                           background=background, writer=writer)
    except OSError as e:
        raise ValueError(f"--trace {args.trace}: {e.strerror}") from None


def add_trace_commands(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Add ``trace diff|stats|plot|convert`` to the top-level subparsers."""
    trace = subparsers.add_parser("trace", help="compare, summarise and plot fault traces",
                                  description="Work with fault traces written by "
                                              "'mmuemu run --trace FILE'.")
    sub = trace.add_subparsers(dest="trace_command", metavar="SUBCOMMAND",
                               parser_class=type(trace))
    sub.required = True
    d = sub.add_parser("diff", help="compare two traces (exit 0 same, 1 different, 2 error)",
                       description="Align two traces on normalised keys (kind, VMA role and "
                                   "page index, access, outcome) and report the differences.")
    d.add_argument("a", metavar="A")
    d.add_argument("b", metavar="B")
    d.add_argument("--cross-arch", action="store_true",
                   help="drop what is architecture-specific by nature (cache maintenance, "
                        "the executable's text and rodata) and say what was dropped")
    d.add_argument("--max-hunks", type=_nonneg, default=5, metavar="N",
                   help="show the first N differing hunks (default 5)")
    d.add_argument("--context", "-U", type=_nonneg, default=3, metavar="N",
                   help="equal events shown around each hunk (default 3)")
    d.add_argument("--quiet", "-q", action="store_true", help="no report, exit status only")
    d.set_defaults(trace_func=cmd_diff)
    s = sub.add_parser("stats", help="counts per kind and per VMA, hottest pages")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--top", type=_nonneg, default=10, metavar="N",
                   help="hottest pages to list (default 10)")
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.set_defaults(trace_func=cmd_stats)
    p = sub.add_parser("plot", help="faults over instruction time and the address-space "
                                    "layout (needs matplotlib)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png")
    p.set_defaults(trace_func=cmd_plot)
    c = sub.add_parser("convert", help="rewrite a trace in the encoding OUT's suffix names")
    c.add_argument("file", metavar="FILE")
    c.add_argument("output", metavar="OUT")
    c.set_defaults(trace_func=cmd_convert)


def run_trace_command(args: argparse.Namespace) -> int:
    """Run the chosen ``trace`` subcommand; errors become one line and exit status 2."""
    func: Callable[[argparse.Namespace], int] = args.trace_func
    return guarded(lambda: func(args))


def guarded(fn: Callable[[], int]) -> int:
    """Run ``fn``; a trace-format error, an OSError or a missing plotter → one line, 2."""
    from mmuemu.trace.plot import PlotUnavailable
    from mmuemu.trace.reader import TraceFormatError
    try:
        return fn()
    except (TraceFormatError, PlotUnavailable, ValueError) as e:
        print(f"mmuemu: error: {e}", file=sys.stderr)
    except OSError as e:
        name = f"{e.filename}: " if e.filename else ""
        print(f"mmuemu: error: {name}{e.strerror or e}", file=sys.stderr)
    return EXIT_TROUBLE


def cmd_diff(args: argparse.Namespace) -> int:
    """``mmuemu trace diff A B``."""
    from mmuemu.trace.diff import EXIT_DIFFERENT, EXIT_SAME, diff_traces, render
    res = diff_traces(args.a, args.b, cross_arch=args.cross_arch)
    if not args.quiet:
        sys.stdout.write(render(res, max_hunks=args.max_hunks, context=args.context))
    return EXIT_SAME if res.equivalent else EXIT_DIFFERENT


def cmd_stats(args: argparse.Namespace) -> int:
    """``mmuemu trace stats FILE``."""
    from mmuemu.trace.stats import compute_stats, render_stats
    st = compute_stats(args.file)
    if args.json:
        json.dump(st.to_json(args.top), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_stats(st, args.top))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``mmuemu trace plot FILE -o OUT.png``."""
    from mmuemu.trace.plot import plot_trace
    n = plot_trace(args.file, args.output)
    print(f"{args.output}: {n:,} faults drawn", file=sys.stderr)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """``mmuemu trace convert FILE OUT``: same events, the other encoding."""
    import os

    from mmuemu.trace.reader import open_trace
    from mmuemu.trace.writer import open_writer, trace_encoding
    trace_encoding(args.output)
    if os.path.abspath(args.file) == os.path.abspath(args.output):
        raise ValueError(f"{args.output}: output and input are the same file")
    with open_trace(args.file) as r:
        w = open_writer(args.output, r.header)
        try:
            for chunk in r.chunks():
                for ev in chunk.events():
                    w.write(ev)
        except BaseException:
            w.close()
            os.unlink(args.output)
            raise
        w.close()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m mmuemu.trace SUBCOMMAND ...``: the trace commands on their own."""
    parser = argparse.ArgumentParser(prog="python -m mmuemu.trace")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_trace_commands(sub)
    args = parser.parse_args(["trace", *(sys.argv[1:] if argv is None else argv)])
    return run_trace_command(args)
