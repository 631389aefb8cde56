"""The tracer derives fields after the event: they must equal what the event saw.

:class:`FaultTracer` records a fault's raw values (PTE word, VMA placement,
handler kind) and names the kind, the page index, the outcome and the pfn
later, when a chunk is written. These tests compute every derived field
eagerly, at the event, next to the tracer, on guests that unmap, split,
mprotect, remap, grow and COW their mappings right after faulting on them;
and they change a VMA and a PTE behind the tracer's back.
"""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, Optional

import pytest

from mmuemu.config import RunConfig
from mmuemu.emu.machine import Machine
from mmuemu.emu.tracing import RECORD, FaultTracer, fault_kind, vma_place
from mmuemu.kernel.mm_types import VM, FaultKind, MmStruct, VmAreaStruct, VmFault
from mmuemu.kernel.mmap import find_vma
from mmuemu.kernel.pgtable import pte_offset_lookup
from mmuemu.kernel.sched import TaskStruct
from mmuemu.trace import EventFilter, TraceEvent, read_all
from mmuemu.trace.schema import KINDS
from mmuemu.trace.writer import open_writer
from tests.conftest import ARCHES
from tests.trace.harness import guest_path

_OUTCOMES = {11: "segv", 7: "sigbus", 9: "oom"}


class EagerTracer(FaultTracer):
    """A FaultTracer that also works out, at each event, what the event's derived
    fields are (the way the tracer did before it deferred them), and drains
    every few events so that placements are remembered across drains."""

    def __init__(self, *a: Any, drain_every: int = 3, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.drain_every = drain_every
        #: seq → the derived fields as seen at the event
        self.expected: dict[int, dict[str, Any]] = {}

    def attach(self, machine: "Machine", cpi: float = 1) -> None:
        super().attach(machine, cpi)
        assert self._hot is not None
        self._hot = (*self._hot[:-1], self.drain_every * RECORD.size)  # the chunk, in bytes

    def _eager_place(self, mm: MmStruct, vma: Optional[VmAreaStruct],
                     addr: int) -> tuple[str, int]:
        if vma is None or not vma.vm_start <= addr < vma.vm_end:
            return "", -1
        return vma_place(mm, vma, addr, self._exe)

    def fault(self, task: TaskStruct, address: int, access: str, vmf: Optional[VmFault],
              vma: Optional[VmAreaStruct], major: bool, signal: int, user: bool) -> None:
        seq = self.n_events
        role, page = self._eager_place(task.mm, vma, address)
        pfn = None
        if signal:
            outcome = _OUTCOMES.get(signal, f"sig{signal}")
        else:
            outcome = "major" if major else "minor"
            pte_pa = vmf.pte_pa if vmf is not None and vmf.pte_pa else \
                pte_offset_lookup(task.mm, address)
            pfn = self._pte_pfn(pte_pa)
        super().fault(task, address, access, vmf, vma, major, signal, user)
        if self.n_events > seq:
            self.expected[seq] = dict(kind=fault_kind(vmf), role=role, page=page,
                                      outcome=outcome, pfn=pfn)

    def mm_op(self, task: TaskStruct, op: str, start: int, length: int, prot: int,
              flags: int, result: int) -> None:
        seq = self.n_events
        if op == "brk":
            role, page = "heap", (result - task.mm.start_brk) >> 12
        else:
            role, page = self._eager_place(task.mm, find_vma(task.mm, start), start)
        super().mm_op(task, op, start, length, prot, flags, result)
        if self.n_events > seq:
            self.expected[seq] = dict(role=role, page=page)

    def tlb_flush(self, mm: MmStruct, kind: str, start: int, end: int) -> None:
        seq = self.n_events
        role, page = self._eager_place(mm, find_vma(mm, start), start) if kind != "mm" \
            else ("", -1)
        super().tlb_flush(mm, kind, start, end)
        if self.n_events > seq:
            self.expected[seq] = dict(role=role, page=page)


def _run(arch: str, program: str, args: list[str], out: Path, root: Path,
         tracer: FaultTracer) -> Machine:
    with tracer:
        m = Machine(guest_path(arch, program), args, rconfig=RunConfig(root=str(root)),
                    tracer=tracer)
        m.run()
    return m


RUNS = [("munmap_hole", ["8"]), ("mprotect_split", ["8"]), ("mremap_grow", ["4"]),
        ("madvise_dontneed", ["4"]), ("cow_fork", ["8"]), ("brk_heap", ["8"]),
        ("stack_grow", ["100"]), ("data_bss", []), ("segv", [])]


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("program,args", RUNS, ids=[r[0] for r in RUNS])
def test_derived_fields_equal_what_the_event_saw(tmp_path: Path, arch: str, program: str,
                                                 args: list[str]) -> None:
    """Every derived field equals its value at the event, and draining every 3
    events gives the same bytes as draining once per chunk."""
    out = tmp_path / "t.mmtrace"
    tracer = EagerTracer(out, argv=args)
    _run(arch, program, args, out, tmp_path, tracer)
    _, events = read_all(out)
    tasks = [e for e in events if e.kind.startswith("task.")]  # nothing derived
    assert len(events) == len(tracer.expected) + len(tasks)
    for ev in events:
        want = tracer.expected.get(ev.seq)
        if want is None:
            assert ev in tasks
            continue
        got = {k: getattr(ev, k) for k in want}
        assert got == want, f"seq {ev.seq} {ev.kind}"
    plain = tmp_path / "plain.mmtrace"  # the same run, drained once per chunk
    _run(arch, program, args, plain, tmp_path, FaultTracer(plain, argv=args))
    assert out.read_bytes() == plain.read_bytes()


@pytest.mark.parametrize("arch", ARCHES)
def test_a_partial_filter_names_faults_at_the_event(tmp_path: Path, arch: str) -> None:
    """With some fault kinds filtered out, kinds are named (and dropped) at once."""
    out = tmp_path / "t.jsonl"
    tracer = EagerTracer(out, events=EventFilter.parse("wp_zero,file,mm"), argv=[])
    _run(arch, "brk_heap", ["8"], out, tmp_path, tracer)
    _, events = read_all(out)
    kinds = {e.kind for e in events}
    assert {"fault.file", "mm.brk"} <= kinds
    assert kinds <= {"fault.file", "fault.wp_zero"} | {k for k in KINDS if k.startswith("mm.")}
    assert [e.seq for e in events] == list(range(len(events))) == sorted(tracer.expected)
    for ev in events:
        assert {k: getattr(ev, k) for k in tracer.expected[ev.seq]} == tracer.expected[ev.seq]


@pytest.fixture
def attached(tmp_path: Path) -> tuple[FaultTracer, Machine, Path]:
    """A tracer attached to an exec'd (not run) anon_touch: events are fed by hand."""
    out = tmp_path / "t.jsonl"
    tracer = FaultTracer(out, argv=["1"])
    m = Machine(guest_path("x86_64", "anon_touch"), ["1"],
                rconfig=RunConfig(root=str(tmp_path)), tracer=tracer)
    return tracer, m, out


def _last(out: Path, n: int) -> list[TraceEvent]:
    return read_all(out)[1][-n:]


def test_a_vma_changed_after_the_fault_keeps_the_event_s_placement(
        attached: tuple[FaultTracer, Machine, Path]) -> None:
    tracer, m, out = attached
    task = m.task
    mm = task.mm
    base = 0x7000_0000_0000
    vma = VmAreaStruct(vm_mm=mm, vm_start=base, vm_end=base + 16 * 4096,
                       vm_flags=VM.READ | VM.WRITE, vm_page_prot=0)
    tracer.fault(task, base + 5 * 4096, "write", None, vma, False, 11, True)
    vma.vm_start = base + 4 * 4096  # split: the same object now starts higher
    tracer.fault(task, base + 5 * 4096, "write", None, vma, False, 11, True)
    vma.vm_flags |= VM.GROWSDOWN  # now a stack: pages count down from vm_end
    tracer.fault(task, base + 5 * 4096, "read", None, vma, False, 11, False)
    vma.vm_start, vma.vm_end = base, base + 4096  # shrunk below the address
    tracer.fault(task, base + 5 * 4096, "read", None, vma, False, 11, False)
    vma.vm_end = 0  # unmapped and scribbled over: changes nothing already recorded
    tracer.close()
    places = [(e.role, e.page, e.kind, e.outcome) for e in _last(out, 4)]
    assert places == [("anon", 5, "fault.bad_area", "segv"), ("anon", 1, "fault.bad_area", "segv"),
                      ("stack", 10, "fault.bad_area", "segv"), ("", -1, "fault.bad_area", "segv")]


def test_the_pfn_is_the_pte_s_at_the_fault(attached: tuple[FaultTracer, Machine, Path]) -> None:
    tracer, m, out = attached
    task = m.task
    fmt = m.kern.fmt
    pa = m.phys.size - 8  # a word nothing else uses
    vma = next(v for v in task.mm.mm_rb if v.vm_flags & VM.GROWSDOWN)
    vmf = VmFault(vma=vma, address=vma.vm_end - 4096, real_address=vma.vm_end - 4096,
                  flags=0, pgoff=0, pte_pa=pa, kind=FaultKind.WP, detail="zero")
    m.phys.write_u64(pa, fmt.pfn_pte(1234, 0) | _present_bits(fmt))
    tracer.fault(task, vmf.address, "write", vmf, vma, True, 0, False)
    m.phys.write_u64(pa, fmt.pfn_pte(99, 0) | _present_bits(fmt))  # a later COW
    tracer.fault(task, vmf.address, "write", vmf, vma, False, 0, False)
    m.phys.write_u64(pa, 0)  # zapped
    tracer.fault(task, vmf.address, "write", vmf, vma, False, 0, False)
    tracer.close()
    got = [(e.kind, e.role, e.page, e.outcome, e.pfn) for e in _last(out, 3)]
    assert got == [("fault.wp_zero", "stack", 0, "major", 1234),
                   ("fault.wp_zero", "stack", 0, "minor", 99),
                   ("fault.wp_zero", "stack", 0, "minor", None)]


def _present_bits(fmt: Any) -> int:
    """The smallest PTE bits that make ``fmt.pte_present`` true."""
    for bit in range(64):
        if fmt.pte_present(1 << bit):
            return 1 << bit
    raise AssertionError("no present bit")


def test_records_hold_nothing_the_collector_tracks(
        attached: tuple[FaultTracer, Machine, Path]) -> None:
    """Waiting records are packed bytes: a full collection never walks them."""
    tracer, m, _ = attached
    task = m.task
    vma = next(v for v in task.mm.mm_rb if v.vm_flags & VM.GROWSDOWN)
    for i in range(50):
        tracer.fault(task, vma.vm_end - 4096, "write", None, vma, False, 11, bool(i & 1))
        m.kern.trace.tlb_flush(task.mm, "page", vma.vm_end - 4096, vma.vm_end)
    gc.collect()
    # 100 packed records in one bytearray, and a handful of numbered strings and
    # placements (not one object per event)
    assert isinstance(tracer._pending, bytearray)
    assert len(tracer._pending) >= 100 * RECORD.size
    assert len(tracer._interner.ids) < 10
    tracer.close()


@pytest.mark.parametrize("suffix", [".jsonl", ".mmtrace"])
def test_write_flat_gives_the_bytes_of_write(tmp_path: Path, suffix: str) -> None:
    """Batches of any size, across chunk boundaries, with values that wrap."""
    from tests.trace.test_format import HEADER, sample_events
    events = sample_events() * 5
    events = [TraceEvent(i, *[getattr(e, f) for f in TraceEvent.__dataclass_fields__][1:])
              for i, e in enumerate(events)]
    events[3].addr = -4096  # wraps to 2**64 - 4096 in both paths
    one, flat = tmp_path / f"one{suffix}", tmp_path / f"flat{suffix}"
    kw = {"chunk_events": 4} if suffix == ".mmtrace" else {}
    with open_writer(one, HEADER, **kw) as w:
        for ev in events:
            w.write(ev)
    from mmuemu.trace.columns import event_row
    with open_writer(flat, HEADER, **kw) as w:
        i = 0
        for size in (1, 6, 2, 0, 9, 100):
            batch: list[Any] = []
            for ev in events[i:i + size]:
                batch += event_row(ev)
            w.write_flat(batch)
            i += size
        assert i >= len(events) and w.n_events == len(events)
    assert one.read_bytes() == flat.read_bytes()
