"""--mode raw with several processes: fork copies, context switches, isolation.

Raw mode has one Unicorn address space, so a context switch unmaps the
running task's pages and maps the next task's. These tests hold the switch
to Unicorn calls per run of pages (never per page) and check that each task
sees its own memory across many switches, including after a detached task's
page table changed behind its back. Speed itself is measured by the
benchmark (``python -m bench --workloads cow``), not here.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mmuemu.config import KernelConfig, RunConfig
from mmuemu.emu.machine import Machine
from mmuemu.emu.raw import RawMapper
from mmuemu.kernel.mmap import find_vma
from mmuemu.kernel.pgtable import pte_offset_lookup
from mmuemu.kernel.sched import TaskStruct
from mmuemu.kernel.syscalls import kernel_clone
from tests.conftest import ARCHES, guest
from tests.emu.helpers import run_mmuemu

SIGCHLD = 17


def _raw_machine(arch: str, tmp_path: Path, pages: int = 512) -> Machine:
    return Machine(guest(arch, "cow_fork"), [str(pages)], kconfig=KernelConfig(),
                   rconfig=RunConfig(mode="raw", root=str(tmp_path)))


def _fork(m: Machine) -> TaskStruct:
    pid = kernel_clone(m.sysctx, SIGCHLD)
    assert pid > 1
    return m.kern.tasks[pid]


def _data_pages(m: Machine, task: TaskStruct) -> list[int]:
    """Addresses of a few pages of the task's writable VMAs (stack and data)."""
    out: set[int] = set()
    for vma in task.mm.mm_rb:
        if vma.vm_flags & 0x2:  # VM_WRITE
            mid = (vma.vm_start + vma.vm_end) // 2 & ~0xFFF
            out |= {vma.vm_start, mid, vma.vm_end - 4096}
    return sorted(out)


@pytest.mark.parametrize("arch", ARCHES)
def test_switches_keep_each_task_s_memory(arch: str, tmp_path: Path) -> None:
    m = _raw_machine(arch, tmp_path)
    parent = m.task
    addrs = _data_pages(m, parent)
    assert len(addrs) >= 4
    for a in addrs:
        m.uc.mem_write(a, b"parent")
    child = _fork(m)
    parent_map, child_map = m._raw_mappers[parent.pid], m._raw_mappers[child.pid]
    for round_ in range(20):
        m._switch_to(child)
        assert m.raw is child_map and child_map.attached and not parent_map.attached
        for a in addrs:  # the child's private copy, made at fork
            want = b"parent" if round_ == 0 else b"child%d" % (round_ - 1)
            assert bytes(m.uc.mem_read(a, len(want))) == want
            m.uc.mem_write(a, b"child%d" % round_)
        m._switch_to(parent)
        for a in addrs:
            assert bytes(m.uc.mem_read(a, 6)) == b"parent"


@pytest.mark.parametrize("arch", ARCHES)
def test_a_switch_costs_unicorn_calls_per_run_not_per_page(arch: str, tmp_path: Path) -> None:
    m = _raw_machine(arch, tmp_path)
    child = _fork(m)
    mappers: dict[int, RawMapper] = m._raw_mappers
    pages = {pid: len(mp.pages) for pid, mp in mappers.items()}
    assert min(pages.values()) > 2048  # the stack (grown fully to 8 MiB) and the image
    m._switch_to(child)
    m._switch_to(m.init)  # both have been attached once: their layouts are known
    runs = {pid: len(mp._get_layout().runs) for pid, mp in mappers.items()}
    # buddy blocks: a handful of runs per VMA, not one per page
    assert all(runs[pid] * 16 < pages[pid] for pid in mappers), (runs, pages)
    before = {pid: dict(mp.uc_calls) for pid, mp in mappers.items()}
    for _ in range(10):
        m._switch_to(child)
        m._switch_to(m.init)
    for pid, mp in mappers.items():
        calls = {k: mp.uc_calls[k] - before[pid][k] for k in mp.uc_calls}
        assert calls["map"] == 10 * runs[pid], (pid, calls, runs)
        assert calls["unmap"] == 10 * len(mp._get_layout().va_runs)
        assert calls["protect"] == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_a_page_table_change_while_switched_out_is_seen(arch: str, tmp_path: Path) -> None:
    """attach() compares the PTEs with what they were at detach; a change sends it
    down the slow path, which maps what the page tables say now."""
    m = _raw_machine(arch, tmp_path)
    parent = m.task
    addrs = _data_pages(m, parent)
    for a in addrs:
        m.uc.mem_write(a, b"parent")
    child = _fork(m)
    m._switch_to(child)
    # behind the parent's back: clear one PTE (as MADV_DONTNEED's zap would)
    zapped = addrs[0]
    pte_pa = pte_offset_lookup(parent.mm, zapped)
    assert pte_pa is not None
    m.phys.write_u64(pte_pa, 0)
    m._switch_to(parent)
    mapper = m._raw_mappers[parent.pid]
    assert zapped >> 12 in mapper.pages  # populated again, from the (now empty) PTE
    assert bytes(m.uc.mem_read(zapped, 6)) == bytes(6)  # a fresh anonymous page
    for a in addrs[1:]:
        assert bytes(m.uc.mem_read(a, 6)) == b"parent"
    assert find_vma(parent.mm, zapped) is not None


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name,args", [("cow_fork", ["4096"]), ("fork_swap", ["512"])])
def test_raw_fork_guests_match_fast_mode(arch: str, name: str, args: list[str],
                                         tmp_path: Path) -> None:
    guest(arch, name)
    fast = run_mmuemu(arch, name, args, tmp_path)
    (tmp_path / "raw").mkdir()
    raw = run_mmuemu(arch, name, args, tmp_path / "raw", ["--mode", "raw"])
    assert (raw.stdout, raw.status) == (fast.stdout, fast.status), raw.stderr.decode()
    assert raw.stats is not None and raw.stats["tlb_fills"] == 0
    assert raw.stats["context_switches"] >= 2
