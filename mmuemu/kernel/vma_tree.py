"""The mm's VMA tree: an rbtree augmented with rb_subtree_gap, plus the
address-sorted vm_next/vm_prev list (mm/mmap.c, Linux 3.8-6.0).

Models ``mm->mm_rb``, ``mm->mmap``, ``mm->map_count``, ``mm->highest_vm_end``
and the 3.x ``mm->mmap_cache`` as one object, :class:`VmaTree`, which the
``MmStruct`` holds. Every function keeps its mm/mmap.c name (``__foo``
written ``_foo``, the mmuemu convention) and takes the tree where the kernel
takes the mm.

Invariants (checked by :func:`validate_mm` / :func:`browse_rb`):

- the VMAs do not overlap; in-order rbtree walk == vm_next list order;
- ``vma.rb_subtree_gap`` is the largest free gap immediately *below* any VMA
  of the subtree rooted at ``vma.vm_rb``, where the gap below ``vma`` is
  ``vm_start_gap(vma) - vm_end_gap(vma.vm_prev)`` (0 if negative; from 0 for
  the first VMA);
- ``highest_vm_end == vm_end_gap(last VMA)`` (0 when empty): the gap above
  the last VMA is in no node, so the searches test it separately;
- ``map_count`` is the number of VMAs.

Whoever changes ``vm_start`` of a linked VMA calls ``vma_gap_update(mt,
vma)``; whoever changes ``vm_end`` calls ``vma_gap_update(mt, vma.vm_next)``
or, for the last VMA, sets ``highest_vm_end`` (``vma_adjust_gaps`` does
both). Changing ``vm_flags`` & VM_GROWSDOWN of a linked VMA also needs
``vma_gap_update``. The order of VMAs must never change while linked.

The stack guard gap (Linux >= 4.12, ``stack_guard_gap``) is a parameter of
the tree, fixed at construction: ``vm_start_gap`` lowers a VM_GROWSDOWN
VMA's start by it, so get_unmapped_area keeps new mappings that far below a
stack. VM_GROWSUP is VM_NONE on x86-64 and arm64, as in include/linux/mm.h.

A quirk kept on purpose: the searches prune on the assumption that gap_end
(= vm_start_gap) grows along the list. A stack whose guard gap reaches below
its predecessor's vm_start breaks that, and then, exactly as in mm/mmap.c
4.12-6.0, unmapped_area() can skip a fitting gap in a left subtree and
unmapped_area_topdown() can return -ENOMEM early; which gap is missed
depends on the tree's shape. The tests check this against a second,
recursive implementation of the same search.

What a VMA object must provide (see :class:`VmaLike`): ``vm_start``,
``vm_end``, ``vm_flags`` (ints), and four fields the tree owns:
``vm_rb = RbNode(vma)``, ``rb_subtree_gap = 0``, ``vm_next = None``,
``vm_prev = None``.
"""
from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Generic, Optional, Protocol, Self, TypeVar

from mmuemu.kernel.rbtree import (
    RB_CLEAR_NODE, RbAugmentCallbacks, RbNode, RbRoot, RbTreeError, rb_declare_callbacks,
    rb_erase_augmented, rb_insert_augmented, rb_last, rb_link_node, rb_next, rb_prev,
    rb_verify,
)

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
#: mm_types.VM.GROWSDOWN (not imported: mm_types imports this module)
VM_GROWSDOWN: Final = 0x00000100
#: VM_GROWSUP is VM_NONE except on ia64/parisc (include/linux/mm.h)
VM_GROWSUP: Final = 0
#: vm_unmapped_area_info.flags
VM_UNMAPPED_AREA_TOPDOWN: Final = 1
#: the default stack_guard_gap: 256 pages (mm/mmap.c)
DEFAULT_STACK_GUARD_GAP: Final = 256 << PAGE_SHIFT
#: the "infinite" gap_end of the highest gap (ULONG_MAX)
ULONG_MAX: Final = (1 << 64) - 1


class VmaLike(Protocol):
    """The fields of a vm_area_struct the tree reads (first three) and owns (the rest)."""

    vm_start: int
    vm_end: int
    vm_flags: int
    vm_rb: RbNode[Self]
    rb_subtree_gap: int
    vm_next: Optional[Self]
    vm_prev: Optional[Self]


V = TypeVar("V", bound=VmaLike)


