"""Cache maintenance on the fake MMU (mmuemu/kernel/cacheflush.py, mmuemu/hw/cache.py).

Expected counts come from Linux 6.x's arm64 code: a page synced for
instruction fetch costs one ``dc cvau`` and one ``ic ivau`` per 64-byte line
(64 each for 4 KiB), a ``dsb ish`` after each loop and an ``isb``; and only
pages without PG_dcache_clean are synced. x86-64's hooks are all empty.
"""
from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from mmuemu._types import Arch
from mmuemu.config import KernelConfig
from mmuemu.hw.cache import ARM64_CACHE, X86_CACHE, CacheConfig, CacheMaintenance
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import VmProt
from mmuemu.kernel.cacheflush import (
    Arm64AliasingDcache, Arm64CacheFlush, X86CacheFlush, cacheflush_for, flush_dcache_page,
)
from mmuemu.kernel.exit import exit_mmap
from mmuemu.kernel.fault import AccessType, do_user_addr_fault
from mmuemu.kernel.filemap import generic_perform_write
from mmuemu.kernel.fork import copy_process
from mmuemu.kernel.kernel import Kernel
from mmuemu.kernel.mm_types import PG_dcache_clean, PageTest
from mmuemu.kernel.mmap import (
    MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, do_mmap, do_mprotect, do_munmap,
)
from mmuemu.kernel.pgtable import ptep_get, pte_offset_lookup, set_pte_at
from mmuemu.kernel.sched import TaskStruct
from mmuemu.kernel.tlbflush import RecordingFlush
from tests.conftest import FORMATS

PAGE = 4096
LINES = PAGE // 64
R, W, X = 1, 2, 4
ARM64_SYNC = {"dc_cvau": LINES, "ic_ivau": LINES, "dsb": 2, "isb": 1}


def _kernel(arch: str, root: Path, cache: CacheConfig | None = None) -> tuple[Kernel, TaskStruct]:
    a = Arch.ARM64 if arch == "aarch64" else Arch.X86_64
    hw = CacheMaintenance(a, cache or (ARM64_CACHE if a is Arch.ARM64 else X86_CACHE))
    config = KernelConfig(mem_bytes=16 << 20)
    kern = Kernel(config, PhysMem(config.mem_bytes), FORMATS[arch](), RecordingFlush(),
                  root=str(root), cacheflush=cacheflush_for(arch, hw))
    mm = kern.mm_alloc()
    from mmuemu.kernel.binfmt_elf import mmap_base
    mm.mmap_base = mmap_base(kern, mm.task_size)
    task = TaskStruct(pid=1, comm="test", mm=mm)
    kern.current = task
    return kern, task


def _insns(kern: Kernel) -> dict[str, int]:
    hw = kern.cacheflush.hw
    assert hw is not None
    return {k: v for k, v in hw.kernel.items() if v}


def _page(kern: Kernel, task: TaskStruct, addr: int):  # type: ignore[no-untyped-def]
    pte_pa = pte_offset_lookup(task.mm, addr)
    assert pte_pa is not None
    return kern.pfn_to_page(kern.fmt.pte_pfn(ptep_get(task.mm, pte_pa)))


def _times(counts: dict[str, int], n: int) -> dict[str, int]:
    return {k: v * n for k, v in counts.items()}


