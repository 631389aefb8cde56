"""The fault tracer's record step in C (``mmuemu.emu._tracerec``) against the
Python method it stands in for.

In fast mode the tracer records faults with the C function and hands it the
cases it does not cover (a cache miss, a fault without a PTE address, a pc
not published by the fill hook). These tests trace the same runs with the C
recorder and with the Python method only and compare the files byte for
byte, under memory pressure (swap-in, reclaim), with fork, files and a
segfault; and check that the C path does take the common case.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmuemu.emu import tracing
from mmuemu.trace.golden import GoldenRun
from tests.conftest import ARCHES
from tests.trace.conftest import GOLDEN_RUNS, PRESSURE_GOLDEN_RUNS, GoldenChecker
from tests.trace.harness import run_traced

pytestmark = pytest.mark.skipif(tracing._tracerec is None,
                                reason="mmuemu.emu._tracerec is not built")

RUNS: list[GoldenRun] = [
    *PRESSURE_GOLDEN_RUNS,
    *(GOLDEN_RUNS[p] for p in ("cow_fork", "mmap_fork", "devzero_shared", "file_shared",
                               "file_cow", "stack_grow", "mprotect_split", "segv",
                               "icache_sync", "madvise_dontneed")),
]


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r.name)
@pytest.mark.parametrize("arch", ARCHES)
def test_c_recorder_writes_the_bytes_of_the_python_method(
        tmp_path: Path, golden: GoldenChecker, arch: str, run: GoldenRun,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with_c = golden.trace(arch, run, out=tmp_path / "c.jsonl")
    monkeypatch.setattr(tracing, "_tracerec", None)
    python_only = golden.trace(arch, run, out=tmp_path / "py.jsonl")
    assert with_c.read_bytes() == python_only.read_bytes()


@pytest.mark.parametrize("arch", ARCHES)
def test_c_recorder_takes_the_common_case(tmp_path: Path, golden: GoldenChecker, arch: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """anon_touch 300: each new page is one anonymous write fault on a VMA and
    an instruction seen before, so after the first few faults every record
    is made in C and the Python method runs only for the first of each."""
    python_calls: list[int] = []
    method = tracing.FaultTracer.fault

    def counting(self: tracing.FaultTracer, *args: Any) -> None:
        python_calls.append(args[1])
        method(self, *args)

    monkeypatch.setattr(tracing.FaultTracer, "fault", counting)
    out = golden.trace(arch, GoldenRun("anon_touch", ("300",)), out=tmp_path / "t.jsonl")
    anon = sum(1 for line in out.read_text().splitlines() if '"fault.anon"' in line)
    assert anon >= 300
    assert 0 < len(python_calls) < 50


@pytest.mark.parametrize("arch", ARCHES)
def test_c_recorder_takes_the_common_flush(tmp_path: Path, golden: GoldenChecker, arch: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """cow_fork 64: every COW fault in the child flushes the old PTE's page
    (flush.tlb_page in the faulting VMA); those are recorded in C."""
    python_calls: list[str] = []
    method = tracing.FaultTracer.tlb_flush

    def counting(self: tracing.FaultTracer, mm: Any, kind: str, start: int, end: int) -> None:
        python_calls.append(kind)
        method(self, mm, kind, start, end)

    monkeypatch.setattr(tracing.FaultTracer, "tlb_flush", counting)
    out = golden.trace(arch, GoldenRun("cow_fork", ("64",)), out=tmp_path / "t.jsonl")
    pages = sum(1 for line in out.read_text().splitlines() if '"flush.tlb_page"' in line)
    assert pages >= 64
    assert python_calls.count("page") < 16


def test_close_puts_the_python_method_back(tmp_path: Path) -> None:
    """After close() the kernel's trace.fault(...) is the Python method again,
    which records nothing more (the C recorder would keep appending)."""
    _, machine = run_traced("x86_64", "anon_touch", ["4"], tmp_path / "t.jsonl", tmp_path)
    tracer = machine.tracer
    assert tracer is not None
    assert "fault" not in tracer.__dict__ and "tlb_flush" not in tracer.__dict__
    tracer.fault(machine.task, 0x1000, "read", None, None, False, 11, True)
    assert tracer.n_events == tracer.stats()["events"]


def test_the_recorder_reads_every_attribute_in_place() -> None:
    """Each attribute the C recorder reads is a __slots__ member of its class
    (what @dataclass(slots=True) makes), so none goes through getattr."""
    import struct

    layout = tracing._tracerec.slot_layout(*tracing.RECORDED_CLASSES)
    offsets = [off for _, off in struct.iter_unpack("Pn", layout)]
    assert len(offsets) == 16 and all(off > 0 for off in offsets)


@pytest.mark.parametrize("arch", ARCHES)
def test_objects_of_other_classes_are_read_through_getattr(
        tmp_path: Path, golden: GoldenChecker, arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a layout for classes the kernel's objects are not, every attribute
    goes through getattr, and the trace is the same bytes."""
    run = GOLDEN_RUNS["cow_fork"]
    in_place = golden.trace(arch, run, out=tmp_path / "slots.jsonl")
    monkeypatch.setattr(tracing, "RECORDED_CLASSES", (object,) * 5)
    through_getattr = golden.trace(arch, run, out=tmp_path / "getattr.jsonl")
    assert in_place.read_bytes() == through_getattr.read_bytes()


