"""``--mode raw``: the floor of this design, with no MMU model on the hot path.

Unicorn runs in its ordinary TLB mode with the guest's virtual address space
mapped directly: every VMA is populated up front (as MAP_POPULATE would,
into physically contiguous frames from the buddy allocator) and each run of
frames is mapped at its virtual address with ``mem_map_ptr``, so Unicorn
never calls back on a translation. The kernel model still keeps the VMAs and
page tables (the syscalls read and write guest memory through them), and the
mapping is brought up to date after every address-space syscall.

Processes: Unicorn has one address space, so only the running task's pages
are mapped. A context switch unmaps the previous task's runs and maps the
next task's, one ``mem_unmap`` / ``mem_map_ptr`` per run (a run is virtually
and physically contiguous with one set of permissions). The runs are kept
between switches and the task's PTEs are compared (one numpy gather) to what
they were when it was switched out, so a switch costs a few Unicorn calls
per run, not work per page. A forked child gets private copies of every page
at fork (raw mode has no COW), in buddy blocks, so it has few runs too.

What raw mode does not model: page faults (everything is present from the
start), accessed/dirty bits, and coherence of MAP_SHARED file mappings with
the page cache (their pages are private copies). It exists to measure the
cost of everything else: the benchmark's denominator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import numpy.typing as npt
import unicorn

from mmuemu.hw.pte import ADDR_MASK
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
_ADDR_MASK = np.uint64(ADDR_MASK)


def _uc_perms(flags: int) -> int:
    perms = 0
    if flags & VM.READ:
        perms |= unicorn.UC_PROT_READ
    if flags & VM.WRITE:
        perms |= unicorn.UC_PROT_WRITE
    if flags & VM.EXEC:
        perms |= unicorn.UC_PROT_EXEC
    return perms


@dataclass(frozen=True, slots=True)
class _Layout:
    """An address space's pages as Unicorn mappings (derived from RawMapper.pages)."""

    #: (first vpn, pages, Unicorn perms, first pfn): maximal runs contiguous in
    #: both address spaces with one perms; one mem_map_ptr each
    runs: list[tuple[int, int, int, int]]
    #: (first vpn, pages): maximal virtually contiguous runs; one mem_unmap each
    va_runs: list[tuple[int, int]]
    #: every page's vpn, pfn and PTE address, in vpn order
    vpns: npt.NDArray[np.int64]
    pfns: npt.NDArray[np.int64]
    pte_pas: npt.NDArray[np.int64]


