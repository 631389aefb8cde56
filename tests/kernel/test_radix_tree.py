"""Tests for mmuemu.kernel.radix_tree (model of Linux 3.x lib/radix-tree.c).

Expected values come from first principles or from a plain reference model
(a dict of index -> item plus one set of indexes per tag), never from the
tree's own output.  After operations, ``check_tree`` walks the whole tree
and checks the structural invariants of the kernel's radix tree.
"""
from __future__ import annotations

import errno
import random
from typing import Any, Optional

import pytest

from mmuemu.kernel.radix_tree import (
    PAGECACHE_TAG_DIRTY, PAGECACHE_TAG_TOWRITE, PAGECACHE_TAG_WRITEBACK,
    RADIX_TREE_ITER_TAGGED, RADIX_TREE_MAP_SHIFT, RADIX_TREE_MAP_SIZE,
    RADIX_TREE_MAX_TAGS, RadixTreeBug, RadixTreeIter, RadixTreeNode, RadixTreeRoot,
    radix_tree_count, radix_tree_delete, radix_tree_delete_item, radix_tree_deref_slot,
    radix_tree_for_each_slot, radix_tree_for_each_tagged, radix_tree_gang_lookup,
    radix_tree_gang_lookup_slot, radix_tree_gang_lookup_tag,
    radix_tree_gang_lookup_tag_slot, radix_tree_insert, radix_tree_items,
    radix_tree_lookup, radix_tree_lookup_slot, radix_tree_maxindex,
    radix_tree_next_chunk, radix_tree_next_hole, radix_tree_prev_hole,
    radix_tree_range_tag_if_tagged, radix_tree_replace_slot, radix_tree_tag_clear,
    radix_tree_tag_get, radix_tree_tag_set, radix_tree_tagged,
)

ULONG_MAX = 2**64 - 1
TAGS = (PAGECACHE_TAG_DIRTY, PAGECACHE_TAG_WRITEBACK, PAGECACHE_TAG_TOWRITE)
EDGE_INDEXES = [0, 63, 64, 4095, 4096, 2**32, 2**64 - 1]


class Item:
    """A distinct payload; identity is what the tests compare."""

    __slots__ = ("index", "gen")

    def __init__(self, index: int, gen: int = 0) -> None:
        self.index = index
        self.gen = gen

    def __repr__(self) -> str:
        return f"Item({self.index:#x}, gen={self.gen})"


def expected_height(indexes: Any) -> int:
    """Smallest h with 64**h > max index (0 for an empty tree or index 0 alone)."""
    keys = list(indexes)
    if not keys:
        return 0
    top = max(keys)
    h = 0
    while 64**h <= top:
        h += 1
    return h


class Ref:
    """Reference model: a dict plus a set of indexes per tag."""

    def __init__(self) -> None:
        self.items: dict[int, Item] = {}
        self.tags: list[set[int]] = [set() for _ in range(RADIX_TREE_MAX_TAGS)]

    def sorted_keys(self) -> list[int]:
        return sorted(self.items)


def check_tree(root: RadixTreeRoot, ref: Ref) -> None:
    """Walk the whole tree and check it against ``ref`` and the kernel invariants."""
    for t in range(RADIX_TREE_MAX_TAGS):
        assert ref.tags[t] <= set(ref.items)
        assert bool((root.root_tags >> t) & 1) == bool(ref.tags[t]), f"root tag {t}"
    assert root.root_tags >> RADIX_TREE_MAX_TAGS == 0
    assert root.height == expected_height(ref.items)
    if not ref.items:
        assert root.rnode is None
        assert root.height == 0
        return
    if root.height == 0:
        assert list(ref.items) == [0]
        assert root.rnode is ref.items[0]
        return

    found: dict[int, Any] = {}
    tagged_found: list[set[int]] = [set() for _ in range(RADIX_TREE_MAX_TAGS)]

    def walk(node: Any, height: int, base: int, parent: Optional[RadixTreeNode],
             offset: int) -> list[bool]:
        """Returns, per tag, whether any item under ``node`` carries it."""
        assert isinstance(node, RadixTreeNode)
        assert node.height == height
        assert node.parent is parent
        if parent is not None:
            assert node.offset == offset
        assert len(node.slots) == RADIX_TREE_MAP_SIZE
        used = [o for o, s in enumerate(node.slots) if s is not None]
        assert node.count == len(used), "count != number of non-None slots"
        assert node.count > 0, "empty node left in the tree"
        shift = (height - 1) * RADIX_TREE_MAP_SHIFT
        any_tag = [False] * RADIX_TREE_MAX_TAGS
        for o in range(RADIX_TREE_MAP_SIZE):
            child = node.slots[o]
            index = base + (o << shift)
            if child is None:
                under = [False] * RADIX_TREE_MAX_TAGS
            elif height == 1:
                assert not isinstance(child, RadixTreeNode)
                assert index not in found
                found[index] = child
                under = [index in ref.tags[t] for t in range(RADIX_TREE_MAX_TAGS)]
                for t in range(RADIX_TREE_MAX_TAGS):
                    if (node.tags[t] >> o) & 1:
                        tagged_found[t].add(index)
            else:
                under = walk(child, height - 1, index, node, o)
            for t in range(RADIX_TREE_MAX_TAGS):
                bit = bool((node.tags[t] >> o) & 1)
                assert bit == under[t], (
                    f"tag {t} bit of slot {o} in node h={height} base={base:#x} is {bit}")
                any_tag[t] = any_tag[t] or under[t]
        for t in range(RADIX_TREE_MAX_TAGS):
            assert node.tags[t] >> RADIX_TREE_MAP_SIZE == 0
        return any_tag

    walk(root.rnode, root.height, 0, None, 0)
    assert found.keys() == ref.items.keys()
    for k, v in found.items():
        assert v is ref.items[k]
    for t in range(RADIX_TREE_MAX_TAGS):
        assert tagged_found[t] == ref.tags[t]


