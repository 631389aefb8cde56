"""Growing Unicorn's soft TLB (mmuemu/emu/_native/softtlb.h).

The policy, with a fake ``uc_ctl`` that records each flush: after 2 x E
resolved fills without a flush (E = the estimated table size, 256 at first)
the fill hook flushes and E doubles; a fetch fill leaves the flush to the next
block hook; a flush from elsewhere after 2 x E fills doubles E too; the
ceiling stops it. Then, under Unicorn with the machine: growing the table
changes how often Unicorn fills and nothing the model computes (faults, guest
output, exact mode's architected TLB counts, traces under memory pressure).
Speed is measured by the benchmark (``python -m bench``), not here.
"""
from __future__ import annotations

import ctypes
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mmuemu._types import Access, Arch
from mmuemu.config import KernelConfig, RunConfig
from mmuemu.emu.machine import Machine
from mmuemu.emu.native import UC_CTL_FLUSH_CODE, NativeFastPath
from mmuemu.hw.x86_64 import pte as x86
from mmuemu.hw.physmem import PhysMem
from tests.conftest import guest
from tests.emu.test_native import BLOCK_HOOK, FORMATS, TLB_FILL, UcTlbEntry, _GuestTables

CTL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
FAKE_UC = 0x1000  # any non-NULL engine pointer: the fake ctl never dereferences it
PAGES = 64


class Policy:
    """A fast path over PAGES mapped pages, with a ctl that records flushes."""

    def __init__(self, max_entries: int) -> None:
        phys = PhysMem(4 << 20)
        tables = self.tables = _GuestTables(phys, FORMATS[Arch.X86_64])
        for i in range(PAGES):
            tables.map(0x400000 + i * 4096, 0x100 + i, x86.PAGE_SHARED_EXEC)
        self.native = NativeFastPath(phys, Arch.X86_64)
        self.native.set_root(tables.root)
        self.flushes: list[int] = []  # the fill count at each flush

        def ctl(uc: int, code: int) -> int:
            assert (uc, code & 0xFFFFFFFF) == (FAKE_UC, UC_CTL_FLUSH_CODE)
            self.flushes.append(self.native.fills)
            return 0

        self._ctl = CTL(ctl)
        self.native.grow_soft_tlb(None, max_entries,
                                  ctl_addr=ctypes.cast(self._ctl, ctypes.c_void_p).value)
        self._fill = TLB_FILL(self.native.tlb_fill_addr)
        self._block = BLOCK_HOOK(self.native.block_hook_addr)
        self._entry = UcTlbEntry()

    def fill(self, n: int, access: Access = Access.READ) -> None:
        for i in range(n):
            va = 0x400000 + (self.native.fills % PAGES) * 4096
            assert self._fill(FAKE_UC, va, int(access), ctypes.byref(self._entry),
                              self.native.state_addr)

    def block(self) -> None:
        self._block(FAKE_UC, 0x400000, 4, self.native.state_addr)

    @property
    def estimate(self) -> int:
        return int(self.native.soft_tlb.estimate)


def test_each_flush_comes_after_twice_the_estimate_and_doubles_it() -> None:
    p = Policy(1 << 20)
    p.fill(512 + 1024 + 2048 + 100)
    # 2 x 256 fills, then 2 x 512 more, then 2 x 1024 more
    assert p.flushes == [512, 512 + 1024, 512 + 1024 + 2048]
    assert p.estimate == 2048
    assert p.native.soft_tlb.as_dict() == {"max_entries": 1 << 20, "estimated_entries": 2048,
                                           "grow_flushes": 3}


def test_the_ceiling_stops_the_flushes() -> None:
    p = Policy(1024)
    p.fill(20_000)
    assert p.flushes == [512, 512 + 1024]  # 256 -> 512 -> 1024, then never again
    assert p.estimate == 1024


@pytest.mark.parametrize("max_entries", [0, 256])
def test_at_or_below_unicorns_initial_size_nothing_is_flushed(max_entries: int) -> None:
    p = Policy(max_entries)
    p.fill(5000)
    p.block()
    assert p.flushes == [] and p.native.soft_tlb.grow_flushes == 0


