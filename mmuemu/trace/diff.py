"""``mmuemu trace diff A B``: are two traces equivalent under a normalisation?

Two streaming passes per file. The first computes each kept event's
normalised key (:mod:`normalize`) and the counts per kind; the keys are
aligned (:mod:`align`). The second pass fetches only the events shown in
the report (the first few hunks with context). Memory: the key arrays
(8 bytes per event, 16 when events were dropped) and one chunk.

Exit status as diff(1): 0 equivalent, 1 different, 2 trouble.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from mmuemu.trace.align import Hunk, align
from mmuemu.trace.normalize import CROSS_ARCH, DEFAULT, KeyMaker, Normalisation
from mmuemu.trace.reader import open_trace
from mmuemu.trace.schema import KINDS, TraceEvent, TraceHeader

EXIT_SAME, EXIT_DIFFERENT, EXIT_TROUBLE = 0, 1, 2


@dataclass(slots=True)
class TraceKeys:
    """One side of a diff: the header, counts, and the kept events' keys."""

    path: str
    header: TraceHeader
    n_events: int
    counts: Counter[str]
    dropped: Counter[str]
    keys: np.ndarray
    #: seq of each kept event; None when nothing was dropped (seq == index)
    seqs: Optional[np.ndarray] = None

    def seq(self, i: int) -> int:
        """The sequence number of kept event ``i``."""
        return i if self.seqs is None else int(self.seqs[i])


def load_keys(path: str | os.PathLike[str], norm: Normalisation) -> TraceKeys:
    """First pass over one trace: keys of the kept events, counts per kind."""
    maker = KeyMaker(norm)
    keys: list[np.ndarray] = []
    seqs: list[np.ndarray] = []
    pids: list[np.ndarray] = []
    counts: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    n = 0
    any_dropped = False
    with open_trace(path) as r:
        header = r.header
        for chunk in r.chunks():
            k, keep = maker.keys(chunk)
            keys.append(k)
            kinds = chunk.columns["kind"]
            for code, c in zip(*np.unique(kinds, return_counts=True)):
                counts[chunk.strings[int(code)]] += int(c)
            if not keep.all():
                if not any_dropped:  # from here on, kept index and seq differ
                    any_dropped = True
                    seqs.append(np.arange(n, dtype=np.int64))
                gone = ~keep
                for code, c in zip(*np.unique(kinds[gone], return_counts=True)):
                    dropped[chunk.strings[int(code)]] += int(c)
            if any_dropped:
                seqs.append(np.flatnonzero(keep) + chunk.first_seq)
            if norm.per_task:
                pids.append(chunk.columns["pid"][keep])
            n += len(chunk)
    all_keys = np.concatenate(keys) if keys else np.empty(0, np.uint64)
    all_seqs = (np.concatenate(seqs) if seqs else np.empty(0, np.int64)) if any_dropped else None
    if pids:
        all_pids = np.concatenate(pids)
        if len(all_pids) and (all_pids != all_pids[0]).any():
            order = np.argsort(all_pids, kind="stable")
            all_keys = all_keys[order]
            all_seqs = (np.arange(n) if all_seqs is None else all_seqs)[order]
    return TraceKeys(os.fspath(path), header, n, counts, dropped, all_keys, all_seqs)


@dataclass(slots=True)
class DiffResult:
    """The outcome of comparing A with B."""

    a: TraceKeys
    b: TraceKeys
    norm: Normalisation
    hunks: list[Hunk]
    #: events fetched for the report, by side and seq
    shown: dict[str, dict[int, TraceEvent]] = field(default_factory=dict)

    @property
    def equivalent(self) -> bool:
        """No hunks: every kept event matches, in order."""
        return not self.hunks

    @property
    def only_a(self) -> int:
        """Kept events of A with no partner in B."""
        return sum(h.a1 - h.a0 for h in self.hunks)

    @property
    def only_b(self) -> int:
        """Kept events of B with no partner in A."""
        return sum(h.b1 - h.b0 for h in self.hunks)


def diff_traces(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str],
                cross_arch: bool = False) -> DiffResult:
    """Compare two trace files (either encoding). Raises TraceFormatError / OSError."""
    norm = CROSS_ARCH if cross_arch else DEFAULT
    a = load_keys(path_a, norm)
    b = load_keys(path_b, norm)
    return DiffResult(a, b, norm, align(a.keys, b.keys))


