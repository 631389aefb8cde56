"""Reclaim and swap on the fake MMU: watermarks, LRU aging, swap-out through
rmap, do_swap_page, readahead, fork with swapped pages, file pages dropped
and refaulted, the OOM killer, and random mixes that keep every invariant.

Expected values come from Linux's rules (the formulas and the
decisions of shrink_page_list / do_swap_page), not from running the model.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from mmuemu.kernel.debug_vm import check_lru, check_mapcounts, check_swap, validate_mm
from mmuemu.kernel.exit import do_exit
from mmuemu.kernel.fault import AccessType, do_user_addr_fault
from mmuemu.kernel.fork import copy_process
from mmuemu.kernel.mm_types import PG, MmStruct, PageTest
from mmuemu.kernel.mmap import (
    MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, do_mmap, do_munmap,
)
from mmuemu.kernel.page_alloc import OutOfMemory, setup_per_zone_wmarks
from mmuemu.kernel.pgtable import pte_offset_lookup, ptep_get
from mmuemu.kernel.rmap import page_referenced
from mmuemu.kernel.sched import TaskState, TaskStruct
from mmuemu.kernel.swap import del_page_from_lru_list
from mmuemu.kernel.swapfile import swap_count, swp_entry
from mmuemu.kernel.uaccess import copy_from_user, copy_to_user
from mmuemu.kernel.vmscan import ScanControl, shrink_page_list
from tests.conftest import ARCHES, KernelRig, make_rig

PAGE = 4096
RW = 3


def _rig(arch: str, tmp_path: Path, mem: int = 1 << 20, swap: int = 4 << 20,
         **knobs: object) -> KernelRig:
    rig = make_rig(arch, tmp_path, mem_bytes=mem, swap_bytes=swap, **knobs)
    rig.kern.tasks[1] = rig.task
    rig.kern.current = rig.task
    return rig


def _stamp(tag: int, index: int) -> bytes:
    """A page's worth of data that names (tag, index) in every 8 bytes."""
    word = (tag * 1_000_003 + index * 7919 + 1).to_bytes(8, "little")
    return word * (PAGE // 8)


def _pte(mm: MmStruct, addr: int) -> int:
    pte_pa = pte_offset_lookup(mm, addr)
    return 0 if pte_pa is None else ptep_get(mm, pte_pa)


def _check_all(rig: KernelRig, mms: list[MmStruct]) -> None:
    for mm in mms:
        validate_mm(mm)
    check_mapcounts(rig.kern, mms)
    check_swap(rig.kern, mms)
    check_lru(rig.kern)


def test_watermarks_follow_linux() -> None:
    """min_free_kbytes = int_sqrt(16 * kB) clamped to [128, 65536]; min is
    that in pages; low/high add max(min/4, managed * 10 / 10000) once/twice."""
    from mmuemu.config import KernelConfig
    # 1 GiB: sqrt(16 * 1048576) = 4096 kB = 1024 pages; managed 262143:
    # 262143 * 10 // 10000 = 262 > 1024 / 4 = 256.
    k = KernelConfig(mem_bytes=1 << 30)
    assert k.min_free_kbytes == 4096
    w = setup_per_zone_wmarks(262143, k.min_free_kbytes)
    assert (w.min, w.low, w.high) == (1024, 1286, 1548)
    # 4 MiB: sqrt(16 * 4096) = 256 kB = 64 pages; 64 / 4 = 16 beats 1023 * 10 // 10000 = 1.
    k = KernelConfig(mem_bytes=4 << 20)
    assert k.min_free_kbytes == 256
    w = setup_per_zone_wmarks(1023, k.min_free_kbytes)
    assert (w.min, w.low, w.high) == (64, 80, 96)
    # 1 MiB: sqrt(16384) = 128 kB, exactly the floor.
    assert KernelConfig(mem_bytes=1 << 20).min_free_kbytes == 128
    assert KernelConfig(mem_bytes=64 << 30).min_free_kbytes == 32768
    assert KernelConfig(mem_bytes=1 << 40).min_free_kbytes == 65536
    assert KernelConfig(mem_bytes=4 << 20).swap_bytes == 8 << 20  # default: twice --mem


@pytest.mark.parametrize("arch", ARCHES)
def test_no_reclaim_while_memory_is_plentiful(arch: str, tmp_path: Path) -> None:
    rig = _rig(arch, tmp_path, mem=16 << 20)
    addr = do_mmap(rig.task.mm, None, 0, 64 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    for i in range(64):
        copy_to_user(rig.task, addr + i * PAGE, _stamp(1, i))
    rig.kern.kswapd()
    vm = rig.kern.vmstat
    assert (vm.pswpout, vm.pswpin, vm.pgmajfault, vm.pgscan_kswapd, vm.pgscan_direct) == \
        (0, 0, 0, 0, 0)
    assert not rig.kern.kswapd_wait
    assert rig.kern.lruvec.size("active_anon") >= 64


@pytest.mark.parametrize("arch", ARCHES)
def test_anon_pages_swap_out_and_come_back_intact(arch: str, tmp_path: Path) -> None:
    """Twice as much anonymous memory as RAM: pages are written to swap and
    read back on fault, with nothing lost; each swapped-out PTE holds its
    slot in the architecture's swap encoding."""
    rig = _rig(arch, tmp_path)
    kern, task = rig.kern, rig.task
    n = 2 * (kern.buddy.stats.managed_pages)
    addr = do_mmap(task.mm, None, 0, n * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    for i in range(n):
        copy_to_user(task, addr + i * PAGE, _stamp(7, i))
        kern.kswapd()
    assert kern.vmstat.pswpout > 0
    swapped = 0
    for i in range(n):
        pte = _pte(task.mm, addr + i * PAGE)
        if pte and not kern.fmt.pte_present(pte):
            swapped += 1
            typ, off = kern.fmt.pte_to_swp_entry(pte)
            assert pte == kern.fmt.swp_entry_to_pte(typ, off)
            assert swap_count(kern, swp_entry(typ, off)) == 1
    assert swapped == task.mm.rss_swap > n // 3
    _check_all(rig, [task.mm])
    for i in range(n):
        assert copy_from_user(task, addr + i * PAGE, PAGE) == _stamp(7, i), i
        kern.kswapd()
    assert kern.vmstat.pswpin > 0 and kern.vmstat.pgmajfault > 0
    _check_all(rig, [task.mm])
    # munmap frees every slot and swap-cache page
    assert do_munmap(task.mm, addr, n * PAGE) == 0
    assert kern.swap.nr_swap_pages == kern.swap.total_swap_pages
    assert kern.swapper_space.nrpages == 0
    _check_all(rig, [task.mm])


def _swap_out_one(rig: KernelRig, addr: int) -> int:
    """Reclaim the page at ``addr`` with shrink_page_list (after clearing the
    accessed bit its fault set); returns the PTE left behind."""
    kern = rig.kern
    page = kern.pfn_to_page(kern.fmt.pte_pfn(_pte(rig.task.mm, addr)))
    page_referenced(kern, page)
    del_page_from_lru_list(kern, page)
    page._count += 1  # isolate_lru_page()
    assert shrink_page_list(kern, [page], ScanControl(nr_to_reclaim=1)) == 1
    return _pte(rig.task.mm, addr)


@pytest.mark.parametrize("arch", ARCHES)
def test_write_fault_on_swapped_page_reuses_it_and_frees_the_slot(arch: str,
                                                                   tmp_path: Path) -> None:
    """do_swap_page for a write: the only user gets the page writable and
    dirty at once (one fault, no wp fault after), and its slot is freed."""
    rig = _rig(arch, tmp_path, mem=8 << 20)
    kern, task = rig.kern, rig.task
    addr = do_mmap(task.mm, None, 0, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    copy_to_user(task, addr, _stamp(3, 0))
    pte = _swap_out_one(rig, addr)
    assert not kern.fmt.pte_present(pte) and kern.vmstat.pswpout == 1
    assert kern.swap.nr_swap_pages == kern.swap.total_swap_pages - 1
    faults = task.counts.maj_flt + task.counts.min_flt
    out = do_user_addr_fault(task, addr, AccessType.WRITE)
    assert out.signal == 0 and out.major
    pte = _pte(task.mm, addr)
    assert kern.fmt.pte_write(pte) and kern.fmt.pte_dirty(pte)
    page = kern.pfn_to_page(kern.fmt.pte_pfn(pte))
    assert not PageTest(page, PG.owner_priv_1)  # left the swap cache
    assert kern.swap.nr_swap_pages == kern.swap.total_swap_pages
    assert copy_from_user(task, addr, PAGE) == _stamp(3, 0)
    assert task.counts.maj_flt + task.counts.min_flt == faults + 1
    _check_all(rig, [task.mm])


@pytest.mark.parametrize("arch", ARCHES)
def test_read_fault_keeps_the_swap_copy_until_the_write(arch: str, tmp_path: Path) -> None:
    """do_swap_page for a read maps the page read-only and keeps it in the
    swap cache (a clean copy stays on the device); the write that follows is
    a wp fault that reuses the page and drops the slot."""
    rig = _rig(arch, tmp_path, mem=8 << 20)
    kern, task = rig.kern, rig.task
    addr = do_mmap(task.mm, None, 0, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    copy_to_user(task, addr, _stamp(4, 0))
    _swap_out_one(rig, addr)
    out = do_user_addr_fault(task, addr, AccessType.READ)
    assert out.signal == 0 and out.major
    pte = _pte(task.mm, addr)
    assert kern.fmt.pte_present(pte) and not kern.fmt.pte_write(pte)
    page = kern.pfn_to_page(kern.fmt.pte_pfn(pte))
    assert PageTest(page, PG.owner_priv_1) and page._count == 2  # PTE + swap cache
    assert kern.swap.nr_swap_pages == kern.swap.total_swap_pages - 1
    # reclaiming it again needs no write: the swap copy is still good
    _swap_out_one(rig, addr)
    assert kern.vmstat.pswpout == 1
    assert do_user_addr_fault(task, addr, AccessType.READ).signal == 0
    reuses = kern.vmstat.cow_reuses
    out = do_user_addr_fault(task, addr, AccessType.WRITE)
    assert out.signal == 0 and not out.major and kern.vmstat.cow_reuses == reuses + 1
    assert kern.swap.nr_swap_pages == kern.swap.total_swap_pages
    assert copy_from_user(task, addr, PAGE) == _stamp(4, 0)
    _check_all(rig, [task.mm])


@pytest.mark.parametrize("arch", ARCHES)
def test_swapin_readahead_reads_the_aligned_cluster(arch: str, tmp_path: Path) -> None:
    """page_cluster 3: a major fault reads the 8-slot aligned cluster around
    the faulting slot; faults on the neighbours then hit the swap cache."""
    rig = _rig(arch, tmp_path, mem=8 << 20)
    kern, task = rig.kern, rig.task
    addr = do_mmap(task.mm, None, 0, 16 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    for i in range(16):
        copy_to_user(task, addr + i * PAGE, _stamp(5, i))
    slots = []
    for i in range(16):
        slots.append(kern.fmt.pte_to_swp_entry(_swap_out_one(rig, addr + i * PAGE))[1])
    # slots are handed out in order from 1 (slot 0 is the header)
    assert slots == list(range(1, 17))
    assert kern.vmstat.pswpout == 16
    # page 9 sits in slot 10: its cluster is slots 8..15 = pages 7..14
    assert do_user_addr_fault(task, addr + 9 * PAGE, AccessType.READ).major
    assert kern.vmstat.pswpin == 8
    for i in range(7, 15):
        out = do_user_addr_fault(task, addr + i * PAGE, AccessType.READ)
        assert out.signal == 0 and out.major == (False if i != 9 else out.major)
    assert kern.vmstat.pgmajfault == 1 and kern.vmstat.pswpin == 8
    for i in range(16):
        assert copy_from_user(task, addr + i * PAGE, PAGE) == _stamp(5, i)
    _check_all(rig, [task.mm])


@pytest.mark.parametrize("arch", ARCHES)
def test_fork_shares_swap_entries_and_cow_keeps_them_apart(arch: str, tmp_path: Path) -> None:
    """copy_page_range duplicates swap entries (swap_map 2). A write by either
    side after swap-in copies (the slot is still shared); both keep their data."""
    rig = _rig(arch, tmp_path, mem=8 << 20)
    kern, parent = rig.kern, rig.task
    addr = do_mmap(parent.mm, None, 0, 2 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    for i in range(2):
        copy_to_user(parent, addr + i * PAGE, _stamp(6, i))
    entry = swp_entry(*kern.fmt.pte_to_swp_entry(_swap_out_one(rig, addr)))
    child = copy_process(parent, 2)
    kern.tasks[2] = child
    assert swap_count(kern, entry) == 2 and child.mm.rss_swap == 1
    assert _pte(child.mm, addr) == _pte(parent.mm, addr)
    _check_all(rig, [parent.mm, child.mm])
    copies = kern.vmstat.cow_copies
    copy_to_user(child, addr, _stamp(60, 0))  # swap-in, then COW: the slot is shared
    assert kern.vmstat.cow_copies == copies + 1
    assert swap_count(kern, entry) == 1
    assert copy_from_user(parent, addr, PAGE) == _stamp(6, 0)
    assert copy_from_user(child, addr, PAGE) == _stamp(60, 0)
    _check_all(rig, [parent.mm, child.mm])
    do_exit(child, 0)
    _check_all(rig, [parent.mm])


@pytest.mark.parametrize("arch", ARCHES)
def test_clean_file_pages_are_dropped_and_refault_major(arch: str, tmp_path: Path) -> None:
    """Reading a file larger than memory through a private mapping: clean
    page-cache pages are dropped (no write), and a second pass refaults them
    with major faults; the data is the file's."""
    rig = _rig(arch, tmp_path)
    kern, task = rig.kern, rig.task
    n = 2 * kern.buddy.stats.managed_pages
    data = bytes((i * 13) % 251 for i in range(n * PAGE))
    (tmp_path / "big.dat").write_bytes(data)
    vfs = kern.vfs
    f = vfs.open_file(vfs.host_inode(str(tmp_path / "big.dat")), 0, "big.dat")
    addr = do_mmap(task.mm, f, 0, n * PAGE, 1, MAP_PRIVATE, 0)
    for rnd in range(2):
        for i in range(0, n, 3):
            assert copy_from_user(task, addr + i * PAGE, 16) == data[i * PAGE:i * PAGE + 16]
            kern.kswapd()
    vm = kern.vmstat
    assert vm.pgsteal_kswapd + vm.pgsteal_direct > 0
    assert vm.pswpout == 0  # file pages never go to swap
    assert f.f_mapping.nrpages < n
    _check_all(rig, [task.mm])


@pytest.mark.parametrize("arch", ARCHES)
def test_dirty_shared_file_pages_are_written_back_before_they_go(arch: str,
                                                                  tmp_path: Path) -> None:
    rig = _rig(arch, tmp_path)
    kern, task = rig.kern, rig.task
    n = 2 * kern.buddy.stats.managed_pages
    (tmp_path / "out.dat").write_bytes(bytes(n * PAGE))
    vfs = kern.vfs
    f = vfs.open_file(vfs.host_inode(str(tmp_path / "out.dat")), 2, "out.dat")
    addr = do_mmap(task.mm, f, 0, n * PAGE, RW, MAP_SHARED, 0)
    for i in range(n):
        copy_to_user(task, addr + i * PAGE, _stamp(8, i)[:64])
        kern.kswapd()
    assert kern.vmstat.nr_vmscan_write > 0
    on_disk = (tmp_path / "out.dat").read_bytes()
    # every page reclaim wrote holds its data on the host already
    written = [i for i in range(n) if on_disk[i * PAGE:i * PAGE + 64] == _stamp(8, i)[:64]]
    assert len(written) >= kern.vmstat.nr_vmscan_write
    for i in range(n):
        assert copy_from_user(task, addr + i * PAGE, 64) == _stamp(8, i)[:64]
    _check_all(rig, [task.mm])


@pytest.mark.parametrize("arch", ARCHES)
def test_oom_killer_takes_the_largest_process(arch: str, tmp_path: Path) -> None:
    """No swap and nothing reclaimable: the task with the largest badness
    (rss + swap entries + page tables) dies, not necessarily the allocator."""
    rig = _rig(arch, tmp_path, swap=0)
    kern, big = rig.kern, rig.task
    small = TaskStruct(pid=2, comm="small", mm=kern.mm_alloc())
    kern.tasks[2] = small
    killed: list[int] = []

    def kill(task: TaskStruct, sig: int) -> None:
        killed.append(task.pid)
        do_exit(task, 0, sig)
    kern.kill_task = kill
    lines: list[str] = []
    kern.printk = lines.append
    a = do_mmap(big.mm, None, 0, 1024 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    b = do_mmap(small.mm, None, 0, 1024 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    for i in range(150):
        copy_to_user(big, a + i * PAGE, b"x")
    for i in range(20):
        copy_to_user(small, b + i * PAGE, b"y")
    kern.current = small
    i = 20
    while not killed:
        assert do_user_addr_fault(small, b + i * PAGE, AccessType.WRITE).signal == 0
        i += 1
    assert killed == [1] and big.state is TaskState.ZOMBIE and big.oom_victim
    assert lines[-1].startswith("Out of memory: Killed process 1 (test) total-vm:4")
    assert lines[-2].startswith("small invoked oom-killer: gfp_mask=")
    assert kern.vmstat.oom_kill == 1
    # the victim's memory is back: the small task keeps going
    for j in range(i, i + 50):
        assert do_user_addr_fault(small, b + j * PAGE, AccessType.WRITE).signal == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_oom_of_the_allocating_task_is_sigkill(arch: str, tmp_path: Path) -> None:
    rig = _rig(arch, tmp_path, swap=0)
    kern, task = rig.kern, rig.task
    kern.printk = lambda line: None
    addr = do_mmap(task.mm, None, 0, 1024 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    sig = 0
    for i in range(1024):
        sig = do_user_addr_fault(task, addr + i * PAGE, AccessType.WRITE).signal
        if sig:
            break
    assert sig == 9 and task.oom_victim and kern.vmstat.oom_kill == 1
    with pytest.raises(OutOfMemory):  # no victim left to choose
        for _ in range(64):
            kern.alloc_page()


@pytest.mark.parametrize("seed", range(6))
def test_random_mixes_under_memory_pressure_keep_every_invariant(seed: int,
                                                                 tmp_path: Path) -> None:
    """mmap/munmap/touch (read and write)/fork/exit in three processes whose
    working sets exceed memory together: after every step no page is both
    free and mapped, mapcounts equal PTEs, every swap slot's count equals
    its swap PTEs, and every page read holds what was last written there."""
    rng = random.Random(seed)
    arch = ARCHES[seed % 2]
    rig = _rig(arch, tmp_path, mem=1 << 20, swap=2 << 20)
    kern = rig.kern
    base, window = 0x20_0000_0000, 160
    tasks = [rig.task]
    # per task: page index -> expected stamp (None: mapped, never written)
    model: dict[int, dict[int, int | None]] = {1: {}}
    # start from a full window, so that pressure comes early
    assert do_mmap(rig.task.mm, None, base, window * PAGE, RW,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, 0) == base
    for i in range(window):
        copy_to_user(rig.task, base + i * PAGE, (i + 1).to_bytes(8, "little") * 4)
        model[1][i] = i + 1
    next_pid = 2
    for step in range(400):
        task = rng.choice(tasks)
        kern.current = task
        m = model[task.pid]
        op = rng.random()
        if op < 0.10:
            start, n = rng.randrange(window), rng.randint(1, 48)
            n = min(n, window - start)
            assert do_mmap(task.mm, None, base + start * PAGE, n * PAGE, RW,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, 0) == base + start * PAGE
            for i in range(start, start + n):
                m[i] = None
        elif op < 0.13:
            start, n = rng.randrange(window), rng.randint(1, 16)
            n = min(n, window - start)
            assert do_munmap(task.mm, base + start * PAGE, n * PAGE) == 0
            for i in range(start, start + n):
                m.pop(i, None)
        elif op < 0.19 and len(tasks) < 3:
            child = copy_process(task, next_pid)
            kern.tasks[next_pid] = child
            tasks.append(child)
            model[next_pid] = dict(m)
            next_pid += 1
        elif op < 0.21 and len(tasks) > 1 and task is not rig.task:
            do_exit(task, 0)
            tasks.remove(task)
            del model[task.pid]
        elif m:
            # a burst of touches over a run of pages
            i0 = rng.choice(sorted(m))
            for i in range(i0, i0 + rng.randint(1, 24)):
                if i not in m:
                    break
                addr = base + i * PAGE
                if rng.random() < 0.5:
                    stamp = step * 1000 + i
                    copy_to_user(task, addr, stamp.to_bytes(8, "little") * 4)
                    m[i] = stamp
                else:
                    got = copy_from_user(task, addr, 32)
                    want = 0 if m[i] is None else m[i]
                    assert got == want.to_bytes(8, "little") * 4, (seed, step, task.pid, i)
        if step % 3 == 0:
            kern.kswapd()
        live = [t.mm for t in tasks]
        _check_all(rig, live)
    assert kern.vmstat.pswpout > 0 and kern.vmstat.pswpin > 0
    for t in tasks:
        for i, stamp in model[t.pid].items():
            want = 0 if stamp is None else stamp
            assert copy_from_user(t, base + i * PAGE, 8) == want.to_bytes(8, "little")
    for t in tasks[1:]:
        do_exit(t, 0)
    do_munmap(rig.task.mm, base, window * PAGE)
    _check_all(rig, [rig.task.mm])
    assert kern.swap.nr_swap_pages == kern.swap.total_swap_pages


@pytest.mark.parametrize("arch", ARCHES)
def test_proc_files_show_swap(arch: str, tmp_path: Path) -> None:
    """smaps' Swap: counts the VMA's swap entries; /proc/vmstat and
    /proc/meminfo report the swap traffic and the free swap."""
    from mmuemu.kernel.proc import proc_file
    rig = _rig(arch, tmp_path, mem=8 << 20)
    kern, task = rig.kern, rig.task
    addr = do_mmap(task.mm, None, 0, 3 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    for i in range(3):
        copy_to_user(task, addr + i * PAGE, _stamp(9, i))
    _swap_out_one(rig, addr)
    _swap_out_one(rig, addr + PAGE)
    smaps = proc_file(kern, task, "/proc/self/smaps")
    assert smaps is not None
    text = smaps.decode()
    block = text[text.index(f"{addr:08x}-"):]
    assert "\nSwap:                  8 kB\n" in block.split("VmFlags")[0]
    raw_vmstat, raw_meminfo = (proc_file(kern, task, p) for p in ("/proc/vmstat", "/proc/meminfo"))
    assert raw_vmstat is not None and raw_meminfo is not None
    vmstat = dict(line.split() for line in raw_vmstat.decode().splitlines())
    assert vmstat["pswpout"] == "2" and vmstat["pswpin"] == "0"
    meminfo = raw_meminfo.decode()
    total = kern.swap.total_swap_pages * 4
    assert f"SwapTotal:      {total:>8} kB" in meminfo
    assert f"SwapFree:       {total - 8:>8} kB" in meminfo


def _file_heavy_inactive_list(arch: str, tmp_path: Path, swappiness: int = 60) -> KernelRig:
    """Anon pages all active, every file page inactive and mapped executable and
    referenced (so reclaim activates it), free pages above the high watermark
    once file pages count: the state where get_scan_count's "enough inactive
    file" rule keeps anon unscanned at every priority but the last."""
    rig = _rig(arch, tmp_path, mem=1 << 20, swappiness=swappiness)
    kern, task = rig.kern, rig.task
    (tmp_path / "text.dat").write_bytes(bytes(64 * PAGE))
    vfs = kern.vfs
    f = vfs.open_file(vfs.host_inode(str(tmp_path / "text.dat")), 0, "text.dat")
    text = do_mmap(task.mm, f, 0, 64 * PAGE, 5, MAP_PRIVATE, 0)  # PROT_READ|PROT_EXEC
    for i in range(64):
        copy_from_user(task, text + i * PAGE, 8)
    anon = do_mmap(task.mm, None, 0, 150 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    for i in range(150):
        copy_to_user(task, anon + i * PAGE, _stamp(3, i))
    lv = kern.lruvec
    assert lv.size("inactive_file") >= lv.size("active_file")  # not inactive_file_is_low
    assert lv.size("inactive_file") + kern.buddy.stats.nr_free_pages > kern.wmark.high
    return rig


@pytest.mark.parametrize("arch", ARCHES)
def test_the_last_reclaim_pass_scans_every_list_whole(arch: str, tmp_path: Path) -> None:
    """Linux 3.9+ get_scan_count: at priority 0 with swappiness > 0 there is no
    balancing (SCAN_EQUAL): each evictable list is scanned whole. Above
    priority 0 the inactive file list alone is scanned in this state."""
    from mmuemu.kernel.vmscan import ScanControl as SC, get_scan_count, try_to_free_pages
    rig = _file_heavy_inactive_list(arch, tmp_path)
    kern = rig.kern
    lv = kern.lruvec
    sizes = {lru: lv.size(lru) for lru in ("inactive_anon", "active_anon", "inactive_file",
                                          "active_file")}
    assert get_scan_count(kern, SC(nr_to_reclaim=32, priority=0)) == sizes
    for priority in (1, 6, 12):
        nr = get_scan_count(kern, SC(nr_to_reclaim=32, priority=priority))
        assert nr["inactive_anon"] == nr["active_anon"] == 0
        assert nr["inactive_file"] == sizes["inactive_file"] >> priority
    # so direct reclaim from here swaps anon out instead of giving up on it
    assert try_to_free_pages(kern) > 0
    assert kern.vmstat.pswpout > 0
    _check_all(rig, [rig.task.mm])


@pytest.mark.parametrize("arch", ARCHES)
def test_swappiness_zero_keeps_the_last_pass_balanced(arch: str, tmp_path: Path) -> None:
    """With vm.swappiness 0 the priority-0 pass keeps the usual rules: here,
    the inactive file list only."""
    from mmuemu.kernel.vmscan import ScanControl as SC, get_scan_count
    rig = _file_heavy_inactive_list(arch, tmp_path, swappiness=0)
    nr = get_scan_count(rig.kern, SC(nr_to_reclaim=32, priority=0))
    assert nr["inactive_anon"] == nr["active_anon"] == 0
    assert nr["inactive_file"] == rig.kern.lruvec.size("inactive_file")
