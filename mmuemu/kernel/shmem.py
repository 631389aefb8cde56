"""shmem (mm/shmem.c) and the file ->mmap methods that choose a VMA's vm_ops.

MAP_SHARED of /dev/zero and MAP_SHARED|MAP_ANONYMOUS are shmem: pages live
in the page cache of an unlinked shmem inode ("dev/zero"), are swap backed,
and rmap finds them through i_mmap, not anon_vma (the seed's experiment).
"""
from __future__ import annotations

from mmuemu.kernel.filemap import (
    add_to_page_cache_lru, filemap_fault, filemap_map_pages, filemap_page_mkwrite,
    find_get_page, unlock_page,
)
from mmuemu.kernel.fs import S_IFREG, AddressSpaceOperations, VmOperations
from mmuemu.kernel.mm_types import (
    PG, VM, File, PageTest, SetPage, VmAreaStruct, VmFault, VmFaultReason,
)
from mmuemu.kernel.page_alloc import OutOfMemory


class ShmemAops(AddressSpaceOperations):
    """shmem_aops: memory-backed; a missing page is a new zeroed page."""

    name = "shmem_aops"


def shmem_fault(vmf: VmFault) -> int:
    """shmem_fault() → shmem_getpage_gfp(): find the page or allocate a zeroed one."""
    vma = vmf.vma
    kern = vma.vm_mm.kernel
    file = vma.vm_file
    assert file is not None
    mapping = file.f_mapping
    inode = mapping.host
    assert inode is not None
    if vmf.pgoff >= (inode.i_size + 4095) >> 12:
        return VmFaultReason.SIGBUS
    page = find_get_page(mapping, vmf.pgoff)
    if page is None:
        try:
            page = kern.alloc_page(zero=True)
        except OutOfMemory:
            return VmFaultReason.OOM
        SetPage(page, PG.swapbacked)
        SetPage(page, PG.uptodate)
        add_to_page_cache_lru(kern, page, mapping, vmf.pgoff)  # on the inactive anon list
        unlock_page(page)
    elif not PageTest(page, PG.uptodate):
        SetPage(page, PG.uptodate)
    SetPage(page, PG.locked)
    vmf.page = page
    return VmFaultReason.LOCKED


generic_file_vm_ops = VmOperations(name="generic_file_vm_ops", fault=filemap_fault,
                                   map_pages=filemap_map_pages,
                                   page_mkwrite=filemap_page_mkwrite)
shmem_vm_ops = VmOperations(name="shmem_vm_ops", fault=shmem_fault,
                            map_pages=filemap_map_pages, page_mkwrite=None)


def shmem_zero_setup(vma: VmAreaStruct) -> int:
    """shmem_zero_setup(): back a shared anonymous VMA with a new shmem file "dev/zero"."""
    kern = vma.vm_mm.kernel
    vfs = kern.vfs
    size = vma.vm_end - vma.vm_start
    inode = vfs._new_inode(S_IFREG | 0o600, size, None, vfs.shmem_aops)
    file = vfs.open_file(inode, 2, "dev/zero")
    if vma.vm_file is not None:
        vma.vm_file.f_count -= 1
    vma.vm_file = file
    vma.vm_ops = shmem_vm_ops
    vma.vm_pgoff = 0
    return 0


def file_mmap(file: File, vma: VmAreaStruct) -> int:
    """file->f_op->mmap(): generic_file_mmap, mmap_zero, or shmem_mmap."""
    inode = file.f_inode
    vfs = vma.vm_mm.kernel.vfs
    if inode is vfs.dev_zero:
        if vma.vm_flags & VM.SHARED:
            return shmem_zero_setup(vma)
        vma.vm_ops = None  # vma_set_anonymous(): private /dev/zero is anonymous memory
        return 0
    if inode is vfs.dev_null:
        return -19  # -ENODEV
    if file.f_mapping.a_ops is vfs.shmem_aops:
        vma.vm_ops = shmem_vm_ops
        return 0
    vma.vm_ops = generic_file_vm_ops
    return 0


def shmem_file_setup_anon(vma: VmAreaStruct) -> int:
    """MAP_SHARED|MAP_ANONYMOUS: shmem_zero_setup() as mmap_region() calls it."""
    return shmem_zero_setup(vma)
