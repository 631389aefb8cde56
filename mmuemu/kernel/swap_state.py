"""The swap cache (mm/swap_state.c).

swapper_space is an address_space like a file's: its radix tree holds, by
swap entry, the pages that have a slot and are (still or again) in memory.
A swap-cache page has PG_swapcache, keeps its swap entry in page->private,
and holds one reference of the cache plus SWAP_HAS_CACHE in its slot's
swap_map. Anonymous pages keep their anon_vma in page->mapping while in the
cache; page_mapping() says swapper_space for them.

Swap-in readahead (swapin_readahead) reads the aligned cluster of
2**page_cluster slots around the faulting one, skipping free slots, into the
swap cache: the 3.x cluster readahead, with a fixed window (Linux 3.15+
adapts the window to readahead hits, and 4.14+ defaults to VMA-based
readahead on SSDs).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from mmuemu.kernel.fs import AddressSpaceOperations
from mmuemu.kernel.mm_types import (
    PG, AddressSpace, ClearPage, Page, PageTest, SetPage, VmAreaStruct,
)
from mmuemu.kernel.radix_tree import (
    RadixTreeRoot, radix_tree_delete, radix_tree_insert, radix_tree_lookup,
)
from mmuemu.kernel.swap import LRU_INACTIVE_ANON, lru_cache_add, release_pages
from mmuemu.kernel.swapfile import (
    get_swap_page, swapcache_free, swapcache_prepare, swp_entry, swp_offset, swp_type,
)

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

PG_swapcache = PG.owner_priv_1


class SwapAops(AddressSpaceOperations):
    """swap_aops: swap_writepage, __set_page_dirty_no_writeback."""

    name = "swap_aops"
    has_backing_store = True

    def readpage(self, kern: "Kernel", mapping: AddressSpace, page: Page) -> int:
        from mmuemu.kernel.page_io import swap_readpage
        return swap_readpage(kern, page)

    def writepage(self, kern: "Kernel", mapping: AddressSpace, page: Page) -> int:
        from mmuemu.kernel.page_io import swap_writepage
        return swap_writepage(kern, page)

    def set_page_dirty(self, kern: "Kernel", page: Page) -> bool:
        """__set_page_dirty_no_writeback(): PG_dirty only, no radix-tree tag."""
        if PageTest(page, PG.dirty):
            return False
        SetPage(page, PG.dirty)
        return True


def init_swapper_space(kern: "Kernel") -> AddressSpace:
    """swapper_spaces[]: the swap cache's address_space (one, for device 0)."""
    space = AddressSpace(kaddr=kern.kobj.alloc(200), host=None, page_tree=RadixTreeRoot(),
                         a_ops=SwapAops())
    kern.kobj.register(space.kaddr, space)
    return space


def PageSwapCache(page: Page) -> bool:
    """PageSwapCache()."""
    return bool(page.flags >> PG_swapcache & 1)


def page_mapping(kern: "Kernel", page: Page) -> Optional[AddressSpace]:
    """page_mapping(): swapper_space for swap-cache pages, None for other
    anonymous pages, else the file's address_space."""
    if page.flags >> PG_swapcache & 1:
        return kern.swapper_space
    if not page.mapping or page.mapping & 1:
        return None
    mapping = kern.kobj.lookup(page.mapping)
    assert isinstance(mapping, AddressSpace)
    return mapping


def add_to_swap_cache(kern: "Kernel", page: Page, entry: int) -> int:
    """__add_to_swap_cache(): file the page under ``entry`` (whose slot already
    has SWAP_HAS_CACHE); the cache takes a reference. 0 or -EEXIST."""
    space = kern.swapper_space
    if radix_tree_insert(space.page_tree, entry, page):
        return -17
    page._count += 1
    SetPage(page, PG_swapcache)
    page.private = entry
    space.nrpages += 1
    kern.vmstat.swap_cache_add += 1
    return 0


def __delete_from_swap_cache(kern: "Kernel", page: Page) -> None:
    """__delete_from_swap_cache(): out of the radix tree, PG_swapcache clear
    (the caller drops the slot's SWAP_HAS_CACHE and the cache's reference)."""
    space = kern.swapper_space
    radix_tree_delete(space.page_tree, page.private)
    page.private = 0
    ClearPage(page, PG_swapcache)
    space.nrpages -= 1
    kern.vmstat.swap_cache_delete += 1


