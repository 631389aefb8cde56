"""madvise(2) and msync(2) (mm/madvise.c, mm/msync.c).

MADV_DONTNEED zaps the range: anonymous pages are freed (the next touch is
a fresh zero-page or anonymous fault), file pages are unmapped (the next
touch maps the cached page again). MADV_SEQUENTIAL / MADV_RANDOM set
VM_SEQ_READ / VM_RAND_READ, which steer readahead in filemap_fault;
MADV_WILLNEED reads a file range into the page cache. msync(MS_SYNC) writes
the dirty pages of shared file mappings back (cleaning their PTEs, so the
next write faults again); MS_ASYNC does nothing, as on Linux since 2.6.19.
"""
from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass

from mmuemu.kernel.cacheflush import tlb_start_vma
from mmuemu.kernel.filemap import __do_page_cache_readahead, write_cache_pages
from mmuemu.kernel.mm_types import VM, MmStruct, VmAreaStruct, update_hiwater_rss
from mmuemu.kernel.mmap import __split_vma, find_vma, vma_merge_neighbours, zap_pte_range

MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED = 0, 1, 2, 3, 4
MADV_FREE, MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK = 8, 9, 10, 11
MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE, MADV_NOHUGEPAGE = 12, 13, 14, 15
MADV_DONTDUMP, MADV_DODUMP = 16, 17
MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4

_FLAG_ADVICE = {MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_DONTFORK, MADV_DOFORK}
_ACCEPTED = {MADV_FREE, MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE, MADV_NOHUGEPAGE,
             MADV_DONTDUMP, MADV_DODUMP}


def zap_page_range(vma: VmAreaStruct, start: int, end: int) -> None:
    """zap_page_range(): unmap [start, end) of one VMA, flush, free the pages."""
    mm = vma.vm_mm
    kern = mm.kernel
    update_hiwater_rss(mm)
    tlb_start_vma(vma)  # unmap_page_range
    batch = zap_pte_range(vma, start, end)
    kern.tlb.flush_tlb_range(mm, start, end)
    from mmuemu.kernel.swap_state import free_pages_and_swap_cache
    free_pages_and_swap_cache(kern, [kern.pfn_to_page(pfn) for pfn in batch])


def madvise_behavior(mm: MmStruct, vma: VmAreaStruct, start: int, end: int, advice: int) -> None:
    """madvise_behavior(): change vm_flags on exactly [start, end), splitting as needed."""
    new = vma.vm_flags
    if advice == MADV_NORMAL:
        new &= ~(VM.SEQ_READ | VM.RAND_READ)
    elif advice == MADV_SEQUENTIAL:
        new = (new & ~VM.RAND_READ) | VM.SEQ_READ
    elif advice == MADV_RANDOM:
        new = (new & ~VM.SEQ_READ) | VM.RAND_READ
    elif advice == MADV_DONTFORK:
        new |= VM.DONTCOPY
    elif advice == MADV_DOFORK:
        new &= ~VM.DONTCOPY
    if new == vma.vm_flags:
        return
    if start > vma.vm_start:
        __split_vma(mm, vma, start, new_below=True)
    if end < vma.vm_end:
        __split_vma(mm, vma, end, new_below=False)
    vma.vm_flags = new
    vma_merge_neighbours(mm, vma)


def madvise_willneed(vma: VmAreaStruct, start: int, end: int) -> None:
    """madvise_willneed(): force readahead of a file range."""
    if vma.vm_file is None:
        return
    first = ((start - vma.vm_start) >> 12) + vma.vm_pgoff
    nr = (end - start) >> 12
    kern = vma.vm_mm.kernel
    mapping = vma.vm_file.f_mapping
    chunk = max(1, kern.config.ra_pages)
    for off in range(0, nr, chunk):  # force_page_cache_readahead()
        __do_page_cache_readahead(kern, mapping, first + off, min(chunk, nr - off), 0)


@dataclass(slots=True)
class RangeWalk:
    """The VMA walk madvise() and msync() share: each VMA piece in [start, end),
    and whether a hole was crossed (both syscalls then end with -ENOMEM)."""

    hole: bool = False
    #: the walk stopped on a hole at the end (no VMA reaches that far)
    truncated: bool = False


def vma_pieces(mm: MmStruct, start: int, end: int,
               walk: RangeWalk) -> Iterator[tuple[VmAreaStruct, int, int]]:
    """Yield (vma, piece_start, piece_end) over [start, end) in address order,
    re-looking the VMA up at each step (the caller may split or merge it)."""
    addr = start
    while addr < end:
        vma = find_vma(mm, addr)
        if vma is None or vma.vm_start >= end:
            walk.truncated = True
            return
        if vma.vm_start > addr:
            walk.hole = True
            addr = vma.vm_start
        tmp = min(vma.vm_end, end)
        yield vma, addr, tmp
        addr = tmp


def do_madvise(mm: MmStruct, start: int, len_in: int, advice: int) -> int:
    """do_madvise(): apply ``advice`` to every VMA in the range. Returns 0 or -errno."""
    if start & 0xFFF:
        return -errno.EINVAL
    if advice not in _FLAG_ADVICE | _ACCEPTED | {MADV_WILLNEED, MADV_DONTNEED, MADV_REMOVE}:
        return -errno.EINVAL
    end = start + ((len_in + 0xFFF) & ~0xFFF)
    if end < start:
        return -errno.EINVAL
    if end == start:
        return 0
    walk = RangeWalk()
    for vma, addr, tmp in vma_pieces(mm, start, end, walk):
        if advice in _FLAG_ADVICE:
            madvise_behavior(mm, vma, addr, tmp, advice)
        elif advice == MADV_DONTNEED:
            if vma.vm_flags & VM.LOCKED:
                return -errno.EINVAL
            zap_page_range(vma, addr, tmp)
        elif advice == MADV_WILLNEED:
            madvise_willneed(vma, addr, tmp)
        elif advice == MADV_REMOVE and not vma.vm_flags & VM.SHARED:
            return -errno.EINVAL
    return -errno.ENOMEM if walk.hole or walk.truncated else 0


def do_msync(mm: MmStruct, start: int, len_in: int, flags: int) -> int:
    """sys_msync(): MS_SYNC writes dirty shared file pages in the range back."""
    if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC):
        return -errno.EINVAL
    if start & 0xFFF:
        return -errno.EINVAL
    if flags & MS_ASYNC and flags & MS_SYNC:
        return -errno.EINVAL
    end = start + ((len_in + 0xFFF) & ~0xFFF)
    if end < start:
        return -errno.ENOMEM
    if end == start:
        return 0
    walk = RangeWalk()
    for vma, addr, tmp in vma_pieces(mm, start, end, walk):
        if flags & MS_INVALIDATE and vma.vm_flags & VM.LOCKED:
            return -errno.EBUSY
        if flags & MS_SYNC and vma.vm_file is not None and vma.vm_flags & VM.SHARED:
            first = ((addr - vma.vm_start) >> 12) + vma.vm_pgoff
            last = first + ((tmp - addr) >> 12) - 1
            write_cache_pages(mm.kernel, vma.vm_file.f_mapping, first, last)
    return -errno.ENOMEM if walk.hole or walk.truncated else 0