# --------------------------------------------------------------------------
# Basic behaviour at interesting indexes
# --------------------------------------------------------------------------

def test_maxindex() -> None:
    assert radix_tree_maxindex(0) == 0
    assert radix_tree_maxindex(1) == 63
    assert radix_tree_maxindex(2) == 4095
    assert radix_tree_maxindex(5) == 2**30 - 1
    assert radix_tree_maxindex(10) == 2**60 - 1
    assert radix_tree_maxindex(11) == ULONG_MAX


@pytest.mark.parametrize("index", EDGE_INDEXES)
def test_single_insert_lookup_delete(index: int) -> None:
    root = RadixTreeRoot()
    ref = Ref()
    item = Item(index)
    assert radix_tree_lookup(root, index) is None
    assert radix_tree_insert(root, index, item) == 0
    ref.items[index] = item
    check_tree(root, ref)
    assert root.height == expected_height([index])
    assert radix_tree_lookup(root, index) is item
    for other in (index - 1, index + 1, index ^ 1, 0, ULONG_MAX):
        if 0 <= other <= ULONG_MAX and other != index:
            assert radix_tree_lookup(root, other) is None
    assert radix_tree_insert(root, index, Item(index, 1)) == -errno.EEXIST
    assert radix_tree_lookup(root, index) is item
    assert radix_tree_count(root) == 1
    assert radix_tree_delete(root, index) is item
    del ref.items[index]
    check_tree(root, ref)
    assert root.height == 0 and root.rnode is None
    assert radix_tree_lookup(root, index) is None
    assert radix_tree_delete(root, index) is None


def test_expected_heights() -> None:
    assert expected_height([0]) == 0
    assert expected_height([1]) == 1
    assert expected_height([63]) == 1
    assert expected_height([64]) == 2
    assert expected_height([4095]) == 2
    assert expected_height([4096]) == 3
    assert expected_height([2**32]) == 6
    assert expected_height([2**64 - 1]) == 11
    root = RadixTreeRoot()
    for idx, h in [(0, 0), (1, 1), (63, 1), (64, 2), (4095, 2), (4096, 3),
                   (2**32, 6), (2**60 - 1, 10), (2**60, 11), (2**64 - 1, 11)]:
        radix_tree_insert(root, idx, Item(idx))
        assert root.height == h, idx


def test_all_edges_together_and_shrink() -> None:
    root = RadixTreeRoot()
    ref = Ref()
    for i in EDGE_INDEXES:
        item = Item(i)
        assert radix_tree_insert(root, i, item) == 0
        ref.items[i] = item
        check_tree(root, ref)
    assert root.height == 11
    for i in EDGE_INDEXES:
        assert radix_tree_lookup(root, i) is ref.items[i]
    for i in EDGE_INDEXES:
        assert radix_tree_insert(root, i, Item(i, 1)) == -errno.EEXIST
    # Delete from the top down: the height must shrink step by step.
    for i in sorted(EDGE_INDEXES, reverse=True):
        assert radix_tree_delete(root, i) is ref.items.pop(i)
        check_tree(root, ref)
        assert root.height == expected_height(ref.items)
    assert root.rnode is None


