"""Reverse mapping: from a page to the VMAs that map it (mm/rmap.c).

Lock ordering in mm (for the record; the model is single threaded):
  mmap_lock → page lock → i_mmap_rwsem → anon_vma->rwsem → page_table_lock

Anonymous pages point (page->mapping | PAGE_MAPPING_ANON) at the anon_vma of
the VMA that created them; every VMA that may map such a page is linked to
that anon_vma through an anon_vma_chain, filed in the anon_vma's interval
tree (anon_vma->rb_root) under the VMA's pgoff range. File pages point at
their address_space, whose i_mmap interval tree holds the VMAs mapping the
file. Both trees are queried by page offset, so a walk visits only the VMAs
that can map the page's index.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

from mmuemu.kernel.cacheflush import flush_cache_page
from mmuemu.kernel.interval_tree import (
    anon_vma_interval_tree_foreach, anon_vma_interval_tree_insert,
    anon_vma_interval_tree_remove, vma_interval_tree_foreach,
)
from mmuemu.kernel.mm_types import (
    PAGE_MAPPING_ANON, PG, AddressSpace, AnonVma, AnonVmaChain, Page, PageAnon,
    VmAreaStruct,
)
from mmuemu.kernel.rbtree import RB_EMPTY_ROOT


def anon_vma_alloc(vma: VmAreaStruct) -> AnonVma:
    """anon_vma_alloc(): a fresh anon_vma that is its own root."""
    kobj = vma.vm_mm.kernel.kobj
    av = AnonVma(kaddr=kobj.alloc(96))
    av.root = av
    kobj.register(av.kaddr, av)
    return av


def anon_vma_chain_link(vma: VmAreaStruct, anon_vma: AnonVma) -> None:
    """anon_vma_chain_link(): put one chain on the VMA's list and in the
    anon_vma's interval tree."""
    avc = AnonVmaChain(vma=vma, anon_vma=anon_vma)
    vma.anon_vma_chain.append(avc)
    anon_vma_interval_tree_insert(avc, anon_vma.rb_root)


def anon_vma_prepare(vma: VmAreaStruct) -> int:
    """anon_vma_prepare(): make sure ``vma`` has an anon_vma before the first anon page.

    Reuses a neighbour's anon_vma when the VMAs could merge
    (find_mergeable_anon_vma), as Linux does. Returns 0.
    """
    if vma.anon_vma is not None:
        return 0
    anon_vma = find_mergeable_anon_vma(vma)
    if anon_vma is None:
        anon_vma = anon_vma_alloc(vma)
    else:
        anon_vma.refcount += 1
    vma.anon_vma = anon_vma
    anon_vma_chain_link(vma, anon_vma)
    return 0


def find_mergeable_anon_vma(vma: VmAreaStruct) -> AnonVma | None:
    """find_mergeable_anon_vma(): an adjacent, compatible VMA's single anon_vma
    (vm_next first, then vm_prev)."""
    for near in (vma.vm_next, vma.vm_prev):
        if near is not None:
            if (near.anon_vma is not None and len(near.anon_vma_chain) == 1
                    and near.vm_file is None and vma.vm_file is None
                    and (near.vm_end == vma.vm_start or vma.vm_end == near.vm_start)
                    and (near.vm_flags ^ vma.vm_flags) & ~0 == 0):
                return near.anon_vma
    return None


def anon_vma_clone(dst: VmAreaStruct, src: VmAreaStruct) -> int:
    """anon_vma_clone(): link ``dst`` to every anon_vma ``src`` is linked to."""
    for avc in src.anon_vma_chain:
        anon_vma_chain_link(dst, avc.anon_vma)
    dst.anon_vma = src.anon_vma
    return 0


def unlink_anon_vmas(vma: VmAreaStruct) -> None:
    """unlink_anon_vmas(): drop the VMA's chains, freeing anon_vmas nobody uses."""
    kobj = vma.vm_mm.kernel.kobj
    for avc in vma.anon_vma_chain:
        av = avc.anon_vma
        anon_vma_interval_tree_remove(avc, av.rb_root)
        if RB_EMPTY_ROOT(av.rb_root.rb_root):
            av.refcount -= 1
            if av.refcount <= 0:
                kobj.free(av.kaddr)
    vma.anon_vma_chain.clear()
    vma.anon_vma = None


_PG_SWAPBACKED = 1 << PG.swapbacked


