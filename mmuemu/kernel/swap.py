"""The LRU lists and page aging (mm/swap.c, include/linux/mm_inline.h).

Every user page sits on one of five lists of the zone's lruvec: active and
inactive anon (and shmem: swap-backed pages), active and inactive file, and
unevictable. A list is an insertion-ordered dict keyed by pfn: the end of the
dict is the list head (newest, where list_add puts a page), the start is the
tail that reclaim scans first. PG_lru says the page is on a list, PG_active
that the list is an active one; page.lru names the list.

Pages are added directly, without the per-CPU pagevec batching of
lru_cache_add(): one CPU and no lock contention to amortise.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mmuemu.kernel.mm_types import PG, ClearPage, Page, PageTest, SetPage

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

LRU_INACTIVE_ANON = "inactive_anon"
LRU_ACTIVE_ANON = "active_anon"
LRU_INACTIVE_FILE = "inactive_file"
LRU_ACTIVE_FILE = "active_file"
LRU_UNEVICTABLE = "unevictable"
#: enum lru_list order
LRU_LISTS = (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE,
             LRU_UNEVICTABLE)
#: PG_lru, and with PG_active or PG_unevictable, as add_page_to_lru_list() sets them
_LRU_BIT = 1 << PG.lru
_LRU_ACTIVE_BITS = 1 << PG.lru | 1 << PG.active
_LRU_UNEVICTABLE_BITS = 1 << PG.lru | 1 << PG.unevictable
_ACTIVE_OF = {LRU_INACTIVE_ANON: LRU_ACTIVE_ANON, LRU_INACTIVE_FILE: LRU_ACTIVE_FILE}
_INACTIVE_OF = {LRU_ACTIVE_ANON: LRU_INACTIVE_ANON, LRU_ACTIVE_FILE: LRU_INACTIVE_FILE}


class ReclaimStat:
    """struct zone_reclaim_stat: recently scanned and rotated pages, [anon, file].

    get_scan_count() weighs anon against file reclaim by how many scanned
    pages turned out to be in use (rotated back to the active list)."""

    __slots__ = ("recent_scanned", "recent_rotated")

    def __init__(self) -> None:
        self.recent_scanned = [0, 0]
        self.recent_rotated = [0, 0]


class Lruvec:
    """struct lruvec: the zone's five LRU lists and their reclaim statistics."""

    __slots__ = ("lists", "reclaim_stat")

    def __init__(self) -> None:
        self.lists: dict[str, dict[int, Page]] = {name: {} for name in LRU_LISTS}
        self.reclaim_stat = ReclaimStat()

    def size(self, lru: str) -> int:
        """get_lru_size()."""
        return len(self.lists[lru])

    def counts(self) -> dict[str, int]:
        """nr_<list> for the stats (/proc/vmstat nr_inactive_anon, ...)."""
        return {f"nr_{name}": len(pages) for name, pages in self.lists.items()}


def is_file_lru(lru: str) -> bool:
    """is_file_lru()."""
    return lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)


def is_active_lru(lru: str) -> bool:
    """is_active_lru()."""
    return lru in (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE)


def page_is_file_cache(page: Page) -> bool:
    """page_is_file_cache(): not swap backed (anon and shmem pages are)."""
    return not page.flags >> PG.swapbacked & 1


def page_lru_base_type(page: Page) -> str:
    """page_lru_base_type(): the inactive list of the page's kind."""
    return LRU_INACTIVE_ANON if page.flags >> PG.swapbacked & 1 else LRU_INACTIVE_FILE


def page_lru(page: Page) -> str:
    """page_lru(): the list a page belongs on, from its flags."""
    if page.flags >> PG.unevictable & 1:
        return LRU_UNEVICTABLE
    base = page_lru_base_type(page)
    return _ACTIVE_OF[base] if page.flags >> PG.active & 1 else base


def add_page_to_lru_list(kern: "Kernel", page: Page, lru: str) -> None:
    """add_page_to_lru_list(): list_add at the head, set PG_lru (and PG_active
    or PG_unevictable to match the list)."""
    assert page.lru is None, f"pfn {page.pfn:#x} already on {page.lru}"
    if lru == LRU_ACTIVE_ANON or lru == LRU_ACTIVE_FILE:  # is_active_lru()
        page.flags |= _LRU_ACTIVE_BITS
    elif lru == LRU_UNEVICTABLE:
        page.flags |= _LRU_UNEVICTABLE_BITS
    else:
        page.flags |= _LRU_BIT
    page.lru = lru
    kern.lruvec.lists[lru][page.pfn] = page


def del_page_from_lru_list(kern: "Kernel", page: Page) -> None:
    """del_page_from_lru_list() + ClearPageLRU (PG_active stays, as the
    caller decides where the page goes next)."""
    lru = page.lru
    if lru is None:
        return
    del kern.lruvec.lists[lru][page.pfn]
    page.lru = None
    page.flags &= ~(1 << PG.lru)


#: lru_cache_add() / lru_cache_add_active_or_unevictable(): a new page joins
#: the LRU. With one CPU there is no per-CPU pagevec to batch through, so it is
#: add_page_to_lru_list() itself (one call, not two, on every anonymous fault).
lru_cache_add = add_page_to_lru_list


def release_pages(kern: "Kernel", pages: list[Page]) -> None:
    """release_pages(): drop one reference on each page, in order; the pages
    whose count reaches zero are freed together (Kernel.free_page_list:
    off their LRU lists, back to the allocator in the same order)."""
    to_free: list[Page] = []
    for page in pages:
        count = page._count - 1  # put_page_testzero()
        page._count = count
        if count <= 0:
            if count < 0:
                raise AssertionError(f"release_pages: pfn {page.pfn:#x} _count went negative")
            to_free.append(page)
    if to_free:
        kern.free_page_list(to_free)


def activate_page(kern: "Kernel", page: Page) -> None:
    """activate_page(): move an inactive page to the head of its active list."""
    lru = page.lru
    if lru is None or lru not in _ACTIVE_OF:
        return
    del_page_from_lru_list(kern, page)
    add_page_to_lru_list(kern, page, _ACTIVE_OF[lru])
    kern.vmstat.pgactivate += 1
    kern.lruvec.reclaim_stat.recent_rotated[int(is_file_lru(lru))] += 1


def mark_page_accessed(kern: "Kernel", page: Page) -> None:
    """mark_page_accessed(): the second use of an inactive, referenced page
    activates it; the first only sets PG_referenced.

        inactive,unreferenced -> inactive,referenced
        inactive,referenced   -> active,unreferenced
        active,unreferenced   -> active,referenced
    """
    if not PageTest(page, PG.active) and PageTest(page, PG.referenced) and page.lru is not None:
        activate_page(kern, page)
        ClearPage(page, PG.referenced)
    elif not PageTest(page, PG.referenced):
        SetPage(page, PG.referenced)


def putback_lru_page(kern: "Kernel", page: Page) -> None:
    """putback_lru_page(): return an isolated page to the list its flags name."""
    lru = page_lru(page)
    page.flags &= ~((1 << PG.active) | (1 << PG.unevictable))
    add_page_to_lru_list(kern, page, lru)


def inactive_of(lru: str) -> str:
    """The inactive list matching an active one."""
    return _INACTIVE_OF[lru]
