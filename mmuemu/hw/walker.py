"""The page-table walker: what the MMU does on a TLB miss (pure-Python reference).

This is the specification the native walker (``mmuemu/emu/_native/fastpath.c``,
``mmuemu_walk``) must match bit for bit, access for access; the differential
test in ``tests/emu/test_native.py`` holds the two together.

Model: a user-mode (EL0 / CPL 3) access, 4 KiB pages, four levels, no huge
pages.

* ``va >= fmt.task_size`` (or negative) faults before any table is read
  (``level`` 0, ``mem_refs`` 0): the kernel half (x86 non-canonical or
  supervisor addresses, arm64 TTBR1) is never reachable from user mode.
* The level-0 table is at ``root_pa & ADDR_MASK`` (CR3 bits 51:12; TTBR0
  BADDR with the ASID in bits 63:48 dropped). At each level the entry at
  ``table + 8 * fmt.index(va, level)`` is read (one memory reference). An
  entry whose address lies outside physical memory ends the walk with a
  fault at that level, without a reference (a bus error would be the real
  outcome; for the emulator it is a bad page table, never a crash).
* Levels 0-2: an entry for which ``fmt.table_present`` is false ends the walk:
  ``ok=False`` at that level. Otherwise the next table is ``entry & ADDR_MASK``.
  Huge-page (x86 PS / arm64 block) entries are not modelled: on x86 every
  present entry is taken as a table pointer, on arm64 a block descriptor is
  not a table descriptor and so faults.
* x86-64 only (Intel SDM vol. 3A 4.6, 4.8): a table entry without
  ``_PAGE_USER`` ends the walk there (user mode cannot pass a supervisor
  table); ``_PAGE_RW`` is ANDed and ``_PAGE_NX`` ORed over the levels; the
  walker sets ``_PAGE_ACCESSED`` in every table entry it uses (writing it
  back before reading the next level). arm64 table descriptors have no AF and
  Linux sets only PXNTable, which does not affect EL0, so APTable, UXNTable
  and PXNTable are ignored.
* Level 3 (leaf): a write through a non-writable upper level or a fetch
  through an NX upper level (x86) faults. Otherwise
  ``new = fmt.hw_update(pte, access)``; None is a fault (the kernel's to
  handle), else ``new`` is written back if it differs (x86 A/D, arm64
  FEAT_HAFDBS AF and DBM dirty). With ``hw_af=False`` (arm64 without
  FEAT_HAFDBS; ignored on x86, whose A/D are always hardware-managed) the
  walker writes nothing: an access that would need the leaf updated faults
  (an Access Flag fault, or a permission fault on a clean writable entry),
  and Linux then sets the bits itself.
* The translation handed to the CPU's TLB (Unicorn's soft TLB) carries
  READ if the leaf is user-readable, EXEC if executable (and no upper level
  says NX), and WRITE only if ``fmt.fill_writable(new)`` (and every upper
  level is writable): a read fill of a clean writable page grants no write,
  so the first write refills, and that walk marks the entry dirty.
"""
from __future__ import annotations

from dataclasses import dataclass

from mmuemu._types import Access
from mmuemu.hw.arm64.pte import Arm64Pte
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import ADDR_MASK, LEVELS, PteFormat
from mmuemu.hw.x86_64 import pte as x86

#: Unicorn's uc_prot bits, as a TLB fill hands them over.
PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4

LEAF_LEVEL = LEVELS - 1


@dataclass(frozen=True, slots=True)
class WalkResult:
    """Outcome of one page walk.

    Attributes:
        ok: the access is allowed; ``pa`` and ``perms`` are valid.
        pa: physical address of the 4 KiB frame (page aligned); 0 on a fault.
        perms: UC_PROT_* bits (READ 1, WRITE 2, EXEC 4) for the TLB entry; 0 on a fault.
        level: where the walk stopped: 3 for a leaf (allowed or not), else the
            level of the first non-present (or unusable) table entry.
        mem_refs: page-table entries read (one per level visited).
        pte_pa: physical address of the last entry read, -1 if none was read.
    """

    ok: bool
    pa: int
    perms: int
    level: int
    mem_refs: int
    pte_pa: int


