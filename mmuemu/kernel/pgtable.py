"""Page-table access for the kernel model (pgd_offset … pte_offset, p?d_alloc, set_pte_at).

Tables live in emulated physical memory in the architecture's own format;
every entry is built and read through the :class:`~mmuemu.hw.pte.PteFormat`
of the machine, so this module is arch independent. The p4d level is folded,
as on 4-level kernels: pgd → pud → pmd → pte.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mmuemu.hw.pte import ADDR_MASK
from mmuemu.kernel.mm_types import NO_PTE_TABLE_HINT, MmStruct, VmAreaStruct

PTRS_PER_TABLE = 512
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT
_LEVEL_SHIFT = (39, 30, 21, 12)


def _entry_pa(table_pa: int, addr: int, level: int) -> int:
    return table_pa + (((addr >> _LEVEL_SHIFT[level]) & 0x1FF) << 3)


def __pte_alloc_one(mm: MmStruct) -> int:
    """pte_alloc_one()/pmd_alloc_one()/pud_alloc_one(): a zeroed table page."""
    page = mm.kernel.alloc_page(kind="pgtable", zero=True)
    mm.nr_ptes += 1
    return page.pfn << 12


def pte_offset_alloc(mm: MmStruct, addr: int) -> int:
    """pud_alloc() → pmd_alloc() → pte_alloc_map(): the PTE slot for ``addr``.

    Allocates missing intermediate tables (each write of a table entry is
    p?d_populate()). Returns the physical address of the PTE.
    Raises OutOfMemory if a table page cannot be allocated.
    """
    kern = mm.kernel
    words = kern.phys.words
    key, i, entry, table = mm.pte_table_hint
    if key == addr >> 21 and words[i] == entry:
        return table + ((addr >> 9) & 0xFF8)  # + pte_index(addr) * 8
    fmt = kern.fmt
    mask = fmt.table_mask
    bits = fmt.table_bits
    table = mm.pgd
    i = entry = 0
    for shift in (39, 30, 21):
        i = (table >> 3) + ((addr >> shift) & 0x1FF)
        entry = words[i]
        if entry & mask != bits:  # !p?d_present()
            new = __pte_alloc_one(mm)
            entry = words[i] = fmt.mk_table(new)
        table = entry & ADDR_MASK
    mm.pte_table_hint = (addr >> 21, i, entry, table)
    return table + ((addr >> 9) & 0xFF8)


def pte_offset_lookup(mm: MmStruct, addr: int) -> int | None:
    """pgd_offset() … pte_offset_map() without allocating: None if a table is missing."""
    kern = mm.kernel
    words = kern.phys.words
    mask = kern.fmt.table_mask
    bits = kern.fmt.table_bits
    table = mm.pgd
    for shift in (39, 30, 21):
        entry = words[(table >> 3) + ((addr >> shift) & 0x1FF)]
        if entry & mask != bits:
            return None
        table = entry & ADDR_MASK
    return table + (((addr >> 12) & 0x1FF) << 3)


def pmd_table(mm: MmStruct, addr: int) -> int | None:
    """Physical address of the last-level table covering ``addr`` (None if absent)."""
    pte_pa = pte_offset_lookup(mm, addr)
    return None if pte_pa is None else pte_pa & ~0xFFF


def ptep_get(mm: MmStruct, pte_pa: int) -> int:
    """READ_ONCE(*ptep)."""
    return mm.kernel.phys.words[pte_pa >> 3]


def set_pte_at(mm: MmStruct, addr: int, pte_pa: int, pte: int) -> None:
    """set_pte_at(): store a PTE (no TLB maintenance: callers decide).

    On arm64 a present, user-executable, non-special PTE first gets its
    page's I-cache synchronised (__set_pte_at → __sync_icache_dcache;
    kernel/cacheflush.py). The test is __set_pte_at's, here, as masks: every
    PTE the fault path writes comes through here, and few are executable.
    """
    kern = mm.kernel
    hook = kern.set_pte_hook
    if hook is not None and pte & kern.fmt.present_mask and not pte & kern.set_pte_hook_skip:
        hook(mm, addr, pte)
    kern.phys.words[pte_pa >> 3] = pte


def pte_clear(mm: MmStruct, addr: int, pte_pa: int) -> None:
    """pte_clear(): empty a PTE slot."""
    mm.kernel.phys.words[pte_pa >> 3] = 0


def ptep_clear_flush(vma: VmAreaStruct, addr: int, pte_pa: int) -> int:
    """ptep_clear_flush(): clear the PTE and flush its TLB entry; returns the old PTE."""
    mm = vma.vm_mm
    kern = mm.kernel
    words = kern.phys.words
    old = words[pte_pa >> 3]  # ptep_get()
    words[pte_pa >> 3] = 0  # pte_clear()
    if old & kern.fmt.present_mask:  # pte_present()
        kern.tlb.flush_tlb_page(mm, addr)
    return old


def ptep_get_and_clear(mm: MmStruct, addr: int, pte_pa: int) -> int:
    """ptep_get_and_clear(): clear and return the old PTE (caller batches the flush)."""
    old = ptep_get(mm, pte_pa)
    pte_clear(mm, addr, pte_pa)
    return old


def pte_tables(mm: MmStruct, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (addr, pte_pa, nr) for each last-level table that exists under
    [start, end): the PTEs of the ``nr`` pages from ``addr`` are the words
    from ``pte_pa`` on. This is the granularity of zap_pmd_range() and
    copy_pmd_range(), which hand one table's range at a time to
    zap_pte_range() / copy_pte_range(). Whole 2 MiB (and larger) regions
    without tables are skipped, as with p?d_none_or_clear_bad().
    """
    kern = mm.kernel
    words = kern.phys.words
    mask = kern.fmt.table_mask
    bits = kern.fmt.table_bits
    addr = start
    while addr < end:
        table = mm.pgd
        for shift in (39, 30, 21):
            entry = words[(table >> 3) + ((addr >> shift) & 0x1FF)]
            if entry & mask != bits:  # !p?d_present()
                span = 1 << shift
                addr = (addr & ~(span - 1)) + span
                break
            table = entry & ADDR_MASK
        else:
            next_pmd = min((addr & ~(PMD_SIZE - 1)) + PMD_SIZE, end)
            yield addr, table + ((addr >> 9) & 0xFF8), (next_pmd - addr) >> 12
            addr = next_pmd


