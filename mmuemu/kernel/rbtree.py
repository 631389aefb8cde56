"""Red-black trees, plain and augmented (lib/rbtree.c, include/linux/rbtree.h,
include/linux/rbtree_augmented.h, Linux 4.x-5.x).

A tree node is an :class:`RbNode` embedded as a field of the object it
orders (``vma.vm_rb``, ``vma.shared_rb``, ``avc.rb``), exactly as a
``struct rb_node`` is embedded in its container. ``rb_entry(node)`` is
``node.owner``: one attribute load, so the owner is reached in O(1) from its
node and the node in O(1) from its owner. The tree code never looks at the
owner's keys: callers walk down comparing keys themselves, link the new node
with :func:`rb_link_node` and rebalance with :func:`rb_insert_color`, as in C.

The kernel packs parent and colour into ``__rb_parent_color``; here they are
two slots, ``parent`` and ``color``. Every other pointer move is the C code's,
statement for statement, so a reader can hold this file beside lib/rbtree.c.
An unlinked node has ``parent is node`` (RB_CLEAR_NODE / RB_EMPTY_NODE).

Augmented trees keep a per-subtree value *in the owner object* (the
``rb_subtree_gap`` of a VMA, the ``rb_subtree_last`` of an interval-tree
node). The three callbacks of ``struct rb_augment_callbacks`` keep it right:

- ``propagate(node, stop)``: recompute from ``node`` upwards until ``stop``
  (or until a value does not change);
- ``copy(old, new)``: ``new`` takes ``old``'s place (erase, successor case);
- ``rotate(old, new)``: ``new`` became the parent of ``old`` in a rotation.

:func:`rb_declare_callbacks` and :func:`rb_declare_callbacks_max` build them
like the ``RB_DECLARE_CALLBACKS`` / ``RB_DECLARE_CALLBACKS_MAX`` templates.

Red-black properties (lib/rbtree.c):
  1) a node is red or black; 2) the root is black; 3) NULL leaves are black;
  4) both children of a red node are black; 5) every path from a node to its
  leaves holds the same number of black nodes.
All code is iterative: no recursion anywhere, so depth never matters.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Generic, Optional, TypeVar

T = TypeVar("T")

RB_RED: Final = 0
RB_BLACK: Final = 1


class RbTreeError(Exception):
    """A red-black tree violates one of its invariants (found by :func:`rb_verify`)."""


class RbNode(Generic[T]):
    """struct rb_node: parent, colour and two children, plus the owner it is embedded in.

    ``owner`` is fixed for the node's lifetime (``rb_entry()``). A fresh node
    is cleared (``parent is self``), i.e. not in any tree.
    """

    __slots__ = ("parent", "color", "left", "right", "owner")

    def __init__(self, owner: T) -> None:
        self.owner: T = owner
        self.parent: Optional[RbNode[T]] = self  # RB_CLEAR_NODE
        self.color: int = RB_BLACK
        self.left: Optional[RbNode[T]] = None
        self.right: Optional[RbNode[T]] = None

    def __repr__(self) -> str:
        color = "red" if self.color == RB_RED else "black"
        state = " unlinked" if self.parent is self else ""
        return f"<rb_node {color}{state} of {self.owner!r}>"


class RbRoot(Generic[T]):
    """struct rb_root: the pointer to the top node (None for an empty tree)."""

    __slots__ = ("rb_node",)

    def __init__(self) -> None:
        self.rb_node: Optional[RbNode[T]] = None

    def __repr__(self) -> str:
        return f"<rb_root {'empty' if self.rb_node is None else 'non-empty'}>"


class RbRootCached(Generic[T]):
    """struct rb_root_cached: an rb_root that also caches its leftmost node."""

    __slots__ = ("rb_root", "rb_leftmost")

    def __init__(self) -> None:
        self.rb_root: RbRoot[T] = RbRoot()
        self.rb_leftmost: Optional[RbNode[T]] = None

    def __repr__(self) -> str:
        return f"<rb_root_cached {'empty' if self.rb_root.rb_node is None else 'non-empty'}>"


PropagateFn = Callable[[Optional[RbNode[T]], Optional[RbNode[T]]], None]
CopyFn = Callable[[RbNode[T], RbNode[T]], None]
RotateFn = Callable[[RbNode[T], RbNode[T]], None]


@dataclass(frozen=True, slots=True)
class RbAugmentCallbacks(Generic[T]):
    """struct rb_augment_callbacks."""

    propagate: PropagateFn[T]
    copy: CopyFn[T]
    rotate: RotateFn[T]


# --- small helpers (include/linux/rbtree.h, rbtree_augmented.h) ---------------------


def RB_EMPTY_ROOT(root: RbRoot[T]) -> bool:
    """RB_EMPTY_ROOT()."""
    return root.rb_node is None


def RB_EMPTY_NODE(node: RbNode[T]) -> bool:
    """RB_EMPTY_NODE(): the node is not linked into a tree."""
    return node.parent is node


def RB_CLEAR_NODE(node: RbNode[T]) -> None:
    """RB_CLEAR_NODE(): mark the node as not in a tree."""
    node.parent = node


def rb_parent(node: RbNode[T]) -> Optional[RbNode[T]]:
    """rb_parent()."""
    return node.parent


def rb_entry(node: RbNode[T]) -> T:
    """rb_entry(): the object the node is embedded in."""
    return node.owner


def rb_entry_safe(node: Optional[RbNode[T]]) -> Optional[T]:
    """rb_entry_safe(): rb_entry() that passes None through."""
    return None if node is None else node.owner


def rb_link_node(node: RbNode[T], parent: Optional[RbNode[T]], is_left: bool,
                 root: RbRoot[T]) -> None:
    """rb_link_node(node, parent, rb_link): hang a red leaf under ``parent``.

    C passes ``rb_link``, the address of the child pointer to fill in; here it
    is named by ``is_left`` (ignored when ``parent`` is None, in which case the
    node becomes the root). Follow with rb_insert_color() or
    rb_insert_augmented().
    """
    node.parent = parent
    node.color = RB_RED
    node.left = node.right = None
    if parent is None:
        root.rb_node = node
    elif is_left:
        parent.left = node
    else:
        parent.right = node


def _rb_change_child(old: RbNode[T], new: Optional[RbNode[T]],
                     parent: Optional[RbNode[T]], root: RbRoot[T]) -> None:
    """__rb_change_child()."""
    if parent is not None:
        if parent.left is old:
            parent.left = new
        else:
            parent.right = new
    else:
        root.rb_node = new


def _rb_rotate_set_parents(old: RbNode[T], new: RbNode[T], root: RbRoot[T],
                           color: int) -> None:
    """__rb_rotate_set_parents(): ``new`` takes ``old``'s parent and colour;
    ``old`` gets ``new`` as parent and ``color``."""
    parent = old.parent
    new.parent = parent
    new.color = old.color
    old.parent = new
    old.color = color
    _rb_change_child(old, new, parent, root)


def dummy_propagate(node: Optional[RbNode[T]], stop: Optional[RbNode[T]]) -> None:
    """The non-augmented callbacks do nothing."""


def dummy_copy(old: RbNode[T], new: RbNode[T]) -> None:
    """The non-augmented callbacks do nothing."""


def dummy_rotate(old: RbNode[T], new: RbNode[T]) -> None:
    """The non-augmented callbacks do nothing."""


DUMMY_CALLBACKS: Final[RbAugmentCallbacks[Any]] = RbAugmentCallbacks(
    dummy_propagate, dummy_copy, dummy_rotate)


# --- insertion ---------------------------------------------------------------------


def _rb_insert(node: RbNode[T], root: RbRoot[T], augment_rotate: RotateFn[T]) -> None:
    """__rb_insert(): restore the red-black properties after rb_link_node()."""
    parent = node.parent
    while True:
        # Loop invariant: node is red.
        if parent is None:
            # The inserted node is root: the first node, or we recursed at case 1.
            node.parent = None
            node.color = RB_BLACK
            break
        # A black parent: done. Otherwise fix the red-red pair.
        if parent.color == RB_BLACK:
            break
        gparent = parent.parent  # a red node is never the root
        assert gparent is not None
        tmp = gparent.right
        if parent is not tmp:  # parent == gparent->rb_left
            if tmp is not None and tmp.color == RB_RED:
                # Case 1 - node's uncle is red (colour flips); recurse at g.
                #       G            g
                #      / \          / \
                #     p   u  -->   P   U
                #    /            /
                #   n            n
                tmp.parent = gparent
                tmp.color = RB_BLACK
                parent.parent = gparent
                parent.color = RB_BLACK
                node = gparent
                parent = node.parent
                node.color = RB_RED
                continue
            tmp = parent.right
            if node is tmp:
                # Case 2 - uncle black, node is the parent's right child
                # (left rotate at parent), continuing into case 3.
                #      G             G
                #     / \           / \
                #    p   U  -->    n   U
                #     \           /
                #      n         p
                tmp = node.left
                parent.right = tmp
                node.left = parent
                if tmp is not None:
                    tmp.parent = parent
                    tmp.color = RB_BLACK
                parent.parent = node
                parent.color = RB_RED
                augment_rotate(parent, node)
                parent = node
                tmp = node.right
            # Case 3 - uncle black, node is the parent's left child
            # (right rotate at gparent).
            #        G           P
            #       / \         / \
            #      p   U  -->  n   g
            #     /                 \
            #    n                   U
            gparent.left = tmp  # == parent->rb_right
            parent.right = gparent
            if tmp is not None:
                tmp.parent = gparent
                tmp.color = RB_BLACK
            _rb_rotate_set_parents(gparent, parent, root, RB_RED)
            augment_rotate(gparent, parent)
            break
        else:
            tmp = gparent.left
            if tmp is not None and tmp.color == RB_RED:
                # Case 1 - colour flips.
                tmp.parent = gparent
                tmp.color = RB_BLACK
                parent.parent = gparent
                parent.color = RB_BLACK
                node = gparent
                parent = node.parent
                node.color = RB_RED
                continue
            tmp = parent.left
            if node is tmp:
                # Case 2 - right rotate at parent.
                tmp = node.right
                parent.left = tmp
                node.right = parent
                if tmp is not None:
                    tmp.parent = parent
                    tmp.color = RB_BLACK
                parent.parent = node
                parent.color = RB_RED
                augment_rotate(parent, node)
                parent = node
                tmp = node.left
            # Case 3 - left rotate at gparent.
            gparent.right = tmp  # == parent->rb_left
            parent.left = gparent
            if tmp is not None:
                tmp.parent = gparent
                tmp.color = RB_BLACK
            _rb_rotate_set_parents(gparent, parent, root, RB_RED)
            augment_rotate(gparent, parent)
            break


def rb_insert_color(node: RbNode[T], root: RbRoot[T]) -> None:
    """rb_insert_color(): rebalance after rb_link_node() (plain tree)."""
    _rb_insert(node, root, dummy_rotate)


def rb_insert_augmented(node: RbNode[T], root: RbRoot[T],
                        augment: RbAugmentCallbacks[T]) -> None:
    """rb_insert_augmented(): rebalance an augmented tree after rb_link_node().

    The caller must already have brought the augmented values on the path
    down to the new node up to date (see interval_tree insert, __vma_link_rb).
    """
    _rb_insert(node, root, augment.rotate)


def rb_insert_color_cached(node: RbNode[T], root: RbRootCached[T], leftmost: bool) -> None:
    """rb_insert_color_cached()."""
    if leftmost:
        root.rb_leftmost = node
    _rb_insert(node, root.rb_root, dummy_rotate)


def rb_insert_augmented_cached(node: RbNode[T], root: RbRootCached[T], newleft: bool,
                               augment: RbAugmentCallbacks[T]) -> None:
    """rb_insert_augmented_cached()."""
    if newleft:
        root.rb_leftmost = node
    _rb_insert(node, root.rb_root, augment.rotate)


# --- erasure -------------------------------------------------------------------------


def _rb_erase_color(parent: RbNode[T], root: RbRoot[T], augment_rotate: RotateFn[T]) -> None:
    """____rb_erase_color(): fix the black height after a black leaf was removed
    below ``parent``."""
    node: Optional[RbNode[T]] = None
    while True:
        # Loop invariants: node is black (or None on the first iteration);
        # node is not the root (parent is not None); all leaf paths through
        # parent and node have one black node fewer than other leaf paths.
        sibling = parent.right
        if node is not sibling:  # node == parent->rb_left
            assert sibling is not None
            if sibling.color == RB_RED:
                # Case 1 - left rotate at parent.
                #     P               S
                #    / \             / \
                #   N   s    -->    p   Sr
                #      / \         / \
                #     Sl  Sr      N   Sl
                tmp1 = sibling.left
                assert tmp1 is not None
                parent.right = tmp1
                sibling.left = parent
                tmp1.parent = parent
                tmp1.color = RB_BLACK
                _rb_rotate_set_parents(parent, sibling, root, RB_RED)
                augment_rotate(parent, sibling)
                sibling = tmp1
            tmp1 = sibling.right
            if tmp1 is None or tmp1.color == RB_BLACK:
                tmp2 = sibling.left
                if tmp2 is None or tmp2.color == RB_BLACK:
                    # Case 2 - sibling colour flip (p could be either colour).
                    #    (p)           (p)
                    #    / \           / \
                    #   N   S    -->  N   s
                    #      / \           / \
                    #     Sl  Sr        Sl  Sr
                    sibling.parent = parent
                    sibling.color = RB_RED
                    if parent.color == RB_RED:
                        parent.color = RB_BLACK
                    else:
                        node = parent
                        up = node.parent
                        if up is not None:
                            parent = up
                            continue
                    break
                # Case 3 - right rotate at sibling (p could be either colour).
                #   (p)           (p)
                #   / \           / \
                #  N   S    -->  N   sl
                #     / \             \
                #    sl  Sr            S
                #                       \
                #                        Sr
                tmp1 = tmp2.right
                sibling.left = tmp1
                tmp2.right = sibling
                parent.right = tmp2
                if tmp1 is not None:
                    tmp1.parent = sibling
                    tmp1.color = RB_BLACK
                augment_rotate(sibling, tmp2)
                tmp1 = sibling
                sibling = tmp2
            # Case 4 - left rotate at parent + colour flips.
            #      (p)             (s)
            #      / \             / \
            #     N   S     -->   P   Sr
            #        / \         / \
            #      (sl) sr      N  (sl)
            tmp2 = sibling.left
            parent.right = tmp2
            sibling.left = parent
            tmp1.parent = sibling
            tmp1.color = RB_BLACK
            if tmp2 is not None:
                tmp2.parent = parent
            _rb_rotate_set_parents(parent, sibling, root, RB_BLACK)
            augment_rotate(parent, sibling)
            break
        else:
            sibling = parent.left
            assert sibling is not None
            if sibling.color == RB_RED:
                # Case 1 - right rotate at parent.
                tmp1 = sibling.right
                assert tmp1 is not None
                parent.left = tmp1
                sibling.right = parent
                tmp1.parent = parent
                tmp1.color = RB_BLACK
                _rb_rotate_set_parents(parent, sibling, root, RB_RED)
                augment_rotate(parent, sibling)
                sibling = tmp1
            tmp1 = sibling.left
            if tmp1 is None or tmp1.color == RB_BLACK:
                tmp2 = sibling.right
                if tmp2 is None or tmp2.color == RB_BLACK:
                    # Case 2 - sibling colour flip.
                    sibling.parent = parent
                    sibling.color = RB_RED
                    if parent.color == RB_RED:
                        parent.color = RB_BLACK
                    else:
                        node = parent
                        up = node.parent
                        if up is not None:
                            parent = up
                            continue
                    break
                # Case 3 - left rotate at sibling.
                tmp1 = tmp2.left
                sibling.right = tmp1
                tmp2.left = sibling
                parent.left = tmp2
                if tmp1 is not None:
                    tmp1.parent = sibling
                    tmp1.color = RB_BLACK
                augment_rotate(sibling, tmp2)
                tmp1 = sibling
                sibling = tmp2
            # Case 4 - right rotate at parent + colour flips.
            tmp2 = sibling.right
            parent.left = tmp2
            sibling.right = parent
            tmp1.parent = sibling
            tmp1.color = RB_BLACK
            if tmp2 is not None:
                tmp2.parent = parent
            _rb_rotate_set_parents(parent, sibling, root, RB_BLACK)
            augment_rotate(parent, sibling)
            break


def _rb_erase_augmented(node: RbNode[T], root: RbRoot[T],
                        augment: RbAugmentCallbacks[T]) -> Optional[RbNode[T]]:
    """__rb_erase_augmented(): unlink ``node``; return where rebalancing starts.

    The erased node's own fields are left as they were (the kernel does not
    clear them either; RB_CLEAR_NODE() is the caller's business).
    """
    child = node.right
    tmp = node.left
    rebalance: Optional[RbNode[T]]
    if tmp is None:
        # Case 1: at most one child (then it is red and node is black).
        pc_parent, pc_color = node.parent, node.color
        parent = pc_parent
        _rb_change_child(node, child, parent, root)
        if child is not None:
            child.parent = pc_parent
            child.color = pc_color
            rebalance = None
        else:
            rebalance = parent if pc_color == RB_BLACK else None
        start = parent
    elif child is None:
        # Still case 1, but the child is node->rb_left.
        parent = node.parent
        tmp.parent = parent
        tmp.color = node.color
        _rb_change_child(node, tmp, parent, root)
        rebalance = None
        start = parent
    else:
        node_left = tmp
        successor = child
        tmp = child.left
        if tmp is None:
            # Case 2: node's successor is its right child.
            #    (n)          (s)
            #    / \          / \
            #  (x) (s)  ->  (x) (c)
            #        \
            #        (c)
            parent = successor
            child2 = successor.right
            augment.copy(node, successor)
        else:
            # Case 3: node's successor is leftmost under node's right child.
            #    (n)          (s)
            #    / \          / \
            #  (x) (y)  ->  (x) (y)
            #      /            /
            #    (p)          (p)
            #    /            /
            #  (s)          (c)
            #    \
            #    (c)
            while True:
                parent = successor
                successor = tmp
                tmp = tmp.left
                if tmp is None:
                    break
            child2 = successor.right
            parent.left = child2
            successor.right = child
            child.parent = successor
            augment.copy(node, successor)
            augment.propagate(parent, successor)
        successor.left = node_left
        node_left.parent = successor
        pc_parent, pc_color = node.parent, node.color
        _rb_change_child(node, successor, pc_parent, root)
        if child2 is not None:
            child2.parent = parent
            child2.color = RB_BLACK
            rebalance = None
        else:
            rebalance = parent if successor.color == RB_BLACK else None
        successor.parent = pc_parent
        successor.color = pc_color
        start = successor
    augment.propagate(start, None)
    return rebalance


def rb_erase(node: RbNode[T], root: RbRoot[T]) -> None:
    """rb_erase(): unlink ``node`` from a plain tree and rebalance."""
    rebalance = _rb_erase_augmented(node, root, DUMMY_CALLBACKS)
    if rebalance is not None:
        _rb_erase_color(rebalance, root, dummy_rotate)


def rb_erase_augmented(node: RbNode[T], root: RbRoot[T],
                       augment: RbAugmentCallbacks[T]) -> None:
    """rb_erase_augmented(): unlink ``node`` from an augmented tree and rebalance."""
    rebalance = _rb_erase_augmented(node, root, augment)
    if rebalance is not None:
        _rb_erase_color(rebalance, root, augment.rotate)


def rb_erase_cached(node: RbNode[T], root: RbRootCached[T]) -> None:
    """rb_erase_cached()."""
    if root.rb_leftmost is node:
        root.rb_leftmost = rb_next(node)
    rb_erase(node, root.rb_root)


def rb_erase_augmented_cached(node: RbNode[T], root: RbRootCached[T],
                              augment: RbAugmentCallbacks[T]) -> None:
    """rb_erase_augmented_cached()."""
    if root.rb_leftmost is node:
        root.rb_leftmost = rb_next(node)
    rb_erase_augmented(node, root.rb_root, augment)


def rb_replace_node(victim: RbNode[T], new: RbNode[T], root: RbRoot[T]) -> None:
    """rb_replace_node(): put ``new`` in ``victim``'s place without rebalancing
    (the two must sort the same; augmented values are the caller's problem)."""
    parent = victim.parent
    new.parent, new.color, new.left, new.right = parent, victim.color, victim.left, victim.right
    if victim.left is not None:
        victim.left.parent = new
    if victim.right is not None:
        victim.right.parent = new
    _rb_change_child(victim, new, parent, root)


# --- traversal -------------------------------------------------------------------------


def rb_first(root: RbRoot[T]) -> Optional[RbNode[T]]:
    """rb_first(): the first node in sort order."""
    n = root.rb_node
    if n is None:
        return None
    while n.left is not None:
        n = n.left
    return n


def rb_last(root: RbRoot[T]) -> Optional[RbNode[T]]:
    """rb_last(): the last node in sort order."""
    n = root.rb_node
    if n is None:
        return None
    while n.right is not None:
        n = n.right
    return n


def rb_first_cached(root: RbRootCached[T]) -> Optional[RbNode[T]]:
    """rb_first_cached()."""
    return root.rb_leftmost


def rb_next(node: RbNode[T]) -> Optional[RbNode[T]]:
    """rb_next(): the in-order successor, None after the last node."""
    if node.parent is node:
        return None
    n = node.right
    if n is not None:
        # A right-hand child: go down, then left as far as we can.
        while n.left is not None:
            n = n.left
        return n
    # Go up until we come from a left-hand child; that parent is next.
    parent = node.parent
    while parent is not None and node is parent.right:
        node = parent
        parent = node.parent
    return parent


def rb_prev(node: RbNode[T]) -> Optional[RbNode[T]]:
    """rb_prev(): the in-order predecessor, None before the first node."""
    if node.parent is node:
        return None
    n = node.left
    if n is not None:
        while n.right is not None:
            n = n.right
        return n
    parent = node.parent
    while parent is not None and node is parent.left:
        node = parent
        parent = node.parent
    return parent


def _rb_left_deepest_node(node: RbNode[T]) -> RbNode[T]:
    """rb_left_deepest_node()."""
    while True:
        if node.left is not None:
            node = node.left
        elif node.right is not None:
            node = node.right
        else:
            return node


def rb_first_postorder(root: RbRoot[T]) -> Optional[RbNode[T]]:
    """rb_first_postorder(): the first node of a post-order walk (children first)."""
    if root.rb_node is None:
        return None
    return _rb_left_deepest_node(root.rb_node)


def rb_next_postorder(node: RbNode[T]) -> Optional[RbNode[T]]:
    """rb_next_postorder(): safe against freeing ``node`` after the step."""
    parent = node.parent
    if parent is None:
        return None
    if node is parent.left and parent.right is not None:
        return _rb_left_deepest_node(parent.right)
    return parent


def rb_iter(root: RbRoot[T]) -> Iterator[T]:
    """The owners in sort order (``for (nd = rb_first(root); nd; nd = rb_next(nd))``).

    The next node is found after the caller's loop body runs, as in C, so do
    not erase the current node inside the loop; snapshot with list() first.
    """
    nd = rb_first(root)
    while nd is not None:
        yield nd.owner
        nd = rb_next(nd)


# --- augmented callback templates --------------------------------------------------------


def rb_declare_callbacks(compute: Callable[[RbNode[T], bool], bool], augmented: str
                         ) -> RbAugmentCallbacks[T]:
    """RB_DECLARE_CALLBACKS(): callbacks around a ``compute(node, exit)`` function.

    ``compute`` recomputes the augmented field of ``node.owner`` from the
    owner and the node's children; with ``exit`` true it returns True (and
    changes nothing) when the stored value is already right, which ends the
    propagation. (C passes the container; passing the node saves the
    owner-to-node lookup, and the owner is ``node.owner``.) ``augmented``
    names the owner's field (RBAUGMENTED) for copy/rotate.
    """

    def propagate(rb: Optional[RbNode[T]], stop: Optional[RbNode[T]]) -> None:
        while rb is not None and rb is not stop:
            if compute(rb, True):
                break
            rb = rb.parent

    def copy(rb_old: RbNode[T], rb_new: RbNode[T]) -> None:
        setattr(rb_new.owner, augmented, getattr(rb_old.owner, augmented))

    def rotate(rb_old: RbNode[T], rb_new: RbNode[T]) -> None:
        setattr(rb_new.owner, augmented, getattr(rb_old.owner, augmented))
        compute(rb_old, False)

    return RbAugmentCallbacks(propagate, copy, rotate)


def rb_declare_callbacks_max(compute: Callable[[T], int], augmented: str
                             ) -> RbAugmentCallbacks[T]:
    """RB_DECLARE_CALLBACKS_MAX(): the owner's ``augmented`` field is the
    maximum of ``compute(owner)`` over the subtree (interval trees' subtree_last)."""

    def compute_max(rb: RbNode[T], exit: bool) -> bool:
        node = rb.owner
        mx = compute(node)
        child = rb.left
        if child is not None:
            sub: int = getattr(child.owner, augmented)
            if sub > mx:
                mx = sub
        child = rb.right
        if child is not None:
            sub = getattr(child.owner, augmented)
            if sub > mx:
                mx = sub
        if exit and getattr(node, augmented) == mx:
            return True
        setattr(node, augmented, mx)
        return False

    return rb_declare_callbacks(compute_max, augmented)


# --- verification (debug) ------------------------------------------------------------------


def rb_verify(root: RbRoot[T], less: Optional[Callable[[T, T], bool]] = None) -> int:
    """Check the red-black properties, parent links and (optionally) order.

    ``less(a, b)`` must be true for owners that are out of order (b sorts
    before a); it is called on in-order neighbours. Returns the number of
    nodes; raises :class:`RbTreeError` describing the first violation.
    Iterative (an explicit stack), so it works at any depth.
    """
    top = root.rb_node
    if top is None:
        return 0
    if top.parent is not None:
        raise RbTreeError(f"root {top!r} has a parent {top.parent!r}")
    if top.color != RB_BLACK:
        raise RbTreeError(f"root {top!r} is red")
    black_height = -1
    count = 0
    # Pre-order walk with the black count of the path above each node.
    stack: list[tuple[RbNode[T], int]] = [(top, 0)]
    seen: set[int] = set()
    while stack:
        n, above = stack.pop()
        if id(n) in seen:
            raise RbTreeError(f"{n!r} is reached twice: the tree has a cycle")
        seen.add(id(n))
        count += 1
        here = above + (n.color == RB_BLACK)
        if n.color not in (RB_RED, RB_BLACK):
            raise RbTreeError(f"{n!r} has colour {n.color!r}")
        for child in (n.left, n.right):
            if child is None:
                if black_height < 0:
                    black_height = here
                elif here != black_height:
                    raise RbTreeError(f"black height {here} below {n!r}, elsewhere {black_height}")
                continue
            if child.parent is not n:
                raise RbTreeError(f"{child!r} is a child of {n!r} but its parent is "
                                  f"{child.parent!r}")
            if n.color == RB_RED and child.color == RB_RED:
                raise RbTreeError(f"red {n!r} has red child {child!r}")
            stack.append((child, here))
    if less is not None:
        nd = rb_first(root)
        walked = 0
        prev: Optional[RbNode[T]] = None
        while nd is not None:
            walked += 1
            if walked > count:
                raise RbTreeError("rb_next() loops")
            if prev is not None and less(nd.owner, prev.owner):
                raise RbTreeError(f"{nd.owner!r} sorts before its predecessor {prev.owner!r}")
            prev = nd
            nd = rb_next(nd)
        if walked != count:
            raise RbTreeError(f"in-order walk saw {walked} nodes, the tree holds {count}")
    return count


__all__ = [
    "RB_BLACK", "RB_CLEAR_NODE", "RB_EMPTY_NODE", "RB_EMPTY_ROOT", "RB_RED",
    "RbAugmentCallbacks", "RbNode", "RbRoot", "RbRootCached", "RbTreeError",
    "rb_declare_callbacks", "rb_declare_callbacks_max", "rb_entry", "rb_entry_safe",
    "rb_erase", "rb_erase_augmented", "rb_erase_augmented_cached", "rb_erase_cached",
    "rb_first", "rb_first_cached", "rb_first_postorder", "rb_insert_augmented",
    "rb_insert_augmented_cached", "rb_insert_color", "rb_insert_color_cached", "rb_iter",
    "rb_last", "rb_link_node", "rb_next", "rb_next_postorder", "rb_parent", "rb_prev",
    "rb_replace_node", "rb_verify",
]