def linear_page_index(vma: VmAreaStruct, address: int) -> int:
    """linear_page_index(): the page offset ``address`` maps in the VMA's object."""
    return ((address - vma.vm_start) >> 12) + vma.vm_pgoff


def page_add_new_anon_rmap(page: Page, vma: VmAreaStruct, address: int) -> None:
    """page_add_new_anon_rmap(): first mapping of a fresh anonymous page."""
    page.flags |= _PG_SWAPBACKED  # __SetPageSwapBacked()
    page._mapcount = 0
    # __page_set_anon_rmap(): page->mapping is the anon_vma, tagged
    anon_vma = vma.anon_vma
    assert anon_vma is not None
    page.mapping = anon_vma.kaddr | PAGE_MAPPING_ANON
    page.index = ((address - vma.vm_start) >> 12) + vma.vm_pgoff  # linear_page_index()
    vma.vm_mm.rss_anon += 1


def page_add_anon_rmap(page: Page, vma: VmAreaStruct, address: int) -> None:
    """page_add_anon_rmap(): one more PTE maps an existing anonymous page."""
    page._mapcount += 1
    vma.vm_mm.rss_anon += 1


def do_page_add_anon_rmap(page: Page, vma: VmAreaStruct, address: int, exclusive: bool) -> None:
    """do_page_add_anon_rmap(): map a page that came back from swap. The first
    mapping of a page that lost its anon_vma link (read from the device)
    points it at the VMA's anon_vma if exclusive, else at the root, the
    oldest one every sharer is linked to (__page_set_anon_rmap)."""
    page._mapcount += 1
    vma.vm_mm.rss_anon += 1
    if page._mapcount == 0 and not PageAnon(page):
        anon_vma = vma.anon_vma
        assert anon_vma is not None
        if not exclusive:
            assert anon_vma.root is not None
            anon_vma = anon_vma.root
        page.mapping = anon_vma.kaddr | PAGE_MAPPING_ANON
        page.index = linear_page_index(vma, address)


def page_move_anon_rmap(page: Page, vma: VmAreaStruct) -> None:
    """page_move_anon_rmap(): an exclusively owned page moves to the VMA's own anon_vma."""
    assert vma.anon_vma is not None
    page.mapping = vma.anon_vma.kaddr | PAGE_MAPPING_ANON


def page_add_file_rmap(page: Page, vma: VmAreaStruct) -> None:
    """page_add_file_rmap(): one more PTE maps a page-cache page."""
    page._mapcount += 1
    if PageTestSwapBacked(page):
        vma.vm_mm.rss_shmem += 1
    else:
        vma.vm_mm.rss_file += 1


def PageTestSwapBacked(page: Page) -> bool:
    """PageSwapBacked()."""
    return bool(page.flags >> PG.swapbacked & 1)


def page_remove_rmap(page: Page, vma: VmAreaStruct) -> None:
    """page_remove_rmap(): one PTE no longer maps the page."""
    page._mapcount -= 1
    mm = vma.vm_mm
    if page.mapping & PAGE_MAPPING_ANON:  # PageAnon()
        mm.rss_anon -= 1
    elif PageTestSwapBacked(page):
        mm.rss_shmem -= 1
    else:
        mm.rss_file -= 1


def page_anon_vma(page: Page, vma_kernel_lookup: object) -> AnonVma | None:
    """page_anon_vma(): the anon_vma of an anonymous page (None for file pages)."""
    if not PageAnon(page):
        return None
    from mmuemu.kernel.kobjects import KObjects
    assert isinstance(vma_kernel_lookup, KObjects)
    obj = vma_kernel_lookup.lookup(page.mapping & ~PAGE_MAPPING_ANON)
    assert isinstance(obj, AnonVma)
    return obj


def page_to_pgoff(page: Page) -> int:
    """page_to_pgoff(): the page's offset in its object, in pages (page->index:
    the file offset for page-cache pages, the linear index for anon pages)."""
    return page.index


def vma_address(page: Page, vma: VmAreaStruct) -> int | None:
    """vma_address() / __vma_address(): where ``page`` would sit in ``vma``
    (vm_start + (page_to_pgoff - vm_pgoff) pages); None if outside it."""
    address = vma.vm_start + ((page_to_pgoff(page) - vma.vm_pgoff) << 12)
    if address < vma.vm_start or address >= vma.vm_end:
        return None
    return address


def vmas_of_mapping(mapping: AddressSpace, pgoff: int) -> Iterator[VmAreaStruct]:
    """vma_interval_tree_foreach(vma, &mapping->i_mmap, pgoff, pgoff)."""
    return vma_interval_tree_foreach(mapping.i_mmap, pgoff, pgoff)


