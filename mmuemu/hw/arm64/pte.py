"""arm64 stage-1 descriptors, 4 KiB granule (Arm ARM D8.3; Linux pgtable-hwdef.h).

Leaf (level 3 page) bits: valid (0), type/page (1), AttrIndx[4:2], NS (5),
AP[1] = PTE_USER (6), AP[2] = PTE_RDONLY (7), SH[9:8], AF (10), nG (11),
output address [47:12], DBM = PTE_WRITE (51), Contiguous (52), PXN (53),
UXN (54); Linux software bits PTE_DIRTY (55), PTE_SPECIAL (56),
PTE_PROT_NONE (58). Dirty state follows Linux with hardware DBM: a writable
entry is clean while AP[2] is set; the hardware clears AP[2] on the first
write (FEAT_HAFDBS), and Linux's pte_dirty() is "sw dirty or hw dirty".
Table descriptors: bits[1:0] = 0b11, next-level table address [47:12],
PXNTable (59) set for user tables as Linux 6.x pmd_populate does.
"""
from __future__ import annotations

from mmuemu._types import Access
from mmuemu.hw.pte import ADDR_MASK, LeafPerms, PteFormat, VmProt

PTE_VALID = 1 << 0
PTE_TYPE_PAGE = 3 << 0
PTE_TABLE_BIT = 1 << 1
PTE_USER = 1 << 6  # AP[1]
PTE_RDONLY = 1 << 7  # AP[2]
PTE_SHARED = 3 << 8  # SH[1:0], inner shareable
PTE_AF = 1 << 10
PTE_NG = 1 << 11
PTE_DBM = 1 << 51
PTE_WRITE = PTE_DBM
PTE_CONT = 1 << 52
PTE_PXN = 1 << 53
PTE_UXN = 1 << 54
PTE_DIRTY = 1 << 55
PTE_SPECIAL = 1 << 56
PTE_PROT_NONE = 1 << 58
PMD_TYPE_TABLE = 3
PMD_TABLE_PXN = 1 << 59

SWP_TYPE_SHIFT, SWP_TYPE_BITS = 3, 5  # __SWP_TYPE_SHIFT, __SWP_TYPE_BITS
SWP_OFFSET_SHIFT, SWP_OFFSET_BITS = 8, 50

_PROT_DEFAULT = PTE_TYPE_PAGE | PTE_AF | PTE_SHARED
_PAGE_DEFAULT = _PROT_DEFAULT  # PTE_ATTRINDX(MT_NORMAL) == 0

# arch/arm64/include/asm/pgtable-prot.h (Linux 6.x)
PAGE_NONE = ((_PAGE_DEFAULT & ~PTE_VALID) | PTE_PROT_NONE | PTE_RDONLY | PTE_NG
             | PTE_PXN | PTE_UXN)
PAGE_SHARED = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN | PTE_WRITE
PAGE_SHARED_EXEC = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_WRITE
PAGE_READONLY = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN
PAGE_READONLY_EXEC = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN
PAGE_EXECONLY = _PAGE_DEFAULT | PTE_RDONLY | PTE_NG | PTE_PXN


def _protection(r: bool, w: bool, x: bool, s: bool) -> int:
    """arch/arm64/mm/mmap.c protection_map[] (private writable maps read-only: COW)."""
    if not (r or w or x):
        return PAGE_NONE
    if s and w:
        return PAGE_SHARED_EXEC if x else PAGE_SHARED
    if x:
        return PAGE_READONLY_EXEC if (r or w) else PAGE_EXECONLY
    return PAGE_READONLY


_PROTECTION_MAP = {(r, w, x, s): _protection(r, w, x, s)
                   for r in (False, True) for w in (False, True)
                   for x in (False, True) for s in (False, True)}


