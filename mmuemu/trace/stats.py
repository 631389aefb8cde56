"""``mmuemu trace stats FILE``: counts per kind and per VMA role, and the hottest pages.

One streaming pass over column chunks; memory grows with the number of
distinct (role, page) pairs faulted, not with the number of events.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmuemu.trace.reader import open_trace
from mmuemu.trace.schema import KINDS, TraceHeader, kind_group

_PAGE_MASK = (1 << 40) - 1


@dataclass(slots=True)
class TraceStats:
    """What :func:`compute_stats` found."""

    path: str
    header: TraceHeader
    n_events: int = 0
    last_insns: int = 0
    last_cycles: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)
    #: role → kind → events
    by_role: dict[str, Counter[str]] = field(default_factory=dict)
    #: faults per page: (role code << 40 | page + 1) keys, their counts, and the codes' strings
    page_keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    page_counts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    strings: list[str] = field(default_factory=list)

    def hottest(self, top: int) -> list[tuple[str, int, int]]:
        """The ``top`` most-faulted pages as (role, page, faults), ties by role and page."""
        pages = [(self.strings[int(k) >> 40] or "-", (int(k) & _PAGE_MASK) - 1, int(n))
                 for k, n in zip(self.page_keys, self.page_counts)]
        if len(pages) > top:  # only the candidates: counts at least the top-th largest
            cut = np.partition(self.page_counts, len(pages) - top)[len(pages) - top]
            pages = [p for p in pages if p[2] >= cut]
        pages.sort(key=lambda p: (-p[2], p[0], p[1]))
        return pages[:top]

    def to_json(self, top: int = 10) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "trace": self.path, "arch": self.header.arch, "program": self.header.program,
            "argv": list(self.header.argv), "events": self.n_events,
            "instructions": self.last_insns, "cycles": self.last_cycles,
            "by_kind": {k: self.by_kind[k] for k in _kind_order(self.by_kind)},
            "by_outcome": dict(sorted(self.by_outcome.items())),
            "by_role": {r: dict(c) for r, c in sorted(self.by_role.items())},
            "hottest_pages": [{"role": r, "page": p, "faults": n}
                              for r, p, n in self.hottest(top)],
        }


def _kind_order(counts: Counter[str]) -> list[str]:
    return [k for k in KINDS if counts[k]] + sorted(k for k in counts if k not in KINDS)


def compute_stats(path: str | os.PathLike[str]) -> TraceStats:
    """Read a trace once and count."""
    with open_trace(path) as r:
        st = TraceStats(os.fspath(path), r.header)
        is_fault: list[bool] = []
        for chunk in r.chunks():
            c = chunk.columns
            strings = chunk.strings
            is_fault.extend(kind_group(s) == "fault" for s in strings[len(is_fault):])
            n = len(chunk)
            st.n_events += n
            st.last_insns = int(c["insns"][-1])
            st.last_cycles = int(c["cycles"][-1])
            pair = (c["role"].astype(np.int64) << 32) | c["kind"].astype(np.int64)
            for v, cnt in zip(*np.unique(pair, return_counts=True)):
                role, kind = strings[int(v) >> 32], strings[int(v) & 0xFFFFFFFF]
                st.by_kind[kind] += int(cnt)
                st.by_role.setdefault(role or "-", Counter())[kind] += int(cnt)
            faults = np.asarray(is_fault, dtype=bool)[c["kind"]]
            for v, cnt in zip(*np.unique(c["outcome"][faults], return_counts=True)):
                st.by_outcome[strings[int(v)]] += int(cnt)
            fr, fp = c["role"][faults], c["page"][faults]
            keys = np.concatenate((st.page_keys, (fr.astype(np.int64) << 40) | (fp + 1)))
            counts = np.concatenate((st.page_counts, np.ones(len(fr), np.int64)))
            st.page_keys, inverse = np.unique(keys, return_inverse=True)
            st.page_counts = np.bincount(inverse, weights=counts).astype(np.int64)
        st.strings = list(r.strings)
    return st


def render_stats(st: TraceStats, top: int = 10) -> str:
    """The human-readable report."""
    h = st.header
    out = [f"{st.path}: {h.arch} {h.program} {' '.join(h.argv)}".rstrip(),
           f"  {st.n_events:,} events over {st.last_insns:,} instructions "
           f"({st.last_cycles:,} cycles, {h.cycles})", "", "events by kind:"]
    for k in _kind_order(st.by_kind):
        out.append(f"  {k:<18}{st.by_kind[k]:>10,}")
    faults = sum(n for k, n in st.by_kind.items() if kind_group(k) == "fault")
    out.append(f"  {'faults':<18}{faults:>10,}   "
               + ", ".join(f"{n:,} {o}" for o, n in sorted(st.by_outcome.items())))
    out += ["", "by VMA role:", f"  {'role':<24}{'events':>8}{'faults':>8}  kinds"]
    for role, c in sorted(st.by_role.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])):
        nf = sum(n for k, n in c.items() if kind_group(k) == "fault")
        kinds = ", ".join(f"{k.split('.', 1)[1]} {n}" for k, n in
                          sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
        out.append(f"  {role:<24}{sum(c.values()):>8,}{nf:>8,}  {kinds}")
    hot = st.hottest(top)
    if hot:
        out += ["", f"hottest pages (faults, top {top}):"]
        for role, page, n in hot:
            out.append(f"  {role + '[' + str(page) + ']':<32}{n:>6,}")
    return "\n".join(out) + "\n"