class RawMapper:
    """Keeps Unicorn's direct VA mappings equal to one task's VMAs.

    ``pages`` maps every page this address space has (in Unicorn when
    ``attached``, set aside otherwise) to its Unicorn permissions, its frame
    and the physical address of its PTE.
    """

    def __init__(self, uc: unicorn.Uc, kern: Kernel, task: TaskStruct) -> None:
        self.uc = uc
        self.kern = kern
        self.task = task
        #: vpn -> (Unicorn perms, pfn, PTE physical address)
        self.pages: dict[int, tuple[int, int, int]] = {}
        #: whether this address space is the one in Unicorn now
        self.attached = True
        self._layout: Optional[_Layout] = None
        #: the PTEs (in _layout order) when the task was switched out
        self._snapshot: Optional[npt.NDArray[np.uint64]] = None
        #: Unicorn calls made (for the tests: a switch costs calls per run)
        self.uc_calls = {"map": 0, "unmap": 0, "protect": 0}

    @property
    def mapped(self) -> dict[int, int]:
        """vpn -> Unicorn perms of every page in Unicorn now (empty when detached)."""
        return {v: p[0] for v, p in self.pages.items()} if self.attached else {}

    # --- context switches ----------------------------------------------------------------
    def detach(self) -> None:
        """Take this address space out of Unicorn (before switching to another task)."""
        if not self.attached:
            return
        lay = self._get_layout()
        for vpn, n in lay.va_runs:
            self._unmap(vpn, n)
        self._snapshot = self.kern.phys.u64[lay.pte_pas >> 3].copy()
        self.attached = False

    def populate_detached(self) -> None:
        """A forked child's copy of every page, made at fork time (raw mode has no
        COW); it is mapped into Unicorn when the child first runs."""
        self.attached = False
        self.sync()
        self._snapshot = self.kern.phys.u64[self._get_layout().pte_pas >> 3].copy()

    def attach(self) -> None:
        """Map this address space back: its runs as they were when it was switched
        out, if its PTEs are unchanged (the usual case); otherwise every page is
        checked against its PTE and the mapping brought up to date."""
        if self.attached:
            return
        lay = self._get_layout()
        snap, self._snapshot = self._snapshot, None
        if snap is not None and np.array_equal(self.kern.phys.u64[lay.pte_pas >> 3], snap):
            # unchanged: only the task's own syscalls change its VMAs, and each of
            # those was followed by sync() while it was attached
            self.attached = True
            self._map_runs(lay.runs)
            return
        self._drop_changed(lay)  # (still detached: nothing to unmap)
        self.attached = True
        self._map_runs(self._get_layout().runs)
        self.sync()

    # --- keeping up with the VMAs ----------------------------------------------------------
    def grow_stack_fully(self) -> None:
        """Give the stack VMA its whole RLIMIT_STACK now (it cannot fault to grow)."""
        mm = self.task.mm
        for vma in list(mm.mm_rb):
            if vma.vm_flags & VM.GROWSDOWN:
                expand_stack(mm, vma, vma.vm_end - self.kern.config.stack_rlimit + PAGE)

    def sync(self) -> None:
        """Unmap what no VMA covers or whose PTE changed (zapped by MADV_DONTNEED,
        moved by mremap), re-protect changed pages, populate new ones."""
        wanted: dict[int, tuple[int, VmAreaStruct]] = {}
        for vma in self.task.mm.mm_rb:
            perms = _uc_perms(vma.vm_flags)
            for vpn in range(vma.vm_start >> 12, vma.vm_end >> 12):
                wanted[vpn] = (perms, vma)
        gone = {vpn for vpn in self.pages if vpn not in wanted}
        gone.update(self._changed_ptes(self._get_layout()))
        self._remove(sorted(gone))
        reprot = sorted(vpn for vpn, page in self.pages.items() if wanted[vpn][0] != page[0])
        for start, n in _runs(reprot):
            perms = wanted[start][0]
            if self.attached:
                self.uc.mem_protect(start << 12, n << 12, perms)
                self.uc_calls["protect"] += 1
            for vpn in range(start, start + n):
                _, pfn, pte_pa = self.pages[vpn]
                self.pages[vpn] = (perms, pfn, pte_pa)
        if reprot:
            self._layout = None
        new = sorted(vpn for vpn in wanted if vpn not in self.pages)
        for start, n in _runs(new):
            self._populate_run(start, n, wanted)

    # --- internals -----------------------------------------------------------------------
    def _get_layout(self) -> _Layout:
        lay = self._layout
        if lay is None:
            lay = self._layout = _make_layout(self.pages)
        return lay

    def _changed_ptes(self, lay: _Layout) -> list[int]:
        """Pages whose PTE no longer maps their frame (cleared, or another frame)."""
        if not len(lay.vpns):
            return []
        ptes = self.kern.phys.u64[lay.pte_pas >> 3]
        bad = (ptes == 0) | ((ptes & _ADDR_MASK) >> np.uint64(12) != lay.pfns.astype(np.uint64))
        return lay.vpns[bad].tolist()

    def _drop_changed(self, lay: _Layout) -> None:
        """Slow path of attach: forget pages whose PTE changed while detached
        (sync() then populates them again from the kernel's view)."""
        mm = self.task.mm
        gone = set(self._changed_ptes(lay))
        for vpn in lay.vpns.tolist():
            pa = pte_offset_lookup(mm, vpn << 12)
            if pa is None or pa != self.pages[vpn][2]:
                gone.add(vpn)
        self._remove(sorted(gone))

    def _remove(self, vpns: list[int]) -> None:
        if not vpns:
            return
        for start, n in _runs(vpns):
            if self.attached:
                self._unmap(start, n)
            for vpn in range(start, start + n):
                del self.pages[vpn]
        self._layout = None

    def _unmap(self, vpn: int, n: int) -> None:
        self.uc.mem_unmap(vpn << 12, n << 12)
        self.uc_calls["unmap"] += 1

    def _map_runs(self, runs: list[tuple[int, int, int, int]]) -> None:
        base = self.kern.phys.address()
        for vpn, n, perms, pfn in runs:
            self.uc.mem_map_ptr(vpn << 12, n << 12, perms, base + (pfn << 12))
            self.uc_calls["map"] += 1

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
            pte_pas = self._fill(vma, vpn, count, pfn)
            if self.attached:
                self._map_runs([(vpn, count, perms, pfn)])
            for i in range(count):
                self.pages[vpn + i] = (perms, pfn + i, pte_pas[i])
            self._layout = None
            vpn += count

    def _fill(self, vma: VmAreaStruct, vpn: int, count: int, first_pfn: int) -> list[int]:
        """Put pages first_pfn.. behind vpn.. with the contents the VMA would show;
        returns their PTE addresses."""
        kern = self.kern
        mm = self.task.mm
        fmt = kern.fmt
        phys = kern.phys
        # frames never allocated since boot hold zeroes already (Kernel.alloc_page)
        mem_map = kern.buddy.mem_map
        if any(mem_map[pfn] is not None for pfn in range(first_pfn, first_pfn + count)):
            phys.buf[first_pfn << 12:(first_pfn + count) << 12] = 0
        anon_vma_prepare(vma)
        writable = bool(vma.vm_flags & VM.WRITE)
        pte_pas = []
        for i in range(count):
            addr = (vpn + i) << 12
            pfn = first_pfn + i
            pte_pa = pte_offset_alloc(mm, addr)
            pte_pas.append(pte_pa)
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
        return pte_pas

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


def _make_layout(pages: dict[int, tuple[int, int, int]]) -> _Layout:
    """Runs of ``pages``: maximal (virtually and physically contiguous, one perms)
    for mapping, maximal virtually contiguous for unmapping."""
    n = len(pages)
    vpns = np.fromiter(sorted(pages), dtype=np.int64, count=n)
    info = np.array([pages[v] for v in vpns.tolist()], dtype=np.int64).reshape(n, 3)
    perms, pfns, pte_pas = info[:, 0], info[:, 1], info[:, 2]
    if n == 0:
        return _Layout([], [], vpns, pfns, pte_pas)
    va_break = np.diff(vpns) != 1
    brk = va_break | (np.diff(pfns) != 1) | (np.diff(perms) != 0)
    starts = np.concatenate(([0], np.nonzero(brk)[0] + 1))
    ends = np.concatenate((starts[1:], [n]))
    runs = [(int(vpns[s]), int(e - s), int(perms[s]), int(pfns[s]))
            for s, e in zip(starts.tolist(), ends.tolist())]
    va_starts = np.concatenate(([0], np.nonzero(va_break)[0] + 1))
    va_ends = np.concatenate((va_starts[1:], [n]))
    va_runs = [(int(vpns[s]), int(e - s)) for s, e in zip(va_starts.tolist(), va_ends.tolist())]
    return _Layout(runs, va_runs, vpns, pfns, pte_pas)


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
