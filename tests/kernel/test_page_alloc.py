"""Buddy allocator: splitting, merging, accounting (mm/page_alloc.c rules)."""
from __future__ import annotations

import random

import pytest

from mmuemu.kernel.page_alloc import MAX_ORDER, BuddyAllocator, OutOfMemory


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
