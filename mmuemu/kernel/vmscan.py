"""Page reclaim (mm/vmscan.c): kswapd, direct reclaim and the LRU scan.

    __alloc_pages slow path → wakeup_kswapd()            (free below low)
                            → try_to_free_pages()        (free below min: direct reclaim)
    kswapd → balance_pgdat()                            (until free is above high)
    both → shrink_zone → shrink_lruvec → get_scan_count
                     → shrink_list → shrink_active_list   (age: active → inactive)
                                   → shrink_inactive_list → shrink_page_list

shrink_page_list decides per page, as Linux 3.x does: referenced pages
(page_referenced through rmap, which clears the accessed bits) are
activated or kept; an anonymous page gets a swap slot (add_to_swap), every
PTE becomes a swap entry (try_to_unmap), the page is written
(pageout → swap_writepage) and freed; a clean file page is unmapped and
dropped from its page cache; a dirty one is written back first through
a_ops->writepage.

Isolation takes a page reference, as isolate_lru_page() does, so the
expected count of a freeable page is 2 (the isolation's and the cache's).
Pages are processed in list order (tail first) and every choice is a pure
function of the state, so reclaim is deterministic.

kswapd runs synchronously when the machine next leaves the kernel (the start
of the next page fault or the end of the current syscall) after an
allocation woke it: one CPU, and a deterministic schedule for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Optional

from mmuemu.kernel.mm_types import PG, VM, AddressSpace, ClearPage, Page, PageAnon, PageTest, SetPage
from mmuemu.kernel.rmap import page_referenced_vm_flags, try_to_unmap
from mmuemu.kernel.swap import (
    LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE, LRU_UNEVICTABLE,
    add_page_to_lru_list, del_page_from_lru_list, inactive_of, is_active_lru, is_file_lru,
    page_is_file_cache, putback_lru_page,
)
from mmuemu.kernel.swap_state import PageSwapCache, add_to_swap, page_mapping

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

DEF_PRIORITY = 12
SWAP_CLUSTER_MAX = 32
#: the evictable lists, in for_each_evictable_lru() order
EVICTABLE_LRUS = (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)

# page_check_references() results
PAGEREF_RECLAIM = 0
PAGEREF_RECLAIM_CLEAN = 1
PAGEREF_KEEP = 2
PAGEREF_ACTIVATE = 3

# pageout() results
PAGE_KEEP = 0
PAGE_ACTIVATE = 1
PAGE_SUCCESS = 2
PAGE_CLEAN = 3

# get_scan_count() balance
SCAN_EQUAL = 0
SCAN_FRACT = 1
SCAN_ANON = 2
SCAN_FILE = 3


@dataclass(slots=True)
class ScanControl:
    """struct scan_control."""

    nr_to_reclaim: int
    priority: int = DEF_PRIORITY
    may_writepage: bool = True
    may_unmap: bool = True
    may_swap: bool = True
    current_is_kswapd: bool = False
    nr_scanned: int = 0
    nr_reclaimed: int = 0


# --- the zone -------------------------------------------------------------------------------

def zone_page_state_free(kern: "Kernel") -> int:
    """zone_page_state(zone, NR_FREE_PAGES)."""
    return kern.buddy.stats.nr_free_pages


def zone_balanced(kern: "Kernel") -> bool:
    """zone_balanced(): free pages above the high watermark."""
    return zone_page_state_free(kern) > kern.wmark.high


def inactive_anon_is_low(kern: "Kernel") -> bool:
    """inactive_anon_is_low(): inactive * inactive_ratio < active, where
    inactive_ratio = int_sqrt(10 * memory in GiB), at least 1 (3.x
    calculate_zone_inactive_ratio)."""
    lv = kern.lruvec
    return lv.size(LRU_INACTIVE_ANON) * kern.inactive_ratio < lv.size(LRU_ACTIVE_ANON)


def inactive_file_is_low(kern: "Kernel") -> bool:
    """inactive_file_is_low(): fewer inactive than active file pages."""
    lv = kern.lruvec
    return lv.size(LRU_INACTIVE_FILE) < lv.size(LRU_ACTIVE_FILE)


def inactive_list_is_low(kern: "Kernel", lru: str) -> bool:
    """inactive_list_is_low()."""
    return inactive_file_is_low(kern) if is_file_lru(lru) else inactive_anon_is_low(kern)


# --- isolating and putting back --------------------------------------------------------------

def isolate_lru_pages(kern: "Kernel", nr_to_scan: int, lru: str) -> list[Page]:
    """isolate_lru_pages(): take up to ``nr_to_scan`` pages off the tail of
    ``lru``, each with a reference (so nothing frees it under reclaim)."""
    pages: list[Page] = []
    for page in list(islice(kern.lruvec.lists[lru].values(), nr_to_scan)):
        del_page_from_lru_list(kern, page)
        page._count += 1
        pages.append(page)
    return pages


def putback_page(kern: "Kernel", page: Page) -> None:
    """putback_inactive_pages() for one page: back on the list its flags name
    (at the head), then drop the isolation reference, which frees a page
    nobody else holds."""
    putback_lru_page(kern, page)
    kern.put_page(page)


# --- one page ----------------------------------------------------------------------------

def page_check_references(kern: "Kernel", page: Page) -> int:
    """page_check_references(): what the accessed bits and PG_referenced say.

    Mapped and referenced: activate swap-backed pages, pages referenced
    twice (by two PTEs, or by a PTE and PG_referenced) and executable file
    pages; keep other file pages one more round (setting PG_referenced).
    Unmapped file pages referenced through read()/write() are reclaimed
    only while clean.
    """
    referenced_ptes, vm_flags = page_referenced_vm_flags(kern, page)
    referenced_page = bool(page.flags >> PG.referenced & 1)
    page.flags &= ~(1 << PG.referenced)
    if referenced_ptes:
        if page.flags >> PG.swapbacked & 1:
            return PAGEREF_ACTIVATE
        SetPage(page, PG.referenced)
        if referenced_page or referenced_ptes > 1:
            return PAGEREF_ACTIVATE
        if vm_flags & VM.EXEC:
            return PAGEREF_ACTIVATE
        return PAGEREF_KEEP
    if referenced_page and not page.flags >> PG.swapbacked & 1:
        return PAGEREF_RECLAIM_CLEAN
    return PAGEREF_RECLAIM


def is_page_cache_freeable(page: Page) -> bool:
    """is_page_cache_freeable(): only the cache and the isolation hold it."""
    return page._count == 2


def pageout(kern: "Kernel", page: Page, mapping: Optional[AddressSpace]) -> int:
    """pageout(): write a dirty page through a_ops->writepage.

    A mapping without a backing store (shmem without swap, ramfs) cannot
    write: the page is re-dirtied and activated, as shmem_writepage's
    AOP_WRITEPAGE_ACTIVATE does.
    """
    if not is_page_cache_freeable(page):
        return PAGE_KEEP
    if mapping is None:
        return PAGE_KEEP
    if not mapping.a_ops.has_backing_store:
        return PAGE_ACTIVATE
    from mmuemu.kernel.filemap import clear_page_dirty_for_io
    if clear_page_dirty_for_io(kern, page):
        SetPage(page, PG.reclaim)
        mapping.a_ops.writepage(kern, mapping, page)
        ClearPage(page, PG.reclaim)
        if not PageSwapCache(page):
            kern.vmstat.nr_vmscan_write += 1
        return PAGE_SUCCESS
    return PAGE_CLEAN


def __remove_mapping(kern: "Kernel", mapping: AddressSpace, page: Page) -> bool:
    """__remove_mapping(): take a clean, unmapped page out of the swap cache
    or the page cache, if nobody but the cache and the isolation holds it.
    On success the cache's reference is gone; the caller frees the page by
    dropping the isolation's."""
    if page._count != 2 or page.flags >> PG.dirty & 1:
        return False
    if PageSwapCache(page):
        from mmuemu.kernel.swap_state import __delete_from_swap_cache
        from mmuemu.kernel.swapfile import swapcache_free
        entry = page.private
        __delete_from_swap_cache(kern, page)
        swapcache_free(kern, entry)
    else:
        from mmuemu.kernel.filemap import __delete_from_page_cache
        __delete_from_page_cache(kern, page, mapping)
    page._count -= 1
    return True


