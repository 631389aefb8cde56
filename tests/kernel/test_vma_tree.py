"""mm/mmap.c VMA tree model: the rbtree with rb_subtree_gap, the vm_next list,
find_vma and vm_unmapped_area against brute-force references over a plain
sorted list of VMAs, and validate_mm against deliberately corrupted trees.
"""
from __future__ import annotations

import errno
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmuemu.kernel.rbtree import RB_BLACK, RbNode
from mmuemu.kernel.vma_tree import (
    VM_GROWSDOWN, VM_UNMAPPED_AREA_TOPDOWN, VmaTree, VmaTreeError, VmUnmappedAreaInfo,
    _insert_vm_struct, browse_rb, detach_vmas_to_be_unmapped, find_vma,
    find_vma_intersection, find_vma_links, find_vma_prev, for_each_vma_range, unmapped_area,
    unmapped_area_topdown, validate_mm, vm_unmapped_area, vma_adjust_gaps, vma_gap_update,
    vma_tree_clear, vma_tree_remove,
)

PAGE = 4096
ENOMEM = -errno.ENOMEM
INF = 1 << 64


@dataclass(eq=False)
class Vma:
    """The minimal VMA the tree needs."""

    vm_start: int
    vm_end: int
    vm_flags: int = 0
    vm_rb: RbNode["Vma"] = field(init=False, repr=False)
    rb_subtree_gap: int = field(default=0, repr=False)
    vm_next: Optional["Vma"] = field(default=None, repr=False)
    vm_prev: Optional["Vma"] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.vm_rb = RbNode(self)


# --- brute-force references: a sorted Python list, no tree -------------------------------


def ref_start_gap(v: Vma, guard: int) -> int:
    return max(0, v.vm_start - guard) if v.vm_flags & VM_GROWSDOWN else v.vm_start


def ref_gaps(ref: list[Vma], guard: int) -> list[tuple[int, int]]:
    """(gap_start, gap_end) below each VMA in address order, then the top gap."""
    gaps = []
    prev_end = 0
    for v in ref:
        gaps.append((prev_end, ref_start_gap(v, guard)))
        prev_end = v.vm_end
    gaps.append((prev_end, INF))
    return gaps


def ref_find_vma(ref: list[Vma], addr: int) -> Optional[Vma]:
    for v in ref:
        if v.vm_end > addr:
            return v
    return None


def ref_highest_free_topdown(ref: list[Vma], guard: int, length: int, low: int,
                             high: int) -> int:
    """Semantic reference (no alignment): the highest page-aligned address a
    with [a, a+length) inside one gap and inside [low, high]."""
    for gs, ge in reversed(ref_gaps(ref, guard)):
        lo, hi = max(gs, low), min(ge, high)
        if hi - lo >= length:
            return hi - length
    return ENOMEM


def ref_lowest_free_bottomup(ref: list[Vma], guard: int, length: int, low: int,
                             high: int) -> int:
    for gs, ge in ref_gaps(ref, guard):
        lo, hi = max(gs, low), min(ge, high)
        if hi - lo >= length:
            return lo
    return ENOMEM


def ref_linux_topdown(ref: list[Vma], guard: int, length: int, low: int, high: int,
                      mask: int, offset: int) -> int:
    """mm/mmap.c's rule on a gap list: the highest gap of size >= length+mask
    starting at or below high-(length+mask) and ending at or above
    low+(length+mask); then the highest aligned address in it."""
    need = length + mask
    if high < need or low > high - need:
        return ENOMEM
    for gs, ge in reversed(ref_gaps(ref, guard)):
        if ge < low + need:
            return ENOMEM
        if gs <= high - need and ge - gs >= need:
            a = min(ge, high) - length
            return a - ((a - offset) & mask)
    return ENOMEM


def ref_linux_bottomup(ref: list[Vma], guard: int, length: int, low: int, high: int,
                       mask: int, offset: int) -> int:
    need = length + mask
    if high < need or low > high - need:
        return ENOMEM
    for gs, ge in ref_gaps(ref, guard):
        if gs > high - need:
            return ENOMEM
        if ge >= low + need and ge - gs >= need:
            a = max(gs, low)
            return a + ((offset - a) & mask)
    return ENOMEM


