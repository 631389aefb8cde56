"""trace diff: alignment, exit codes, cross-arch equivalence and the real differences."""
from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pytest

from mmuemu.trace import TraceEvent, read_all
from mmuemu.trace import align as al
from mmuemu.trace.cli import main as trace_main
from mmuemu.trace.diff import diff_traces, render
from tests.trace.conftest import GOLDEN_RUNS, GoldenChecker
from tests.trace.harness import TRACES
from tests.trace.test_format import sample_events, write


# --- alignment ----------------------------------------------------------------------------
def _apply(a: list[int], b: list[int], hunks: list[al.Hunk]) -> int:
    """Check the hunks align a with b; return the edit count."""
    i = j = 0
    for h in hunks:
        assert h.a0 - i == h.b0 - j >= 0 and a[i:h.a0] == b[j:h.b0]
        i, j = h.a1, h.b1
    assert a[i:] == b[j:]
    return sum(h.a1 - h.a0 + h.b1 - h.b0 for h in hunks)


def _lcs_cost(a: list[int], b: list[int]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return len(a) + len(b) - 2 * prev[-1]


def _mutate(rng: random.Random, a: list[int], alpha: int, edits: int) -> list[int]:
    b = list(a)
    for _ in range(edits):
        op = rng.random()
        if op < 0.33 and b:
            del b[rng.randrange(len(b))]
        elif op < 0.66:
            b.insert(rng.randint(0, len(b)), rng.randint(0, alpha))
        elif b:
            b[rng.randrange(len(b))] = rng.randint(0, alpha)
    return b


def test_align_is_minimal_on_small_inputs() -> None:
    rng = random.Random(7)
    for _ in range(400):
        alpha = rng.randint(1, 6)
        a = [rng.randint(0, alpha) for _ in range(rng.randint(0, 25))]
        b = _mutate(rng, a, alpha, rng.randint(0, 6)) if rng.random() < 0.6 else \
            [rng.randint(0, alpha) for _ in range(rng.randint(0, 25))]
        hunks = al.align(np.array(a, np.uint64), np.array(b, np.uint64))
        assert _apply(a, b, hunks) == _lcs_cost(a, b)


def test_align_anchored_path_is_a_valid_alignment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(al, "MYERS_MAX_N", 6)
    rng = random.Random(8)
    for _ in range(300):
        alpha = rng.randint(1, 40)
        a = [rng.randint(0, alpha) for _ in range(rng.randint(0, 80))]
        b = _mutate(rng, a, alpha, rng.randint(0, 10))
        _apply(a, b, al.align(np.array(a, np.uint64), np.array(b, np.uint64)))


def test_align_million_keys_fast() -> None:
    rng = np.random.default_rng(0)
    a = (np.arange(1_000_000, dtype=np.uint64) * np.uint64(7)) % np.uint64(40_000)
    ins = np.sort(rng.choice(len(a), 300, replace=False))
    b = np.insert(a, ins, np.uint64(1 << 40))
    b = np.delete(b, np.sort(rng.choice(len(b), 200, replace=False)))
    t = time.perf_counter()
    hunks = al.align(a, b)
    assert time.perf_counter() - t < 10
    assert 0 < sum(h.a1 - h.a0 + h.b1 - h.b0 for h in hunks) <= 500


def test_heaviest_increasing() -> None:
    assert al.heaviest_increasing(np.array([5, 1, 2, 9, 3]), np.array([10, 1, 1, 1, 1])) == [0, 3]
    chain = al.heaviest_increasing(np.array([5, 1, 2, 9, 3]), np.array([1, 1, 1, 1, 1]))
    assert len(chain) == 3 and chain[:2] == [1, 2]


# --- exit codes and report ---------------------------------------------------------------------
def test_diff_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = sample_events()
    write(tmp_path / "a.jsonl", events)
    write(tmp_path / "a.mmtrace", events)
    changed = list(events)
    changed[1] = TraceEvent(1, 10, 12, 1, "x86_64", "fault.cow", 0x401000, access="write",
                            user=True, role="data", page=3, outcome="minor")
    write(tmp_path / "b.jsonl", changed)
    a, a_bin, b = (str(tmp_path / n) for n in ("a.jsonl", "a.mmtrace", "b.jsonl"))
    assert trace_main(["diff", a, a_bin]) == 0
    assert "equivalent: 7 events compared" in capsys.readouterr().out
    assert trace_main(["diff", a, b]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT: 1 hunks; 1 events only in A, 1 only in B" in out
    assert "- A#1" in out and "fault.file       text[0]" in out
    assert "+           B#1" in out and "fault.cow        data[3]" in out
    assert trace_main(["diff", "-q", a, b]) == 1 and capsys.readouterr().out == ""
    assert trace_main(["diff", a, str(tmp_path / "missing.jsonl")]) == 2


def test_diff_ignores_addresses_pcs_pfns_and_counts(tmp_path: Path) -> None:
    events = sample_events()
    moved = [TraceEvent(e.seq, e.insns * 3, e.cycles * 5, e.pid, "aarch64", e.kind,
                        e.addr ^ 0xFFFF000, e.length, e.access, e.user, e.role, e.page,
                        None if e.pc is None else e.pc + 4, "nop", e.outcome,
                        None if e.pfn is None else e.pfn + 1, e.prot, e.flags,
                        e.result if e.result <= 0 or e.kind.startswith(("fault", "task"))
                        else e.result + 4096) for e in events]
    write(tmp_path / "a.jsonl", events)
    write(tmp_path / "b.jsonl", moved)
    assert diff_traces(tmp_path / "a.jsonl", tmp_path / "b.jsonl").equivalent


def test_diff_report_context_and_limits(tmp_path: Path) -> None:
    base = [TraceEvent(i, i, i, 1, "x86_64", "fault.anon", 0x1000 * i, access="write",
                       user=True, role="anon", page=i, outcome="minor") for i in range(200)]
    other = [e for e in base if e.page % 20 != 5]
    write(tmp_path / "a.jsonl", base)
    write(tmp_path / "b.jsonl", [TraceEvent(i, e.insns, e.cycles, 1, "x86_64", e.kind,
                                            e.addr, access="write", user=True, role="anon",
                                            page=e.page, outcome="minor")
                                 for i, e in enumerate(other)])
    res = diff_traces(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert len(res.hunks) == 10 and res.only_a == 10 and res.only_b == 0
    text = render(res, max_hunks=2, context=1)
    assert text.count("@@ A seq") == 2 and "... 8 more hunks" in text
    assert "anon[4]" in text and "anon[5]" in text and "anon[6]" in text
    assert "anon[3]" not in text


# --- real traces: cross-arch -------------------------------------------------------------------
EQUIVALENT = ["anon_touch", "anon_read", "brk_heap", "file_read", "data_bss", "hello",
              "stack_grow", "tlb_stress", "segv"]


@pytest.mark.parametrize("program", EQUIVALENT)
def test_cross_arch_equivalent(program: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = GOLDEN_RUNS[program].name + ".jsonl"
    a, b = str(TRACES / "x86_64" / name), str(TRACES / "aarch64" / name)
    assert trace_main(["diff", "--cross-arch", a, b]) == 0
    out = capsys.readouterr().out
    assert "dropped: flush.icache" in out and "dropped: text/rodata" in out
    # Without the cross-arch normalisation the layouts differ (x86-64 has a separate
    # rodata VMA, arm64 syncs the I-cache): not equivalent.
    if program != "segv":
        assert trace_main(["diff", "-q", a, b]) == 1


def test_cross_arch_real_difference_stack_frames(golden: GoldenChecker) -> None:
    """stack_grow 2000: arm64's frames are larger, so its stack faults more pages
    (7 more with the bundled binaries); every extra event is a stack fault."""
    from mmuemu.trace.golden import GoldenRun
    run = GoldenRun("stack_grow", ("2000",))
    a, b = golden.trace("x86_64", run), golden.trace("aarch64", run)
    res = diff_traces(a, b, cross_arch=True)
    assert not res.equivalent and res.only_a == 0 and res.only_b > 0
    _, events = read_all(b)
    extra = [events[res.b.seq(i)] for h in res.hunks for i in range(h.b0, h.b1)]
    assert {(e.kind, e.role) for e in extra} == {("fault.anon", "stack")}


def test_cross_arch_real_difference_fault_around_phase() -> None:
    """file_read_back 8: fault-around windows are aligned on virtual addresses, and the
    mapping sits at another offset within 64 KiB on each architecture (x86-64's TASK_SIZE
    is 2^47 - 4 KiB and its vDSO area is 8 pages, arm64's 2^48 and 6 pages), so the
    x86-64 mapping straddles two windows: one more file fault, and nothing else differs."""
    name = GOLDEN_RUNS["file_read_back"].name + ".jsonl"
    a, b = TRACES / "x86_64" / name, TRACES / "aarch64" / name
    res = diff_traces(a, b, cross_arch=True)
    assert not res.equivalent
    ev_a, ev_b = read_all(a)[1], read_all(b)[1]
    only = [ev_a[res.a.seq(i)] for h in res.hunks for i in range(h.a0, h.a1)] + \
        [ev_b[res.b.seq(j)] for h in res.hunks for j in range(h.b0, h.b1)]
    assert {(e.kind, e.role) for e in only} == {("fault.file", "file:back.dat")}
    assert "fault.file       file:back.dat[" in render(res)


def test_cross_arch_real_difference_call_pushes() -> None:
    """cow_fork: after fork the stack is copy-on-write; x86-64's call pushes the return
    address (a stack write fault), arm64's bl writes the link register (no fault)."""
    name = GOLDEN_RUNS["cow_fork"].name + ".jsonl"
    a, b = TRACES / "x86_64" / name, TRACES / "aarch64" / name
    res = diff_traces(a, b, cross_arch=True)
    ev_a, ev_b = read_all(a)[1], read_all(b)[1]
    only_a = [ev_a[res.a.seq(i)] for h in res.hunks for i in range(h.a0, h.a1)]
    only_b = [ev_b[res.b.seq(j)] for h in res.hunks for j in range(h.b0, h.b1)]
    assert only_b == [] and only_a
    for e in only_a:
        assert (e.kind, e.role, e.access) == ("fault.wp_reuse", "stack", "write")
        assert e.insn.startswith("call")