def page_evictable(kern: "Kernel", page: Page) -> bool:
    """page_evictable(): not mlocked (mlock is not modelled) and not in an
    unevictable mapping."""
    return not page.flags >> PG.mlocked & 1


def shrink_page_list(kern: "Kernel", pages: list[Page], sc: ScanControl) -> int:
    """shrink_page_list(): try to free each isolated page; the rest go back
    on their lists (activated ones on the active list). Returns pages freed."""
    nr_reclaimed = 0
    for page in pages:
        sc.nr_scanned += 1
        outcome = _shrink_one(kern, page, sc)
        if outcome == "freed":
            nr_reclaimed += 1
            page._count -= 1  # the isolation's reference, the last one
            ClearPage(page, PG.active)
            kern.free_page(page)
            continue
        if outcome == "busy":  # locked by someone else: not ours to unlock
            putback_page(kern, page)
            continue
        if outcome == "activate":
            if not PageTest(page, PG.active):
                kern.vmstat.pgactivate += 1
                kern.lruvec.reclaim_stat.recent_rotated[int(page_is_file_cache(page))] += 1
            SetPage(page, PG.active)
        ClearPage(page, PG.locked)
        putback_page(kern, page)
    return nr_reclaimed


def _shrink_one(kern: "Kernel", page: Page, sc: ScanControl) -> str:
    """The body of shrink_page_list's loop: "freed", "activate", "keep", or
    "busy" (locked by its user: left alone)."""
    if page.flags >> PG.locked & 1:
        return "busy"  # trylock_page() failed
    if not page_evictable(kern, page):
        return "keep"
    SetPage(page, PG.locked)
    references = page_check_references(kern, page)
    if references == PAGEREF_ACTIVATE:
        return "activate"
    if references == PAGEREF_KEEP or page.flags >> PG.writeback & 1:
        return "keep"
    # Anonymous page without a slot: give it one (the swap cache).
    if PageAnon(page) and not PageSwapCache(page):
        if not sc.may_swap or not add_to_swap(kern, page):
            return "activate"
    mapping = page_mapping(kern, page)
    if mapping is not None and not mapping.a_ops.has_backing_store:
        # shmem without swap, ramfs: nowhere to write it (AOP_WRITEPAGE_ACTIVATE)
        return "activate"
    # Unmap it from every page table (anon PTEs become swap entries).
    if page._mapcount >= 0 and mapping is not None:
        if not sc.may_unmap or not try_to_unmap(kern, page):
            return "activate"
    if page.flags >> PG.dirty & 1:
        if references == PAGEREF_RECLAIM_CLEAN or not sc.may_writepage:
            return "keep"
        result = pageout(kern, page, mapping)
        if result == PAGE_KEEP:
            return "keep"
        if result == PAGE_ACTIVATE:
            SetPage(page, PG.dirty)
            return "activate"
        if page.flags >> (PG.writeback) & 1 or page.flags >> PG.dirty & 1:
            return "keep"
        # PAGE_SUCCESS with synchronous I/O, or PAGE_CLEAN: free it now
        mapping = page_mapping(kern, page)
    if mapping is None or not __remove_mapping(kern, mapping, page):
        return "keep"
    ClearPage(page, PG.locked)
    return "freed"


