"""Normalisation: what two traces must agree on to count as equivalent.

An event is compared by its *key*: kind, VMA role and page index, access,
user/kernel, outcome, pid, and for mm and flush events the length in pages,
prot, flags and the error code (successful results are addresses, already
described by role and page). Addresses, pcs, instructions, pfns, instruction
counts and cycles are never compared: they depend on layout, allocation
order and the CPU, not on what the kernel decided.

``cross-arch`` also drops what is architecture-specific by nature and says
so in the report: cache-maintenance events (``flush.icache``: arm64 must
synchronise the I-cache, x86-64 need not) and events in the executable's
text and rodata (instruction fetches and read-only data whose page layout
the compiler and linker choose per architecture: x86-64 links text and
rodata into separate segments, arm64 into one). It compares each task's
events as one stream: how tasks interleave depends on time slices counted
in instructions, and instruction counts differ between the architectures.
Lengths are capped at x86-64's user address space, so a flush of the whole
address space (exit_mmap: [0, TASK_SIZE)) compares equal although arm64's
TASK_SIZE is twice as large.

Keys are computed per chunk, vectorised: each string is hashed once per
reader string table, fields are folded with splitmix64.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mmuemu.trace.align import mix64
from mmuemu.trace.columns import EventChunk
from mmuemu.trace.schema import kind_group


@dataclass(frozen=True, slots=True)
class Normalisation:
    """Which events are dropped before comparing, and why."""

    name: str
    drop_kinds: frozenset[str] = frozenset()
    drop_roles: frozenset[str] = frozenset()
    #: compare each task's events as one stream (stable sort by pid), not their interleaving
    per_task: bool = False
    #: lengths compare at most this many pages (0: no limit)
    max_pages: int = 0
    reasons: tuple[str, ...] = ()


#: pages below x86-64's TASK_SIZE (2^47 - 4 KiB); arm64's is 2^48
X86_64_USER_PAGES = ((1 << 47) - 4096) >> 12

DEFAULT = Normalisation("default")
CROSS_ARCH = Normalisation(
    "cross-arch",
    drop_kinds=frozenset({"flush.icache"}),
    drop_roles=frozenset({"text", "rodata"}),
    per_task=True,
    max_pages=X86_64_USER_PAGES,
    reasons=("flush.icache: cache maintenance (arm64 syncs the I-cache for executable pages; "
             "x86-64 does not need to)",
             "text/rodata events: instruction fetches and read-only data of the executable, "
             "whose page layout the compiler and linker choose per architecture",
             "pc and instruction text are never compared",
             "address-space size: lengths are capped at x86-64's user address space "
             "(2^47 - 4 KiB; arm64 has 2^48), so exit's flush of everything compares equal",
             "task interleaving: each pid's events are compared in order, not how the tasks' "
             "time slices (counted in instructions) interleave them"),
)


def string_hash(s: str) -> int:
    """A stable 64-bit hash of a string (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")


@dataclass(slots=True)
class _Table:
    """Per-reader lookups by string code, extended as the string table grows."""

    hashes: list[int] = field(default_factory=list)
    dropped_kind: list[bool] = field(default_factory=list)
    dropped_role: list[bool] = field(default_factory=list)
    keeps_result: list[bool] = field(default_factory=list)


class KeyMaker:
    """Turns chunks of one trace into normalised int keys (one KeyMaker per reader)."""

    def __init__(self, norm: Normalisation) -> None:
        self.norm = norm
        self._t = _Table()

    def _arrays(self, strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray]:
        t = self._t
        for s in strings[len(t.hashes):]:
            t.hashes.append(string_hash(s))
            t.dropped_kind.append(s in self.norm.drop_kinds)
            t.dropped_role.append(s in self.norm.drop_roles)
            t.keeps_result.append(kind_group(s) in ("fault", "task"))
        return (np.array(t.hashes, dtype=np.uint64), np.array(t.dropped_kind, dtype=bool),
                np.array(t.dropped_role, dtype=bool), np.array(t.keeps_result, dtype=bool))

    def keys(self, chunk: EventChunk) -> tuple[np.ndarray, np.ndarray]:
        """(keys of the kept events, boolean mask of kept events) for one chunk."""
        c = chunk.columns
        h, dk, dr, kr = self._arrays(chunk.strings)
        keep = ~(dk[c["kind"]] | dr[c["role"]])
        result = c["result"]
        result = np.where(kr[c["kind"]], result, np.minimum(result, 0))
        pages = (c["length"] + np.uint64(4095)) >> np.uint64(12)
        if self.norm.max_pages:
            pages = np.minimum(pages, np.uint64(self.norm.max_pages))
        k = h[c["kind"]]
        for part in (h[c["role"]], c["page"].view(np.uint64), h[c["access"]],
                     c["user"].astype(np.uint64), h[c["outcome"]],
                     c["pid"].astype(np.int64).view(np.uint64), pages,
                     c["prot"].view(np.uint64), c["flags"].view(np.uint64),
                     result.view(np.uint64)):
            k = mix64(k ^ part)
        return k[keep], keep