def test_dropping_a_cached_instruction_drops_the_recorders_memo(tmp_path: Path) -> None:
    """The C recorder reuses its last record's instruction for the same address
    space and pc; once the tracer drops cached instructions (a flush over
    the pc, an mm syscall) the memo must not answer, or a rewritten
    instruction would be shown stale."""
    _, machine = run_traced("x86_64", "anon_touch", ["4"], tmp_path / "t.jsonl", tmp_path)
    tracer = machine.tracer
    assert tracer is not None
    mm = machine.task.mm
    for drop in (lambda: tracer.tlb_flush(mm, "range", 0x1000, 0x2000),
                 lambda: tracer.tlb_flush(mm, "mm", 0, 0),
                 lambda: tracer.mm_op(machine.task, "munmap", 0x1000, 4096, 0, 0, 0)):
        tracer._disasm[(mm.context_id, 0x1800)] = "nop"
        tracer._insn_memo[:] = [mm.context_id, 0x1800, "nop"] * (len(tracer._insn_memo) // 3)
        drop()
        assert (mm.context_id, 0x1800) not in tracer._disasm
        assert tracer._insn_memo[0::3] == [None] * (len(tracer._insn_memo) // 3)


def test_the_placement_memo_keeps_no_vma_alive(tmp_path: Path) -> None:
    """The C recorders remember the last VMA they placed (checked by the
    identity of its fields' objects). An mm syscall, which may unmap it, and
    close() empty that memo with the tracer's own placements, so no VMA
    outlives its mapping through the tracer."""
    import gc
    import weakref

    _, machine = run_traced("x86_64", "anon_touch", ["4"], tmp_path / "t.jsonl", tmp_path)
    tracer = machine.tracer
    assert tracer is not None
    assert tracer._vma_memo == [None] * len(tracer._vma_memo)  # close() emptied it

    class Unmapped:  # stands for a VMA: anything the memo holds must be let go
        pass

    vma = Unmapped()
    ref = weakref.ref(vma)
    tracer._vma_memo[:2] = [vma, ("anon", 0, False, 0)]
    del vma
    tracer.mm_op(machine.task, "munmap", 0x1000, 4096, 0, 0, 0)
    assert tracer._vma_memo == [None] * len(tracer._vma_memo)
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("arch", ARCHES)
def test_a_flush_over_a_cached_instruction_is_left_to_the_python_method(
        tmp_path: Path, arch: str) -> None:
    """The C flush recorder tests a flushed page's bit in the tracer's bitmap
    of cached instructions' pages instead of scanning the cache. A flush
    over the page of a cached instruction must reach the Python method,
    which drops it (the code there may have changed); a flush of another
    page, which the C recorder takes, keeps it. The recorder is set up to
    take each: the flushed page's VMA is the mm's cached VMA, its placement
    known."""
    from mmuemu.config import KernelConfig, RunConfig
    from mmuemu.emu.machine import Machine
    from mmuemu.kernel.mmap import find_vma
    from tests.trace.harness import guest_path

    tracer = tracing.FaultTracer(tmp_path / "t.mmtrace")
    machine = Machine(guest_path(arch, "anon_touch"), ["4"], KernelConfig(),
                      RunConfig(mode="fast", root=str(tmp_path)), tracer=tracer)
    try:
        flush = machine.kern.tracepoints.tlb_flush
        assert flush is not None and "tlb_flush" in tracer.__dict__  # the C recorder
        mm = machine.task.mm
        pc = machine.exec.entry
        tracer._insn(mm, pc)
        key = (mm.context_id, pc)
        before = tracer.n_events

        def cached_vma(addr: int) -> None:
            vma = find_vma(mm, addr)  # (now the mm's cached VMA)
            assert vma is not None and vma.vm_start <= addr
            tracer._placement(mm, vma, addr)

        stack = (mm.start_stack & ~0xFFF) - 4096
        cached_vma(stack)
        flush(mm, "page", stack, stack + 4096)
        assert key in tracer._disasm and tracer.n_events == before + 1
        page = pc & ~0xFFF
        cached_vma(page)
        flush(mm, "page", page, page + 4096)
        assert key not in tracer._disasm and tracer.n_events == before + 2
    finally:
        tracer.close()