def page_mkclean(page: Page, kern: "Kernel") -> int:
    """page_mkclean(): write-protect and clean every shared PTE mapping a
    page-cache page (rmap_walk_file over i_mmap), so the next write faults
    and re-dirties it. Returns how many PTEs were dirty or writable."""
    from mmuemu.kernel.mm_types import VM
    from mmuemu.kernel.pgtable import ptep_get, pte_offset_lookup, set_pte_at

    if not page.mapping or page.mapping & PAGE_MAPPING_ANON:
        return 0
    mapping = kern.kobj.lookup(page.mapping)
    fmt = kern.fmt
    cleaned = 0
    for vma in vmas_of_mapping(mapping, page.index):
        if not vma.vm_flags & VM.SHARED:
            continue
        addr = vma_address(page, vma)
        if addr is None:
            continue
        pte_pa = pte_offset_lookup(vma.vm_mm, addr)
        if pte_pa is None:
            continue
        pte = ptep_get(vma.vm_mm, pte_pa)
        if not fmt.pte_present(pte) or fmt.pte_pfn(pte) != page.pfn:
            continue
        if fmt.pte_dirty(pte) or fmt.pte_write(pte):
            flush_cache_page(vma, addr, page.pfn)
            set_pte_at(vma.vm_mm, addr, pte_pa, fmt.pte_wrprotect(fmt.pte_mkclean(pte)))
            kern.tlb.flush_tlb_page(vma.vm_mm, addr)  # ptep_clear_flush
            cleaned += 1
    return cleaned


def page_vma_mapped_walk(page: Page, vma: VmAreaStruct) -> Optional[tuple[int, int]]:
    """page_vma_mapped_walk(): where ``vma`` maps ``page``, as (address,
    physical address of the PTE), or None."""
    from mmuemu.kernel.pgtable import pte_offset_lookup
    addr = vma_address(page, vma)
    if addr is None:
        return None
    mm = vma.vm_mm
    pte_pa = pte_offset_lookup(mm, addr)
    if pte_pa is None:
        return None
    fmt = mm.kernel.fmt
    pte = mm.kernel.phys.words[pte_pa >> 3]
    if not fmt.pte_present(pte) or fmt.pte_pfn(pte) != page.pfn:
        return None
    return addr, pte_pa


def page_vma_mapped(page: Page, vma: VmAreaStruct) -> Optional[int]:
    """The address where ``vma`` maps ``page``, or None."""
    found = page_vma_mapped_walk(page, vma)
    return None if found is None else found[0]


def rmap_walk_anon_mapped(kern: "Kernel", page: Page) -> list[tuple[VmAreaStruct, int, int]]:
    """rmap_walk_anon(): (vma, address, PTE) for every VMA on the page's
    anon_vma that maps it."""
    anon_vma = kern.kobj.lookup(page.mapping & ~PAGE_MAPPING_ANON)
    assert isinstance(anon_vma, AnonVma)
    out: list[tuple[VmAreaStruct, int, int]] = []
    # anon_vma_interval_tree_foreach(avc, &anon_vma->rb_root, pgoff_start, pgoff_end)
    for avc in anon_vma_interval_tree_foreach(anon_vma.rb_root, page.index, page.index):
        vma = avc.vma
        if any(v is vma for v, _, _ in out):
            continue
        found = page_vma_mapped_walk(page, vma)
        if found is not None:
            out.append((vma, found[0], found[1]))
    return out


def rmap_walk_file_mapped(kern: "Kernel", page: Page) -> list[tuple[VmAreaStruct, int, int]]:
    """rmap_walk_file(): (vma, address, PTE) for every VMA on the mapping's
    i_mmap that maps the page."""
    mapping = kern.kobj.lookup(page.mapping)
    assert isinstance(mapping, AddressSpace)
    out: list[tuple[VmAreaStruct, int, int]] = []
    for vma in vmas_of_mapping(mapping, page.index):
        found = page_vma_mapped_walk(page, vma)
        if found is not None:
            out.append((vma, found[0], found[1]))
    return out


def rmap_walk_mapped(kern: "Kernel", page: Page) -> list[tuple[VmAreaStruct, int, int]]:
    """The rmap walk for page_referenced and try_to_unmap: each mapping PTE once."""
    if page.mapping & PAGE_MAPPING_ANON:
        return rmap_walk_anon_mapped(kern, page)
    return rmap_walk_file_mapped(kern, page)


