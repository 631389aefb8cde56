"""The emulated machine's kernel: the state Linux keeps in globals.

One :class:`Kernel` per emulated machine owns physical memory, the page
allocator, mem_map, the zero page, the VFS, the event counters and the link
to the MMU (``tlb``) and the caches (``cacheflush``). mm_structs point back at it, so the fault path reaches
what it needs through ``vma.vm_mm.kernel`` rather than through globals.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable

from mmuemu.config import KernelConfig
from mmuemu.kernel.cacheflush import CacheFlushArch
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import PteFormat
from mmuemu.kernel.kobjects import KObjects
from mmuemu.kernel.mm_types import PG, MmStruct, Page, SetPage
from mmuemu.kernel.page_alloc import BuddyAllocator, OutOfMemory, setup_per_zone_wmarks
from mmuemu.kernel.swap import Lruvec, del_page_from_lru_list
from mmuemu.kernel.swap_state import init_swapper_space
from mmuemu.kernel.swapfile import SwapState
from mmuemu.kernel.tlbflush import TlbFlushOps
from mmuemu.kernel.tracepoints import Tracepoints, TraceSink

if TYPE_CHECKING:
    from mmuemu.kernel.sched import TaskStruct
from mmuemu.kernel.vmstat import VmStat

#: object.__new__: a struct page with its slots still unset (alloc_page fills them)
_new_object = object.__new__


class Kernel:
    """Machine-wide kernel state."""

    def __init__(self, config: KernelConfig, phys: PhysMem, fmt: PteFormat,
                 tlb: TlbFlushOps, root: str = ".",
                 cacheflush: CacheFlushArch | None = None) -> None:
        from mmuemu.kernel.fs import Vfs

        self.config = config
        self.phys = phys
        self.fmt = fmt
        self.tlb = tlb
        #: the architecture's cache-flush hooks (asm/cacheflush.h); the
        #: generic, empty ones unless the machine gives its CPU's
        self.cacheflush = cacheflush if cacheflush is not None else CacheFlushArch()
        #: set_pte_at()'s arch hook (arm64 __sync_icache_dcache), or None; it is
        #: called for a present PTE with none of the set_pte_hook_skip bits
        #: (special, and the arch's: arm64's PTE_UXN), as __set_pte_at() tests
        self.set_pte_hook = self.cacheflush.sync_icache_dcache \
            if self.cacheflush.sync_on_set_pte else None
        self.set_pte_hook_skip = fmt.special_mask | self.cacheflush.sync_skip_bits
        self.kobj = KObjects()
        self.vmstat = VmStat()
        # pfn 0 stays reserved, as the first frame is on real machines.
        self.buddy = BuddyAllocator(1, phys.nr_frames)
        #: pfn_to_page() is the allocator's (one call instead of two on the fault path)
        self.pfn_to_page: Callable[[int], Page] = self.buddy.pfn_to_page
        #: the zone's watermarks (setup_per_zone_wmarks)
        self.wmark = setup_per_zone_wmarks(self.buddy.stats.managed_pages,
                                           config.min_free_kbytes)
        gb = (self.buddy.stats.managed_pages << 12) >> 30
        #: zone->inactive_ratio for the anon lists (calculate_zone_inactive_ratio)
        self.inactive_ratio = max(1, math.isqrt(10 * gb)) if gb else 1
        #: the zone's LRU lists
        self.lruvec = Lruvec()
        #: swap devices (swapon at boot when --swap is nonzero) and the swap cache
        self.swap = SwapState()
        if config.swap_bytes:
            self.swap.swapon(config.swap_bytes)
        self.swapper_space = init_swapper_space(self)
        #: kswapd was woken and has not run yet
        self.kswapd_wait = False
        #: reclaim may unmap pages (raw mode maps frames into the CPU directly,
        #: behind the page tables' back, so there it must not)
        self.reclaim_may_unmap = True
        #: the task running on the CPU (the OOM killer's "current"); set by the machine
        self.current: "TaskStruct | None" = None
        #: how an OOM victim other than current dies (the machine ends it like
        #: any killed task); the default tears its mm down directly
        self.kill_task: Callable[["TaskStruct", int], None] = self._kill_task
        zero = self.alloc_page(kind="zero", zero=True)
        SetPage(zero, PG.reserved)
        #: empty_zero_page
        self.zero_pfn = zero.pfn
        self.fault_around_pages = max(1, config.fault_around_bytes >> 12)
        self._next_context_id = 1
        self.vfs = Vfs(self, root)
        #: the tracepoints: the sink (:attr:`trace`) and the probes of the two
        #: frequent events
        self.tracepoints = Tracepoints()
        #: the kernel log (printk); the machine points it at stderr or --log FILE
        self.printk: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
        from mmuemu.kernel.proc import MtestInspector
        #: /proc/mtest, the seeds' inspector module
        self.mtest = MtestInspector(self, lambda line: self.printk(line))
        #: every task by pid (the pid hash), including zombies until reaped
        self.tasks: dict[int, "TaskStruct"] = {}
        self._next_pid = 2

    @property
    def trace(self) -> TraceSink | None:
        """The tracepoint sink; None when tracing is off."""
        return self.tracepoints.sink

    @trace.setter
    def trace(self, sink: TraceSink | None) -> None:
        """Attach ``sink`` (None: detach), its probes bound to its methods as
        they are now (see :meth:`Tracepoints.attach`)."""
        self.tracepoints.attach(sink)

    def alloc_pid(self) -> int:
        """alloc_pid(): the next pid (pid 1 is the program mmuemu runs)."""
        pid = self._next_pid
        self._next_pid += 1
        return pid

    # --- frames -------------------------------------------------------------
    def alloc_page(self, kind: str = "user", zero: bool = False) -> Page:
        """alloc_page(): a frame with _count = 1, optionally zeroed (__GFP_ZERO).

        __alloc_pages(): the fast path takes a frame while the zone stays
        above its low watermark; below it kswapd is woken and the frame may
        come from above min; below min the task reclaims directly, and when
        that frees nothing the OOM killer picks a victim. Raises OutOfMemory
        when the victim is the current task (or there is none).
        """
        buddy = self.buddy
        if buddy.stats.nr_free_pages > self.wmark.low:  # _get_page_from_freelist(low)
            pcp = buddy.pcp  # buddy.rmqueue_pcplist(), inline: every allocation
            if not pcp:
                buddy.rmqueue_bulk(buddy.pcp_batch)
            pfn = pcp.pop()
        else:
            pfn = self.__alloc_pages_slowpath()
        mem_map = buddy.mem_map
        page = mem_map[pfn]
        if page is None:  # the frame's first use: its struct page, filled below
            # (an empty object and the stores below: a third cheaper than
            # the dataclass constructor, on every fresh frame)
            page = mem_map[pfn] = _new_object(Page)
            page.pfn = pfn
            # __GFP_ZERO has nothing to clear: the frame holds what boot left
            # there, zeroes (PhysMem starts zeroed, and a frame is written only
            # once allocated). The guest's first write pays the host's first
            # touch instead; clear_page() was about 0.4 µs of Python a fault.
        elif zero:
            self.phys.zero_frame(pfn)
        # prep_new_page()
        page.flags = 0
        page._count = 1
        page._mapcount = -1
        page.mapping = 0
        page.index = 0
        page.private = 0
        page.lru = None
        page.kind = kind
        self.vmstat.pgalloc += 1
        return page

    def _get_page_from_freelist(self, mark: int) -> int | None:
        """get_page_from_freelist(): a frame if the zone stays above ``mark``
        (zone_watermark_fast() for order 0: free > mark)."""
        buddy = self.buddy
        if buddy.stats.nr_free_pages <= mark:
            return None
        return buddy.rmqueue_pcplist()

    def __alloc_pages_slowpath(self) -> int:
        """__alloc_pages_slowpath(): wake kswapd, dig to min, reclaim, OOM-kill."""
        from mmuemu.kernel.oom_kill import out_of_memory
        from mmuemu.kernel.vmscan import try_to_free_pages, wakeup_kswapd
        wakeup_kswapd(self)
        pfn = self._get_page_from_freelist(self.wmark.min)
        no_progress = 0
        while pfn is None:
            progress = try_to_free_pages(self)
            pfn = self._get_page_from_freelist(self.wmark.min)
            if pfn is None and self.buddy.pcp:
                # __alloc_pages_direct_reclaim(): frames may be pinned on the
                # per-cpu list: drain_all_pages() and try once more
                self.buddy.drain_pages()
                pfn = self._get_page_from_freelist(self.wmark.min)
            if pfn is not None:
                break
            if progress:
                no_progress = 0
                continue
            no_progress += 1
            if no_progress < 2:  # should_reclaim_retry(): one more full pass
                continue
            if not out_of_memory(self):
                raise OutOfMemory("out of memory: the OOM killer chose the allocating task")
            no_progress = 0
            pfn = self._get_page_from_freelist(self.wmark.min)
        return pfn

    def _kill_task(self, task: "TaskStruct", signal: int) -> None:
        from mmuemu.kernel.exit import do_exit
        do_exit(task, 0, signal)

    def kswapd(self) -> int:
        """Let kswapd run if an allocation woke it; returns pages it reclaimed.
        The machine calls this when it leaves the kernel (before a page fault
        is handled, after a syscall)."""
        if not self.kswapd_wait:
            return 0
        from mmuemu.kernel.vmscan import kswapd_run
        return kswapd_run(self)

    def close(self) -> None:
        """Shut down: swapoff (the swap file is removed)."""
        self.swap.close()

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
        """__free_pages(): give a frame back to the buddy allocator."""
        self.free_page_list((page,))

    def free_page_list(self, pages: Sequence[Page]) -> None:
        """free_unref_page_list(): free_page() for each page, in order, the
        frames going to the allocator as one list (release_pages())."""
        prepare = self.free_pages_prepare
        for page in pages:
            prepare(page)
        self.buddy.free_unref_page_list([page.pfn for page in pages])
        self.vmstat.pgfree += len(pages)

    def free_pages_prepare(self, page: Page) -> None:
        """free_pages_prepare(): a page about to be freed leaves its LRU list
        and its state is cleared.

        Freeing a page that a PTE still maps is bad_page() in Linux: here it
        raises, since it would let two owners share a frame.
        """
        if page._mapcount >= 0:
            raise AssertionError(f"BUG: Bad page state: pfn {page.pfn:#x} freed while mapped "
                                 f"(mapcount {page._mapcount + 1})")
        if page.lru is not None:
            del_page_from_lru_list(self, page)
        page.flags = 0
        page.mapping = 0
        page.private = 0
        page.kind = "free"

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