class VmaTreeError(Exception):
    """The VMA tree is inconsistent (VM_BUG_ON_MM in validate_mm, BUG() on insert).

    ``problems`` lists every finding, in the kernel's pr_emerg wording.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def vm_start_gap(vma: VmaLike, stack_guard_gap: int) -> int:
    """vm_start_gap(): vm_start, less the guard gap below a VM_GROWSDOWN VMA."""
    vm_start = vma.vm_start
    if vma.vm_flags & VM_GROWSDOWN:
        vm_start -= stack_guard_gap
        if vm_start < 0:  # C: if (vm_start > vma->vm_start) vm_start = 0;
            vm_start = 0
    return vm_start


def vm_end_gap(vma: VmaLike, stack_guard_gap: int) -> int:
    """vm_end_gap(): vm_end, plus the guard gap above a VM_GROWSUP VMA."""
    vm_end = vma.vm_end
    if vma.vm_flags & VM_GROWSUP:
        vm_end += stack_guard_gap
    return vm_end


def _gap_callbacks(stack_guard_gap: int) -> RbAugmentCallbacks[V]:
    """RB_DECLARE_CALLBACKS(static, vma_gap_callbacks, ..., vma_compute_subtree_gap)."""

    def vma_compute_subtree_gap(rb: RbNode[V], exit: bool) -> bool:
        vma = rb.owner
        # vm_start_gap(vma)
        mx = vma.vm_start
        if vma.vm_flags & VM_GROWSDOWN:
            mx -= stack_guard_gap
            if mx < 0:
                mx = 0
        prev = vma.vm_prev
        if prev is not None:
            prev_end = prev.vm_end
            if prev.vm_flags & VM_GROWSUP:
                prev_end += stack_guard_gap
            mx = mx - prev_end if mx > prev_end else 0
        child = rb.left
        if child is not None and child.owner.rb_subtree_gap > mx:
            mx = child.owner.rb_subtree_gap
        child = rb.right
        if child is not None and child.owner.rb_subtree_gap > mx:
            mx = child.owner.rb_subtree_gap
        if exit and vma.rb_subtree_gap == mx:
            return True
        vma.rb_subtree_gap = mx
        return False

    return rb_declare_callbacks(vma_compute_subtree_gap, "rb_subtree_gap")


class VmaTree(Generic[V]):
    """mm_rb + mmap + map_count + highest_vm_end (+ the 3.x mmap_cache) of one mm.

    ``len(tree)`` is map_count; iterating yields the VMAs in address order
    along vm_next (``reversed()`` goes back along vm_prev). Set
    ``debug_vm_rb`` for CONFIG_DEBUG_VM_RB: every rb insert/erase then checks
    all gaps first (validate_mm_rb) and every link/unlink ends in validate_mm.
    """

    __slots__ = ("mm_rb", "mmap", "map_count", "highest_vm_end", "mmap_cache",
                 "debug_vm_rb", "_stack_guard_gap", "vma_gap_callbacks")

    def __init__(self, stack_guard_gap: int = DEFAULT_STACK_GUARD_GAP,
                 debug_vm_rb: bool = False) -> None:
        self.mm_rb: RbRoot[V] = RbRoot()
        #: mm->mmap: the lowest VMA, head of the vm_next list
        self.mmap: Optional[V] = None
        self.map_count: int = 0
        self.highest_vm_end: int = 0
        #: mm->mmap_cache (2.6-3.14): the last VMA find_vma() returned
        self.mmap_cache: Optional[V] = None
        self.debug_vm_rb = debug_vm_rb
        self._stack_guard_gap = stack_guard_gap
        self.vma_gap_callbacks: RbAugmentCallbacks[V] = _gap_callbacks(stack_guard_gap)

    @property
    def stack_guard_gap(self) -> int:
        """stack_guard_gap in bytes (fixed: the gap callbacks are built with it)."""
        return self._stack_guard_gap

    def __len__(self) -> int:
        return self.map_count

    def __iter__(self) -> Iterator[V]:
        vma = self.mmap
        while vma is not None:
            yield vma
            vma = vma.vm_next

    def __reversed__(self) -> Iterator[V]:
        last = rb_last(self.mm_rb)
        vma = None if last is None else last.owner
        while vma is not None:
            yield vma
            vma = vma.vm_prev

    def __repr__(self) -> str:
        return (f"<VmaTree map_count={self.map_count} "
                f"highest_vm_end={self.highest_vm_end:#x}>")


@dataclass(slots=True)
class VmaLinks(Generic[V]):
    """find_vma_links() results: the list predecessor and where to hang the node."""

    prev: Optional[V]
    rb_parent: Optional[RbNode[V]]
    rb_left: bool


@dataclass(frozen=True, slots=True)
class VmUnmappedAreaInfo:
    """struct vm_unmapped_area_info."""

    length: int
    low_limit: int
    high_limit: int
    flags: int = 0
    align_mask: int = 0
    align_offset: int = 0


# --- gap maintenance ------------------------------------------------------------------


def vma_compute_subtree_gap(mt: VmaTree[V], vma: V) -> int:
    """vma_compute_subtree_gap(): what ``vma.rb_subtree_gap`` should be, from
    its own gap and its children's stored values (does not store it)."""
    gap = mt.stack_guard_gap
    mx = vm_start_gap(vma, gap)
    if vma.vm_prev is not None:
        prev_end = vm_end_gap(vma.vm_prev, gap)
        mx = mx - prev_end if mx > prev_end else 0
    for child in (vma.vm_rb.left, vma.vm_rb.right):
        if child is not None and child.owner.rb_subtree_gap > mx:
            mx = child.owner.rb_subtree_gap
    return mx


