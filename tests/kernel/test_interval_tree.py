"""include/linux/interval_tree_generic.h model and its two mm instances
(i_mmap's vma_interval_tree, anon_vma's anon_vma_interval_tree): every query
against brute-force overlap filtering of a plain list.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmuemu.kernel.interval_tree import (
    IntervalTree, IntervalTreeError, anon_vma_interval_tree_foreach,
    anon_vma_interval_tree_insert, anon_vma_interval_tree_iter_first,
    anon_vma_interval_tree_iter_next, anon_vma_interval_tree_remove,
    anon_vma_interval_tree_verify, anon_vma_interval_tree_verify_root,
    vma_interval_tree_foreach, vma_interval_tree_insert, vma_interval_tree_insert_after,
    vma_interval_tree_iter_first, vma_interval_tree_iter_next, vma_interval_tree_remove,
    vma_interval_tree_verify,
)
from mmuemu.kernel.rbtree import RB_BLACK, RbNode, RbRootCached

PAGE = 4096


@dataclass(eq=False)
class Span:
    """A generic interval-tree node: [start, last], closed."""

    start: int
    last: int
    rb: RbNode["Span"] = field(init=False, repr=False)
    subtree_last: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.rb = RbNode(self)


SPANS: IntervalTree[Span] = IntervalTree("span_tree", "rb", "subtree_last",
                                         lambda s: s.start, lambda s: s.last)


def check_subtree_last_from_scratch(root: RbRootCached[Span]) -> None:
    """Independent of IntervalTree.verify: post-order recomputation."""
    top = root.rb_root.rb_node
    if top is None:
        assert root.rb_leftmost is None
        return
    assert top.color == RB_BLACK
    post: list[RbNode[Span]] = []
    walk = [top]
    while walk:
        n = walk.pop()
        post.append(n)
        walk.extend(c for c in (n.left, n.right) if c is not None)
    want: dict[int, int] = {}
    for n in reversed(post):
        want[id(n)] = max([n.owner.last] + [want[id(c)] for c in (n.left, n.right) if c])
        assert n.owner.subtree_last == want[id(n)]
        if n.left is not None:
            assert n.left.owner.start <= n.owner.start
        if n.right is not None:
            assert n.right.owner.start >= n.owner.start
    leftmost = top
    while leftmost.left is not None:
        leftmost = leftmost.left
    assert root.rb_leftmost is leftmost


def brute(ref: list[Span], start: int, last: int) -> list[Span]:
    return [s for s in ref if s.start <= last and start <= s.last]


def check_queries(root: RbRootCached[Span], ref: list[Span], rng: random.Random,
                  space: int, n: int) -> None:
    for _ in range(n):
        a = rng.randrange(-2, space + 2)
        b = a + rng.choice([0, 0, 1, 3, 10, 50, space])
        want = brute(ref, a, b)
        got = list(SPANS.foreach(root, a, b))
        assert [id(x) for x in got] == [id(x) for x in want], (a, b)
        first = SPANS.iter_first(root, a, b)
        assert first is (want[0] if want else None)
        if len(want) > 1:
            assert SPANS.iter_next(want[0], a, b) is want[1]


def run(rng: random.Random, nops: int, space: int, maxlen: int, check_every: int) -> None:
    root: RbRootCached[Span] = RbRootCached()
    ref: list[Span] = []  # ordered by start, equal starts in insertion order
    for i in range(nops):
        if ref and rng.random() < 0.4:
            victim = ref.pop(rng.randrange(len(ref)))
            SPANS.remove(victim, root)
        else:
            start = rng.randrange(space)
            span = Span(start, start + rng.randrange(maxlen))
            SPANS.insert(span, root)
            ref.insert(bisect.bisect_right([s.start for s in ref], start), span)
        if i % check_every == 0:
            check_subtree_last_from_scratch(root)
            assert SPANS.verify(root) == len(ref)
            check_queries(root, ref, rng, space, 8)
    check_subtree_last_from_scratch(root)
    check_queries(root, ref, rng, space, 300)


@pytest.mark.parametrize("seed,space,maxlen", [(1, 50, 5), (2, 500, 100), (3, 10_000, 30),
                                               (4, 1 << 40, 1 << 38)])
def test_interval_tree_random_against_brute_force(seed: int, space: int, maxlen: int) -> None:
    run(random.Random(seed), 2500, space, maxlen, check_every=5)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30), st.integers(0, 12)),
                min_size=1, max_size=80),
       st.lists(st.tuples(st.integers(-2, 45), st.integers(0, 20)), min_size=1, max_size=10))
def test_interval_tree_hypothesis(ops: list[tuple[bool, int, int]],
                                  queries: list[tuple[int, int]]) -> None:
    root: RbRootCached[Span] = RbRootCached()
    ref: list[Span] = []
    for do_insert, a, n in ops:
        if do_insert or not ref:
            span = Span(a, a + n)
            SPANS.insert(span, root)
            ref.insert(bisect.bisect_right([s.start for s in ref], a), span)
        else:
            SPANS.remove(ref.pop(a % len(ref)), root)
        check_subtree_last_from_scratch(root)
    for a, n in queries:
        got = list(SPANS.foreach(root, a, a + n))
        assert [id(x) for x in got] == [id(x) for x in brute(ref, a, a + n)]


def test_interval_tree_refuses_double_insert_and_stray_remove() -> None:
    root: RbRootCached[Span] = RbRootCached()
    span = Span(1, 2)
    with pytest.raises(IntervalTreeError, match="in no tree"):
        SPANS.remove(span, root)
    SPANS.insert(span, root)
    with pytest.raises(IntervalTreeError, match="already in a tree"):
        SPANS.insert(span, root)
    SPANS.remove(span, root)
    SPANS.insert(span, root)  # cleared by remove: can go back in
    assert list(SPANS.foreach(root, 0, 10)) == [span]


def test_interval_tree_verify_catches_stale_subtree_last() -> None:
    root: RbRootCached[Span] = RbRootCached()
    spans = [Span(i, i + 3) for i in range(0, 100, 2)]
    for s in spans:
        SPANS.insert(s, root)
    assert SPANS.verify(root) == 50
    spans[10].last += 100  # changed behind the tree's back
    with pytest.raises(IntervalTreeError, match="subtree_last"):
        SPANS.verify(root)


# --- the mm instances -------------------------------------------------------------------------


@dataclass(eq=False)
class Vma:
    vm_start: int
    vm_end: int
    vm_pgoff: int
    shared_rb: RbNode["Vma"] = field(init=False, repr=False)
    shared_rb_subtree_last: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.shared_rb = RbNode(self)

    @property
    def pages(self) -> int:
        return (self.vm_end - self.vm_start) // PAGE


@dataclass(eq=False)
class Avc:
    vma: Vma
    rb: RbNode["Avc"] = field(init=False, repr=False)
    rb_subtree_last: int = field(default=0, repr=False)
    cached_vma_start: int = field(default=0, repr=False)
    cached_vma_last: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.rb = RbNode(self)


def random_vma(rng: random.Random) -> Vma:
    start = rng.randrange(1 << 20) * PAGE
    pages = rng.randrange(1, 40)
    return Vma(start, start + pages * PAGE, rng.randrange(200))


def maps(v: Vma, first: int, last: int) -> bool:
    return v.vm_pgoff <= last and first <= v.vm_pgoff + v.pages - 1


def test_vma_interval_tree_i_mmap_queries() -> None:
    """address_space->i_mmap: which VMAs map file pages [first, last]."""
    rng = random.Random(7)
    i_mmap: RbRootCached[Vma] = RbRootCached()
    ref: list[Vma] = []
    for step in range(1500):
        if ref and rng.random() < 0.35:
            v = ref.pop(rng.randrange(len(ref)))
            vma_interval_tree_remove(v, i_mmap)
        else:
            v = random_vma(rng)
            vma_interval_tree_insert(v, i_mmap)
            ref.insert(bisect.bisect_right([x.vm_pgoff for x in ref], v.vm_pgoff), v)
        if step % 10 == 0:
            assert vma_interval_tree_verify(i_mmap) == len(ref)
            for _ in range(5):
                pgoff = rng.randrange(250)
                want = [x for x in ref if maps(x, pgoff, pgoff)]
                got = list(vma_interval_tree_foreach(i_mmap, pgoff, pgoff))
                assert [id(x) for x in got] == [id(x) for x in want]
                a = rng.randrange(250)
                b = a + rng.randrange(30)
                want = [x for x in ref if maps(x, a, b)]
                first = vma_interval_tree_iter_first(i_mmap, a, b)
                seen = []
                while first is not None:
                    seen.append(first)
                    first = vma_interval_tree_iter_next(first, a, b)
                assert [id(x) for x in seen] == [id(x) for x in want]


def test_vma_interval_tree_insert_after_is_dup_mmap_order() -> None:
    """fork: the child's copy goes right after the parent's VMA."""
    rng = random.Random(8)
    i_mmap: RbRootCached[Vma] = RbRootCached()
    parents = [random_vma(rng) for _ in range(200)]
    for v in parents:
        vma_interval_tree_insert(v, i_mmap)
    order = list(vma_interval_tree_foreach(i_mmap, 0, 1 << 30))
    children = {}
    for v in rng.sample(parents, 120):
        child = Vma(v.vm_start, v.vm_end, v.vm_pgoff)
        vma_interval_tree_insert_after(child, v, i_mmap)
        children[id(v)] = child
    assert vma_interval_tree_verify(i_mmap) == 320
    got = list(vma_interval_tree_foreach(i_mmap, 0, 1 << 30))
    want = []
    for v in order:
        want.append(v)
        if id(v) in children:
            want.append(children[id(v)])
    assert [id(x) for x in got] == [id(x) for x in want]
    odd = Vma(0, 4 * PAGE, order[0].vm_pgoff + 1)
    with pytest.raises(IntervalTreeError, match="not a copy"):
        vma_interval_tree_insert_after(odd, order[0], i_mmap)


def test_anon_vma_interval_tree_queries_and_verify() -> None:
    """anon_vma->rb_root: which chains' VMAs may map a page at pgoff."""
    rng = random.Random(9)
    root: RbRootCached[Avc] = RbRootCached()
    ref: list[Avc] = []
    for step in range(1200):
        if ref and rng.random() < 0.35:
            avc = ref.pop(rng.randrange(len(ref)))
            anon_vma_interval_tree_remove(avc, root)
        else:
            avc = Avc(random_vma(rng))
            anon_vma_interval_tree_insert(avc, root)
            ref.insert(bisect.bisect_right([x.vma.vm_pgoff for x in ref], avc.vma.vm_pgoff),
                       avc)
        if step % 10 == 0:
            assert anon_vma_interval_tree_verify_root(root) == len(ref)
            for avc in ref:
                anon_vma_interval_tree_verify(avc)
            pgoff = rng.randrange(250)
            want = [x for x in ref if maps(x.vma, pgoff, pgoff)]
            got = list(anon_vma_interval_tree_foreach(root, pgoff, pgoff))
            assert [id(x) for x in got] == [id(x) for x in want]
            first: Optional[Avc] = anon_vma_interval_tree_iter_first(root, pgoff, pgoff + 5)
            want = [x for x in ref if maps(x.vma, pgoff, pgoff + 5)]
            seen = []
            while first is not None:
                seen.append(first)
                first = anon_vma_interval_tree_iter_next(first, pgoff, pgoff + 5)
            assert [id(x) for x in seen] == [id(x) for x in want]


def test_anon_vma_interval_tree_verify_catches_unbracketed_vma_change() -> None:
    """Changing vm_start/vm_pgoff without pre/post_update_vma is caught."""
    root: RbRootCached[Avc] = RbRootCached()
    avc = Avc(Vma(0x10000, 0x20000, 16))
    anon_vma_interval_tree_insert(avc, root)
    anon_vma_interval_tree_verify(avc)
    avc.vma.vm_end += PAGE  # e.g. vma_merge() growing prev behind the tree's back
    with pytest.raises(IntervalTreeError, match="pre/post_update_vma"):
        anon_vma_interval_tree_verify(avc)
    # the bracketed way
    avc.vma.vm_end -= PAGE
    anon_vma_interval_tree_remove(avc, root)
    avc.vma.vm_end += PAGE
    anon_vma_interval_tree_insert(avc, root)
    anon_vma_interval_tree_verify(avc)
    assert list(anon_vma_interval_tree_foreach(root, 32, 32)) == [avc]
