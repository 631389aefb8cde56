"""asm/cacheflush.h: the cache maintenance the mm code asks for, per architecture.

The mm code calls the functions at the bottom of this module where Linux 6.x
calls them (each docstring names the call sites); they forward to the
kernel's :class:`CacheFlushArch`, which counts every call and, where the
architecture needs it, issues instructions on the CPU's
:class:`mmuemu.hw.cache.CacheMaintenance` (counted there per instruction and
per line).

* x86-64 (``arch/x86/include/asm/cacheflush.h`` includes
  ``asm-generic/cacheflush.h``): every hook is empty. Stores snoop the
  instruction cache and the caches are physically tagged, so nothing is
  needed; the calls are counted as no-ops.
* arm64 (``arch/arm64/include/asm/cacheflush.h``, ``arch/arm64/mm/flush.c``,
  ``arch/arm64/mm/cache.S``): the D-cache is PIPT, so ``flush_cache_page``,
  ``flush_cache_range`` and ``flush_cache_mm`` are empty (the seeds quote the
  empty ``flush_cache_page``). Instruction fetch is not coherent with stores,
  and the work happens lazily: ``flush_dcache_page`` only clears
  PG_dcache_clean; ``set_pte_at`` of a present, user-executable, non-special
  PTE calls ``__sync_icache_dcache``, which for a page without PG_dcache_clean
  runs ``sync_icache_aliases`` over the page (``dc cvau`` per line and ``dsb
  ish`` unless CTR_EL0.IDC; ``ic ivau`` per line, ``dsb ish`` and ``isb``
  unless DIC; or ``ic ialluis`` for an aliasing I-cache) and sets
  PG_dcache_clean. Later mappings of the same page (another process, fork,
  a refault) cost nothing; a new page (allocation clears its flags), a COW
  copy (``copy_user_highpage`` → ``flush_dcache_page``) or a write(2) into
  the page cache (``flush_dcache_page``) needs the sync again.
* an aliasing D-cache (the profile's what-if ``cache.dcache_aliasing`` on
  arm64): ``flush_cache_page`` cleans and invalidates the user alias's
  lines, and ``flush_dcache_page`` of a page-cache page whose file is mapped
  cleans the kernel alias and calls :func:`flush_aliases`, which walks the
  mapping's i_mmap tree for the current mm's shared mappings of the page, as
  nios2 does (``arch/nios2/mm/cacheflush.c``, the seeds' ``flush_aliases``).
  Only these two hooks change in the what-if: a real aliasing architecture
  also flushes ranges and whole address spaces, which is not modelled.

Linux 3.x's arm64 ``flush_dcache_page`` cleaned a mapped page at once
instead of deferring; we follow the kernel this machine runs.

Kernel "virtual" addresses of pages (the linear map) are their physical
addresses here: maintenance by kernel address covers the same lines.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from mmuemu.hw.arm64.pte import PTE_UXN
from mmuemu.hw.cache import CacheMaintenance
from mmuemu.kernel.mm_types import (
    PG_dcache_clean, VM, ClearPage, MmStruct, Page, PageAnon, PageTest, SetPage, VmAreaStruct,
)

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

#: The hooks, counted per call (the ``cache.calls`` stats).
HOOKS = ("flush_cache_mm", "flush_cache_dup_mm", "flush_cache_range", "flush_cache_page",
         "flush_dcache_page", "flush_icache_range", "copy_user_highpage",
         "sync_icache_dcache", "flush_aliases")
PAGE_SIZE = 4096
#: every page flag but PG_dcache_clean (ClearPage, inline)
_NOT_DCACHE_CLEAN = ~(1 << PG_dcache_clean)


class CacheFlushArch:
    """``asm-generic/cacheflush.h``: every hook is empty (x86-64 uses it as is).

    ``calls`` counts each hook; ``noops`` counts the calls that issued no
    instruction. ``sync_on_set_pte`` tells ``set_pte_at`` whether to call
    :meth:`sync_icache_dcache` (arm64's ``__set_pte_at``), and
    ``sync_skip_bits`` which PTE bits, besides the format's special bit,
    tell it not to (arm64: ``PTE_UXN``, the PTE is not user-executable).
    """

    name = "generic"
    sync_on_set_pte = False
    sync_skip_bits = 0

    def __init__(self, hw: Optional[CacheMaintenance] = None) -> None:
        self.hw = hw
        self.calls: dict[str, int] = dict.fromkeys(HOOKS, 0)
        self.noops: dict[str, int] = dict.fromkeys(HOOKS, 0)

    def _noop(self, hook: str) -> None:
        self.calls[hook] += 1
        self.noops[hook] += 1

    def flush_cache_mm(self, mm: MmStruct) -> None:
        self._noop("flush_cache_mm")

    def flush_cache_dup_mm(self, mm: MmStruct) -> None:
        self._noop("flush_cache_dup_mm")

    def flush_cache_range(self, vma: VmAreaStruct, start: int, end: int) -> None:
        self._noop("flush_cache_range")

    def flush_cache_page(self, vma: VmAreaStruct, addr: int, pfn: int) -> None:
        # _noop("flush_cache_page"), inline: every COW break and reuse calls it
        self.calls["flush_cache_page"] += 1
        self.noops["flush_cache_page"] += 1

    def flush_dcache_page(self, kern: "Kernel", page: Page) -> None:
        self._noop("flush_dcache_page")

    def flush_icache_range(self, start: int, end: int) -> None:
        self._noop("flush_icache_range")

    def copy_user_highpage(self, kern: "Kernel", to: Page, src: Page) -> None:
        """copy_user_highpage(): copy_page() and nothing else."""
        kern.phys.copy_frame(to.pfn, src.pfn)
        self.calls["copy_user_highpage"] += 1  # _noop(), inline: every COW break
        self.noops["copy_user_highpage"] += 1

    def sync_icache_dcache(self, mm: MmStruct, addr: int, pte: int) -> None:
        """set_pte_at()'s arch hook; only called when :attr:`sync_on_set_pte`."""

    def as_dict(self) -> dict[str, object]:
        """The hooks' call counts, and how many of the calls issued nothing."""
        return {"hooks": self.name, "calls": dict(self.calls), "noop_calls": dict(self.noops)}


class X86CacheFlush(CacheFlushArch):
    """x86-64: ``asm-generic/cacheflush.h``, every hook empty (coherent caches)."""

    name = "x86_64"


class Arm64CacheFlush(CacheFlushArch):
    """arm64 (Linux 6.x): PIPT D-cache, lazy I/D synchronisation (module docstring)."""

    name = "aarch64"
    sync_on_set_pte = True
    #: !pte_user_exec(): __set_pte_at() does not call __sync_icache_dcache()
    sync_skip_bits = PTE_UXN

    def __init__(self, hw: CacheMaintenance) -> None:
        super().__init__(hw)
        self.cpu: CacheMaintenance = hw
        self.config = hw.config

    # --- arch/arm64/mm/cache.S ------------------------------------------------------------
    def dcache_clean_pou(self, start: int, end: int) -> None:
        """dcache_clean_pou(): dc cvau by line and dsb ish; only dsb ishst with IDC."""
        if not self.config.idc:
            self.cpu.by_line("dc_cvau", start, end)
        self.cpu.issue("dsb")

    def icache_inval_pou(self, start: int, end: int) -> None:
        """invalidate_icache_by_line: ic ivau by line, dsb ish, isb; only isb with DIC."""
        if not self.config.dic:
            self.cpu.by_line("ic_ivau", start, end)
            self.cpu.issue("dsb")
        self.cpu.issue("isb")

    def caches_clean_inval_pou(self, start: int, end: int) -> None:
        """caches_clean_inval_pou(): make [start, end) coherent for instruction fetch."""
        self.dcache_clean_pou(start, end)
        self.icache_inval_pou(start, end)

    def icache_inval_all_pou(self) -> None:
        """icache_inval_all_pou(): ic ialluis and dsb ish (nothing with DIC)."""
        if self.config.dic:
            return
        self.cpu.issue("ic_ialluis")
        self.cpu.issue("dsb")

    # --- arch/arm64/mm/flush.c ------------------------------------------------------------
    def sync_icache_aliases(self, start: int, end: int) -> None:
        """sync_icache_aliases(): clean to PoU and invalidate the I-cache (whole,
        when it aliases)."""
        if self.config.icache_aliasing:
            self.dcache_clean_pou(start, end)
            self.icache_inval_all_pou()
        else:
            self.caches_clean_inval_pou(start, end)

    def sync_icache_dcache(self, mm: MmStruct, addr: int, pte: int) -> None:
        """__sync_icache_dcache(): the page of a PTE that __set_pte_at() is
        about to store, present, user-executable and not special (the caller's
        test, ``set_pte_at``), is synced unless it is PG_dcache_clean."""
        kern = mm.kernel
        page = kern.pfn_to_page(kern.fmt.pte_pfn(pte))
        if PageTest(page, PG_dcache_clean):
            return
        start = page.pfn * PAGE_SIZE  # folio_address(): the linear map
        self.sync_icache_aliases(start, start + PAGE_SIZE)
        SetPage(page, PG_dcache_clean)
        self.calls["sync_icache_dcache"] += 1
        trace_tlb_flush = kern.tracepoints.tlb_flush
        if trace_tlb_flush is not None:
            trace_tlb_flush(mm, "icache", addr & ~(PAGE_SIZE - 1),
                            (addr & ~(PAGE_SIZE - 1)) + PAGE_SIZE)

    def flush_dcache_page(self, kern: "Kernel", page: Page) -> None:
        """flush_dcache_folio(): the kernel wrote the page; instruction fetch
        through a user mapping needs a sync again (no instruction now)."""
        self._noop("flush_dcache_page")
        if PageTest(page, PG_dcache_clean):
            ClearPage(page, PG_dcache_clean)

    def flush_icache_range(self, start: int, end: int) -> None:
        """flush_icache_range(): caches_clean_inval_pou() (then kick_all_cpus_sync(),
        nothing on one CPU). Linux calls it for kernel text it writes (modules,
        kprobes, BPF); no mm path modelled here does."""
        self.calls["flush_icache_range"] += 1
        self.caches_clean_inval_pou(start, end)

    def copy_user_highpage(self, kern: "Kernel", to: Page, src: Page) -> None:
        """arch/arm64/mm/copypage.c: copy_highpage() then flush_dcache_page(to),
        here inline (every COW break comes through): count both, clear the
        copy's PG_dcache_clean. A subclass with its own flush_dcache_page
        overrides this too."""
        kern.phys.copy_frame(to.pfn, src.pfn)
        calls, noops = self.calls, self.noops
        calls["copy_user_highpage"] += 1
        noops["copy_user_highpage"] += 1
        calls["flush_dcache_page"] += 1
        noops["flush_dcache_page"] += 1
        to.flags &= _NOT_DCACHE_CLEAN


class Arm64AliasingDcache(Arm64CacheFlush):
    """arm64 with the what-if aliasing D-cache (``cache.dcache_aliasing``)."""

    name = "aarch64+dcache_aliasing"

    def copy_user_highpage(self, kern: "Kernel", to: Page, src: Page) -> None:
        """copy_highpage() then this class's flush_dcache_page(to)."""
        kern.phys.copy_frame(to.pfn, src.pfn)
        self._noop("copy_user_highpage")
        self.flush_dcache_page(kern, to)

    def flush_cache_page(self, vma: VmAreaStruct, addr: int, pfn: int) -> None:
        """Clean and invalidate the user alias of the page (dc civac by line)."""
        self.calls["flush_cache_page"] += 1
        start = addr & ~(PAGE_SIZE - 1)
        self.cpu.by_line("dc_civac", start, start + PAGE_SIZE)
        self.cpu.issue("dsb")

    def flush_dcache_page(self, kern: "Kernel", page: Page) -> None:
        """nios2's flush_dcache_page(): a page-cache page whose file nobody maps
        is only marked (PG_dcache_clean cleared); otherwise the kernel alias is
        cleaned, every user alias flushed (:func:`flush_aliases`), the I-cache
        invalidated for the page, and PG_dcache_clean set."""
        self.calls["flush_dcache_page"] += 1
        if page.pfn == kern.zero_pfn:
            self.noops["flush_dcache_page"] += 1
            return
        mapping = None
        if page.mapping and not PageAnon(page):
            mapping = kern.kobj.lookup(page.mapping)
        if mapping is not None and mapping.i_mmap.rb_root.rb_node is None:
            self.noops["flush_dcache_page"] += 1
            ClearPage(page, PG_dcache_clean)
            return
        start = page.pfn * PAGE_SIZE
        self.cpu.by_line("dc_civac", start, start + PAGE_SIZE)  # __flush_dcache_page
        self.cpu.issue("dsb")
        if mapping is not None:
            flush_aliases(kern, mapping, page)
            self.icache_inval_pou(start, start + PAGE_SIZE)
        SetPage(page, PG_dcache_clean)


def cacheflush_for(arch_label: str, hw: CacheMaintenance) -> CacheFlushArch:
    """The kernel's cache-flush hooks for an architecture and its caches."""
    if arch_label == "aarch64":
        if hw.config.dcache_aliasing:
            return Arm64AliasingDcache(hw)
        return Arm64CacheFlush(hw)
    return X86CacheFlush(hw)


# --- what the mm code calls ---------------------------------------------------------------

def flush_cache_mm(mm: MmStruct) -> None:
    """flush_cache_mm(): exit_mmap(), before the address space is torn down."""
    mm.kernel.cacheflush.flush_cache_mm(mm)


def flush_cache_dup_mm(mm: MmStruct) -> None:
    """flush_cache_dup_mm(): dup_mmap(), on the parent's mm before its PTEs are copied."""
    mm.kernel.cacheflush.flush_cache_dup_mm(mm)


def flush_cache_range(vma: VmAreaStruct, start: int, end: int) -> None:
    """flush_cache_range(): tlb_start_vma() (zap: munmap, madvise; mprotect) with
    the whole VMA, and move_page_tables() with the moved range."""
    vma.vm_mm.kernel.cacheflush.flush_cache_range(vma, start, end)


def tlb_start_vma(vma: VmAreaStruct) -> None:
    """tlb_start_vma(): flush_cache_range() over the VMA before its PTEs change
    (not for a full-mm teardown, which flushes the mm instead)."""
    flush_cache_range(vma, vma.vm_start, vma.vm_end)


def flush_cache_page(vma: VmAreaStruct, addr: int, pfn: int) -> None:
    """flush_cache_page(): before a PTE of a user page is replaced or cleaned:
    wp_page_copy(), wp_page_reuse(), try_to_unmap_one(), page_mkclean_one()."""
    vma.vm_mm.kernel.cacheflush.flush_cache_page(vma, addr, pfn)


def flush_dcache_page(kern: "Kernel", page: Page) -> None:
    """flush_dcache_page(): the kernel wrote a page user space may map:
    generic_perform_write() after each copy, filemap_read() of a writably
    mapped file, the zeroed tail of a page at truncate, copy_user_highpage()."""
    kern.cacheflush.flush_dcache_page(kern, page)


def copy_user_highpage(kern: "Kernel", to: Page, src: Page) -> None:
    """copy_user_highpage(): the copy of a COW fault (wp_page_copy, do_cow_fault)."""
    kern.cacheflush.copy_user_highpage(kern, to, src)


def flush_aliases(kern: "Kernel", mapping: object, page: Page) -> None:
    """flush_aliases() (nios2, quoted in the seeds): flush_cache_page() for every
    shared mapping of ``page`` in the current mm, found through i_mmap."""
    from mmuemu.kernel.interval_tree import vma_interval_tree_foreach
    arch = kern.cacheflush
    arch.calls["flush_aliases"] += 1
    current = kern.current
    mm = current.mm if current is not None else None
    pgoff = page.index
    for vma in list(vma_interval_tree_foreach(mapping.i_mmap, pgoff, pgoff)):  # type: ignore[attr-defined]
        if vma.vm_mm is not mm:
            continue
        if not vma.vm_flags & VM.MAYSHARE:
            continue
        offset = (pgoff - vma.vm_pgoff) * PAGE_SIZE
        arch.flush_cache_page(vma, vma.vm_start + offset, page.pfn)
