"""From run records to figures: medians, spreads, ratios, targets, Markdown.

Timing used for every ratio: the emulation wall time of mmuemu runs (time
inside the Unicorn loop, from ``--stats``), and the whole-process wall time
for native and qemu runs (they have no separate start-up phase to subtract;
their start-up is a few milliseconds).
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from bench.runner import RunRecord
from bench.variants import BY_NAME as VARIANTS_BY_NAME
from bench.variants import Availability
from bench.workloads import BY_NAME as WORKLOADS_BY_NAME

#: (target name, variant, over, limit, workload kinds it applies to, excluded kinds)
TARGETS = (
    ("fast <= 1.3x raw (all but fault throughput)", "fast", "raw", 1.3, None, ("fault",)),
    ("exact <= 4x raw (TLB stressor)", "exact", "raw", 4.0, ("tlb",), ()),
    ("trace <= 1.1x fast (same run, no trace)", "trace", "fast", 1.1, None, ()),
)


@dataclass
class Spread:
    median: float
    lo: float
    hi: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, xs: list[float]) -> "Spread":
        xs = sorted(xs)
        if len(xs) >= 4:
            q = statistics.quantiles(xs, n=4, method="inclusive")
            q1, q3 = q[0], q[2]
        else:
            q1, q3 = xs[0], xs[-1]
        return cls(statistics.median(xs), xs[0], xs[-1], q1, q3, len(xs))


@dataclass
class Row:
    """One (workload, arch, variant): the figures over its repetitions."""

    workload: str
    arch: str
    variant: str
    status: str                              # ok | failed: ... | unavailable: ...
    reps_ok: int = 0
    reps: int = 0
    timing: str = ""                         # emulation | process
    seconds: Optional[Spread] = None         # the timing used for ratios
    process_seconds: Optional[Spread] = None
    ratio_to_raw: Optional[float] = None
    ratio_to_base: Optional[float] = None    # trace over fast
    base: Optional[str] = None
    instructions: Optional[int] = None
    instructions_source: str = ""            # this run | <variant> run
    mips: Optional[float] = None
    faults: Optional[int] = None
    faults_source: str = ""                  # model | host kernel
    faults_per_second: Optional[float] = None
    us_per_fault: Optional[float] = None
    tlb_fills: Optional[int] = None
    maxrss_mib: Optional[float] = None
    trace_bytes: Optional[int] = None
    notes: list[str] = field(default_factory=list)
    #: the timing of each successful repetition, by repetition number
    seconds_by_rep: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _timing_of(r: RunRecord) -> Optional[float]:
    return r.emu_seconds if r.emu_seconds is not None else r.process_seconds


def check_outputs(records: list[RunRecord]) -> None:
    """Mark a run failed if its guest stdout differs from the reference run's.

    The reference for a (workload, arch) is the first successful run of the
    first variant in native, qemu, raw, fast, ... order.
    """
    order = ["native", "qemu", "raw", "fast"]
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.workload, r.arch), []).append(r)
    for runs in groups.values():
        ok = [r for r in runs if r.ok]
        if not ok:
            continue
        ok.sort(key=lambda r: (order.index(r.variant) if r.variant in order else len(order),
                               r.rep))
        ref = ok[0]
        for r in ok[1:]:
            if r.stdout != ref.stdout:
                r.ok = False
                first = (r.stdout.strip().splitlines() or ["(nothing)"])[0][:80]
                r.status = (f"failed: guest output differs from the {ref.variant} run "
                            f"(got {first!r})")


def summarise(records: list[RunRecord], workloads: list[str], arches: list[str],
              variants: list[str], avail: dict[str, Availability]) -> list[Row]:
    rows: list[Row] = []
    index: dict[tuple[str, str, str], Row] = {}
    for w in workloads:
        for a in arches:
            for v in variants:
                ok_here, why = avail[v].for_arch(a)
                runs = [r for r in records if (r.workload, r.arch, r.variant) == (w, a, v)]
                row = Row(w, a, v, status="", reps=len(runs))
                index[(w, a, v)] = row
                rows.append(row)
                if not ok_here:
                    row.status = f"unavailable: {why}"
                    continue
                good = [r for r in runs if r.ok]
                row.reps_ok = len(good)
                if not good:
                    bad = [r.status for r in runs if not r.ok] or ["failed: not run"]
                    row.status = bad[0]
                    continue
                row.status = "ok"
                if len(good) < len(runs):
                    why = next(r.status for r in runs if not r.ok).removeprefix("failed: ")
                    why = why if len(why) <= 90 else why[:87] + "..."
                    row.notes.append(f"{len(runs) - len(good)} of {len(runs)} reps failed "
                                     f"({why})")
                row.timing = "emulation" if good[0].emu_seconds is not None else "process"
                row.seconds_by_rep = {r.rep: t for r in good if (t := _timing_of(r)) is not None}
                row.seconds = Spread.of(list(row.seconds_by_rep.values()))
                row.process_seconds = Spread.of([r.process_seconds for r in good
                                                 if r.process_seconds is not None])
                row.maxrss_mib = statistics.median(r.maxrss_kib for r in good
                                                   if r.maxrss_kib is not None) / 1024
                if good[0].instructions is not None:
                    row.instructions = good[0].instructions
                    row.instructions_source = "this run"
                if good[0].faults is not None:
                    row.faults = good[0].faults
                    row.faults_source = "model"
                elif VARIANTS_BY_NAME[v].kind == "native":
                    row.faults = int(statistics.median((r.host_minflt or 0) + (r.host_majflt or 0)
                                                       for r in good))
                    row.faults_source = "host kernel"
                if good[0].tlb_fills is not None:
                    row.tlb_fills = good[0].tlb_fills
                if good[0].trace_bytes is not None:
                    row.trace_bytes = int(statistics.median(r.trace_bytes or 0 for r in good))
    # instruction counts for native/qemu come from an mmuemu run of the same program
    for row in rows:
        if row.status != "ok":
            continue
        if row.instructions is None:
            for v in ("raw", "fast", "exact", "trace"):
                other = index.get((row.workload, row.arch, v))
                if other is not None and other.status == "ok" and other.instructions:
                    row.instructions = other.instructions
                    row.instructions_source = f"{v} run"
                    break
        assert row.seconds is not None
        t = row.seconds.median
        if row.instructions is not None and t > 0:
            row.mips = row.instructions / t / 1e6
        if row.faults is not None and t > 0 and row.variant != "raw":
            # raw has no fault model: its one or two "faults" are the loader's
            row.faults_per_second = row.faults / t
            if row.faults:
                row.us_per_fault = t / row.faults * 1e6
        raw = index.get((row.workload, row.arch, "raw"))
        if raw is not None and raw.status == "ok" and raw.seconds and raw.seconds.median > 0:
            row.ratio_to_raw = t / raw.seconds.median
        base = VARIANTS_BY_NAME[row.variant].base
        if base:
            row.base = base
            b = index.get((row.workload, row.arch, base))
            if b is not None and b.status == "ok" and b.seconds and b.seconds.median > 0:
                row.ratio_to_base = t / b.seconds.median
    return rows


@dataclass
class TargetResult:
    target: str
    workload: str
    arch: str
    #: what the verdict compares with the limit: the median of the per-repetition
    #: ratios (``paired``) where at least MIN_PAIRED repetitions have both runs,
    #: else the ratio of the medians
    value: Optional[float]
    limit: float
    verdict: str          # pass | FAIL | n/a: ...
    #: the ratio within each repetition (the two runs back to back): median, min, max
    paired: Optional[Spread] = None
    #: the median time of the variant over the median time of the one it is compared with
    of_medians: Optional[float] = None
    #: the variant's fastest run over the fastest run of the one it is compared with:
    #: Unicorn runs the same code at different speeds from instance to instance (bench
    #: README, item 5), and the fastest runs of each are the ones at the same speed
    of_minimums: Optional[float] = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_targets(rows: list[Row]) -> list[TargetResult]:
    """Each target on each cell it applies to, with its verdict.

    The verdict's ratio is the median of the ratios within each repetition:
    the two runs compared run back to back (bench.cli.variant_order), so a
    slowdown of the machine that lasts a few seconds, the common kind here,
    slows both and leaves their ratio; the ratio of the medians takes one
    variant's median from one burst and the other's from another. The ratio
    of the medians is reported next to it.
    """
    by = {(r.workload, r.arch, r.variant): r for r in rows}
    keys = sorted({(r.workload, r.arch) for r in rows},
                  key=lambda k: ([r.workload for r in rows].index(k[0]), k[1]))
    out: list[TargetResult] = []
    for name, variant, over, limit, kinds, excluded in TARGETS:
        for w, a in keys:
            kind = WORKLOADS_BY_NAME[w].kind if w in WORKLOADS_BY_NAME else ""
            if (kinds is not None and kind not in kinds) or kind in excluded:
                continue
            row, base = by.get((w, a, variant)), by.get((w, a, over))
            if row is None or base is None:
                continue
            if row.status != "ok" or base.status != "ok":
                why = row.status if row.status != "ok" else f"{over} {base.status}"
                out.append(TargetResult(name, w, a, None, limit, f"n/a: {why}"))
                continue
            of_medians = row.ratio_to_raw if over == "raw" else row.ratio_to_base
            assert of_medians is not None
            paired = paired_ratios(row, base)
            value = paired.median if paired is not None and paired.n >= MIN_PAIRED \
                else of_medians
            out.append(TargetResult(name, w, a, value, limit,
                                    "pass" if value <= limit else "FAIL", paired, of_medians,
                                    ratio_of_minimums(row, base)))
    return out


#: repetitions with both runs that make the per-repetition median the verdict
MIN_PAIRED = 3


def paired_ratios(row: Row, over: Row) -> Optional[Spread]:
    """The ratio ``row / over`` within each repetition both completed.

    The variants of a repetition run back to back, so a ratio within one
    shares the machine's state of the moment; their spread shows how much
    of a difference between medians is the machine's drift. None without
    a common repetition.
    """
    ratios = [t / over.seconds_by_rep[rep] for rep, t in sorted(row.seconds_by_rep.items())
              if over.seconds_by_rep.get(rep, 0) > 0]
    return Spread.of(ratios) if ratios else None


def ratio_of_minimums(row: Row, over: Row) -> Optional[float]:
    """``row``'s fastest run over ``over``'s fastest (None without runs)."""
    mine = [t for t in row.seconds_by_rep.values() if t > 0]
    theirs = [t for t in over.seconds_by_rep.values() if t > 0]
    return min(mine) / min(theirs) if mine and theirs else None


def collapse_targets(targets: list[TargetResult]) -> list[TargetResult]:
    """One row for a target whose every cell is n/a for the same reason."""
    out: list[TargetResult] = []
    names = list(dict.fromkeys(t.target for t in targets))
    for name in names:
        cells = [t for t in targets if t.target == name]
        verdicts = {t.verdict for t in cells}
        if len(verdicts) == 1 and cells[0].verdict.startswith("n/a"):
            out.append(TargetResult(name, "all", "all", None, cells[0].limit, cells[0].verdict))
        else:
            out.extend(cells)
    return out


# --- Markdown -------------------------------------------------------------------------

def _s(x: Optional[float], digits: int = 3) -> str:
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _count(x: Optional[float]) -> str:
    if x is None:
        return "—"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e4:
        return f"{x / 1e3:.0f} k"
    return f"{x:,.0f}"


def _qemu_short(tool: str) -> str:
    import re

    versions = sorted(set(re.findall(r"version ([\w.+~-]+)", tool)))
    return f"qemu-user {', '.join(versions)}" if versions else "no qemu-user"


def _esc(text: str) -> str:
    return text.replace("|", "\\|")


def compact_table(rows: list[Row], labels: dict[str, str]) -> list[str]:
    """One line per (workload, arch): each variant's median time and its ratio to raw."""
    variants = list(dict.fromkeys(r.variant for r in rows
                                  if not r.status.startswith("unavailable")))
    out = ["| workload | arch | " + " | ".join(variants) + " |",
           "|---|---|" + "---|" * len(variants)]
    keys = list(dict.fromkeys((r.workload, r.arch) for r in rows))
    by = {(r.workload, r.arch, r.variant): r for r in rows}
    for w, a in keys:
        cells = []
        for v in variants:
            r = by.get((w, a, v))
            if r is None or r.status.startswith("unavailable"):
                cells.append("n/a")
            elif r.status != "ok" or r.seconds is None:
                cells.append("failed")
            else:
                ratio = f" ({r.ratio_to_raw:.2f}×)" if r.ratio_to_raw is not None and v != "raw" else ""
                cells.append(f"{_s(r.seconds.median)} s{ratio}")
        out.append(f"| `{labels.get(w, w)}` | {a} | " + " | ".join(cells) + " |")
    return out


