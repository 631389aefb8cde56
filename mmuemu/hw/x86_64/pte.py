"""x86-64 page-table entry bits (Intel SDM vol. 3A table 4-19; Linux pgtable_types.h).

Linux names: _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY,
_PAGE_PSE, _PAGE_GLOBAL, _PAGE_SPECIAL (software bit 9), _PAGE_PROTNONE (bit 8,
only meaningful when P is clear), _PAGE_NX (bit 63).
"""
from __future__ import annotations

from mmuemu._types import Access
from mmuemu.hw.pte import ADDR_MASK, LeafPerms, PteFormat, VmProt

_PAGE_PRESENT = 1 << 0
_PAGE_RW = 1 << 1
_PAGE_USER = 1 << 2
_PAGE_PWT = 1 << 3
_PAGE_PCD = 1 << 4
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_PSE = 1 << 7
_PAGE_GLOBAL = 1 << 8
_PAGE_PROTNONE = _PAGE_GLOBAL
_PAGE_SPECIAL = 1 << 9
_PAGE_NX = 1 << 63

_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY

# arch/x86/include/asm/pgtable_types.h (Linux 6.x)
PAGE_NONE = _PAGE_PROTNONE | _PAGE_ACCESSED
PAGE_SHARED = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_SHARED_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
PAGE_COPY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_COPY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
PAGE_READONLY = PAGE_COPY
PAGE_READONLY_EXEC = PAGE_COPY_EXEC

# arch/x86/mm/pgprot.c protection_map[], indexed by VM_READ|VM_WRITE|VM_EXEC|VM_SHARED
_PROTECTION_MAP: dict[tuple[bool, bool, bool, bool], int] = {}
for _r in (False, True):
    for _w in (False, True):
        for _x in (False, True):
            for _s in (False, True):
                if not (_r or _w or _x):
                    _v = PAGE_NONE
                elif _s and _w:
                    _v = PAGE_SHARED_EXEC if _x else PAGE_SHARED
                elif _w:
                    _v = PAGE_COPY_EXEC if _x else PAGE_COPY
                else:
                    _v = PAGE_READONLY_EXEC if _x else PAGE_READONLY
                _PROTECTION_MAP[(_r, _w, _x, _s)] = _v

_PTE_FLAGS_MASK = ~ADDR_MASK & ((1 << 64) - 1)
_MASK64 = (1 << 64) - 1
SWP_TYPE_BITS = 5
SWP_OFFSET_SHIFT = 8 + 1 + SWP_TYPE_BITS  # _PAGE_BIT_PROTNONE + 1 + SWP_TYPE_BITS
SWP_OFFSET_BITS = 64 - SWP_OFFSET_SHIFT


class X86_64Pte(PteFormat):
    """x86-64 PTE format with Linux's helpers."""

    name = "x86_64"
    level_names = ("pml4", "pdpt", "pd", "pt")
    task_size = 0x7FFF_FFFF_F000  # TASK_SIZE_MAX with 4-level paging

    def mk_table(self, table_pa: int) -> int:
        return table_pa | _PAGE_TABLE

    table_mask = _PAGE_PRESENT
    table_bits = _PAGE_PRESENT
    present_mask = _PAGE_PRESENT | _PAGE_PROTNONE
    write_mask = _PAGE_RW
    special_mask = _PAGE_SPECIAL
    write_dirty_set = _PAGE_RW | _PAGE_DIRTY
    write_dirty_clear = 0
    young_bits = _PAGE_ACCESSED

    def table_present(self, entry: int) -> bool:
        return bool(entry & _PAGE_PRESENT)

    def protection_map(self, prot: VmProt) -> int:
        return _PROTECTION_MAP[(prot.read, prot.write, prot.exec, prot.shared)]

    def pfn_pte(self, pfn: int, pgprot: int) -> int:
        return (pfn << 12) | pgprot

    def pte_present(self, pte: int) -> bool:
        return bool(pte & (_PAGE_PRESENT | _PAGE_PROTNONE))

    def pte_write(self, pte: int) -> bool:
        return bool(pte & _PAGE_RW)

    def pte_dirty(self, pte: int) -> bool:
        return bool(pte & _PAGE_DIRTY)

    def pte_young(self, pte: int) -> bool:
        return bool(pte & _PAGE_ACCESSED)

    def pte_special(self, pte: int) -> bool:
        return bool(pte & _PAGE_SPECIAL)

    def pte_user_exec(self, pte: int) -> bool:
        return bool(pte & _PAGE_USER) and not pte & _PAGE_NX

    def pte_mkwrite(self, pte: int) -> int:
        return pte | _PAGE_RW

    def pte_wrprotect(self, pte: int) -> int:
        return pte & ~_PAGE_RW

    def pte_mkdirty(self, pte: int) -> int:
        return pte | _PAGE_DIRTY

    def pte_mkclean(self, pte: int) -> int:
        return pte & ~_PAGE_DIRTY

    def pte_mkyoung(self, pte: int) -> int:
        return pte | _PAGE_ACCESSED

    def pte_mkold(self, pte: int) -> int:
        return pte & ~_PAGE_ACCESSED

    def pte_mkspecial(self, pte: int) -> int:
        return pte | _PAGE_SPECIAL

    def pte_modify(self, pte: int, pgprot: int) -> int:
        keep = ADDR_MASK | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_SPECIAL
        return (pte & keep) | (pgprot & ~keep & ((1 << 64) - 1))

    def leaf_perms(self, pte: int) -> LeafPerms:
        if not (pte & _PAGE_PRESENT) or not (pte & _PAGE_USER):
            return LeafPerms(False, False, False)
        return LeafPerms(True, bool(pte & _PAGE_RW), not (pte & _PAGE_NX))

    def hw_update(self, pte: int, access: Access) -> int | None:
        perms = self.leaf_perms(pte)
        if access == Access.WRITE:
            if not perms.write:
                return None
            return pte | _PAGE_ACCESSED | _PAGE_DIRTY
        if access == Access.FETCH and not perms.exec:
            return None
        if not perms.read:
            return None
        return pte | _PAGE_ACCESSED

    def fill_writable(self, pte: int) -> bool:
        return bool(pte & _PAGE_RW) and bool(pte & _PAGE_DIRTY)

    # arch/x86/include/asm/pgtable_64.h: the type in the top 5 bits, the offset
    # stored inverted (the L1TF mitigation) in bits 58:9, i.e. shifted left by
    # SWP_OFFSET_SHIFT (14) and back right by SWP_TYPE_BITS; P..PROTNONE clear.
    def swp_entry_to_pte(self, swp_type: int, offset: int) -> int:
        if not 0 <= swp_type < 1 << SWP_TYPE_BITS or not 0 <= offset < 1 << SWP_OFFSET_BITS:
            raise ValueError(f"swap entry ({swp_type}, {offset}) out of range")
        inv = (~offset & _MASK64) << SWP_OFFSET_SHIFT & _MASK64
        return (inv >> SWP_TYPE_BITS) | (swp_type << (64 - SWP_TYPE_BITS))

    def pte_to_swp_entry(self, pte: int) -> tuple[int, int]:
        swp_type = pte >> (64 - SWP_TYPE_BITS)
        offset = ((~pte & _MASK64) << SWP_TYPE_BITS & _MASK64) >> SWP_OFFSET_SHIFT
        return swp_type, offset
