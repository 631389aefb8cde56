"""Sequence alignment of two integer key arrays: which events are only in A, only in B.

The result is a list of :class:`Hunk` s: ``a[a0:a1]`` stands where B has
``b[b0:b1]`` (one side may be empty); everything between hunks is equal and
aligned. The method, for arrays of millions of keys:

1. The common prefix and suffix are cut off with vectorised comparisons.
2. What is left is anchored: each key is numbered by its occurrence
   (the 3rd ``fault.anon anon[7]``), which makes every (key, occurrence)
   pair unique on each side; pairs found on both sides are matched
   (``np.intersect1d``), runs of consecutive matches become blocks, and the
   heaviest chain of blocks increasing on both sides (a weighted longest
   increasing subsequence, Fenwick tree, O(B log B) for B blocks) is kept.
3. The gaps between anchors, usually a few events, get an exact Myers
   O(ND) diff; a gap too large or too different for that within
   :data:`MYERS_MAX_D` edits is anchored again, and failing that reported
   as one replaced block.

Memory is a few 8-byte arrays per event; time is dominated by sorting.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

#: Gaps up to this many events (both sides together) go straight to Myers.
MYERS_MAX_N = 4000
#: Myers gives up beyond this many edits in one gap.
MYERS_MAX_D = 400
#: How many times a gap may be re-anchored before it is reported whole.
MAX_DEPTH = 3

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True, slots=True)
class Hunk:
    """``a[a0:a1]`` (only in A) stands where B has ``b[b0:b1]`` (only in B)."""

    a0: int
    a1: int
    b0: int
    b1: int


def mix64(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """splitmix64's finaliser over a uint64 array (a good, cheap hash)."""
    if not inplace:
        x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return x


def align(a: np.ndarray, b: np.ndarray) -> list[Hunk]:
    """The hunks turning key sequence ``a`` into ``b`` (empty when equal)."""
    a = np.ascontiguousarray(a, dtype=np.uint64)
    b = np.ascontiguousarray(b, dtype=np.uint64)
    n, m = len(a), len(b)
    k = min(n, m)
    neq = np.flatnonzero(a[:k] != b[:k])
    pre = int(neq[0]) if len(neq) else k
    if pre == n and pre == m:
        return []
    k2 = min(n, m) - pre
    neq = np.flatnonzero(a[n - k2:][::-1] != b[m - k2:][::-1]) if k2 else np.empty(0, np.int64)
    suf = int(neq[0]) if len(neq) else k2
    out: list[Hunk] = []
    _align_gap(a, b, pre, n - suf, pre, m - suf, 0, out)
    return out


def _align_gap(a: np.ndarray, b: np.ndarray, i0: int, i1: int, j0: int, j1: int,
               depth: int, out: list[Hunk]) -> None:
    if i0 == i1 and j0 == j1:
        return
    if i0 == i1 or j0 == j1:
        out.append(Hunk(i0, i1, j0, j1))
        return
    if (i1 - i0) + (j1 - j0) <= MYERS_MAX_N:
        hunks = myers(a[i0:i1].tolist(), b[j0:j1].tolist(), MYERS_MAX_D)
        if hunks is not None:
            out.extend(Hunk(h.a0 + i0, h.a1 + i0, h.b0 + j0, h.b1 + j0) for h in hunks)
            return
    if depth >= MAX_DEPTH:
        out.append(Hunk(i0, i1, j0, j1))
        return
    anchors = _anchor_blocks(a[i0:i1], b[j0:j1])
    if not anchors:
        out.append(Hunk(i0, i1, j0, j1))
        return
    pi, pj = i0, j0
    for ai, bj, length in anchors:
        _align_gap(a, b, pi, i0 + ai, pj, j0 + bj, depth + 1, out)
        pi, pj = i0 + ai + length, j0 + bj + length
    _align_gap(a, b, pi, i1, pj, j1, depth + 1, out)


def occurrence_ids(x: np.ndarray) -> np.ndarray:
    """Hash of (key, how many times the key occurred before): unique per position.

    Temporaries are dropped as soon as they are used, and the hashing is in
    place: the peak is about five 8-byte arrays of ``len(x)``.
    """
    n = len(x)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.empty(n, dtype=bool)
    starts[:1] = True
    np.not_equal(xs[1:], xs[:-1], out=starts[1:])
    del xs
    group_first = np.flatnonzero(starts)
    group = np.cumsum(starts, dtype=np.int64)
    del starts
    group -= 1
    occ_sorted = np.arange(n, dtype=np.int64)
    occ_sorted -= group_first[group]
    del group, group_first
    ids = np.empty(n, dtype=np.uint64)
    ids[order] = occ_sorted.view(np.uint64)
    del order, occ_sorted
    with np.errstate(over="ignore"):
        ids += np.uint64(1)
        ids *= _GOLD
        mix64(ids, inplace=True)
        ids ^= x
        return mix64(ids, inplace=True)


