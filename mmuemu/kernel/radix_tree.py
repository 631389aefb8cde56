"""Model of the Linux 3.x radix tree (lib/radix-tree.c) as used by the page cache.

Every ``address_space`` keeps its cached pages in a radix tree
(``mapping->page_tree``) indexed by page offset.  This module models the
3.x implementation, which was later (Linux 4.20) rewritten as the xarray.

Structure
---------
* A :class:`RadixTreeRoot` holds ``height``, ``rnode`` and the root tags.
  The kernel hides the root tags in the upper bits of ``root->gfp_mask``;
  here they are the int bitmap ``root_tags`` (bit ``tag`` set means "some
  item in the tree carries ``tag``").
* Interior and leaf nodes are :class:`RadixTreeNode` objects with
  ``RADIX_TREE_MAP_SIZE`` (64) slots each, a ``count`` of non-empty slots
  and, per tag, a 64-bit bitmap (a Python int) with one bit per slot.
* A tree of height ``h`` covers indexes ``0 .. radix_tree_maxindex(h)``,
  i.e. ``64**h - 1`` (capped at ``2**64 - 1``, so the height is at most
  ``RADIX_TREE_MAX_PATH`` = 11).  Each level consumes
  ``RADIX_TREE_MAP_SHIFT`` (6) index bits, most significant first; a node at
  height 1 holds the items themselves, a node at height ``n > 1`` holds
  nodes of height ``n - 1``.
* Height 0 is special, as in Linux: the single item at index 0 is stored
  directly in ``root.rnode`` (the kernel tells the two cases apart with the
  RADIX_TREE_INDIRECT_PTR bit; the model uses ``root.height``).
* Tags are propagated up to the root: a node's tag bit for a slot is set iff
  some item below that slot carries the tag, and the root tag is set iff any
  item carries it.  Clearing propagates upward only when a whole node has
  lost its last such tag.
* Inserting beyond ``radix_tree_maxindex(height)`` grows the tree at the top
  (radix_tree_extend: the old root becomes slot 0 of a new root node).
  Deleting frees nodes that become empty and shrinks the height while the
  root node only uses slot 0 (radix_tree_shrink), so the height is always
  the smallest ``h`` with ``64**h > max_index`` (0 for an empty tree).

Each node records its ``parent`` and its ``offset`` in the parent (the 3.x
kernel recomputes the offset from the index; 4.x added ``node->offset``).
There is no RCU or locking: callers are serialised, as under
``mapping->tree_lock``.  Slot handles (:class:`RadixTreeSlot`) stay valid
until the next insert or delete, as in the kernel under the tree lock.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Union

__all__ = [
    "RADIX_TREE_MAP_SHIFT", "RADIX_TREE_MAP_SIZE", "RADIX_TREE_MAP_MASK",
    "RADIX_TREE_MAX_TAGS", "RADIX_TREE_TAG_LONGS", "RADIX_TREE_INDEX_BITS",
    "RADIX_TREE_MAX_PATH", "ULONG_MAX",
    "RADIX_TREE_ITER_TAG_MASK", "RADIX_TREE_ITER_TAGGED", "RADIX_TREE_ITER_CONTIG",
    "PAGECACHE_TAG_DIRTY", "PAGECACHE_TAG_WRITEBACK", "PAGECACHE_TAG_TOWRITE",
    "RadixTreeBug", "RadixTreeNode", "RadixTreeRoot", "RadixTreeSlot", "RadixTreeIter",
    "radix_tree_maxindex", "radix_tree_node_alloc", "radix_tree_extend",
    "radix_tree_preload", "radix_tree_preload_end",
    "radix_tree_insert", "radix_tree_lookup", "radix_tree_lookup_slot",
    "radix_tree_deref_slot", "radix_tree_replace_slot",
    "radix_tree_shrink", "radix_tree_delete", "radix_tree_delete_item",
    "radix_tree_tag_set", "radix_tree_tag_clear", "radix_tree_tag_get",
    "radix_tree_tagged", "radix_tree_next_chunk",
    "radix_tree_gang_lookup", "radix_tree_gang_lookup_slot",
    "radix_tree_gang_lookup_tag", "radix_tree_gang_lookup_tag_slot",
    "radix_tree_next_hole", "radix_tree_prev_hole",
    "radix_tree_range_tag_if_tagged",
    "radix_tree_for_each_slot", "radix_tree_for_each_tagged",
    "radix_tree_items", "radix_tree_count",
]

RADIX_TREE_MAP_SHIFT = 6
RADIX_TREE_MAP_SIZE = 1 << RADIX_TREE_MAP_SHIFT
RADIX_TREE_MAP_MASK = RADIX_TREE_MAP_SIZE - 1
RADIX_TREE_MAX_TAGS = 3
BITS_PER_LONG = 64
RADIX_TREE_TAG_LONGS = (RADIX_TREE_MAP_SIZE + BITS_PER_LONG - 1) // BITS_PER_LONG
RADIX_TREE_INDEX_BITS = 64  # 8 * sizeof(unsigned long)
RADIX_TREE_MAX_PATH = -(-RADIX_TREE_INDEX_BITS // RADIX_TREE_MAP_SHIFT)  # 11
ULONG_MAX = (1 << BITS_PER_LONG) - 1

# Flags of radix_tree_next_chunk() (include/linux/radix-tree.h).
RADIX_TREE_ITER_TAG_MASK = 0x00FF
RADIX_TREE_ITER_TAGGED = 0x0100
RADIX_TREE_ITER_CONTIG = 0x0200

# include/linux/fs.h
PAGECACHE_TAG_DIRTY = 0
PAGECACHE_TAG_WRITEBACK = 1
PAGECACHE_TAG_TOWRITE = 2

_SHIFT = RADIX_TREE_MAP_SHIFT
_MASK = RADIX_TREE_MAP_MASK
_SIZE = RADIX_TREE_MAP_SIZE


class RadixTreeBug(RuntimeError):
    """A BUG_ON() in lib/radix-tree.c fired (e.g. tagging an absent index)."""


@dataclass(slots=True, eq=False, repr=False)
class RadixTreeNode:
    """struct radix_tree_node: 64 slots, a count of used slots and tag bitmaps.

    ``height`` is the height from the bottom (1 = slots hold items).
    ``tags[tag]`` is a 64-bit bitmap, bit ``offset`` set iff something under
    ``slots[offset]`` carries ``tag``.  ``parent``/``offset`` locate the node
    in its parent (``parent is None`` for the root node).
    """

    height: int
    count: int = 0
    slots: list[Any] = field(default_factory=lambda: [None] * RADIX_TREE_MAP_SIZE)
    tags: list[int] = field(default_factory=lambda: [0] * RADIX_TREE_MAX_TAGS)
    parent: Optional[RadixTreeNode] = None
    offset: int = 0

    def __repr__(self) -> str:
        tags = ", ".join(f"{t:#x}" for t in self.tags)
        return (f"RadixTreeNode(height={self.height}, count={self.count}, "
                f"offset={self.offset}, tags=[{tags}])")


@dataclass(slots=True, eq=False, repr=False)
class RadixTreeRoot:
    """struct radix_tree_root: height, rnode and the root tags.

    ``rnode`` is the item at index 0 when ``height == 0`` and the root
    :class:`RadixTreeNode` otherwise.  ``root_tags`` models the tag bits the
    kernel keeps in ``gfp_mask``.
    """

    height: int = 0
    rnode: Any = None
    root_tags: int = 0

    def __repr__(self) -> str:
        return (f"RadixTreeRoot(height={self.height}, root_tags={self.root_tags:#x}, "
                f"rnode={'None' if self.rnode is None else type(self.rnode).__name__})")


@dataclass(slots=True, eq=False)
class RadixTreeSlot:
    """A ``void **slot`` pointer: ``node.slots[offset]``, or ``root.rnode`` if node is None.

    ``index`` is the tree index the slot stands for.  Read it with
    :func:`radix_tree_deref_slot` (or ``.item``); write it with
    :func:`radix_tree_replace_slot`.
    """

    root: RadixTreeRoot
    node: Optional[RadixTreeNode]
    offset: int
    index: int

    @property
    def item(self) -> Any:
        """The item currently in the slot (radix_tree_deref_slot())."""
        node = self.node
        if node is None:
            return self.root.rnode
        return node.slots[self.offset]


@dataclass(slots=True)
class RadixTreeIter:
    """struct radix_tree_iter: state of radix_tree_for_each_*() iterations."""

    index: int = 0
    next_index: int = 0
    tags: int = 0


def _maxindex(height: int) -> int:
    width = height * RADIX_TREE_MAP_SHIFT
    shift = RADIX_TREE_INDEX_BITS - width
    if shift < 0:
        return ULONG_MAX
    if shift >= BITS_PER_LONG:
        return 0
    return ULONG_MAX >> shift


# height_to_maxindex[] of radix_tree_init_maxindex().
height_to_maxindex: tuple[int, ...] = tuple(
    _maxindex(h) for h in range(RADIX_TREE_MAX_PATH + 1))


def _check_index(index: int) -> None:
    if not 0 <= index <= ULONG_MAX:
        raise ValueError(f"radix tree index {index!r} outside 0..ULONG_MAX")


def _check_tag(tag: int) -> None:
    if not 0 <= tag < RADIX_TREE_MAX_TAGS:
        raise ValueError(f"radix tree tag {tag!r} outside 0..{RADIX_TREE_MAX_TAGS - 1}")


# --- tag bitmap helpers (static inlines of lib/radix-tree.c) -------------

def tag_set(node: RadixTreeNode, tag: int, offset: int) -> None:
    """Models lib/radix-tree.c:tag_set() (Linux 3.x)."""
    node.tags[tag] |= 1 << offset


def tag_clear(node: RadixTreeNode, tag: int, offset: int) -> None:
    """Models lib/radix-tree.c:tag_clear() (Linux 3.x)."""
    node.tags[tag] &= ~(1 << offset)


def tag_get(node: RadixTreeNode, tag: int, offset: int) -> int:
    """Models lib/radix-tree.c:tag_get() (Linux 3.x)."""
    return (node.tags[tag] >> offset) & 1


def any_tag_set(node: RadixTreeNode, tag: int) -> bool:
    """Models lib/radix-tree.c:any_tag_set() (Linux 3.x)."""
    return node.tags[tag] != 0


def root_tag_set(root: RadixTreeRoot, tag: int) -> None:
    """Models lib/radix-tree.c:root_tag_set() (Linux 3.x)."""
    root.root_tags |= 1 << tag


def root_tag_clear(root: RadixTreeRoot, tag: int) -> None:
    """Models lib/radix-tree.c:root_tag_clear() (Linux 3.x)."""
    root.root_tags &= ~(1 << tag)


def root_tag_clear_all(root: RadixTreeRoot) -> None:
    """Models lib/radix-tree.c:root_tag_clear_all() (Linux 3.x)."""
    root.root_tags = 0


def root_tag_get(root: RadixTreeRoot, tag: int) -> int:
    """Models lib/radix-tree.c:root_tag_get() (Linux 3.x)."""
    return (root.root_tags >> tag) & 1


# --- allocation, growth ----------------------------------------------------

def radix_tree_maxindex(height: int) -> int:
    """Models lib/radix-tree.c:radix_tree_maxindex() (Linux 3.x).

    The largest index a tree of ``height`` can hold: ``64**height - 1``,
    capped at ULONG_MAX.
    """
    return height_to_maxindex[height]


def radix_tree_node_alloc(root: RadixTreeRoot) -> RadixTreeNode:
    """Models lib/radix-tree.c:radix_tree_node_alloc() (Linux 3.x).

    Allocation never fails in the model (no -ENOMEM).
    """
    return RadixTreeNode(height=0)


def radix_tree_preload(gfp_mask: int = 0) -> int:
    """Models lib/radix-tree.c:radix_tree_preload() (Linux 3.x).

    Node allocation cannot fail in the model, so preloading is a no-op
    that always succeeds (returns 0).
    """
    return 0


def radix_tree_preload_end() -> None:
    """Models include/linux/radix-tree.h:radix_tree_preload_end() (Linux 3.x); a no-op."""


def radix_tree_extend(root: RadixTreeRoot, index: int) -> int:
    """Models lib/radix-tree.c:radix_tree_extend() (Linux 3.x).

    Grow the tree at the top until ``index`` fits.  An empty tree just gets
    its height raised (nodes are created by the insertion walk); otherwise
    the old root becomes slot 0 of a new root node, inheriting the root tags.
    Returns 0.
    """
    height = root.height + 1
    while index > height_to_maxindex[height]:
        height += 1

    if root.rnode is None:
        root.height = height
        return 0

    while True:
        node = radix_tree_node_alloc(root)
        # Propagate the aggregated tag info into the new root.
        for tag in range(RADIX_TREE_MAX_TAGS):
            if (root.root_tags >> tag) & 1:
                node.tags[tag] |= 1
        newheight = root.height + 1
        node.height = newheight
        node.count = 1
        node.parent = None
        slot = root.rnode
        if newheight > 1:
            slot.parent = node
            slot.offset = 0
        node.slots[0] = slot
        root.rnode = node
        root.height = newheight
        if height <= root.height:
            return 0


# --- insert / lookup -------------------------------------------------------

def radix_tree_insert(root: RadixTreeRoot, index: int, item: Any) -> int:
    """Models lib/radix-tree.c:radix_tree_insert() (Linux 3.x).

    Insert ``item`` (which must not be None) at ``index``.  Returns 0, or
    ``-EEXIST`` if the index is already occupied.
    """
    if item is None:
        raise ValueError("radix_tree_insert: item must not be None")
    _check_index(index)

    # Make sure the tree is high enough.
    if index > height_to_maxindex[root.height]:
        radix_tree_extend(root, index)

    slot: Any = root.rnode
    node: Optional[RadixTreeNode] = None
    height = root.height
    shift = (height - 1) * _SHIFT
    offset = 0
    while height > 0:
        if slot is None:
            # Have to add a child node.
            slot = radix_tree_node_alloc(root)
            slot.height = height
            slot.parent = node
            if node is not None:
                slot.offset = offset
                node.slots[offset] = slot
                node.count += 1
            else:
                root.rnode = slot
        # Go a level down.
        offset = (index >> shift) & _MASK
        node = slot
        slot = node.slots[offset]
        shift -= _SHIFT
        height -= 1

    if slot is not None:
        return -errno.EEXIST

    if node is not None:
        node.count += 1
        node.slots[offset] = item
        tags = node.tags
        if (tags[0] >> offset) & 1 or (tags[1] >> offset) & 1:
            raise RadixTreeBug("radix_tree_insert: new slot already tagged")
    else:
        root.rnode = item
        if root.root_tags & 3:
            raise RadixTreeBug("radix_tree_insert: root tagged in empty tree")
    return 0


def radix_tree_lookup(root: RadixTreeRoot, index: int) -> Any:
    """Models lib/radix-tree.c:radix_tree_lookup() (Linux 3.x).

    The item at ``index``, or None.
    """
    node = root.rnode
    if node is None:
        return None
    height = root.height
    if height == 0:
        return node if index == 0 else None
    if not 0 <= index <= height_to_maxindex[height]:
        if index < 0:
            raise ValueError(f"radix tree index {index!r} is negative")
        return None
    shift = (height - 1) * _SHIFT
    while True:
        node = node.slots[(index >> shift) & _MASK]
        if node is None or shift == 0:
            return node
        shift -= _SHIFT


def radix_tree_lookup_slot(root: RadixTreeRoot, index: int) -> Optional[RadixTreeSlot]:
    """Models lib/radix-tree.c:radix_tree_lookup_slot() (Linux 3.x).

    A handle on the slot holding the item at ``index``, or None if there is
    no item there.  The handle can be read (:func:`radix_tree_deref_slot`)
    and overwritten (:func:`radix_tree_replace_slot`).
    """
    node = root.rnode
    if node is None:
        return None
    height = root.height
    if height == 0:
        return RadixTreeSlot(root, None, 0, 0) if index == 0 else None
    if not 0 <= index <= height_to_maxindex[height]:
        if index < 0:
            raise ValueError(f"radix tree index {index!r} is negative")
        return None
    shift = (height - 1) * _SHIFT
    while True:
        parent = node
        offset = (index >> shift) & _MASK
        node = parent.slots[offset]
        if node is None:
            return None
        if shift == 0:
            return RadixTreeSlot(root, parent, offset, index)
        shift -= _SHIFT


def radix_tree_deref_slot(slot: RadixTreeSlot) -> Any:
    """Models include/linux/radix-tree.h:radix_tree_deref_slot() (Linux 3.x)."""
    node = slot.node
    if node is None:
        return slot.root.rnode
    return node.slots[slot.offset]


def radix_tree_replace_slot(slot: RadixTreeSlot, item: Any) -> None:
    """Models include/linux/radix-tree.h:radix_tree_replace_slot() (Linux 3.x).

    Replace the item in an occupied slot by ``item`` (not None; use
    :func:`radix_tree_delete` to remove).  Tags are left alone.
    """
    if item is None:
        raise ValueError("radix_tree_replace_slot: item must not be None")
    node = slot.node
    if node is None:
        if slot.root.height != 0 or slot.root.rnode is None:
            raise RadixTreeBug("radix_tree_replace_slot: stale root slot")
        slot.root.rnode = item
        return
    if node.slots[slot.offset] is None:
        raise RadixTreeBug("radix_tree_replace_slot: slot is empty")
    node.slots[slot.offset] = item


# --- delete ----------------------------------------------------------------

def radix_tree_shrink(root: RadixTreeRoot) -> None:
    """Models lib/radix-tree.c:radix_tree_shrink() (Linux 3.x).

    While the root node only uses slot 0, replace it by its child and lower
    the height.  (Root tags need no change: they already equal the root
    node's slot-0 tag bits.)
    """
    while root.height > 0:
        to_free: RadixTreeNode = root.rnode
        # The candidate node has more than one child, or its child is not
        # at the leftmost slot: we cannot shrink.
        if to_free.count != 1:
            break
        slot = to_free.slots[0]
        if slot is None:
            break
        if root.height > 1:
            slot.parent = None
            slot.offset = 0
        root.rnode = slot
        root.height -= 1
        # radix_tree_node_free(to_free): detach it.
        to_free.slots[0] = None
        to_free.count = 0


def radix_tree_delete_item(root: RadixTreeRoot, index: int, item: Any) -> Any:
    """Models lib/radix-tree.c:radix_tree_delete_item() (Linux 3.x, 3.15+).

    Remove the entry at ``index`` if it is ``item`` (any entry when ``item``
    is None), clearing its tags, freeing nodes that become empty and
    shrinking the tree.  Returns the removed entry, or None.
    """
    height = root.height
    if not 0 <= index <= height_to_maxindex[height]:
        if index < 0:
            raise ValueError(f"radix tree index {index!r} is negative")
        return None

    slot: Any = root.rnode
    if height == 0:
        if slot is None or (item is not None and slot is not item):
            return None
        root_tag_clear_all(root)
        root.rnode = None
        return slot

    node: Optional[RadixTreeNode] = None
    offset = 0
    shift = height * _SHIFT
    while True:
        if slot is None:
            return None
        shift -= _SHIFT
        offset = (index >> shift) & _MASK
        node = slot
        slot = slot.slots[offset]
        height -= 1
        if height == 0:
            break

    if slot is None:
        return None
    if item is not None and slot is not item:
        return None
    assert node is not None

    # Clear all tags associated with the item to be deleted.
    tags = node.tags
    for tag in range(RADIX_TREE_MAX_TAGS):
        if (tags[tag] >> offset) & 1:
            radix_tree_tag_clear(root, index, tag)

    # Now free the nodes we do not need anymore.
    while node is not None:
        node.slots[offset] = None
        node.count -= 1
        if node.count:
            if node is root.rnode:
                radix_tree_shrink(root)
            return slot
        # Node with zero slots in use, so free it.
        offset = node.offset
        parent = node.parent
        node.parent = None
        node = parent

    root_tag_clear_all(root)
    root.height = 0
    root.rnode = None
    return slot


def radix_tree_delete(root: RadixTreeRoot, index: int) -> Any:
    """Models lib/radix-tree.c:radix_tree_delete() (Linux 3.x).

    Remove the item at ``index``; returns it, or None if there was none.
    The item's tags are cleared, emptied nodes are freed and the tree is
    shrunk (radix_tree_shrink()).
    """
    return radix_tree_delete_item(root, index, None)


# --- tags ------------------------------------------------------------------

def radix_tree_tag_set(root: RadixTreeRoot, index: int, tag: int) -> Any:
    """Models lib/radix-tree.c:radix_tree_tag_set() (Linux 3.x).

    Set ``tag`` on the item at ``index`` and on every node above it and the
    root.  The item must be present (BUG_ON -> :class:`RadixTreeBug`; the
    check is made before anything is modified).  Returns the item.
    """
    _check_tag(tag)
    height = root.height
    if not 0 <= index <= height_to_maxindex[height] or radix_tree_lookup(root, index) is None:
        raise RadixTreeBug(f"radix_tree_tag_set: no item at index {index}")

    slot: Any = root.rnode
    shift = (height - 1) * _SHIFT
    bit_tag = 1 << tag
    while height > 0:
        offset = (index >> shift) & _MASK
        slot.tags[tag] |= 1 << offset
        slot = slot.slots[offset]
        shift -= _SHIFT
        height -= 1

    # Set the root's tag bit.
    root.root_tags |= bit_tag
    return slot


def radix_tree_tag_clear(root: RadixTreeRoot, index: int, tag: int) -> Any:
    """Models lib/radix-tree.c:radix_tree_tag_clear() (Linux 3.x).

    Clear ``tag`` on the item at ``index``; the clear propagates to a parent
    node (and finally the root) only when the node has no other slot with
    that tag.  Returns the item, or None if there is no item at ``index``.
    """
    _check_tag(tag)
    height = root.height
    if not 0 <= index <= height_to_maxindex[height]:
        if index < 0:
            raise ValueError(f"radix tree index {index!r} is negative")
        return None

    shift = height * _SHIFT
    slot: Any = root.rnode
    node: Optional[RadixTreeNode] = None
    offset = 0
    while shift:
        if slot is None:
            return None
        shift -= _SHIFT
        offset = (index >> shift) & _MASK
        node = slot
        slot = slot.slots[offset]

    if slot is None:
        return None

    while node is not None:
        tags = node.tags
        if not (tags[tag] >> offset) & 1:
            return slot
        tags[tag] &= ~(1 << offset)
        if tags[tag]:
            return slot
        index >>= _SHIFT
        offset = index & _MASK
        node = node.parent

    # Clear the root's tag bit.
    root.root_tags &= ~(1 << tag)
    return slot


def radix_tree_tag_get(root: RadixTreeRoot, index: int, tag: int) -> int:
    """Models lib/radix-tree.c:radix_tree_tag_get() (Linux 3.x).

    1 if the item at ``index`` carries ``tag``, else 0.
    """
    _check_tag(tag)
    # Check the root's tag bit.
    if not (root.root_tags >> tag) & 1:
        return 0
    node = root.rnode
    if node is None:
        return 0
    height = root.height
    if height == 0:
        return 1 if index == 0 else 0
    if not 0 <= index <= height_to_maxindex[height]:
        return 0
    shift = (height - 1) * _SHIFT
    while True:
        if node is None:
            return 0
        offset = (index >> shift) & _MASK
        if not (node.tags[tag] >> offset) & 1:
            return 0
        if height == 1:
            return 1
        node = node.slots[offset]
        shift -= _SHIFT
        height -= 1


def radix_tree_tagged(root: RadixTreeRoot, tag: int) -> int:
    """Models lib/radix-tree.c:radix_tree_tagged() (Linux 3.x).

    Nonzero iff any item in the tree carries ``tag`` (the root tag bit).
    """
    return (root.root_tags >> tag) & 1


# --- iteration -------------------------------------------------------------

def _next_chunk(root: RadixTreeRoot, index: int, flags: int
                ) -> Optional[tuple[Optional[RadixTreeNode], int, int]]:
    """Core of radix_tree_next_chunk(): find the first present (or tagged) slot >= index.

    Returns ``(leaf_node, offset, index)``, ``(None, 0, 0)`` for the
    single-item tree, or None when there is nothing more.
    """
    tagged = flags & RADIX_TREE_ITER_TAGGED
    tag = flags & RADIX_TREE_ITER_TAG_MASK
    if tagged and not (root.root_tags >> tag) & 1:
        return None

    rnode = root.rnode
    if root.height == 0:
        if rnode is not None and not index:
            return (None, 0, 0)  # single-slot tree
        return None

    top_shift = (root.height - 1) * _SHIFT
    while True:  # restart:
        shift = top_shift
        offset = index >> shift
        # Index outside of the tree.
        if offset >= _SIZE:
            return None
        node = rnode
        while True:
            if tagged:
                hole = not (node.tags[tag] >> offset) & 1
            else:
                hole = node.slots[offset] is None
            if hole:
                if flags & RADIX_TREE_ITER_CONTIG:
                    return None
                if tagged:
                    bits = node.tags[tag] >> (offset + 1)
                    if bits:
                        offset += (bits & -bits).bit_length()
                    else:
                        offset = _SIZE
                else:
                    slots = node.slots
                    offset += 1
                    while offset < _SIZE and slots[offset] is None:
                        offset += 1
                index &= ~((_SIZE << shift) - 1)
                index = (index + (offset << shift)) & ULONG_MAX
                # Overflow after ~0UL.
                if not index:
                    return None
                if offset == _SIZE:
                    break  # goto restart
            # This is the leaf node.
            if not shift:
                return (node, offset, index)
            child = node.slots[offset]
            if child is None:
                break  # goto restart
            node = child
            shift -= _SHIFT
            offset = (index >> shift) & _MASK


def radix_tree_next_chunk(root: RadixTreeRoot, it: RadixTreeIter, flags: int
                          ) -> Optional[RadixTreeSlot]:
    """Models lib/radix-tree.c:radix_tree_next_chunk() (Linux 3.x).

    Find the next chunk of slots at or after ``it.next_index`` (present
    slots, or slots tagged with ``flags & RADIX_TREE_ITER_TAG_MASK`` when
    ``flags & RADIX_TREE_ITER_TAGGED``).  Updates ``it`` (index, next_index,
    tags) and returns a handle on the first slot, or None at the end.
    """
    index = it.next_index
    # Catch next_index overflow after ~0UL.
    if not index and it.index:
        return None
    found = _next_chunk(root, index, flags)
    if found is None:
        return None
    node, offset, index = found
    if node is None:
        it.index = 0
        it.next_index = 1
        it.tags = 1
        return RadixTreeSlot(root, None, 0, 0)
    it.index = index
    it.next_index = ((index | _MASK) + 1) & ULONG_MAX
    if flags & RADIX_TREE_ITER_TAGGED:
        it.tags = node.tags[flags & RADIX_TREE_ITER_TAG_MASK] >> offset
    return RadixTreeSlot(root, node, offset, index)


def _for_each(root: RadixTreeRoot, start: int, flags: int) -> Iterator[RadixTreeSlot]:
    _check_index(start)
    tagged = flags & RADIX_TREE_ITER_TAGGED
    tag = flags & RADIX_TREE_ITER_TAG_MASK
    index = start
    while True:
        found = _next_chunk(root, index, flags)
        if found is None:
            return
        node, offset, index = found
        if node is None:
            yield RadixTreeSlot(root, None, 0, 0)
            return
        base = index - offset
        slots = node.slots
        if tagged:
            # The chunk's tags are snapshotted, as in iter->tags.
            bits = node.tags[tag] >> offset
            while bits:
                off = offset + (bits & -bits).bit_length() - 1
                bits &= bits - 1
                if slots[off] is not None:
                    yield RadixTreeSlot(root, node, off, base + off)
        else:
            for off in range(offset, _SIZE):
                if slots[off] is not None:
                    yield RadixTreeSlot(root, node, off, base + off)
        index = (base + _SIZE) & ULONG_MAX
        if not index:
            return


def radix_tree_for_each_slot(root: RadixTreeRoot, start: int = 0) -> Iterator[RadixTreeSlot]:
    """Models include/linux/radix-tree.h:radix_tree_for_each_slot() (Linux 3.x).

    Yields a :class:`RadixTreeSlot` (with ``.index``) for every present
    item at or after ``start``, in index order.  As in the kernel, each
    64-slot chunk is re-looked-up from the root, so deleting the current
    item while iterating is fine.
    """
    return _for_each(root, start, 0)


def radix_tree_for_each_tagged(root: RadixTreeRoot, start: int, tag: int
                               ) -> Iterator[RadixTreeSlot]:
    """Models include/linux/radix-tree.h:radix_tree_for_each_tagged() (Linux 3.x).

    Yields a :class:`RadixTreeSlot` for every item carrying ``tag`` at or
    after ``start``, in index order.
    """
    _check_tag(tag)
    return _for_each(root, start, RADIX_TREE_ITER_TAGGED | tag)


def _gang(root: RadixTreeRoot, first_index: int, max_items: int, flags: int,
          want_slots: bool) -> list[Any]:
    results: list[Any] = []
    if max_items <= 0:
        return results
    _check_index(first_index)
    tagged = flags & RADIX_TREE_ITER_TAGGED
    tag = flags & RADIX_TREE_ITER_TAG_MASK
    index = first_index
    append = results.append
    while True:
        found = _next_chunk(root, index, flags)
        if found is None:
            return results
        node, offset, index = found
        if node is None:
            append(RadixTreeSlot(root, None, 0, 0) if want_slots else root.rnode)
            return results
        slots = node.slots
        base = index - offset
        if tagged:
            bits = node.tags[tag] >> offset
            while bits:
                off = offset + (bits & -bits).bit_length() - 1
                bits &= bits - 1
                item = slots[off]
                if item is None:
                    continue
                append(RadixTreeSlot(root, node, off, base + off) if want_slots else item)
                if len(results) == max_items:
                    return results
        else:
            for off in range(offset, _SIZE):
                item = slots[off]
                if item is None:
                    continue
                append(RadixTreeSlot(root, node, off, base + off) if want_slots else item)
                if len(results) == max_items:
                    return results
        index = (base + _SIZE) & ULONG_MAX
        if not index:
            return results


def radix_tree_gang_lookup(root: RadixTreeRoot, first_index: int, max_items: int) -> list[Any]:
    """Models lib/radix-tree.c:radix_tree_gang_lookup() (Linux 3.x).

    Up to ``max_items`` items with index >= ``first_index``, in index order
    (the kernel fills ``results[]`` and returns the count; here the list is
    returned).
    """
    return _gang(root, first_index, max_items, 0, False)


def radix_tree_gang_lookup_slot(root: RadixTreeRoot, first_index: int, max_items: int
                                ) -> list[RadixTreeSlot]:
    """Models lib/radix-tree.c:radix_tree_gang_lookup_slot() (Linux 3.x).

    Like :func:`radix_tree_gang_lookup` but returns slot handles; each
    handle's ``.index`` plays the role of the kernel's ``indices[]``.
    """
    return _gang(root, first_index, max_items, 0, True)


def radix_tree_gang_lookup_tag(root: RadixTreeRoot, first_index: int, max_items: int,
                               tag: int) -> list[Any]:
    """Models lib/radix-tree.c:radix_tree_gang_lookup_tag() (Linux 3.x).

    Up to ``max_items`` items carrying ``tag`` with index >= ``first_index``,
    in index order.
    """
    _check_tag(tag)
    return _gang(root, first_index, max_items, RADIX_TREE_ITER_TAGGED | tag, False)


def radix_tree_gang_lookup_tag_slot(root: RadixTreeRoot, first_index: int, max_items: int,
                                    tag: int) -> list[RadixTreeSlot]:
    """Models lib/radix-tree.c:radix_tree_gang_lookup_tag_slot() (Linux 3.x).

    Like :func:`radix_tree_gang_lookup_tag` but returns slot handles.
    """
    _check_tag(tag)
    return _gang(root, first_index, max_items, RADIX_TREE_ITER_TAGGED | tag, True)


def radix_tree_next_hole(root: RadixTreeRoot, index: int, max_scan: int) -> int:
    """Models lib/radix-tree.c:radix_tree_next_hole() (Linux 3.x).

    Scan forward from ``index`` (at most ``max_scan`` indexes) for the first
    index with no item.  Returns that index; if ``max_scan`` present items
    were passed, returns ``index + max_scan``; wraps to 0 after ULONG_MAX
    (and returns 0 then).
    """
    _check_index(index)
    for _ in range(max_scan):
        if radix_tree_lookup(root, index) is None:
            break
        index = (index + 1) & ULONG_MAX
        if index == 0:
            break
    return index


def radix_tree_prev_hole(root: RadixTreeRoot, index: int, max_scan: int) -> int:
    """Models lib/radix-tree.c:radix_tree_prev_hole() (Linux 3.x).

    Scan backward from ``index`` (at most ``max_scan`` indexes) for the first
    index with no item.  Returns that index; if ``max_scan`` present items
    were passed, returns ``index - max_scan``; wraps to ULONG_MAX below 0
    (and returns ULONG_MAX then).
    """
    _check_index(index)
    for _ in range(max_scan):
        if radix_tree_lookup(root, index) is None:
            break
        index = (index - 1) & ULONG_MAX
        if index == ULONG_MAX:
            break
    return index


def radix_tree_range_tag_if_tagged(root: RadixTreeRoot,
                                   first_indexp: Union[int, list[int]],
                                   last_index: int, nr_to_tag: int,
                                   iftag: int, settag: int) -> int:
    """Models lib/radix-tree.c:radix_tree_range_tag_if_tagged() (Linux 3.x).

    Set ``settag`` on up to ``nr_to_tag`` items in ``[*first_indexp,
    last_index]`` that carry ``iftag`` (tag_pages_for_writeback() uses it to
    copy DIRTY to TOWRITE).  Returns the number of items tagged.
    ``first_indexp`` is either an int or a one-element list standing for the
    kernel's ``unsigned long *``; a list is updated in place with the index
    where a following call should resume (0 after wrapping past ULONG_MAX).
    """
    _check_tag(iftag)
    _check_tag(settag)
    index = first_indexp[0] if isinstance(first_indexp, list) else first_indexp
    _check_index(index)

    def store(value: int) -> None:
        if isinstance(first_indexp, list):
            first_indexp[0] = value & ULONG_MAX

    height = root.height
    last_index = min(last_index, height_to_maxindex[height])
    if index > last_index:
        return 0
    if not nr_to_tag:
        return 0
    if not (root.root_tags >> iftag) & 1:
        store(last_index + 1)
        return 0
    if height == 0:
        store(last_index + 1)
        root.root_tags |= 1 << settag
        return 1

    shift = (height - 1) * _SHIFT
    slot: RadixTreeNode = root.rnode
    node: Optional[RadixTreeNode] = None
    tagged = 0
    settag_bit = 1 << settag
    while True:
        offset = (index >> shift) & _MASK
        if slot.slots[offset] is not None and (slot.tags[iftag] >> offset) & 1:
            if shift:
                # Go down one level.
                shift -= _SHIFT
                node = slot
                slot = slot.slots[offset]
                continue
            # Tag the leaf.
            tagged += 1
            slot.tags[settag] |= 1 << offset
            # Walk back up the path tagging interior nodes.
            upindex = index
            while node is not None:
                upindex >>= _SHIFT
                offset = upindex & _MASK
                # Stop if we find a node with the tag already set.
                if (node.tags[settag] >> offset) & 1:
                    break
                node.tags[settag] |= 1 << offset
                node = node.parent
            # All of this slot's ancestors now carry the tag.
            node = None
        # next: go to the next item at the level determined by 'shift'.
        index = (((index >> shift) + 1) << shift) & ULONG_MAX
        # Overflow can happen when last_index is ~0UL.
        if index > last_index or not index:
            break
        if tagged >= nr_to_tag:
            break
        while ((index >> shift) & _MASK) == 0:
            # We've fully scanned this node: go up.
            parent = slot.parent
            assert parent is not None
            slot = parent
            shift += _SHIFT

    # Only set the root tag if something in the range was tagged.
    if tagged > 0:
        root.root_tags |= settag_bit
    store(index)
    return tagged


# --- helpers (not in Linux) -------------------------------------------------

def radix_tree_items(root: RadixTreeRoot, start: int = 0) -> Iterator[tuple[int, Any]]:
    """Helper, not in Linux: yield ``(index, item)`` for every item >= ``start`` in order."""
    for slot in _for_each(root, start, 0):
        yield slot.index, radix_tree_deref_slot(slot)


def radix_tree_count(root: RadixTreeRoot) -> int:
    """Helper, not in Linux: the number of items in the tree (a full walk)."""
    height = root.height
    if root.rnode is None:
        return 0
    if height == 0:
        return 1
    total = 0
    stack: list[RadixTreeNode] = [root.rnode]
    while stack:
        node = stack.pop()
        if node.height == 1:
            total += node.count
        else:
            stack.extend(child for child in node.slots if child is not None)
    return total
