"""Swap I/O (mm/page_io.c): a page to and from its slot on the swap device.

I/O is synchronous, as everywhere in the model: the write has reached the
device when swap_writepage() returns, so reclaim can free the page in the
same pass (Linux frees it when the bio completes, on a later pass).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mmuemu.kernel.mm_types import PG, ClearPage, Page, SetPage
from mmuemu.kernel.swapfile import swp_offset, try_to_free_swap

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel


def swap_writepage(kern: "Kernel", page: Page) -> int:
    """swap_writepage(): write a swap-cache page to its slot (pswpout), unless
    no swap PTE refers to the slot any more (then drop the slot instead)."""
    if try_to_free_swap(kern, page):
        return 0
    entry = page.private
    SetPage(page, PG.writeback)
    kern.swap.info(entry).write_slot(swp_offset(entry), kern.phys.read(page.pfn << 12, 4096))
    ClearPage(page, PG.writeback)
    kern.vmstat.pswpout += 1
    kern.vmstat.pgpgout += 1
    return 0


def swap_readpage(kern: "Kernel", page: Page) -> int:
    """swap_readpage(): fill a new swap-cache page from its slot (pswpin)."""
    entry = page.private
    kern.phys.write(page.pfn << 12, kern.swap.info(entry).read_slot(swp_offset(entry)))
    SetPage(page, PG.uptodate)
    kern.vmstat.pswpin += 1
    kern.vmstat.pgpgin += 1
    return 0
