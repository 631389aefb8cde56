"""``mmuemu trace plot FILE -o out.png``: faults over instruction time, over the layout.

The left panel puts each fault at (instruction count, position in the
address space) coloured by kind. The address space is drawn as one band per
VMA role, ordered by the lowest address seen in the role (so the layout
reads bottom-up as in ``/proc/PID/maps``), with the page index spread
across the band, low addresses low (the stack's pages, counted down from
its end, are flipped to match). The right panel shows the fault count per band. matplotlib is
optional: it is imported only here, with the Agg backend.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from mmuemu.trace.reader import open_trace
from mmuemu.trace.schema import KINDS, kind_group

#: Faults kept for drawing; past this the sample is thinned by half, deterministically.
MAX_POINTS = 200_000


class PlotUnavailable(Exception):
    """matplotlib is missing; the message says how to get it."""


@dataclass(slots=True)
class _Points:
    insns: list[np.ndarray] = field(default_factory=list)
    role: list[np.ndarray] = field(default_factory=list)
    page: list[np.ndarray] = field(default_factory=list)
    kind: list[np.ndarray] = field(default_factory=list)
    n: int = 0
    stride: int = 1

    def add(self, insns: np.ndarray, role: np.ndarray, page: np.ndarray,
            kind: np.ndarray) -> None:
        for lst, arr in ((self.insns, insns), (self.role, role), (self.page, page),
                         (self.kind, kind)):
            lst.append(arr[::self.stride].copy())
        self.n += len(insns[::self.stride])
        while self.n > MAX_POINTS:
            self.stride *= 2
            for lst in (self.insns, self.role, self.page, self.kind):
                lst[:] = [a[::2] for a in lst]
            self.n = sum(len(a) for a in self.insns)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        def cat(lst: list[np.ndarray], dt: str) -> np.ndarray:
            return np.concatenate(lst) if lst else np.empty(0, dt)
        return (cat(self.insns, "i8"), cat(self.role, "U64"), cat(self.page, "i8"),
                cat(self.kind, "U32"))


def plot_trace(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> int:
    """Draw the trace's faults to ``out`` (PNG); returns how many faults were drawn."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise PlotUnavailable("trace plot needs matplotlib (pip install matplotlib)") from None
    pts = _Points()
    low: dict[str, int] = {}
    with open_trace(path) as r:
        header = r.header
        for chunk in r.chunks():
            c = chunk.columns
            strings = np.asarray(chunk.strings, dtype=object)
            kinds = strings[c["kind"]]
            faults = np.fromiter((kind_group(k) == "fault" for k in kinds), bool, len(kinds))
            roles = strings[c["role"][faults]].astype(str)
            roles[roles == ""] = "(no vma)"
            addrs = c["addr"][faults]
            for role in np.unique(roles):
                lo = int(addrs[roles == role].min())
                low[role] = min(low.get(role, lo), lo)
            pts.add(c["insns"][faults], roles, c["page"][faults], kinds[faults].astype(str))
    x, role, page, kind = pts.arrays()
    bands = sorted(low, key=low.__getitem__)
    y = np.zeros(len(x), dtype=float)
    counts = []
    for i, b in enumerate(bands):
        sel = role == b
        top = max(1, int(page[sel].max()) + 1) if sel.any() else 1
        frac = (np.clip(page[sel], 0, None) + 0.5) / top
        y[sel] = i + 0.05 + 0.9 * (1 - frac if b == "stack" else frac)
        counts.append(int(sel.sum()) * pts.stride)
    fig, (ax, bar) = plt.subplots(1, 2, figsize=(12, 1.8 + 0.55 * max(3, len(bands))),
                                  sharey=True, gridspec_kw={"width_ratios": [5, 1]})
    cmap = plt.get_cmap("tab10")
    order = [k for k in KINDS if k in set(kind.tolist())]
    for i, k in enumerate(order):
        sel = kind == k
        ax.scatter(x[sel], y[sel], s=9, color=cmap(i % 10), alpha=0.8, linewidths=0,
                   label=f"{k} ({int(sel.sum()) * pts.stride:,})")
    ax.set_yticks([i + 0.5 for i in range(len(bands))], bands)
    for i in range(1, len(bands)):
        ax.axhline(i, color="0.85", linewidth=0.8)
    ax.set_ylim(0, max(1, len(bands)))
    ax.set_xlabel("instructions")
    ax.set_ylabel("VMA role (page index across the band; by address)")
    title = f"{header.program} {' '.join(header.argv)} ({header.arch})".replace("  ", " ")
    ax.set_title(f"faults over time: {title}" + (f", 1 in {pts.stride} drawn"
                                                   if pts.stride > 1 else ""))
    if order:
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.18), ncol=4, fontsize=8,
                  frameon=False)
    bar.barh([i + 0.5 for i in range(len(bands))], counts, height=0.8, color="0.5")
    bar.set_xlabel("faults")
    fig.tight_layout()
    fig.savefig(os.fspath(out), dpi=110)
    plt.close(fig)
    return len(x)
