"""trace stats and trace plot."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mmuemu.trace.cli import main as trace_main
from mmuemu.trace.stats import compute_stats
from tests.trace.conftest import GOLDEN_RUNS
from tests.trace.harness import TRACES


def golden_file(arch: str, program: str) -> Path:
    return GOLDEN_RUNS[program].path(TRACES, arch)


def test_stats_counts(capsys: pytest.CaptureFixture[str]) -> None:
    st = compute_stats(golden_file("x86_64", "anon_touch"))
    assert st.by_role["anon"]["fault.anon"] == 16
    assert st.by_kind["mm.mmap"] == 1 and st.by_kind["task.exit"] == 1
    assert st.by_outcome == {"minor": sum(n for k, n in st.by_kind.items()
                                          if k.startswith("fault."))}
    assert st.n_events == sum(st.by_kind.values())
    assert trace_main(["stats", str(golden_file("x86_64", "anon_touch"))]) == 0
    out = capsys.readouterr().out
    assert "events by kind:" in out and "hottest pages" in out and "anon[0]" in out


def test_stats_hottest_pages_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = golden_file("aarch64", "anon_read")  # each page: a zero fault then a wp fault
    st = compute_stats(path)
    hot = st.hottest(3)
    assert [n for _, _, n in hot] == [2, 2, 2] and hot[0][:2] == ("anon", 0)
    assert trace_main(["stats", "--json", "--top", "2", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["hottest_pages"] == [{"role": "anon", "page": 0, "faults": 2},
                                     {"role": "anon", "page": 1, "faults": 2}]
    assert data["by_role"]["anon"]["fault.zero"] == 8


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "f.png"
    assert trace_main(["plot", str(golden_file("x86_64", "brk_heap")), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    assert trace_main(["plot", str(golden_file("x86_64", "hello")), "-o",
                       str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err == "mmuemu: error: trace plot needs matplotlib (pip install matplotlib)\n"
