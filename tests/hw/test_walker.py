"""The reference page walker (mmuemu/hw/walker.py) against the architectures' rules.

Every expectation below is written out from the manuals (Intel SDM vol. 3A
4.6 access rights, 4.8 accessed/dirty flags; Arm ARM D8 stage-1 descriptors,
AF and DBM), never copied from the walker's own output.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from mmuemu._types import Access
from mmuemu.hw.arm64 import pte as a64
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import ADDR_MASK, PteFormat, VmProt
from mmuemu.hw.walker import PROT_EXEC, PROT_READ, PROT_WRITE, WalkResult, walk
from mmuemu.hw.x86_64 import pte as x86

R, W, X = PROT_READ, PROT_WRITE, PROT_EXEC
VA = 0x0000_1234_5678_9ABC  # indices 36, 209, 179, 393 (every level distinct)
DATA_PFN = 0x40


@dataclass
class Tables:
    """A hand-built 4-level mapping of one page, with the PA of each level's entry."""

    phys: PhysMem
    fmt: PteFormat
    root: int
    entry_pa: list[int]  # PA of the entry used at levels 0..3

    def entry(self, level: int) -> int:
        return self.phys.read_u64(self.entry_pa[level])

    def set_entry(self, level: int, value: int) -> None:
        self.phys.write_u64(self.entry_pa[level], value)

    def walk(self, access: Access, va: int = VA, hw_af: bool = True) -> WalkResult:
        return walk(self.phys, self.fmt, self.root, va, access, hw_af=hw_af)


def build(fmt: PteFormat, leaf_prot: int, va: int = VA) -> Tables:
    """Root at frame 1, the next tables at frames 2, 3, 4; the leaf maps DATA_PFN."""
    phys = PhysMem(1 << 20)
    tables = [0x1000, 0x2000, 0x3000, 0x4000]
    entry_pa = [t + 8 * fmt.index(va, lvl) for lvl, t in enumerate(tables)]
    for lvl in range(3):
        phys.write_u64(entry_pa[lvl], fmt.mk_table(tables[lvl + 1]))
    phys.write_u64(entry_pa[3], fmt.pfn_pte(DATA_PFN, leaf_prot))
    return Tables(phys, fmt, tables[0], entry_pa)


X86 = x86.X86_64Pte()
ARM = a64.Arm64Pte()
FORMATS = [pytest.param(X86, id="x86_64"), pytest.param(ARM, id="arm64")]


def test_index_of_va_is_nine_bits_per_level() -> None:
    assert [X86.index(VA, lvl) for lvl in range(4)] == [36, 209, 179, 393]