def _host_memory_line(hm: Optional[dict[str, Any]]) -> str:
    """The host memory settings that set the spread (see bench.cli.host_memory_settings)."""
    if not hm:
        return ""
    order = hm.get("free_page_reporting_order")
    return (f" Host memory: transparent huge pages {hm.get('thp') or '?'} (defrag "
            f"{hm.get('thp_defrag') or '?'}), NUMPY_MADVISE_HUGEPAGE "
            f"{hm.get('numpy_madvise_hugepage')}, free page reporting "
            + (f"at order {order}." if order is not None else "off or unknown."))


def markdown(meta: dict[str, Any], rows: list[Row], targets: list[TargetResult],
             first_touch: list[dict[str, Any]]) -> str:
    m = meta["machine"]
    labels = meta.get("labels", {})
    lines = [
        f"## Benchmark results ({meta['tier']}, {meta['date']})",
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores), Linux {m['kernel']}, Python {m['python']}, "
        f"Unicorn {m['unicorn']}, {_qemu_short(m.get('qemu', ''))}. "
        f"mmuemu at {m.get('git', '?')}"
        + (f" (imported from `{Path(m['mmuemu_path']).parent}`). " if m.get("mmuemu_path") else ". ") +
        f"Repetitions per cell: {meta['reps']}, variants interleaved within each repetition; "
        f"load average {meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end. "
        f"Command: `{meta['command']}` ({meta['elapsed_seconds']:.0f} s)."
        + _host_memory_line(m.get("host_memory")),
        "",
        "Time is the median over the repetitions with min–max in parentheses. For mmuemu "
        "it is the emulation wall time (inside the Unicorn loop, from `--stats`; Python "
        "start-up and ELF loading excluded); for native and qemu it is the whole process. "
        "×raw divides by raw's median in the same invocation. MIPS = guest instructions per "
        "second (native/qemu use the instruction count of the mmuemu run of the same "
        "binary). Faults are the model's page faults (native: the host kernel's "
        "minflt+majflt for the process, exec included). Peak RSS is the child's `ru_maxrss`.",
        "",
    ]
    lines += compact_table(rows, labels)
    lines += [
        "",
        "Every figure:",
        "",
        "| workload | arch | variant | time s (min–max) | ×raw | process s | guest MIPS "
        "| faults | faults/s | peak RSS MiB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    missing = [r for r in rows if r.status.startswith("unavailable")]
    rows = [r for r in rows if not r.status.startswith("unavailable")]
    last = None
    for r in rows:
        wl = labels.get(r.workload, r.workload)
        show_w = f"`{wl}`" if (r.workload, r.arch) != last else ""
        show_a = r.arch if (r.workload, r.arch) != last else ""
        last = (r.workload, r.arch)
        if r.status != "ok":
            lines.append(f"| {show_w} | {show_a} | {r.variant} | {_esc(r.status)} "
                         f"| | | | | | | |")
            continue
        assert r.seconds is not None and r.process_seconds is not None
        sp = r.seconds
        notes = list(r.notes)
        if r.ratio_to_base is not None:
            notes.insert(0, f"×{r.base} {r.ratio_to_base:.2f}")
        if r.trace_bytes is not None:
            notes.append(f"trace {r.trace_bytes / 1024:,.0f} KiB")
        if r.faults_source == "host kernel":
            notes.append("faults: host kernel")
        lines.append(
            f"| {show_w} | {show_a} | {r.variant} | {_s(sp.median)} ({_s(sp.lo)}–{_s(sp.hi)}) "
            f"| {_s(r.ratio_to_raw, 2)} | {_s(r.process_seconds.median)} | {_s(r.mips, 0)} "
            f"| {_count(r.faults)} | {_count(r.faults_per_second)} | {_s(r.maxrss_mib, 0)} "
            f"| {_esc('; '.join(notes))} |")
    if missing:
        lines += ["", "Not measured (the variant is not available here):", ""]
        seen: dict[str, list[str]] = {}
        for r in missing:
            key = f"{r.variant}: {r.status.removeprefix('unavailable: ')}"
            seen.setdefault(key, [])
            if r.arch not in seen[key]:
                seen[key].append(r.arch)
        for key, archs in seen.items():
            lines.append(f"- {key} ({', '.join(archs)})")
    lines += ["", "### Targets", "",
              "Per repetition: the ratio of the two runs within each repetition (they run "
              "back to back), median (min–max); its median is the verdict's measure when "
              f"at least {MIN_PAIRED} repetitions have both runs. Of medians: the median "
              "time of one over the median time of the other. Of minimums: the fastest run "
              "of one over the fastest of the other (Unicorn runs the same code at "
              "different speeds from one instance to the next: bench/README.md, item 5).",
              "",
              "| target | workload | arch | per repetition | of medians | of minimums | verdict |",
              "|---|---|---|---|---|---|---|"]
    for t in collapse_targets(targets):
        per_rep = "—" if t.paired is None else \
            f"{t.paired.median:.2f}× ({t.paired.lo:.2f}–{t.paired.hi:.2f})"
        lines.append(f"| {t.target} | {t.workload} | {t.arch} | {per_rep} | "
                     f"{'—' if t.of_medians is None else f'{t.of_medians:.2f}×'} | "
                     f"{'—' if t.of_minimums is None else f'{t.of_minimums:.2f}×'} | "
                     f"{_esc(t.verdict)} |")
    if first_touch:
        lines += ["", "### Fault throughput: cost per first touch", "",
                  "| workload | arch | variant | pages | µs per page | faults | µs per fault "
                  "| faults/s |", "|---|---|---|---|---|---|---|---|"]
        for f in first_touch:
            lines.append(f"| {f['workload']} | {f['arch']} | {f['variant']} | {f['pages']:,} | "
                         f"{_s(f['us_per_page'], 2)} | {_count(f['faults'])} | "
                         f"{_s(f['us_per_fault'], 2)} | {_count(f['faults_per_second'])} |")
    return "\n".join(lines) + "\n"


def first_touch_table(rows: list[Row], tier: str) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        w = WORKLOADS_BY_NAME.get(r.workload)
        if w is None or w.kind != "fault" or r.status != "ok" or r.seconds is None:
            continue
        pages = w.first_touch_pages.get(tier)
        if not pages:
            continue
        out.append({"workload": r.workload, "arch": r.arch, "variant": r.variant,
                    "pages": pages, "us_per_page": r.seconds.median / pages * 1e6,
                    "faults": r.faults, "us_per_fault": r.us_per_fault,
                    "faults_per_second": r.faults_per_second})
    return out
