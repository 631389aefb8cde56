"""Interval trees: the generic template and the two mm instances
(include/linux/interval_tree_generic.h, mm/interval_tree.c, Linux 4.14-6.x).

An interval tree is an rbtree keyed by each node's ``start``, augmented with
``subtree_last``: the largest ``last`` in the node's subtree. Intervals are
closed, [start, last]. A query walks only subtrees whose ``subtree_last``
reaches the query's start, so finding the first overlap is O(log n) and each
further one amortised O(log n).

:class:`IntervalTree` is ``INTERVAL_TREE_DEFINE(ITSTRUCT, ITRB, ITTYPE,
ITSUBTREE, ITSTART, ITLAST, ITSTATIC, ITPREFIX)``: ``itrb`` and
``itsubtree`` name the owner's :class:`RbNode` field and its subtree_last
field, ``itstart``/``itlast`` compute the endpoints. It is instantiated twice:

- ``vma_interval_tree_*`` on ``address_space->i_mmap``: every VMA mapping a
  file, interval [vm_pgoff, vm_pgoff + vma_pages - 1], fields ``shared_rb``
  and ``shared_rb_subtree_last`` (``vma->shared.rb`` and
  ``vma->shared.rb_subtree_last``);
- ``anon_vma_interval_tree_*`` on ``anon_vma->rb_root``: the anon_vma_chains
  of every VMA that may map the anon_vma's pages, interval that of
  ``avc->vma``, fields ``rb`` and ``rb_subtree_last``.

The endpoints are read from the VMA at insert time and the tree trusts them
afterwards: a VMA's vm_start, vm_end or vm_pgoff must not change while it is
on an interval tree. Take it off first and put it back after (vma_adjust:
``vma_interval_tree_remove``/``insert``, and
``anon_vma_interval_tree_pre_update_vma``/``post_update_vma``).
``anon_vma_interval_tree_verify`` catches a change made behind the tree's
back (CONFIG_DEBUG_VM_RB's cached_vma_start/last).

Deviation from C: remove clears the node (RB_CLEAR_NODE), and insert/remove
refuse a node that is already in a tree / in none, instead of corrupting it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final, Generic, Optional, Protocol, Self, TypeVar

from mmuemu.kernel.rbtree import (
    RB_CLEAR_NODE, RbAugmentCallbacks, RbNode, RbRootCached, RbTreeError,
    rb_declare_callbacks_max, rb_erase_augmented_cached, rb_first, rb_insert_augmented,
    rb_insert_augmented_cached, rb_link_node, rb_next, rb_verify,
)

T = TypeVar("T")
PAGE_SHIFT: Final = 12


class IntervalTreeError(Exception):
    """An interval tree is inconsistent, or was used against its contract."""


class IntervalTree(Generic[T]):
    """INTERVAL_TREE_DEFINE(): insert/remove/iter_first/iter_next for one node type.

    ``prefix`` is ITPREFIX, used in messages only.
    """

    __slots__ = ("prefix", "itrb", "itsubtree", "itstart", "itlast", "augment")

    def __init__(self, prefix: str, itrb: str, itsubtree: str,
                 itstart: Callable[[T], int], itlast: Callable[[T], int]) -> None:
        self.prefix = prefix
        self.itrb = itrb
        self.itsubtree = itsubtree
        self.itstart = itstart
        self.itlast = itlast
        #: RB_DECLARE_CALLBACKS_MAX(static, ITPREFIX ## _augment, ..., ITLAST)
        self.augment: RbAugmentCallbacks[T] = rb_declare_callbacks_max(itlast, itsubtree)

    def __repr__(self) -> str:
        return f"<IntervalTree {self.prefix}>"

    def insert(self, node: T, root: RbRootCached[T]) -> None:
        """ITPREFIX_insert(): raise subtree_last on the way down, link, rebalance."""
        rb: RbNode[T] = getattr(node, self.itrb)
        if rb.parent is not rb:
            raise IntervalTreeError(f"{self.prefix}_insert: {node!r} is already in a tree")
        sub = self.itsubtree
        itstart = self.itstart
        start = itstart(node)
        last = self.itlast(node)
        link = root.rb_root.rb_node
        rb_parent: Optional[RbNode[T]] = None
        is_left = False
        leftmost = True
        while link is not None:
            rb_parent = link
            parent = link.owner
            if getattr(parent, sub) < last:
                setattr(parent, sub, last)
            if start < itstart(parent):
                link = link.left
                is_left = True
            else:
                link = link.right
                is_left = False
                leftmost = False
        setattr(node, sub, last)
        rb_link_node(rb, rb_parent, is_left, root.rb_root)
        rb_insert_augmented_cached(rb, root, leftmost, self.augment)

    def remove(self, node: T, root: RbRootCached[T]) -> None:
        """ITPREFIX_remove()."""
        rb: RbNode[T] = getattr(node, self.itrb)
        if rb.parent is rb:
            raise IntervalTreeError(f"{self.prefix}_remove: {node!r} is in no tree")
        rb_erase_augmented_cached(rb, root, self.augment)
        RB_CLEAR_NODE(rb)

    def subtree_search(self, rb: RbNode[T], start: int, last: int) -> Optional[T]:
        """ITPREFIX_subtree_search(): the leftmost node under ``rb`` intersecting
        [start, last]. Loop invariant: start <= subtree_last of ``rb``."""
        sub = self.itsubtree
        while True:
            left = rb.left
            if left is not None and start <= getattr(left.owner, sub):
                # Some nodes in the left subtree satisfy Cond2 (start <= last(n)):
                # the leftmost of them is the only candidate there.
                rb = left
                continue
            node = rb.owner
            if self.itstart(node) <= last:  # Cond1
                if start <= self.itlast(node):  # Cond2
                    return node  # node is the leftmost match
                right = rb.right
                if right is not None:
                    rb = right
                    if start <= getattr(right.owner, sub):
                        continue
            return None  # no match

    def iter_first(self, root: RbRootCached[T], start: int, last: int) -> Optional[T]:
        """ITPREFIX_iter_first(): the first node intersecting [start, last], by start."""
        top = root.rb_root.rb_node
        if top is None:
            return None
        # Fast path: the root's subtree_last is the tree's largest last, the
        # leftmost node has its smallest start.
        if getattr(top.owner, self.itsubtree) < start:
            return None
        leftmost = root.rb_leftmost
        if leftmost is not None and self.itstart(leftmost.owner) > last:
            return None
        return self.subtree_search(top, start, last)

    def iter_next(self, node: T, start: int, last: int) -> Optional[T]:
        """ITPREFIX_iter_next(): the next node after ``node`` intersecting [start, last]."""
        sub = self.itsubtree
        nrb: RbNode[T] = getattr(node, self.itrb)
        rb = nrb.right
        while True:
            # Loop invariants: Cond1 holds for nrb; rb == nrb->right.
            # First, search the right subtree if suitable.
            if rb is not None and start <= getattr(rb.owner, sub):
                return self.subtree_search(rb, start, last)
            # Move up the tree until we come from a node's left child.
            while True:
                up = nrb.parent
                if up is None:
                    return None
                prev = nrb
                nrb = up
                rb = nrb.right
                if prev is not rb:
                    break
            # Check if the node intersects [start, last].
            cand = nrb.owner
            if last < self.itstart(cand):  # !Cond1
                return None
            if start <= self.itlast(cand):  # Cond2
                return cand

    def foreach(self, root: RbRootCached[T], start: int, last: int) -> Iterator[T]:
        """The ``ITPREFIX_foreach`` loop: every node intersecting [start, last], by start.

        The next node is looked up after the loop body, as in the C macro:
        do not remove the current node inside the loop (take list() first).
        """
        node = self.iter_first(root, start, last)
        while node is not None:
            yield node
            node = self.iter_next(node, start, last)

    def verify(self, root: RbRootCached[T]) -> int:
        """Check red-black properties, order by start, every subtree_last and
        the cached leftmost. Returns the node count; raises IntervalTreeError."""
        itstart, itlast, sub = self.itstart, self.itlast, self.itsubtree
        try:
            n = rb_verify(root.rb_root, lambda a, b: itstart(a) < itstart(b))
        except RbTreeError as exc:
            raise IntervalTreeError(f"{self.prefix}: {exc}") from exc
        first = rb_first(root.rb_root)
        if root.rb_leftmost is not first:
            raise IntervalTreeError(f"{self.prefix}: rb_leftmost {root.rb_leftmost!r} is not "
                                    f"the first node {first!r}")
        nd = first
        while nd is not None:
            owner = nd.owner
            want = itlast(owner)
            for child in (nd.left, nd.right):
                if child is not None:
                    got: int = getattr(child.owner, sub)
                    want = max(want, got)
            have: int = getattr(owner, sub)
            if have != want:
                raise IntervalTreeError(f"{self.prefix}: {owner!r} has {sub} {have:#x}, "
                                        f"its subtree's largest last is {want:#x}")
            nd = rb_next(nd)
        return n


# --- address_space->i_mmap: VMAs by file page offset ------------------------------------


class VmaIntervalNode(Protocol):
    """What vma_interval_tree_* needs of a VMA."""

    vm_start: int
    vm_end: int
    vm_pgoff: int
    shared_rb: RbNode[Self]
    shared_rb_subtree_last: int


VI = TypeVar("VI", bound=VmaIntervalNode)


def vma_start_pgoff(v: VmaIntervalNode) -> int:
    """vma_start_pgoff()."""
    return v.vm_pgoff


def vma_last_pgoff(v: VmaIntervalNode) -> int:
    """vma_last_pgoff(): the last page offset the VMA maps (inclusive)."""
    return v.vm_pgoff + ((v.vm_end - v.vm_start) >> PAGE_SHIFT) - 1


VMA_INTERVAL_TREE: Final[IntervalTree[Any]] = IntervalTree(
    "vma_interval_tree", "shared_rb", "shared_rb_subtree_last", vma_start_pgoff, vma_last_pgoff)


def vma_interval_tree_insert(node: VI, root: RbRootCached[VI]) -> None:
    """vma_interval_tree_insert()."""
    VMA_INTERVAL_TREE.insert(node, root)


def vma_interval_tree_insert_after(node: VI, prev: VI, root: RbRootCached[VI]) -> None:
    """vma_interval_tree_insert_after(): insert ``node`` right after ``prev``
    (dup_mmap: the child's copy goes next to the parent's VMA).

    Like the kernel, it raises subtree_last only on the path below prev, so
    ``node`` must have prev's interval (it is a copy); anything else is refused.
    """
    last = vma_last_pgoff(node)
    if vma_start_pgoff(node) != vma_start_pgoff(prev) or last > vma_last_pgoff(prev):
        raise IntervalTreeError(f"vma_interval_tree_insert_after: {node!r} is not a copy "
                                f"of {prev!r}")
    rb = node.shared_rb
    if rb.parent is not rb:
        raise IntervalTreeError(f"vma_interval_tree_insert_after: {node!r} is already linked")
    prb = prev.shared_rb
    if prb.parent is prb:
        raise IntervalTreeError(f"vma_interval_tree_insert_after: {prev!r} is not linked")
    parent = prb.right
    if parent is None:
        parent = prb
        is_left = False
    else:
        if parent.owner.shared_rb_subtree_last < last:
            parent.owner.shared_rb_subtree_last = last
        while parent.left is not None:
            parent = parent.left
            if parent.owner.shared_rb_subtree_last < last:
                parent.owner.shared_rb_subtree_last = last
        is_left = True
    node.shared_rb_subtree_last = last
    rb_link_node(rb, parent, is_left, root.rb_root)
    rb_insert_augmented(rb, root.rb_root, VMA_INTERVAL_TREE.augment)


def vma_interval_tree_remove(node: VI, root: RbRootCached[VI]) -> None:
    """vma_interval_tree_remove()."""
    VMA_INTERVAL_TREE.remove(node, root)


def vma_interval_tree_iter_first(root: RbRootCached[VI], start: int, last: int) -> Optional[VI]:
    """vma_interval_tree_iter_first()."""
    found: Optional[VI] = VMA_INTERVAL_TREE.iter_first(root, start, last)
    return found


def vma_interval_tree_iter_next(node: VI, start: int, last: int) -> Optional[VI]:
    """vma_interval_tree_iter_next()."""
    found: Optional[VI] = VMA_INTERVAL_TREE.iter_next(node, start, last)
    return found


def vma_interval_tree_foreach(root: RbRootCached[VI], start: int, last: int) -> Iterator[VI]:
    """vma_interval_tree_foreach(vma, root, start, last): every VMA whose
    [vm_pgoff, last pgoff] intersects [start, last]."""
    node: Optional[VI] = VMA_INTERVAL_TREE.iter_first(root, start, last)
    while node is not None:
        yield node
        node = VMA_INTERVAL_TREE.iter_next(node, start, last)


def vma_interval_tree_verify(root: RbRootCached[VI]) -> int:
    """Debug check of a whole i_mmap tree; returns the number of VMAs on it."""
    return VMA_INTERVAL_TREE.verify(root)


# --- anon_vma->rb_root: anon_vma_chains by their VMA's page offset ------------------------


class AvcVma(Protocol):
    """The VMA fields an anon_vma_chain's interval comes from (read only)."""

    @property
    def vm_start(self) -> int: ...

    @property
    def vm_end(self) -> int: ...

    @property
    def vm_pgoff(self) -> int: ...