def test_shrink_to_height_zero_keeps_item_and_tags() -> None:
    root = RadixTreeRoot()
    a, b = Item(0), Item(2**32)
    radix_tree_insert(root, 0, a)
    radix_tree_insert(root, 2**32, b)
    radix_tree_tag_set(root, 0, PAGECACHE_TAG_DIRTY)
    radix_tree_tag_set(root, 2**32, PAGECACHE_TAG_WRITEBACK)
    assert root.height == 6
    assert radix_tree_delete(root, 2**32) is b
    assert root.height == 0
    assert root.rnode is a
    assert radix_tree_tagged(root, PAGECACHE_TAG_DIRTY)
    assert not radix_tree_tagged(root, PAGECACHE_TAG_WRITEBACK)
    assert radix_tree_tag_get(root, 0, PAGECACHE_TAG_DIRTY) == 1


def test_no_shrink_when_root_uses_other_slot() -> None:
    root = RadixTreeRoot()
    ref = Ref()
    for i in (64, 4096, 4097):
        ref.items[i] = Item(i)
        radix_tree_insert(root, i, ref.items[i])
    assert root.height == 3
    radix_tree_delete(root, 4096)
    del ref.items[4096]
    check_tree(root, ref)
    assert root.height == 3
    radix_tree_delete(root, 4097)
    del ref.items[4097]
    check_tree(root, ref)
    assert root.height == 2
    radix_tree_delete(root, 64)
    del ref.items[64]
    check_tree(root, ref)
    assert root.height == 0


def test_extend_from_height_zero_and_tags_carried() -> None:
    root = RadixTreeRoot()
    ref = Ref()
    ref.items[0] = Item(0)
    radix_tree_insert(root, 0, ref.items[0])
    assert root.height == 0 and root.rnode is ref.items[0]
    radix_tree_tag_set(root, 0, PAGECACHE_TAG_TOWRITE)
    ref.tags[PAGECACHE_TAG_TOWRITE].add(0)
    ref.items[1 << 40] = Item(1 << 40)
    radix_tree_insert(root, 1 << 40, ref.items[1 << 40])
    check_tree(root, ref)
    assert radix_tree_tag_get(root, 0, PAGECACHE_TAG_TOWRITE) == 1
    assert radix_tree_tag_get(root, 1 << 40, PAGECACHE_TAG_TOWRITE) == 0


def test_insert_rejects_bad_arguments() -> None:
    root = RadixTreeRoot()
    with pytest.raises(ValueError):
        radix_tree_insert(root, 5, None)
    with pytest.raises(ValueError):
        radix_tree_insert(root, -1, Item(-1))
    with pytest.raises(ValueError):
        radix_tree_insert(root, 2**64, Item(2**64))
    assert root.rnode is None and root.height == 0
    assert radix_tree_lookup(root, 2**64) is None


def test_lookup_slot_and_replace() -> None:
    root = RadixTreeRoot()
    a = Item(0)
    radix_tree_insert(root, 0, a)
    slot = radix_tree_lookup_slot(root, 0)
    assert slot is not None and radix_tree_deref_slot(slot) is a and slot.item is a
    a2 = Item(0, 2)
    radix_tree_replace_slot(slot, a2)
    assert radix_tree_lookup(root, 0) is a2
    assert radix_tree_lookup_slot(root, 1) is None

    idx = 3 * 4096 + 7
    b = Item(idx)
    radix_tree_insert(root, idx, b)
    radix_tree_tag_set(root, idx, PAGECACHE_TAG_DIRTY)
    slot = radix_tree_lookup_slot(root, idx)
    assert slot is not None and slot.item is b and slot.index == idx
    b2 = Item(idx, 2)
    radix_tree_replace_slot(slot, b2)
    assert radix_tree_lookup(root, idx) is b2
    assert radix_tree_tag_get(root, idx, PAGECACHE_TAG_DIRTY) == 1
    assert radix_tree_lookup_slot(root, idx + 1) is None
    with pytest.raises(ValueError):
        radix_tree_replace_slot(slot, None)
    assert radix_tree_delete(root, idx) is b2


def test_delete_item_only_matching() -> None:
    root = RadixTreeRoot()
    a = Item(100)
    radix_tree_insert(root, 100, a)
    assert radix_tree_delete_item(root, 100, Item(100, 9)) is None
    assert radix_tree_lookup(root, 100) is a
    assert radix_tree_delete_item(root, 100, a) is a
    assert radix_tree_lookup(root, 100) is None


# --------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------

