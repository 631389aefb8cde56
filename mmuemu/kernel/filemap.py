"""The page cache and the file fault path (mm/filemap.c, mm/readahead.c).

Pages of a file live in its address_space's radix tree, indexed by page
offset. filemap_fault() finds or reads the page (with synchronous readahead
on a miss, asynchronous readahead when it meets a PG_readahead page) and
counts a major fault when it had to do I/O; filemap_map_pages() is the
fault-around helper mapping neighbours that are already cached.

I/O is synchronous in the model: a page is uptodate when readpage returns.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mmuemu.kernel.cacheflush import flush_dcache_page
from mmuemu.kernel.mm_types import (
    PG, PG_readahead, AddressSpace, ClearPage, File, Page, PageTest, SetPage,
    TestClearPage, VM, VmFault, VmFaultReason,
)
from mmuemu.kernel.page_alloc import OutOfMemory
from mmuemu.kernel.swap import lru_cache_add, mark_page_accessed, page_lru_base_type
from mmuemu.kernel.radix_tree import (
    PAGECACHE_TAG_DIRTY, radix_tree_delete, radix_tree_gang_lookup_tag,
    radix_tree_insert, radix_tree_lookup, radix_tree_tag_clear, radix_tree_tag_set,
)

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

MMAP_LOTSAMISS = 100


def find_get_page(mapping: AddressSpace, index: int) -> Page | None:
    """find_get_page(): the cached page at ``index`` with a reference taken, or None."""
    page = radix_tree_lookup(mapping.page_tree, index)
    if page is not None:
        page._count += 1
    return page  # type: ignore[no-any-return]


def add_to_page_cache_lru(kern: "Kernel", page: Page, mapping: AddressSpace, index: int) -> int:
    """add_to_page_cache_lru(): insert a new page in the cache (takes a reference)."""
    ret = radix_tree_insert(mapping.page_tree, index, page)
    if ret:
        return ret
    page._count += 1
    page.mapping = mapping.kaddr
    page.index = index
    SetPage(page, PG.locked)
    mapping.nrpages += 1
    lru_cache_add(kern, page, page_lru_base_type(page))  # inactive_file, or inactive_anon for shmem
    return 0


def unlock_page(page: Page) -> None:
    """unlock_page()."""
    ClearPage(page, PG.locked)


def __page_cache_alloc(kern: "Kernel") -> Page:
    """__page_cache_alloc(): a frame for the page cache."""
    return kern.alloc_page(kind="user")


def __delete_from_page_cache(kern: "Kernel", page: Page, mapping: AddressSpace) -> None:
    """__delete_from_page_cache(): take the page out of the mapping's tree
    (the caller drops the cache's reference)."""
    radix_tree_delete(mapping.page_tree, page.index)
    mapping.nrpages -= 1
    page.mapping = 0


def delete_from_page_cache(kern: "Kernel", page: Page) -> None:
    """delete_from_page_cache(): remove an unmapped page from its mapping; drop the cache's reference."""
    mapping = kern.kobj.lookup(page.mapping)
    assert isinstance(mapping, AddressSpace)
    __delete_from_page_cache(kern, page, mapping)
    kern.put_page(page)


def __do_page_cache_readahead(kern: "Kernel", mapping: AddressSpace, offset: int,
                              nr_to_read: int, lookahead_size: int) -> int:
    """__do_page_cache_readahead(): read ``nr_to_read`` pages from ``offset``,
    skipping cached ones, and mark PG_readahead on the page
    ``nr_to_read - lookahead_size`` into the window; the new pages go to
    a_ops->readpages as one batch (read_pages()). Returns pages read."""
    inode = mapping.host
    assert inode is not None
    end_index = (inode.i_size - 1) >> 12 if inode.i_size else -1
    batch: list[Page] = []
    for i in range(nr_to_read):
        index = offset + i
        if index > end_index:
            break
        if radix_tree_lookup(mapping.page_tree, index) is not None:
            continue
        try:
            page = __page_cache_alloc(kern)
        except OutOfMemory:
            break
        if add_to_page_cache_lru(kern, page, mapping, index):
            kern.put_page(page)
            continue
        if i == nr_to_read - lookahead_size:
            SetPage(page, PG_readahead)
        batch.append(page)
    if batch:
        mapping.a_ops.readpages(kern, mapping, batch)
    for page in batch:
        SetPage(page, PG.uptodate)
        unlock_page(page)
        kern.put_page(page)  # the cache keeps its own reference
    kern.vmstat.readahead_pages += len(batch)
    return len(batch)


def get_init_ra_size(size: int, max_pages: int) -> int:
    """get_init_ra_size(): first window for a read of ``size`` pages."""
    newsize = 1
    while newsize < size:
        newsize <<= 1
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(cur: int, max_pages: int) -> int:
    """get_next_ra_size(): ramp the window up on sequential access."""
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def ondemand_readahead(kern: "Kernel", mapping: AddressSpace, file: File, hit_readahead: bool,
                       offset: int, req_size: int) -> int:
    """ondemand_readahead() for read(2): initial window on a miss at the
    start or after a sequential read, ramp-up when a PG_readahead page is hit."""
    ra = file.f_ra
    max_pages = ra.ra_pages
    if max_pages == 0:
        return 0
    if offset == 0 or not hit_readahead and offset != ra.start + ra.size:
        ra.start = offset
        ra.size = get_init_ra_size(req_size, max_pages)
        ra.async_size = ra.size - req_size if ra.size > req_size else ra.size
    elif hit_readahead or offset == ra.start + ra.size:
        ra.start += ra.size
        ra.size = get_next_ra_size(ra.size, max_pages)
        ra.async_size = ra.size
    return __do_page_cache_readahead(kern, mapping, ra.start, ra.size, ra.async_size)


def do_sync_mmap_readahead(vmf: VmFault, file: File, mapping: AddressSpace) -> None:
    """do_sync_mmap_readahead(): a cache miss in a file mapping.

    VM_RAND_READ: read just the page. VM_SEQ_READ: a sequential window.
    Otherwise (after too many misses, nothing) read ra_pages centred on the
    fault, with the last quarter as the async part.
    """
    kern = vmf.vma.vm_mm.kernel
    ra = file.f_ra
    flags = vmf.vma.vm_flags
    if flags & VM.RAND_READ or not ra.ra_pages:
        __do_page_cache_readahead(kern, mapping, vmf.pgoff, 1, 0)
        return
    if flags & VM.SEQ_READ:
        ra.start = vmf.pgoff
        ra.size = ra.ra_pages
        ra.async_size = 0
        __do_page_cache_readahead(kern, mapping, ra.start, ra.size, ra.async_size)
        return
    ra.mmap_miss += 1
    if ra.mmap_miss > MMAP_LOTSAMISS:
        __do_page_cache_readahead(kern, mapping, vmf.pgoff, 1, 0)
        return
    ra.start = max(0, vmf.pgoff - ra.ra_pages // 2)
    ra.size = ra.ra_pages
    ra.async_size = ra.ra_pages // 4
    __do_page_cache_readahead(kern, mapping, ra.start, ra.size, ra.async_size)


def do_async_mmap_readahead(vmf: VmFault, file: File, mapping: AddressSpace, page: Page) -> None:
    """do_async_mmap_readahead(): the fault hit a PG_readahead page: read ahead."""
    kern = vmf.vma.vm_mm.kernel
    ra = file.f_ra
    if vmf.vma.vm_flags & VM.RAND_READ:
        return
    if ra.mmap_miss > 0:
        ra.mmap_miss -= 1
    if TestClearPage(page, PG_readahead):
        ra.start += ra.size
        ra.size = get_next_ra_size(ra.size, ra.ra_pages)
        ra.async_size = ra.size
        __do_page_cache_readahead(kern, mapping, ra.start, ra.size, ra.async_size)


def filemap_fault(vmf: VmFault) -> int:
    """filemap_fault(): find or read the page at vmf->pgoff; vmf->page gets a reference.

    Returns VM_FAULT_LOCKED (| VM_FAULT_MAJOR when the page was not cached),
    or VM_FAULT_SIGBUS beyond end of file, VM_FAULT_OOM without memory.
    """
    vma = vmf.vma
    file = vma.vm_file
    assert file is not None
    mapping = file.f_mapping
    inode = mapping.host
    assert inode is not None
    kern = vma.vm_mm.kernel
    size = (inode.i_size + 4095) >> 12
    if vmf.pgoff >= size:
        return VmFaultReason.SIGBUS
    ret = VmFaultReason.NONE
    page = find_get_page(mapping, vmf.pgoff)
    if page is not None:
        do_async_mmap_readahead(vmf, file, mapping, page)
    else:
        kern.vmstat.pgmajfault += 1
        ret = VmFaultReason.MAJOR
        try:
            do_sync_mmap_readahead(vmf, file, mapping)
        except OutOfMemory:
            return VmFaultReason.OOM
        page = find_get_page(mapping, vmf.pgoff)
        if page is None:  # page_cache_read(): readahead could not get it
            try:
                page = __page_cache_alloc(kern)
            except OutOfMemory:
                return VmFaultReason.OOM
            add_to_page_cache_lru(kern, page, mapping, vmf.pgoff)
            mapping.a_ops.readpage(kern, mapping, page)
            SetPage(page, PG.uptodate)
            unlock_page(page)
    if not PageTest(page, PG.uptodate):
        mapping.a_ops.readpage(kern, mapping, page)
        SetPage(page, PG.uptodate)
    SetPage(page, PG.locked)
    vmf.page = page
    return ret | VmFaultReason.LOCKED


def filemap_map_pages(vmf: VmFault, start_pgoff: int, end_pgoff: int) -> int:
    """filemap_map_pages(): map cached, uptodate pages in [start_pgoff, end_pgoff]
    whose PTEs are empty, without I/O (fault-around).

    Skips locked, !uptodate and PG_readahead pages (so the fault that hits a
    readahead marker goes through filemap_fault and triggers async readahead)
    and pages beyond EOF. Returns VM_FAULT_NOPAGE if the faulting address
    itself was mapped.
    """
    from mmuemu.kernel.memory import do_set_pte  # the PTE side lives in memory.py
    from mmuemu.kernel.pgtable import ptep_get

    vma = vmf.vma
    file = vma.vm_file
    assert file is not None
    mapping = file.f_mapping
    inode = mapping.host
    assert inode is not None
    mm = vma.vm_mm
    kern = mm.kernel
    max_idx = (inode.i_size + 4095) >> 12
    ret = VmFaultReason.NONE
    tree = mapping.page_tree
    fault_pte = vmf.pte_pa
    for pgoff in range(start_pgoff, end_pgoff + 1):
        if pgoff >= max_idx:
            break
        page = radix_tree_lookup(tree, pgoff)
        if page is None:
            continue
        flags = page.flags
        if flags >> PG.locked & 1 or not flags >> PG.uptodate & 1 or flags >> PG_readahead & 1:
            continue
        pte_pa = fault_pte + ((pgoff - vmf.pgoff) << 3)
        if ptep_get(mm, pte_pa):
            continue
        addr = vmf.address + ((pgoff - vmf.pgoff) << 12)
        page._count += 1
        do_set_pte(vma, addr, page, pte_pa, write=False, anon=False)
        if pgoff == vmf.pgoff:
            ret = VmFaultReason.NOPAGE
        else:
            kern.vmstat.fault_around_mapped += 1
    return ret


def filemap_page_mkwrite(vmf: VmFault) -> int:
    """filemap_page_mkwrite(): a shared page becomes writable: mark it dirty."""
    page = vmf.page
    assert page is not None
    set_page_dirty(vmf.vma.vm_mm.kernel, page)
    SetPage(page, PG.locked)
    return VmFaultReason.LOCKED


def set_page_dirty(kern: "Kernel", page: Page) -> bool:
    """set_page_dirty(): through the mapping's a_ops->set_page_dirty."""
    if page.mapping and not page.mapping & 1:
        mapping = kern.kobj.lookup(page.mapping)
        return bool(mapping.a_ops.set_page_dirty(kern, page))
    if PageTest(page, PG.dirty):
        return False
    SetPage(page, PG.dirty)
    return True


def _set_page_dirty_nobuffers(kern: "Kernel", page: Page) -> bool:
    """_set_page_dirty_nobuffers(): mark the page and its radix-tree slot dirty."""
    if PageTest(page, PG.dirty):
        return False
    SetPage(page, PG.dirty)
    if page.mapping and not page.mapping & 1:
        mapping = kern.kobj.lookup(page.mapping)
        radix_tree_tag_set(mapping.page_tree, page.index, PAGECACHE_TAG_DIRTY)
    return True


def clear_page_dirty_for_io(kern: "Kernel", page: Page) -> bool:
    """clear_page_dirty_for_io(): move dirtiness from the PTEs to the page
    (page_mkclean), then clear PG_dirty for the write. True if it was dirty."""
    from mmuemu.kernel.rmap import page_mkclean
    if page_mkclean(page, kern):
        SetPage(page, PG.dirty)
    return TestClearPage(page, PG.dirty)


def write_cache_pages(kern: "Kernel", mapping: AddressSpace, start: int = 0,
                      end: int = (1 << 64) - 1) -> int:
    """write_cache_pages(): write every DIRTY-tagged page with index in
    [start, end] through a_ops->writepage, cleaning mapped PTEs first.
    Returns the number of pages written."""
    written = 0
    index = start
    while index <= end:
        pages = radix_tree_gang_lookup_tag(mapping.page_tree, index, 16, PAGECACHE_TAG_DIRTY)
        if not pages:
            break
        for page in pages:
            if page.index > end:
                return written
            index = page.index + 1
            radix_tree_tag_clear(mapping.page_tree, page.index, PAGECACHE_TAG_DIRTY)
            if clear_page_dirty_for_io(kern, page):
                SetPage(page, PG.writeback)
                mapping.a_ops.writepage(kern, mapping, page)
                ClearPage(page, PG.writeback)
                written += 1
    return written


def grab_cache_page(kern: "Kernel", mapping: AddressSpace, index: int, whole: bool) -> Page:
    """grab_cache_page_write_begin(): the page to copy a write into, read first
    unless the write covers it whole (or it is past EOF)."""
    page = find_get_page(mapping, index)
    if page is None:
        page = __page_cache_alloc(kern)
        add_to_page_cache_lru(kern, page, mapping, index)
        inode = mapping.host
        assert inode is not None
        if whole or (index << 12) >= inode.i_size:
            kern.phys.zero_frame(page.pfn)
        else:
            mapping.a_ops.readpage(kern, mapping, page)
        SetPage(page, PG.uptodate)
        unlock_page(page)
    return page


def generic_perform_write(kern: "Kernel", file: File, pos: int, data: bytes) -> int:
    """generic_perform_write(): copy ``data`` into the page cache at ``pos``,
    a page at a time through a_ops->write_begin / write_end."""
    mapping = file.f_mapping
    aops = mapping.a_ops
    done = 0
    while done < len(data):
        off = (pos + done) & 0xFFF
        n = min(4096 - off, len(data) - done)
        page = aops.write_begin(kern, mapping, pos + done, n)
        kern.phys.write((page.pfn << 12) + off, data[done:done + n])
        flush_dcache_page(kern, page)
        mark_page_accessed(kern, page)
        aops.write_end(kern, mapping, pos + done, n, page)
        done += n
    return done


def generic_file_read(kern: "Kernel", file: File, pos: int, count: int) -> bytes:
    """generic_file_read_iter(): read through the page cache with readahead."""
    mapping = file.f_mapping
    inode = mapping.host
    assert inode is not None
    if pos >= inode.i_size or count <= 0:
        return b""
    count = min(count, inode.i_size - pos)
    writably_mapped = mapping.i_mmap_writable > 0  # mapping_writably_mapped()
    out = bytearray()
    req_pages = ((pos + count + 4095) >> 12) - (pos >> 12)
    while len(out) < count:
        index = (pos + len(out)) >> 12
        off = (pos + len(out)) & 0xFFF
        page = find_get_page(mapping, index)
        if page is None:
            ondemand_readahead(kern, mapping, file, False, index, req_pages)
            page = find_get_page(mapping, index)
            if page is None:
                page = grab_cache_page(kern, mapping, index, whole=False)
        elif PageTest(page, PG_readahead):
            ClearPage(page, PG_readahead)
            ondemand_readahead(kern, mapping, file, True, index, req_pages)
        n = min(4096 - off, count - len(out))
        if writably_mapped:  # user space may have written through an alias
            flush_dcache_page(kern, page)
        out += kern.phys.read((page.pfn << 12) + off, n)
        mark_page_accessed(kern, page)
        kern.put_page(page)
    return bytes(out)


def unmap_mapping_range(kern: "Kernel", mapping: AddressSpace, first: int) -> None:
    """unmap_mapping_range(): zap every PTE that maps page index >= ``first``
    of this file, in every VMA on i_mmap (shared and private), as truncate does."""
    from mmuemu.kernel.interval_tree import vma_interval_tree_foreach
    from mmuemu.kernel.madvise import zap_page_range
    for vma in list(vma_interval_tree_foreach(mapping.i_mmap, first, (1 << 64) - 1)):
        npages = (vma.vm_end - vma.vm_start) >> 12
        if vma.vm_pgoff + npages <= first:
            continue
        start = vma.vm_start + max(0, first - vma.vm_pgoff) * 4096
        zap_page_range(vma, start, vma.vm_end)


def truncate_inode_pages(kern: "Kernel", mapping: AddressSpace, lstart: int) -> None:
    """truncate_inode_pages(): unmap and drop cached pages from byte ``lstart`` on
    (a_ops->invalidatepage on each); a partial last page keeps its head, with
    the tail zeroed."""
    from mmuemu.kernel.radix_tree import radix_tree_gang_lookup
    first = (lstart + 4095) >> 12
    if lstart & 0xFFF:
        partial = radix_tree_lookup(mapping.page_tree, lstart >> 12)
        if partial is not None:
            off = lstart & 0xFFF
            kern.phys.buf[(partial.pfn << 12) + off:(partial.pfn + 1) << 12] = 0
            flush_dcache_page(kern, partial)  # zero_user_segment
            mapping.a_ops.invalidatepage(kern, partial, off, 4096 - off)
    unmap_mapping_range(kern, mapping, first)
    while True:
        pages = radix_tree_gang_lookup(mapping.page_tree, first, 32)
        if not pages:
            break
        for page in pages:
            first = page.index + 1
            mapping.a_ops.invalidatepage(kern, page, 0, 4096)
            ClearPage(page, PG.dirty)
            radix_tree_tag_clear(mapping.page_tree, page.index, PAGECACHE_TAG_DIRTY)
            if page._mapcount >= 0:
                continue  # still mapped privately elsewhere: leave it (Linux would too)
            delete_from_page_cache(kern, page)


def populate_page_cache(kern: "Kernel", mapping: AddressSpace) -> int:
    """Read a whole file into the page cache without counting faults
    (``--page-cache warm``: the state after an earlier run). Returns pages read."""
    inode = mapping.host
    assert inode is not None
    n = 0
    for index in range((inode.i_size + 4095) >> 12):
        if radix_tree_lookup(mapping.page_tree, index) is not None:
            continue
        page = __page_cache_alloc(kern)
        add_to_page_cache_lru(kern, page, mapping, index)
        mapping.a_ops.readpage(kern, mapping, page)
        SetPage(page, PG.uptodate)
        unlock_page(page)
        kern.put_page(page)
        n += 1
    return n