def monotone_start_gaps(ref: list[Vma], guard: int) -> bool:
    """vm_start_gap() never decreases along the list. Only then is the tree
    search a pure function of the gap list: with a stack's guard gap reaching
    below its predecessor's start, mm/mmap.c prunes (bottom-up: skips a left
    subtree; top-down: returns -ENOMEM early) on a gap_end that is lower than
    a gap_end further on, and the result depends on the tree's shape."""
    starts = [ref_start_gap(v, guard) for v in ref]
    return all(a <= b for a, b in zip(starts, starts[1:]))


class _Stop(Exception):
    """-ENOMEM out of the middle of a recursive search."""


def rec_linux_topdown(mt: VmaTree[Vma], length: int, low: int, high: int, mask: int,
                      offset: int) -> int:
    """mm/mmap.c's top-down search written as a recursion over the real tree
    (reverse in-order, pruned by rb_subtree_gap): an independent second
    implementation of the goto state machine, shape quirks included."""
    guard = mt.stack_guard_gap
    need = length + mask
    if high < need or low > high - need:
        return ENOMEM
    hl, ll = high - need, low + need
    if mt.highest_vm_end <= hl:
        a = high - length
        return a - ((a - offset) & mask)

    def search(rb: Optional[RbNode[Vma]]) -> Optional[int]:
        if rb is None or rb.owner.rb_subtree_gap < need:
            return None
        v = rb.owner
        gs = v.vm_prev.vm_end if v.vm_prev is not None else 0
        if gs <= hl:
            r = search(rb.right)
            if r is not None:
                return r
        ge = ref_start_gap(v, guard)
        if ge < ll:
            raise _Stop
        if gs <= hl and ge > gs and ge - gs >= need:
            a = min(ge, high) - length
            return a - ((a - offset) & mask)
        return search(rb.left)

    try:
        r = search(mt.mm_rb.rb_node)
    except _Stop:
        return ENOMEM
    return ENOMEM if r is None else r


def rec_linux_bottomup(mt: VmaTree[Vma], length: int, low: int, high: int, mask: int,
                       offset: int) -> int:
    """mm/mmap.c's bottom-up search as an in-order recursion (see above)."""
    guard = mt.stack_guard_gap
    need = length + mask
    if high < need or low > high - need:
        return ENOMEM
    hl, ll = high - need, low + need

    def search(rb: Optional[RbNode[Vma]]) -> Optional[int]:
        if rb is None or rb.owner.rb_subtree_gap < need:
            return None
        v = rb.owner
        ge = ref_start_gap(v, guard)
        if ge >= ll:
            r = search(rb.left)
            if r is not None:
                return r
        gs = v.vm_prev.vm_end if v.vm_prev is not None else 0
        if gs > hl:
            raise _Stop
        if ge >= ll and ge > gs and ge - gs >= need:
            return max(gs, low)
        return search(rb.right)

    try:
        r = search(mt.mm_rb.rb_node)
    except _Stop:
        return ENOMEM
    if r is None:
        if mt.highest_vm_end > hl:
            return ENOMEM
        r = max(mt.highest_vm_end, low)
    return r + ((offset - r) & mask)