def test_tags_propagate_and_clear() -> None:
    root = RadixTreeRoot()
    ref = Ref()
    idxs = [1, 2, 70, 4096 * 5 + 3, 2**32 + 1]
    for i in idxs:
        ref.items[i] = Item(i)
        radix_tree_insert(root, i, ref.items[i])
    for t in TAGS:
        assert not radix_tree_tagged(root, t)
    for i in (1, 2, 2**32 + 1):
        assert radix_tree_tag_set(root, i, PAGECACHE_TAG_DIRTY) is ref.items[i]
        ref.tags[PAGECACHE_TAG_DIRTY].add(i)
        check_tree(root, ref)
    assert radix_tree_tagged(root, PAGECACHE_TAG_DIRTY)
    assert not radix_tree_tagged(root, PAGECACHE_TAG_WRITEBACK)
    for i in idxs:
        for t in TAGS:
            assert radix_tree_tag_get(root, i, t) == int(i in ref.tags[t])
    # Clearing one of two tagged slots of a leaf keeps the ancestors tagged.
    assert radix_tree_tag_clear(root, 1, PAGECACHE_TAG_DIRTY) is ref.items[1]
    ref.tags[PAGECACHE_TAG_DIRTY].discard(1)
    check_tree(root, ref)
    assert radix_tree_tag_get(root, 2, PAGECACHE_TAG_DIRTY) == 1
    # Clearing an untagged item / absent index changes nothing.
    assert radix_tree_tag_clear(root, 70, PAGECACHE_TAG_DIRTY) is ref.items[70]
    assert radix_tree_tag_clear(root, 71, PAGECACHE_TAG_DIRTY) is None
    assert radix_tree_tag_clear(root, 2**60, PAGECACHE_TAG_DIRTY) is None
    check_tree(root, ref)
    for i in (2, 2**32 + 1):
        radix_tree_tag_clear(root, i, PAGECACHE_TAG_DIRTY)
        ref.tags[PAGECACHE_TAG_DIRTY].discard(i)
        check_tree(root, ref)
    assert not radix_tree_tagged(root, PAGECACHE_TAG_DIRTY)
    assert root.root_tags == 0


def test_tag_set_on_absent_index_is_a_bug_and_changes_nothing() -> None:
    root = RadixTreeRoot()
    ref = Ref()
    with pytest.raises(RadixTreeBug):
        radix_tree_tag_set(root, 0, PAGECACHE_TAG_DIRTY)
    ref.items[5] = Item(5)
    radix_tree_insert(root, 5, ref.items[5])
    for bad in (4, 6, 64, 2**40):
        with pytest.raises(RadixTreeBug):
            radix_tree_tag_set(root, bad, PAGECACHE_TAG_DIRTY)
    check_tree(root, ref)


def test_delete_clears_tags() -> None:
    root = RadixTreeRoot()
    ref = Ref()
    for i in (10, 11, 5000):
        ref.items[i] = Item(i)
        radix_tree_insert(root, i, ref.items[i])
    for t in TAGS:
        radix_tree_tag_set(root, 10, t)
        ref.tags[t].add(10)
    radix_tree_tag_set(root, 5000, PAGECACHE_TAG_DIRTY)
    ref.tags[PAGECACHE_TAG_DIRTY].add(5000)
    check_tree(root, ref)
    radix_tree_delete(root, 10)
    del ref.items[10]
    for t in TAGS:
        ref.tags[t].discard(10)
    check_tree(root, ref)
    assert radix_tree_tagged(root, PAGECACHE_TAG_DIRTY)
    assert not radix_tree_tagged(root, PAGECACHE_TAG_WRITEBACK)
    # Re-inserting at the deleted index must give an untagged item.
    ref.items[10] = Item(10, 1)
    radix_tree_insert(root, 10, ref.items[10])
    check_tree(root, ref)
    for t in TAGS:
        assert radix_tree_tag_get(root, 10, t) == 0


def test_height_zero_tags() -> None:
    root = RadixTreeRoot()
    a = Item(0)
    radix_tree_insert(root, 0, a)
    assert radix_tree_tag_set(root, 0, PAGECACHE_TAG_WRITEBACK) is a
    assert radix_tree_tag_get(root, 0, PAGECACHE_TAG_WRITEBACK) == 1
    assert radix_tree_tag_get(root, 1, PAGECACHE_TAG_WRITEBACK) == 0
    assert radix_tree_gang_lookup_tag(root, 0, 4, PAGECACHE_TAG_WRITEBACK) == [a]
    assert radix_tree_gang_lookup_tag(root, 0, 4, PAGECACHE_TAG_DIRTY) == []
    assert radix_tree_tag_clear(root, 0, PAGECACHE_TAG_WRITEBACK) is a
    assert root.root_tags == 0
    radix_tree_tag_set(root, 0, PAGECACHE_TAG_DIRTY)
    assert radix_tree_delete(root, 0) is a
    assert root.root_tags == 0


# --------------------------------------------------------------------------
# Gang lookups, iteration, holes
# --------------------------------------------------------------------------

