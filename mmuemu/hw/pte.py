"""The page-table-format seam: one :class:`PteFormat` per architecture.

Both the kernel model (which builds and edits entries through the Linux-named
``pte_*`` helpers) and the hardware walker (which interprets them) go through
this interface, so arch differences live here and nowhere else.

Entries are plain Python ints holding the architected 64-bit encoding; they
are stored little-endian in emulated physical memory.

Levels are numbered from the top: level 0 is the PML4 (x86-64) / L0 table
(arm64), level 3 holds the last-level PTEs.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

from mmuemu._types import Access

LEVELS = 4
ENTRIES_PER_TABLE = 512
# Output-address bits 47:12. x86-64 defines bits 51:12 (MAXPHYADDR <= 52), but
# arm64 uses bit 51 for DBM with 48-bit output addresses, and emulated physical
# memory stays far below 2**48, so one mask serves both.
ADDR_MASK = 0x0000_FFFF_FFFF_F000


@dataclass(frozen=True, slots=True)
class VmProt:
    """The four vm_flags bits that index ``protection_map`` (VM_READ|WRITE|EXEC|SHARED)."""

    read: bool
    write: bool
    exec: bool
    shared: bool


@dataclass(frozen=True, slots=True)
class LeafPerms:
    """What a present leaf entry lets a user-mode access do, before A/D side effects."""

    read: bool
    write: bool
    exec: bool


#: the PteFormat attributes the fault path reads (PteFormat.__init__)
_FAULT_PATH_MASKS = ("table_mask", "table_bits", "present_mask", "write_mask", "special_mask",
                     "write_dirty_set", "write_dirty_clear", "young_bits")


class PteFormat(abc.ABC):
    """An architecture's page-table entry encoding and its Linux pte helpers."""

    name: str
    #: names of the four table levels, top first (for stats and traces)
    level_names: tuple[str, str, str, str]
    #: highest user virtual address + 1 (TASK_SIZE)
    task_size: int
    #: ``table_present(entry)`` is ``entry & table_mask == table_bits``; the
    #: kernel's table walks test it inline (a method call per level was a
    #: tenth of pte_offset_alloc's time)
    table_mask: int
    table_bits: int
    #: ``pte_present(pte)``, ``pte_write(pte)`` and ``pte_special(pte)`` are
    #: ``pte & mask != 0`` with these masks; the fault path tests them inline
    present_mask: int
    write_mask: int
    special_mask: int
    #: ``pte_mkwrite(pte_mkdirty(pte))`` is ``(pte | write_dirty_set) &
    #: ~write_dirty_clear`` and ``pte_mkyoung(pte)`` is ``pte | young_bits``;
    #: ``pfn_pte(pfn, prot)`` is ``pfn << 12 | prot`` on both formats
    write_dirty_set: int
    write_dirty_clear: int
    young_bits: int

    def __init__(self) -> None:
        # The masks above, which the fault path reads several times a fault,
        # as instance attributes: Python 3.11 reads an instance attribute in
        # about 2 ns and a class attribute through an instance in about 15.
        for name in _FAULT_PATH_MASKS:
            setattr(self, name, getattr(type(self), name))

    @staticmethod
    def index(va: int, level: int) -> int:
        """Index of ``va`` in a table at ``level`` (0 = top): 9 bits each."""
        return (va >> (39 - 9 * level)) & 0x1FF

    # --- non-leaf entries -------------------------------------------------
    @abc.abstractmethod
    def mk_table(self, table_pa: int) -> int:
        """Entry pointing at the next-level table at ``table_pa`` (p?d_populate)."""

    @abc.abstractmethod
    def table_present(self, entry: int) -> bool:
        """A non-leaf entry that points at a next-level table (p?d_present)."""

    # --- leaf entries: Linux pte_* vocabulary -----------------------------
    @abc.abstractmethod
    def protection_map(self, prot: VmProt) -> int:
        """vm_get_page_prot(): the pgprot bits for a VMA's VM_READ/WRITE/EXEC/SHARED."""

    @abc.abstractmethod
    def pfn_pte(self, pfn: int, pgprot: int) -> int:
        """Leaf entry mapping frame ``pfn`` with protection ``pgprot``."""

    @staticmethod
    def pte_none(pte: int) -> bool:
        """Entry is empty: never mapped (and not a swap entry)."""
        return pte == 0

    @abc.abstractmethod
    def pte_present(self, pte: int) -> bool:
        """Entry maps a frame (including PROT_NONE entries, as Linux counts them)."""

    @staticmethod
    def pte_pfn(pte: int) -> int:
        """Frame number an entry points at."""
        return (pte & ADDR_MASK) >> 12

    @abc.abstractmethod
    def pte_write(self, pte: int) -> bool: ...
    @abc.abstractmethod
    def pte_dirty(self, pte: int) -> bool: ...
    @abc.abstractmethod
    def pte_young(self, pte: int) -> bool: ...
    @abc.abstractmethod
    def pte_special(self, pte: int) -> bool: ...

    @abc.abstractmethod
    def pte_user_exec(self, pte: int) -> bool:
        """User space may execute from the page (arm64 !UXN; x86-64 US and !NX)."""
    @abc.abstractmethod
    def pte_mkwrite(self, pte: int) -> int: ...
    @abc.abstractmethod
    def pte_wrprotect(self, pte: int) -> int: ...
    @abc.abstractmethod
    def pte_mkdirty(self, pte: int) -> int: ...
    @abc.abstractmethod
    def pte_mkclean(self, pte: int) -> int: ...
    @abc.abstractmethod
    def pte_mkyoung(self, pte: int) -> int: ...
    @abc.abstractmethod
    def pte_mkold(self, pte: int) -> int: ...
    @abc.abstractmethod
    def pte_mkspecial(self, pte: int) -> int: ...

    @abc.abstractmethod
    def pte_modify(self, pte: int, pgprot: int) -> int:
        """Change an entry's protection, keeping frame, dirty and young (mprotect)."""

    # --- what the hardware does with a leaf --------------------------------
    @abc.abstractmethod
    def leaf_perms(self, pte: int) -> LeafPerms:
        """Access rights a present, young leaf gives user mode (dirty state aside)."""

    @abc.abstractmethod
    def hw_update(self, pte: int, access: Access) -> int | None:
        """Hardware accessed/dirty update for an allowed ``access``.

        Returns the entry the hardware writes back (x86: A, and D on a write;
        arm64 with FEAT_HAFDBS: AF, and clearing AP[2] on a write to a DBM
        entry), the unchanged entry when nothing changes, or None when the
        hardware would not allow the access (a fault).
        """

    # --- swap entries (non-present PTEs naming a swap slot) ------------------
    @abc.abstractmethod
    def swp_entry_to_pte(self, swp_type: int, offset: int) -> int:
        """__swp_entry() + __swp_entry_to_pte(): a non-present PTE for a swap slot."""

    @abc.abstractmethod
    def pte_to_swp_entry(self, pte: int) -> tuple[int, int]:
        """__pte_to_swp_entry() + __swp_type()/__swp_offset(): (type, offset)."""

    def is_swap_pte(self, pte: int) -> bool:
        """is_swap_pte(): neither empty nor present."""
        return pte != 0 and not self.pte_present(pte)

    @abc.abstractmethod
    def fill_writable(self, pte: int) -> bool:
        """Whether a translation cached from ``pte`` may be used for writes
        without another walk (the entry is writable *and* already dirty)."""