def _anchor_blocks(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int, int]]:
    """Matched blocks (a start, b start, length), increasing on both sides."""
    ia, ib = _match(occurrence_ids(a), occurrence_ids(b))
    if not len(ia):
        return []
    order = np.argsort(ia, kind="stable")
    ia, ib = ia[order], ib[order]
    brk = np.flatnonzero((np.diff(ia) != 1) | (np.diff(ib) != 1)) + 1
    starts = np.concatenate(([0], brk))
    lengths = np.diff(np.concatenate((starts, [len(ia)])))
    chosen = heaviest_increasing(ib[starts], lengths)
    return [(int(ia[starts[c]]), int(ib[starts[c]]), int(lengths[c])) for c in chosen]


def _match(ida: np.ndarray, idb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in a, in b) of the ids found on both sides.

    A sort of one side and a binary search of the other: leaner than
    ``np.intersect1d(..., return_indices=True)``, which sorts both together.
    """
    if not len(ida) or not len(idb):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order_a = np.argsort(ida)
    sorted_a = ida[order_a]
    del ida
    pos = np.searchsorted(sorted_a, idb)
    np.minimum(pos, len(sorted_a) - 1, out=pos)
    hit = sorted_a[pos] == idb
    del sorted_a
    ib = np.flatnonzero(hit)
    ia = order_a[pos[hit]]
    return ia.astype(np.int64), ib.astype(np.int64)


def heaviest_increasing(keys: np.ndarray, weights: np.ndarray) -> list[int]:
    """Indices of the heaviest subsequence with strictly increasing ``keys``.

    Fenwick tree over key ranks holding (best total, index); O(n log n).
    """
    n = len(keys)
    ranks = np.searchsorted(np.unique(keys), keys).tolist()
    w = weights.tolist()
    size = len(set(ranks))
    tree_val = [0] * (size + 1)
    tree_idx = [-1] * (size + 1)
    prev = [-1] * n
    best = [0] * n
    for i in range(n):
        r = ranks[i]  # query prefix max over ranks < r (1-based positions 1..r)
        q, qi, p = 0, -1, r
        while p > 0:
            if tree_val[p] > q:
                q, qi = tree_val[p], tree_idx[p]
            p -= p & -p
        total = q + w[i]
        best[i], prev[i] = total, qi
        p = r + 1
        while p <= size:
            if tree_val[p] < total:
                tree_val[p], tree_idx[p] = total, i
            p += p & -p
    i = max(range(n), key=best.__getitem__)
    chain = []
    while i >= 0:
        chain.append(i)
        i = prev[i]
    chain.reverse()
    return chain


def myers(a: list[int], b: list[int], max_d: int) -> Optional[list[Hunk]]:
    """Minimal edit script of ``a`` → ``b`` as hunks (Myers 1986), or None past ``max_d``."""
    n, m = len(a), len(b)
    limit = min(max_d, n + m)
    off = limit + 1
    v = [0] * (2 * limit + 3)
    trace: list[list[int]] = []
    for d in range(limit + 1):
        trace.append(v[off - d - 1:off + d + 2])
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[off + k - 1] < v[off + k + 1]):
                x = v[off + k + 1]
            else:
                x = v[off + k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[off + k] = x
            if x >= n and y >= m:
                return _backtrack(trace, n, m, d)
    return None


def _backtrack(trace: list[list[int]], n: int, m: int, d_end: int) -> list[Hunk]:
    """Walk the saved V arrays back from (n, m); group the edits into hunks."""
    edits: list[tuple[int, int, bool]] = []  # (x, y, is_delete) before the edit
    x, y = n, m
    for d in range(d_end, 0, -1):
        v = trace[d]  # V before step d, covering k in [-d-1, d+1] at index k + d + 1
        k = x - y
        down = k == -d or (k != d and v[k - 1 + d + 1] < v[k + 1 + d + 1])
        pk = k + 1 if down else k - 1
        px = v[pk + d + 1]
        py = px - pk
        if down:
            edits.append((px, py, False))
        else:
            edits.append((px, py, True))
        x, y = px, py
    edits.reverse()
    hunks: list[Hunk] = []
    for ex, ey, dele in edits:
        nx, ny = (ex + 1, ey) if dele else (ex, ey + 1)
        if hunks and hunks[-1].a1 == ex and hunks[-1].b1 == ey:
            h = hunks[-1]
            hunks[-1] = Hunk(h.a0, nx, h.b0, ny)
        else:
            hunks.append(Hunk(ex, nx, ey, ny))
    return hunks
