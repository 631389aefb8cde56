"""The emulator's trace sink on real guests: roles, enrichment, filters, determinism."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmuemu.config import KernelConfig, RunConfig
from mmuemu.emu.machine import Machine
from mmuemu.trace import EventFilter, read_all
from mmuemu.trace.golden import GoldenRun
from tests.conftest import ARCHES
from tests.trace.conftest import GOLDEN_RUNS, GoldenChecker
from tests.trace.harness import REPO, golden_guest_path, guest_path, run_traced


@pytest.mark.parametrize("arch", ARCHES)
def test_exec_user_and_exit_events(tmp_path: Path, arch: str) -> None:
    out = tmp_path / "t.jsonl"
    result, _ = run_traced(arch, "anon_touch", ["4"], out, tmp_path)
    header, events = read_all(out)
    assert header.arch == arch and header.program == "anon_touch" and header.argv == ("4",)
    first = events[0]  # exec writes argv/envp/auxv onto the stack: a kernel fault
    assert (first.kind, first.role, first.user, first.insns, first.pc) == \
        ("fault.anon", "stack", False, 0, None)
    anon = [e for e in events if e.role == "anon" and e.kind == "fault.anon"]
    assert [e.page for e in anon] == [0, 1, 2, 3]
    store = "mov byte ptr" if arch == "x86_64" else "strb"
    for e in anon:
        assert e.user and e.access == "write" and e.outcome == "minor" and e.pfn
        assert e.pc is not None and e.insn.startswith(store)
    assert [e.insns for e in events] == sorted(e.insns for e in events)
    assert all(e.cycles == e.insns for e in events)  # CPI 1 until the cost model lands
    assert events[-1].kind == "task.exit" and events[-1].result == result.exit_code == 0
    mmaps = [e for e in events if e.kind == "mm.mmap"]
    assert len(mmaps) == 1 and (mmaps[0].role, mmaps[0].length) == ("anon", 4 * 4096)


@pytest.mark.parametrize("arch", ARCHES)
def test_roles_of_the_executable_bss_heap_and_stack(tmp_path: Path, arch: str) -> None:
    run_traced(arch, "data_bss", [], tmp_path / "d.jsonl", tmp_path)
    roles = {(e.kind, e.role) for e in read_all(tmp_path / "d.jsonl")[1]}
    assert {("fault.file", "text"), ("fault.file", "data"), ("fault.cow", "data"),
            ("fault.zero", "bss"), ("fault.wp_zero", "bss")} <= roles
    run_traced(arch, "brk_heap", ["8"], tmp_path / "b.jsonl", tmp_path)
    heap = [e for e in read_all(tmp_path / "b.jsonl")[1] if e.role == "heap"]
    assert {e.page for e in heap if e.kind == "fault.anon"} == set(range(8))
    brks = [e for e in heap if e.kind == "mm.brk"]
    assert brks[0].page == 0 and max(e.page for e in brks) == 8
    run_traced(arch, "stack_grow", ["200"], tmp_path / "s.jsonl", tmp_path)
    stack = [e.page for e in read_all(tmp_path / "s.jsonl")[1]
             if e.role == "stack" and e.user]
    assert stack == sorted(stack) and len(stack) > 20  # counted down from vm_end


@pytest.mark.parametrize("arch", ARCHES)
def test_file_shmem_and_segv_events(tmp_path: Path, arch: str) -> None:
    run_traced(arch, "file_read", ["4"], tmp_path / "f.jsonl", tmp_path)
    ev = read_all(tmp_path / "f.jsonl")[1]
    assert any(e.kind == "fault.file" and e.role == "file:file_read.dat" for e in ev)
    run_traced(arch, "devzero_shared", ["2"], tmp_path / "z.jsonl", tmp_path)
    ev = read_all(tmp_path / "z.jsonl")[1]
    assert any(e.kind == "fault.shared" and e.role == "shmem" for e in ev)
    result, _ = run_traced(arch, "segv", [], tmp_path / "v.jsonl", tmp_path)
    ev = read_all(tmp_path / "v.jsonl")[1]
    bad = [e for e in ev if e.kind == "fault.bad_area"]
    assert len(bad) == 1 and bad[0].outcome == "segv" and bad[0].role == "" and bad[0].pc
    assert (ev[-1].kind, ev[-1].outcome, ev[-1].result) == ("task.exit", "signal", 139)
    assert result.exit_code == 139


def test_event_filter_keeps_only_chosen_kinds(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    run_traced("x86_64", "anon_touch", ["4"], out, tmp_path, events=EventFilter.parse("fault"))
    header, events = read_all(out)
    assert header.events[0] == "fault.anon" and "mm.mmap" not in header.events
    assert events and all(e.kind.startswith("fault.") for e in events)
    assert [e.seq for e in events] == list(range(len(events)))


@pytest.mark.parametrize("suffix", [".jsonl", ".mmtrace"])
def test_same_run_twice_gives_identical_bytes(tmp_path: Path, suffix: str) -> None:
    for arch in ARCHES:
        outs = []
        for i in range(2):
            root = tmp_path / f"{arch}{i}"
            root.mkdir()
            outs.append(root / f"t{suffix}")
            run_traced(arch, "file_read", ["6"], outs[-1], root)
        assert outs[0].read_bytes() == outs[1].read_bytes()


@pytest.mark.parametrize("arch", ARCHES)
def test_tracing_does_not_change_what_is_counted(tmp_path: Path, arch: str) -> None:
    cwd = os.getcwd()
    os.chdir(REPO)  # the same argv[0] as run_traced's (it moves stack addresses)
    try:
        plain = Machine(golden_guest_path(arch, "data_bss"), [],
                        rconfig=RunConfig(root=str(tmp_path)))
        plain.run()
    finally:
        os.chdir(cwd)
    _, traced = run_traced(arch, "data_bss", [], tmp_path / "t.mmtrace", tmp_path)
    drop = {"wall_seconds"}
    assert {k: v for k, v in traced.stats().items() if k not in drop} == \
        {k: v for k, v in plain.stats().items() if k not in drop}


def test_unwritable_trace_path_fails_before_the_run(tmp_path: Path) -> None:
    from mmuemu.emu.tracing import FaultTracer
    with pytest.raises(OSError):
        FaultTracer(tmp_path / "no" / "such" / "dir.jsonl")
    with pytest.raises(ValueError, match="unknown trace suffix"):
        FaultTracer(tmp_path / "t.csv")


# --- goldens catch regressions -------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHES)
def test_golden_catches_fault_around_change(golden: GoldenChecker, arch: str) -> None:
    """fault_around_bytes=4096 (fault-around off): the golden comparison fails and the
    report names the file-read faults that appear, page by page."""
    report = golden.compare(arch, GOLDEN_RUNS["file_read"], KernelConfig(fault_around_bytes=4096))
    assert report is not None
    assert "note: config fault_around_bytes: 65536 vs 4096" in report
    for page in range(1, 8):
        assert f"fault.file       file:file_read.dat[{page}]" in report
    assert "+ " in report and "DIFFERENT" in report


def test_golden_catches_zero_page_change(golden: GoldenChecker) -> None:
    """use_zero_page=False: read faults allocate instead of mapping the zero page."""
    report = golden.compare("x86_64", GOLDEN_RUNS["anon_read"], KernelConfig(use_zero_page=False))
    assert report is not None
    assert "fault.zero       anon[0]" in report and "fault.anon       anon[0]" in report
    assert "note: config use_zero_page: True vs False" in report


def test_golden_passes_for_an_unchanged_run(golden: GoldenChecker) -> None:
    assert golden.compare("aarch64", GOLDEN_RUNS["file_read"], KernelConfig()) is None


def test_golden_names_a_missing_golden(tmp_path: Path) -> None:
    from mmuemu.trace.golden import check_golden
    msg = check_golden(tmp_path / "none.jsonl", tmp_path / "x.jsonl")
    assert msg is not None and "--update-traces" in msg
    assert GoldenRun("file_scan", ("a/b", "1")).name == "file_scan-a_b-1"


def test_every_fault_handler_kind_has_a_trace_kind() -> None:
    """The writer side names kinds by FaultKind value (it does not import the
    kernel model): each value, with no detail, is a kind of its own."""
    from mmuemu.kernel.mm_types import FaultKind
    from mmuemu.trace.derive import fault_kind_name
    from mmuemu.trace.schema import KINDS
    names = {k: fault_kind_name(k.value, "") for k in FaultKind}
    assert set(names.values()) <= set(KINDS)
    assert names[FaultKind.WP] == "fault.wp_reuse" and fault_kind_name("wp", "zero") == "fault.wp_zero"
    assert len(set(names.values())) == len(FaultKind)  # none falls back to another's kind