class AvcIntervalNode(Protocol):
    """What anon_vma_interval_tree_* needs of a struct anon_vma_chain."""

    @property
    def vma(self) -> AvcVma: ...

    rb: RbNode[Self]
    rb_subtree_last: int
    cached_vma_start: int
    cached_vma_last: int


AI = TypeVar("AI", bound=AvcIntervalNode)


def avc_start_pgoff(avc: AvcIntervalNode) -> int:
    """avc_start_pgoff()."""
    return avc.vma.vm_pgoff


def avc_last_pgoff(avc: AvcIntervalNode) -> int:
    """avc_last_pgoff()."""
    vma = avc.vma
    return vma.vm_pgoff + ((vma.vm_end - vma.vm_start) >> PAGE_SHIFT) - 1


ANON_VMA_INTERVAL_TREE: Final[IntervalTree[Any]] = IntervalTree(
    "anon_vma_interval_tree", "rb", "rb_subtree_last", avc_start_pgoff, avc_last_pgoff)


def anon_vma_interval_tree_insert(node: AI, root: RbRootCached[AI]) -> None:
    """anon_vma_interval_tree_insert(): remembers the interval it was filed
    under (CONFIG_DEBUG_VM_RB cached_vma_start/last) for the verify."""
    node.cached_vma_start = avc_start_pgoff(node)
    node.cached_vma_last = avc_last_pgoff(node)
    ANON_VMA_INTERVAL_TREE.insert(node, root)


