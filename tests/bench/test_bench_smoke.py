"""Smoke test of the benchmark harness (``python -m bench``): it runs, it writes
sane JSON and Markdown, and it reports failures and missing variants honestly.
No timing assertions."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import report, variants  # noqa: E402
from bench.runner import RunRecord, _reason  # noqa: E402


def _bench(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args, "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_smoke_run_writes_json_and_markdown(tmp_path: Path) -> None:
    # --timeout 4: raw mode's fork is very slow; its cow_fork run may hit the limit,
    # which is reported as a failure, never as a figure.
    r = _bench("--tier", "smoke", "--workloads", "compute,cow_fork", "--arch", "x86_64",
               "--variants", "raw,fast,exact", "--reps", "1", "--timeout", "4", out=tmp_path)
    assert r.returncode == 0, r.stderr
    (js,) = tmp_path.glob("*-smoke.json")
    doc = json.loads(js.read_text())
    assert doc["tier"] == "smoke" and doc["reps"] == 1
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    assert doc["machine"]["unicorn"] and doc["machine"]["python"]
    rows = {(s["workload"], s["variant"]): s for s in doc["summary"]}
    for v in ("raw", "fast"):
        s = rows[("compute", v)]
        assert s["status"] == "ok", s
        assert s["arch"] == "x86_64" and s["timing"] == "emulation"
        assert s["seconds"]["median"] > 0 and s["process_seconds"]["median"] > 0
        assert s["instructions"] > 100_000 and s["mips"] > 0
        assert s["maxrss_mib"] > 1
    assert rows[("compute", "raw")]["ratio_to_raw"] == pytest.approx(1.0)
    assert rows[("compute", "fast")]["ratio_to_raw"] > 0
    # exact: either measured or honestly unavailable; never a number without a run
    ex = rows[("compute", "exact")]
    assert ex["status"] == "ok" or ex["status"].startswith(("unavailable", "failed"))
    if ex["status"] != "ok":
        assert ex["seconds"] is None and ex["ratio_to_raw"] is None
    # cow_fork: ok, or failed with a reason and no figures
    for v in ("raw", "fast"):
        s = rows[("cow_fork", v)]
        if s["status"] != "ok":
            assert s["status"].startswith(("failed: exit", "failed: timed out")), s["status"]
            assert s["seconds"] is None and s["ratio_to_raw"] is None
    runs = doc["runs"]
    assert {r["variant"] for r in runs} >= {"raw", "fast"}
    assert all(r["maxrss_kib"] for r in runs)
    md = (tmp_path / "latest.md").read_text()
    assert "| workload | arch | variant |" in md
    assert "`compute 100000`" in md and "### Targets" in md
    assert md == next(tmp_path.glob("*-smoke.md")).read_text()


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    r = _bench("--workloads", "nope", out=tmp_path)
    assert r.returncode == 2 and "unknown workload" in r.stderr
    r = _bench("--variants", "turbo", out=tmp_path)
    assert r.returncode == 2 and "unknown variant" in r.stderr


def test_cli_caps_parses_modes_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    help_text = ("usage: mmuemu run [-h] [--mode {fast,raw,exact}] [--trace FILE]\n"
                 "  --mode {fast,raw,exact}\n  --trace FILE  write a trace\n")

    class Done:
        returncode, stdout, stderr = 0, help_text, ""

    monkeypatch.setattr(variants.subprocess, "run", lambda *a, **k: Done())
    caps = variants.cli_caps()
    assert caps.modes == ("fast", "raw", "exact")
    assert "--trace" in caps.options and "--profile" not in caps.options


def test_spread_targets_and_reason() -> None:
    s = report.Spread.of([3.0, 1.0, 2.0])
    assert (s.median, s.lo, s.hi, s.n) == (2.0, 1.0, 3.0, 3)
    assert report.Spread.of([1.0, 2.0, 3.0, 4.0, 100.0]).median == 3.0
    msg = _reason(1, "mmuemu: warning: unsupported syscall fork (57)\nx: fork: error 38\n")
    assert msg == "exit 1: unsupported syscall fork (57); x: fork: error 38"
    assert _reason(-9, "") == "killed by signal 9"


def test_output_mismatch_marks_run_failed() -> None:
    def rec(variant: str, out: str) -> RunRecord:
        return RunRecord("compute", "x86_64", variant, 0, [], ok=True, status="ok",
                         stdout=out, process_seconds=0.1)

    runs = [rec("raw", "a\n"), rec("native", "a\n"), rec("fast", "b\n")]
    report.check_outputs(runs)
    assert runs[0].ok and runs[1].ok
    assert not runs[2].ok and "differs from the native run" in runs[2].status


def test_paired_ratios_pair_runs_of_the_same_repetition() -> None:
    """The machine slows down in repetition 1: the ratio of medians moves with
    it, the ratio within each repetition does not (both runs were slow)."""
    fast = report.Row("cow_fork", "x86_64", "fast", "ok", seconds_by_rep={0: 1.0, 1: 3.0, 2: 1.1})
    trace = report.Row("cow_fork", "x86_64", "trace", "ok",
                       seconds_by_rep={0: 1.05, 1: 3.15, 2: 1.155, 3: 9.0})
    paired = report.paired_ratios(trace, fast)
    assert paired is not None and paired.n == 3  # repetition 3 has no fast run
    assert paired.lo == pytest.approx(1.05) and paired.hi == pytest.approx(1.05)
    assert report.paired_ratios(trace, report.Row("x", "x86_64", "raw", "ok")) is None


def test_the_ratio_of_minimums_compares_runs_at_the_same_unicorn_speed() -> None:
    """Each run lands at Unicorn's fast speed (1 s for raw, 1.1 s for fast)
    or twice that, independently: the pairs and the medians mix the two
    speeds, the fastest runs do not."""
    raw = _timed_row("raw", {0: 1.0, 1: 2.0, 2: 2.0, 3: 1.0})
    fast = _timed_row("fast", {0: 2.2, 1: 1.1, 2: 2.2, 3: 2.2})
    fast.ratio_to_raw = fast.seconds.median / raw.seconds.median
    [t] = [t for t in report.check_targets([raw, fast]) if t.target.startswith("fast")]
    assert t.of_minimums == pytest.approx(1.1)
    assert t.paired is not None and t.paired.median == pytest.approx(1.65)  # 2.2, 0.55, 1.1, 2.2
    assert report.ratio_of_minimums(fast, report.Row("x", "x86_64", "raw", "ok")) is None


def _timed_row(variant: str, by_rep: dict[int, float]) -> report.Row:
    row = report.Row("cow_fork", "x86_64", variant, "ok", seconds_by_rep=by_rep)
    row.seconds = report.Spread.of(list(by_rep.values()))
    return row


def test_the_verdict_is_the_median_ratio_within_repetitions() -> None:
    """fast costs 1.05x raw. The machine drifts (repetition 2 twice as slow as
    repetition 0, for both runs), and a second slowdown hits fast's run in
    repetition 1 alone. The medians come from different repetitions (raw's
    from 1, fast's from 2): 1.4x. Within each repetition: 1.05, 1.4, 1.05,
    median 1.05x, which is the verdict's."""
    raw = _timed_row("raw", {0: 1.0, 1: 1.5, 2: 2.0})
    fast = _timed_row("fast", {0: 1.05, 1: 2.1, 2: 2.1})
    fast.ratio_to_raw = fast.seconds.median / raw.seconds.median  # as summarise() does
    [t] = [t for t in report.check_targets([raw, fast]) if t.target.startswith("fast")]
    assert t.of_medians == pytest.approx(1.4)
    assert t.paired is not None and t.paired.n == 3
    assert t.value == pytest.approx(1.05) and t.verdict == "pass"
    # two repetitions in common are too few: the ratio of medians decides
    raw2 = _timed_row("raw", {0: 1.0, 1: 1.0})
    fast2 = _timed_row("fast", {0: 1.5, 1: 1.5, 2: 0.9})
    fast2.ratio_to_raw = fast2.seconds.median / raw2.seconds.median
    [t2] = [t for t in report.check_targets([raw2, fast2]) if t.target.startswith("fast")]
    assert t2.paired is not None and t2.paired.n == 2
    assert t2.value == pytest.approx(1.5) and t2.verdict == "FAIL"


def test_variant_order_keeps_neighbours_and_alternates_the_first() -> None:
    from bench.cli import variant_order
    vs = variants.select(None)
    names = [v.name for v in vs]
    # each target's pair is adjacent in the default order
    assert abs(names.index("raw") - names.index("fast")) == 1
    assert abs(names.index("trace") - names.index("fast")) == 1
    assert [v.name for v in variant_order(vs, 0)] == names
    assert [v.name for v in variant_order(vs, 1)] == names[::-1]
    assert [v.name for v in variant_order(vs, 2)] == names


def test_a_second_run_the_same_day_keeps_the_first(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from bench.cli import result_stem
    now = datetime(2026, 12, 4, 5, 33, tzinfo=timezone.utc)
    assert result_stem(tmp_path, now, "full") == "2026-12-04-full"
    (tmp_path / "2026-12-04-full.json").write_text("{}")
    assert result_stem(tmp_path, now, "full") == "2026-12-04-0533-full"
    assert result_stem(tmp_path, now, "quick") == "2026-12-04-quick"


def test_runs_import_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs start in the guest's root; they must still time this checkout's
    code (the one whose commit the report names), not an installed mmuemu."""
    import os

    from bench import variants as variants_mod
    monkeypatch.delenv("PYTHONPATH", raising=False)  # (the test session sets it)
    env = variants_mod.mmuemu_env()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)
    where = variants_mod.mmuemu_location()
    assert Path(where).resolve() == (REPO / "mmuemu" / "__init__.py").resolve()


def test_faultpath_times_every_fault() -> None:
    """cow_fork N faults at least three times per page (first write, the
    child's COW break, the parent's reuse), and the tool times each one."""
    out = subprocess.run([sys.executable, "-m", "bench.faultpath", "--runs", "1", "cow_fork", "32"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    fault = next(line for line in out.stdout.splitlines() if line.strip().startswith("fault "))
    calls = int(fault.split(" calls")[0].split()[-1])
    assert 3 * 32 <= calls < 3 * 32 + 40
    copies = next(line for line in out.stdout.splitlines() if "copy_frame" in line)
    assert int(copies.split(" calls")[0].split()[-1]) >= 32  # one copy per COW break


def test_faultpath_times_the_recorder_of_a_traced_run() -> None:
    """--trace: the recorder is called once per fault, like the fault path."""
    out = subprocess.run([sys.executable, "-m", "bench.faultpath", "--runs", "1", "--trace",
                          "anon_touch", "40"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    calls = {line.split()[0]: int(line.split(" calls")[0].split()[-1])
             for line in out.stdout.splitlines() if " calls" in line}
    assert calls["record"] == calls["fault"] >= 40


def test_instruction_count_run_counts_the_faults() -> None:
    """bench.instructions' inner run (what valgrind watches): anon_touch N takes
    at least N faults, traced or not, with the garbage collector on or off."""
    for extra in ([], ["--trace"], ["--no-gc"]):
        out = subprocess.run([sys.executable, "-m", "bench.instructions", "--one", *extra,
                              "anon_touch", "30"], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        # (the guest's own output comes first: it writes to the real stdout)
        faults = next(line for line in out.stdout.splitlines() if line.startswith("faults="))
        assert int(faults.split("=")[1]) >= 30


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_counts_are_repeatable_and_tracing_costs_some() -> None:
    """Under callgrind the same run gives the same count (hash seed fixed), and
    the traced run executes more instructions in the fault hook than the
    untraced one; the whole emulation loop (``--whole``) holds the fault hook
    and more."""
    from bench.instructions import counted
    a, faults = counted("x86_64", "anon_touch", ["20"], trace=False)
    b, _ = counted("x86_64", "anon_touch", ["20"], trace=False)
    traced, _ = counted("x86_64", "anon_touch", ["20"], trace=True)
    assert faults >= 20
    assert abs(a - b) < a // 1000
    assert traced > a
    whole, whole_faults = counted("x86_64", "anon_touch", ["20"], trace=False, whole=True)
    assert whole_faults == faults and whole > a


def test_trace_split_variants_hand_over_what_they_say() -> None:
    """bench.tracesplit's variants: ``recorder`` records but sends its writer no
    batch, ``pipe`` sends every batch to a writer that writes nothing, ``trace``
    writes every event; the command prints a row for each variant."""
    from bench.tracesplit import one_run
    recorder = one_run("recorder", "x86_64", "anon_touch", ["30"])["writer"]
    pipe = one_run("pipe", "x86_64", "anon_touch", ["30"])["writer"]
    trace = one_run("trace", "x86_64", "anon_touch", ["30"])["writer"]
    assert one_run("plain", "x86_64", "anon_touch", ["30"])["writer"] == {}
    assert recorder["batches"] == 0 and recorder["writer"] == "process"
    assert pipe["batches"] >= 1 and pipe["events"] == 0
    assert trace["events"] >= 30
    out = subprocess.run([sys.executable, "-m", "bench.tracesplit", "--reps", "1",
                          "anon_touch", "30"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line.split()[0] for line in out.stdout.splitlines()[2:]]
    assert rows == ["plain", "recorder", "pipe", "trace"]


def test_ucspeed_times_each_fresh_instance(capsys: pytest.CaptureFixture[str]) -> None:
    """bench.ucspeed runs the loop to its end in each instance (rax holds the
    sum n + ... + 1) and prints one time per instance."""
    from bench import ucspeed
    from unicorn.x86_const import UC_X86_REG_RAX
    _, uc = ucspeed.time_instance(1000)
    assert uc.reg_read(UC_X86_REG_RAX) == 1000 * 1001 // 2
    assert ucspeed.main(["--instances", "3", "--iterations", "1000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1,000 iterations") and "(closed)" in out[0]
    assert len(out[1].split()) == 4  # three times and the unit
    with pytest.raises(SystemExit):
        ucspeed.main(["--instances", "0"])