def pte_range(mm: MmStruct, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Yield (addr, pte_pa) for each page in [start, end) whose PTE table exists
    (:func:`pte_tables`, one page at a time)."""
    for addr, pte_pa, nr in pte_tables(mm, start, end):
        for k in range(nr):
            yield addr + (k << 12), pte_pa + (k << 3)


def nonempty_ptes(mm: MmStruct, pte_pa: int, nr: int) -> list[int]:
    """The indices k < ``nr`` whose PTE at ``pte_pa + 8 * k`` is not pte_none():
    what a walk over one table's range visits (zap_pte_range, copy_pte_range),
    found in one pass over the table instead of a test per slot."""
    first = pte_pa >> 3
    return np.flatnonzero(mm.kernel.phys.u64[first:first + nr]).tolist()  # type: ignore[no-any-return]


def free_pgd_range(mm: MmStruct, start: int, end: int, floor: int, ceiling: int) -> int:
    """free_pgd_range(): free page-table pages left empty in [start, end).

    Only tables whose whole span lies inside [floor, ceiling) may go (floor
    and ceiling are the ends of the neighbouring VMAs, as free_pgtables()
    passes them; ceiling 0 means the top of the address space). A last-level
    table is freed when all its entries are empty, then each upper table that
    became empty. Walks only present entries. Returns table pages freed.
    """
    kern = mm.kernel
    u64 = kern.phys.u64
    words = kern.phys.words
    fmt = kern.fmt
    top = ceiling or (1 << 48)
    freed = 0
    mm.pte_table_hint = NO_PTE_TABLE_HINT  # the table it names may go

    def walk(table: int, level: int, base: int) -> bool:
        """Free what is empty below ``table``; True if ``table`` is now empty."""
        nonlocal freed
        shift = _LEVEL_SHIFT[level]
        span = 1 << shift
        first = max(0, (max(start, base) - base) >> shift)
        last = min(511, (min(end, base + (span << 9)) - 1 - base) >> shift)
        for i in range(first, last + 1):
            entry = words[(table >> 3) + i]
            if not fmt.table_present(entry):
                continue
            lo = base + i * span
            child = entry & ADDR_MASK
            if level == 2:
                empty = not u64[child >> 3:(child >> 3) + PTRS_PER_TABLE].any()
            else:
                empty = walk(child, level + 1, lo)
            # a neighbour may still map part of this table's span: keep it
            if empty and lo >= floor and lo + span <= top:
                words[(table >> 3) + i] = 0
                kern.put_page(kern.pfn_to_page(child >> 12))
                mm.nr_ptes -= 1
                freed += 1
        return not u64[table >> 3:(table >> 3) + PTRS_PER_TABLE].any()

    walk(mm.pgd, 0, 0)
    return freed
