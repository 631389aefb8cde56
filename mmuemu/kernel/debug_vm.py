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