# --- the lists --------------------------------------------------------------------------

def shrink_inactive_list(kern: "Kernel", nr_to_scan: int, lru: str, sc: ScanControl) -> int:
    """shrink_inactive_list(): isolate from the tail, shrink_page_list, count."""
    pages = isolate_lru_pages(kern, nr_to_scan, lru)
    if not pages:
        return 0
    file = int(is_file_lru(lru))
    kern.lruvec.reclaim_stat.recent_scanned[file] += len(pages)
    vm = kern.vmstat
    if sc.current_is_kswapd:
        vm.pgscan_kswapd += len(pages)
    else:
        vm.pgscan_direct += len(pages)
    reclaimed = shrink_page_list(kern, pages, sc)
    if sc.current_is_kswapd:
        vm.pgsteal_kswapd += reclaimed
    else:
        vm.pgsteal_direct += reclaimed
    return reclaimed


def shrink_active_list(kern: "Kernel", nr_to_scan: int, lru: str, sc: ScanControl) -> None:
    """shrink_active_list(): age the active list's tail. Every page moves to
    the inactive list (pgdeactivate) with its accessed bits cleared, except
    referenced executable file pages, which get another round."""
    pages = isolate_lru_pages(kern, nr_to_scan, lru)
    if not pages:
        return
    file = is_file_lru(lru)
    stat = kern.lruvec.reclaim_stat
    stat.recent_scanned[int(file)] += len(pages)
    kern.vmstat.pgrefill += len(pages)
    keep_active: list[Page] = []
    deactivate: list[Page] = []
    for page in pages:
        if page._mapcount >= 0 and not page.flags >> PG.locked & 1:
            referenced, vm_flags = page_referenced_vm_flags(kern, page)
            if referenced:
                stat.recent_rotated[int(file)] += 1
                if vm_flags & VM.EXEC and page_is_file_cache(page):
                    keep_active.append(page)
                    continue
        deactivate.append(page)
    for page in keep_active:
        putback_page(kern, page)
    inactive = inactive_of(lru)
    for page in deactivate:
        page.flags &= ~(1 << PG.active)
        add_page_to_lru_list(kern, page, inactive)
        kern.put_page(page)
    kern.vmstat.pgdeactivate += len(deactivate)