def vma_gap_update(mt: VmaTree[V], vma: V) -> None:
    """vma_gap_update(): vma->vm_start or vma->vm_prev->vm_end changed; fix
    rb_subtree_gap from ``vma`` up (vma_gap_callbacks_propagate(&vma->vm_rb, NULL))."""
    mt.vma_gap_callbacks.propagate(vma.vm_rb, None)


def vma_adjust_gaps(mt: VmaTree[V], vma: V, start_changed: bool, end_changed: bool) -> None:
    """The gap bookkeeping at the end of __vma_adjust() (no insert, no remove):
    ``vma``'s bounds changed in place, its neighbours did not move."""
    if start_changed:
        vma_gap_update(mt, vma)
    if end_changed:
        nxt = vma.vm_next
        if nxt is None:
            mt.highest_vm_end = vm_end_gap(vma, mt.stack_guard_gap)
        else:
            vma_gap_update(mt, nxt)


# --- lookup ---------------------------------------------------------------------------


def find_vma(mt: VmaTree[V], addr: int) -> Optional[V]:
    """find_vma(): the first VMA with ``addr < vm_end`` (it may start above addr).

    Checks mmap_cache first, as 3.x did (vmacache_find in 3.15+).
    """
    vma = mt.mmap_cache
    if vma is not None and vma.vm_end > addr and vma.vm_start <= addr:
        return vma
    rb = mt.mm_rb.rb_node
    vma = None
    while rb is not None:
        tmp = rb.owner
        if tmp.vm_end > addr:
            vma = tmp
            if tmp.vm_start <= addr:
                break
            rb = rb.left
        else:
            rb = rb.right
    if vma is not None:
        mt.mmap_cache = vma
    return vma


def find_vma_prev(mt: VmaTree[V], addr: int) -> tuple[Optional[V], Optional[V]]:
    """find_vma_prev(): ``(find_vma(addr), the VMA before it)``; the C out
    parameter ``*pprev`` is the second element."""
    vma = find_vma(mt, addr)
    if vma is not None:
        return vma, vma.vm_prev
    last = rb_last(mt.mm_rb)
    return None, None if last is None else last.owner


def find_vma_intersection(mt: VmaTree[V], start_addr: int, end_addr: int) -> Optional[V]:
    """find_vma_intersection(): the first VMA overlapping [start_addr, end_addr)."""
    vma = find_vma(mt, start_addr)
    if vma is not None and end_addr <= vma.vm_start:
        return None
    return vma


def for_each_vma_range(mt: VmaTree[V], start: int, end: int) -> Iterator[V]:
    """for_each_vma_range() (6.x): the VMAs overlapping [start, end), in order.

    Follows vm_next lazily: to unlink VMAs while iterating, take list() first.
    """
    vma = find_vma(mt, start)
    while vma is not None and vma.vm_start < end:
        yield vma
        vma = vma.vm_next


