"""The fault path against Linux's rules, on a fake MMU (no Unicorn).

Expected values come from how Linux behaves: one anonymous fault per page
written, the zero page on a read then a wp fault on the write, fault-around
mapping fault_around_bytes/4096 cached pages per file read fault, COW on a
private file write, TLB flushes only where a present PTE is replaced.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mmuemu.kernel.fault import (
    SEGV_ACCERR, SEGV_MAPERR, SIGSEGV, AccessType, do_user_addr_fault, user_addr_fault,
)
from mmuemu.kernel.mm_types import (
    PAGE_MAPPING_ANON, PG, PageAnon, PageTest, VmFault, page_mapcount,
)
from mmuemu.kernel.mmap import (
    MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE, do_mmap, do_munmap, find_vma,
)
from mmuemu.kernel.pgtable import ptep_get, pte_offset_lookup
from tests.conftest import ARCHES, KernelRig, make_rig

PAGE = 4096


def _pte(rig: KernelRig, addr: int) -> int:
    pa = pte_offset_lookup(rig.task.mm, addr)
    return 0 if pa is None else ptep_get(rig.task.mm, pa)


def _anon(rig: KernelRig, npages: int, prot: int = PROT_READ | PROT_WRITE) -> int:
    addr = do_mmap(rig.task.mm, None, 0, npages * PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    assert addr > 0
    return addr


def _fault(rig: KernelRig, addr: int, access: AccessType) -> int:
    out = do_user_addr_fault(rig.task, addr, access)
    return out.signal


def test_write_fault_allocates_one_anon_page_per_page(rig: KernelRig) -> None:
    n = 10
    addr = _anon(rig, n)
    fmt = rig.kern.fmt
    for i in range(n):
        assert _fault(rig, addr + i * PAGE + 123, AccessType.WRITE) == 0
    assert rig.task.counts.min_flt == n and rig.task.counts.maj_flt == 0
    assert rig.kern.vmstat.by_type["anon"] == n
    assert rig.task.mm.rss_anon == n
    pfns = set()
    for i in range(n):
        pte = _pte(rig, addr + i * PAGE)
        assert fmt.pte_present(pte) and fmt.pte_write(pte) and fmt.pte_dirty(pte)
        page = rig.kern.pfn_to_page(fmt.pte_pfn(pte))
        assert PageAnon(page) and page.mapping & PAGE_MAPPING_ANON
        assert page_mapcount(page) == 1 and page._count == 1
        assert PageTest(page, PG.swapbacked) and PageTest(page, PG.uptodate)
        pfns.add(page.pfn)
    assert len(pfns) == n
    # filling empty PTEs never needs a TLB flush
    assert not rig.flush.calls


def test_read_maps_zero_page_then_write_takes_wp_fault(rig: KernelRig) -> None:
    n = 4
    addr = _anon(rig, n)
    fmt = rig.kern.fmt
    for i in range(n):
        assert _fault(rig, addr + i * PAGE, AccessType.READ) == 0
        pte = _pte(rig, addr + i * PAGE)
        assert fmt.pte_pfn(pte) == rig.kern.zero_pfn
        assert not fmt.pte_write(pte) and fmt.pte_special(pte)
    assert rig.kern.vmstat.by_type["zero"] == n
    assert rig.task.mm.rss_anon == 0
    for i in range(n):
        assert _fault(rig, addr + i * PAGE, AccessType.WRITE) == 0
        pte = _pte(rig, addr + i * PAGE)
        assert fmt.pte_pfn(pte) != rig.kern.zero_pfn and fmt.pte_write(pte)
        # the new page is zeroed
        assert not rig.kern.phys.buf[fmt.pte_pfn(pte) * PAGE:(fmt.pte_pfn(pte) + 1) * PAGE].any()
    assert rig.kern.vmstat.by_type["wp"] == n
    assert rig.task.counts.min_flt == 2 * n
    # each zero-page PTE was replaced while present: one flush per page
    flushed = [c[1] for c in rig.flush.calls if c[0] == "page"]
    assert flushed == [addr + i * PAGE for i in range(n)]


def test_no_zero_page_knob_allocates_on_read(tmp_path: Path) -> None:
    rig = make_rig("x86_64", tmp_path, use_zero_page=False)
    addr = _anon(rig, 3)
    for i in range(3):
        _fault(rig, addr + i * PAGE, AccessType.READ)
    assert rig.kern.vmstat.by_type == {**rig.kern.vmstat.by_type, "anon": 3, "zero": 0}


def _make_file(root: Path, name: str, npages: int) -> bytes:
    data = bytes((i * 7 + j) & 0xFF for i in range(npages) for j in range(PAGE))
    (root / name).write_bytes(data)
    return data


def _open_map(rig: KernelRig, name: str, npages: int, prot: int, flags: int,
              writable: bool = False) -> int:
    vfs = rig.kern.vfs
    err, host = vfs.resolve("/", name)
    assert err == 0
    inode = vfs.host_inode(host)
    f = vfs.open_file(inode, 2 if writable else 0, name)
    if rig.kern.config.page_cache == "warm":
        from mmuemu.kernel.filemap import populate_page_cache
        populate_page_cache(rig.kern, inode.i_mapping)
    addr = do_mmap(rig.task.mm, f, 0, npages * PAGE, prot, flags, 0)
    assert addr > 0, addr
    return addr


@pytest.mark.parametrize("fault_around_bytes", [4096, 16384, 65536])
def test_fault_around_maps_aligned_window_of_cached_pages(tmp_path: Path,
                                                          fault_around_bytes: int) -> None:
    npages = 64
    rig = make_rig("x86_64", tmp_path, fault_around_bytes=fault_around_bytes)
    _make_file(tmp_path, "f.dat", npages)
    addr = _open_map(rig, "f.dat", npages, PROT_READ, MAP_PRIVATE)
    window = fault_around_bytes // PAGE
    # the mapping is 2 MiB aligned? not necessarily: compute the aligned windows Linux uses
    faults = 0
    for i in range(npages):
        if _pte(rig, addr + i * PAGE) == 0:
            assert _fault(rig, addr + i * PAGE, AccessType.READ) == 0
            faults += 1
    expected = len({((addr >> 12) + i) // window for i in range(npages)})
    assert faults == expected == rig.task.counts.min_flt
    assert rig.task.counts.maj_flt == 0
    assert rig.kern.vmstat.by_type["file"] == faults
    assert rig.task.mm.rss_file == npages


def test_cold_cache_read_is_major_and_reads_ahead(tmp_path: Path) -> None:
    npages = 64
    rig = make_rig("x86_64", tmp_path, page_cache="cold")
    data = _make_file(tmp_path, "f.dat", npages)
    addr = _open_map(rig, "f.dat", npages, PROT_READ, MAP_PRIVATE)
    assert _fault(rig, addr, AccessType.READ) == 0
    assert rig.task.counts.maj_flt == 1
    mapping = find_vma(rig.task.mm, addr).vm_file.f_mapping  # type: ignore[union-attr]
    # do_sync_mmap_readahead: a window of ra_pages starting ra_pages/2 before
    # the fault, clamped at 0: pages [0, ra_pages)
    assert mapping.nrpages == rig.kern.config.ra_pages
    fmt = rig.kern.fmt
    pte = _pte(rig, addr)
    got = rig.kern.phys.read(fmt.pte_pfn(pte) * PAGE, PAGE)
    assert got == data[:PAGE]
    # reading the whole file sequentially: far fewer major faults than pages
    for i in range(npages):
        if _pte(rig, addr + i * PAGE) == 0:
            _fault(rig, addr + i * PAGE, AccessType.READ)
    assert rig.task.counts.maj_flt < npages // 8
    assert mapping.nrpages == npages


def test_private_file_write_copies_and_leaves_file_alone(tmp_path: Path) -> None:
    rig = make_rig("aarch64", tmp_path)
    data = _make_file(tmp_path, "f.dat", 4)
    addr = _open_map(rig, "f.dat", 4, PROT_READ | PROT_WRITE, MAP_PRIVATE)
    assert _fault(rig, addr + PAGE, AccessType.WRITE) == 0
    assert rig.kern.vmstat.by_type["cow"] == 1
    fmt = rig.kern.fmt
    pte = _pte(rig, addr + PAGE)
    page = rig.kern.pfn_to_page(fmt.pte_pfn(pte))
    assert PageAnon(page) and fmt.pte_write(pte)
    assert rig.kern.phys.read(page.pfn * PAGE, PAGE) == data[PAGE:2 * PAGE]
    mapping = find_vma(rig.task.mm, addr).vm_file.f_mapping  # type: ignore[union-attr]
    from mmuemu.kernel.radix_tree import radix_tree_lookup
    cached = radix_tree_lookup(mapping.page_tree, 1)
    assert cached is not None and cached.pfn != page.pfn


def test_read_then_write_private_file_page_is_cow_with_flush(tmp_path: Path) -> None:
    rig = make_rig("x86_64", tmp_path, fault_around_bytes=4096)
    _make_file(tmp_path, "f.dat", 2)
    addr = _open_map(rig, "f.dat", 2, PROT_READ | PROT_WRITE, MAP_PRIVATE)
    _fault(rig, addr, AccessType.READ)
    rig.flush.calls.clear()
    _fault(rig, addr, AccessType.WRITE)
    assert rig.kern.vmstat.by_type["cow"] == 1
    assert ("page", addr, addr + PAGE) in rig.flush.calls
    assert rig.task.mm.rss_file == 0 and rig.task.mm.rss_anon == 1


def test_shared_file_write_dirties_the_cache_page(tmp_path: Path) -> None:
    rig = make_rig("x86_64", tmp_path)
    _make_file(tmp_path, "f.dat", 2)
    addr = _open_map(rig, "f.dat", 2, PROT_READ | PROT_WRITE, MAP_SHARED, writable=True)
    assert _fault(rig, addr, AccessType.WRITE) == 0
    assert rig.kern.vmstat.by_type["shared"] == 1
    page = rig.kern.pfn_to_page(rig.kern.fmt.pte_pfn(_pte(rig, addr)))
    assert not PageAnon(page) and PageTest(page, PG.dirty)


def test_segv_outside_vma_and_on_readonly_write(rig: KernelRig) -> None:
    out = do_user_addr_fault(rig.task, 0x10, AccessType.WRITE)
    assert (out.signal, out.si_code) == (SIGSEGV, SEGV_MAPERR)
    addr = _anon(rig, 1, PROT_READ)
    out = do_user_addr_fault(rig.task, addr, AccessType.WRITE)
    assert (out.signal, out.si_code) == (SIGSEGV, SEGV_ACCERR)
    assert rig.task.counts.min_flt == 0  # failed faults are not counted per task


def _unallocated(rig: KernelRig) -> int:
    """Frames nobody holds: NR_FREE_PAGES plus those on the per-cpu list."""
    return rig.kern.buddy.stats.nr_free_pages + len(rig.kern.buddy.pcp)


def test_munmap_frees_pages_and_flushes(rig: KernelRig) -> None:
    n = 8
    free0 = _unallocated(rig)
    addr = _anon(rig, n)
    for i in range(n):
        _fault(rig, addr + i * PAGE, AccessType.WRITE)
    assert _unallocated(rig) < free0 - n + 1
    rig.flush.calls.clear()
    assert do_munmap(rig.task.mm, addr, n * PAGE) == 0
    assert find_vma(rig.task.mm, addr) is None or find_vma(rig.task.mm, addr).vm_start > addr
    assert ("range", addr, addr + n * PAGE) in rig.flush.calls
    # pages and the (now empty) page tables went back to the allocator
    assert _unallocated(rig) == free0
    assert rig.task.mm.rss_anon == 0
    assert do_user_addr_fault(rig.task, addr, AccessType.READ).signal == SIGSEGV


def test_munmap_middle_splits_the_vma(rig: KernelRig) -> None:
    addr = _anon(rig, 6)
    for i in range(6):
        _fault(rig, addr + i * PAGE, AccessType.WRITE)
    assert do_munmap(rig.task.mm, addr + 2 * PAGE, 2 * PAGE) == 0
    mm = rig.task.mm
    spans = [(v.vm_start, v.vm_end) for v in mm.mm_rb]
    assert (addr, addr + 2 * PAGE) in spans and (addr + 4 * PAGE, addr + 6 * PAGE) in spans
    assert mm.map_count == len(mm.mm_rb) == 2
    assert _pte(rig, addr + 2 * PAGE) == 0 and _pte(rig, addr + 4 * PAGE) != 0
    assert mm.rss_anon == 4


def test_stack_grows_down_within_rlimit(rig: KernelRig) -> None:
    from mmuemu.kernel.mm_types import VM, VmAreaStruct
    from mmuemu.kernel.mmap import vm_get_page_prot, vma_link
    mm = rig.task.mm
    top = 0x7FFF_0000_0000
    flags = VM.READ | VM.WRITE | VM.MAYREAD | VM.MAYWRITE | VM.GROWSDOWN
    stack = VmAreaStruct(vm_mm=mm, vm_start=top - PAGE, vm_end=top, vm_flags=flags,
                         vm_page_prot=vm_get_page_prot(mm, flags), vm_pgoff=(top - PAGE) >> 12)
    vma_link(mm, stack)
    assert _fault(rig, top - 100 * PAGE, AccessType.WRITE) == 0
    assert stack.vm_start == top - 100 * PAGE
    # beyond RLIMIT_STACK (8 MiB) the stack does not grow
    assert _fault(rig, top - (9 << 20), AccessType.WRITE) == SIGSEGV


def test_brk_grows_merges_and_shrinks(rig: KernelRig) -> None:
    from mmuemu.kernel.mmap import sys_brk
    mm = rig.task.mm
    mm.start_brk = mm.brk = 0x60_0000
    assert sys_brk(mm, 0x60_0000 + 3 * PAGE) == 0x60_0000 + 3 * PAGE
    assert sys_brk(mm, 0x60_0000 + 8 * PAGE) == 0x60_0000 + 8 * PAGE
    assert [(v.vm_start, v.vm_end) for v in mm.mm_rb] == [(0x60_0000, 0x60_0000 + 8 * PAGE)]
    for i in range(8):
        _fault(rig, 0x60_0000 + i * PAGE, AccessType.WRITE)
    assert sys_brk(mm, 0x60_0000 + 2 * PAGE) == 0x60_0000 + 2 * PAGE
    assert mm.rss_anon == 2
    # below start_brk is refused: the break stays
    assert sys_brk(mm, 0x50_0000) == 0x60_0000 + 2 * PAGE


def test_truncate_unmaps_and_later_access_is_sigbus(tmp_path: Path) -> None:
    from mmuemu.kernel.fault import SIGBUS
    from mmuemu.kernel.filemap import truncate_inode_pages
    rig = make_rig("x86_64", tmp_path)
    _make_file(tmp_path, "f.dat", 4)
    addr = _open_map(rig, "f.dat", 4, PROT_READ, MAP_SHARED)
    assert _fault(rig, addr + 3 * PAGE, AccessType.READ) == 0
    vma = find_vma(rig.task.mm, addr)
    assert vma is not None and vma.vm_file is not None
    inode = vma.vm_file.f_inode
    inode.i_size = PAGE
    truncate_inode_pages(rig.kern, vma.vm_file.f_mapping, PAGE)
    assert _pte(rig, addr + 3 * PAGE) == 0          # unmap_mapping_range zapped it
    assert _fault(rig, addr + 3 * PAGE, AccessType.READ) == SIGBUS  # beyond EOF
    assert _fault(rig, addr, AccessType.READ) == 0


def test_msync_cleans_ptes_so_the_next_write_faults_again(tmp_path: Path) -> None:
    from mmuemu.kernel.madvise import MS_SYNC, do_msync
    rig = make_rig("aarch64", tmp_path)
    _make_file(tmp_path, "f.dat", 2)
    addr = _open_map(rig, "f.dat", 2, PROT_READ | PROT_WRITE, MAP_SHARED, writable=True)
    fmt = rig.kern.fmt
    assert _fault(rig, addr, AccessType.WRITE) == 0
    page = rig.kern.pfn_to_page(fmt.pte_pfn(_pte(rig, addr)))
    rig.kern.phys.buf[page.pfn * PAGE] = 0xAB
    assert PageTest(page, PG.dirty)
    assert do_msync(rig.task.mm, addr, 2 * PAGE, MS_SYNC) == 0
    assert not PageTest(page, PG.dirty)
    assert not fmt.pte_write(_pte(rig, addr)) and not fmt.pte_dirty(_pte(rig, addr))
    assert (tmp_path / "f.dat").read_bytes()[0] == 0xAB  # written back
    shared_before = rig.kern.vmstat.by_type["shared"]
    assert _fault(rig, addr, AccessType.WRITE) == 0
    assert rig.kern.vmstat.by_type["shared"] == shared_before + 1  # wp_page_shared


def test_madvise_dontneed_frees_anon_pages(rig: KernelRig) -> None:
    from mmuemu.kernel.madvise import MADV_DONTNEED, do_madvise
    free0 = _unallocated(rig)
    tables0 = rig.task.mm.nr_ptes
    addr = _anon(rig, 4)
    for i in range(4):
        _fault(rig, addr + i * PAGE, AccessType.WRITE)
    new_tables = rig.task.mm.nr_ptes - tables0
    assert _unallocated(rig) == free0 - 4 - new_tables
    assert do_madvise(rig.task.mm, addr, 4 * PAGE, MADV_DONTNEED) == 0
    assert all(_pte(rig, addr + i * PAGE) == 0 for i in range(4))
    assert rig.task.mm.rss_anon == 0
    # the four pages are free again; the page-table pages stay, as in Linux
    assert _unallocated(rig) == free0 - new_tables
    assert _fault(rig, addr, AccessType.READ) == 0
    assert rig.kern.fmt.pte_pfn(_pte(rig, addr)) == rig.kern.zero_pfn


def test_a_freed_pte_table_is_never_used_again(rig: KernelRig) -> None:
    """pte_offset_alloc's memory of the last PTE table must not outlive the
    table: map, fault, unmap (the tables are freed), map again over the same
    2 MiB and fault there. The freed frames are handed out again (the old
    table's among them), so a PTE written through a stale table would land in
    someone's page: every PTE must be reachable by a walk from the pgd."""
    mm = rig.task.mm
    fmt = rig.kern.fmt
    addr = _anon(rig, 4)
    assert _fault(rig, addr, AccessType.WRITE) == 0
    assert do_munmap(mm, addr, 4 * PAGE) == 0
    assert pte_offset_lookup(mm, addr) is None  # the tables went back to the allocator
    n = 64
    other = _anon(rig, n)
    assert other >> 21 == addr >> 21 or (other + n * PAGE - 1) >> 21 == addr >> 21
    for i in range(n):
        assert _fault(rig, other + i * PAGE, AccessType.WRITE) == 0
    for i in range(n):
        pte = _pte(rig, other + i * PAGE)
        assert fmt.pte_present(pte) and fmt.pte_write(pte)
        page = rig.kern.pfn_to_page(fmt.pte_pfn(pte))
        assert page_mapcount(page) == 1 and PageAnon(page)
    assert mm.rss_anon == n


def test_a_changed_pmd_entry_is_walked_again(rig: KernelRig) -> None:
    """If the PMD entry for the remembered table changes (here: the table moves
    to another frame behind the kernel's back), the next fault walks again."""
    mm = rig.task.mm
    words = rig.kern.phys.words
    addr = _anon(rig, 2)
    assert _fault(rig, addr, AccessType.WRITE) == 0
    pte_pa = pte_offset_lookup(mm, addr)
    assert pte_pa is not None
    old_table = pte_pa & ~0xFFF
    new_table = rig.kern.alloc_page(kind="pgtable", zero=True).pfn << 12
    rig.kern.phys.buf[new_table:new_table + PAGE] = rig.kern.phys.buf[old_table:old_table + PAGE]
    # rewrite the PMD entry (found by walking the three upper levels) to point at the copy
    table = mm.pgd
    slot = 0
    for shift in (39, 30, 21):
        slot = (table >> 3) + ((addr >> shift) & 0x1FF)
        table = words[slot] & 0x0000_FFFF_FFFF_F000
    assert table == old_table
    words[slot] = rig.kern.fmt.mk_table(new_table)
    assert _fault(rig, addr + PAGE, AccessType.WRITE) == 0
    assert words[(new_table >> 3) + (((addr + PAGE) >> 12) & 0x1FF)] != 0
    assert words[(old_table >> 3) + (((addr + PAGE) >> 12) & 0x1FF)] == 0


def test_hiwater_rss_is_recorded_lazily_as_linux_does(rig: KernelRig) -> None:
    # Linux records the RSS peak only where RSS is about to fall (unmap_region,
    # zap_page_range, do_exit); readers (VmHWM, ru_maxrss) take the larger of
    # the record and the current RSS, so they see the peak either way.
    from mmuemu.kernel.mm_types import get_mm_hiwater_rss, get_mm_rss
    mm = rig.task.mm
    base = get_mm_rss(mm)
    recorded0 = mm.hiwater_rss
    addr = _anon(rig, 8)
    for i in range(8):
        _fault(rig, addr + i * PAGE, AccessType.WRITE)
    assert mm.hiwater_rss == recorded0  # faults do not touch it
    assert get_mm_hiwater_rss(mm) == base + 8
    assert do_munmap(mm, addr + 4 * PAGE, 4 * PAGE) == 0
    assert mm.hiwater_rss == base + 8  # recorded before the unmap lowered RSS
    assert get_mm_rss(mm) == base + 4
    assert get_mm_hiwater_rss(mm) == base + 8
    more = _anon(rig, 2)  # grows again, but stays below the peak: the record stands
    for i in range(2):
        _fault(rig, more + i * PAGE, AccessType.WRITE)
    assert get_mm_rss(mm) == base + 6 and get_mm_hiwater_rss(mm) == base + 8


def _vmf_fields(vmf: VmFault) -> dict[str, object]:
    """Every field of a vm_fault; the page by its frame number, the VMA by its range
    (the twin kernels' objects are not the same ones)."""
    fields: dict[str, object] = {name: getattr(vmf, name) for name in VmFault.__slots__}
    fields["vma"] = (vmf.vma.vm_start, vmf.vma.vm_end, vmf.vma.vm_flags)
    for name in ("page", "cow_page"):
        page = fields[name]
        fields[name] = None if page is None else page.pfn  # type: ignore[attr-defined]
    return fields


@pytest.mark.parametrize("arch", ARCHES)
def test_a_reused_vm_fault_is_filled_as_a_new_one_would_be(arch: str, tmp_path: Path) -> None:
    """The machine hands every fault the same vm_fault (Linux's lives in a stack
    frame). Starting empty, it must come out of each fault with every field
    equal to the fresh vm_fault of the same fault on a twin kernel: a field
    handle_mm_fault forgot to reset would keep the previous fault's value
    (or, on the first fault, not exist)."""
    fresh = make_rig(arch, tmp_path / "fresh")
    reused = make_rig(arch, tmp_path / "reused")
    storage = VmFault.__new__(VmFault)  # as the machine makes it
    addr_f, addr_r = _anon(fresh, 4), _anon(reused, 4)
    assert addr_f == addr_r
    # an anonymous write, a zero-page read, the write that breaks it ("zero"
    # detail), a spurious write, a write to a read-only page (SIGSEGV)
    ro_f = _anon(fresh, 1, PROT_READ)
    ro_r = _anon(reused, 1, PROT_READ)
    steps = [(0, AccessType.WRITE), (PAGE, AccessType.READ), (PAGE, AccessType.WRITE),
             (0, AccessType.WRITE), (2 * PAGE, AccessType.READ)]
    kinds = []
    for off, access in steps:
        want = user_addr_fault(fresh.task, addr_f + off, access)
        got = user_addr_fault(reused.task, addr_r + off, access, True, storage)
        assert got[5] is storage
        assert want[:4] == got[:4]
        assert want[5] is not None
        assert _vmf_fields(storage) == _vmf_fields(want[5])
        kinds.append((storage.kind.value, storage.detail))
    assert kinds == [("anon", ""), ("zero", ""), ("wp", "zero"), ("spurious", ""), ("zero", "")]
    want = user_addr_fault(fresh.task, ro_f, AccessType.WRITE)
    got = user_addr_fault(reused.task, ro_r, AccessType.WRITE, True, storage)
    assert want[:2] == got[:2] == (SIGSEGV, SEGV_ACCERR)
