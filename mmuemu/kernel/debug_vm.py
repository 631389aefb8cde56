"""Consistency checks (CONFIG_DEBUG_VM): validate_mm(), and that every page's
_mapcount equals the number of PTEs that map it (mm/debug.c, mm/mmap.c).

``--debug-vm`` runs them after every syscall; the tests run them after every
step of random operation sequences. A failure raises VmBug naming the broken
invariant.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Iterable

from mmuemu.kernel import vma_tree
from mmuemu.kernel.interval_tree import anon_vma_interval_tree_verify, vma_interval_tree_foreach
from mmuemu.kernel.mm_types import MmStruct, VmAreaStruct
from mmuemu.kernel.pgtable import ptep_get, pte_range
from mmuemu.kernel.rbtree import RB_EMPTY_NODE

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel


class VmBug(AssertionError):
    """An mm invariant does not hold (VM_BUG_ON_MM)."""


def _anon_vma_verify(vma: VmAreaStruct) -> None:
    """validate_mm()'s per-VMA step: anon_vma_interval_tree_verify() on each chain."""
    for avc in vma.anon_vma_chain:
        anon_vma_interval_tree_verify(avc)


def validate_mm(mm: MmStruct) -> None:
    """validate_mm(): the VMA tree (vm_next list, rbtree order and every
    rb_subtree_gap via browse_rb, map_count, highest_vm_end; vma_tree.py),
    anon_vma_interval_tree_verify() on every chain, and per VMA: sorted,
    disjoint, page aligned, in this mm, on its anon_vma and i_mmap trees."""
    try:
        vma_tree.validate_mm(mm.mm_rb, _anon_vma_verify)
    except vma_tree.VmaTreeError as exc:
        raise VmBug(f"validate_mm: {exc}") from exc
    prev_end = 0
    for vma in mm.mm_rb:
        if vma.vm_mm is not mm:
            raise VmBug(f"vma {vma} belongs to another mm")
        if vma.vm_start & 0xFFF or vma.vm_end & 0xFFF or vma.vm_start >= vma.vm_end:
            raise VmBug(f"vma {vma}: bad bounds")
        if vma.vm_start < prev_end:
            raise VmBug(f"vma {vma} overlaps or is out of order (previous end {prev_end:#x})")
        if vma.vm_end > mm.task_size:
            raise VmBug(f"vma {vma} beyond TASK_SIZE")
        if vma.anon_vma is not None:
            linked = {avc.anon_vma for avc in vma.anon_vma_chain}
            if vma.anon_vma not in linked:
                raise VmBug(f"vma {vma}: anon_vma not on its anon_vma_chain")
            for avc in vma.anon_vma_chain:
                if avc.vma is not vma or RB_EMPTY_NODE(avc.rb):
                    raise VmBug(f"vma {vma}: anon_vma_chain not on its anon_vma's tree")
        if vma.vm_file is not None and not any(
                v is vma for v in vma_interval_tree_foreach(
                    vma.vm_file.f_mapping.i_mmap, vma.vm_pgoff, vma.vm_pgoff)):
            raise VmBug(f"vma {vma}: file mapping missing from i_mmap")
        prev_end = vma.vm_end


def check_mapcounts(kern: "Kernel", mms: Iterable[MmStruct]) -> None:
    """Every normal page's page_mapcount() equals the PTEs mapping it, its
    _count covers them, and each mm's RSS counters equal what its PTEs map."""
    fmt = kern.fmt
    ptes: Counter[int] = Counter()
    for mm in mms:
        anon = file = shmem = 0
        for vma in mm.mm_rb:
            for addr, pte_pa in pte_range(mm, vma.vm_start, vma.vm_end):
                pte = ptep_get(mm, pte_pa)
                if not pte or not fmt.pte_present(pte) or fmt.pte_special(pte):
                    continue
                pfn = fmt.pte_pfn(pte)
                ptes[pfn] += 1
                page = kern.pfn_to_page(pfn)
                if page.mapping & 1:
                    anon += 1
                elif page.flags >> 18 & 1:
                    shmem += 1
                else:
                    file += 1
        if (anon, file, shmem) != (mm.rss_anon, mm.rss_file, mm.rss_shmem):
            raise VmBug(f"rss counters anon/file/shmem {mm.rss_anon}/{mm.rss_file}/"
                        f"{mm.rss_shmem}, page tables map {anon}/{file}/{shmem}")
    for pfn, n in ptes.items():
        page = kern.pfn_to_page(pfn)
        if page._mapcount + 1 != n:
            raise VmBug(f"pfn {pfn:#x}: page_mapcount {page._mapcount + 1}, mapped by {n} PTEs")
        if page._count < n:
            raise VmBug(f"pfn {pfn:#x}: _count {page._count} < {n} mappings")
        if kern.buddy.is_free(pfn):
            raise VmBug(f"pfn {pfn:#x} is mapped and free")
        if page.lru is None and page.kind == "user":
            raise VmBug(f"pfn {pfn:#x} is mapped but on no LRU list")