def find_vma_links(mt: VmaTree[V], addr: int, end: int) -> Optional[VmaLinks[V]]:
    """find_vma_links(): where a VMA [addr, end) goes; None (-ENOMEM) if it
    would overlap an existing one."""
    rb = mt.mm_rb.rb_node
    rb_parent: Optional[RbNode[V]] = None
    rb_prev: Optional[RbNode[V]] = None
    rb_left = False
    while rb is not None:
        rb_parent = rb
        vma_tmp = rb.owner
        if vma_tmp.vm_end > addr:
            # Fail if an existing vma overlaps the area
            if vma_tmp.vm_start < end:
                return None
            rb_left = True
            rb = rb.left
        else:
            rb_prev = rb
            rb_left = False
            rb = rb.right
    return VmaLinks(None if rb_prev is None else rb_prev.owner, rb_parent, rb_left)


# --- linking ---------------------------------------------------------------------------


def _vma_link_list(mt: VmaTree[V], vma: V, prev: Optional[V],
                    rb_parent: Optional[RbNode[V]]) -> None:
    """_vma_link_list() (mm/util.c): put ``vma`` on the vm_next list after ``prev``."""
    vma.vm_prev = prev
    nxt: Optional[V]
    if prev is not None:
        nxt = prev.vm_next
        prev.vm_next = vma
    else:
        mt.mmap = vma
        nxt = None if rb_parent is None else rb_parent.owner
    vma.vm_next = nxt
    if nxt is not None:
        nxt.vm_prev = vma


def vma_rb_insert(mt: VmaTree[V], vma: V) -> None:
    """vma_rb_insert(): rebalance after linking (all gaps must be right first)."""
    if mt.debug_vm_rb:
        validate_mm_rb(mt, None)
    rb_insert_augmented(vma.vm_rb, mt.mm_rb, mt.vma_gap_callbacks)


def _vma_link_rb(mt: VmaTree[V], vma: V, rb_parent: Optional[RbNode[V]],
                  rb_left: bool) -> None:
    """_vma_link_rb(): link ``vma`` (already on the list) into the rbtree.

    vma->vm_prev was not known on the way down, so the gaps of the nodes
    above could not be updated then: insert with rb_subtree_gap 0, fix the
    gap at once, and only then rebalance.
    """
    # Update tracking information for the gap following the new vma.
    if vma.vm_next is not None:
        vma_gap_update(mt, vma.vm_next)
    else:
        mt.highest_vm_end = vm_end_gap(vma, mt.stack_guard_gap)
    rb_link_node(vma.vm_rb, rb_parent, rb_left, mt.mm_rb)
    vma.rb_subtree_gap = 0
    vma_gap_update(mt, vma)
    vma_rb_insert(mt, vma)


def _vma_link(mt: VmaTree[V], vma: V, links: VmaLinks[V]) -> None:
    """_vma_link(): list, then rbtree."""
    _vma_link_list(mt, vma, links.prev, links.rb_parent)
    _vma_link_rb(mt, vma, links.rb_parent, links.rb_left)


def _insert_vm_struct(mt: VmaTree[V], vma: V) -> None:
    """_insert_vm_struct(): link ``vma`` into the list and tree; map_count++.

    Raises VmaTreeError (the kernel's BUG()) if it overlaps a linked VMA.
    vma_link() in mmap.py adds the file's i_mmap on top of this.
    """
    links = find_vma_links(mt, vma.vm_start, vma.vm_end)
    if links is None:
        clash = find_vma_intersection(mt, vma.vm_start, vma.vm_end)
        raise VmaTreeError([f"insert {vma!r} overlaps {clash!r}"])
    _vma_link(mt, vma, links)
    mt.map_count += 1
    if mt.debug_vm_rb:
        validate_mm(mt)


# --- unlinking ---------------------------------------------------------------------------


def vma_rb_erase(mt: VmaTree[V], vma: V, ignore: Optional[V] = None) -> None:
    """vma_rb_erase() / vma_rb_erase_ignore(): take ``vma`` out of the rbtree.

    All gaps must be right beforehand except ``vma``'s own (and ``ignore``'s).
    Deviation: the node is cleared afterwards (RB_CLEAR_NODE), so a second
    erase or a stale lookup fails loudly instead of corrupting the tree.
    """
    if mt.debug_vm_rb:
        validate_mm_rb(mt, vma if ignore is None else ignore)
    rb_erase_augmented(vma.vm_rb, mt.mm_rb, mt.vma_gap_callbacks)
    RB_CLEAR_NODE(vma.vm_rb)
    if mt.mmap_cache is vma:  # vmacache_invalidate()
        mt.mmap_cache = None