def anon_vma_interval_tree_remove(node: AI, root: RbRootCached[AI]) -> None:
    """anon_vma_interval_tree_remove()."""
    ANON_VMA_INTERVAL_TREE.remove(node, root)


def anon_vma_interval_tree_iter_first(root: RbRootCached[AI], first: int, last: int
                                      ) -> Optional[AI]:
    """anon_vma_interval_tree_iter_first()."""
    found: Optional[AI] = ANON_VMA_INTERVAL_TREE.iter_first(root, first, last)
    return found


def anon_vma_interval_tree_iter_next(node: AI, first: int, last: int) -> Optional[AI]:
    """anon_vma_interval_tree_iter_next()."""
    found: Optional[AI] = ANON_VMA_INTERVAL_TREE.iter_next(node, first, last)
    return found


def anon_vma_interval_tree_foreach(root: RbRootCached[AI], start: int, last: int
                                   ) -> Iterator[AI]:
    """anon_vma_interval_tree_foreach(avc, root, start, last)."""
    node: Optional[AI] = ANON_VMA_INTERVAL_TREE.iter_first(root, start, last)
    while node is not None:
        yield node
        node = ANON_VMA_INTERVAL_TREE.iter_next(node, start, last)


def anon_vma_interval_tree_verify(node: AvcIntervalNode) -> None:
    """anon_vma_interval_tree_verify(): the chain's VMA still has the interval
    it was inserted with (WARN_ON_ONCE in the kernel; raises here)."""
    start, last = avc_start_pgoff(node), avc_last_pgoff(node)
    if node.cached_vma_start != start or node.cached_vma_last != last:
        raise IntervalTreeError(
            f"anon_vma_interval_tree_verify: {node!r} filed as "
            f"[{node.cached_vma_start:#x}, {node.cached_vma_last:#x}], its VMA now maps "
            f"[{start:#x}, {last:#x}] (bounds changed without pre/post_update_vma)")


def anon_vma_interval_tree_verify_root(root: RbRootCached[AI]) -> int:
    """Debug check of a whole anon_vma tree; returns the number of chains on it."""
    return ANON_VMA_INTERVAL_TREE.verify(root)


__all__ = [
    "ANON_VMA_INTERVAL_TREE", "AvcIntervalNode", "IntervalTree", "IntervalTreeError",
    "VMA_INTERVAL_TREE", "VmaIntervalNode", "anon_vma_interval_tree_foreach",
    "anon_vma_interval_tree_insert", "anon_vma_interval_tree_iter_first",
    "anon_vma_interval_tree_iter_next", "anon_vma_interval_tree_remove",
    "anon_vma_interval_tree_verify", "anon_vma_interval_tree_verify_root", "avc_last_pgoff",
    "avc_start_pgoff", "vma_interval_tree_foreach", "vma_interval_tree_insert",
    "vma_interval_tree_insert_after", "vma_interval_tree_iter_first",
    "vma_interval_tree_iter_next", "vma_interval_tree_remove", "vma_interval_tree_verify",
    "vma_last_pgoff", "vma_start_pgoff",
]
