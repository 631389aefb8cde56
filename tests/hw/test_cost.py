"""The cycle model (mmuemu/hw/cost.py), computed by hand from the profile's parameters."""
from __future__ import annotations

from mmuemu.hw.cost import CostCounters, TlbCounts, estimate
from mmuemu.hw.profile import load_profile


def test_every_component_by_hand() -> None:
    p = load_profile("skylake", ["cost.base_cpi=0.5", "tlb.l1i.latency=1", "tlb.l1d.latency=2",
                                 "tlb.l2.latency=7", "walk.latency=11", "walk.mem_ref_latency=3",
                                 "cost.fault.entry_exit=100", "cost.fault.zero_page=40",
                                 "cost.fault.copy_page=60", "cost.fault.major_io=1000",
                                 "cost.fault.handler.anon=10", "cost.fault.handler.cow=20",
                                 "cost.fault.handler.file=30", "cost.fault.handler.wp=5",
                                 "cost.syscall=9", "cost.flush.invlpg=13",
                                 "cost.flush.cr3_write=17", "cost.cache.clflush=19",
                                 "cost.cache.clwb=23"])
    c = CostCounters(instructions=1000, syscalls=4,
                     faults_by_type={"anon": 3, "cow": 2, "file": 1, "wp": 1, "zero": 0},
                     major_faults=1,
                     tlb=TlbCounts(l1i_hits=50, l1i_misses=5, l1d_hits=80, l1d_misses=20,
                                   l2_hits=15, l2_misses=10),
                     walks=10, walk_mem_refs=25,
                     flushes={"invlpg": 2, "cr3_write": 1, "flush_all": 9},
                     cache_insns={"clflush": 3, "clwb": 1, "clflushopt": 0})
    est = estimate(p, c)
    expect = {
        "instructions": 500,
        "tlb_l1_hits": 50 * 1 + 80 * 2,
        "tlb_l2_hits": 15 * 7,
        "page_walks": 10 * 11,
        "walk_mem_refs": 25 * 3,
        "fault_entry_exit": 7 * 100,
        "fault_handlers": 3 * 10 + 2 * 20 + 1 * 30 + 1 * 5,
        "page_zeroing": (3 + 1) * 40,
        "cow_copy": 2 * 60,
        "major_io": 1000,
        "syscalls": 4 * 9,
        "tlb_flushes": 2 * 13 + 17,  # flush_all is not a Skylake op: no cost
        "cache_maintenance": 3 * 19 + 23,
    }
    assert dict(est.breakdown) == expect
    assert est.cycles == sum(expect.values())
    assert est.estimated == ()
    assert est.as_dict()["cycles"] == est.cycles


def test_fast_mode_uses_walks_as_the_miss_proxy_and_says_so() -> None:
    p = load_profile("neoverse-n1")
    est = estimate(p, CostCounters(instructions=100, walks=4, walk_mem_refs=16))
    assert est.breakdown["tlb_l1_hits"] == est.breakdown["tlb_l2_hits"] == 0
    assert est.breakdown["page_walks"] == round(4 * p.walk.latency)
    assert est.breakdown["walk_mem_refs"] == round(16 * p.walk.mem_ref_latency)
    assert set(est.estimated) == {"tlb_l1_hits", "tlb_l2_hits", "page_walks", "walk_mem_refs"}
    assert est.cycles == round(100 * p.cost.base_cpi) + est.breakdown["page_walks"] \
        + est.breakdown["walk_mem_refs"]


def test_nothing_costs_nothing() -> None:
    est = estimate(load_profile("skylake"), CostCounters(instructions=0))
    assert est.cycles == 0 and set(est.breakdown.values()) == {0}