def _vma_unlink_common(mt: VmaTree[V], vma: V, prev: Optional[V], has_prev: bool,
                        ignore: Optional[V] = None) -> None:
    """_vma_unlink_common(): off the rbtree and the list. The caller fixes
    map_count and the gap of the next VMA (or highest_vm_end)."""
    vma_rb_erase(mt, vma, ignore)
    nxt = vma.vm_next
    if has_prev:
        assert prev is not None
        prev.vm_next = nxt
    else:
        prev = vma.vm_prev
        if prev is not None:
            prev.vm_next = nxt
        else:
            mt.mmap = nxt
    if nxt is not None:
        nxt.vm_prev = prev


def _vma_unlink_prev(mt: VmaTree[V], vma: V, prev: V) -> None:
    """_vma_unlink_prev()."""
    _vma_unlink_common(mt, vma, prev, True, vma)


def vma_tree_remove(mt: VmaTree[V], vma: V) -> None:
    """Unlink one VMA and leave everything consistent: _vma_unlink_common(),
    map_count--, then the gap above its predecessor (vma_gap_update(next), or
    highest_vm_end), as __vma_adjust()'s remove_next path and
    detach_vmas_to_be_unmapped() do. Unlike the kernel it also clears the
    VMA's vm_next/vm_prev, so the VMA can be linked again later."""
    prev = vma.vm_prev
    nxt = vma.vm_next
    _vma_unlink_common(mt, vma, prev, False)
    mt.map_count -= 1
    if nxt is not None:
        vma_gap_update(mt, nxt)
    else:
        mt.highest_vm_end = 0 if prev is None else vm_end_gap(prev, mt.stack_guard_gap)
    vma.vm_next = vma.vm_prev = None
    if mt.debug_vm_rb:
        validate_mm(mt)


def detach_vmas_to_be_unmapped(mt: VmaTree[V], vma: V, prev: Optional[V], end: int) -> list[V]:
    """detach_vmas_to_be_unmapped(): unlink ``vma`` and its successors below
    ``end`` from the tree and the list. Returns them in order (still chained
    by vm_next, the tail's vm_next cleared, the head's vm_prev cleared)."""
    detached: list[V] = []
    vma.vm_prev = None
    cur = vma
    while True:
        vma_rb_erase(mt, cur)
        mt.map_count -= 1
        detached.append(cur)
        nxt = cur.vm_next
        if nxt is None or nxt.vm_start >= end:
            break
        cur = nxt
    if prev is not None:
        prev.vm_next = nxt
    else:
        mt.mmap = nxt
    if nxt is not None:
        nxt.vm_prev = prev
        vma_gap_update(mt, nxt)
    else:
        mt.highest_vm_end = 0 if prev is None else vm_end_gap(prev, mt.stack_guard_gap)
    cur.vm_next = None
    if mt.debug_vm_rb:
        validate_mm(mt)
    return detached


def vma_tree_clear(mt: VmaTree[V]) -> list[V]:
    """Empty the tree (exit_mmap); returns the VMAs that were in it, in order."""
    vmas = list(mt)
    for vma in vmas:
        RB_CLEAR_NODE(vma.vm_rb)
        vma.vm_next = vma.vm_prev = None
    mt.mm_rb.rb_node = None
    mt.mmap = mt.mmap_cache = None
    mt.map_count = 0
    mt.highest_vm_end = 0
    return vmas


# --- placing new mappings (vm_unmapped_area) ------------------------------------------------


