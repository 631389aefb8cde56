"""Buddy allocator: splitting, merging, accounting (mm/page_alloc.c rules)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from mmuemu.kernel.page_alloc import MAX_ORDER, BuddyAllocator, OutOfMemory
from tests.conftest import make_rig


def test_order0_allocations_ascend_from_the_lowest_block() -> None:
    # expand() keeps the lower half, so consecutive order-0 allocations walk upwards.
    b = BuddyAllocator(0, 1 << (MAX_ORDER - 1))
    assert [b.alloc_pages(0) for _ in range(5)] == [0, 1, 2, 3, 4]


def test_free_merges_back_to_a_max_order_block() -> None:
    n = 1 << (MAX_ORDER - 1)
    b = BuddyAllocator(0, n)
    pfns = [b.alloc_pages(0) for _ in range(n)]
    assert b.stats.nr_free_pages == 0
    with pytest.raises(OutOfMemory):
        b.alloc_pages(0)
    random.Random(1).shuffle(pfns)
    for p in pfns:
        b.free_pages(p)
    assert b.stats.nr_free_pages == n
    # fully merged: exactly one free block, of the top order
    assert [len(a) for a in b.free_area] == [0] * (MAX_ORDER - 1) + [1]


def test_unaligned_zone_is_seeded_with_aligned_blocks() -> None:
    b = BuddyAllocator(1, 100)
    assert b.stats.nr_free_pages == 99
    seen = set()
    for _ in range(99):
        p = b.alloc_pages(0)
        assert 1 <= p < 100 and p not in seen
        seen.add(p)
    with pytest.raises(OutOfMemory):
        b.alloc_pages(0)


def test_higher_order_block_is_naturally_aligned() -> None:
    b = BuddyAllocator(0, 4096)
    b.alloc_pages(0)
    p = b.alloc_pages(3)
    assert p % 8 == 0
    assert all(not b.is_free(p + i) for i in range(8))
    b.free_pages(p, 3)
    assert all(b.is_free(p + i) for i in range(8))


# --- the per-cpu page list (struct per_cpu_pages, Linux 4.x) ----------------------------

@pytest.mark.parametrize("managed, batch, high", [
    # 4.x zone_batchsize(): min(managed / 1024, 256) / 4, then rounddown_pow_of_two(b + b/2) - 1;
    # pageset_set_batch(): high = 6 * batch, batch at least 1
    (262143, 63, 378),  # 1 GiB: 255 / 4 = 63; 94 -> 64 - 1
    (1 << 20, 63, 378),  # 4 GiB: capped at 1 MiB = 256 pages; 64 -> 96 -> 64 - 1
    (16383, 3, 18),  # 64 MiB: 15 / 4 = 3; 4 -> 4 - 1
    (8191, 1, 0),  # 32 MiB: 7 / 4 = 1; 1 -> 1 - 1 = 0: no list (high 0)
])
def test_pcp_batch_and_high_follow_zone_batchsize(managed: int, batch: int, high: int) -> None:
    b = BuddyAllocator(1, managed + 1)
    assert (b.pcp_batch, b.pcp_high) == (batch, high)


def test_rmqueue_bulk_takes_what_rmqueue_smallest_would_one_by_one() -> None:
    # The reference is alloc_pages(0), __rmqueue_smallest() itself, called
    # ``count`` times: the same frames in the same order, and free lists equal
    # down to their LIFO order, after random histories of frees.
    for seed in range(60):
        rnd = random.Random(seed)
        n = rnd.choice([37, 1000, 5000])
        ref, bulk = BuddyAllocator(1, n), BuddyAllocator(1, n)
        held: list[int] = []
        for _ in range(60):
            if rnd.random() < 0.4 and held:
                for _ in range(rnd.randint(1, 10)):
                    if held:
                        pfn = held.pop(rnd.randrange(len(held)))
                        ref.free_pages(pfn)
                        bulk.free_pages(pfn)
                continue
            count = rnd.choice([1, 3, 63, 100])
            want = []
            for _ in range(count):
                try:
                    want.append(ref.alloc_pages(0))
                except OutOfMemory:
                    break
            assert bulk.rmqueue_bulk(count) == len(want)
            assert bulk.pcp[::-1] == want  # the first taken is the list's head (the end)
            bulk.pcp.clear()
            assert [list(a) for a in bulk.free_area] == [list(a) for a in ref.free_area]
            assert bulk.stats.nr_free_pages == ref.stats.nr_free_pages
            held += want


def test_pcp_frees_the_oldest_batch_at_high_and_reuses_the_newest_first() -> None:
    b = BuddyAllocator(1, 16384)  # batch 3, high 18
    assert b.rmqueue_bulk(b.pcp_batch) == 3
    taken = [b.pcp.pop() for _ in range(3)]
    assert taken == [1, 2, 3]  # refilled in address order, head first
    more = [b.alloc_pages(0) for _ in range(17)]
    free0 = b.stats.nr_free_pages
    for pfn in taken + more[:14]:  # 17 frees: below high, all stay listed
        b.free_unref_page(pfn)
    assert len(b.pcp) == 17 and b.stats.nr_free_pages == free0
    b.free_unref_page(more[14])  # the 18th reaches high: the 3 oldest go back
    assert b.pcp[0] == 4 and len(b.pcp) == 15 and b.stats.nr_free_pages == free0 + 3
    assert all(b.is_free(p) for p in [1, 2, 3, more[14]])
    assert b.pcp.pop() == more[14]  # the hottest frame comes back first
    assert b.drain_pages() == 14 and not b.pcp
    assert b.stats.nr_free_pages == free0 + 17


def test_direct_reclaim_drains_the_pcp_list_before_the_oom_killer(tmp_path: Path) -> None:
    # Frames on the per-cpu list are not in NR_FREE_PAGES: with the zone at its
    # min watermark and nothing reclaimable, __alloc_pages_direct_reclaim()
    # drains the list (drain_all_pages) and the allocation succeeds from it.
    rig = make_rig("x86_64", tmp_path, mem_bytes=64 << 20, swap_bytes=0)
    kern = rig.kern
    held = [kern.alloc_page(kind="pgtable") for _ in range(5)]
    while kern.buddy.stats.nr_free_pages > kern.wmark.min:
        kern.buddy.alloc_pages(0)
    for page in held:
        kern.put_page(page)  # onto the list: 5 < high, none goes back
    listed = len(kern.buddy.pcp)
    assert listed >= 5 and kern.buddy.stats.nr_free_pages == kern.wmark.min
    kern.alloc_page(kind="pgtable")
    assert kern.vmstat.allocstall == 1 and kern.vmstat.oom_kill == 0
    assert kern.buddy.stats.nr_free_pages == kern.wmark.min + listed - kern.buddy.pcp_batch
    assert len(kern.buddy.pcp) == kern.buddy.pcp_batch - 1


def test_order0_watermark_check_is_free_above_mark(tmp_path: Path) -> None:
    # zone_watermark_fast() for order 0 (4.x): the zone is ok while
    # NR_FREE_PAGES > mark. At free == low + 1 an allocation takes the fast
    # path; at free == low it wakes kswapd (and still succeeds above min).
    rig = make_rig("x86_64", tmp_path, mem_bytes=64 << 20, swap_bytes=0)
    kern = rig.kern
    kern.buddy.drain_pages()
    while kern.buddy.stats.nr_free_pages > kern.wmark.low + 1:
        kern.buddy.alloc_pages(0)
    kern.alloc_page(kind="pgtable")  # from the list's refill: free drops by a batch
    assert kern.vmstat.kswapd_wakeups == 0
    kern.buddy.drain_pages()  # the refill's two other frames go back
    while kern.buddy.stats.nr_free_pages > kern.wmark.low:
        kern.buddy.alloc_pages(0)
    kern.alloc_page(kind="pgtable")
    assert kern.vmstat.kswapd_wakeups == 1


def test_rmqueue_pcplist_takes_the_head_refills_and_reports_an_empty_zone() -> None:
    """rmqueue_pcplist(): an empty list is refilled with ``batch`` frames and its
    head taken; frames freed to the list come back LIFO; with nothing left in
    the buddy lists either, None."""
    b = BuddyAllocator(1, 1 + 64)
    first = b.rmqueue_pcplist()
    assert first is not None and len(b.pcp) == b.pcp_batch - 1
    b.free_unref_page(first)
    assert b.rmqueue_pcplist() == first  # the hot frame, again
    taken = [b.rmqueue_pcplist() for _ in range(63)]
    assert None not in taken and len(set(taken) | {first}) == 64
    assert b.rmqueue_pcplist() is None