def rmap_walk_anon(kern: "Kernel", page: Page) -> list[VmAreaStruct]:
    """rmap_walk_anon(): every VMA on the page's anon_vma that maps it."""
    return [vma for vma, _, _ in rmap_walk_anon_mapped(kern, page)]


def rmap_walk_file(kern: "Kernel", page: Page) -> list[VmAreaStruct]:
    """rmap_walk_file(): every VMA on the mapping's i_mmap that maps the page."""
    return [vma for vma, _, _ in rmap_walk_file_mapped(kern, page)]


def rmap_walk(kern: "Kernel", page: Page) -> tuple[str, list[VmAreaStruct]]:
    """rmap_walk(): which walk applies, and the VMAs it visits.

    Linux first asks PageKsm() and takes rmap_walk_ksm() for merged pages;
    the model has no KSM (it never merges pages), so that branch cannot occur.
    """
    if PageAnon(page):
        return "rmap_walk_anon", rmap_walk_anon(kern, page)
    return "rmap_walk_file", rmap_walk_file(kern, page)



def page_referenced(kern: "Kernel", page: Page) -> int:
    """page_referenced(): how many PTEs mapping the page had the accessed bit
    (x86 A, arm64 AF), clearing each one it finds."""
    return page_referenced_vm_flags(kern, page)[0]


def page_referenced_vm_flags(kern: "Kernel", page: Page) -> tuple[int, int]:
    """page_referenced() with its vm_flags out-parameter: the referencing
    PTEs and the union of the vm_flags of the VMAs they are in.

    Each young PTE is made old with ptep_clear_flush_young(): x86-64 leaves
    the TLB alone (a stale entry only delays the next A-bit update), arm64
    issues a TLBI so the hardware sees the cleared AF. An unmapped page is
    not walked (its anon_vma may be gone)."""
    from mmuemu.kernel.pgtable import ptep_get, set_pte_at
    if page._mapcount < 0:
        return 0, 0
    fmt = kern.fmt
    referenced = 0
    vm_flags = 0
    for vma, addr, pte_pa in rmap_walk_mapped(kern, page):
        pte = ptep_get(vma.vm_mm, pte_pa)
        if fmt.pte_young(pte):
            set_pte_at(vma.vm_mm, addr, pte_pa, fmt.pte_mkold(pte))
            kern.tlb.clear_flush_young(vma.vm_mm, addr)
            referenced += 1
            vm_flags |= vma.vm_flags
    return referenced, vm_flags


def try_to_unmap_one(kern: "Kernel", page: Page, vma: VmAreaStruct, address: int,
                     pte_pa: Optional[int] = None) -> bool:
    """try_to_unmap_one(): remove one PTE mapping the page (ptep_clear_flush),
    moving its dirty bit to the page. An anonymous page must be in the swap
    cache: its PTE becomes the swap entry in page->private, in the
    architecture's encoding, and the slot gains a reference
    (swap_duplicate)."""
    from mmuemu.kernel.filemap import set_page_dirty
    from mmuemu.kernel.pgtable import ptep_clear_flush, pte_offset_lookup, set_pte_at
    from mmuemu.kernel.swapfile import swap_duplicate, swp_offset, swp_type
    anon = PageAnon(page)
    if anon and not page.flags >> PG.owner_priv_1 & 1:
        return False  # no swap entry to leave behind
    if pte_pa is None:
        pte_pa = pte_offset_lookup(vma.vm_mm, address)
        assert pte_pa is not None
    flush_cache_page(vma, address, page.pfn)
    old = ptep_clear_flush(vma, address, pte_pa)
    if kern.fmt.pte_dirty(old):
        set_page_dirty(kern, page)
    if anon:
        entry = page.private
        swap_duplicate(kern, entry)
        set_pte_at(vma.vm_mm, address, pte_pa,
                   kern.fmt.swp_entry_to_pte(swp_type(entry), swp_offset(entry)))
        vma.vm_mm.rss_swap += 1
    page_remove_rmap(page, vma)
    kern.put_page(page)
    return True


def try_to_unmap(kern: "Kernel", page: Page) -> bool:
    """try_to_unmap(): unmap the page from every VMA rmap finds; True when
    no PTE maps it any more (page_mapped() is false)."""
    if page._mapcount < 0:
        return True
    for vma, addr, pte_pa in rmap_walk_mapped(kern, page):
        if not try_to_unmap_one(kern, page, vma, addr, pte_pa):
            return False
    return page._mapcount < 0
