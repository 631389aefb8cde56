"""The emulated machine's kernel: the state Linux keeps in globals.

One :class:`Kernel` per emulated machine owns physical memory, the page
allocator, mem_map, the zero page, the VFS, the event counters and the link
to the MMU (``tlb``). mm_structs point back at it, so the fault path reaches
what it needs through ``vma.vm_mm.kernel`` rather than through globals.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable

from mmuemu.config import KernelConfig
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import PteFormat
from mmuemu.kernel.kobjects import KObjects
from mmuemu.kernel.mm_types import PG, MmStruct, Page, SetPage
from mmuemu.kernel.page_alloc import BuddyAllocator, OutOfMemory
from mmuemu.kernel.tlbflush import TlbFlushOps
from mmuemu.kernel.tracepoints import TraceSink

if TYPE_CHECKING:
    from mmuemu.kernel.sched import TaskStruct
from mmuemu.kernel.vmstat import VmStat


class Kernel:
    """Machine-wide kernel state."""

    def __init__(self, config: KernelConfig, phys: PhysMem, fmt: PteFormat,
                 tlb: TlbFlushOps, root: str = ".") -> None:
        from mmuemu.kernel.fs import Vfs

        self.config = config
        self.phys = phys
        self.fmt = fmt
        self.tlb = tlb
        self.kobj = KObjects()
        self.vmstat = VmStat()
        # pfn 0 stays reserved, as the first frame is on real machines.
        self.buddy = BuddyAllocator(1, phys.nr_frames)
        zero = self.alloc_page(kind="zero", zero=True)
        SetPage(zero, PG.reserved)
        #: empty_zero_page
        self.zero_pfn = zero.pfn
        self.fault_around_pages = max(1, config.fault_around_bytes >> 12)
        self._next_context_id = 1
        self.vfs = Vfs(self, root)
        #: tracepoint sink; None when tracing is off
        self.trace: TraceSink | None = None
        #: the kernel log (printk); the machine points it at stderr or --log FILE
        self.printk: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
        from mmuemu.kernel.proc import MtestInspector
        #: /proc/mtest, the seeds' inspector module
        self.mtest = MtestInspector(self, lambda line: self.printk(line))
        #: every task by pid (the pid hash), including zombies until reaped
        self.tasks: dict[int, "TaskStruct"] = {}
        self._next_pid = 2

    def alloc_pid(self) -> int:
        """alloc_pid(): the next pid (pid 1 is the program mmuemu runs)."""
        pid = self._next_pid
        self._next_pid += 1
        return pid

    # --- frames -------------------------------------------------------------
    def alloc_page(self, kind: str = "user", zero: bool = False) -> Page:
        """alloc_page(): a frame with _count = 1, optionally zeroed (__GFP_ZERO).

        Raises OutOfMemory when no frame is free.
        """
        pfn = self.buddy.alloc_pages(0)
        page = self.buddy.pfn_to_page(pfn)
        page.flags = 0
        page._count = 1
        page._mapcount = -1
        page.mapping = 0
        page.index = 0
        page.private = 0
        page.lru = None
        page.kind = kind
        if zero:
            self.phys.zero_frame(pfn)
        self.vmstat.pgalloc += 1
        return page

    def pfn_to_page(self, pfn: int) -> Page:
        """pfn_to_page()."""
        return self.buddy.pfn_to_page(pfn)

    def get_page(self, page: Page) -> None:
        """get_page(): take a reference."""
        page._count += 1

    def put_page(self, page: Page) -> None:
        """put_page(): drop a reference; free the frame when it was the last."""
        page._count -= 1
        if page._count == 0:
            self.free_page(page)
        elif page._count < 0:
            raise AssertionError(f"put_page: pfn {page.pfn:#x} _count went negative")

    def free_page(self, page: Page) -> None:
        """__free_pages(): give a frame back to the buddy allocator.

        Freeing a page that a PTE still maps is bad_page() in Linux: here it
        raises, since it would let two owners share a frame.
        """
        if page._mapcount >= 0:
            raise AssertionError(f"BUG: Bad page state: pfn {page.pfn:#x} freed while mapped "
                                 f"(mapcount {page._mapcount + 1})")
        page.flags = 0
        page.mapping = 0
        page.lru = None
        page.kind = "free"
        self.buddy.free_pages(page.pfn, 0)
        self.vmstat.pgfree += 1

    def new_context_id(self) -> int:
        """A fresh ASID/PCID for a new address space."""
        cid = self._next_context_id
        self._next_context_id += 1
        return cid

    def mm_alloc(self) -> MmStruct:
        """mm_alloc() + pgd_alloc(): an empty address space with a zeroed top table."""
        pgd = self.alloc_page(kind="pgtable", zero=True)
        mm = MmStruct(kernel=self, pgd=pgd.pfn << 12, task_size=self.fmt.task_size)
        mm.context_id = self.new_context_id()
        return mm


__all__ = ["Kernel", "OutOfMemory"]
