"""``--mode raw``: the floor of this design, with no MMU model on the hot path.

Unicorn runs in its ordinary TLB mode with the guest's virtual address space
mapped directly: every VMA is populated up front (as MAP_POPULATE would,
into physically contiguous frames from the buddy allocator) and each run of
frames is mapped at its virtual address with ``mem_map_ptr``, so Unicorn
never calls back on a translation. The kernel model still keeps the VMAs and
page tables (the syscalls read and write guest memory through them), and the
mapping is brought up to date after every address-space syscall.

What raw mode does not model: page faults (everything is present from the
start), accessed/dirty bits, and coherence of MAP_SHARED file mappings with
the page cache (their pages are private copies). It exists to measure the
cost of everything else: the benchmark's denominator.
"""
from __future__ import annotations

import numpy as np
import unicorn

from mmuemu.kernel.filemap import find_get_page
from mmuemu.kernel.kernel import Kernel
from mmuemu.kernel.memory import vm_normal_page
from mmuemu.kernel.mm_types import PG, VM, SetPage, VmAreaStruct
from mmuemu.kernel.mmap import expand_stack
from mmuemu.kernel.page_alloc import MAX_ORDER, OutOfMemory
from mmuemu.kernel.pgtable import ptep_get, pte_offset_alloc, pte_offset_lookup
from mmuemu.kernel.rmap import anon_vma_prepare, page_add_new_anon_rmap, page_remove_rmap
from mmuemu.kernel.sched import TaskStruct

PAGE = 4096


def _uc_perms(flags: int) -> int:
    perms = 0
    if flags & VM.READ:
        perms |= unicorn.UC_PROT_READ
    if flags & VM.WRITE:
        perms |= unicorn.UC_PROT_WRITE
    if flags & VM.EXEC:
        perms |= unicorn.UC_PROT_EXEC
    return perms