def unmapped_area(mt: VmaTree[V], length: int, low_limit: int, high_limit: int,
                  align_mask: int = 0, align_offset: int = 0) -> int:
    """unmapped_area(): the lowest ``addr >= low_limit`` with [addr, addr+length)
    free and ``addr + length <= high_limit``, aligned so that
    ``(addr - align_offset) & align_mask == 0``; -ENOMEM if none.

    Searches for an rbtree node that immediately follows a suitable gap:
    gap_start = vm_end_gap(vma->vm_prev) <= high_limit - length,
    gap_end = vm_start_gap(vma) >= low_limit + length, gap_end - gap_start >=
    length (length including the worst-case alignment slack). O(log n).
    """
    gap = mt.stack_guard_gap
    info_length, info_low, info_high = length, low_limit, high_limit
    # Adjust search length to account for worst case alignment overhead
    length = info_length + align_mask
    # Adjust search limits by the desired length
    if info_high < length:
        return -errno.ENOMEM
    high_limit = info_high - length
    if info_low > high_limit:
        return -errno.ENOMEM
    low_limit = info_low + length

    found = False
    gap_start = gap_end = 0
    rb = mt.mm_rb.rb_node
    # Check if rbtree root looks promising
    if rb is not None and rb.owner.rb_subtree_gap >= length:
        vma = rb.owner
        descend = True
        while True:
            if descend:
                # Visit left subtree if it looks promising
                gap_end = vm_start_gap(vma, gap)
                left = vma.vm_rb.left
                if gap_end >= low_limit and left is not None and \
                        left.owner.rb_subtree_gap >= length:
                    vma = left.owner
                    continue
                prev = vma.vm_prev
                gap_start = 0 if prev is None else vm_end_gap(prev, gap)
            # check_current: does the current node have a suitable gap?
            if gap_start > high_limit:
                return -errno.ENOMEM
            if gap_end >= low_limit and gap_end > gap_start and gap_end - gap_start >= length:
                found = True
                break
            # Visit right subtree if it looks promising
            right = vma.vm_rb.right
            if right is not None and right.owner.rb_subtree_gap >= length:
                vma = right.owner
                descend = True
                continue
            # Go back up the rbtree to find next candidate node
            up = _climb_from_left(vma)
            if up is None:
                break  # goto check_highest
            vma = up
            prev = vma.vm_prev
            assert prev is not None  # we came up from its left subtree
            gap_start = vm_end_gap(prev, gap)
            gap_end = vm_start_gap(vma, gap)
            descend = False  # goto check_current
    if not found:
        # check_highest: the gap above the last VMA, which precedes no node
        gap_start = mt.highest_vm_end
        gap_end = ULONG_MAX
        if gap_start > high_limit:
            return -errno.ENOMEM
    # found: clip the gap with the original low_limit, then align
    if gap_start < info_low:
        gap_start = info_low
    gap_start += (align_offset - gap_start) & align_mask
    if gap_start + info_length > info_high or gap_start + info_length > gap_end:
        raise VmaTreeError([f"unmapped_area: {gap_start:#x}+{info_length:#x} "
                            f"beyond high_limit {info_high:#x} or gap_end {gap_end:#x}"])
    return gap_start


def _climb_from_left(vma: V) -> Optional[V]:
    """Go up until we arrive from a left child; that parent, or None at the root."""
    node = vma.vm_rb
    while True:
        parent = node.parent
        if parent is None:
            return None
        if node is parent.left:
            return parent.owner
        node = parent


def _climb_from_right(vma: V) -> Optional[V]:
    """Go up until we arrive from a right child; that parent, or None at the root."""
    node = vma.vm_rb
    while True:
        parent = node.parent
        if parent is None:
            return None
        if node is parent.right:
            return parent.owner
        node = parent


def unmapped_area_topdown(mt: VmaTree[V], length: int, low_limit: int, high_limit: int,
                          align_mask: int = 0, align_offset: int = 0) -> int:
    """unmapped_area_topdown(): the highest ``addr`` with [addr, addr+length)
    free, ``low_limit <= addr`` and ``addr + length <= high_limit``, aligned
    as for unmapped_area(); -ENOMEM if none. O(log n).

    Like mm/mmap.c, it takes the highest gap whose size is at least
    ``length + align_mask`` (and that reaches into the limits), so with an
    align_mask a smaller gap that could still hold an aligned block is skipped.
    """
    gap = mt.stack_guard_gap
    info_length, info_low, info_high = length, low_limit, high_limit
    # Adjust search length to account for worst case alignment overhead
    length = info_length + align_mask
    # Adjust search limits by the desired length
    gap_end = info_high
    if gap_end < length:
        return -errno.ENOMEM
    high_limit = gap_end - length
    if info_low > high_limit:
        return -errno.ENOMEM
    low_limit = info_low + length

    # Check highest gap, which does not precede any rbtree node
    gap_start = mt.highest_vm_end
    if gap_start > high_limit:
        # Check if rbtree root looks promising
        rb = mt.mm_rb.rb_node
        if rb is None or rb.owner.rb_subtree_gap < length:
            return -errno.ENOMEM
        vma = rb.owner
        descend = True
        while True:
            if descend:
                # Visit right subtree if it looks promising
                prev = vma.vm_prev
                gap_start = 0 if prev is None else vm_end_gap(prev, gap)
                right = vma.vm_rb.right
                if gap_start <= high_limit and right is not None and \
                        right.owner.rb_subtree_gap >= length:
                    vma = right.owner
                    continue
            # check_current: does the current node have a suitable gap?
            gap_end = vm_start_gap(vma, gap)
            if gap_end < low_limit:
                return -errno.ENOMEM
            if gap_start <= high_limit and gap_end > gap_start and gap_end - gap_start >= length:
                break  # found
            # Visit left subtree if it looks promising
            left = vma.vm_rb.left
            if left is not None and left.owner.rb_subtree_gap >= length:
                vma = left.owner
                descend = True
                continue
            # Go back up the rbtree to find next candidate node
            up = _climb_from_right(vma)
            if up is None:
                return -errno.ENOMEM
            vma = up
            prev = vma.vm_prev
            gap_start = 0 if prev is None else vm_end_gap(prev, gap)
            descend = False  # goto check_current
        # found: clip the gap with the original high_limit
        if gap_end > info_high:
            gap_end = info_high
    # found_highest: compute highest gap address at the desired alignment
    gap_end -= info_length
    gap_end -= (gap_end - align_offset) & align_mask
    if gap_end < info_low or gap_end < gap_start:
        raise VmaTreeError([f"unmapped_area_topdown: {gap_end:#x} below low_limit "
                            f"{info_low:#x} or gap_start {gap_start:#x}"])
    return gap_end


