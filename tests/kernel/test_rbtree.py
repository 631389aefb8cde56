"""lib/rbtree.c model: random insert/erase against a sorted-list reference.

The checks here are written independently of mmuemu.kernel.rbtree.rb_verify:
red root, red-red pairs, black heights, parent links, BST order, augmented
values recomputed from scratch, and in-order / reverse iteration.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmuemu.kernel.rbtree import (
    RB_BLACK, RB_CLEAR_NODE, RB_EMPTY_NODE, RB_EMPTY_ROOT, RB_RED, RbAugmentCallbacks, RbNode,
    RbRoot, RbRootCached, RbTreeError, rb_declare_callbacks, rb_declare_callbacks_max,
    rb_erase, rb_erase_augmented, rb_erase_cached, rb_first, rb_first_cached,
    rb_first_postorder, rb_insert_augmented, rb_insert_color, rb_insert_color_cached, rb_iter,
    rb_last, rb_link_node, rb_next, rb_next_postorder, rb_prev, rb_replace_node, rb_verify,
)


@dataclass(eq=False)
class Item:
    """A container with an embedded node and two augmented fields."""

    key: int
    val: int
    seq: int
    rb: RbNode["Item"] = field(init=False, repr=False)
    subtree_max: int = 0  # max of val over the subtree (RB_DECLARE_CALLBACKS_MAX)
    subtree_size: int = 0  # node count of the subtree (RB_DECLARE_CALLBACKS)

    def __post_init__(self) -> None:
        self.rb = RbNode(self)


def _size_compute(rb: RbNode[Item], exit: bool) -> bool:
    size = 1
    if rb.left is not None:
        size += rb.left.owner.subtree_size
    if rb.right is not None:
        size += rb.right.owner.subtree_size
    if exit and rb.owner.subtree_size == size:
        return True
    rb.owner.subtree_size = size
    return False


MAX_CB: RbAugmentCallbacks[Item] = rb_declare_callbacks_max(lambda it: it.val, "subtree_max")
SIZE_CB: RbAugmentCallbacks[Item] = rb_declare_callbacks(_size_compute, "subtree_size")


def _both(*cbs: RbAugmentCallbacks[Item]) -> RbAugmentCallbacks[Item]:
    """One set of callbacks maintaining several augmented fields."""

    def propagate(node: Optional[RbNode[Item]], stop: Optional[RbNode[Item]]) -> None:
        for cb in cbs:
            cb.propagate(node, stop)

    def copy(old: RbNode[Item], new: RbNode[Item]) -> None:
        for cb in cbs:
            cb.copy(old, new)

    def rotate(old: RbNode[Item], new: RbNode[Item]) -> None:
        for cb in cbs:
            cb.rotate(old, new)

    return RbAugmentCallbacks(propagate, copy, rotate)


AUG = _both(MAX_CB, SIZE_CB)


def insert(root: RbRoot[Item], item: Item, augmented: bool) -> None:
    """Caller-side descent as in C: equal keys go right (after existing ones)."""
    link = root.rb_node
    parent: Optional[RbNode[Item]] = None
    left = False
    while link is not None:
        parent = link
        if augmented:  # bring the path's augmented values up to date on the way down
            p = link.owner
            p.subtree_max = max(p.subtree_max, item.val)
            p.subtree_size += 1
        if item.key < link.owner.key:
            link, left = link.left, True
        else:
            link, left = link.right, False
    rb_link_node(item.rb, parent, left, root)
    if augmented:
        item.subtree_max = item.val
        item.subtree_size = 1
        rb_insert_augmented(item.rb, root, AUG)
    else:
        rb_insert_color(item.rb, root)


def check_tree(root: RbRoot[Item], ref: list[Item], augmented: bool) -> None:
    """Independent checker: raises AssertionError on any violated property."""
    top = root.rb_node
    if not ref:
        assert top is None and RB_EMPTY_ROOT(root)
        return
    assert top is not None and top.parent is None
    assert top.color == RB_BLACK, "root is red"

    heights: set[int] = set()
    # (node, black nodes above, lower bound key, upper bound key)
    stack: list[tuple[RbNode[Item], int]] = [(top, 0)]
    count = 0
    while stack:
        n, above = stack.pop()
        count += 1
        assert n.color in (RB_RED, RB_BLACK)
        here = above + (n.color == RB_BLACK)
        for child, is_left in ((n.left, True), (n.right, False)):
            if child is None:
                heights.add(here)
                continue
            assert child.parent is n, "bad parent pointer"
            assert not (n.color == RB_RED and child.color == RB_RED), "red-red"
            if is_left:
                assert child.owner.key <= n.owner.key
            else:
                assert child.owner.key >= n.owner.key
            stack.append((child, here))
    assert len(heights) == 1, f"unequal black heights {heights}"
    assert count == len(ref)

    # In-order equals the reference (stable for equal keys), both directions.
    order = list(rb_iter(root))
    assert [id(x) for x in order] == [id(x) for x in ref]
    back = []
    nd = rb_last(root)
    while nd is not None:
        back.append(nd.owner)
        nd = rb_prev(nd)
    assert [id(x) for x in back] == [id(x) for x in reversed(ref)]
    first = rb_first(root)
    assert first is not None and first.owner is ref[0]

    if augmented:
        # Recompute both augmented values bottom-up from scratch (post-order).
        post: list[RbNode[Item]] = []
        walk = [top]
        while walk:
            n = walk.pop()
            post.append(n)
            walk.extend(c for c in (n.left, n.right) if c is not None)
        want_max: dict[int, int] = {}
        want_size: dict[int, int] = {}
        for n in reversed(post):
            kids = [c for c in (n.left, n.right) if c is not None]
            want_max[id(n)] = max([n.owner.val] + [want_max[id(c)] for c in kids])
            want_size[id(n)] = 1 + sum(want_size[id(c)] for c in kids)
            assert n.owner.subtree_max == want_max[id(n)], f"subtree_max of {n.owner}"
            assert n.owner.subtree_size == want_size[id(n)], f"subtree_size of {n.owner}"


def run_ops(rng: random.Random, nops: int, keyspace: int, augmented: bool,
            check_every: int = 1) -> None:
    root: RbRoot[Item] = RbRoot()
    ref: list[Item] = []
    keys: list[int] = []
    seq = 0
    for i in range(nops):
        if ref and rng.random() < 0.45:
            j = rng.randrange(len(ref))
            item = ref.pop(j)
            keys.pop(j)
            if augmented:
                rb_erase_augmented(item.rb, root, AUG)
            else:
                rb_erase(item.rb, root)
        else:
            item = Item(rng.randrange(keyspace), rng.randrange(1 << 20), seq)
            seq += 1
            insert(root, item, augmented)
            j = bisect.bisect_right(keys, item.key)
            keys.insert(j, item.key)
            ref.insert(j, item)
        if i % check_every == 0:
            check_tree(root, ref, augmented)
    check_tree(root, ref, augmented)
    assert rb_verify(root, lambda a, b: a.key < b.key) == len(ref)


@pytest.mark.parametrize("augmented", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rb_insert_erase_random_small_trees(seed: int, augmented: bool) -> None:
    run_ops(random.Random(seed), 2000, keyspace=64, augmented=augmented)


@pytest.mark.parametrize("augmented", [False, True])
def test_rb_insert_erase_random_large_tree(augmented: bool) -> None:
    rng = random.Random(99)
    run_ops(rng, 6000, keyspace=1 << 30, augmented=augmented, check_every=250)


def test_rb_ascending_then_descending_erase_keeps_balance() -> None:
    """Sorted insertion is the classic worst case for an unbalanced BST."""
    root: RbRoot[Item] = RbRoot()
    items = [Item(k, k, k) for k in range(4096)]
    for it in items:
        insert(root, it, augmented=True)
    check_tree(root, items, augmented=True)
    depth = 0
    nd = rb_first(root)
    while nd is not None:
        d, up = 0, nd
        while up.parent is not None:
            d, up = d + 1, up.parent
        depth = max(depth, d)
        nd = rb_next(nd)
    assert depth <= 2 * 12  # 2*log2(n+1)
    for it in reversed(items[::2]):
        rb_erase_augmented(it.rb, root, AUG)
    check_tree(root, items[1::2], augmented=True)


OPS = st.lists(st.tuples(st.booleans(), st.integers(0, 40), st.integers(0, 1000)),
               min_size=1, max_size=120)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_rb_hypothesis_augmented(ops: list[tuple[bool, int, int]]) -> None:
    root: RbRoot[Item] = RbRoot()
    ref: list[Item] = []
    for seq, (do_insert, key, val) in enumerate(ops):
        if do_insert or not ref:
            item = Item(key, val, seq)
            insert(root, item, augmented=True)
            j = bisect.bisect_right([x.key for x in ref], key)
            ref.insert(j, item)
        else:
            victim = ref.pop(key % len(ref))
            rb_erase_augmented(victim.rb, root, AUG)
        check_tree(root, ref, augmented=True)


def test_rb_cached_leftmost_tracks_first() -> None:
    rng = random.Random(5)
    root: RbRootCached[Item] = RbRootCached()
    live: list[Item] = []
    for seq in range(1500):
        if live and rng.random() < 0.4:
            victim = live.pop(rng.randrange(len(live)))
            rb_erase_cached(victim.rb, root)
        else:
            item = Item(rng.randrange(200), 0, seq)
            link, parent, left, leftmost = root.rb_root.rb_node, None, False, True
            while link is not None:
                parent = link
                if item.key < link.owner.key:
                    link, left = link.left, True
                else:
                    link, left, leftmost = link.right, False, False
            rb_link_node(item.rb, parent, left, root.rb_root)
            rb_insert_color_cached(item.rb, root, leftmost)
            live.append(item)
        first = rb_first(root.rb_root)
        assert rb_first_cached(root) is first
        if live:
            assert first is not None and first.owner.key == min(x.key for x in live)


def test_rb_postorder_visits_children_first() -> None:
    root: RbRoot[Item] = RbRoot()
    items = [Item(k, 0, k) for k in random.Random(3).sample(range(1000), 300)]
    for it in items:
        insert(root, it, augmented=False)
    seen: set[int] = set()
    nd = rb_first_postorder(root)
    while nd is not None:
        for child in (nd.left, nd.right):
            assert child is None or id(child) in seen
        seen.add(id(nd))
        nd = rb_next_postorder(nd)
    assert len(seen) == 300


def test_rb_replace_node_and_clear_node() -> None:
    root: RbRoot[Item] = RbRoot()
    items = [Item(k, 0, k) for k in range(50)]
    for it in items:
        insert(root, it, augmented=False)
    twin = Item(25, 0, 999)
    assert RB_EMPTY_NODE(twin.rb) and rb_next(twin.rb) is None
    rb_replace_node(items[25].rb, twin.rb, root)
    items[25] = twin
    check_tree(root, items, augmented=False)
    rb_erase(twin.rb, root)
    RB_CLEAR_NODE(twin.rb)
    assert RB_EMPTY_NODE(twin.rb)
    check_tree(root, items[:25] + items[26:], augmented=False)


def _corrupt(mutate: Callable[[RbRoot[Item], list[Item]], None]) -> RbRoot[Item]:
    root: RbRoot[Item] = RbRoot()
    items = [Item(k, 0, k) for k in range(64)]
    for it in items:
        insert(root, it, augmented=False)
    mutate(root, items)
    return root


def _red_root(root: RbRoot[Item], items: list[Item]) -> None:
    assert root.rb_node is not None
    root.rb_node.color = RB_RED


def _red_red(root: RbRoot[Item], items: list[Item]) -> None:
    for it in items:
        n = it.rb
        if n.color == RB_RED and n.left is not None:
            n.left.color = RB_RED
            return
        if n.color == RB_RED and n.right is not None:
            n.right.color = RB_RED
            return
    raise AssertionError("no red node with children")


def _black_height(root: RbRoot[Item], items: list[Item]) -> None:
    for it in items:
        if it.rb.color == RB_RED and it.rb.left is None and it.rb.right is None:
            it.rb.color = RB_BLACK
            return
    raise AssertionError("no red leaf")


def _bad_order(root: RbRoot[Item], items: list[Item]) -> None:
    items[10].key = 1000


def _bad_parent(root: RbRoot[Item], items: list[Item]) -> None:
    for it in items:
        if it.rb.left is not None:
            it.rb.left.parent = None
            return


@pytest.mark.parametrize("mutate,message", [
    (_red_root, "is red"), (_red_red, "red child"), (_black_height, "black height"),
    (_bad_order, "sorts before"), (_bad_parent, "parent"),
])
def test_rb_verify_detects_corruption(mutate: Callable[[RbRoot[Item], list[Item]], None],
                                      message: str) -> None:
    root = _corrupt(mutate)
    with pytest.raises(RbTreeError, match=message):
        rb_verify(root, lambda a, b: a.key < b.key)