# --- the common rules, both architectures ------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_mapped_read_gives_frame_and_four_refs(fmt: PteFormat) -> None:
    t = build(fmt, fmt.protection_map(VmProt(True, False, False, False)))  # PROT_READ private
    res = t.walk(Access.READ)
    assert res.ok
    assert res.pa == DATA_PFN << 12
    assert res.perms == R  # read-only, no exec (x86 NX, arm64 UXN)
    assert res.level == 3
    assert res.mem_refs == 4
    assert res.pte_pa == t.entry_pa[3]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_not_present_entry_faults_at_its_level(fmt: PteFormat, level: int) -> None:
    t = build(fmt, fmt.protection_map(VmProt(True, True, False, True)))
    t.set_entry(level, 0)
    res = t.walk(Access.READ)
    assert not res.ok
    assert res.level == level
    assert res.mem_refs == level + 1  # every level down to the empty entry was read
    assert res.pte_pa == t.entry_pa[level]
    assert (res.pa, res.perms) == (0, 0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_va_at_or_above_task_size_faults_without_reading(fmt: PteFormat) -> None:
    t = build(fmt, fmt.protection_map(VmProt(True, True, False, True)))
    for va in (fmt.task_size, fmt.task_size + 0x1000, (1 << 64) - 4096, -4096):
        res = t.walk(Access.READ, va=va)
        assert not res.ok
        assert (res.level, res.mem_refs, res.pte_pa) == (0, 0, -1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_last_user_page_is_mapped(fmt: PteFormat) -> None:
    va = fmt.task_size - 4096
    t = build(fmt, fmt.protection_map(VmProt(True, False, False, False)), va=va)
    assert t.walk(Access.READ, va=va).ok


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_to_cow_page_faults_and_changes_nothing(fmt: PteFormat) -> None:
    cow = fmt.protection_map(VmProt(True, True, False, False))  # private writable: COW
    t = build(fmt, cow)
    before = t.entry(3)
    res = t.walk(Access.WRITE)
    assert not res.ok
    assert res.level == 3
    assert t.entry(3) == before
    # the read side of the same page is fine, and read-only
    rd = t.walk(Access.READ)
    assert rd.ok and rd.perms == R


@pytest.mark.parametrize("fmt", FORMATS)
def test_fetch_from_nx_page_faults(fmt: PteFormat) -> None:
    t = build(fmt, fmt.protection_map(VmProt(True, True, False, True)))  # no VM_EXEC
    res = t.walk(Access.FETCH)
    assert not res.ok and res.level == 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_fetch_from_exec_page(fmt: PteFormat) -> None:
    t = build(fmt, fmt.protection_map(VmProt(True, False, True, False)))  # r-x private
    res = t.walk(Access.FETCH)
    assert res.ok
    assert res.perms == R | X


@pytest.mark.parametrize("fmt", FORMATS)
def test_table_pointer_outside_physical_memory_faults(fmt: PteFormat) -> None:
    t = build(fmt, fmt.protection_map(VmProt(True, True, False, True)))
    t.set_entry(1, fmt.mk_table(0x4000_0000))  # 1 GiB: beyond the 1 MiB of RAM
    res = t.walk(Access.READ)
    assert not res.ok
    assert res.level == 2  # the level-2 table cannot be read
    assert res.mem_refs == 2
    assert res.pte_pa == t.entry_pa[1]
    res = walk(t.phys, fmt, 0x4000_0000, VA, Access.READ)  # root outside RAM
    assert not res.ok and (res.level, res.mem_refs, res.pte_pa) == (0, 0, -1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_root_flag_bits_are_ignored(fmt: PteFormat) -> None:
    t = build(fmt, fmt.protection_map(VmProt(True, False, False, False)))
    # x86 CR3 PCD/PWT and PCID bits; arm64 TTBR0 ASID in bits 63:48
    res = walk(t.phys, fmt, t.root | 0x18 | (0x42 << 48), VA, Access.READ)
    assert res.ok and res.pa == DATA_PFN << 12


# --- x86-64 (Intel SDM vol. 3A) -------------------------------------------------------

def test_x86_read_of_clean_shared_page_grants_read_only_and_stays_clean() -> None:
    assert not x86.PAGE_SHARED & x86._PAGE_DIRTY  # Linux maps shared pages clean
    t = build(X86, x86.PAGE_SHARED)
    res = t.walk(Access.READ)
    assert res.ok
    assert res.perms == R  # writable but clean: no WRITE in the TLB entry; NX: no EXEC
    assert t.entry(3) == (DATA_PFN << 12) | x86.PAGE_SHARED  # A already set, D still clear


def test_x86_write_sets_dirty_and_grants_write() -> None:
    t = build(X86, x86.PAGE_SHARED_EXEC)
    res = t.walk(Access.WRITE)
    assert res.ok
    assert res.perms == R | W | X
    assert t.entry(3) == (DATA_PFN << 12) | x86.PAGE_SHARED_EXEC | x86._PAGE_DIRTY
    # now dirty: a read fill may carry WRITE
    assert t.walk(Access.READ).perms == R | W | X


def test_x86_read_sets_accessed_on_old_leaf_only() -> None:
    old = x86.PAGE_SHARED & ~x86._PAGE_ACCESSED
    t = build(X86, old)
    assert t.walk(Access.READ).ok
    assert t.entry(3) == (DATA_PFN << 12) | old | x86._PAGE_ACCESSED
    assert not t.entry(3) & x86._PAGE_DIRTY


def test_x86_walk_sets_accessed_in_table_entries() -> None:
    t = build(X86, x86.PAGE_COPY)
    for lvl in range(3):
        t.set_entry(lvl, t.entry(lvl) & ~x86._PAGE_ACCESSED)
    assert t.walk(Access.READ).ok
    for lvl in range(3):
        assert t.entry(lvl) & x86._PAGE_ACCESSED


def test_x86_cow_is_page_copy() -> None:
    assert X86.protection_map(VmProt(True, True, False, False)) == x86.PAGE_COPY
    t = build(X86, x86.PAGE_COPY)
    assert not t.walk(Access.WRITE).ok


def test_x86_supervisor_table_entry_stops_user_walk() -> None:
    t = build(X86, x86.PAGE_SHARED)
    t.set_entry(1, t.entry(1) & ~x86._PAGE_USER)
    res = t.walk(Access.READ)
    assert not res.ok and res.level == 1 and res.mem_refs == 2


def test_x86_supervisor_leaf_faults() -> None:
    t = build(X86, x86.PAGE_SHARED & ~x86._PAGE_USER)
    res = t.walk(Access.READ)
    assert not res.ok and res.level == 3


def test_x86_read_only_table_entry_blocks_writes() -> None:
    t = build(X86, x86.PAGE_SHARED | x86._PAGE_DIRTY)
    t.set_entry(2, t.entry(2) & ~x86._PAGE_RW)
    leaf = t.entry(3)
    assert not t.walk(Access.WRITE).ok
    assert t.entry(3) == leaf  # a refused access sets no A/D
    res = t.walk(Access.READ)
    assert res.ok and res.perms == R  # dirty + RW leaf, but R/W=0 above: no WRITE


def test_x86_nx_table_entry_blocks_fetches() -> None:
    t = build(X86, x86.PAGE_READONLY_EXEC)
    assert t.walk(Access.FETCH).ok
    t.set_entry(0, t.entry(0) | x86._PAGE_NX)
    assert not t.walk(Access.FETCH).ok
    res = t.walk(Access.READ)
    assert res.ok and res.perms == R


def test_x86_protnone_entry_faults() -> None:
    t = build(X86, x86.PAGE_NONE)  # _PAGE_PROTNONE without _PAGE_PRESENT
    for acc in Access:
        res = t.walk(acc)
        assert not res.ok and res.level == 3
    assert t.entry(3) == (DATA_PFN << 12) | x86.PAGE_NONE


# --- arm64 (Arm ARM D8; FEAT_HAFDBS) ---------------------------------------------------

def test_arm64_read_of_clean_shared_page_grants_read_only_and_stays_clean() -> None:
    assert a64.PAGE_SHARED & a64.PTE_RDONLY and a64.PAGE_SHARED & a64.PTE_DBM
    t = build(ARM, a64.PAGE_SHARED)
    res = t.walk(Access.READ)
    assert res.ok
    assert res.perms == R  # AP[2]=1: read-only until DBM makes it dirty; UXN
    assert t.entry(3) == (DATA_PFN << 12) | a64.PAGE_SHARED


def test_arm64_write_to_dbm_page_clears_rdonly_and_grants_write() -> None:
    t = build(ARM, a64.PAGE_SHARED_EXEC)
    res = t.walk(Access.WRITE)
    assert res.ok
    assert res.perms == R | W | X
    assert t.entry(3) == (DATA_PFN << 12) | (a64.PAGE_SHARED_EXEC & ~a64.PTE_RDONLY)


def test_arm64_private_writable_is_readonly_cow() -> None:
    assert ARM.protection_map(VmProt(True, True, False, False)) == a64.PAGE_READONLY
    t = build(ARM, a64.PAGE_READONLY)  # AP[2]=1 and no DBM: hardware never writes it
    assert not t.walk(Access.WRITE).ok


def test_arm64_read_sets_access_flag() -> None:
    old = a64.PAGE_SHARED & ~a64.PTE_AF
    t = build(ARM, old)
    assert t.walk(Access.READ).ok
    assert t.entry(3) == (DATA_PFN << 12) | old | a64.PTE_AF


def test_arm64_without_hafdbs_faults_instead_of_updating() -> None:
    old = a64.PAGE_SHARED & ~a64.PTE_AF
    t = build(ARM, old)
    res = t.walk(Access.READ, hw_af=False)  # Access Flag fault
    assert not res.ok and res.level == 3
    assert t.entry(3) == (DATA_PFN << 12) | old
    t.set_entry(3, (DATA_PFN << 12) | a64.PAGE_SHARED)  # young, clean
    assert t.walk(Access.READ, hw_af=False).ok
    assert not t.walk(Access.WRITE, hw_af=False).ok  # permission fault: AP[2]=1
    assert t.entry(3) == (DATA_PFN << 12) | a64.PAGE_SHARED
    t.set_entry(3, (DATA_PFN << 12) | (a64.PAGE_SHARED & ~a64.PTE_RDONLY))  # dirty
    res = t.walk(Access.WRITE, hw_af=False)
    assert res.ok and res.perms == R | W


def test_arm64_execute_only_page() -> None:
    t = build(ARM, a64.PAGE_EXECONLY)  # AP[1]=0: EL0 cannot read, UXN=0: can fetch
    res = t.walk(Access.FETCH)
    assert res.ok and res.perms == X
    assert not t.walk(Access.READ).ok


def test_arm64_block_descriptor_is_not_a_table() -> None:
    t = build(ARM, a64.PAGE_SHARED)
    t.set_entry(2, (0x20_0000 & ADDR_MASK) | 1 | a64.PTE_AF)  # bits[1:0] = 01: block
    res = t.walk(Access.READ)
    assert not res.ok and res.level == 2


def test_arm64_pxntable_does_not_affect_el0() -> None:
    t = build(ARM, a64.PAGE_READONLY_EXEC)
    assert t.entry(0) & a64.PMD_TABLE_PXN
    res = t.walk(Access.FETCH)
    assert res.ok and res.perms == R | X


def test_arm64_invalid_leaf_faults() -> None:
    t = build(ARM, a64.PAGE_NONE)  # PTE_PROT_NONE, valid bit clear
    for acc in Access:
        assert not t.walk(acc).ok
