"""The cycle estimate: counters × the profile's costs, with a breakdown.

Inputs are plain counters (:class:`CostCounters`), so the model works in
both modes. Components (each rounded to whole cycles; ``cycles`` is their
sum):

* ``instructions``: instructions × ``cost.base_cpi``.
* ``tlb_l1_hits``: L1i hits × ``tlb.l1i.latency`` + L1d hits × ``tlb.l1d.latency``.
* ``tlb_l2_hits``: L2 hits × ``tlb.l2.latency``.
* ``page_walks``: walks × ``walk.latency``.
* ``walk_mem_refs``: table reads × ``walk.mem_ref_latency`` (walk-cache hits
  have already removed the reads they saved).
* ``fault_entry_exit``: faults × ``cost.fault.entry_exit``.
* ``fault_handlers``: Σ faults of type t × ``cost.fault.handler.t``.
* ``page_zeroing``: (anon + wp faults) × ``cost.fault.zero_page``. A wp fault
  that reuses the page zeroes nothing; the counters do not tell the two
  kinds of wp apart, so this over-counts reuses.
* ``cow_copy``: cow faults × ``cost.fault.copy_page``.
* ``major_io``: major faults × ``cost.fault.major_io``.
* ``syscalls``: syscalls × ``cost.syscall``.
* ``tlb_flushes``: Σ ops of kind k × ``cost.flush.k``.
* ``cache_maintenance``: Σ cache-maintenance instructions of kind k (issued
  by the kernel model and executed by the guest) × ``cost.cache.k``.

Fast mode has no architected TLB counts (``tlb`` is None): the L1/L2 hit
terms are 0 and ``page_walks``/``walk_mem_refs`` come from the fill-path
walks (one per Unicorn soft-TLB fill, plus the retry after each fault),
used as the proxy for TLB misses. Those components are then listed in
:attr:`CycleEstimate.estimated`; Unicorn's soft TLB is larger and
direct-mapped, so the proxy undercounts misses of a TLB-bound program.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from mmuemu.hw.profile import Profile


@dataclass(frozen=True, slots=True)
class TlbCounts:
    """Architected TLB lookups (exact mode)."""

    l1i_hits: int
    l1i_misses: int
    l1d_hits: int
    l1d_misses: int
    l2_hits: int
    l2_misses: int


@dataclass(frozen=True, slots=True)
class CostCounters:
    """What happened in a run, as the cycle model needs it.

    Attributes:
        instructions: guest instructions executed.
        syscalls: system calls.
        faults_by_type: page faults per type (``faults.by_type`` of the stats).
        major_faults: faults that waited for I/O.
        tlb: architected TLB counts; None in fast mode.
        walks: page walks (exact: architected walks; fast: fill-path walks).
        walk_mem_refs: page-table reads of those walks.
        flushes: TLB maintenance ops by name (``invlpg``, ``tlbi_vae1is``, ...).
        cache_insns: cache-maintenance instructions by name (``dc_cvau``, ``clflush``, ...).
    """

    instructions: int
    syscalls: int = 0
    faults_by_type: Mapping[str, int] = field(default_factory=dict)
    major_faults: int = 0
    tlb: Optional[TlbCounts] = None
    walks: int = 0
    walk_mem_refs: int = 0
    flushes: Mapping[str, int] = field(default_factory=dict)
    cache_insns: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CycleEstimate:
    """The estimate and where the cycles went.

    Attributes:
        cycles: total (the sum of the breakdown).
        breakdown: cycles per component (see the module docstring).
        estimated: components computed from a proxy rather than exact counts.
    """

    cycles: int
    breakdown: Mapping[str, int]
    estimated: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"cycles": self.cycles, "breakdown": dict(self.breakdown),
                "estimated": list(self.estimated)}


def estimate(profile: Profile, c: CostCounters) -> CycleEstimate:
    """Cycles for the counters ``c`` under ``profile`` (see the module docstring)."""
    cost = profile.cost
    fault = cost.fault
    by_type = c.faults_by_type
    parts: dict[str, float] = {"instructions": c.instructions * cost.base_cpi}
    if c.tlb is not None:
        t = c.tlb
        parts["tlb_l1_hits"] = (t.l1i_hits * profile.l1i.latency
                                + t.l1d_hits * profile.l1d.latency)
        parts["tlb_l2_hits"] = t.l2_hits * profile.l2.latency
    else:
        parts["tlb_l1_hits"] = 0.0
        parts["tlb_l2_hits"] = 0.0
    parts["page_walks"] = c.walks * profile.walk.latency
    parts["walk_mem_refs"] = c.walk_mem_refs * profile.walk.mem_ref_latency
    total_faults = sum(by_type.values())
    parts["fault_entry_exit"] = total_faults * fault.entry_exit
    parts["fault_handlers"] = sum(n * fault.handler.get(kind, 0.0) for kind, n in by_type.items())
    parts["page_zeroing"] = (by_type.get("anon", 0) + by_type.get("wp", 0)) * fault.zero_page
    parts["cow_copy"] = by_type.get("cow", 0) * fault.copy_page
    parts["major_io"] = c.major_faults * fault.major_io
    parts["syscalls"] = c.syscalls * cost.syscall
    parts["tlb_flushes"] = sum(n * cost.flush.get(op, 0.0) for op, n in c.flushes.items())
    parts["cache_maintenance"] = sum(n * cost.cache.get(op, 0.0)
                                     for op, n in c.cache_insns.items())
    breakdown = {k: int(round(v)) for k, v in parts.items()}
    estimated = () if c.tlb is not None else ("tlb_l1_hits", "tlb_l2_hits", "page_walks",
                                              "walk_mem_refs")
    return CycleEstimate(cycles=sum(breakdown.values()), breakdown=breakdown,
                         estimated=estimated)
