"""Running a guest with a FaultTracer attached, the way the wired Machine does.

Until ``Machine`` takes a ``tracer`` argument (the wiring patch), a test-only
subclass attaches the tracer at the same points: right before exec (so
exec's faults are traced), around the TLB glue's flush requests, at fork
and at each task's exit, and when the run ends. Once the patch is applied
the real wiring is used.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from mmuemu.config import KernelConfig, RunConfig
from mmuemu.emu.machine import Machine, RunResult
from mmuemu.emu.tracing import FaultTracer
from mmuemu.trace.schema import ALL_EVENTS, EventFilter

REPO = Path(__file__).resolve().parents[2]
GUEST_BIN = REPO / "guest" / "bin"
TRACES = REPO / "traces"

WIRED = "tracer" in inspect.signature(Machine.__init__).parameters


class _TracedMachine(Machine):
    """Machine with the wiring patch's three hooks, for tests only."""

    def __init__(self, *args: Any, tracer: FaultTracer, **kw: Any) -> None:
        self._test_tracer = tracer
        super().__init__(*args, **kw)

    def _stdio(self) -> None:
        super()._stdio()
        tlb = self.tlb
        for kind in ("page", "range", "mm"):
            name = f"flush_tlb_{kind}"
            setattr(tlb, name, _flush_hook(getattr(tlb, name), kind))
        self._test_tracer.attach(self)

    def fork_context(self, child: Any) -> None:
        self._test_tracer.fork(self.task, child)
        super().fork_context(child)

    def _end_task(self, task: Any, code: int, signal: int = 0, message: str = "") -> None:
        super()._end_task(task, code, signal, message)
        self._test_tracer.exit(task, code, signal)

    def run(self) -> RunResult:
        result = super().run()
        self._test_tracer.task_exit(getattr(self, "init", self.task), result)
        return result


def _flush_hook(orig: Any, kind: str) -> Any:
    def hook(mm: Any, *a: int) -> None:
        trace = mm.kernel.trace
        if trace is not None:
            if kind == "page":
                trace.tlb_flush(mm, kind, a[0], a[0] + 4096)
            elif kind == "range":
                trace.tlb_flush(mm, kind, a[0], a[1])
            else:
                trace.tlb_flush(mm, kind, 0, 0)
        orig(mm, *a)
    return hook


def guest_path(arch: str, program: str) -> str:
    """The bundled guest binary."""
    return str(GUEST_BIN / arch / program)


def golden_guest_path(arch: str, program: str) -> str:
    """The guest binary relative to the repository root, as goldens are run:
    argv[0] and AT_EXECFN on the stack move every stack address with their
    length, so a golden must not depend on where the checkout is."""
    return os.path.join("guest", "bin", arch, program)


def run_traced(arch: str, program: str, args: Sequence[str], out: str | os.PathLike[str],
               root: str | os.PathLike[str], kconfig: Optional[KernelConfig] = None,
               events: EventFilter = ALL_EVENTS) -> tuple[RunResult, Machine]:
    """Run ``program`` with ``args`` on ``arch`` and write its trace to ``out``."""
    rconfig = RunConfig(root=os.path.abspath(root))
    out = os.path.abspath(out)
    cwd = os.getcwd()
    os.chdir(REPO)  # golden_guest_path() is relative to the repository root
    try:
        with FaultTracer(out, events, argv=args) as tracer:
            if WIRED:
                m: Machine = Machine(golden_guest_path(arch, program), list(args), kconfig,
                                     rconfig,
                                     tracer=tracer)  # type: ignore[call-arg]
            else:
                m = _TracedMachine(golden_guest_path(arch, program), list(args), kconfig, rconfig,
                                   tracer=tracer)
            result = m.run()
    finally:
        os.chdir(cwd)
    return result, m
