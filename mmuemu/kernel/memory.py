"""The page-fault path (mm/memory.c).

    handle_mm_fault (→ __handle_mm_fault → handle_pte_fault, both inline)
        pte none, anonymous VMA  → do_anonymous_page   (zero page on read)
        pte none, file VMA       → do_linear_fault → do_read_fault (+ do_fault_around)
                                                   → do_cow_fault
                                                   → do_shared_fault
        pte not present          → do_swap_page
        write, pte read-only     → do_wp_page → wp_page_reuse / wp_page_copy / wp_page_shared
        otherwise                → mark_pte_accessed (access-flag / spurious fault)

Structure and names are Linux 3.15+'s (do_linear_fault dispatching to
do_read_fault/do_cow_fault/do_shared_fault, fault-around in do_read_fault);
behaviour follows the host's 6.x kernel where it differs in what a program
sees. Handlers return VM_FAULT_* bits, never raise for guest errors.

TLB rules, as in Linux: filling a PTE that was empty needs no flush ("it was
non-present before"); replacing or downgrading a present PTE does
(ptep_clear_flush in wp_page_copy).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mmuemu.hw.pte import ADDR_MASK
from mmuemu.kernel.mm_types import (
    PAGE_MAPPING_ANON, PG, PG_readahead, VM, ClearPage, FaultFlag, FaultKind, Page,
    PageTest, SetPage,
    VmAreaStruct, VmFault, VmFaultReason, VM_FAULT_ERROR,
)
from mmuemu.kernel.cacheflush import copy_user_highpage
from mmuemu.kernel.filemap import set_page_dirty, unlock_page
from mmuemu.kernel.swap import LRU_ACTIVE_ANON, lru_cache_add
from mmuemu.kernel.page_alloc import OutOfMemory
from mmuemu.kernel.pgtable import (
    ptep_clear_flush, ptep_get, pte_offset_alloc, set_pte_at,
)
if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel
from mmuemu.kernel.rmap import (
    anon_vma_prepare, do_page_add_anon_rmap, page_add_file_rmap,
    page_add_new_anon_rmap, page_move_anon_rmap, page_remove_rmap,
)


#: FaultKind members bound once: reading one through the Enum class is a
#: descriptor call on Python 3.11, and each fault sets one
_KIND_ANON = FaultKind.ANON
_KIND_COW = FaultKind.COW
_KIND_FILE = FaultKind.FILE
_KIND_SHARED = FaultKind.SHARED
_KIND_SPURIOUS = FaultKind.SPURIOUS
_KIND_SWAP = FaultKind.SWAP
_KIND_WP = FaultKind.WP
_KIND_ZERO = FaultKind.ZERO
#: VM_FAULT_* and FAULT_FLAG_* bits the accounting tests, as module constants
_RETRY = VmFaultReason.RETRY
_MAJOR = VmFaultReason.MAJOR
_ERROR_OR_RETRY = VM_FAULT_ERROR | VmFaultReason.RETRY
_TRIED = FaultFlag.TRIED
#: the flags and bits the handlers below test on every fault, as module
#: constants: Python 3.11 reads a class attribute by the generic lookup
#: (about 22 ns), a module global from its cache (about 8 ns)
_FAULT_WRITE = FaultFlag.WRITE
_VM_WRITE = VM.WRITE
_VM_SHARED = VM.SHARED
_VM_WRITE_SHARED = VM.WRITE | VM.SHARED
_PG_UPTODATE = 1 << PG.uptodate
_PG_LOCKED = 1 << PG.locked
_NONE = VmFaultReason.NONE
_WRITE = VmFaultReason.WRITE
#: PG_swapcache (PG_owner_priv_1) as a mask
_PG_SWAPCACHE = 1 << PG.owner_priv_1


def vma_is_anonymous(vma: VmAreaStruct) -> bool:
    """vma_is_anonymous(): no vm_ops (private anonymous memory, stack, heap, bss)."""
    return vma.vm_ops is None


def vm_normal_page(vma: VmAreaStruct, addr: int, pte: int) -> Page | None:
    """vm_normal_page(): the struct page behind a PTE, None for special ones (zero page)."""
    kern = vma.vm_mm.kernel
    if pte & kern.fmt.special_mask:  # pte_special()
        return None
    pfn = (pte & ADDR_MASK) >> 12  # pte_pfn()
    page = kern.buddy.mem_map[pfn]  # pfn_to_page(), inline: a mapped frame has its page
    return kern.pfn_to_page(pfn) if page is None else page


def do_set_pte(vma: VmAreaStruct, address: int, page: Page, pte_pa: int,
               write: bool, anon: bool) -> None:
    """do_set_pte(): install a PTE for ``page`` (caller holds a page reference for it).

    The fault path calls it with ``write`` and ``anon`` positional: Python
    3.11 specializes no call with keyword arguments."""
    mm = vma.vm_mm
    kern = mm.kernel
    entry = page.pfn << 12 | vma.vm_page_prot  # mk_pte(): pfn_pte(page_to_pfn(page), vm_page_prot)
    if write:  # pte_mkwrite(pte_mkdirty())
        fmt = kern.fmt
        entry |= fmt.write_dirty_set
        clear = fmt.write_dirty_clear
        if clear:  # (none on x86-64: an AND of a 64-bit entry costs twice an OR)
            entry &= ~clear
    if anon:
        page_add_new_anon_rmap(page, vma, address)
        lru_cache_add(kern, page, LRU_ACTIVE_ANON)
    else:
        page_add_file_rmap(page, vma)
    # set_pte_at(), inline (a call fewer on every anonymous and COW fault):
    # the arch hook for a present PTE it does not skip, then the store
    hook = kern.set_pte_hook
    if hook is not None and entry & kern.fmt.present_mask and not entry & kern.set_pte_hook_skip:
        hook(mm, address, entry)
    kern.phys.words[pte_pa >> 3] = entry
    # no need to invalidate: it was non-present before


class FaultCounts:
    """The per-task fault counters getrusage() reports (task_struct min_flt/maj_flt)."""

    __slots__ = ("min_flt", "maj_flt")

    def __init__(self) -> None:
        self.min_flt = 0
        self.maj_flt = 0


def handle_mm_fault(vma: VmAreaStruct, address: int, flags: int,
                    counts: FaultCounts | None = None,
                    vmf: VmFault | None = None) -> tuple[int, VmFault]:
    """handle_mm_fault(): resolve a fault at ``address`` inside ``vma``.

    Requires: the caller (the arch fault handler) found ``vma`` and checked
    the access against vm_flags. Returns the VM_FAULT_* result and the
    vm_fault, whose ``kind``/``detail`` say which handler resolved it.

    ``vmf``: a vm_fault to fill (every field) instead of making one, as
    Linux's lives in __handle_mm_fault's stack frame, storage that the next
    fault reuses. The machine passes its own on every fault; whoever keeps
    a vm_fault past its fault must not (do_user_addr_fault does not).
    """
    # __handle_mm_fault(), inline (a call fewer on every fault): build the
    # vm_fault, allocate the page tables down to the PTE, handle_pte_fault()
    pgoff = ((address - vma.vm_start) >> 12) + vma.vm_pgoff  # linear_page_index()
    mm = vma.vm_mm
    if vmf is None:
        vmf = VmFault(vma, address & ~0xFFF, address, flags, pgoff)
    else:  # every field set again, as a new one would have them: stores, not a
        # call (test_a_reused_vm_fault_is_filled_as_a_new_one_would_be checks them all)
        vmf.vma = vma
        vmf.address = address & ~0xFFF
        vmf.real_address = address
        vmf.flags = flags
        vmf.pgoff = pgoff
        vmf.pte_pa = 0
        vmf.orig_pte = 0
        vmf.page = None
        vmf.cow_page = None
        vmf.kind = _KIND_SPURIOUS
        vmf.detail = ""
    kern = mm.kernel
    words = kern.phys.words
    # pte_offset_alloc()'s first test, inline: the table of the last fault,
    # if its PMD entry still points there
    hint_key, pmd_index, pmd_entry, hint_table = mm.pte_table_hint
    try:
        if hint_key == address >> 21 and words[pmd_index] == pmd_entry:
            pte_pa = hint_table + ((address >> 9) & 0xFF8)  # + pte_index(address) * 8
        else:
            pte_pa = pte_offset_alloc(mm, address)
        vmf.pte_pa = pte_pa
        # handle_pte_fault(), inline (a call fewer on every fault): classify
        # the PTE and call its handler
        entry = vmf.orig_pte = words[pte_pa >> 3]  # ptep_get()
        fmt = kern.fmt
        if not entry & fmt.present_mask:  # !pte_present()
            if entry:
                ret = do_swap_page(vmf)
            elif vma.vm_ops is None:  # pte_none(), vma_is_anonymous()
                ret = do_anonymous_page(vmf)
            else:
                ret = do_linear_fault(vmf)
        elif flags & _FAULT_WRITE and not entry & fmt.write_mask:  # !pte_write()
            ret = do_wp_page(vmf)
        else:
            ret = mark_pte_accessed(vmf, entry)
    except OutOfMemory:  # a page table or the page itself
        ret = VmFaultReason.OOM
    # mm_account_fault(), inline: PGFAULT unless the fault is retried;
    # per-task maj/min only for successful faults
    vmstat = kern.vmstat
    if ret & _ERROR_OR_RETRY:
        if not ret & _RETRY:
            vmstat.pgfault += 1
        if not ret & VM_FAULT_ERROR:
            vmstat.by_type[vmf.kind._value_] += 1
        return ret, vmf
    vmstat.pgfault += 1
    vmstat.by_type[vmf.kind._value_] += 1
    if counts is not None:
        if ret & _MAJOR or flags & _TRIED:
            counts.maj_flt += 1
        else:
            counts.min_flt += 1
    return ret, vmf


def mark_pte_accessed(vmf: VmFault, entry: int) -> int:
    """handle_pte_fault()'s last case: the present PTE already allows the
    access. Set its young bit (and dirty, for a write) if they are missing
    (ptep_set_access_flags); otherwise the fault came from a stale
    translation and only the TLB entry goes (flush_tlb_fix_spurious_fault)."""
    vma = vmf.vma
    mm = vma.vm_mm
    fmt = mm.kernel.fmt
    if vmf.flags & _FAULT_WRITE:
        entry = fmt.pte_mkdirty(entry)
    entry = fmt.pte_mkyoung(entry)
    vmf.kind = _KIND_SPURIOUS
    if entry != vmf.orig_pte:  # ptep_set_access_flags()
        set_pte_at(mm, vmf.address, vmf.pte_pa, entry)
    else:  # flush_tlb_fix_spurious_fault()
        mm.kernel.tlb.flush_tlb_page(mm, vmf.address)
    return _NONE


def do_anonymous_page(vmf: VmFault) -> int:
    """do_anonymous_page(): first touch of private anonymous memory.

    A read maps the shared zero page read-only (special PTE); a write
    allocates a zeroed page, links it into the VMA's anon_vma and maps it
    writable and dirty.
    """
    vma = vmf.vma
    mm = vma.vm_mm
    kern = mm.kernel
    fmt = kern.fmt
    if vma.vm_flags & _VM_SHARED:
        return VmFaultReason.SIGBUS
    if not vmf.flags & _FAULT_WRITE and kern.config.use_zero_page:
        entry = fmt.pte_mkspecial(fmt.pfn_pte(kern.zero_pfn, vma.vm_page_prot))
        set_pte_at(mm, vmf.address, vmf.pte_pa, entry)
        vmf.kind = _KIND_ZERO
        return _NONE
    if vma.anon_vma is None:  # anon_vma_prepare()'s inline test
        anon_vma_prepare(vma)
    page = kern.alloc_page("user", True)  # alloc_zeroed_user_highpage_movable (zero)
    page.flags |= _PG_UPTODATE  # __SetPageUptodate()
    do_set_pte(vma, vmf.address, page, vmf.pte_pa,
               vma.vm_flags & _VM_WRITE != 0, True)  # write, anon
    vmf.kind = _KIND_ANON
    return _NONE


def __do_fault(vmf: VmFault) -> int:
    """__do_fault(): call vma->vm_ops->fault; the page comes back locked with a reference."""
    ops = vmf.vma.vm_ops
    assert ops is not None
    ret = ops.fault(vmf)
    if ret & (VM_FAULT_ERROR | VmFaultReason.NOPAGE | VmFaultReason.RETRY):
        return ret
    return ret


def do_fault_around(vmf: VmFault) -> int:
    """do_fault_around(): map cached neighbours in a fault_around_bytes window.

    The window is aligned to fault_around_pages, clamped to the VMA and to
    the last-level table, as in Linux 6.x.
    """
    vma = vmf.vma
    nr_pages = vma.vm_mm.kernel.fault_around_pages
    pte_off = (vmf.address >> 12) & 511
    vma_off = vmf.pgoff - vma.vm_pgoff
    from_pte = max(pte_off & ~(nr_pages - 1), pte_off - min(pte_off, vma_off))
    vma_pages = (vma.vm_end - vma.vm_start) >> 12
    to_pte = min(from_pte + nr_pages, 512, pte_off + vma_pages - vma_off) - 1
    ops = vma.vm_ops
    assert ops is not None and ops.map_pages is not None
    return ops.map_pages(vmf, vmf.pgoff + from_pte - pte_off, vmf.pgoff + to_pte - pte_off)


def do_read_fault(vmf: VmFault) -> int:
    """do_read_fault(): read fault on a file mapping, fault-around first."""
    vma = vmf.vma
    ops = vma.vm_ops
    assert ops is not None
    vmf.kind = _KIND_FILE
    if ops.map_pages is not None and vma.vm_mm.kernel.fault_around_pages > 1:
        ret = do_fault_around(vmf)
        if ret:
            return ret
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VmFaultReason.NOPAGE | VmFaultReason.RETRY):
        return ret
    page = vmf.page
    assert page is not None
    # finish_fault(): the reference from ->fault is the one the PTE keeps
    do_set_pte(vma, vmf.address, page, vmf.pte_pa, write=False, anon=False)
    unlock_page(page)
    return ret


def do_cow_fault(vmf: VmFault) -> int:
    """do_cow_fault(): write fault on a private file mapping: copy the file page."""
    vma = vmf.vma
    kern = vma.vm_mm.kernel
    vmf.kind = _KIND_COW
    if vma.anon_vma is None:  # anon_vma_prepare()'s inline test
        anon_vma_prepare(vma)
    new_page = kern.alloc_page()
    vmf.cow_page = new_page
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VmFaultReason.NOPAGE | VmFaultReason.RETRY):
        kern.put_page(new_page)
        return ret
    page = vmf.page
    assert page is not None
    copy_user_highpage(kern, new_page, page)
    SetPage(new_page, PG.uptodate)
    unlock_page(page)
    kern.put_page(page)
    kern.vmstat.cow_copies += 1
    do_set_pte(vma, vmf.address, new_page, vmf.pte_pa, write=True, anon=True)
    return ret


def do_shared_fault(vmf: VmFault) -> int:
    """do_shared_fault(): write fault on a shared file mapping: page_mkwrite, map dirty."""
    vma = vmf.vma
    kern = vma.vm_mm.kernel
    vmf.kind = _KIND_SHARED
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VmFaultReason.NOPAGE | VmFaultReason.RETRY):
        return ret
    page = vmf.page
    assert page is not None
    ops = vma.vm_ops
    if ops is not None and ops.page_mkwrite is not None:
        unlock_page(page)
        tmp = ops.page_mkwrite(vmf)
        if tmp & VM_FAULT_ERROR:
            kern.put_page(page)
            return tmp
    do_set_pte(vma, vmf.address, page, vmf.pte_pa, write=True, anon=False)
    set_page_dirty(kern, page)  # fault_dirty_shared_page()
    unlock_page(page)
    return ret


def do_linear_fault(vmf: VmFault) -> int:
    """do_linear_fault() (do_fault() in 6.x): pick read, COW or shared."""
    vma = vmf.vma
    if vma.vm_ops is None or vma.vm_ops.fault is None:
        return VmFaultReason.SIGBUS
    if not vmf.flags & FaultFlag.WRITE:
        ret = do_read_fault(vmf)
    elif not vma.vm_flags & VM.SHARED:
        ret = do_cow_fault(vmf)
    else:
        ret = do_shared_fault(vmf)
    return ret


def do_swap_page(vmf: VmFault) -> int:
    """do_swap_page(): the PTE holds a swap entry; bring the page back.

    Look in the swap cache first; on a miss read the slot and its cluster
    (swapin_readahead) and count a major fault. Map the page; on a write, if
    no other swap PTE or mapping shares it (reuse_swap_page), it leaves the
    swap cache, is mapped writable and dirty and its slot is freed. Then the
    PTE's reference to the slot goes (swap_free), and the slot is dropped
    when swap is more than half full. A write that could not reuse the page
    continues in do_wp_page (a COW copy).
    """
    from mmuemu.kernel.swap_state import lookup_swap_cache, swapin_readahead
    from mmuemu.kernel.swapfile import swap_free, swp_entry, try_to_free_swap
    vma = vmf.vma
    mm = vma.vm_mm
    kern = mm.kernel
    fmt = kern.fmt
    vmf.kind = _KIND_SWAP
    entry = swp_entry(*fmt.pte_to_swp_entry(vmf.orig_pte))
    ret = VmFaultReason.NONE
    page = lookup_swap_cache(kern, entry)
    if page is None:
        page, _ = swapin_readahead(kern, entry, vma, vmf.address)
        if page is None:
            # the slot was freed meanwhile: another path resolved the PTE
            return VmFaultReason.NONE if ptep_get(mm, vmf.pte_pa) != vmf.orig_pte \
                else VmFaultReason.OOM
        ret = VmFaultReason.MAJOR
        kern.vmstat.pgmajfault += 1
        vmf.detail = "major"
    else:
        vmf.detail = "cache"
    ClearPage(page, PG_readahead)
    SetPage(page, PG.locked)  # lock_page()
    if ptep_get(mm, vmf.pte_pa) != vmf.orig_pte:  # pte_same() failed: somebody mapped it
        unlock_page(page)
        kern.put_page(page)
        return ret
    if vma.anon_vma is None:  # anon_vma_prepare()'s inline test
        anon_vma_prepare(vma)
    mm.rss_swap -= 1
    entry_pte = fmt.pfn_pte(page.pfn, vma.vm_page_prot)
    exclusive = False
    write = bool(vmf.flags & FaultFlag.WRITE)
    if write and reuse_swap_page(kern, page):
        entry_pte = fmt.pte_mkdirty(entry_pte)
        if vma.vm_flags & VM.WRITE:
            entry_pte = fmt.pte_mkwrite(entry_pte)  # maybe_mkwrite()
        write = False
        ret |= VmFaultReason.WRITE
        exclusive = True
    # our reference from the lookup becomes the PTE's
    do_page_add_anon_rmap(page, vma, vmf.address, exclusive)
    set_pte_at(mm, vmf.address, vmf.pte_pa, entry_pte)
    swap_free(kern, entry)
    if kern.swap.vm_swap_full() or vma.vm_flags & VM.LOCKED:
        try_to_free_swap(kern, page)
    unlock_page(page)
    if write:  # the page is shared with a swap PTE elsewhere: break COW now
        vmf.orig_pte = entry_pte
        ret |= do_wp_page(vmf)
        vmf.kind = _KIND_SWAP
        vmf.detail += "+cow"
    return ret


def reuse_swap_page(kern: "Kernel", page: Page) -> bool:
    """reuse_swap_page(): may a write fault keep this page? Yes when no other
    PTE maps it and no other swap PTE refers to its slot; the page then
    leaves the swap cache (its slot copy is about to go stale) and is dirty."""
    from mmuemu.kernel.swap_state import PageSwapCache, delete_from_swap_cache
    from mmuemu.kernel.swapfile import page_swapcount
    count = page._mapcount + 1
    if count <= 1 and PageSwapCache(page):
        count += page_swapcount(kern, page)
        if count == 1 and not PageTest(page, PG.writeback):
            delete_from_swap_cache(kern, page)
            SetPage(page, PG.dirty)
    return count <= 1


def do_wp_page(vmf: VmFault) -> int:
    """do_wp_page(): write to a present, write-protected PTE.

    Zero page or other special PTE: copy (to a fresh zeroed page). Anonymous
    page mapped once and referenced only by us: reuse it in place. Shared
    writable mapping: page_mkwrite and make it writable. Otherwise copy.
    """
    vma = vmf.vma
    kern = vma.vm_mm.kernel
    # vm_normal_page(), inline (every COW break and reuse)
    orig = vmf.orig_pte
    if orig & kern.fmt.special_mask:  # pte_special()
        page = None
    else:
        pfn = (orig & ADDR_MASK) >> 12  # pte_pfn()
        page = kern.buddy.mem_map[pfn]
        if page is None:
            page = kern.pfn_to_page(pfn)
    vmf.page = page
    if page is None:
        if vma.vm_flags & _VM_WRITE_SHARED == _VM_WRITE_SHARED:
            return wp_pfn_shared(vmf)
        return wp_page_copy(vmf)
    if page.mapping & PAGE_MAPPING_ANON:  # PageAnon()
        # 6.x: reuse when we hold the only reference (folio_ref_count == 1 and
        # not in the swap cache); the page moves to our anon_vma.
        if page.flags & _PG_SWAPCACHE and page._mapcount == 0 and page._count == 2:
            from mmuemu.kernel.swapfile import try_to_free_swap
            try_to_free_swap(kern, page)  # 6.x: drop the swap copy of an exclusive page
        if page._count == 1 and page._mapcount == 0 and not page.flags & _PG_SWAPCACHE:
            page_move_anon_rmap(page, vma)
            kern.vmstat.cow_reuses += 1
            vmf.kind = _KIND_WP
            vmf.detail = "reuse"
            return wp_page_reuse(vmf)
    elif vma.vm_flags & _VM_WRITE_SHARED == _VM_WRITE_SHARED:
        return wp_page_shared(vmf)
    page._count += 1  # get_page()
    return wp_page_copy(vmf)


def wp_page_reuse(vmf: VmFault) -> int:
    """wp_page_reuse(): make the existing PTE writable, young and dirty (no flush:
    the old translation only lacked write permission)."""
    vma = vmf.vma
    mm = vma.vm_mm
    kern = mm.kernel
    fmt = kern.fmt
    orig = vmf.orig_pte
    # flush_cache_page(), straight to the architecture's hook (a call fewer)
    kern.cacheflush.flush_cache_page(vma, vmf.address, (orig & ADDR_MASK) >> 12)  # pte_pfn()
    # pte_mkwrite(pte_mkdirty(pte_mkyoung()))
    entry = orig | fmt.young_bits | fmt.write_dirty_set
    clear = fmt.write_dirty_clear
    if clear:
        entry &= ~clear
    set_pte_at(mm, vmf.address, vmf.pte_pa, entry)
    return _WRITE


def wp_pfn_shared(vmf: VmFault) -> int:
    """wp_pfn_shared(): a special PTE in a shared writable mapping: just make it writable."""
    vmf.kind = _KIND_SHARED
    return wp_page_reuse(vmf)


def wp_page_shared(vmf: VmFault) -> int:
    """wp_page_shared(): first write to a clean page of a shared file mapping."""
    vma = vmf.vma
    kern = vma.vm_mm.kernel
    page = vmf.page
    assert page is not None
    vmf.kind = _KIND_SHARED
    ops = vma.vm_ops
    if ops is not None and ops.page_mkwrite is not None:
        kern.get_page(page)
        tmp = ops.page_mkwrite(vmf)
        unlock_page(page)
        kern.put_page(page)
        if tmp & VM_FAULT_ERROR:
            return tmp
    set_page_dirty(kern, page)
    return wp_page_reuse(vmf)


def wp_page_copy(vmf: VmFault) -> int:
    """wp_page_copy(): break COW: copy (or zero, for the zero page) into a new
    anonymous page, replace the PTE with ptep_clear_flush, drop the old mapping."""
    vma = vmf.vma
    mm = vma.vm_mm
    kern = mm.kernel
    old_page = vmf.page
    if vma.anon_vma is None:  # anon_vma_prepare()'s inline test
        anon_vma_prepare(vma)
    if old_page is None:
        new_page = kern.alloc_page(zero=True)
        vmf.kind = _KIND_WP
        vmf.detail = "zero"
    else:
        # Locked across the allocation, which may reclaim: rmap must not
        # unmap the PTE this fault is about to replace.
        locked = _PG_LOCKED
        was_locked = old_page.flags & locked
        old_page.flags |= locked  # lock_page()
        try:
            new_page = kern.alloc_page()
        except OutOfMemory:
            if not was_locked:
                unlock_page(old_page)
            kern.put_page(old_page)
            raise
        if not was_locked:
            old_page.flags &= ~locked  # unlock_page()
        kern.cacheflush.copy_user_highpage(kern, new_page, old_page)  # __wp_page_copy_user
        kern.vmstat.cow_copies += 1
        vmf.kind = _KIND_COW
    new_page.flags |= _PG_UPTODATE  # __SetPageUptodate()
    if old_page is not None:
        page_remove_rmap(old_page, vma)
    kern.cacheflush.flush_cache_page(vma, vmf.address,
                                     (vmf.orig_pte & ADDR_MASK) >> 12)  # pte_pfn()
    ptep_clear_flush(vma, vmf.address, vmf.pte_pa)
    do_set_pte(vma, vmf.address, new_page, vmf.pte_pa, True, True)  # write, anon
    if old_page is not None:  # put_page() for the PTE's reference, then for ours
        if old_page._count > 2:  # (do_wp_page's): neither is the last, inline
            old_page._count -= 2
        else:
            kern.put_page(old_page)
            kern.put_page(old_page)
    return _WRITE
