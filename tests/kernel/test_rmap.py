"""rmap: anon_vma_fork chains, rmap walks, page_referenced, try_to_unmap (fake MMU)."""
from __future__ import annotations

from pathlib import Path

from mmuemu.kernel.fault import AccessType, do_user_addr_fault
from mmuemu.kernel.fork import copy_process
from mmuemu.kernel.mm_types import page_mapcount
from mmuemu.kernel.mmap import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, do_mmap
from mmuemu.kernel.pgtable import ptep_get, pte_offset_lookup
from mmuemu.kernel.rmap import page_referenced, rmap_walk, try_to_unmap
from tests.conftest import KernelRig, make_rig

PAGE = 4096


def _page_at(rig: KernelRig, mm: object, addr: int):  # type: ignore[no-untyped-def]
    pa = pte_offset_lookup(mm, addr)  # type: ignore[arg-type]
    pte = ptep_get(mm, pa)  # type: ignore[arg-type]
    return rig.kern.pfn_to_page(rig.kern.fmt.pte_pfn(pte))


def test_fork_shares_anon_pages_until_written(rig: KernelRig) -> None:
    parent = rig.task
    addr = do_mmap(parent.mm, None, 0, 2 * PAGE, 3, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    do_user_addr_fault(parent, addr, AccessType.WRITE)
    page = _page_at(rig, parent.mm, addr)
    child = copy_process(parent, 2)
    rig.kern.tasks[2] = child
    # one page, two PTEs, both write-protected; parent's TLB flushed (flush_tlb_mm)
    assert page_mapcount(page) == 2 and page._count == 2
    assert ("mm", 0, 0) in rig.flush.calls
    walk, vmas = rmap_walk(rig.kern, page)
    assert walk == "rmap_walk_anon"
    assert {v.vm_mm for v in vmas} == {parent.mm, child.mm}
    # child's anon_vma is a new one under the parent's root
    cvma = next(v for v in child.mm.mm_rb if v.vm_start == addr)
    pvma = next(v for v in parent.mm.mm_rb if v.vm_start == addr)
    assert cvma.anon_vma is not pvma.anon_vma and cvma.anon_vma.root is pvma.anon_vma
    assert len(cvma.anon_vma_chain) == 2
    # the child's write copies: now each side has its own page
    assert do_user_addr_fault(child, addr, AccessType.WRITE).signal == 0
    assert page_mapcount(page) == 1
    assert rmap_walk(rig.kern, page)[1] == [pvma]
    # the parent's write reuses the page it now owns alone
    reuses = rig.kern.vmstat.cow_reuses
    do_user_addr_fault(parent, addr, AccessType.WRITE)
    assert rig.kern.vmstat.cow_reuses == reuses + 1
    assert _page_at(rig, parent.mm, addr) is page


def test_page_referenced_clears_accessed_bits(rig: KernelRig) -> None:
    parent = rig.task
    addr = do_mmap(parent.mm, None, 0, PAGE, 3, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    do_user_addr_fault(parent, addr, AccessType.WRITE)
    copy_process(parent, 2)
    page = _page_at(rig, parent.mm, addr)
    # Linux creates PTEs young; fork's copy_present_pte makes the child's old
    assert page_referenced(rig.kern, page) == 1
    assert page_referenced(rig.kern, page) == 0


def test_try_to_unmap_file_page_from_every_mapping(tmp_path: Path) -> None:
    rig = make_rig("aarch64", tmp_path)
    (tmp_path / "f.dat").write_bytes(b"x" * PAGE)
    vfs = rig.kern.vfs
    inode = vfs.host_inode(str(tmp_path / "f.dat"))
    f = vfs.open_file(inode, 2, "f.dat")
    addr = do_mmap(rig.task.mm, f, 0, PAGE, 3, MAP_SHARED, 0)
    do_user_addr_fault(rig.task, addr, AccessType.WRITE)
    child = copy_process(rig.task, 2)
    do_user_addr_fault(child, addr, AccessType.READ)
    page = _page_at(rig, rig.task.mm, addr)
    assert page_mapcount(page) == 2
    assert rmap_walk(rig.kern, page)[0] == "rmap_walk_file"
    assert try_to_unmap(rig.kern, page)
    assert page_mapcount(page) == 0 and page._mapcount == -1
    assert ptep_get(rig.task.mm, pte_offset_lookup(rig.task.mm, addr)) == 0  # type: ignore[arg-type]
    assert page._count == 1  # only the page cache holds it now


def test_try_to_unmap_anon_needs_a_swap_entry(rig: KernelRig) -> None:
    addr = do_mmap(rig.task.mm, None, 0, PAGE, 3, MAP_PRIVATE | MAP_ANONYMOUS, 0)
    do_user_addr_fault(rig.task, addr, AccessType.WRITE)
    page = _page_at(rig, rig.task.mm, addr)
    assert not try_to_unmap(rig.kern, page)
    assert page_mapcount(page) == 1