def test_a_fetch_fill_leaves_the_flush_to_the_next_block_hook() -> None:
    p = Policy(1 << 20)
    p.fill(511)
    p.fill(1, Access.FETCH)  # the 512th fill: a fetch may not flush inside the fill
    assert p.flushes == [] and p.native.soft_tlb.pending == 1
    p.block()
    assert p.flushes == [512] and p.native.soft_tlb.pending == 0
    assert p.estimate == 512
    p.block()
    assert p.flushes == [512]  # once


def test_other_flushes_restart_the_count_and_double_only_after_enough_fills() -> None:
    p = Policy(1 << 20)
    p.fill(300)
    p.native.uc_flushed()  # the kernel model flushed: 300 < 2 x 256, the table kept its size
    assert p.estimate == 256
    p.fill(511)
    assert p.flushes == []  # the count restarted at the flush
    p.fill(1)
    assert p.flushes == [300 + 512] and p.estimate == 512
    p.fill(1023)
    p.fill(1, Access.FETCH)  # 2 x 512: a flush is due at the next block ...
    p.native.uc_flushed()  # ... but the kernel model flushes first: QEMU grew the table then
    assert p.estimate == 1024 and p.native.soft_tlb.pending == 0
    p.block()
    assert p.flushes == [300 + 512]  # no second flush for the same growth


def test_the_kernel_models_flush_is_one_call_that_also_restarts_the_count() -> None:
    """Machine's flush in fast mode: uc_ctl and the sizing's bookkeeping in one
    foreign call; a failed flush raises like the binding and is not counted."""
    from unicorn import UcError

    p = Policy(1 << 20)
    status = [0]

    def ctl(uc: int, code: int) -> int:
        assert (uc, code & 0xFFFFFFFF) == (FAKE_UC, UC_CTL_FLUSH_CODE)
        p.flushes.append(-1)
        return status[0]

    kernel_ctl = CTL(ctl)
    fake_uc = type("FakeUc", (), {"_uch": ctypes.c_void_p(FAKE_UC)})()
    flush = p.native.uc_tlb_flusher(fake_uc, ctl_addr=ctypes.cast(kernel_ctl, ctypes.c_void_p).value)
    p.fill(600)  # past 2 x 256: the policy flushed once (at 512) and doubled
    assert p.flushes == [512] and p.estimate == 512
    flush()  # 88 fills since: the table keeps its size, the count restarts
    assert p.flushes == [512, -1] and p.estimate == 512 and p.native.soft_tlb.fills == 0
    p.fill(1023)
    assert p.flushes == [512, -1]
    status[0] = 5
    with pytest.raises(UcError):
        flush()
    assert p.native.soft_tlb.fills == 1023  # not counted as a flush
    p.fill(1)
    assert p.flushes == [512, -1, -1, 512 + 88 + 1024] and p.estimate == 1024


class FaultingFill:
    """The fault-handling fill hook over Policy's tables, its flush deferral
    going to a fake ctl that counts flushes."""

    def __init__(self, handler: Any) -> None:
        self.p = Policy(1 << 20)
        self.uc_flushes = 0

        def ctl(uc: int, code: int) -> int:
            assert (uc, code & 0xFFFFFFFF) == (FAKE_UC, UC_CTL_FLUSH_CODE)
            self.uc_flushes += 1
            return 0

        self._ctl = CTL(ctl)
        self.defer = self.p.native.flush_deferral(ctl_addr=ctypes.cast(self._ctl, ctypes.c_void_p).value)
        self.p.native.set_fault_handler(handler)
        self._fill = TLB_FILL(self.p.native.tlb_fill_faulting_addr)

    def fill(self, va: int) -> bool:
        return bool(self._fill(FAKE_UC, va, int(Access.WRITE), ctypes.byref(UcTlbEntry()),
                               self.p.native.state_addr))


UNMAPPED = 0x400000 + PAGES * 4096  # the page after Policy's mapped ones