def shrink_list(kern: "Kernel", lru: str, nr_to_scan: int, sc: ScanControl) -> int:
    """shrink_list(): age an active list only while its inactive list is low."""
    if is_active_lru(lru):
        if inactive_list_is_low(kern, lru):
            shrink_active_list(kern, nr_to_scan, lru, sc)
        return 0
    return shrink_inactive_list(kern, nr_to_scan, lru, sc)


def get_scan_count(kern: "Kernel", sc: ScanControl) -> dict[str, int]:
    """get_scan_count(): how many pages of each evictable list to scan at this
    priority (list size >> priority), split between anon and file by
    swappiness and by how many scanned pages were recently rotated."""
    lv = kern.lruvec
    swappiness = kern.config.swappiness
    anon = lv.size(LRU_ACTIVE_ANON) + lv.size(LRU_INACTIVE_ANON)
    file = lv.size(LRU_ACTIVE_FILE) + lv.size(LRU_INACTIVE_FILE)
    if not sc.may_swap or kern.swap.nr_swap_pages <= 0:
        balance = SCAN_FILE
    elif sc.priority == 0 and swappiness:
        # the last pass before giving up: no balancing cleverness, scan every
        # list whole (Linux 3.9, "mm: vmscan: clarify LRU balancing close to
        # OOM"). Without it, an inactive file list longer than the active one
        # keeps anon unscanned and the OOM killer runs with swap to spare.
        balance = SCAN_EQUAL
    elif file + zone_page_state_free(kern) <= kern.wmark.high:
        balance = SCAN_ANON  # too little page cache left to matter
    elif not inactive_file_is_low(kern):
        balance = SCAN_FILE  # enough inactive cache: leave anon alone
    else:
        balance = SCAN_FRACT
    fraction = [0, 0]
    denominator = 1
    if balance == SCAN_FRACT:
        stat = lv.reclaim_stat
        # age the history so it follows the recent behaviour
        if stat.recent_scanned[0] > anon // 4:
            stat.recent_scanned[0] //= 2
            stat.recent_rotated[0] //= 2
        if stat.recent_scanned[1] > file // 4:
            stat.recent_scanned[1] //= 2
            stat.recent_rotated[1] //= 2
        ap = swappiness * (stat.recent_scanned[0] + 1) // (stat.recent_rotated[0] + 1)
        fp = (200 - swappiness) * (stat.recent_scanned[1] + 1) // (stat.recent_rotated[1] + 1)
        fraction = [ap, fp]
        denominator = ap + fp + 1
    nr: dict[str, int] = {}
    for lru in EVICTABLE_LRUS:
        file_lru = int(is_file_lru(lru))
        size = lv.size(lru)
        scan = size >> sc.priority
        if balance == SCAN_FRACT:
            scan = scan * fraction[file_lru] // denominator
        elif balance == SCAN_FILE and not file_lru or balance == SCAN_ANON and file_lru:
            scan = 0
        nr[lru] = scan
    return nr