def vm_unmapped_area(mt: VmaTree[V], info: VmUnmappedAreaInfo) -> int:
    """vm_unmapped_area(): dispatch on VM_UNMAPPED_AREA_TOPDOWN."""
    search = unmapped_area_topdown if info.flags & VM_UNMAPPED_AREA_TOPDOWN else unmapped_area
    return search(mt, info.length, info.low_limit, info.high_limit,
                  info.align_mask, info.align_offset)


# --- CONFIG_DEBUG_VM_RB ---------------------------------------------------------------------


def browse_rb(mt: VmaTree[V], report: Optional[list[str]] = None) -> int:
    """browse_rb(): walk the rbtree in order checking order, overlap and every
    rb_subtree_gap; then count back with rb_prev(). Returns the node count, or
    -1 if anything was wrong (the findings are appended to ``report``)."""
    out: list[str] = [] if report is None else report
    bug = False
    i = 0
    prev = pend = 0
    seen: set[int] = set()  # a corrupted tree may loop
    nd = mt.mm_rb.rb_node
    if nd is not None:
        while nd.left is not None:
            nd = nd.left
    pn: Optional[RbNode[V]] = None
    while nd is not None:
        vma = nd.owner
        if vma.vm_start < prev:
            out.append(f"vm_start {vma.vm_start:x} < prev {prev:x}")
            bug = True
        if vma.vm_start < pend:
            out.append(f"vm_start {vma.vm_start:x} < pend {pend:x}")
            bug = True
        if vma.vm_start > vma.vm_end:
            out.append(f"vm_start {vma.vm_start:x} > vm_end {vma.vm_end:x}")
            bug = True
        correct = vma_compute_subtree_gap(mt, vma)
        if vma.rb_subtree_gap != correct:
            out.append(f"free gap {vma.rb_subtree_gap:x}, correct {correct:x} at {vma!r}")
            bug = True
        i += 1
        if id(nd) in seen:
            out.append(f"rb_next() comes back to {vma!r} after {i} nodes")
            return -1
        seen.add(id(nd))
        pn = nd
        prev = vma.vm_start
        pend = vma.vm_end
        nd = rb_next(nd)
    j = 0
    nd = pn
    while nd is not None and j <= i:
        j += 1
        nd = rb_prev(nd)
    if i != j:
        out.append(f"backwards {j}, forwards {i}")
        bug = True
    return -1 if bug else i


def validate_mm_rb(mt: VmaTree[V], ignore: Optional[V] = None) -> None:
    """validate_mm_rb(): every rb_subtree_gap except ``ignore``'s is right."""
    problems: list[str] = []
    nd = mt.mm_rb.rb_node
    if nd is not None:
        while nd.left is not None:
            nd = nd.left
    seen: set[int] = set()
    while nd is not None and id(nd) not in seen:
        seen.add(id(nd))
        vma = nd.owner
        if vma is not ignore:
            correct = vma_compute_subtree_gap(mt, vma)
            if vma.rb_subtree_gap != correct:
                problems.append(f"free gap {vma.rb_subtree_gap:x}, correct {correct:x} "
                                f"at {vma!r}")
        nd = rb_next(nd)
    if problems:
        raise VmaTreeError(problems)


