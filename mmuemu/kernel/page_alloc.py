"""The buddy page allocator and mem_map (mm/page_alloc.c).

Free blocks of 2**order frames sit on ``free_area[order]``; an allocation
takes the smallest block that fits and splits it, keeping the lower half and
freeing the upper halves (expand()); a free merges a block with its buddy
(pfn ^ (1 << order)) while the buddy is free too (__free_one_page()).
Lists are insertion-ordered dicts used as LIFO stacks, so allocation order is
deterministic. struct page objects live in ``mem_map`` and are created when a
frame is first handed out.

Order-0 frames go through the per-CPU page list (struct per_cpu_pages, one
CPU) as in Linux 4.x: an allocation takes the list's head and refills an empty
list with ``batch`` frames from the buddy lists (rmqueue_bulk); a free puts the
frame at the head and, once ``high`` frames are listed, gives ``batch`` of the
oldest back to the buddy lists (free_pcppages_bulk). Listed frames are not
counted in NR_FREE_PAGES, as in Linux.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmuemu.kernel.mm_types import Page

MAX_ORDER = 11  # orders 0..10, as Linux's default MAX_ORDER


class OutOfMemory(Exception):
    """No free block large enough (the caller turns this into VM_FAULT_OOM/-ENOMEM)."""


@dataclass(slots=True)
class ZoneStats:
    """Free-page accounting (/proc/zoneinfo style)."""

    managed_pages: int = 0
    nr_free_pages: int = 0
    #: the fewest free pages seen (after an allocation) during the run
    min_free_pages: int = 0
    allocs: int = 0
    frees: int = 0


#: /proc/sys/vm/watermark_scale_factor default (in 1/10000 of managed pages)
WATERMARK_SCALE_FACTOR = 10


@dataclass(frozen=True, slots=True)
class ZoneWatermarks:
    """A zone's _watermark[WMARK_MIN/LOW/HIGH], in pages.

    Below ``low`` an allocation wakes kswapd; an ordinary allocation may not
    take the free count below ``min`` (it enters direct reclaim instead);
    kswapd reclaims until the zone is above ``high``.
    """

    min: int
    low: int
    high: int

    def as_dict(self) -> dict[str, int]:
        return {"min": self.min, "low": self.low, "high": self.high}


def setup_per_zone_wmarks(managed_pages: int, min_free_kbytes: int) -> ZoneWatermarks:
    """__setup_per_zone_wmarks() for the one zone, as Linux 6.x computes it:
    min = min_free_kbytes in pages; low and high add max(min/4,
    managed * watermark_scale_factor / 10000) once and twice."""
    wmin = min_free_kbytes >> 2  # kB to 4 KiB pages
    tmp = max(wmin >> 2, managed_pages * WATERMARK_SCALE_FACTOR // 10000)
    return ZoneWatermarks(min=wmin, low=wmin + tmp, high=wmin + 2 * tmp)


def zone_batchsize(managed_pages: int) -> int:
    """zone_batchsize() (4.x): about a thousandth of the zone, at most 1 MiB,
    quartered and clamped to 2**n - 1 (pageset_set_batch() makes 0 into 1)."""
    batch = min(managed_pages // 1024, (1 << 20) >> 12) // 4
    batch = max(batch, 1)
    n = batch + batch // 2
    batch = (1 << (n.bit_length() - 1)) - 1  # rounddown_pow_of_two() - 1
    return batch


class BuddyAllocator:
    """One zone's buddy allocator over frames [first_pfn, end_pfn), with its
    per-CPU page list for order-0 frames."""

    __slots__ = ("free_area", "mem_map", "stats", "first_pfn", "end_pfn", "_order_of",
                 "pcp", "pcp_high", "pcp_batch")

    def __init__(self, first_pfn: int, end_pfn: int) -> None:
        self.free_area: list[dict[int, None]] = [dict() for _ in range(MAX_ORDER)]
        self.mem_map: list[Page | None] = [None] * end_pfn
        self.stats = ZoneStats()
        self.first_pfn = first_pfn
        self.end_pfn = end_pfn
        #: order of each free block, keyed by its first pfn (PageBuddy + page_order)
        self._order_of: dict[int, int] = {}
        pfn = first_pfn
        # Seed the free lists with maximal naturally aligned blocks, high first so
        # the lowest block is popped first.
        blocks: list[tuple[int, int]] = []
        while pfn < end_pfn:
            order = MAX_ORDER - 1
            while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end_pfn):
                order -= 1
            blocks.append((pfn, order))
            pfn += 1 << order
        for pfn, order in reversed(blocks):
            self.free_area[order][pfn] = None
            self._order_of[pfn] = order
        self.stats.managed_pages = end_pfn - first_pfn
        self.stats.nr_free_pages = end_pfn - first_pfn
        self.stats.min_free_pages = end_pfn - first_pfn
        #: per_cpu_pages.lists[MIGRATE_MOVABLE] as pfns, the list's head last
        #: (so taking the head is list.pop()); pcp->count is its length
        self.pcp: list[int] = []
        batch = zone_batchsize(self.stats.managed_pages)
        #: pageset_set_batch(): high = 6 * batch, batch at least 1
        self.pcp_high = 6 * batch
        self.pcp_batch = max(1, batch)

    def alloc_pages(self, order: int = 0) -> int:
        """__rmqueue_smallest(): return the first pfn of a free 2**order block."""
        free_area = self.free_area
        for current in range(order, MAX_ORDER):
            area = free_area[current]
            if area:
                pfn, _ = area.popitem()
                order_of = self._order_of
                del order_of[pfn]
                # expand(): give back the upper halves
                while current > order:
                    current -= 1
                    buddy = pfn + (1 << current)
                    free_area[current][buddy] = None
                    order_of[buddy] = current
                stats = self.stats
                free = stats.nr_free_pages - (1 << order)
                stats.nr_free_pages = free
                if free < stats.min_free_pages:
                    stats.min_free_pages = free
                stats.allocs += 1
                return pfn
        raise OutOfMemory(f"no free block of order {order}")

    def rmqueue_bulk(self, count: int) -> int:
        """rmqueue_bulk(): move up to ``count`` order-0 frames onto the pcp
        list, each as __rmqueue_smallest() would take it, the first taken at
        the list's head (list_add_tail). Returns how many were moved.

        Not one split per frame: when __rmqueue_smallest() splits a block of
        order k, every lower order was empty, so the next 2**k - 1 calls
        take the rest of that block, frame by frame in address order. Here a
        block is taken whole, or its first frames taken and the rest given
        back as the aligned blocks those calls would have left; the free
        lists end up as ``count`` calls leave them.
        """
        free_area = self.free_area
        order_of = self._order_of
        taken: list[int] = []
        need = count
        while need:
            for current in range(MAX_ORDER):
                area = free_area[current]
                if area:
                    break
            else:
                break
            pfn, _ = area.popitem()
            del order_of[pfn]
            size = 1 << current
            if size <= need:
                taken.extend(range(pfn, pfn + size))
                need -= size
                continue
            taken.extend(range(pfn, pfn + need))
            # what is left, [pfn + need, pfn + size), in naturally aligned blocks
            start = pfn + need
            end = pfn + size
            while start < end:
                order = (start & -start).bit_length() - 1
                free_area[order][start] = None
                order_of[start] = order
                start += 1 << order
            need = 0
        n = len(taken)
        if n:
            taken.reverse()
            self.pcp[:0] = taken  # behind whatever is listed (the list is empty)
            stats = self.stats
            free = stats.nr_free_pages - n
            stats.nr_free_pages = free
            if free < stats.min_free_pages:
                stats.min_free_pages = free
            stats.allocs += n
        return n

    def rmqueue_pcplist(self) -> int | None:
        """rmqueue_pcplist(): the pcp list's head, refilling an empty list
        first; None when the buddy lists have no frame either."""
        pcp = self.pcp
        if not pcp and not self.rmqueue_bulk(self.pcp_batch):
            return None
        return pcp.pop()

    def free_pcppages_bulk(self, count: int) -> None:
        """free_pcppages_bulk(): give the ``count`` oldest listed frames (the
        list's tail) back to the buddy lists."""
        pcp = self.pcp
        victims = pcp[:count]
        del pcp[:count]
        self._free_one_pages(victims, 0)

    def free_unref_page(self, pfn: int) -> None:
        """free_unref_page(): an order-0 frame goes to the pcp list's head;
        at ``high`` listed frames, ``batch`` of the oldest go back to the buddy."""
        self.free_unref_page_list((pfn,))

    def free_unref_page_list(self, pfns: Sequence[int]) -> None:
        """free_unref_page_list(): free_unref_page() for each frame, in order."""
        pcp = self.pcp
        high = self.pcp_high
        for pfn in pfns:
            pcp.append(pfn)
            if len(pcp) >= high:
                self.free_pcppages_bulk(self.pcp_batch)

    def drain_pages(self) -> int:
        """drain_all_pages(): empty the pcp list into the buddy lists.
        Returns how many frames it held."""
        n = len(self.pcp)
        self.free_pcppages_bulk(n)
        return n

    def free_pages(self, pfn: int, order: int = 0) -> None:
        """__free_one_page(): return a block, merging with free buddies."""
        self._free_one_pages((pfn,), order)

    def _free_one_pages(self, pfns: "list[int] | tuple[int]", order: int) -> None:
        """__free_one_page() for each block of 2**order frames in ``pfns``, in
        order: merge it with its buddy (pfn ^ (1 << order)) while that is a
        free block of the same order, and list the result."""
        n = len(pfns)
        stats = self.stats
        stats.nr_free_pages += n << order
        stats.frees += n
        free_area = self.free_area
        order_of = self._order_of
        top = MAX_ORDER - 1
        start_order = order
        for pfn in pfns:
            order = start_order
            while order < top:
                buddy = pfn ^ (1 << order)
                if order_of.get(buddy) != order:
                    break
                del free_area[order][buddy]
                del order_of[buddy]
                pfn &= buddy
                order += 1
            free_area[order][pfn] = None
            order_of[pfn] = order

    def is_free(self, pfn: int) -> bool:
        """Whether frame ``pfn`` is free: inside a free block or on the pcp
        list (for invariant checks)."""
        if pfn in self.pcp:
            return True
        for order in range(MAX_ORDER):
            head = pfn & ~((1 << order) - 1)
            if self._order_of.get(head) == order:
                return True
        return False

    def pfn_to_page(self, pfn: int) -> Page:
        """The struct page of an allocated frame, created on first use."""
        page = self.mem_map[pfn]
        if page is None:
            page = Page(pfn)
            self.mem_map[pfn] = page
        return page