def _build(indexes: list[int]) -> tuple[RadixTreeRoot, Ref]:
    root = RadixTreeRoot()
    ref = Ref()
    for i in indexes:
        ref.items[i] = Item(i)
        assert radix_tree_insert(root, i, ref.items[i]) == 0
    return root, ref


def _expect(ref: Ref, first: int, max_items: int, keys: Optional[set[int]] = None) -> list[Item]:
    src = sorted(ref.items if keys is None else keys)
    return [ref.items[k] for k in src if k >= first][:max(max_items, 0)]


def test_gang_lookup_order_first_and_max() -> None:
    idxs = [0, 1, 5, 63, 64, 65, 127, 128, 4095, 4096, 10000, 2**32, 2**33 + 5,
            2**64 - 64, 2**64 - 2, 2**64 - 1]
    root, ref = _build(idxs)
    for first in [0, 1, 2, 63, 64, 66, 129, 4096, 4097, 2**32, 2**32 + 1,
                  2**64 - 65, 2**64 - 63, 2**64 - 1]:
        for max_items in (0, 1, 2, 3, 7, 100):
            got = radix_tree_gang_lookup(root, first, max_items)
            assert [x for x in got] == _expect(ref, first, max_items), (first, max_items)
            slots = radix_tree_gang_lookup_slot(root, first, max_items)
            assert [s.index for s in slots] == [x.index for x in _expect(ref, first, max_items)]
            assert all(s.item is ref.items[s.index] for s in slots)
    # Paging through in batches, as pagevec_lookup callers do.
    seen: list[Item] = []
    index = 0
    while True:
        batch = radix_tree_gang_lookup(root, index, 3)
        if not batch:
            break
        seen.extend(batch)
        if batch[-1].index == ULONG_MAX:
            break
        index = batch[-1].index + 1
    assert seen == _expect(ref, 0, 1000)


def test_gang_lookup_tag() -> None:
    idxs = list(range(0, 300, 3)) + [4096 * 64 + 1, 2**40, 2**64 - 1]
    root, ref = _build(idxs)
    rng = random.Random(7)
    for i in idxs:
        for t in TAGS:
            if rng.random() < 0.3:
                radix_tree_tag_set(root, i, t)
                ref.tags[t].add(i)
    check_tree(root, ref)
    for t in TAGS:
        for first in (0, 1, 63, 64, 150, 299, 300, 2**40, 2**40 + 1, 2**64 - 1):
            for max_items in (1, 4, 16, 1000):
                got = radix_tree_gang_lookup_tag(root, first, max_items, t)
                assert got == _expect(ref, first, max_items, ref.tags[t])
                slots = radix_tree_gang_lookup_tag_slot(root, first, max_items, t)
                assert [s.item for s in slots] == got
        assert [s.index for s in radix_tree_for_each_tagged(root, 0, t)] == sorted(ref.tags[t])


def test_iteration_helpers() -> None:
    idxs = [3, 64, 65, 4096 * 3, 2**50, 2**64 - 1]
    root, ref = _build(idxs)
    assert [(i, x) for i, x in radix_tree_items(root)] == [(k, ref.items[k]) for k in sorted(idxs)]
    assert [s.index for s in radix_tree_for_each_slot(root, 65)] == [65, 4096 * 3, 2**50, 2**64 - 1]
    assert radix_tree_count(root) == len(idxs)
    # Deleting the current item while iterating is allowed.
    for s in radix_tree_for_each_slot(root, 0):
        assert radix_tree_delete(root, s.index) is ref.items[s.index]
    assert root.rnode is None and root.height == 0


def test_next_chunk() -> None:
    idxs = [2, 3, 200, 4096, 2**64 - 1]
    root, ref = _build(idxs)
    radix_tree_tag_set(root, 200, PAGECACHE_TAG_DIRTY)
    radix_tree_tag_set(root, 2**64 - 1, PAGECACHE_TAG_DIRTY)
    for flags, want in ((0, idxs), (RADIX_TREE_ITER_TAGGED | PAGECACHE_TAG_DIRTY, [200, 2**64 - 1]),
                        (RADIX_TREE_ITER_TAGGED | PAGECACHE_TAG_TOWRITE, [])):
        it = RadixTreeIter(0, 0)
        got = []
        while True:
            slot = radix_tree_next_chunk(root, it, flags)
            if slot is None:
                break
            assert slot.index == it.index
            assert slot.item is ref.items[it.index]
            got.append(it.index)
            it.next_index = (it.index + 1) & ULONG_MAX
        assert got == want


