"""VMA management: mmap, munmap, brk, stack growth, mprotect (mm/mmap.c, mm/mprotect.c).

The VMAs of an mm live in ``mm.mm_rb`` (vma_tree.VmaTree): the rbtree
augmented with rb_subtree_gap, the vm_next/vm_prev list, map_count and
highest_vm_end, as in Linux 3.8-6.0. find_vma() walks the rbtree (after the
mmap_cache); get_unmapped_area() searches top-down from mmap_base with
vm_unmapped_area(), using the gaps stored in the tree, honouring the stack
guard gap below VM_GROWSDOWN VMAs. A file VMA is also on its mapping's i_mmap
interval tree, and each anon_vma_chain on its anon_vma's tree, keyed by
vm_pgoff: whoever moves vm_start, vm_end or vm_pgoff of a linked VMA goes
through vma_adjust(), which takes it off those trees and puts it back.
"""
from __future__ import annotations

import errno
from typing import Optional

from mmuemu.hw.pte import VmProt
from mmuemu.kernel.cacheflush import tlb_start_vma
from mmuemu.kernel import vma_tree
from mmuemu.kernel.interval_tree import (
    anon_vma_interval_tree_insert, anon_vma_interval_tree_remove, vma_interval_tree_insert,
    vma_interval_tree_remove,
)
from mmuemu.kernel.mm_types import (
    PAGE_MAPPING_ANON, VM, File, MmStruct, VmAreaStruct, update_hiwater_rss,
)
from mmuemu.kernel.pgtable import (free_pgd_range, nonempty_ptes, ptep_get, pte_range, pte_tables,
                                   set_pte_at)
from mmuemu.kernel.rmap import anon_vma_clone, page_remove_rmap, unlink_anon_vmas

PAGE_SIZE = 4096
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
PROT_GROWSDOWN = 0x01000000
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 0x01, 0x02, 0x03
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_GROWSDOWN = 0x0100
MAP_DENYWRITE = 0x0800
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_FIXED_NOREPLACE = 0x100000
MMAP_MIN_ADDR = 0x10000  # vm.mmap_min_addr


def vm_get_page_prot(mm: MmStruct, vm_flags: int) -> int:
    """vm_get_page_prot(): protection_map[vm_flags & (READ|WRITE|EXEC|SHARED)]."""
    return mm.kernel.fmt.protection_map(VmProt(
        bool(vm_flags & VM.READ), bool(vm_flags & VM.WRITE),
        bool(vm_flags & VM.EXEC), bool(vm_flags & VM.SHARED)))


def vma_wants_writenotify(vma: VmAreaStruct) -> bool:
    """vma_wants_writenotify(): a shared writable file mapping whose file
    system wants to hear of the first write (page_mkwrite, dirty accounting).

    shmem does not account dirty pages, so its PTEs may be writable at once.
    """
    return (vma.vm_flags & (VM.WRITE | VM.SHARED) == (VM.WRITE | VM.SHARED)
            and vma.vm_ops is not None and vma.vm_ops.page_mkwrite is not None)


def vma_set_page_prot(vma: VmAreaStruct) -> None:
    """vma_set_page_prot(): vm_page_prot from vm_flags, write-protected when
    the VMA wants write notification (vm_pgprot_modify(..., vm_flags & ~VM_SHARED))."""
    flags = vma.vm_flags
    if vma_wants_writenotify(vma):
        flags &= ~VM.SHARED
    vma.vm_page_prot = vm_get_page_prot(vma.vm_mm, flags)


def calc_vm_prot_bits(prot: int) -> int:
    """calc_vm_prot_bits(): PROT_* → VM_READ/WRITE/EXEC."""
    flags = VM.NONE
    if prot & PROT_READ:
        flags |= VM.READ
    if prot & PROT_WRITE:
        flags |= VM.WRITE
    if prot & PROT_EXEC:
        flags |= VM.EXEC
    return flags


# --- lookup -------------------------------------------------------------------

