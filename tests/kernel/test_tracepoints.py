"""The kernel's tracepoints: setting ``kern.trace`` binds the probes the fault
and flush paths call, and the kernel reports through them."""
from __future__ import annotations

from typing import Any, Optional

from mmuemu.kernel.tracepoints import Tracepoints


class RecordingSink:
    """A sink that keeps what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def fault(self, *args: Any) -> None:
        self.calls.append(("fault", *args))

    def mm_op(self, *args: Any) -> None:
        self.calls.append(("mm_op", *args))

    def tlb_flush(self, mm: Any, kind: str, start: int, end: int) -> None:
        self.calls.append(("tlb_flush", kind, start, end))


def test_attaching_binds_both_probes_and_detaching_clears_them() -> None:
    tp = Tracepoints()
    assert tp.sink is None and tp.page_fault is None and tp.tlb_flush is None
    sink = RecordingSink()
    tp.attach(sink)
    assert tp.sink is sink
    assert tp.page_fault is not None and tp.tlb_flush is not None
    tp.page_fault("task", 0x1000, "read", None, None, False, 0, True)
    tp.tlb_flush(None, "page", 0x1000, 0x2000)
    assert sink.calls == [("fault", "task", 0x1000, "read", None, None, False, 0, True),
                          ("tlb_flush", "page", 0x1000, 0x2000)]
    tp.attach(None)
    assert tp.sink is None and tp.page_fault is None and tp.tlb_flush is None


def test_a_probe_is_the_sinks_method_when_attached_until_attached_again() -> None:
    """The emulator's tracer puts a C recorder in place of its methods and
    takes it away at close; each time it attaches itself again, and the
    probes follow. Between those, a probe keeps what it was bound to."""
    tp = Tracepoints()
    sink = RecordingSink()
    seen: list[Optional[str]] = []
    sink.fault = lambda *a: seen.append("replacement")  # type: ignore[method-assign]
    tp.attach(sink)
    del sink.fault  # the class's method again, but the probe was bound before
    assert tp.page_fault is not None
    tp.page_fault()
    assert seen == ["replacement"] and sink.calls == []
    tp.attach(sink)
    tp.page_fault("t", 1, "read", None, None, False, 0, True)
    assert seen == ["replacement"] and sink.calls[0][0] == "fault"


def test_the_kernel_reports_faults_through_the_probe(tmp_path: Any) -> None:
    """A traced run of anon_touch: every page is one anonymous fault, reported
    through the fault probe (a write); detached, the probes are gone."""
    from mmuemu.config import KernelConfig, RunConfig
    from mmuemu.emu.machine import Machine
    from tests.trace.harness import guest_path

    machine = Machine(guest_path("x86_64", "anon_touch"), ["16"], KernelConfig(),
                      RunConfig(mode="fast", root=str(tmp_path)))
    sink = RecordingSink()
    machine.kern.trace = sink
    assert machine.kern.trace is sink and machine.kern.tracepoints.sink is sink
    machine.run()
    faults = [c for c in sink.calls if c[0] == "fault"]
    assert len(faults) >= 16  # the 16 pages, and the program's own first touches
    assert all(c[7] == 0 for c in faults)  # (task, address, access, vmf, vma, major, signal, user)
    assert sum(1 for c in faults if c[3] == "write") >= 16
    machine.kern.trace = None
    assert machine.kern.tracepoints.page_fault is None
    assert machine.kern.tracepoints.tlb_flush is None
