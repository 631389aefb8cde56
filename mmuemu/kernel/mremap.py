"""mremap(2) (mm/mremap.c): shrink, grow in place, or move.

A move creates the new VMA with copy_vma() (same vm_pgoff and anon_vma, so
every page keeps its rmap index), moves the PTEs with move_page_tables()
(the pages stay where they are: nothing is copied and nothing faults), flushes
the old range from the TLB, and unmaps the old range.
"""
from __future__ import annotations

import errno

from mmuemu.kernel.cacheflush import flush_cache_range
from mmuemu.kernel.mm_types import VM, MmStruct, VmAreaStruct
from mmuemu.kernel.mmap import (
    do_munmap, find_vma, get_unmapped_area, vm_stat_account, vma_link,
    vm_start_gap, _vma_set_end,
)
from mmuemu.kernel.pgtable import ptep_get_and_clear, pte_offset_alloc, pte_range, set_pte_at
from mmuemu.kernel.rmap import anon_vma_clone

MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


def vma_expandable(mm: MmStruct, vma: VmAreaStruct, delta: int) -> bool:
    """vma_expandable(): nothing in the way of growing ``vma`` by ``delta`` bytes."""
    end = vma.vm_end + delta
    if end > mm.task_size or end < vma.vm_end:
        return False
    nxt = vma.vm_next
    return nxt is None or vm_start_gap(nxt) >= end


def copy_vma(vma: VmAreaStruct, addr: int, length: int, pgoff: int) -> VmAreaStruct:
    """copy_vma(): a new VMA like ``vma`` at [addr, addr+length), same object and offset."""
    mm = vma.vm_mm
    new = VmAreaStruct(vm_mm=mm, vm_start=addr, vm_end=addr + length, vm_flags=vma.vm_flags,
                       vm_page_prot=vma.vm_page_prot, vm_pgoff=pgoff, vm_file=vma.vm_file,
                       vm_ops=vma.vm_ops, vm_private_data=vma.vm_private_data)
    anon_vma_clone(new, vma)
    if new.vm_file is not None:
        new.vm_file.f_count += 1
    vma_link(mm, new)
    vm_stat_account(mm, new.vm_flags, length >> 12)
    return new


def move_page_tables(vma: VmAreaStruct, old_addr: int, new_vma: VmAreaStruct, new_addr: int,
                     length: int) -> int:
    """move_page_tables(): carry every PTE to its new address. Returns PTEs moved."""
    mm = vma.vm_mm
    flush_cache_range(vma, old_addr, old_addr + length)
    moved: list[tuple[int, int]] = []
    for addr, pte_pa in pte_range(mm, old_addr, old_addr + length):
        pte = ptep_get_and_clear(mm, addr, pte_pa)
        if pte:
            moved.append((addr - old_addr + new_addr, pte))
    mm.kernel.tlb.flush_tlb_range(mm, old_addr, old_addr + length)
    for addr, pte in moved:
        set_pte_at(mm, addr, pte_offset_alloc(mm, addr), pte)
    return len(moved)


def move_vma(vma: VmAreaStruct, old_addr: int, old_len: int, new_len: int,
             new_addr: int) -> int:
    """move_vma(): copy_vma + move_page_tables + unmap the old range."""
    mm = vma.vm_mm
    pgoff = vma.vm_pgoff + ((old_addr - vma.vm_start) >> 12)
    new_vma = copy_vma(vma, new_addr, new_len, pgoff)
    move_page_tables(vma, old_addr, new_vma, new_addr, old_len)
    # the old range's pages now belong to new_vma: do_munmap finds no PTEs there
    ret = do_munmap(mm, old_addr, old_len)
    return new_addr if ret == 0 else ret


def do_mremap(mm: MmStruct, addr: int, old_len: int, new_len: int, flags: int,
              new_addr: int) -> int:
    """sys_mremap(): returns the (new) address or -errno."""
    if flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
        return -errno.EINVAL
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
        return -errno.EINVAL
    if flags & MREMAP_DONTUNMAP:
        return -errno.EINVAL  # not modelled
    if addr & 0xFFF:
        return -errno.EINVAL
    old_len = (old_len + 0xFFF) & ~0xFFF
    new_len = (new_len + 0xFFF) & ~0xFFF
    if not new_len:
        return -errno.EINVAL
    vma = find_vma(mm, addr)
    if vma is None or vma.vm_start > addr:
        return -errno.EFAULT
    if old_len > vma.vm_end - addr:
        return -errno.EFAULT
    if flags & MREMAP_FIXED:
        if new_addr & 0xFFF or new_addr + new_len > mm.task_size:
            return -errno.EINVAL
        if new_addr < addr + old_len and addr < new_addr + new_len:
            return -errno.EINVAL
        do_munmap(mm, new_addr, new_len)
        if old_len > new_len:
            do_munmap(mm, addr + new_len, old_len - new_len)
            old_len = new_len
        vma = find_vma(mm, addr)
        assert vma is not None
        return move_vma(vma, addr, old_len, new_len, new_addr)
    if old_len >= new_len:
        if old_len > new_len:
            ret = do_munmap(mm, addr + new_len, old_len - new_len)
            if ret:
                return ret
        return addr
    if vma.vm_flags & VM.DONTEXPAND:
        return -errno.EFAULT
    if addr + old_len == vma.vm_end and vma_expandable(mm, vma, new_len - old_len):
        _vma_set_end(mm, vma, addr + new_len)  # vma_adjust(): grow in place
        vm_stat_account(mm, vma.vm_flags, (new_len - old_len) >> 12)
        return addr
    if not flags & MREMAP_MAYMOVE:
        return -errno.ENOMEM
    target = get_unmapped_area(mm, 0, new_len, 0)
    if target < 0:
        return target
    return move_vma(vma, addr, old_len, new_len, target)