class Arm64Pte(PteFormat):
    """arm64 descriptor format with Linux's helpers (hardware AF and DBM)."""

    name = "aarch64"
    level_names = ("l0", "l1", "l2", "l3")
    task_size = 1 << 48  # TASK_SIZE with VA_BITS=48

    def mk_table(self, table_pa: int) -> int:
        return table_pa | PMD_TYPE_TABLE | PMD_TABLE_PXN

    table_mask = 3
    table_bits = PMD_TYPE_TABLE
    present_mask = PTE_VALID | PTE_PROT_NONE
    write_mask = PTE_WRITE
    special_mask = PTE_SPECIAL
    write_dirty_set = PTE_WRITE | PTE_DIRTY
    write_dirty_clear = PTE_RDONLY
    young_bits = PTE_AF

    def table_present(self, entry: int) -> bool:
        return (entry & 3) == PMD_TYPE_TABLE

    def protection_map(self, prot: VmProt) -> int:
        return _PROTECTION_MAP[(prot.read, prot.write, prot.exec, prot.shared)]

    def pfn_pte(self, pfn: int, pgprot: int) -> int:
        return (pfn << 12) | pgprot

    def pte_present(self, pte: int) -> bool:
        return bool(pte & (PTE_VALID | PTE_PROT_NONE))

    def pte_write(self, pte: int) -> bool:
        return bool(pte & PTE_WRITE)

    def _hw_dirty(self, pte: int) -> bool:
        return bool(pte & PTE_WRITE) and not (pte & PTE_RDONLY)

    def pte_dirty(self, pte: int) -> bool:
        return bool(pte & PTE_DIRTY) or self._hw_dirty(pte)

    def pte_young(self, pte: int) -> bool:
        return bool(pte & PTE_AF)

    def pte_special(self, pte: int) -> bool:
        return bool(pte & PTE_SPECIAL)

    def pte_user_exec(self, pte: int) -> bool:
        return not pte & PTE_UXN

    def pte_mkwrite(self, pte: int) -> int:
        pte |= PTE_WRITE
        if pte & PTE_DIRTY:
            pte &= ~PTE_RDONLY
        return pte

    def pte_wrprotect(self, pte: int) -> int:
        if self._hw_dirty(pte):
            pte |= PTE_DIRTY
        return (pte & ~PTE_WRITE) | PTE_RDONLY

    def pte_mkdirty(self, pte: int) -> int:
        pte |= PTE_DIRTY
        if pte & PTE_WRITE:
            pte &= ~PTE_RDONLY
        return pte

    def pte_mkclean(self, pte: int) -> int:
        return (pte & ~PTE_DIRTY) | PTE_RDONLY

    def pte_mkyoung(self, pte: int) -> int:
        return pte | PTE_AF

    def pte_mkold(self, pte: int) -> int:
        return pte & ~PTE_AF

    def pte_mkspecial(self, pte: int) -> int:
        return pte | PTE_SPECIAL

    def pte_modify(self, pte: int, pgprot: int) -> int:
        # arm64 pte_modify(): keep the frame, AF, dirty state; take the new prot.
        if self._hw_dirty(pte):
            pte |= PTE_DIRTY
        keep = ADDR_MASK | PTE_AF | PTE_DIRTY | PTE_SPECIAL
        new = (pte & keep) | (pgprot & ~keep & ((1 << 64) - 1))
        if new & PTE_DIRTY and new & PTE_WRITE:
            new &= ~PTE_RDONLY
        return new

    def leaf_perms(self, pte: int) -> LeafPerms:
        if not (pte & PTE_VALID):
            return LeafPerms(False, False, False)
        user = bool(pte & PTE_USER)
        writable = user and (not (pte & PTE_RDONLY) or bool(pte & PTE_DBM))
        return LeafPerms(user, writable, not (pte & PTE_UXN))

    def hw_update(self, pte: int, access: Access) -> int | None:
        perms = self.leaf_perms(pte)
        if access == Access.WRITE:
            if not perms.write:
                return None
            return (pte | PTE_AF) & ~PTE_RDONLY  # DBM: hardware marks it dirty
        if access == Access.FETCH:
            if not perms.exec:
                return None
        elif not perms.read:
            return None
        return pte | PTE_AF

    def fill_writable(self, pte: int) -> bool:
        return bool(pte & PTE_USER) and not (pte & PTE_RDONLY)

    # arch/arm64/include/asm/pgtable.h: type in bits 7:3, offset in bits 57:8;
    # valid (bit 0) and PTE_PROT_NONE (bit 58) stay clear.
    def swp_entry_to_pte(self, swp_type: int, offset: int) -> int:
        if not 0 <= swp_type < 1 << SWP_TYPE_BITS or not 0 <= offset < 1 << SWP_OFFSET_BITS:
            raise ValueError(f"swap entry ({swp_type}, {offset}) out of range")
        return (swp_type << SWP_TYPE_SHIFT) | (offset << SWP_OFFSET_SHIFT)

    def pte_to_swp_entry(self, pte: int) -> tuple[int, int]:
        return ((pte >> SWP_TYPE_SHIFT) & ((1 << SWP_TYPE_BITS) - 1),
                (pte >> SWP_OFFSET_SHIFT) & ((1 << SWP_OFFSET_BITS) - 1))