def _fetch(path: str, wanted: set[int]) -> dict[int, TraceEvent]:
    """Second pass: the events whose seq is in ``wanted``."""
    out: dict[int, TraceEvent] = {}
    if not wanted:
        return out
    ordered = np.array(sorted(wanted), dtype=np.int64)
    with open_trace(path) as r:
        for chunk in r.chunks():
            lo, hi = chunk.first_seq, chunk.first_seq + len(chunk)
            sel = ordered[(ordered >= lo) & (ordered < hi)]
            for s in sel.tolist():
                out[s] = chunk.event(s - lo)
            if len(ordered) and hi > ordered[-1]:
                break
    return out


# --- rendering ---------------------------------------------------------------------------
def describe(ev: TraceEvent) -> str:
    """One event as the diff shows it: the compared part first, then the details."""
    where = f"{ev.role}[{ev.page}]" if ev.role else "-"
    parts = [f"[{ev.pid}] {ev.kind:<16} {where:<22}"]
    if ev.kind.startswith("fault."):
        parts.append(f"{ev.access:<5} {'user' if ev.user else 'kern'} {ev.outcome:<6}")
        detail = f"@{ev.addr:#x}"
        if ev.pc is not None:
            detail += f" pc {ev.pc:#x} {ev.insn}"
    elif ev.kind.startswith("mm."):
        pages = (ev.length + 4095) >> 12
        parts.append(f"{pages} pages prot={ev.prot:#x} flags={ev.flags:#x} "
                     f"{'err ' + str(ev.result) if ev.result < 0 else 'ok'}")
        detail = f"@{ev.addr:#x} -> {ev.result:#x}" if ev.result >= 0 else f"@{ev.addr:#x}"
    elif ev.kind.startswith("flush."):
        parts.append(f"{(ev.length + 4095) >> 12} pages")
        detail = f"@{ev.addr:#x}"
    elif ev.kind == "task.fork":
        parts.append(f"child [{ev.result}]")
        detail = ""
    else:
        parts.append(f"{ev.outcome} {ev.result}")
        detail = ""
    return " ".join(parts) + (f"   ({detail})" if detail else "")


def _count_table(res: DiffResult) -> list[str]:
    a, b = res.a, res.b
    kinds = [k for k in KINDS if a.counts[k] or b.counts[k]]
    kinds += sorted(k for k in set(a.counts) | set(b.counts) if k not in KINDS)
    rows = [f"  {'kind':<18}{'A':>10}{'B':>10}{'B-A':>8}"]
    for k in kinds:
        na, nb = a.counts[k], b.counts[k]
        mark = ""
        if a.dropped[k] or b.dropped[k]:
            mark = f"  ({a.dropped[k]}|{b.dropped[k]} dropped)"
        elif na != nb:
            mark = "  *"
        rows.append(f"  {k:<18}{na:>10,}{nb:>10,}{nb - na:>+8,}{mark}")
    rows.append(f"  {'total':<18}{a.n_events:>10,}{b.n_events:>10,}"
                f"{b.n_events - a.n_events:>+8,}")
    return rows


def _notes(res: DiffResult) -> list[str]:
    ha, hb = res.a.header, res.b.header
    notes = []
    if ha.arch != hb.arch and res.norm is not CROSS_ARCH:
        notes.append(f"note: architectures differ ({ha.arch} vs {hb.arch}); "
                     "--cross-arch drops what is architecture-specific")
    if ha.program != hb.program or ha.argv != hb.argv:
        notes.append(f"note: programs differ: {ha.program} {' '.join(ha.argv)} vs "
                     f"{hb.program} {' '.join(hb.argv)}")
    for k in sorted(set(ha.config) | set(hb.config)):
        if ha.config.get(k) != hb.config.get(k):
            notes.append(f"note: config {k}: {ha.config.get(k)} vs {hb.config.get(k)}")
    if ha.events != hb.events:
        notes.append(f"note: recorded event sets differ: {','.join(ha.events)} vs "
                     f"{','.join(hb.events)}")
    return notes