@dataclass(frozen=True, slots=True)
class _TableRules:
    """What an architecture's walker does with a present table (non-leaf) entry.

    A mask of 0 means the architecture has no such bit for user accesses.
    """

    user: int  # must be set in every table entry (x86 U/S)
    write: int  # ANDed over the levels (x86 R/W)
    nx: int  # ORed over the levels (x86 XD)
    accessed: int  # set by the walker in each table entry used (x86 A)
    sw_flags_possible: bool  # hw A/D management can be off (arm64 without HAFDBS)


_X86_RULES = _TableRules(user=x86._PAGE_USER, write=x86._PAGE_RW, nx=x86._PAGE_NX,
                         accessed=x86._PAGE_ACCESSED, sw_flags_possible=False)
_ARM64_RULES = _TableRules(user=0, write=0, nx=0, accessed=0, sw_flags_possible=True)

#: Table-entry rules per format (by PteFormat.name).
TABLE_RULES: dict[str, _TableRules] = {
    x86.X86_64Pte.name: _X86_RULES,
    Arm64Pte.name: _ARM64_RULES,
}


def _fault(level: int, refs: int, pte_pa: int) -> WalkResult:
    return WalkResult(ok=False, pa=0, perms=0, level=level, mem_refs=refs, pte_pa=pte_pa)


def walk(phys: PhysMem, fmt: PteFormat, root_pa: int, va: int, access: Access,
         *, hw_af: bool = True) -> WalkResult:
    """Translate ``va`` for a user-mode ``access`` by walking the tables at ``root_pa``.

    Args:
        phys: physical memory holding the tables (A/D updates are written here).
        fmt: the page-table format of the architecture.
        root_pa: CR3 / TTBR0 value (the level-0 table; low flag bits ignored).
        va: the virtual address (any offset in the page).
        access: READ, WRITE or FETCH.
        hw_af: arm64 only: the hardware updates AF and DBM dirty state
            (FEAT_HAFDBS). False: it never writes, and faults instead.

    Returns:
        A :class:`WalkResult`; see the module docstring for the exact rules.
    """
    rules = TABLE_RULES[fmt.name]
    hw_flags = hw_af or not rules.sw_flags_possible
    if va < 0 or va >= fmt.task_size:
        return _fault(0, 0, -1)
    size = phys.size
    table = root_pa & ADDR_MASK
    refs = 0
    pte_pa = -1
    writable = True
    nx = False
    for level in range(LEAF_LEVEL):
        entry_pa = table + 8 * fmt.index(va, level)
        if entry_pa + 8 > size:
            return _fault(level, refs, pte_pa)
        entry = phys.read_u64(entry_pa)
        refs += 1
        pte_pa = entry_pa
        if not fmt.table_present(entry):
            return _fault(level, refs, pte_pa)
        if rules.user and not entry & rules.user:
            return _fault(level, refs, pte_pa)
        if rules.accessed and hw_flags and not entry & rules.accessed:
            entry |= rules.accessed
            phys.write_u64(entry_pa, entry)
        if rules.write and not entry & rules.write:
            writable = False
        if entry & rules.nx:
            nx = True
        table = entry & ADDR_MASK

    entry_pa = table + 8 * fmt.index(va, LEAF_LEVEL)
    if entry_pa + 8 > size:
        return _fault(LEAF_LEVEL, refs, pte_pa)
    pte = phys.read_u64(entry_pa)
    refs += 1
    pte_pa = entry_pa
    if (access == Access.WRITE and not writable) or (access == Access.FETCH and nx):
        return _fault(LEAF_LEVEL, refs, pte_pa)
    new = fmt.hw_update(pte, access)
    if new is None:
        return _fault(LEAF_LEVEL, refs, pte_pa)
    if new != pte:
        if not hw_flags:
            return _fault(LEAF_LEVEL, refs, pte_pa)
        phys.write_u64(entry_pa, new)
    leaf = fmt.leaf_perms(new)
    perms = 0
    if leaf.read:
        perms |= PROT_READ
    if leaf.exec and not nx:
        perms |= PROT_EXEC
    if writable and fmt.fill_writable(new):
        perms |= PROT_WRITE
    return WalkResult(ok=True, pa=new & ADDR_MASK, perms=perms, level=LEAF_LEVEL,
                      mem_refs=refs, pte_pa=pte_pa)