def test_next_and_prev_hole() -> None:
    root, ref = _build(list(range(10, 21)) + [100])
    assert radix_tree_next_hole(root, 10, 100) == 21
    assert radix_tree_next_hole(root, 5, 100) == 5
    assert radix_tree_next_hole(root, 10, 3) == 13
    assert radix_tree_next_hole(root, 15, 0) == 15
    assert radix_tree_next_hole(root, 100, 5) == 101
    assert radix_tree_prev_hole(root, 20, 100) == 9
    assert radix_tree_prev_hole(root, 20, 3) == 17
    assert radix_tree_prev_hole(root, 25, 100) == 25
    assert radix_tree_prev_hole(root, 100, 5) == 99
    # Wrap-around at both ends, as unsigned long arithmetic does.
    root2, _ = _build([0, 1, 2**64 - 2, 2**64 - 1])
    assert radix_tree_next_hole(root2, 2**64 - 2, 10) == 0
    assert radix_tree_prev_hole(root2, 1, 10) == ULONG_MAX
    assert radix_tree_next_hole(root2, 2**64 - 3, 10) == 2**64 - 3


def test_range_tag_if_tagged_like_tag_pages_for_writeback() -> None:
    idxs = list(range(0, 200)) + list(range(5000, 5100)) + [2**33, 2**64 - 1]
    root, ref = _build(idxs)
    dirty = {i for i in idxs if i % 3 == 0 or i > 4000}
    for i in dirty:
        radix_tree_tag_set(root, i, PAGECACHE_TAG_DIRTY)
        ref.tags[PAGECACHE_TAG_DIRTY].add(i)
    check_tree(root, ref)
    start, end = 50, 5050
    expect = sorted(i for i in dirty if start <= i <= end)
    first = [start]
    calls = 0
    total = 0
    while True:  # mm/page-writeback.c:tag_pages_for_writeback()
        tagged = radix_tree_range_tag_if_tagged(root, first, end, 16,
                                                PAGECACHE_TAG_DIRTY, PAGECACHE_TAG_TOWRITE)
        calls += 1
        total += tagged
        if not (tagged >= 16 and first[0]):
            break
    assert total == len(expect)
    assert calls == len(expect) // 16 + 1
    ref.tags[PAGECACHE_TAG_TOWRITE] = set(expect)
    check_tree(root, ref)
    assert radix_tree_gang_lookup_tag(root, 0, 10**6, PAGECACHE_TAG_TOWRITE) == \
        [ref.items[i] for i in expect]
    # Whole range including ULONG_MAX.
    n = radix_tree_range_tag_if_tagged(root, 0, ULONG_MAX, 10**6,
                                       PAGECACHE_TAG_DIRTY, PAGECACHE_TAG_WRITEBACK)
    assert n == len(dirty)
    ref.tags[PAGECACHE_TAG_WRITEBACK] = set(dirty)
    check_tree(root, ref)


def test_range_tag_if_tagged_edge_cases() -> None:
    root = RadixTreeRoot()
    first = [0]
    assert radix_tree_range_tag_if_tagged(root, first, 100, 10, 0, 2) == 0
    a = Item(0)
    radix_tree_insert(root, 0, a)
    assert radix_tree_range_tag_if_tagged(root, first, 100, 10, 0, 2) == 0
    assert first == [1]
    radix_tree_tag_set(root, 0, 0)
    first = [0]
    assert radix_tree_range_tag_if_tagged(root, first, 100, 0, 0, 2) == 0
    assert radix_tree_tag_get(root, 0, 2) == 0
    assert radix_tree_range_tag_if_tagged(root, first, 100, 10, 0, 2) == 1
    assert radix_tree_tag_get(root, 0, 2) == 1
    assert first == [1]


# --------------------------------------------------------------------------
# Randomised comparison against the reference model
# --------------------------------------------------------------------------

BOUNDARY_POOL = sorted({
    0, 1, 2, 62, 63, 64, 65, 127, 128, 4094, 4095, 4096, 4097, 2**18 - 1, 2**18,
    2**24, 2**30 - 1, 2**30, 2**32 - 1, 2**32, 2**32 + 1, 2**36, 2**48 + 7,
    2**60 - 1, 2**60, 2**61 + 3, 15 << 60, 2**64 - 65, 2**64 - 64, 2**64 - 2, 2**64 - 1,
})


def random_index(rng: random.Random, ref: Ref) -> int:
    r = rng.random()
    if r < 0.25 and ref.items:
        return rng.choice(list(ref.items))
    if r < 0.55:
        return rng.randrange(0, 300)
    if r < 0.7:
        return rng.randrange(4000, 4200)
    if r < 0.85:
        return rng.choice(BOUNDARY_POOL)
    if r < 0.93:
        return rng.choice(BOUNDARY_POOL) + rng.randrange(-3, 4) & ULONG_MAX
    return rng.randrange(0, 2**64)