def find_vma(mm: MmStruct, addr: int) -> Optional[VmAreaStruct]:
    """find_vma(): the first VMA with vm_end > addr (it may start above addr)."""
    return vma_tree.find_vma(mm.mm_rb, addr)


def find_vma_prev(mm: MmStruct, addr: int) -> tuple[Optional[VmAreaStruct], Optional[VmAreaStruct]]:
    """find_vma_prev(): (find_vma(addr), the VMA before it)."""
    return vma_tree.find_vma_prev(mm.mm_rb, addr)


def vma_pages(vma: VmAreaStruct) -> int:
    """vma_pages()."""
    return (vma.vm_end - vma.vm_start) >> 12


def vm_stat_account(mm: MmStruct, flags: int, npages: int) -> None:
    """vm_stat_account(): total_vm and the exec/stack/data split."""
    mm.total_vm += npages
    if flags & (VM.EXEC | VM.WRITE) == VM.EXEC:
        mm.exec_vm += npages
    elif flags & VM.GROWSDOWN:
        mm.stack_vm += npages
    elif flags & (VM.WRITE | VM.SHARED) == VM.WRITE:
        mm.data_vm += npages


def __vma_link_file(vma: VmAreaStruct) -> None:
    if vma.vm_file is not None:
        mapping = vma.vm_file.f_mapping
        if vma.vm_flags & VM.SHARED:
            mapping.i_mmap_writable += 1
        vma_interval_tree_insert(vma, mapping.i_mmap)


def __vma_unlink_file(vma: VmAreaStruct) -> None:
    if vma.vm_file is not None:
        mapping = vma.vm_file.f_mapping
        if vma.vm_flags & VM.SHARED:
            mapping.i_mmap_writable -= 1
        vma_interval_tree_remove(vma, mapping.i_mmap)


def vma_link(mm: MmStruct, vma: VmAreaStruct) -> None:
    """vma_link(): insert into the vm_next list and the rbtree (map_count++),
    then into the file's i_mmap."""
    vma_tree._insert_vm_struct(mm.mm_rb, vma)
    __vma_link_file(vma)


def __vma_unlink(mm: MmStruct, vma: VmAreaStruct) -> None:
    """Off the rbtree and the list (map_count--, the gap above prev updated)."""
    vma_tree.vma_tree_remove(mm.mm_rb, vma)


def anon_vma_interval_tree_pre_update_vma(vma: VmAreaStruct) -> None:
    """anon_vma_interval_tree_pre_update_vma(): before vm_start/vm_end/vm_pgoff
    change, take the VMA's chains off their anon_vmas' interval trees."""
    for avc in vma.anon_vma_chain:
        anon_vma_interval_tree_remove(avc, avc.anon_vma.rb_root)


def anon_vma_interval_tree_post_update_vma(vma: VmAreaStruct) -> None:
    """anon_vma_interval_tree_post_update_vma(): file them again under the new interval."""
    for avc in vma.anon_vma_chain:
        anon_vma_interval_tree_insert(avc, avc.anon_vma.rb_root)


def vma_adjust(mm: MmStruct, vma: VmAreaStruct, start: int, end: int, pgoff: int) -> None:
    """__vma_adjust() for a linked VMA changing in place (no insert, no remove):
    new bounds and pgoff, kept right in i_mmap, the anon_vma trees and the
    rbtree gaps. The caller keeps the VMAs ordered and non-overlapping."""
    mapping = vma.vm_file.f_mapping if vma.vm_file is not None else None
    anon_vma_interval_tree_pre_update_vma(vma)
    if mapping is not None:
        vma_interval_tree_remove(vma, mapping.i_mmap)
    start_changed, end_changed = start != vma.vm_start, end != vma.vm_end
    vma.vm_start, vma.vm_end, vma.vm_pgoff = start, end, pgoff
    if mapping is not None:
        vma_interval_tree_insert(vma, mapping.i_mmap)
    anon_vma_interval_tree_post_update_vma(vma)
    vma_tree.vma_adjust_gaps(mm.mm_rb, vma, start_changed, end_changed)
    if mm.mm_rb.debug_vm_rb:
        from mmuemu.kernel.debug_vm import validate_mm
        validate_mm(mm)