def delete_from_swap_cache(kern: "Kernel", page: Page) -> None:
    """delete_from_swap_cache(): leave the cache, free SWAP_HAS_CACHE, drop
    the cache's reference."""
    entry = page.private
    __delete_from_swap_cache(kern, page)
    swapcache_free(kern, entry)
    kern.put_page(page)


def add_to_swap(kern: "Kernel", page: Page) -> bool:
    """add_to_swap(): give an anonymous page a slot and put it in the swap
    cache, dirty (it must be written before it can be freed). False when no
    swap space is left."""
    entry = get_swap_page(kern)
    if not entry:
        return False
    if add_to_swap_cache(kern, page, entry):
        swapcache_free(kern, entry)
        return False
    SetPage(page, PG.dirty)
    return True


def find_get_swap_page(kern: "Kernel", entry: int) -> Optional[Page]:
    """find_get_page(swap_address_space(entry), entry): with a reference."""
    page: Optional[Page] = radix_tree_lookup(kern.swapper_space.page_tree, entry)
    if page is not None:
        page._count += 1
    return page


def lookup_swap_cache(kern: "Kernel", entry: int) -> Optional[Page]:
    """lookup_swap_cache(): the cached page for ``entry`` with a reference
    (counts the swap cache's find_total / find_success)."""
    page = find_get_swap_page(kern, entry)
    kern.vmstat.swap_cache_find_total += 1
    if page is not None:
        kern.vmstat.swap_cache_find_success += 1
    return page


def read_swap_cache_async(kern: "Kernel", entry: int) -> tuple[Optional[Page], bool]:
    """read_swap_cache_async(): the page for ``entry``, from the cache or read
    from the device into a new cache page (on the inactive anon list).

    Returns (page with a reference, whether it was read), or (None, False)
    when the slot is free. May raise OutOfMemory (the allocation can reclaim).
    """
    page = find_get_swap_page(kern, entry)
    if page is not None:
        return page, False
    if not kern.swap.info(entry).swap_map[swp_offset(entry)]:
        return None, False
    new = kern.alloc_page()
    # The allocation may have reclaimed: look again before claiming the slot.
    page = find_get_swap_page(kern, entry)
    if page is not None:
        kern.put_page(new)
        return page, False
    if swapcache_prepare(kern, entry):  # the slot was freed meanwhile
        kern.put_page(new)
        return None, False
    SetPage(new, PG.locked)
    SetPage(new, PG.swapbacked)
    add_to_swap_cache(kern, new, entry)
    lru_cache_add(kern, new, LRU_INACTIVE_ANON)
    from mmuemu.kernel.page_io import swap_readpage
    swap_readpage(kern, new)
    ClearPage(new, PG.locked)
    return new, True


def swapin_readahead(kern: "Kernel", entry: int, vma: VmAreaStruct,
                     addr: int) -> tuple[Optional[Page], bool]:
    """swapin_readahead(): read the aligned cluster of 2**page_cluster slots
    around ``entry`` into the swap cache (slots in use only), then return the
    faulting entry's page as read_swap_cache_async() does."""
    mask = (1 << kern.config.page_cluster) - 1
    offset = swp_offset(entry)
    si = kern.swap.info(entry)
    start = max(1, offset & ~mask)  # slot 0 is the swap header
    end = min(offset | mask, si.max - 1)
    for off in range(start, end + 1):
        if off == offset:
            continue
        page, read = read_swap_cache_async(kern, swp_entry(swp_type(entry), off))
        if page is None:
            continue
        if read:
            SetPage(page, PG.reclaim)  # PG_readahead: a swapin readahead page
            kern.vmstat.swap_ra += 1
        kern.put_page(page)
    return read_swap_cache_async(kern, entry)


def free_swap_cache(kern: "Kernel", page: Page) -> None:
    """free_swap_cache(): an unmapped page's swap copy is of no further use
    when no swap PTE refers to it: drop it from the swap cache."""
    if page.flags >> PG_swapcache & 1 and page._mapcount < 0 and \
            not page.flags >> PG.locked & 1:
        from mmuemu.kernel.swapfile import try_to_free_swap
        try_to_free_swap(kern, page)


def free_pages_and_swap_cache(kern: "Kernel", pages: list[Page]) -> None:
    """free_pages_and_swap_cache(): the mmu_gather's page batch after the TLB
    flush: drop each page's swap-cache copy if unused, then the PTEs'
    references (release_pages). The batch still holds a reference on each
    page, so no page is freed before release_pages() runs."""
    for page in pages:
        if page.flags >> PG_swapcache & 1:  # free_swap_cache()'s first test, inline
            free_swap_cache(kern, page)
    release_pages(kern, pages)
