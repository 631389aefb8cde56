"""fork: copying an address space (kernel/fork.c: dup_mm, dup_mmap; mm/memory.c:
copy_page_range; mm/rmap.c: anon_vma_fork).

Private writable mappings become copy-on-write: copy_present_pte()
write-protects the PTE in parent and child and takes a reference and a
mapcount for the child; the parent's TLB is flushed once at the end
(flush_tlb_mm), since its PTEs were downgraded. File mappings that have no
anonymous pages are not copied at all (vma_needs_copy): the child faults
them in itself, as on Linux.
"""
from __future__ import annotations

from mmuemu.kernel.cacheflush import flush_cache_dup_mm
from mmuemu.kernel.swapfile import swap_duplicate, swp_entry
from mmuemu.kernel.mm_types import VM, MmStruct, VmAreaStruct, get_mm_rss
from mmuemu.kernel.memory import vm_normal_page
from mmuemu.kernel.mmap import vma_link, vm_stat_account
from mmuemu.kernel.pgtable import nonempty_ptes, pte_offset_alloc, pte_tables, set_pte_at
from mmuemu.kernel.rmap import anon_vma_alloc, anon_vma_chain_link, anon_vma_clone
from mmuemu.kernel.sched import TaskStruct


def is_cow_mapping(flags: int) -> bool:
    """is_cow_mapping(): private and possibly writable."""
    return flags & (VM.SHARED | VM.MAYWRITE) == VM.MAYWRITE


def anon_vma_fork(vma: VmAreaStruct, pvma: VmAreaStruct) -> int:
    """anon_vma_fork(): link the child VMA to all of the parent's anon_vmas, then
    give it its own anon_vma (child of the parent's, same root) for the pages
    it will COW from now on."""
    if pvma.anon_vma is None:
        return 0
    vma.anon_vma = None
    anon_vma_clone(vma, pvma)
    anon_vma = anon_vma_alloc(vma)
    parent = pvma.anon_vma
    anon_vma.root = parent.root
    anon_vma.parent = parent
    if parent.root is not None:
        parent.root.refcount += 1  # get_anon_vma(anon_vma->root)
    vma.anon_vma = anon_vma
    anon_vma_chain_link(vma, anon_vma)
    parent.degree += 1
    return 0


def vma_needs_copy(dst: VmAreaStruct, src: VmAreaStruct) -> bool:
    """vma_needs_copy(): only VMAs with anonymous pages (or PFN maps) need their PTEs copied."""
    return bool(src.vm_flags & VM.PFNMAP) or src.anon_vma is not None


def copy_page_range(dst: VmAreaStruct, src: VmAreaStruct) -> int:
    """copy_page_range() → copy_pte_range() → copy_present_pte(). Returns PTEs copied.

    As copy_pte_range(): per source table, the child's table is allocated
    first (pte_alloc_map_lock), then the source's non-empty slots are
    copied one by one, with ptep_get(), pte_present() and the refcount and
    mapcount taken inline (get_page, page_dup_rmap).
    """
    if not vma_needs_copy(dst, src):
        return 0
    src_mm, dst_mm = src.vm_mm, dst.vm_mm
    kern = src_mm.kernel
    fmt = kern.fmt
    words = kern.phys.words
    present = fmt.present_mask
    write = fmt.write_mask
    pte_wrprotect, pte_mkclean, pte_mkold = fmt.pte_wrprotect, fmt.pte_mkclean, fmt.pte_mkold
    cow = is_cow_mapping(src.vm_flags)
    shared = src.vm_flags & VM.SHARED
    copied = 0
    for addr, src_pa, nr in pte_tables(src_mm, src.vm_start, src.vm_end):
        slots = nonempty_ptes(src_mm, src_pa, nr)
        if not slots:
            continue
        # The child's table first (pte_alloc_map_lock): the allocation may
        # reclaim, which can turn the parent's PTEs into swap entries or
        # clear them, so they are read after it.
        dst_pa = pte_offset_alloc(dst_mm, addr)
        for k in slots:
            a = addr + (k << 12)
            pte = words[(src_pa >> 3) + k]  # ptep_get()
            if not pte:
                continue
            if not pte & present:  # !pte_present()
                # copy_nonpresent_pte(): a swap entry is shared, its slot gains a reference
                swap_duplicate(kern, swp_entry(*fmt.pte_to_swp_entry(pte)))
                dst_mm.rss_swap += 1
                set_pte_at(dst_mm, a, dst_pa + (k << 3), pte)
                copied += 1
                continue
            page = vm_normal_page(src, a, pte)
            if page is not None:
                page._count += 1  # get_page()
                page._mapcount += 1  # page_dup_rmap()
                if page.mapping & 1:
                    dst_mm.rss_anon += 1
                elif page.flags >> 18 & 1:
                    dst_mm.rss_shmem += 1
                else:
                    dst_mm.rss_file += 1
            if cow and pte & write:  # pte_write()
                pte = pte_wrprotect(pte)  # ptep_set_wrprotect() on the parent too
                set_pte_at(src_mm, a, src_pa + (k << 3), pte)
            if shared:
                pte = pte_mkclean(pte)
            pte = pte_mkold(pte)
            set_pte_at(dst_mm, a, dst_pa + (k << 3), pte)
            copied += 1
    return copied


def dup_mmap(mm: MmStruct, oldmm: MmStruct) -> int:
    """dup_mmap(): copy every VMA (except VM_DONTCOPY) and its PTEs. Returns 0."""
    flush_cache_dup_mm(oldmm)
    mm.mmap_base = oldmm.mmap_base
    mm.task_size = oldmm.task_size
    for name in ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
                 "start_stack", "arg_start", "arg_end", "env_start", "env_end"):
        setattr(mm, name, getattr(oldmm, name))
    for mpnt in list(oldmm.mm_rb):
        if mpnt.vm_flags & VM.DONTCOPY:
            continue
        tmp = VmAreaStruct(vm_mm=mm, vm_start=mpnt.vm_start, vm_end=mpnt.vm_end,
                           vm_flags=mpnt.vm_flags, vm_page_prot=mpnt.vm_page_prot,
                           vm_pgoff=mpnt.vm_pgoff, vm_file=mpnt.vm_file, vm_ops=mpnt.vm_ops,
                           vm_private_data=mpnt.vm_private_data)
        anon_vma_fork(tmp, mpnt)
        if tmp.vm_file is not None:
            tmp.vm_file.f_count += 1
        vma_link(mm, tmp)
        vm_stat_account(mm, tmp.vm_flags, (tmp.vm_end - tmp.vm_start) >> 12)
        copy_page_range(tmp, mpnt)
    mm.hiwater_rss = get_mm_rss(mm)  # dup_mm()
    oldmm.kernel.tlb.flush_tlb_mm(oldmm)
    return 0


def copy_process(parent: TaskStruct, pid: int) -> TaskStruct:
    """copy_process(): a new task with a copy of the parent's mm and files."""
    kern = parent.mm.kernel
    mm = kern.mm_alloc()
    dup_mmap(mm, parent.mm)
    child = TaskStruct(pid=pid, comm=parent.comm, mm=mm, ppid=parent.pid, cwd=parent.cwd,
                       parent=parent)
    for fd, f in parent.files.items():
        if f is not None:
            f.f_count += 1
        child.files[fd] = f
    parent.children.append(child)
    return child
