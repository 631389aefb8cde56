"""The VFS side the mm model needs: inodes, open files, the sandbox root,
address_space_operations and vm_operations_struct tables.

Guest paths resolve inside the sandbox root: the guest's "/" is the host
directory given by ``--root``; a path whose resolution (``..``, symlinks)
leaves it is refused with -EACCES, and nothing outside is ever opened.
/dev/zero and /dev/null are character devices provided by the model.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from mmuemu.kernel.mm_types import AddressSpace, File, Inode, Page, VmFault
from mmuemu.kernel.radix_tree import RadixTreeRoot

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

S_IFCHR = stat.S_IFCHR
S_IFREG = stat.S_IFREG
DEV_NULL = (1 << 8) | 3
DEV_ZERO = (1 << 8) | 5


class AddressSpaceOperations:
    """struct address_space_operations: how a file system moves page data.

    The base class is a memory-only file system (no backing store): pages are
    born zeroed and uptodate and writeback has nothing to do. The generic
    methods (writepages, set_page_dirty, write_begin/write_end) are those of
    mm/page-writeback.c and mm/filemap.c that simple file systems use.
    """

    name = "simple_aops"
    #: whether writepage() reaches storage that survives the page (reclaim may
    #: then drop the page); memory-only file systems keep theirs in memory
    has_backing_store = False

    def readpage(self, kern: "Kernel", mapping: AddressSpace, page: Page) -> int:
        """Fill ``page`` (already in the page cache, locked) with file data."""
        kern.phys.zero_frame(page.pfn)
        return 0

    def readpages(self, kern: "Kernel", mapping: AddressSpace, pages: list[Page]) -> int:
        """Read a readahead batch (pages sorted by index); default: readpage each."""
        for page in pages:
            self.readpage(kern, mapping, page)
        return 0

    def writepage(self, kern: "Kernel", mapping: AddressSpace, page: Page) -> int:
        """Write one dirty page to the backing store."""
        return 0

    def writepages(self, kern: "Kernel", mapping: AddressSpace, start: int = 0,
                   end: int = (1 << 64) - 1) -> int:
        """generic_writepages(): write_cache_pages over [start, end]; pages written."""
        from mmuemu.kernel.filemap import write_cache_pages
        return write_cache_pages(kern, mapping, start, end)

    def set_page_dirty(self, kern: "Kernel", page: Page) -> bool:
        """_set_page_dirty_nobuffers(): PG_dirty and the DIRTY tag in the page tree."""
        from mmuemu.kernel.filemap import _set_page_dirty_nobuffers
        return _set_page_dirty_nobuffers(kern, page)

    def write_begin(self, kern: "Kernel", mapping: AddressSpace, pos: int, length: int) -> Page:
        """simple_write_begin(): the cache page to copy into, read first unless
        the write covers it whole or it lies past EOF. Returns it with a reference."""
        from mmuemu.kernel.filemap import grab_cache_page
        off = pos & 0xFFF
        return grab_cache_page(kern, mapping, pos >> 12, whole=(off == 0 and length == 4096))

    def write_end(self, kern: "Kernel", mapping: AddressSpace, pos: int, copied: int,
                  page: Page) -> int:
        """simple_write_end(): uptodate, dirty, grow i_size, drop the reference."""
        from mmuemu.kernel.mm_types import PG, SetPage
        SetPage(page, PG.uptodate)
        self.set_page_dirty(kern, page)
        inode = mapping.host
        assert inode is not None
        if pos + copied > inode.i_size:
            inode.i_size = pos + copied
        kern.put_page(page)
        return copied

    def invalidatepage(self, kern: "Kernel", page: Page, offset: int, length: int) -> None:
        """A page (or part of it) is being truncated away: drop private state (none here)."""

    def releasepage(self, kern: "Kernel", page: Page) -> bool:
        """May the page leave the cache? (No buffers or private data: yes.)"""
        return True


class HostFsAops(AddressSpaceOperations):
    """A disk-backed file system whose files are host files under the sandbox root."""

    name = "hostfs_aops"
    has_backing_store = True

    def readpage(self, kern: "Kernel", mapping: AddressSpace, page: Page) -> int:
        return self.readpages(kern, mapping, [page])

    def readpages(self, kern: "Kernel", mapping: AddressSpace, pages: list[Page]) -> int:
        """One host read per run of consecutive indexes (a block-layer request each)."""
        inode = mapping.host
        assert inode is not None and inode.host_path is not None
        with open(inode.host_path, "rb") as f:
            i = 0
            while i < len(pages):
                j = i + 1
                while j < len(pages) and pages[j].index == pages[j - 1].index + 1:
                    j += 1
                f.seek(pages[i].index << 12)
                data = f.read((j - i) << 12)
                for k in range(i, j):
                    page = pages[k]
                    chunk = data[(k - i) << 12:(k - i + 1) << 12]
                    kern.phys.zero_frame(page.pfn)
                    if chunk:
                        kern.phys.write(page.pfn << 12, chunk)
                i = j
        kern.vmstat.pgpgin += len(pages)
        return 0

    def writepage(self, kern: "Kernel", mapping: AddressSpace, page: Page) -> int:
        inode = mapping.host
        assert inode is not None and inode.host_path is not None
        start = page.index << 12
        if start >= inode.i_size:
            return 0
        n = min(4096, inode.i_size - start)
        with open(inode.host_path, "r+b") as f:
            f.seek(start)
            f.write(kern.phys.read(page.pfn << 12, n))
        kern.vmstat.pgpgout += 1
        return 0


@dataclass(frozen=True, slots=True)
class VmOperations:
    """struct vm_operations_struct (the entries the model uses)."""

    name: str
    fault: Callable[[VmFault], int]
    map_pages: Optional[Callable[[VmFault, int, int], int]] = None
    page_mkwrite: Optional[Callable[[VmFault], int]] = None


class Vfs:
    """Inodes by host path, and the sandboxed name space a guest sees."""

    def __init__(self, kern: "Kernel", root: str) -> None:
        self.kern = kern
        self.root = os.path.realpath(root)
        self._inodes: dict[str, Inode] = {}
        self._next_ino = 2
        self.hostfs_aops = HostFsAops()
        self.simple_aops = AddressSpaceOperations()
        from mmuemu.kernel.shmem import ShmemAops
        self.shmem_aops: AddressSpaceOperations = ShmemAops()
        self.dev_zero = self._new_inode(S_IFCHR | 0o666, 0, None, self.simple_aops, DEV_ZERO)
        self.dev_null = self._new_inode(S_IFCHR | 0o666, 0, None, self.simple_aops, DEV_NULL)

    def _new_inode(self, mode: int, size: int, host_path: str | None,
                   aops: AddressSpaceOperations, rdev: int = 0) -> Inode:
        kobj = self.kern.kobj
        mapping = AddressSpace(kaddr=kobj.alloc(200), host=None,
                               page_tree=RadixTreeRoot(), a_ops=aops)
        kobj.register(mapping.kaddr, mapping)
        inode = Inode(i_ino=self._next_ino, i_mode=mode, i_size=size,
                      i_mapping=mapping, host_path=host_path, i_rdev=rdev)
        self._next_ino += 1
        mapping.host = inode
        return inode

    def host_inode(self, host_path: str) -> Inode:
        """The inode of a host file (created on first use, then cached: iget)."""
        real = os.path.realpath(host_path)
        inode = self._inodes.get(real)
        if inode is None:
            st = os.stat(real)
            inode = self._new_inode(S_IFREG | (st.st_mode & 0o7777), st.st_size, real,
                                    self.hostfs_aops)
            self._inodes[real] = inode
        return inode

    def forget(self, host_path: str) -> None:
        """Drop a cached inode (after unlink)."""
        self._inodes.pop(os.path.realpath(host_path), None)

    def resolve(self, cwd: str, path: str) -> tuple[int, str]:
        """Map a guest path to a host path inside the root.

        Returns (0, host_path) or (-errno, ""). Device nodes resolve to
        "/dev/zero" / "/dev/null" markers.
        """
        if not path:
            return -errno.ENOENT, ""
        guest = path if path.startswith("/") else os.path.join(cwd, path)
        norm = os.path.normpath(guest)
        if norm.startswith("//"):
            norm = norm[1:]
        if norm in ("/dev/zero", "/dev/null"):
            return 0, norm
        # ".." that climbs above "/" is refused, not clamped.
        depth = 0
        for part in guest.split("/"):
            if part in ("", "."):
                continue
            depth = depth - 1 if part == ".." else depth + 1
            if depth < 0:
                return -errno.EACCES, ""
        host = os.path.join(self.root, norm.lstrip("/"))
        real = os.path.realpath(host)
        if real != self.root and not real.startswith(self.root + os.sep):
            return -errno.EACCES, ""
        return 0, real

    def open_file(self, inode: Inode, flags: int, path: str) -> File:
        """A struct file for ``inode`` (readahead window from the machine config)."""
        f = File(f_inode=inode, f_mapping=inode.i_mapping, f_flags=flags,
                 f_mode=flags & 3, path=path)
        f.f_ra.ra_pages = self.kern.config.ra_pages
        return f
