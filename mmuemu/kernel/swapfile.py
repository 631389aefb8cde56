"""Swap devices and swap-slot accounting (mm/swapfile.c, include/linux/swapops.h).

A swap entry (swp_entry_t) is one int, ``type << SWP_TYPE_SHIFT | offset``:
the device and the page slot on it. swap_map[offset] counts the references
to a slot: one per swap PTE, plus the SWAP_HAS_CACHE flag while a page for
the slot is in the swap cache. A slot is free when its swap_map is zero.
Slot 0 holds the swap header (mkswap's "SWAPSPACE2" page) and is never
handed out.

The device is a host file the run creates on the first swap-out (in the
system's temporary directory) and removes when the machine closes. Its
size is ``--swap``; unused parts stay sparse.

Model differences: the count field is wider than Linux's byte, so there is
no COUNT_CONTINUED chaining; slot allocation is scan_swap_map()'s next-fit
from cluster_next without the SSD cluster lists (deterministic, and
neighbouring pages swapped together land in neighbouring slots).
"""
from __future__ import annotations

import os
import tempfile
from array import array
from typing import TYPE_CHECKING, Optional

from mmuemu.kernel.mm_types import PG, Page, PageTest, SetPage

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

#: bits above the offset that name the device (BITS_PER_XA_VALUE - MAX_SWAPFILES_SHIFT)
SWP_TYPE_SHIFT = 58
SWP_OFFSET_MASK = (1 << SWP_TYPE_SHIFT) - 1
#: the swap_map flag of a slot whose page is in the swap cache (Linux: 0x40 in a
#: byte; here a bit above any reference count)
SWAP_HAS_CACHE = 1 << 30
SWAP_COUNT_MASK = SWAP_HAS_CACHE - 1
PAGE_SIZE = 4096


def swp_entry(swp_type: int, offset: int) -> int:
    """swp_entry(): the entry for slot ``offset`` of device ``swp_type``."""
    return swp_type << SWP_TYPE_SHIFT | offset


def swp_type(entry: int) -> int:
    """swp_type()."""
    return entry >> SWP_TYPE_SHIFT


def swp_offset(entry: int) -> int:
    """swp_offset()."""
    return entry & SWP_OFFSET_MASK


class SwapInfoStruct:
    """struct swap_info_struct: one swap device.

    ``pages`` is the number of usable slots (max - 1: slot 0 is the header),
    ``inuse_pages`` the slots with a nonzero swap_map, ``cluster_next`` where
    the next allocation scan starts.
    """

    __slots__ = ("type", "max", "pages", "inuse_pages", "swap_map", "lowest_bit",
                 "highest_bit", "cluster_next", "_fd", "path", "_dir")

    def __init__(self, swp_type: int, size_bytes: int, directory: Optional[str] = None) -> None:
        self.type = swp_type
        self.max = size_bytes // PAGE_SIZE
        self.pages = max(0, self.max - 1)
        self.inuse_pages = 0
        self.swap_map = array("L", bytes(array("L").itemsize * self.max))
        self.lowest_bit = 1
        self.highest_bit = self.max - 1
        self.cluster_next = 1
        self._fd = -1
        self.path = ""
        self._dir = directory

    # --- the host file --------------------------------------------------------
    def _open(self) -> int:
        """Create the backing file (sparse, size --swap) with mkswap's header."""
        if self._fd < 0:
            fd, path = tempfile.mkstemp(prefix="mmuemu-swap-", dir=self._dir)
            os.ftruncate(fd, self.max * PAGE_SIZE)
            os.pwrite(fd, b"SWAPSPACE2", PAGE_SIZE - 10)
            self._fd, self.path = fd, path
        return self._fd

    def write_slot(self, offset: int, data: bytes) -> None:
        """Write one page to slot ``offset`` (the block I/O of swap_writepage)."""
        os.pwrite(self._open(), data, offset * PAGE_SIZE)

    def read_slot(self, offset: int) -> bytes:
        """Read slot ``offset`` (the block I/O of swap_readpage)."""
        data = os.pread(self._open(), PAGE_SIZE, offset * PAGE_SIZE)
        return data.ljust(PAGE_SIZE, b"\0")

    def close(self) -> None:
        """swapoff at shutdown: remove the host file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()


class SwapState:
    """The machine's swap: swap_info[], nr_swap_pages and total_swap_pages."""

    __slots__ = ("swap_info", "nr_swap_pages", "total_swap_pages")

    def __init__(self) -> None:
        self.swap_info: list[SwapInfoStruct] = []
        self.nr_swap_pages = 0
        self.total_swap_pages = 0

    def swapon(self, size_bytes: int, directory: Optional[str] = None) -> Optional[SwapInfoStruct]:
        """sys_swapon(): add a device of ``size_bytes`` (None if too small for one slot)."""
        si = SwapInfoStruct(len(self.swap_info), size_bytes, directory)
        if si.pages <= 0:
            return None
        self.swap_info.append(si)
        self.nr_swap_pages += si.pages
        self.total_swap_pages += si.pages
        return si

    def close(self) -> None:
        for si in self.swap_info:
            si.close()

    def info(self, entry: int) -> SwapInfoStruct:
        """swp_swap_info()."""
        return self.swap_info[swp_type(entry)]

    def vm_swap_full(self) -> bool:
        """vm_swap_full(): more than half of swap is in use."""
        return self.nr_swap_pages * 2 < self.total_swap_pages

    def as_dict(self) -> dict[str, int]:
        return {"total_pages": self.total_swap_pages,
                "free_pages": self.nr_swap_pages,
                "used_pages": self.total_swap_pages - self.nr_swap_pages}