class RawMapper:
    """Keeps Unicorn's direct VA mappings equal to the task's VMAs."""

    def __init__(self, uc: unicorn.Uc, kern: Kernel, task: TaskStruct) -> None:
        self.uc = uc
        self.kern = kern
        self.task = task
        #: vpn -> Unicorn perms of every page mapped into Unicorn
        self.mapped: dict[int, int] = {}
        #: whether this address space is the one in Unicorn now
        self.attached = True
        self._detached: dict[int, int] = {}

    def detach(self) -> None:
        """Take this address space out of Unicorn (before switching to another task)."""
        if not self.attached:
            return
        for start, n in _runs(sorted(self.mapped)):
            self.uc.mem_unmap(start << 12, n << 12)
        self._detached = dict(self.mapped)
        self.mapped.clear()
        self.attached = False

    def populate_detached(self) -> None:
        """A forked child's copy of every page, made at fork time (raw mode has no
        COW); it is mapped into Unicorn when the child first runs."""
        self.attached = False
        self.sync()
        self._detached = dict(self.mapped)
        self.mapped.clear()

    def attach(self) -> None:
        """Map this address space back, then bring it up to date (a forked child
        gets private copies of every page here: raw mode has no COW).

        Pages are mapped in maximal runs that are contiguous both virtually and
        physically and share permissions: one mem_map_ptr per run, since each
        call walks Unicorn's list of RAM blocks.
        """
        if self.attached:
            return
        self.attached = True
        saved = self._detached
        self._detached = {}
        mm = self.task.mm
        fmt = self.kern.fmt
        base_ptr = self.kern.phys.address()
        run_vpn = run_pfn = run_len = run_perms = -1

        def flush_run() -> None:
            if run_len > 0:
                self.uc.mem_map_ptr(run_vpn << 12, run_len << 12, run_perms,
                                    base_ptr + (run_pfn << 12))
                for v in range(run_vpn, run_vpn + run_len):
                    self.mapped[v] = run_perms

        for vpn in sorted(saved):
            pa = pte_offset_lookup(mm, vpn << 12)
            pte = ptep_get(mm, pa) if pa is not None else 0
            if not pte:
                continue
            pfn, perms = fmt.pte_pfn(pte), saved[vpn]
            if (run_len > 0 and vpn == run_vpn + run_len and pfn == run_pfn + run_len
                    and perms == run_perms):
                run_len += 1
                continue
            flush_run()
            run_vpn, run_pfn, run_len, run_perms = vpn, pfn, 1, perms
        flush_run()
        self.sync()

    def grow_stack_fully(self) -> None:
        """Give the stack VMA its whole RLIMIT_STACK now (it cannot fault to grow)."""
        mm = self.task.mm
        for vma in list(mm.mm_rb):
            if vma.vm_flags & VM.GROWSDOWN:
                expand_stack(mm, vma, vma.vm_end - self.kern.config.stack_rlimit + PAGE)

    def sync(self) -> None:
        """Unmap what no VMA covers, re-protect changed pages, populate new ones."""
        wanted: dict[int, tuple[int, VmAreaStruct]] = {}
        for vma in self.task.mm.mm_rb:
            perms = _uc_perms(vma.vm_flags)
            for vpn in range(vma.vm_start >> 12, vma.vm_end >> 12):
                wanted[vpn] = (perms, vma)
        mm = self.task.mm
        u64 = self.kern.phys.u64
        gone = []
        for vpn in self.mapped:
            if vpn not in wanted:
                gone.append(vpn)
                continue
            pte_pa = pte_offset_lookup(mm, vpn << 12)  # zapped by MADV_DONTNEED?
            if pte_pa is None or not u64[pte_pa >> 3]:
                gone.append(vpn)
        for start, n in _runs(sorted(gone)):
            self.uc.mem_unmap(start << 12, n << 12)
            for vpn in range(start, start + n):
                del self.mapped[vpn]
        reprot = sorted(vpn for vpn, perms in self.mapped.items() if wanted[vpn][0] != perms)
        for start, n in _runs(reprot):
            perms = wanted[start][0]
            self.uc.mem_protect(start << 12, n << 12, perms)
            for vpn in range(start, start + n):
                self.mapped[vpn] = perms
        new = sorted(vpn for vpn in wanted if vpn not in self.mapped)
        for start, n in _runs(new):
            self._populate_run(start, n, wanted)

    def _populate_run(self, start: int, n: int, wanted: dict[int, tuple[int, VmAreaStruct]]) -> None:
        vpn = start
        end = start + n
        while vpn < end:
            # one buddy block: the largest power of two that fits, within one VMA
            perms, vma = wanted[vpn]
            run = 1
            while vpn + run < end and wanted[vpn + run][1] is vma and run < (1 << (MAX_ORDER - 1)):
                run += 1
            order = run.bit_length() - 1
            while True:  # a smaller block when memory is fragmented or short
                try:
                    pfn = self.kern.buddy.alloc_pages(order)
                    break
                except OutOfMemory:
                    if order == 0:
                        raise
                    order -= 1
            count = 1 << order
            self._fill(vma, vpn, count, pfn)
            if self.attached:
                self.uc.mem_map_ptr(vpn << 12, count << 12, perms,
                                    self.kern.phys.address() + (pfn << 12))
            for v in range(vpn, vpn + count):
                self.mapped[v] = perms
            vpn += count

    def _fill(self, vma: VmAreaStruct, vpn: int, count: int, first_pfn: int) -> None:
        """Put pages first_pfn.. behind vpn.. with the contents the VMA would show."""
        kern = self.kern
        mm = self.task.mm
        fmt = kern.fmt
        phys = kern.phys
        phys.buf[first_pfn << 12:(first_pfn + count) << 12] = 0
        anon_vma_prepare(vma)
        writable = bool(vma.vm_flags & VM.WRITE)
        for i in range(count):
            addr = (vpn + i) << 12
            pfn = first_pfn + i
            pte_pa = pte_offset_alloc(mm, addr)
            old = ptep_get(mm, pte_pa)
            if old and fmt.pte_present(old):
                phys.copy_frame(pfn, fmt.pte_pfn(old))
                page = vm_normal_page(vma, addr, old)
                if page is not None:
                    page_remove_rmap(page, vma)
                    kern.put_page(page)
            elif vma.vm_file is not None and vma.vm_ops is not None:
                self._copy_file_page(vma, addr, pfn)
            page = kern.buddy.pfn_to_page(pfn)
            page.flags = 0
            page._count = 1
            page._mapcount = -1
            page.kind = "user"
            SetPage(page, PG.uptodate)
            page_add_new_anon_rmap(page, vma, addr)
            entry = fmt.pfn_pte(pfn, vma.vm_page_prot)
            if writable:
                entry = fmt.pte_mkwrite(fmt.pte_mkdirty(entry))
            kern.phys.u64[pte_pa >> 3] = entry

    def _copy_file_page(self, vma: VmAreaStruct, addr: int, pfn: int) -> None:
        assert vma.vm_file is not None
        mapping = vma.vm_file.f_mapping
        inode = mapping.host
        assert inode is not None
        index = ((addr - vma.vm_start) >> 12) + vma.vm_pgoff
        if index << 12 >= inode.i_size:
            return
        page = find_get_page(mapping, index)
        if page is None:
            from mmuemu.kernel.filemap import populate_page_cache
            populate_page_cache(self.kern, mapping)
            page = find_get_page(mapping, index)
        if page is not None:
            self.kern.phys.copy_frame(pfn, page.pfn)
            self.kern.put_page(page)


def _runs(vpns: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs in a sorted list: [(start, length), ...]."""
    out: list[tuple[int, int]] = []
    if not vpns:
        return out
    arr = np.asarray(vpns, dtype=np.int64)
    breaks = np.nonzero(np.diff(arr) != 1)[0]
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks + 1, [len(arr)]))
    for s, e in zip(starts.tolist(), ends.tolist()):
        out.append((vpns[s], e - s))
    return out