@pytest.mark.parametrize("maps, resolves, unicorn_flushes", [
    (True, 1, 0),    # refilled: Unicorn's entry for the page is replaced, nothing flushed
    (False, 0, 1),   # not resolved (a signal): no refill, so the flush is made
    (False, 1, 1),   # "resolved" but the walk still faults: no refill, flushed
])
def test_a_flush_left_to_the_refill_is_made_only_without_one(maps: bool, resolves: int,
                                                            unicorn_flushes: int) -> None:
    """The fault handler leaves its flush of the faulting page to the refill
    (a COW fault's ptep_clear_flush): Unicorn's refill writes over that
    page's entry. Without a refill, the flush is made after the handler."""
    def handler(vaddr: int, access: int) -> int:
        if maps:
            f.p.tables.map(UNMAPPED, 0x300, x86.PAGE_SHARED_EXEC)
        f.defer[0] = 1
        return resolves

    f = FaultingFill(handler)
    assert f.fill(UNMAPPED) is maps
    assert f.uc_flushes == unicorn_flushes
    assert f.p.native.flushes_elided == 1 - unicorn_flushes
    assert f.defer[0] == 0  # taken: the next fault starts clear
    assert f.fill(UNMAPPED) is maps and f.uc_flushes == unicorn_flushes * 2


def test_only_the_faulting_pages_flush_is_deferred() -> None:
    """Fast mode's UnicornTlb: a flush of the page being refilled is left to
    the refill; a flush of any other page, or with no fault being handled,
    flushes Unicorn's table (the kernel model's TLB model sees all three)."""
    m = Machine(guest("x86_64", "anon_touch"), ["4"], KernelConfig(),
                RunConfig(root=tempfile.mkdtemp(prefix="mmuemu-softtlb-")))
    tlb, mm, page = m.tlb, m.task.mm, 0x7000_0000
    before = tlb.counts["uc_flushes"], sum(m.maint.counts.values())
    tlb.flush_tlb_page(mm, page)
    tlb.refill_vpn = page >> 12
    tlb.flush_tlb_page(mm, page + 0x10)
    tlb.flush_tlb_page(mm, page + 4096)
    assert tlb.counts["uc_flushes"] == before[0] + 2 and tlb.deferred_flushes == 1
    assert sum(m.maint.counts.values()) == before[1] + 3


# --- under Unicorn, with the machine ----------------------------------------------------------