def check_against_ref(mt: VmaTree[Vma], ref: list[Vma], rng: random.Random, space: int,
                      nqueries: int = 12) -> None:
    """Everything the tree says, checked against the list."""
    guard = mt.stack_guard_gap
    validate_mm(mt)
    assert len(mt) == mt.map_count == len(ref)
    assert list(mt) == ref
    assert list(reversed(mt)) == ref[::-1]
    assert mt.mmap is (ref[0] if ref else None)
    assert mt.highest_vm_end == (ref[-1].vm_end if ref else 0)
    # Every rb_subtree_gap recomputed from scratch, bottom-up.
    post: list[RbNode[Vma]] = []
    walk = [mt.mm_rb.rb_node] if mt.mm_rb.rb_node is not None else []
    while walk:
        n = walk.pop()
        post.append(n)
        walk.extend(c for c in (n.left, n.right) if c is not None)
    index = {id(v): i for i, v in enumerate(ref)}
    want: dict[int, int] = {}
    for n in reversed(post):
        v = n.owner
        i = index[id(v)]
        own = ref_start_gap(v, guard) - (ref[i - 1].vm_end if i else 0)
        want[id(n)] = max([max(own, 0)] + [want[id(c)] for c in (n.left, n.right) if c])
        assert v.rb_subtree_gap == want[id(n)], f"gap of {v}"
    if mt.mm_rb.rb_node is not None:
        assert mt.mm_rb.rb_node.color == RB_BLACK
    # find_vma / find_vma_prev / find_vma_intersection
    probes = [rng.randrange(space + 2 * PAGE) for _ in range(nqueries)]
    for v in ref[:4] + ref[-4:]:
        probes += [v.vm_start - 1, v.vm_start, v.vm_end - 1, v.vm_end]
    for addr in probes:
        got = find_vma(mt, addr)
        assert got is ref_find_vma(ref, addr), hex(addr)
        vma, prev = find_vma_prev(mt, addr)
        assert vma is got
        before = [v for v in ref if v.vm_end <= addr]
        assert prev is (before[-1] if before else None)
        end = addr + rng.randrange(1, 64) * PAGE
        hit = find_vma_intersection(mt, addr, end)
        overlapping = [v for v in ref if v.vm_start < end and addr < v.vm_end]
        assert hit is (overlapping[0] if overlapping else None)
        assert list(for_each_vma_range(mt, addr, end)) == overlapping
    # vm_unmapped_area, both directions
    monotone = monotone_start_gaps(ref, guard)
    for _ in range(nqueries):
        length = rng.choice([1, 1, 2, 3, 8, 64, 300]) * PAGE
        low = rng.choice([0, PAGE, rng.randrange(space // PAGE) * PAGE])
        high = rng.choice([space, space + 16 * PAGE, rng.randrange(space // PAGE + 1) * PAGE])
        for mask, offset in ((0, 0), (rng.choice([0xF000, 0x1F000, 0xFF000]),
                                      rng.randrange(64) * PAGE)):
            td = unmapped_area_topdown(mt, length, low, high, mask, offset)
            bu = unmapped_area(mt, length, low, high, mask, offset)
            assert td == rec_linux_topdown(mt, length, low, high, mask, offset)
            assert bu == rec_linux_bottomup(mt, length, low, high, mask, offset)
            if monotone:
                assert td == ref_linux_topdown(ref, guard, length, low, high, mask, offset)
                assert bu == ref_linux_bottomup(ref, guard, length, low, high, mask, offset)
                if mask == 0:
                    assert td == ref_highest_free_topdown(ref, guard, length, low, high)
                    assert bu == ref_lowest_free_bottomup(ref, guard, length, low, high)
            for placed in (td, bu):
                if placed != ENOMEM:
                    assert (placed - offset) & mask == 0
                    assert low <= placed and placed + length <= high
                    assert _is_free(ref, guard, placed, length)


def _is_free(ref: list[Vma], guard: int, addr: int, length: int) -> bool:
    return any(gs <= addr and addr + length <= ge for gs, ge in ref_gaps(ref, guard))


# --- random operation driver --------------------------------------------------------------


class Driver:
    """Applies random tree operations to a VmaTree and to a plain sorted list."""

    def __init__(self, rng: random.Random, space_pages: int, guard_pages: int,
                 debug: bool) -> None:
        self.rng = rng
        self.space = space_pages * PAGE
        self.mt: VmaTree[Vma] = VmaTree(stack_guard_gap=guard_pages * PAGE, debug_vm_rb=debug)
        self.ref: list[Vma] = []

    def _flags(self) -> int:
        return VM_GROWSDOWN if self.rng.random() < 0.15 else 0

    def insert(self) -> None:
        rng = self.rng
        start = rng.randrange(self.space // PAGE) * PAGE
        end = start + rng.choice([1, 1, 2, 4, 16, 64]) * PAGE
        vma = Vma(start, end, self._flags())
        clash = [v for v in self.ref if v.vm_start < end and start < v.vm_end]
        if clash:
            assert find_vma_links(self.mt, start, end) is None
            with pytest.raises(VmaTreeError, match="overlaps"):
                _insert_vm_struct(self.mt, vma)
            return
        links = find_vma_links(self.mt, start, end)
        assert links is not None
        before = [v for v in self.ref if v.vm_end <= start]
        assert links.prev is (before[-1] if before else None)
        _insert_vm_struct(self.mt, vma)
        self.ref.insert(len(before), vma)

    def remove(self) -> None:
        if self.ref:
            vma = self.ref.pop(self.rng.randrange(len(self.ref)))
            vma_tree_remove(self.mt, vma)
            assert vma.vm_rb.parent is vma.vm_rb  # cleared
            assert self.mt.mmap_cache is not vma

    def adjust(self) -> None:
        """Move one VMA's bounds in place (__vma_adjust without insert/remove)."""
        if not self.ref:
            return
        i = self.rng.randrange(len(self.ref))
        vma = self.ref[i]
        lo = self.ref[i - 1].vm_end if i else 0
        hi = (self.ref[i + 1].vm_start if i + 1 < len(self.ref)
              else max(vma.vm_end, self.space + 8 * PAGE))
        start = self.rng.randrange(lo // PAGE, vma.vm_end // PAGE) * PAGE
        end = self.rng.randrange(start // PAGE + 1, hi // PAGE + 1) * PAGE
        start_changed, end_changed = start != vma.vm_start, end != vma.vm_end
        vma.vm_start, vma.vm_end = start, end
        vma_adjust_gaps(self.mt, vma, start_changed, end_changed)

    def detach(self) -> None:
        if not self.ref:
            return
        i = self.rng.randrange(len(self.ref))
        k = self.rng.randrange(1, 4)
        victims = self.ref[i:i + k]
        prev = self.ref[i - 1] if i else None
        got = detach_vmas_to_be_unmapped(self.mt, victims[0], prev, victims[-1].vm_end)
        assert got == victims
        assert victims[0].vm_prev is None and victims[-1].vm_next is None
        del self.ref[i:i + k]

    def flip_growsdown(self) -> None:
        if self.ref:
            vma = self.rng.choice(self.ref)
            vma.vm_flags ^= VM_GROWSDOWN
            vma_gap_update(self.mt, vma)

    def step(self) -> None:
        op = self.rng.choices([self.insert, self.remove, self.adjust, self.detach,
                               self.flip_growsdown], weights=[10, 4, 4, 1, 1])[0]
        op()


@pytest.mark.parametrize("seed,guard_pages,debug", [
    (1, 0, False), (2, 1, True), (3, 16, False), (4, 256, False), (5, 3, True),
])
def test_vma_tree_random_ops_against_sorted_list(seed: int, guard_pages: int,
                                                 debug: bool) -> None:
    rng = random.Random(seed)
    d = Driver(rng, space_pages=2048, guard_pages=guard_pages, debug=debug)
    for i in range(700):
        d.step()
        if i % 7 == 0:
            check_against_ref(d.mt, d.ref, rng, d.space)
    check_against_ref(d.mt, d.ref, rng, d.space, nqueries=200)


def test_vma_tree_large_dense_layout() -> None:
    """1000+ VMAs with small holes and a few stacks; many queries."""
    rng = random.Random(11)
    d = Driver(rng, space_pages=1 << 16, guard_pages=32, debug=False)
    while len(d.ref) < 1200:
        d.insert()
    check_against_ref(d.mt, d.ref, rng, d.space, nqueries=400)
    for _ in range(600):
        d.step()
    check_against_ref(d.mt, d.ref, rng, d.space, nqueries=400)


OPS = st.lists(st.tuples(st.sampled_from(["insert", "insert", "remove", "adjust", "detach",
                                          "flip_growsdown"]), st.integers(0, 2**32)),
               min_size=1, max_size=60)


@settings(max_examples=80, deadline=None)
@given(OPS, st.sampled_from([0, 1, 4, 64]))
def test_vma_tree_hypothesis(ops: list[tuple[str, int]], guard_pages: int) -> None:
    d = Driver(random.Random(0), space_pages=256, guard_pages=guard_pages, debug=True)
    for name, seed in ops:
        d.rng.seed(seed)
        getattr(d, name)()
        check_against_ref(d.mt, d.ref, d.rng, d.space, nqueries=4)


# --- fixed scenarios ------------------------------------------------------------------------


def build(layout: list[tuple[int, int, int]], guard_pages: int = 256) -> VmaTree[Vma]:
    mt: VmaTree[Vma] = VmaTree(stack_guard_gap=guard_pages * PAGE, debug_vm_rb=True)
    for start, end, flags in layout:
        _insert_vm_struct(mt, Vma(start * PAGE, end * PAGE, flags))
    return mt


def test_unmapped_area_topdown_keeps_stack_guard_gap() -> None:
    # a stack at pages [1000, 1010) with a 256-page guard; mmap_base above it
    mt = build([(10, 20, 0), (1000, 1010, VM_GROWSDOWN)])
    # Room just under the stack exists only inside the guard gap: must skip to below 744.
    assert unmapped_area_topdown(mt, 4 * PAGE, PAGE, 1000 * PAGE) == (744 - 4) * PAGE
    # Without the flag the same request lands right under the VMA.
    plain = build([(10, 20, 0), (1000, 1010, 0)])
    assert unmapped_area_topdown(plain, 4 * PAGE, PAGE, 1000 * PAGE) == 996 * PAGE


def test_unmapped_area_topdown_highest_gap_above_everything() -> None:
    mt = build([(10, 20, 0), (30, 40, 0)])
    assert mt.highest_vm_end == 40 * PAGE
    assert unmapped_area_topdown(mt, PAGE, PAGE, 100 * PAGE) == 99 * PAGE
    # high_limit inside the last VMA's reach: the gap between the two
    assert unmapped_area_topdown(mt, 10 * PAGE, PAGE, 40 * PAGE) == 20 * PAGE
    assert unmapped_area_topdown(mt, 11 * PAGE, PAGE, 40 * PAGE) == -errno.ENOMEM
    assert unmapped_area_topdown(mt, 9 * PAGE, 0, 40 * PAGE) == 21 * PAGE


def test_unmapped_area_alignment_and_offset() -> None:
    mt = build([(0x100, 0x200, 0), (0x1000, 0x1001, 0)])
    mask = 0xFF000  # 1 MiB alignment
    got = unmapped_area_topdown(mt, 3 * PAGE, PAGE, 0x1000 * PAGE, mask, 0x5000)
    # highest gap [0x200000, 0x1000000): top 0xFFD000, aligned down to 0xF05000
    assert got == 0xF05000
    assert (got - 0x5000) & mask == 0 and got + 3 * PAGE <= 0x1000 * PAGE
    assert got == ref_linux_topdown(list(mt), mt.stack_guard_gap, 3 * PAGE, PAGE,
                                    0x1000 * PAGE, mask, 0x5000)
    info = VmUnmappedAreaInfo(length=3 * PAGE, low_limit=PAGE, high_limit=0x1000 * PAGE,
                              flags=VM_UNMAPPED_AREA_TOPDOWN, align_mask=mask,
                              align_offset=0x5000)
    assert vm_unmapped_area(mt, info) == got
    up = vm_unmapped_area(mt, VmUnmappedAreaInfo(3 * PAGE, PAGE, 0x1000 * PAGE,
                                                 align_mask=mask, align_offset=0x5000))
    # the gap below 0x100000 is too small with the alignment slack: 0x200000 up to 0x205000
    assert up == 0x205000 and (up - 0x5000) & mask == 0


def test_unmapped_area_empty_tree_and_bad_limits() -> None:
    mt: VmaTree[Vma] = VmaTree()
    assert unmapped_area_topdown(mt, PAGE, PAGE, 10 * PAGE) == 9 * PAGE
    assert unmapped_area(mt, PAGE, PAGE, 10 * PAGE) == PAGE
    assert unmapped_area_topdown(mt, 10 * PAGE, PAGE, 10 * PAGE) == -errno.ENOMEM
    assert unmapped_area(mt, 20 * PAGE, PAGE, 10 * PAGE) == -errno.ENOMEM
    assert find_vma(mt, 0) is None and find_vma_prev(mt, 5) == (None, None)


def test_find_vma_cache_is_invalidated_on_unlink() -> None:
    mt = build([(1, 2, 0), (5, 9, 0)])
    hit = find_vma(mt, 6 * PAGE)
    assert hit is not None and mt.mmap_cache is hit
    vma_tree_remove(mt, hit)
    assert mt.mmap_cache is None and find_vma(mt, 6 * PAGE) is None


def test_vma_tree_clear() -> None:
    mt = build([(1, 2, 0), (5, 9, 0), (20, 30, VM_GROWSDOWN)], guard_pages=2)
    vmas = vma_tree_clear(mt)
    assert [v.vm_start for v in vmas] == [PAGE, 5 * PAGE, 20 * PAGE]
    assert len(mt) == 0 and mt.mmap is None and mt.highest_vm_end == 0
    validate_mm(mt)
    _insert_vm_struct(mt, vmas[1])  # nodes were cleared: they can be reused
    validate_mm(mt)


# --- validate_mm catches corruption ---------------------------------------------------------


def corrupted(mutate: str) -> VmaTree[Vma]:
    mt = build([(i * 10, i * 10 + 5, VM_GROWSDOWN if i % 7 == 3 else 0) for i in range(40)],
               guard_pages=2)
    mt.debug_vm_rb = False
    vmas = list(mt)
    if mutate == "gap":
        vmas[17].rb_subtree_gap += PAGE
    elif mutate == "map_count":
        mt.map_count += 1
    elif mutate == "highest":
        mt.highest_vm_end += PAGE
    elif mutate == "order":
        vmas[20].vm_start = vmas[19].vm_start - PAGE  # overlaps its predecessor
    elif mutate == "start_gt_end":
        vmas[5].vm_start, vmas[5].vm_end = vmas[5].vm_end, vmas[5].vm_start
    elif mutate == "stale_start":
        vmas[12].vm_start -= 2 * PAGE  # no vma_gap_update()
    elif mutate == "list":
        vmas[8].vm_next = vmas[10]  # vmas[9] dropped from the list only
    elif mutate == "prev":
        vmas[8].vm_prev = vmas[2]
    elif mutate == "color":
        root = mt.mm_rb.rb_node
        assert root is not None
        root.color = 1 - root.color
    return mt


@pytest.mark.parametrize("mutate,message", [
    ("gap", "free gap"),
    ("map_count", "map_count 41 vm_next 40"),
    ("highest", "mm->highest_vm_end"),
    ("order", "< pend"),
    ("start_gt_end", "> vm_end"),
    ("stale_start", "free gap"),
    ("list", "map_count 40 vm_next 39"),
    ("prev", "vm_prev"),
    ("color", "rbtree"),
])
def test_validate_mm_catches_corruption(mutate: str, message: str) -> None:
    mt = corrupted(mutate)
    with pytest.raises(VmaTreeError, match=message) as info:
        validate_mm(mt)
    assert info.value.problems


def test_browse_rb_counts_and_reports() -> None:
    mt = corrupted("none")
    assert browse_rb(mt) == 40
    report: list[str] = []
    mt = corrupted("gap")
    assert browse_rb(mt, report) == -1
    assert any(r.startswith("free gap") for r in report)


def test_debug_vm_rb_catches_missing_gap_update_at_next_insert() -> None:
    mt = build([(i * 10, i * 10 + 5, 0) for i in range(1, 17)])
    vma = find_vma(mt, 0)
    assert vma is not None and vma.vm_rb.left is None and vma.vm_rb.right is None
    vma.vm_start -= 2 * PAGE  # forgot vma_gap_update(); not on the new node's path
    with pytest.raises(VmaTreeError, match="free gap"):
        _insert_vm_struct(mt, Vma(1000 * PAGE, 1001 * PAGE))


def test_validate_mm_runs_verify_hook() -> None:
    mt = build([(1, 2, 0), (3, 4, 0)])

    def verify(vma: Vma) -> None:
        if vma.vm_start == 3 * PAGE:
            raise ValueError("anon_vma chain out of date")

    with pytest.raises(VmaTreeError, match="anon_vma chain out of date"):
        validate_mm(mt, verify)


# --- O(log n): count the VMAs a lookup touches ---------------------------------------------


class CountingVma(Vma):
    touched: ClassVar[set[int]] = set()

    def __getattribute__(self, name: str) -> Any:
        if name in ("vm_start", "vm_end", "vm_flags", "rb_subtree_gap"):
            CountingVma.touched.add(id(self))
        return object.__getattribute__(self, name)


@pytest.mark.parametrize("n", [1 << 10, 1 << 13])
def test_searches_touch_o_log_n_vmas(n: int) -> None:
    rng = random.Random(n)
    mt: VmaTree[Any] = VmaTree(stack_guard_gap=0)  # CountingVma's links are typed Vma
    # VMAs of 2 pages with 1-page holes, one 64-page hole somewhere
    hole_at = rng.randrange(1, n)
    addr = PAGE
    vmas = []
    for i in range(n):
        if i == hole_at:
            addr += 64 * PAGE
        vmas.append(CountingVma(addr, addr + 2 * PAGE))
        addr += 3 * PAGE
    for v in rng.sample(vmas, n):
        _insert_vm_struct(mt, v)
    top = addr + PAGE
    log2n = n.bit_length()
    for _ in range(50):
        target = rng.choice(vmas)
        mt.mmap_cache = None
        CountingVma.touched.clear()
        assert find_vma(mt, target.vm_start + PAGE) is target
        assert len(CountingVma.touched) <= 2 * log2n
    CountingVma.touched.clear()
    got = unmapped_area_topdown(mt, 32 * PAGE, PAGE, top)
    assert got == vmas[hole_at].vm_start - 32 * PAGE
    assert len(CountingVma.touched) <= 6 * log2n, len(CountingVma.touched)
    CountingVma.touched.clear()
    got = unmapped_area(mt, 32 * PAGE, PAGE, top)
    assert got == vmas[hole_at - 1].vm_end
    assert len(CountingVma.touched) <= 6 * log2n, len(CountingVma.touched)


def test_stack_guard_below_predecessor_quirk_is_modelled() -> None:
    """A stack's guard gap reaching below its predecessor's start makes
    mm/mmap.c's searches miss a fitting gap below that predecessor when the
    stack's node is visited first: top-down stops early with -ENOMEM,
    bottom-up prunes the stack's left subtree. Kept as in Linux 4.12-6.0."""
    mt = build([(10, 20, 0), (30, 40, VM_GROWSDOWN), (100, 110, 0)], guard_pages=25)
    root = mt.mm_rb.rb_node
    assert root is not None and root.owner.vm_flags & VM_GROWSDOWN  # the stack is visited
    ref = list(mt)
    args = (2 * PAGE, 8 * PAGE, 40 * PAGE)
    assert ref_highest_free_topdown(ref, mt.stack_guard_gap, *args) == 8 * PAGE
    assert unmapped_area_topdown(mt, *args) == -errno.ENOMEM
    assert rec_linux_topdown(mt, *args, 0, 0) == -errno.ENOMEM
    # bottom-up skips S's left subtree for the same reason
    assert ref_lowest_free_bottomup(ref, mt.stack_guard_gap, *args) == 8 * PAGE
    assert unmapped_area(mt, *args) == -errno.ENOMEM
    assert rec_linux_bottomup(mt, *args, 0, 0) == -errno.ENOMEM


def test_vm_growsdown_matches_mm_types() -> None:
    from mmuemu.kernel.mm_types import VM
    assert VM_GROWSDOWN == VM.GROWSDOWN