def shrink_lruvec(kern: "Kernel", sc: ScanControl) -> None:
    """shrink_lruvec(): scan the lists in SWAP_CLUSTER_MAX batches until the
    quota is used or enough is reclaimed; then keep the anon lists balanced."""
    nr = get_scan_count(kern, sc)
    while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
        for lru in EVICTABLE_LRUS:
            if nr[lru]:
                nr_to_scan = min(nr[lru], SWAP_CLUSTER_MAX)
                nr[lru] -= nr_to_scan
                sc.nr_reclaimed += shrink_list(kern, lru, nr_to_scan, sc)
        if sc.nr_reclaimed >= sc.nr_to_reclaim:
            break
    if inactive_anon_is_low(kern) and kern.swap.nr_swap_pages > 0 and sc.may_swap:
        shrink_active_list(kern, SWAP_CLUSTER_MAX, LRU_ACTIVE_ANON, sc)


def shrink_zone(kern: "Kernel", sc: ScanControl) -> None:
    """shrink_zone(): the one zone's lruvec (no memory cgroups)."""
    shrink_lruvec(kern, sc)


def zone_reclaimable_pages(kern: "Kernel") -> int:
    """zone_reclaimable_pages(): file pages, and anon pages while swap is left."""
    lv = kern.lruvec
    nr = lv.size(LRU_ACTIVE_FILE) + lv.size(LRU_INACTIVE_FILE)
    if kern.swap.nr_swap_pages > 0:
        nr += lv.size(LRU_ACTIVE_ANON) + lv.size(LRU_INACTIVE_ANON)
    return nr


# --- direct reclaim and kswapd -------------------------------------------------------------

def try_to_free_pages(kern: "Kernel") -> int:
    """try_to_free_pages() → do_try_to_free_pages(): direct reclaim by the
    allocating task, raising the priority until SWAP_CLUSTER_MAX pages are
    freed. Returns pages reclaimed."""
    sc = ScanControl(nr_to_reclaim=SWAP_CLUSTER_MAX, may_unmap=kern.reclaim_may_unmap,
                     may_swap=kern.reclaim_may_unmap)
    kern.vmstat.allocstall += 1
    for priority in range(DEF_PRIORITY, -1, -1):
        sc.priority = priority
        shrink_zone(kern, sc)
        if sc.nr_reclaimed >= sc.nr_to_reclaim:
            break
    return sc.nr_reclaimed


def wakeup_kswapd(kern: "Kernel") -> None:
    """wakeup_kswapd(): free memory fell below the low watermark."""
    if not kern.kswapd_wait:
        kern.kswapd_wait = True
        kern.vmstat.kswapd_wakeups += 1


def balance_pgdat(kern: "Kernel") -> int:
    """balance_pgdat(): kswapd reclaims until the zone is above its high
    watermark. The priority rises when a pass scanned less than it wanted
    or reclaimed nothing. Returns pages reclaimed."""
    sc = ScanControl(nr_to_reclaim=0, current_is_kswapd=True, may_unmap=kern.reclaim_may_unmap,
                     may_swap=kern.reclaim_may_unmap)
    total = 0
    while not zone_balanced(kern) and sc.priority >= 1:
        sc.nr_scanned = 0
        sc.nr_reclaimed = 0
        sc.nr_to_reclaim = max(SWAP_CLUSTER_MAX, kern.wmark.high - zone_page_state_free(kern))
        # age the anon lists even when get_scan_count leaves anon alone
        if inactive_anon_is_low(kern) and kern.swap.nr_swap_pages > 0 and sc.may_swap:
            shrink_active_list(kern, SWAP_CLUSTER_MAX, LRU_ACTIVE_ANON, sc)
        shrink_zone(kern, sc)
        total += sc.nr_reclaimed
        if sc.nr_scanned < sc.nr_to_reclaim or not sc.nr_reclaimed:
            sc.priority -= 1
    return total


def kswapd_run(kern: "Kernel") -> int:
    """One kswapd wake-up: balance the zone, go back to sleep. Returns pages reclaimed."""
    if not kern.kswapd_wait:
        return 0
    kern.kswapd_wait = False
    return balance_pgdat(kern)


__all__ = [
    "DEF_PRIORITY", "SWAP_CLUSTER_MAX", "ScanControl", "balance_pgdat", "kswapd_run",
    "shrink_page_list", "try_to_free_pages", "wakeup_kswapd", "zone_reclaimable_pages",
    "LRU_UNEVICTABLE",
]
