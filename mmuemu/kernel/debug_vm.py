"""Consistency checks (CONFIG_DEBUG_VM): validate_mm(), and that every page's
_mapcount equals the number of PTEs that map it (mm/debug.c, mm/mmap.c).

``--debug-vm`` runs them after every syscall; the tests run them after every
step of random operation sequences. A failure raises VmBug naming the broken
invariant.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Iterable

from mmuemu.kernel.mm_types import MmStruct
from mmuemu.kernel.pgtable import ptep_get, pte_range

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel


class VmBug(AssertionError):
    """An mm invariant does not hold (VM_BUG_ON_MM)."""


def validate_mm(mm: MmStruct) -> None:
    """validate_mm(): VMAs sorted, disjoint, page aligned, counted, anon_vma chains sane."""
    prev_end = 0
    for i, vma in enumerate(mm.mmap):
        if vma.vm_mm is not mm:
            raise VmBug(f"vma {vma} belongs to another mm")
        if vma.vm_start & 0xFFF or vma.vm_end & 0xFFF or vma.vm_start >= vma.vm_end:
            raise VmBug(f"vma {vma}: bad bounds")
        if vma.vm_start < prev_end:
            raise VmBug(f"vma {vma} overlaps or is out of order (previous end {prev_end:#x})")
        if mm.vm_ends[i] != vma.vm_end:
            raise VmBug(f"vm_ends[{i}] = {mm.vm_ends[i]:#x} but vma ends at {vma.vm_end:#x}")
        if vma.vm_end > mm.task_size:
            raise VmBug(f"vma {vma} beyond TASK_SIZE")
        if vma.anon_vma is not None:
            linked = {avc.anon_vma for avc in vma.anon_vma_chain}
            if vma.anon_vma not in linked:
                raise VmBug(f"vma {vma}: anon_vma not on its anon_vma_chain")
            for avc in vma.anon_vma_chain:
                if avc.vma is not vma or avc not in avc.anon_vma.head:
                    raise VmBug(f"vma {vma}: anon_vma_chain not on both lists")
        if vma.vm_file is not None and vma not in vma.vm_file.f_mapping.i_mmap:
            raise VmBug(f"vma {vma}: file mapping missing from i_mmap")
        prev_end = vma.vm_end
    if len(mm.mmap) != mm.map_count or len(mm.vm_ends) != mm.map_count:
        raise VmBug(f"map_count {mm.map_count}, list {len(mm.mmap)}, ends {len(mm.vm_ends)}")


def check_mapcounts(kern: "Kernel", mms: Iterable[MmStruct]) -> None:
    """Every normal page's page_mapcount() equals the PTEs mapping it, its
    _count covers them, and each mm's RSS counters equal what its PTEs map."""
    fmt = kern.fmt
    ptes: Counter[int] = Counter()
    for mm in mms:
        anon = file = shmem = 0
        for vma in mm.mmap:
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