def scan_swap_map(si: SwapInfoStruct) -> int:
    """scan_swap_map(): the next free slot at or after cluster_next, wrapping
    to lowest_bit; 0 when the device is full."""
    if si.inuse_pages >= si.pages:
        return 0
    swap_map = si.swap_map
    offset = max(si.cluster_next, si.lowest_bit)
    end = si.max
    for start, stop in ((offset, end), (si.lowest_bit, offset)):
        for off in range(start, stop):
            if swap_map[off] == 0:
                return off
    return 0


def get_swap_page(kern: "Kernel") -> int:
    """get_swap_page(): allocate a slot for the swap cache (swap_map =
    SWAP_HAS_CACHE). Returns the entry, or 0 when no swap space is left."""
    swap = kern.swap
    if swap.nr_swap_pages <= 0:
        return 0
    for si in swap.swap_info:
        offset = scan_swap_map(si)
        if offset:
            si.swap_map[offset] = SWAP_HAS_CACHE
            si.inuse_pages += 1
            si.cluster_next = offset + 1
            swap.nr_swap_pages -= 1
            return swp_entry(si.type, offset)
    return 0


def _slot_freed(kern: "Kernel", si: SwapInfoStruct, offset: int) -> None:
    """swap_range_free(): a slot's swap_map dropped to zero."""
    si.inuse_pages -= 1
    kern.swap.nr_swap_pages += 1
    if offset < si.cluster_next:
        si.cluster_next = offset


def swap_duplicate(kern: "Kernel", entry: int) -> int:
    """swap_duplicate(): one more swap PTE refers to the slot (fork). Returns 0."""
    si = kern.swap.info(entry)
    offset = swp_offset(entry)
    if not si.swap_map[offset]:
        raise AssertionError(f"swap_duplicate: unused swap entry {entry:#x}")
    si.swap_map[offset] += 1
    return 0


def swapcache_prepare(kern: "Kernel", entry: int) -> int:
    """swapcache_prepare(): set SWAP_HAS_CACHE on a slot that is in use before
    its page joins the swap cache. -ENOENT (-2) for a free slot, -EEXIST (-17)
    if a page is already cached for it."""
    si = kern.swap.info(entry)
    offset = swp_offset(entry)
    count = si.swap_map[offset]
    if count & SWAP_HAS_CACHE:
        return -17
    if not count:
        return -2
    si.swap_map[offset] = count | SWAP_HAS_CACHE
    return 0


def swap_free(kern: "Kernel", entry: int) -> None:
    """swap_free(): a swap PTE referring to the slot is gone."""
    si = kern.swap.info(entry)
    offset = swp_offset(entry)
    count = si.swap_map[offset]
    if not count & SWAP_COUNT_MASK:
        raise AssertionError(f"swap_free: swap entry {entry:#x} has no references")
    count -= 1
    si.swap_map[offset] = count
    if not count:
        _slot_freed(kern, si, offset)


def swapcache_free(kern: "Kernel", entry: int) -> None:
    """swapcache_free(): the slot's page left the swap cache."""
    si = kern.swap.info(entry)
    offset = swp_offset(entry)
    count = si.swap_map[offset]
    if not count & SWAP_HAS_CACHE:
        raise AssertionError(f"swapcache_free: swap entry {entry:#x} not cached")
    count &= ~SWAP_HAS_CACHE
    si.swap_map[offset] = count
    if not count:
        _slot_freed(kern, si, offset)


def swap_count(kern: "Kernel", entry: int) -> int:
    """__swap_count(): the swap PTEs referring to the slot."""
    return kern.swap.info(entry).swap_map[swp_offset(entry)] & SWAP_COUNT_MASK


def page_swapcount(kern: "Kernel", page: Page) -> int:
    """page_swapcount(): references to a swap-cache page's slot from swap PTEs."""
    return swap_count(kern, page.private)


def try_to_free_swap(kern: "Kernel", page: Page) -> bool:
    """try_to_free_swap(): drop a swap-cache page's slot when no swap PTE
    needs it any more; the page is then dirty (its only copy is in memory)."""
    from mmuemu.kernel.swap_state import delete_from_swap_cache
    if not PageTest(page, PG.owner_priv_1) or PageTest(page, PG.writeback):
        return False
    if page_swapcount(kern, page):
        return False
    delete_from_swap_cache(kern, page)
    SetPage(page, PG.dirty)
    return True


def free_swap_and_cache(kern: "Kernel", entry: int) -> None:
    """free_swap_and_cache(): a swap PTE is zapped (munmap, exit). Drops its
    reference, and the swap-cache page too when nothing else needs it (no
    swap PTE and no mapping, or swap more than half full)."""
    from mmuemu.kernel.swap_state import delete_from_swap_cache, find_get_swap_page
    swap_free(kern, entry)
    si = kern.swap.info(entry)
    if si.swap_map[swp_offset(entry)] != SWAP_HAS_CACHE:
        return
    page = find_get_swap_page(kern, entry)
    if page is None:
        return
    if not PageTest(page, PG.locked) and not PageTest(page, PG.writeback) and \
            (page._mapcount < 0 or kern.swap.vm_swap_full()):
        delete_from_swap_cache(kern, page)
        SetPage(page, PG.dirty)
    kern.put_page(page)