def _run(arch: str, prog: str, args: list[str], mode: str, soft_tlb_max: int,
         kconfig: KernelConfig | None = None, trace: Path | None = None) -> tuple[Any, dict]:
    from mmuemu.emu.tracing import FaultTracer
    root = tempfile.mkdtemp(prefix="mmuemu-softtlb-")
    rconfig = RunConfig(mode=mode, root=root, soft_tlb_max=soft_tlb_max)
    if trace is None:
        m = Machine(guest(arch, prog), args, kconfig or KernelConfig(), rconfig)
        res = m.run()
    else:
        with FaultTracer(str(trace), argv=args) as tracer:
            m = Machine(guest(arch, prog), args, kconfig or KernelConfig(), rconfig,
                        tracer=tracer)
            res = m.run()
    return res, m.stats()


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_growing_the_table_takes_fills_away_and_nothing_else(arch: str,
                                                            capfd: pytest.CaptureFixture) -> None:
    """tlb_stress 4096 pages x 64 rounds: with Unicorn's 256 entries every touch
    after the first round fills (one per page per round); grown past 4096
    entries the rounds stop filling. Growing takes at least 4 doublings (512,
    1024, 2048, 4096) and 2 x (256 + ... + 2048) fills; it can take two more
    when QEMU shrank the table to its minimum of 64 during the first round's
    8192 page-fault flushes (it does so after a quiet 100 ms window), so the
    estimate runs 4 times ahead: at most 2 x (256 + ... + 16384) = 65 k
    fills, plus the first round's."""
    pages, rounds = 4096, 64
    fixed = _run(arch, "tlb_stress", [str(pages), str(rounds)], "fast", 256)
    out_fixed = capfd.readouterr().out
    grown = _run(arch, "tlb_stress", [str(pages), str(rounds)], "fast", 1 << 20)
    assert capfd.readouterr().out == out_fixed and "checksum=" in out_fixed
    (res_f, st_f), (res_g, st_g) = fixed, grown
    assert res_f.exit_code == res_g.exit_code == 0
    for key in ("faults", "instructions", "syscalls", "vmstat", "mm", "flushes"):
        assert st_f[key] == st_g[key], key
    assert st_f["soft_tlb"]["grow_flushes"] == 0
    assert st_g["soft_tlb"]["grow_flushes"] >= 4
    assert st_f["tlb_fills"] >= pages * (rounds - 1)
    assert st_g["tlb_fills"] * 3 < st_f["tlb_fills"]


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_exact_modes_tlb_counts_do_not_depend_on_unicorns_table(arch: str) -> None:
    """The architected model sees every access whatever Unicorn caches."""
    args = ["2000", "16"]
    _, fixed = _run(arch, "tlb_stress", args, "exact", 256)
    _, grown = _run(arch, "tlb_stress", args, "exact", 1 << 20)
    assert grown["soft_tlb"]["grow_flushes"] > 0
    for key in ("faults", "instructions", "tlb", "walks", "cycles", "cycles_breakdown"):
        assert fixed[key] == grown[key], key
    assert fixed["exact_model"]["lookups"] == grown["exact_model"]["lookups"]
    assert grown["tlb_fills"] < fixed["tlb_fills"]


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("prog, args", [("fork_swap", ["768"])])
def test_reclaim_does_not_depend_on_unicorns_table(arch: str, prog: str, args: list[str],
                                                   tmp_path: Path) -> None:
    """page_referenced() clears accessed bits; the next access must set them again
    whatever Unicorn still caches (its table size depends on wall time and on
    the growth policy), or reclaim, and the trace, would depend on timing."""
    kconfig = KernelConfig(mem_bytes=3 << 20)
    traces = []
    for max_entries in (256, 1 << 20):
        trace = tmp_path / f"{max_entries}.jsonl"
        res, st = _run(arch, prog, args, "fast", max_entries, kconfig, trace)
        assert res.exit_code == 0 and st["vmstat"]["pswpout"] > 0
        traces.append(trace.read_bytes())
    assert traces[0] == traces[1]


@pytest.mark.parametrize("arch, invalidations", [("x86_64", 0), ("aarch64", 1)])
def test_clearing_an_accessed_bit_drops_unicorns_translation(arch: str,
                                                             invalidations: int) -> None:
    """ptep_clear_flush_young: arm64 Linux invalidates and x86-64 Linux does not
    (the architectural counts say so), but on both Unicorn's cached translation
    goes, so that the next access sets the bit again whatever Unicorn cached."""
    m = Machine(guest(arch, "anon_touch"), ["4"], KernelConfig(),
                RunConfig(root=tempfile.mkdtemp(prefix="mmuemu-softtlb-")))
    before_uc = m.tlb.counts["uc_flushes"]
    before_arch = sum(m.maint.counts.values())
    m.tlb.clear_flush_young(m.task.mm, m.task.mm.start_stack & ~0xFFF)
    assert m.tlb.counts["uc_flushes"] == before_uc + 1
    assert sum(m.maint.counts.values()) - before_arch == invalidations


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_cow_faults_keep_unicorns_table_and_the_child_reads_its_own_copies(
        arch: str, capfd: pytest.CaptureFixture) -> None:
    """cow_fork 300: the child's write to each shared page is a COW fault whose
    flush of that page is left to the refill; the child then reads every
    page back and exits 99 if any read still reached the parent's frame
    (a stale translation). Its status is the sum of what it read before
    writing, (i + 1) for page i, mod 64; the parent's is the sum of its
    own (i + 2)."""
    n = 300
    res, st = _run(arch, "cow_fork", [str(n)], "fast", 1 << 20)
    out = capfd.readouterr().out
    child = sum((i + 1) & 0xFF for i in range(n)) & 0x3F
    parent = sum((i + 2) & 0xFF for i in range(n))
    assert res.exit_code == 0
    assert f"pages={n} child_status={child} parent_sum={parent}" in out
    assert st["faults"]["by_type"]["cow"] >= n
    # every page flush the kernel model asked for was of the page being refilled
    assert st["soft_tlb"]["page_flushes_left_to_refill"] == st["tlb_flush_requests"]["page"] >= n