def _vma_set_end(mm: MmStruct, vma: VmAreaStruct, end: int) -> None:
    """vma_adjust(vma, vma->vm_start, end, vma->vm_pgoff)."""
    vma_adjust(mm, vma, vma.vm_start, end, vma.vm_pgoff)


def vm_start_gap(vma: VmAreaStruct) -> int:
    """vm_start_gap(): a stack VMA's start less the stack guard gap."""
    return vma_tree.vm_start_gap(vma, vma.vm_mm.mm_rb.stack_guard_gap)


def vm_end_gap(vma: VmAreaStruct) -> int:
    """vm_end_gap(): vm_end (no VM_GROWSUP on x86-64 or arm64)."""
    return vma_tree.vm_end_gap(vma, vma.vm_mm.mm_rb.stack_guard_gap)


# --- placing new mappings -------------------------------------------------------

def unmapped_area_topdown(mm: MmStruct, length: int, low_limit: int, high_limit: int) -> int:
    """unmapped_area_topdown(): the highest [addr, addr+length) in a gap, within
    [low_limit, high_limit); O(log n) on the tree's rb_subtree_gap. -ENOMEM if none."""
    return vma_tree.unmapped_area_topdown(mm.mm_rb, length, low_limit, high_limit)


def task_unmapped_base(mm: MmStruct) -> int:
    """TASK_UNMAPPED_BASE: the bottom-up allocator's floor (x86-64: TASK_SIZE/3,
    arm64: DEFAULT_MAP_WINDOW/4, page aligned)."""
    div = 4 if mm.kernel.fmt.name == "aarch64" else 3
    return (mm.task_size // div + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def get_unmapped_area(mm: MmStruct, addr: int, length: int, flags: int) -> int:
    """get_unmapped_area() → arch_get_unmapped_area_topdown(): honour MAP_FIXED,
    then a free hint, else vm_unmapped_area() top-down below mmap_base, falling
    back to bottom-up from TASK_UNMAPPED_BASE when that fails."""
    if length > mm.task_size:
        return -errno.ENOMEM
    if flags & MAP_FIXED:
        if addr & 0xFFF or addr + length > mm.task_size:
            return -errno.EINVAL
        return addr
    if addr:
        addr = (addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        vma, prev = find_vma_prev(mm, addr)
        if (mm.task_size - length >= addr and addr >= MMAP_MIN_ADDR
                and (vma is None or addr + length <= vm_start_gap(vma))
                and (prev is None or addr >= vm_end_gap(prev))):
            return addr
    addr = unmapped_area_topdown(mm, length, max(PAGE_SIZE, MMAP_MIN_ADDR), mm.mmap_base)
    if addr < 0:
        # A failed mmap() very likely causes application failure, so fall
        # back to the bottom-up search (large stack limits, large mappings).
        addr = vma_tree.unmapped_area(mm.mm_rb, length, task_unmapped_base(mm), mm.task_size)
    return addr


# --- merging -----------------------------------------------------------------------

def is_mergeable_vma(vma: VmAreaStruct, file: Optional[File], vm_flags: int) -> bool:
    """is_mergeable_vma(): same flags and file, no special vm_ops close."""
    return vma.vm_flags == vm_flags and vma.vm_file is file


def is_mergeable_anon_vma(a: object, b: object, vma: VmAreaStruct) -> bool:
    """is_mergeable_anon_vma(): either side without an anon_vma, or the same one."""
    return a is None or b is None or a is b


def can_vma_merge_after(vma: VmAreaStruct, vm_flags: int, anon_vma: object,
                        file: Optional[File], vm_pgoff: int) -> bool:
    """can_vma_merge_after(): new range [.., ..) may extend ``vma`` upwards."""
    if is_mergeable_vma(vma, file, vm_flags) and is_mergeable_anon_vma(anon_vma, vma.anon_vma, vma):
        return file is None or vma.vm_pgoff + vma_pages(vma) == vm_pgoff
    return False


def can_vma_merge_before(vma: VmAreaStruct, vm_flags: int, anon_vma: object,
                         file: Optional[File], vm_pgoff: int, npages: int) -> bool:
    """can_vma_merge_before(): new range may extend ``vma`` downwards."""
    if is_mergeable_vma(vma, file, vm_flags) and is_mergeable_anon_vma(anon_vma, vma.anon_vma, vma):
        return file is None or vma.vm_pgoff == vm_pgoff + npages
    return False


def vma_merge(mm: MmStruct, prev: Optional[VmAreaStruct], addr: int, end: int, vm_flags: int,
              anon_vma: object, file: Optional[File], pgoff: int) -> Optional[VmAreaStruct]:
    """vma_merge(): extend prev and/or next over [addr, end) instead of a new VMA.

    Covers the cases of the big comment in mm/mmap.c: extend prev (and
    swallow next when the new range fills the hole exactly), or extend next
    downwards. Returns the VMA now covering the range, or None.
    """
    nxt = find_vma(mm, addr)
    if nxt is not None and nxt.vm_start < end:
        return None
    npages = (end - addr) >> 12
    merge_prev = (prev is not None and prev.vm_end == addr
                  and can_vma_merge_after(prev, vm_flags, anon_vma, file, pgoff))
    merge_next = (nxt is not None and nxt.vm_start == end
                  and can_vma_merge_before(nxt, vm_flags, anon_vma, file, pgoff, npages))
    if merge_prev and prev is not None:
        if (merge_next and nxt is not None
                and is_mergeable_anon_vma(prev.anon_vma, nxt.anon_vma, prev)):
            # case 1: prev absorbs the hole and next
            new_end = nxt.vm_end
            if prev.anon_vma is None and nxt.anon_vma is not None:
                anon_vma_clone(prev, nxt)
            remove_vma_from_mm(mm, nxt)
            _vma_set_end(mm, prev, new_end)
        else:
            _vma_set_end(mm, prev, end)
        return prev
    if merge_next and nxt is not None:
        vma_adjust(mm, nxt, addr, nxt.vm_end, pgoff)
        return nxt
    return None


def vma_merge_neighbours(mm: MmStruct, vma: VmAreaStruct) -> VmAreaStruct:
    """The merge step of mprotect_fixup()/madvise_update_vma(): after ``vma``'s
    flags changed, fold it into an identical neighbour (prev absorbs it, then
    it absorbs next), as vma_merge() does there. Returns the surviving VMA."""
    prev = vma.vm_prev
    if (prev is not None and prev.vm_end == vma.vm_start
            and can_vma_merge_after(prev, vma.vm_flags, vma.anon_vma, vma.vm_file, vma.vm_pgoff)):
        if prev.anon_vma is None and vma.anon_vma is not None:
            anon_vma_clone(prev, vma)
        end = vma.vm_end
        remove_vma_from_mm(mm, vma)
        _vma_set_end(mm, prev, end)
        vma = prev
    nxt = vma.vm_next
    if (nxt is not None and nxt.vm_start == vma.vm_end
            and can_vma_merge_before(nxt, vma.vm_flags, vma.anon_vma, vma.vm_file,
                                     vma.vm_pgoff, vma_pages(vma))):
        if vma.anon_vma is None and nxt.anon_vma is not None:
            anon_vma_clone(vma, nxt)
        end = nxt.vm_end
        remove_vma_from_mm(mm, nxt)
        _vma_set_end(mm, vma, end)
    return vma


def remove_vma_from_mm(mm: MmStruct, vma: VmAreaStruct) -> None:
    """Unlink ``vma`` (already emptied of pages) from everything and release it."""
    __vma_unlink(mm, vma)
    __vma_unlink_file(vma)
    remove_vma(vma)


def remove_vma(vma: VmAreaStruct) -> None:
    """remove_vma(): vm_ops->close, drop the anon_vma links and the file reference."""
    unlink_anon_vmas(vma)
    if vma.vm_file is not None:
        vma.vm_file.f_count -= 1


# --- mmap ------------------------------------------------------------------------------

def mmap_region(mm: MmStruct, file: Optional[File], addr: int, length: int, vm_flags: int,
                pgoff: int, vm_ops: object = None) -> int:
    """mmap_region(): clear the range, merge or create the VMA, link it."""
    end = addr + length
    if find_vma_intersection(mm, addr, end) is not None:
        ret = do_munmap(mm, addr, length)
        if ret:
            return ret
    _, prev = find_vma_prev(mm, addr)
    vma = None
    if file is None and not vm_flags & VM.SHARED:
        vma = vma_merge(mm, prev, addr, end, vm_flags, None, None, pgoff)
    if vma is None:
        vma = VmAreaStruct(vm_mm=mm, vm_start=addr, vm_end=end, vm_flags=vm_flags,
                           vm_page_prot=vm_get_page_prot(mm, vm_flags), vm_pgoff=pgoff,
                           vm_file=file)
        if file is not None:
            file.f_count += 1
            from mmuemu.kernel.shmem import file_mmap
            ret = file_mmap(file, vma)
            if ret:
                return ret
        elif vm_flags & VM.SHARED:
            from mmuemu.kernel.shmem import shmem_zero_setup
            shmem_zero_setup(vma)
        vma_set_page_prot(vma)
        vma_link(mm, vma)
    vm_stat_account(mm, vm_flags, length >> 12)
    return addr


def find_vma_intersection(mm: MmStruct, start: int, end: int) -> Optional[VmAreaStruct]:
    """find_vma_intersection(): a VMA overlapping [start, end), if any."""
    vma = find_vma(mm, start)
    if vma is not None and vma.vm_start < end:
        return vma
    return None


def do_mmap(mm: MmStruct, file: Optional[File], addr: int, length: int, prot: int,
            flags: int, pgoff: int) -> int:
    """do_mmap(): validate, pick an address, compute vm_flags, mmap_region().

    Returns the address or -errno.
    """
    if length == 0:
        return -errno.EINVAL
    length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if length == 0 or length > mm.task_size:
        return -errno.ENOMEM
    if flags & MAP_FIXED_NOREPLACE:
        flags |= MAP_FIXED
    addr = get_unmapped_area(mm, addr, length, flags)
    if addr < 0:
        return addr
    if flags & MAP_FIXED_NOREPLACE and find_vma_intersection(mm, addr, addr + length):
        return -errno.EEXIST
    vm_flags = calc_vm_prot_bits(prot) | VM.MAYREAD | VM.MAYWRITE | VM.MAYEXEC
    map_type = flags & MAP_SHARED_VALIDATE
    if file is not None:
        if map_type in (MAP_SHARED, MAP_SHARED_VALIDATE):
            if prot & PROT_WRITE and (file.f_mode & 3) != 2:
                return -errno.EACCES
            vm_flags |= VM.SHARED | VM.MAYSHARE
            if (file.f_mode & 3) == 0:
                vm_flags &= ~(VM.MAYWRITE | VM.SHARED)
        elif map_type == MAP_PRIVATE:
            if (file.f_mode & 3) == 1:
                return -errno.EACCES
        else:
            return -errno.EINVAL
    else:
        if map_type in (MAP_SHARED, MAP_SHARED_VALIDATE):
            vm_flags |= VM.SHARED | VM.MAYSHARE
            pgoff = 0
        elif map_type == MAP_PRIVATE:
            pgoff = addr >> 12
        else:
            return -errno.EINVAL
    if flags & MAP_GROWSDOWN:
        vm_flags |= VM.GROWSDOWN
    return mmap_region(mm, file, addr, length, vm_flags, pgoff)


# --- munmap ----------------------------------------------------------------------------

def __split_vma(mm: MmStruct, vma: VmAreaStruct, addr: int, new_below: bool) -> VmAreaStruct:
    """__split_vma(): cut ``vma`` at ``addr``; returns the new piece (below or above)."""
    new = VmAreaStruct(vm_mm=mm, vm_start=vma.vm_start, vm_end=vma.vm_end,
                       vm_flags=vma.vm_flags, vm_page_prot=vma.vm_page_prot,
                       vm_pgoff=vma.vm_pgoff, vm_file=vma.vm_file, vm_ops=vma.vm_ops,
                       vm_private_data=vma.vm_private_data)
    if new_below:
        new.vm_end = addr
        vma_adjust(mm, vma, addr, vma.vm_end, vma.vm_pgoff + ((addr - vma.vm_start) >> 12))
    else:
        new.vm_start = addr
        new.vm_pgoff += (addr - vma.vm_start) >> 12
        _vma_set_end(mm, vma, addr)
    anon_vma_clone(new, vma)
    if new.vm_file is not None:
        new.vm_file.f_count += 1
    vma_link(mm, new)
    return new


def zap_pte_range(vma: VmAreaStruct, start: int, end: int) -> list[int]:
    """zap_pte_range(): clear PTEs in [start, end), drop rmap and page references.

    Returns the pfns whose references must be dropped after the TLB flush
    (the mmu_gather batch: pages are freed only once no TLB can reach them).
    One table at a time, visiting only its non-empty slots (pte_none() is
    skipped, as Linux's loop does), with ptep_get_and_clear() and
    pte_present() inline as Linux has them.
    """
    from mmuemu.kernel.memory import vm_normal_page
    from mmuemu.kernel.filemap import set_page_dirty

    mm = vma.vm_mm
    kern = mm.kernel
    fmt = kern.fmt
    words = kern.phys.words
    present = fmt.present_mask
    pte_dirty = fmt.pte_dirty
    batch: list[int] = []
    append = batch.append
    for addr, pte_pa, nr in pte_tables(mm, start, end):
        first = pte_pa >> 3
        for k in nonempty_ptes(mm, pte_pa, nr):
            pte = words[first + k]  # ptep_get_and_clear()
            words[first + k] = 0
            if not pte & present:  # !pte_present()
                # a swap entry: drop its slot reference (and an unused swap-cache page)
                from mmuemu.kernel.swapfile import free_swap_and_cache, swp_entry
                free_swap_and_cache(kern, swp_entry(*fmt.pte_to_swp_entry(pte)))
                mm.rss_swap -= 1
                continue
            page = vm_normal_page(vma, addr + (k << 12), pte)
            if page is None:
                continue
            if not page.mapping & PAGE_MAPPING_ANON and pte_dirty(pte):  # !PageAnon()
                set_page_dirty(kern, page)
            page_remove_rmap(page, vma)
            append(page.pfn)
    return batch


def unmap_region(mm: MmStruct, vmas: list[VmAreaStruct], start: int, end: int,
                 floor: int, ceiling: int, fullmm: bool = False) -> None:
    """unmap_region(): unmap_vmas → tlb flush → free pages → free_pgtables.
    ``fullmm``: exit_mmap's teardown (tlb_gather_mmu_fullmm: no per-VMA cache flush)."""
    kern = mm.kernel
    if not fullmm:  # exit_mmap leaves it to do_exit
        update_hiwater_rss(mm)
    batch: list[int] = []
    for vma in vmas:
        if not fullmm:
            tlb_start_vma(vma)
        batch += zap_pte_range(vma, max(start, vma.vm_start), min(end, vma.vm_end))
    kern.tlb.flush_tlb_range(mm, start, end)  # tlb_finish_mmu
    from mmuemu.kernel.swap_state import free_pages_and_swap_cache
    free_pages_and_swap_cache(kern, [kern.pfn_to_page(pfn) for pfn in batch])
    if free_pgd_range(mm, start, end, floor, ceiling):
        kern.tlb.flush_tlb_range(mm, start, end)  # walk caches saw the freed tables


def do_munmap(mm: MmStruct, start: int, length: int) -> int:
    """do_munmap(): split at the edges, detach, unmap, remove. Returns 0 or -errno."""
    if start & 0xFFF or start >= mm.task_size or length > mm.task_size - start:
        return -errno.EINVAL
    length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if length == 0:
        return -errno.EINVAL
    end = start + length
    vma = find_vma(mm, start)
    if vma is None or vma.vm_start >= end:
        return 0
    if start > vma.vm_start:
        __split_vma(mm, vma, start, new_below=True)
    last = find_vma(mm, end)
    if last is not None and last.vm_start < end < last.vm_end:
        __split_vma(mm, last, end, new_below=True)
    first = find_vma(mm, start)
    assert first is not None and first.vm_start < end
    prev = first.vm_prev
    victims = vma_tree.detach_vmas_to_be_unmapped(mm.mm_rb, first, prev, end)
    prev_end = prev.vm_end if prev is not None else 0
    nxt = prev.vm_next if prev is not None else mm.mmap
    for v in victims:
        vm_stat_account(mm, v.vm_flags, -vma_pages(v))
    unmap_region(mm, victims, start, end, prev_end, nxt.vm_start if nxt else 0)
    for v in victims:
        __vma_unlink_file(v)
        remove_vma(v)
    return 0


# --- brk and the stack -------------------------------------------------------------------

def do_brk_flags(mm: MmStruct, addr: int, length: int, flags: int) -> int:
    """do_brk_flags(): anonymous private memory at [addr, addr+length), merged with prev."""
    length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if not length:
        return 0
    if find_vma_intersection(mm, addr, addr + length) is not None:
        ret = do_munmap(mm, addr, length)
        if ret:
            return ret
    vm_flags = VM.READ | VM.WRITE | VM.MAYREAD | VM.MAYWRITE | VM.MAYEXEC | flags
    _, prev = find_vma_prev(mm, addr)
    vma = vma_merge(mm, prev, addr, addr + length, vm_flags, None, None, addr >> 12)
    if vma is None:
        vma = VmAreaStruct(vm_mm=mm, vm_start=addr, vm_end=addr + length, vm_flags=vm_flags,
                           vm_page_prot=vm_get_page_prot(mm, vm_flags), vm_pgoff=addr >> 12)
        vma_link(mm, vma)
    vm_stat_account(mm, vm_flags, length >> 12)
    return 0


def sys_brk(mm: MmStruct, brk: int) -> int:
    """sys_brk(): move the program break; returns the (possibly unchanged) break."""
    min_brk = mm.start_brk
    if brk < min_brk:
        return mm.brk
    newbrk = (brk + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    oldbrk = (mm.brk + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if oldbrk == newbrk:
        mm.brk = brk
        return brk
    if brk <= mm.brk:
        if do_munmap(mm, newbrk, oldbrk - newbrk) == 0:
            mm.brk = brk
        return mm.brk
    nxt = find_vma(mm, oldbrk)
    if nxt is not None and newbrk + PAGE_SIZE > vm_start_gap(nxt):
        return mm.brk
    if do_brk_flags(mm, oldbrk, newbrk - oldbrk, VM.NONE) < 0:
        return mm.brk
    mm.brk = brk
    return brk


def expand_stack(mm: MmStruct, vma: VmAreaStruct, address: int) -> int:
    """expand_downwards(): grow a VM_GROWSDOWN VMA to cover ``address``.

    Refused when it would come within stack_guard_gap of the VMA below or
    exceed RLIMIT_STACK. Returns 0 or -ENOMEM.
    """
    address &= ~(PAGE_SIZE - 1)
    if address < MMAP_MIN_ADDR:
        return -errno.EPERM
    prev = vma.vm_prev
    gap = mm.mm_rb.stack_guard_gap
    if prev is not None and not prev.vm_flags & VM.GROWSDOWN and address - prev.vm_end < gap:
        return -errno.ENOMEM
    size = vma.vm_end - address
    if size > mm.kernel.config.stack_rlimit:
        return -errno.ENOMEM
    grow = (vma.vm_start - address) >> 12
    if grow > 0:
        vma_adjust(mm, vma, address, vma.vm_end, vma.vm_pgoff - grow)
        vm_stat_account(mm, vma.vm_flags, grow)
    return 0


# --- mprotect ----------------------------------------------------------------------------

def can_change_pte_writable(vma: VmAreaStruct, addr: int, pte: int) -> bool:
    """can_change_pte_writable(): may mprotect make this PTE writable at once?

    Private mappings: only for an exclusively owned anonymous page (the
    write fault would reuse it anyway; the model's PageAnonExclusive is
    "mapped once, referenced once"). Shared mappings: only if already dirty.
    """
    from mmuemu.kernel.memory import vm_normal_page
    from mmuemu.kernel.mm_types import PageAnon
    if not vma.vm_flags & VM.WRITE:
        return False
    if not vma.vm_flags & VM.SHARED:
        page = vm_normal_page(vma, addr, pte)
        return page is not None and PageAnon(page) and page._mapcount == 0 and page._count == 1
    return vma.vm_mm.kernel.fmt.pte_dirty(pte)


def change_protection(vma: VmAreaStruct, start: int, end: int, newprot: int) -> int:
    """change_protection() → change_pte_range(): rewrite present PTEs with the
    new protection, and where the VMA is writable make a PTE writable right
    away if can_change_pte_writable() allows (MM_CP_TRY_CHANGE_WRITABLE), so
    no write fault follows. One TLB flush for the range. Returns PTEs changed."""
    mm = vma.vm_mm
    fmt = mm.kernel.fmt
    try_writable = bool(vma.vm_flags & VM.WRITE) and not vma_wants_writenotify(vma)
    tlb_start_vma(vma)  # change_protection_range
    changed = 0
    for addr, pte_pa in pte_range(mm, start, end):
        pte = ptep_get(mm, pte_pa)
        if not pte or not fmt.pte_present(pte):
            continue
        new = fmt.pte_modify(pte, newprot)
        if try_writable and not fmt.pte_write(new) and can_change_pte_writable(vma, addr, new):
            new = fmt.pte_mkwrite(new)
        if new != pte:
            set_pte_at(mm, addr, pte_pa, new)
            changed += 1
    if changed:
        mm.kernel.tlb.flush_tlb_range(mm, start, end)
    return changed


def mprotect_fixup(mm: MmStruct, vma: VmAreaStruct, start: int, end: int, newflags: int) -> int:
    """mprotect_fixup(): split as needed, set vm_flags/vm_page_prot, change PTEs."""
    if newflags == vma.vm_flags:
        return 0
    if start > vma.vm_start:
        __split_vma(mm, vma, start, new_below=True)
    if end < vma.vm_end:
        __split_vma(mm, vma, end, new_below=False)
    vm_stat_account(mm, vma.vm_flags, -vma_pages(vma))
    vma.vm_flags = newflags
    vma_set_page_prot(vma)
    vm_stat_account(mm, newflags, vma_pages(vma))
    change_protection(vma, start, end, vma.vm_page_prot)
    vma_merge_neighbours(mm, vma)
    return 0


def do_mprotect(mm: MmStruct, start: int, length: int, prot: int) -> int:
    """do_mprotect_pkey(): apply PROT_* to every VMA in the range. Returns 0 or -errno."""
    if start & 0xFFF:
        return -errno.EINVAL
    if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
        return -errno.EINVAL
    length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    end = start + length
    if end < start:
        return -errno.ENOMEM
    if end == start:
        return 0
    vma = find_vma(mm, start)
    if vma is None or vma.vm_start > start:
        return -errno.ENOMEM
    nstart = start
    while True:
        vm_flags = calc_vm_prot_bits(prot)
        newflags = vm_flags | (vma.vm_flags & ~(VM.READ | VM.WRITE | VM.EXEC))
        if newflags & ~(newflags >> 4) & (VM.READ | VM.WRITE | VM.EXEC):
            return -errno.EACCES  # asked for a permission VM_MAY* forbids
        tmp = min(vma.vm_end, end)
        ret = mprotect_fixup(mm, vma, nstart, tmp, newflags)
        if ret:
            return ret
        nstart = tmp
        if nstart >= end:
            return 0
        vma = find_vma(mm, nstart)
        if vma is None or vma.vm_start > nstart:  # a hole (merging may have grown vma)
            return -errno.ENOMEM