def render(res: DiffResult, max_hunks: int = 5, context: int = 3,
           max_lines: int = 12) -> str:
    """The report: sources, notes, count table, verdict, first divergences."""
    a, b = res.a, res.b
    out = [f"--- A {a.path} ({a.header.arch}, {a.header.program} {' '.join(a.header.argv)})"
           .rstrip(),
           f"+++ B {b.path} ({b.header.arch}, {b.header.program} {' '.join(b.header.argv)})"
           .rstrip(),
           f"normalisation: {res.norm.name} (key: kind, role[page], access, user, outcome, "
           "pid; mm/flush: pages, prot, flags, error)"]
    for reason in res.norm.reasons:
        out.append(f"  dropped: {reason}")
    if res.norm.reasons:
        out.append(f"  dropped events: A {sum(a.dropped.values()):,}, "
                   f"B {sum(b.dropped.values()):,}")
    out += _notes(res)
    out.append("")
    out += _count_table(res)
    out.append("")
    if res.equivalent:
        out.append(f"equivalent: {len(a.keys):,} events compared, no differences")
        return "\n".join(out) + "\n"
    out.append(f"DIFFERENT: {len(res.hunks):,} hunks; {res.only_a:,} events only in A, "
               f"{res.only_b:,} only in B (of {len(a.keys):,} | {len(b.keys):,} compared)")
    shown = res.hunks[:max_hunks]
    # (lead start, trail end) of each shown hunk's context, never overlapping a neighbour
    spans: list[tuple[int, int]] = []
    prev_end = 0
    for k, h in enumerate(shown):
        nxt = res.hunks[k + 1].a0 if k + 1 < len(res.hunks) else len(a.keys)
        lead = max(h.a0 - context, prev_end)
        trail = min(h.a1 + context, nxt)
        spans.append((lead, trail))
        prev_end = trail
    want_a: set[int] = set()
    want_b: set[int] = set()
    for h, (lead, trail) in zip(shown, spans):
        want_a.update(a.seq(i) for i in range(lead, h.a0))
        want_a.update(a.seq(i) for i in range(h.a0, min(h.a1, h.a0 + max_lines)))
        want_a.update(a.seq(i) for i in range(h.a1, trail))
        want_b.update(b.seq(j) for j in range(h.b0, min(h.b1, h.b0 + max_lines)))
    ev_a, ev_b = _fetch(a.path, want_a), _fetch(b.path, want_b)
    for h, (lead, trail) in zip(shown, spans):
        out.append("")
        out.append(f"@@ A {_span(a, h.a0, h.a1)} | B {_span(b, h.b0, h.b1)} @@")
        for i in range(lead, h.a0):
            j = h.b0 - (h.a0 - i)
            out.append(f"  A#{a.seq(i):<7} B#{b.seq(j):<7} {describe(ev_a[a.seq(i)])}")
        out += _side_lines("-", "A", a, ev_a, h.a0, h.a1, max_lines)
        out += _side_lines("+", "B", b, ev_b, h.b0, h.b1, max_lines)
        for i in range(h.a1, trail):
            j = h.b1 + (i - h.a1)
            out.append(f"  A#{a.seq(i):<7} B#{b.seq(j):<7} {describe(ev_a[a.seq(i)])}")
    if len(res.hunks) > max_hunks:
        out.append("")
        out.append(f"... {len(res.hunks) - max_hunks:,} more hunks (--max-hunks to see more)")
    return "\n".join(out) + "\n"


def _span(side: TraceKeys, lo: int, hi: int) -> str:
    if lo == hi:
        return f"after seq {side.seq(lo - 1)}" if lo else "at start"
    return f"seq {side.seq(lo)}" if hi - lo == 1 else f"seq {side.seq(lo)}..{side.seq(hi - 1)}"


def _side_lines(sign: str, name: str, side: TraceKeys, events: dict[int, TraceEvent],
                lo: int, hi: int, max_lines: int) -> Iterable[str]:
    pad = " " * 9
    for i in range(lo, min(hi, lo + max_lines)):
        s = side.seq(i)
        label = f"{name}#{s:<7}"
        cols = f"{label} {pad}" if name == "A" else f"{pad} {label}"
        yield f"{sign} {cols} {describe(events[s])}"
    if hi - lo > max_lines:
        yield f"{sign} ... {hi - lo - max_lines:,} more only in {name}"