def validate_mm(mt: VmaTree[V], verify_vma: Optional[Callable[[V], None]] = None) -> None:
    """validate_mm(): walk the vm_next list and the rbtree; raise VmaTreeError
    listing every inconsistency (VM_BUG_ON_MM).

    As in the kernel: map_count against the list and against browse_rb(),
    highest_vm_end, every gap (browse_rb), and ``verify_vma(vma)`` for each
    VMA (mmap.py passes the anon_vma_interval_tree_verify() loop). Beyond the
    kernel: vm_prev back-links, list order == rbtree order, the red-black
    properties, and that mmap_cache is a linked VMA.
    """
    problems: list[str] = []
    i = 0
    highest_address = 0
    listed: list[V] = []
    seen: set[int] = set()
    before: Optional[V] = None
    vma = mt.mmap
    while vma is not None:
        if verify_vma is not None:
            try:
                verify_vma(vma)
            except Exception as exc:  # noqa: BLE001 - collect, report together
                problems.append(f"{vma!r}: {exc}")
        if vma.vm_prev is not before:
            problems.append(f"{vma!r}->vm_prev is {vma.vm_prev!r}, list says {before!r}")
        highest_address = vm_end_gap(vma, mt.stack_guard_gap)
        listed.append(vma)
        before = vma
        vma = vma.vm_next
        i += 1
        if id(vma) in seen:
            problems.append(f"vm_next list comes back to {vma!r} after {i} VMAs")
            break
        seen.add(id(vma))
    if i != mt.map_count:
        problems.append(f"map_count {mt.map_count} vm_next {i}")
    if highest_address != mt.highest_vm_end:
        problems.append(f"mm->highest_vm_end {mt.highest_vm_end:x}, found {highest_address:x}")
    rb_count = browse_rb(mt, problems)
    if rb_count != mt.map_count:
        if rb_count != -1:
            problems.append(f"map_count {mt.map_count} rb {rb_count}")
        problems.append("browse_rb failed" if rb_count == -1 else "rb count mismatch")
    if rb_count >= 0:
        try:
            rb_verify(mt.mm_rb)
        except RbTreeError as exc:
            problems.append(f"rbtree: {exc}")
        in_order = [nd.owner for nd in _rb_nodes(mt.mm_rb)]
        if len(in_order) == len(listed) and any(a is not b for a, b in zip(in_order, listed)):
            problems.append("vm_next list order differs from rbtree order")
    cached = mt.mmap_cache
    if cached is not None and (cached.vm_rb.parent is cached.vm_rb
                               or not any(v is cached for v in listed)):
        problems.append(f"mmap_cache {cached!r} is not a linked VMA")
    if problems:
        raise VmaTreeError(problems)


def _rb_nodes(root: RbRoot[V]) -> Iterator[RbNode[V]]:
    """In-order nodes, stopping if the walk comes back to a node."""
    nd = root.rb_node
    if nd is not None:
        while nd.left is not None:
            nd = nd.left
    seen: set[int] = set()
    while nd is not None and id(nd) not in seen:
        seen.add(id(nd))
        yield nd
        nd = rb_next(nd)


__all__ = [
    "DEFAULT_STACK_GUARD_GAP", "VM_GROWSDOWN", "VM_GROWSUP", "VM_UNMAPPED_AREA_TOPDOWN",
    "VmUnmappedAreaInfo", "VmaLike", "VmaLinks", "VmaTree", "VmaTreeError",
    "_insert_vm_struct", "_vma_link", "_vma_link_list", "_vma_link_rb",
    "_vma_unlink_common", "_vma_unlink_prev", "browse_rb", "detach_vmas_to_be_unmapped",
    "find_vma", "find_vma_intersection", "find_vma_links", "find_vma_prev",
    "for_each_vma_range", "unmapped_area", "unmapped_area_topdown", "validate_mm",
    "validate_mm_rb", "vm_end_gap", "vm_start_gap", "vm_unmapped_area", "vma_adjust_gaps",
    "vma_compute_subtree_gap", "vma_gap_update", "vma_rb_erase", "vma_rb_insert",
    "vma_tree_clear", "vma_tree_remove",
]