def check_swap(kern: "Kernel", mms: Iterable[MmStruct]) -> None:
    """Every swap slot's reference count equals the swap PTEs naming it,
    SWAP_HAS_CACHE is set exactly for slots with a swap-cache page (which
    has PG_swapcache and the entry in page->private), each mm's swap counter
    equals its swap PTEs, and the free-slot totals add up."""
    from mmuemu.kernel.radix_tree import radix_tree_items
    from mmuemu.kernel.swapfile import SWAP_COUNT_MASK, SWAP_HAS_CACHE, swp_entry
    fmt = kern.fmt
    refs: Counter[int] = Counter()
    for mm in mms:
        swapents = 0
        for vma in mm.mm_rb:
            for _, pte_pa in pte_range(mm, vma.vm_start, vma.vm_end):
                pte = ptep_get(mm, pte_pa)
                if pte and not fmt.pte_present(pte):
                    refs[swp_entry(*fmt.pte_to_swp_entry(pte))] += 1
                    swapents += 1
        if swapents != mm.rss_swap:
            raise VmBug(f"swap counter {mm.rss_swap}, page tables hold {swapents} swap entries")
    cached = dict(radix_tree_items(kern.swapper_space.page_tree))
    if len(cached) != kern.swapper_space.nrpages:
        raise VmBug(f"swapper_space nrpages {kern.swapper_space.nrpages}, tree holds {len(cached)}")
    used = 0
    for si in kern.swap.swap_info:
        for offset, count in enumerate(si.swap_map):
            entry = swp_entry(si.type, offset)
            if not count and not refs.get(entry):
                continue
            used += 1
            if count & SWAP_COUNT_MASK != refs.get(entry, 0):
                raise VmBug(f"swap entry {entry:#x}: swap_map count {count & SWAP_COUNT_MASK}, "
                            f"{refs.get(entry, 0)} swap PTEs")
            page = cached.get(entry)
            if bool(count & SWAP_HAS_CACHE) != (page is not None):
                raise VmBug(f"swap entry {entry:#x}: SWAP_HAS_CACHE "
                            f"{bool(count & SWAP_HAS_CACHE)}, swap cache page {page}")
        if si.inuse_pages != sum(1 for c in si.swap_map if c):
            raise VmBug(f"swap device {si.type}: inuse_pages {si.inuse_pages} is wrong")
    if kern.swap.total_swap_pages - kern.swap.nr_swap_pages != used:
        raise VmBug(f"nr_swap_pages {kern.swap.nr_swap_pages} of {kern.swap.total_swap_pages}, "
                    f"but {used} slots are in use")
    for entry, page in cached.items():
        if not page.flags >> 9 & 1 or page.private != entry:
            raise VmBug(f"swap cache page pfn {page.pfn:#x} at {entry:#x}: PG_swapcache "
                        f"{page.flags >> 9 & 1}, private {page.private:#x}")


def check_lru(kern: "Kernel") -> None:
    """Every page on an LRU list is allocated, says which list it is on
    (page->lru, PG_lru, PG_active), and is held by someone."""
    for name, pages in kern.lruvec.lists.items():
        active = name.startswith("active")
        for pfn, page in pages.items():
            if page.pfn != pfn or page.lru != name or not page.flags >> 5 & 1:
                raise VmBug(f"pfn {pfn:#x} on {name}: page->lru {page.lru}, "
                            f"PG_lru {page.flags >> 5 & 1}")
            if bool(page.flags >> 6 & 1) != active:
                raise VmBug(f"pfn {pfn:#x} on {name} with PG_active {page.flags >> 6 & 1}")
            if page._count <= 0 or kern.buddy.is_free(pfn):
                raise VmBug(f"pfn {pfn:#x} on {name} is free (_count {page._count})")