def ref_next_hole(ref: Ref, index: int, max_scan: int) -> int:
    for _ in range(max_scan):
        if index not in ref.items:
            return index
        index = (index + 1) % 2**64
        if index == 0:
            return 0
    return index


def ref_prev_hole(ref: Ref, index: int, max_scan: int) -> int:
    for _ in range(max_scan):
        if index not in ref.items:
            return index
        index = (index - 1) % 2**64
        if index == ULONG_MAX:
            return index
    return index


def ref_maxindex(ref: Ref) -> int:
    return min((1 << (RADIX_TREE_MAP_SHIFT * expected_height(ref.items))) - 1, ULONG_MAX)


def do_random_op(rng: random.Random, root: RadixTreeRoot, ref: Ref, gen: int) -> None:
    op = rng.random()
    index = random_index(rng, ref)
    tag = rng.randrange(RADIX_TREE_MAX_TAGS)
    if op < 0.28:
        item = Item(index, gen)
        ret = radix_tree_insert(root, index, item)
        if index in ref.items:
            assert ret == -errno.EEXIST
        else:
            assert ret == 0
            ref.items[index] = item
    elif op < 0.45:
        got = radix_tree_delete(root, index)
        assert got is ref.items.pop(index, None)
        for t in range(RADIX_TREE_MAX_TAGS):
            ref.tags[t].discard(index)
    elif op < 0.60:
        if index in ref.items:
            assert radix_tree_tag_set(root, index, tag) is ref.items[index]
            ref.tags[tag].add(index)
        else:
            with pytest.raises(RadixTreeBug):
                radix_tree_tag_set(root, index, tag)
    elif op < 0.70:
        assert radix_tree_tag_clear(root, index, tag) is ref.items.get(index)
        ref.tags[tag].discard(index)
    elif op < 0.74:
        slot = radix_tree_lookup_slot(root, index)
        if index not in ref.items:
            assert slot is None
        else:
            assert slot is not None and radix_tree_deref_slot(slot) is ref.items[index]
            new = Item(index, gen)
            radix_tree_replace_slot(slot, new)
            ref.items[index] = new
    elif op < 0.80:
        max_items = rng.choice([1, 2, 5, 17, 70, 1000])
        assert radix_tree_gang_lookup(root, index, max_items) == _expect(ref, index, max_items)
    elif op < 0.85:
        max_items = rng.choice([1, 2, 5, 17, 70, 1000])
        assert radix_tree_gang_lookup_tag(root, index, max_items, tag) == \
            _expect(ref, index, max_items, ref.tags[tag])
    elif op < 0.88:
        n = rng.choice([0, 1, 3, 10, 100])
        assert radix_tree_next_hole(root, index, n) == ref_next_hole(ref, index, n)
        assert radix_tree_prev_hole(root, index, n) == ref_prev_hole(ref, index, n)
    elif op < 0.92:
        last = rng.choice([index, index + rng.randrange(0, 500), ULONG_MAX,
                           random_index(rng, ref)])
        last = min(last, ULONG_MAX)
        nr = rng.choice([0, 1, 2, 16, 10**6])
        iftag, settag = rng.randrange(3), rng.randrange(3)
        capped = min(last, ref_maxindex(ref))
        cands = sorted(i for i in ref.tags[iftag] if index <= i <= capped)
        want = cands[:nr]
        first = [index]
        got = radix_tree_range_tag_if_tagged(root, first, last, nr, iftag, settag)
        assert got == len(want)
        ref.tags[settag].update(want)
        if index > capped or nr == 0:
            assert first == [index]
        elif want and len(want) == nr:
            assert first[0] == (want[-1] + 1) % 2**64
        else:
            assert first[0] == 0 or first[0] > capped
    else:
        # Pure queries.
        assert radix_tree_lookup(root, index) is ref.items.get(index)
        for t in range(RADIX_TREE_MAX_TAGS):
            assert radix_tree_tag_get(root, index, t) == int(index in ref.tags[t])
            assert bool(radix_tree_tagged(root, t)) == bool(ref.tags[t])
        assert radix_tree_count(root) == len(ref.items)