def test_arm64_syncs_a_new_executable_page_once(tmp_path: Path) -> None:
    kern, task = _kernel("aarch64", tmp_path)
    assert isinstance(kern.cacheflush, Arm64CacheFlush)
    addr = do_mmap(task.mm, None, 0, 2 * PAGE, R | W | X, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    do_user_addr_fault(task, addr, AccessType.WRITE)  # a new page, mapped executable
    assert _insns(kern) == ARM64_SYNC
    page = _page(kern, task, addr)
    assert PageTest(page, PG_dcache_clean)
    do_user_addr_fault(task, addr + PAGE, AccessType.READ)  # the zero page: special, no sync
    assert _insns(kern) == ARM64_SYNC
    # fork copies the PTE (set_pte_at of a clean page: nothing); the child's write
    # copies the page (copy_user_highpage → flush_dcache_page) and maps the copy:
    # a new page, synced
    child = copy_process(task, 2)
    assert _insns(kern) == ARM64_SYNC
    do_user_addr_fault(child, addr, AccessType.WRITE)
    assert _insns(kern) == _times(ARM64_SYNC, 2)
    calls = kern.cacheflush.calls
    assert calls["sync_icache_dcache"] == 2 and calls["copy_user_highpage"] == 1
    assert calls["flush_cache_dup_mm"] == 1 and calls["flush_cache_page"] == 1


def test_arm64_leaves_non_executable_pages_alone(tmp_path: Path) -> None:
    kern, task = _kernel("aarch64", tmp_path)
    addr = do_mmap(task.mm, None, 0, 4 * PAGE, R | W, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    for i in range(4):
        do_user_addr_fault(task, addr + i * PAGE, AccessType.WRITE)
    assert _insns(kern) == {}
    # mprotect to executable: change_protection's set_pte_at syncs each page
    assert do_mprotect(task.mm, addr, 4 * PAGE, R | X) == 0
    assert _insns(kern) == _times(ARM64_SYNC, 4)
    assert kern.cacheflush.calls["flush_cache_range"] == 1  # tlb_start_vma, one VMA
    # writable again and executable again: the pages kept PG_dcache_clean (the
    # kernel never wrote them), so user space must sync what it writes itself
    assert do_mprotect(task.mm, addr, 4 * PAGE, R | W) == 0
    assert do_mprotect(task.mm, addr, 4 * PAGE, R | X) == 0
    assert _insns(kern) == _times(ARM64_SYNC, 4)


@pytest.mark.parametrize("cache, expect", [
    (CacheConfig(idc=True, dic=False), {"ic_ivau": LINES, "dsb": 2, "isb": 1}),
    (CacheConfig(idc=False, dic=True), {"dc_cvau": LINES, "dsb": 1, "isb": 1}),
    (CacheConfig(idc=True, dic=True), {"dsb": 1, "isb": 1}),
    (CacheConfig(icache_aliasing=True), {"dc_cvau": LINES, "ic_ialluis": 1, "dsb": 2}),
    (CacheConfig(line_bytes=128), {"dc_cvau": 32, "ic_ivau": 32, "dsb": 2, "isb": 1}),
])
def test_arm64_sync_follows_ctr_el0(tmp_path: Path, cache: CacheConfig,
                                    expect: dict[str, int]) -> None:
    """IDC skips the D-cache clean (dsb ishst only), DIC the I-cache invalidation
    (isb only), an aliasing I-cache is invalidated whole (ic ialluis)."""
    kern, task = _kernel("aarch64", tmp_path, cache)
    addr = do_mmap(task.mm, None, 0, PAGE, R | W | X, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    do_user_addr_fault(task, addr, AccessType.WRITE)
    assert _insns(kern) == expect


def test_arm64_write_to_the_page_cache_needs_a_new_sync(tmp_path: Path) -> None:
    """write(2) into a page-cache page clears PG_dcache_clean (flush_dcache_page);
    the PTE that maps it is not touched, so the sync waits for the next mapping."""
    kern, task = _kernel("aarch64", tmp_path)
    (tmp_path / "code.bin").write_bytes(b"\0" * PAGE)
    vfs = kern.vfs
    f = vfs.open_file(vfs.host_inode(str(tmp_path / "code.bin")), 2, "code.bin")
    addr = do_mmap(task.mm, f, 0, PAGE, R | X, MAP_PRIVATE, 0)
    do_user_addr_fault(task, addr, AccessType.READ)
    assert _insns(kern) == ARM64_SYNC
    page = _page(kern, task, addr)
    generic_perform_write(kern, f, 0, b"\x1f\x20\x03\xd5" * 4)
    assert not PageTest(page, PG_dcache_clean)
    assert _insns(kern) == ARM64_SYNC  # lazily: nothing yet
    assert do_munmap(task.mm, addr, PAGE) == 0
    addr = do_mmap(task.mm, f, 0, PAGE, R | X, MAP_PRIVATE, 0)
    do_user_addr_fault(task, addr, AccessType.READ)
    assert _page(kern, task, addr) is page
    assert _insns(kern) == _times(ARM64_SYNC, 2)


def test_x86_hooks_are_empty_and_counted(tmp_path: Path) -> None:
    kern, task = _kernel("x86_64", tmp_path)
    assert isinstance(kern.cacheflush, X86CacheFlush) and kern.set_pte_hook is None
    addr = do_mmap(task.mm, None, 0, 2 * PAGE, R | W | X, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    do_user_addr_fault(task, addr, AccessType.WRITE)
    child = copy_process(task, 2)
    do_user_addr_fault(child, addr, AccessType.WRITE)  # COW
    assert do_mprotect(task.mm, addr, 2 * PAGE, R) == 0
    exit_mmap(child.mm)
    calls, noops = kern.cacheflush.calls, kern.cacheflush.noops
    assert calls == noops  # every call issued nothing
    assert calls["flush_cache_dup_mm"] == 1 and calls["copy_user_highpage"] == 1
    assert calls["flush_cache_page"] == 1 and calls["flush_cache_range"] == 1
    assert calls["flush_cache_mm"] == 1 and calls["sync_icache_dcache"] == 0
    assert _insns(kern) == {}


def test_arm64_flush_icache_range_cleans_and_invalidates_by_line(tmp_path: Path) -> None:
    kern, _ = _kernel("aarch64", tmp_path)
    kern.cacheflush.flush_icache_range(0x1030, 0x10C1)  # lines 0x1000 .. 0x10C0: 4
    assert _insns(kern) == {"dc_cvau": 4, "ic_ivau": 4, "dsb": 2, "isb": 1}


def test_flush_aliases_walks_i_mmap_for_the_current_mms_shared_mappings(tmp_path: Path) -> None:
    """The what-if aliasing D-cache: flush_dcache_page of a page-cache page
    cleans the kernel alias (64 dc civac) and, through flush_aliases over
    i_mmap, each shared mapping of the page in the current mm (64 each); a
    private mapping and another process's mapping are skipped (the seeds'
    flush_aliases: vm_mm != current mm, !VM_MAYSHARE)."""
    kern, task = _kernel("aarch64", tmp_path, CacheConfig(dcache_aliasing=True))
    assert isinstance(kern.cacheflush, Arm64AliasingDcache)
    (tmp_path / "d.dat").write_bytes(b"\0" * 2 * PAGE)
    vfs = kern.vfs
    f = vfs.open_file(vfs.host_inode(str(tmp_path / "d.dat")), 2, "d.dat")
    shared1 = do_mmap(task.mm, f, 0, 2 * PAGE, R | W, MAP_SHARED, 0)
    shared2 = do_mmap(task.mm, f, 0, PAGE, R, MAP_SHARED, 1)  # file page 1 only
    private = do_mmap(task.mm, f, 0, 2 * PAGE, R, MAP_PRIVATE, 0)
    child = copy_process(task, 2)
    for mm_task, a in ((task, shared1 + PAGE), (task, shared2), (task, private + PAGE),
                       (child, shared1 + PAGE)):
        do_user_addr_fault(mm_task, a, AccessType.READ)
    page = _page(kern, task, shared2)
    before = dict(kern.cacheflush.hw.kernel)  # type: ignore[union-attr]
    page_calls = kern.cacheflush.calls["flush_cache_page"]
    flush_dcache_page(kern, page)
    civac = kern.cacheflush.hw.kernel["dc_civac"] - before["dc_civac"]  # type: ignore[union-attr]
    assert kern.cacheflush.calls["flush_aliases"] == 1
    assert kern.cacheflush.calls["flush_cache_page"] - page_calls == 2  # shared1, shared2
    assert civac == LINES * (1 + 2)
    assert PageTest(page, PG_dcache_clean)


def test_flush_aliases_is_deferred_while_nobody_maps_the_file(tmp_path: Path) -> None:
    kern, task = _kernel("aarch64", tmp_path, CacheConfig(dcache_aliasing=True))
    (tmp_path / "d.dat").write_bytes(b"\0" * PAGE)
    vfs = kern.vfs
    f = vfs.open_file(vfs.host_inode(str(tmp_path / "d.dat")), 2, "d.dat")
    generic_perform_write(kern, f, 0, b"abc")  # the file is not mapped: only marked
    assert kern.cacheflush.calls["flush_aliases"] == 0
    assert _insns(kern) == {} and kern.cacheflush.noops["flush_dcache_page"] == 1


def test_arm64_set_pte_at_syncs_only_present_user_executable_non_special_ptes(
        tmp_path: Path) -> None:
    """__set_pte_at() calls __sync_icache_dcache() for pte_present() &&
    pte_user_exec() && !pte_special(); set_pte_at tests it with masks, checked
    here against the format's named helpers on every kind of entry."""
    kern, task = _kernel("aarch64", tmp_path)
    fmt = kern.fmt
    entries = [0]
    for r, w, x, shared in itertools.product((False, True), repeat=4):
        base = fmt.pfn_pte(0x12, fmt.protection_map(VmProt(r, w, x, shared)))
        entries += [base, fmt.pte_mkspecial(base), fmt.pte_mkdirty(fmt.pte_mkwrite(base)),
                    fmt.pte_mkold(base)]
    entries += [fmt.swp_entry_to_pte(1, off) for off in (1, 0x777)]
    entries += [random.Random(3).getrandbits(64) for _ in range(500)]
    synced: list[int] = []
    kern.set_pte_hook = lambda mm, addr, pte: synced.append(pte)
    pte_pa = 8 * 100  # a word of emulated RAM; what is stored there does not matter
    for e in entries:
        set_pte_at(task.mm, 0x400000, pte_pa, e)
        assert ptep_get(task.mm, pte_pa) == e
    expected = [e for e in entries
                if fmt.pte_present(e) and fmt.pte_user_exec(e) and not fmt.pte_special(e)]
    assert expected and len(expected) < len(entries)  # the sample has both answers
    assert synced == expected


@pytest.mark.parametrize("aliasing", [False, True], ids=["arm64", "aliasing"])
def test_arm64_copy_user_highpage_copies_then_flushes_the_copy(tmp_path: Path,
                                                               aliasing: bool) -> None:
    """copy_user_highpage(): copy_highpage(), then flush_dcache_page(to): the copy
    loses PG_dcache_clean (its next executable mapping syncs it). With the
    aliasing D-cache the class's own flush_dcache_page runs instead: the kernel
    alias is cleaned (dc civac by line) and the page marked clean."""
    kern, _ = _kernel("aarch64", tmp_path, CacheConfig(dcache_aliasing=aliasing))
    src, to = kern.alloc_page(), kern.alloc_page()
    kern.phys.write(src.pfn * PAGE, b"copied" * 100)
    to.flags |= 1 << PG_dcache_clean
    cf = kern.cacheflush
    before = dict(cf.calls)
    cf.copy_user_highpage(kern, to, src)
    assert kern.phys.read(to.pfn * PAGE, PAGE) == kern.phys.read(src.pfn * PAGE, PAGE)
    assert cf.calls["copy_user_highpage"] == before["copy_user_highpage"] + 1
    assert cf.calls["flush_dcache_page"] == before["flush_dcache_page"] + 1
    if aliasing:
        assert _insns(kern).get("dc_civac") == LINES and PageTest(to, PG_dcache_clean)
    else:
        assert _insns(kern) == {} and not PageTest(to, PG_dcache_clean)
        assert cf.noops["flush_dcache_page"] == cf.calls["flush_dcache_page"]