@pytest.mark.parametrize("seed", range(6))
def test_random_against_reference_model(seed: int) -> None:
    rng = random.Random(seed)
    root = RadixTreeRoot()
    ref = Ref()
    for step in range(4000):
        do_random_op(rng, root, ref, step)
        if step % 10 == 0 or len(ref.items) < 8:
            check_tree(root, ref)
        # Occasionally drain most of the tree to exercise shrinking.
        if rng.random() < 0.004:
            for k in list(ref.items):
                if rng.random() < 0.9:
                    assert radix_tree_delete(root, k) is ref.items.pop(k)
                    for t in range(RADIX_TREE_MAX_TAGS):
                        ref.tags[t].discard(k)
                    if len(ref.items) < 6:
                        check_tree(root, ref)
            check_tree(root, ref)
    check_tree(root, ref)
    assert [i for i, _ in radix_tree_items(root)] == ref.sorted_keys()


try:
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
except ImportError:  # pragma: no cover
    pass
else:
    indexes = st.one_of(
        st.integers(0, 130),
        st.sampled_from(BOUNDARY_POOL),
        st.integers(0, ULONG_MAX),
    )
    tags = st.integers(0, RADIX_TREE_MAX_TAGS - 1)

    class RadixTreeMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.root = RadixTreeRoot()
            self.ref = Ref()
            self.gen = 0

        def _pick(self, data: st.DataObject, index: int) -> int:
            use_existing: bool = bool(self.ref.items) and data.draw(st.booleans())
            if use_existing:
                return data.draw(st.sampled_from(sorted(self.ref.items)))
            return index

        @rule(index=indexes)
        def insert(self, index: int) -> None:
            self.gen += 1
            item = Item(index, self.gen)
            ret = radix_tree_insert(self.root, index, item)
            if index in self.ref.items:
                assert ret == -errno.EEXIST
            else:
                assert ret == 0
                self.ref.items[index] = item

        @rule(data=st.data(), index=indexes)
        def delete(self, data: st.DataObject, index: int) -> None:
            index = self._pick(data, index)
            assert radix_tree_delete(self.root, index) is self.ref.items.pop(index, None)
            for t in range(RADIX_TREE_MAX_TAGS):
                self.ref.tags[t].discard(index)

        @rule(data=st.data(), index=indexes, tag=tags)
        def tag_set(self, data: st.DataObject, index: int, tag: int) -> None:
            index = self._pick(data, index)
            if index in self.ref.items:
                assert radix_tree_tag_set(self.root, index, tag) is self.ref.items[index]
                self.ref.tags[tag].add(index)
            else:
                with pytest.raises(RadixTreeBug):
                    radix_tree_tag_set(self.root, index, tag)

        @rule(data=st.data(), index=indexes, tag=tags)
        def tag_clear(self, data: st.DataObject, index: int, tag: int) -> None:
            index = self._pick(data, index)
            assert radix_tree_tag_clear(self.root, index, tag) is self.ref.items.get(index)
            self.ref.tags[tag].discard(index)

        @rule(index=indexes, max_items=st.integers(0, 80))
        def gang_lookup(self, index: int, max_items: int) -> None:
            assert radix_tree_gang_lookup(self.root, index, max_items) == \
                _expect(self.ref, index, max_items)

        @rule(index=indexes, max_items=st.integers(0, 80), tag=tags)
        def gang_lookup_tag(self, index: int, max_items: int, tag: int) -> None:
            assert radix_tree_gang_lookup_tag(self.root, index, max_items, tag) == \
                _expect(self.ref, index, max_items, self.ref.tags[tag])

        @rule(data=st.data(), index=indexes, n=st.integers(0, 70))
        def holes(self, data: st.DataObject, index: int, n: int) -> None:
            index = self._pick(data, index)
            assert radix_tree_next_hole(self.root, index, n) == ref_next_hole(self.ref, index, n)
            assert radix_tree_prev_hole(self.root, index, n) == ref_prev_hole(self.ref, index, n)

        @rule(first=indexes, last=indexes, nr=st.integers(0, 5), iftag=tags, settag=tags)
        def range_tag(self, first: int, last: int, nr: int, iftag: int, settag: int) -> None:
            capped = min(last, ref_maxindex(self.ref))
            want = sorted(i for i in self.ref.tags[iftag] if first <= i <= capped)[:nr]
            assert radix_tree_range_tag_if_tagged(
                self.root, first, last, nr, iftag, settag) == len(want)
            self.ref.tags[settag].update(want)

        @invariant()
        def consistent(self) -> None:
            check_tree(self.root, self.ref)
            for k, v in self.ref.items.items():
                assert radix_tree_lookup(self.root, k) is v
                for t in range(RADIX_TREE_MAX_TAGS):
                    assert radix_tree_tag_get(self.root, k, t) == int(k in self.ref.tags[t])

    RadixTreeMachine.TestCase.settings = settings(
        max_examples=150, stateful_step_count=60, deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    TestRadixTreeHypothesis = RadixTreeMachine.TestCase
