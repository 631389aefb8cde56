"""The mm structures: struct page, vm_area_struct, mm_struct, file, inode,
address_space, anon_vma, anon_vma_chain and struct vm_fault.

Models include/linux/mm_types.h, include/linux/fs.h and include/linux/rmap.h.
Field names are the kernel's, so a reader can hold this beside the seeds.

Kernel pointers that are *values* (page->mapping with its PAGE_MAPPING_ANON
low bit) are kernel virtual addresses handed out by :class:`kobjects.KObjects`;
everything else is an ordinary Python reference.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from mmuemu.kernel.rbtree import RbNode, RbRootCached
from mmuemu.kernel.vma_tree import VmaTree

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel
    from mmuemu.kernel.radix_tree import RadixTreeRoot
    from mmuemu.kernel.fs import AddressSpaceOperations, VmOperations


class PG:
    """enum pageflags, numbered as the seed's 4.x kernel numbers them.

    The seed's page->flags dumps decode with these bit numbers: a shmem page
    0x...40038 = uptodate|dirty|lru|swapbacked, an anon stack page
    0x...4006c = referenced|uptodate|lru|active|swapbacked.

    Plain ints, not an IntEnum: the fault path tests and sets several flags
    per fault, and on Python 3.11 reading an enum member through its class
    costs a descriptor call (about 0.1 us) each time.
    """

    locked = 0
    error = 1
    referenced = 2
    uptodate = 3
    dirty = 4
    lru = 5
    active = 6
    waiters = 7
    slab = 8
    owner_priv_1 = 9  # PG_swapcache for anon pages
    arch_1 = 10  # PG_dcache_clean on arm64
    reserved = 11
    private = 12
    private_2 = 13
    writeback = 14
    head = 15
    mappedtodisk = 16
    reclaim = 17  # PG_readahead for page-cache pages
    swapbacked = 18
    unevictable = 19
    mlocked = 20


PG_swapcache = PG.owner_priv_1
PG_readahead = PG.reclaim
PG_dcache_clean = PG.arch_1

PAGE_MAPPING_ANON = 0x1


class VM:
    """vm_flags bits (include/linux/mm.h).

    Plain int constants, not an enum: flag tests sit on the fault path and
    IntFlag arithmetic costs microseconds per operation there.
    """

    NONE = 0
    READ = 0x00000001
    WRITE = 0x00000002
    EXEC = 0x00000004
    SHARED = 0x00000008
    MAYREAD = 0x00000010
    MAYWRITE = 0x00000020
    MAYEXEC = 0x00000040
    MAYSHARE = 0x00000080
    GROWSDOWN = 0x00000100
    PFNMAP = 0x00000400
    DENYWRITE = 0x00000800
    LOCKED = 0x00002000
    IO = 0x00004000
    SEQ_READ = 0x00008000
    RAND_READ = 0x00010000
    DONTCOPY = 0x00020000
    DONTEXPAND = 0x00040000
    ACCOUNT = 0x00100000
    NORESERVE = 0x00200000
    HUGETLB = 0x00400000
    NONLINEAR = 0x00800000


VM_STACK_FLAGS = VM.GROWSDOWN | VM.ACCOUNT  # plus VM_DATA_DEFAULT_FLAGS at use
VM_DATA_DEFAULT_FLAGS = VM.READ | VM.WRITE | VM.MAYREAD | VM.MAYWRITE | VM.MAYEXEC


class VmFaultReason:
    """vm_fault_t VM_FAULT_* result bits (include/linux/mm_types.h); plain ints."""

    NONE = 0
    OOM = 0x000001
    SIGBUS = 0x000002
    MAJOR = 0x000004
    WRITE = 0x000008  # historical: fault did a COW (3.x)
    HWPOISON = 0x000010
    SIGSEGV = 0x000040
    NOPAGE = 0x000100
    LOCKED = 0x000200
    RETRY = 0x000400
    FALLBACK = 0x000800
    DONE_COW = 0x001000


VM_FAULT_ERROR = VmFaultReason.OOM | VmFaultReason.SIGBUS | VmFaultReason.SIGSEGV | VmFaultReason.HWPOISON


class FaultFlag:
    """FAULT_FLAG_* inputs to handle_mm_fault; plain ints."""

    NONE = 0
    WRITE = 0x01
    MKWRITE = 0x02
    ALLOW_RETRY = 0x04
    RETRY_NOWAIT = 0x08
    KILLABLE = 0x10
    TRIED = 0x20
    USER = 0x40
    REMOTE = 0x80
    INSTRUCTION = 0x100
    INTERRUPTIBLE = 0x200
    UNSHARE = 0x400


class FaultKind(enum.Enum):
    """Which handler resolved a fault: the ``faults.by_type`` keys of the stats.

    anon: do_anonymous_page allocated a page. zero: do_anonymous_page mapped
    the zero page. file: do_read_fault (page-cache page, read only, or mapped
    by fault-around). cow: a private copy of a real page (do_cow_fault,
    wp_page_copy). wp: a write-protect fault that copied nothing real (zero
    page broken to a new page, or an exclusive anon page reused). shared:
    do_shared_fault / wp_page_shared. swap: do_swap_page. spurious: the PTE
    already allowed the access (access-flag update, stale translation).
    """

    ANON = "anon"
    ZERO = "zero"
    FILE = "file"
    COW = "cow"
    WP = "wp"
    SHARED = "shared"
    SWAP = "swap"
    SPURIOUS = "spurious"


@dataclass(slots=True, eq=False)
class Page:
    """struct page: one per page frame in use (created when first allocated).

    _count is the reference count (later kernels: _refcount); _mapcount starts
    at -1 (page_mapped() is _mapcount >= 0); mapping is a kernel address whose
    low bit PAGE_MAPPING_ANON says it points at an anon_vma rather than an
    address_space; index is the page offset within the mapping.
    """

    pfn: int
    flags: int = 0
    _count: int = 0
    _mapcount: int = -1
    mapping: int = 0
    index: int = 0
    private: int = 0
    lru: Optional[str] = None  # which LRU list the page is on, None if off-LRU
    #: what the frame is used for when it is not a user page ("pgtable", "zero")
    kind: str = "user"


def PageTest(page: Page, bit: int) -> bool:
    """Test one page flag (the PageXxx() accessors)."""
    return bool(page.flags >> bit & 1)


def SetPage(page: Page, bit: int) -> None:
    """Set one page flag (SetPageXxx / __SetPageXxx)."""
    page.flags |= 1 << bit


def ClearPage(page: Page, bit: int) -> None:
    """Clear one page flag (ClearPageXxx)."""
    page.flags &= ~(1 << bit)


def TestClearPage(page: Page, bit: int) -> bool:
    """TestClearPageXxx: clear the flag, say whether it was set."""
    was = bool(page.flags >> bit & 1)
    page.flags &= ~(1 << bit)
    return was


def PageAnon(page: Page) -> bool:
    """page->mapping has the PAGE_MAPPING_ANON bit set."""
    return bool(page.mapping & PAGE_MAPPING_ANON)


def page_mapcount(page: Page) -> int:
    """Number of PTEs mapping the page."""
    return page._mapcount + 1


def page_mapped(page: Page) -> bool:
    """Whether any PTE maps the page (_mapcount >= 0)."""
    return page._mapcount >= 0


@dataclass(slots=True, eq=False)
class Inode:
    """struct inode: what the model needs of it."""

    i_ino: int
    i_mode: int
    i_size: int
    i_mapping: "AddressSpace"
    #: host path backing a disk file, or None (shmem, devices)
    host_path: Optional[str] = None
    i_nlink: int = 1
    i_rdev: int = 0


@dataclass(slots=True, eq=False)
class AddressSpace:
    """struct address_space: a file's page cache and its mappings.

    page_tree is the radix tree of cached pages indexed by page offset;
    i_mmap is the interval tree of every VMA mapping the file, keyed by
    [vm_pgoff, last pgoff] (vma_interval_tree_* in interval_tree.py).
    """

    kaddr: int
    host: Optional[Inode]
    page_tree: "RadixTreeRoot"
    a_ops: "AddressSpaceOperations"
    nrpages: int = 0
    i_mmap: RbRootCached["VmAreaStruct"] = field(default_factory=RbRootCached)
    i_mmap_writable: int = 0
    writeback_index: int = 0
    flags: int = 0


@dataclass(slots=True, eq=False)
class FileRaState:
    """struct file_ra_state: per-open-file readahead state."""

    start: int = 0
    size: int = 0
    async_size: int = 0
    ra_pages: int = 32
    mmap_miss: int = 0
    prev_pos: int = -1


@dataclass(slots=True, eq=False)
class File:
    """struct file: an open file description."""

    f_inode: Inode
    f_mapping: AddressSpace
    f_flags: int
    f_mode: int
    path: str  # the guest path it was opened by (d_path)
    f_pos: int = 0
    f_count: int = 1
    f_ra: FileRaState = field(default_factory=FileRaState)
    f_op: str = "generic"
    #: host descriptor for the standard streams (a tty-like char device), else -1
    host_fd: int = -1
    #: a procfs file: its contents, generated at open
    proc_data: Optional[bytes] = None


@dataclass(slots=True, eq=False)
class AnonVma:
    """struct anon_vma: where anonymous pages of related VMAs point.

    root is the oldest anon_vma of the fork tree (itself for a fresh one);
    rb_root is the interval tree of the anon_vma_chains of every VMA that may
    map its pages, keyed by the VMA's pgoff range (anon_vma_interval_tree_*).
    """

    kaddr: int
    root: Optional["AnonVma"] = None
    refcount: int = 1
    degree: int = 1
    parent: Optional["AnonVma"] = None
    rb_root: RbRootCached["AnonVmaChain"] = field(default_factory=RbRootCached)


@dataclass(slots=True, eq=False)
class AnonVmaChain:
    """struct anon_vma_chain: links one VMA with one anon_vma.

    It sits on vma->anon_vma_chain (a list) and in anon_vma->rb_root (an
    interval tree: rb, rb_subtree_last; cached_vma_start/last are
    CONFIG_DEBUG_VM_RB's record of the interval it was filed under).
    """

    vma: "VmAreaStruct"
    anon_vma: AnonVma
    rb: RbNode["AnonVmaChain"] = field(init=False, repr=False)
    rb_subtree_last: int = field(default=0, repr=False)
    cached_vma_start: int = field(default=0, repr=False)
    cached_vma_last: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.rb = RbNode(self)


@dataclass(slots=True, eq=False)
class VmAreaStruct:
    """struct vm_area_struct: one mapped region [vm_start, vm_end) of an mm.

    vm_next/vm_prev (the address-sorted list), vm_rb and rb_subtree_gap
    belong to the mm's VmaTree; shared_rb and shared_rb_subtree_last
    (vma->shared.rb, vma->shared.rb_subtree_last) to the file's i_mmap tree.
    """

    vm_mm: "MmStruct"
    vm_start: int
    vm_end: int
    vm_flags: int
    vm_page_prot: int
    vm_pgoff: int = 0
    vm_file: Optional[File] = None
    vm_ops: Optional["VmOperations"] = None
    anon_vma: Optional[AnonVma] = None
    anon_vma_chain: list[AnonVmaChain] = field(default_factory=list)
    vm_private_data: object = None
    vm_next: Optional["VmAreaStruct"] = field(default=None, repr=False)
    vm_prev: Optional["VmAreaStruct"] = field(default=None, repr=False)
    vm_rb: RbNode["VmAreaStruct"] = field(init=False, repr=False)
    #: largest free gap below any VMA of this vm_rb subtree (vma_tree.py)
    rb_subtree_gap: int = field(default=0, repr=False)
    shared_rb: RbNode["VmAreaStruct"] = field(init=False, repr=False)
    shared_rb_subtree_last: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.vm_rb = RbNode(self)
        self.shared_rb = RbNode(self)

    def __repr__(self) -> str:
        return f"<vma {self.vm_start:#x}-{self.vm_end:#x} {int(self.vm_flags):#x}>"


#: MmStruct.pte_table_hint when there is none (its key matches no address)
NO_PTE_TABLE_HINT = (-1, 0, 0, 0)


@dataclass(slots=True, eq=False)
class MmStruct:
    """struct mm_struct: one address space.

    The VMAs live in ``mm_rb``, a :class:`VmaTree`: the rbtree with
    rb_subtree_gap (mm->mm_rb), the vm_next list from ``mmap`` (the lowest
    VMA, mm->mmap), map_count and highest_vm_end. Iterate over ``mm.mm_rb``
    for the VMAs in address order. pgd is the physical address of the
    top-level page table.
    """

    kernel: "Kernel"
    pgd: int
    mm_rb: VmaTree[VmAreaStruct] = field(init=False, repr=False)
    mmap_base: int = 0
    task_size: int = 0
    total_vm: int = 0
    exec_vm: int = 0
    stack_vm: int = 0
    data_vm: int = 0
    nr_ptes: int = 0
    rss_file: int = 0
    rss_anon: int = 0
    rss_shmem: int = 0
    rss_swap: int = 0
    hiwater_rss: int = 0
    start_code: int = 0
    end_code: int = 0
    start_data: int = 0
    end_data: int = 0
    start_brk: int = 0
    brk: int = 0
    start_stack: int = 0
    arg_start: int = 0
    arg_end: int = 0
    env_start: int = 0
    env_end: int = 0
    mm_users: int = 1
    #: ASID (arm64) / PCID (x86-64) given to this address space
    context_id: int = 0
    #: the last PTE table pte_offset_alloc() reached: (addr >> PMD_SHIFT, index
    #: of the PMD entry's word, the entry, the table's physical address); -1
    #: first when there is none. Used only while that word still holds that
    #: entry; free_pgd_range() drops it. Not kernel state: it spares the fault
    #: path two table reads when faults come in the same 2 MiB.
    pte_table_hint: tuple[int, int, int, int] = field(default=NO_PTE_TABLE_HINT, repr=False)

    def __post_init__(self) -> None:
        self.mm_rb = VmaTree(stack_guard_gap=self.kernel.config.stack_guard_gap_pages << 12)

    @property
    def mmap(self) -> Optional[VmAreaStruct]:
        """mm->mmap: the lowest VMA, head of the vm_next list (None if empty)."""
        return self.mm_rb.mmap

    @property
    def map_count(self) -> int:
        """mm->map_count: the number of VMAs."""
        return self.mm_rb.map_count

    @property
    def highest_vm_end(self) -> int:
        """mm->highest_vm_end: vm_end_gap() of the highest VMA."""
        return self.mm_rb.highest_vm_end


class VmFault:
    """struct vm_fault: the one parameter object threaded down the fault path.

    A hand-written slots class: called positionally it costs half of what
    the keyword dataclass constructor did. The machine does not make one per
    fault: it keeps one, empty at first (``VmFault.__new__(VmFault)``), that
    handle_mm_fault sets up again with ``__init__`` on every fault, as
    Linux's sits in a stack frame (a test checks every slot).
    """

    __slots__ = ("vma", "address", "real_address", "flags", "pgoff", "pte_pa", "orig_pte",
                 "page", "cow_page", "kind", "detail")

    def __init__(self, vma: VmAreaStruct, address: int, real_address: int, flags: int,
                 pgoff: int, pte_pa: int = 0, orig_pte: int = 0, page: Optional[Page] = None,
                 cow_page: Optional[Page] = None, kind: FaultKind = FaultKind.SPURIOUS,
                 detail: str = "") -> None:
        self.vma = vma
        self.address = address  # page aligned
        self.real_address = real_address
        self.flags = flags
        self.pgoff = pgoff
        self.pte_pa = pte_pa  # physical address of the PTE slot (vmf->pte)
        self.orig_pte = orig_pte
        self.page = page
        self.cow_page = cow_page
        self.kind = kind
        #: finer classification for traces: "zero" (zero page broken), "reuse" (wp reuse)
        self.detail = detail

    def __repr__(self) -> str:
        return (f"VmFault(address={self.address:#x}, flags={self.flags:#x}, "
                f"pgoff={self.pgoff}, pte_pa={self.pte_pa:#x}, kind={self.kind.value}, "
                f"detail={self.detail!r})")


def get_mm_rss(mm: MmStruct) -> int:
    """get_mm_rss(): resident pages, file + anon + shmem."""
    return mm.rss_file + mm.rss_anon + mm.rss_shmem


def update_hiwater_rss(mm: MmStruct) -> None:
    """update_hiwater_rss(): record the RSS peak. Linux does this lazily, only
    where RSS is about to fall (unmap_region, zap_page_range, do_exit), not on
    every fault; a peak that reclaim takes back before then is not recorded,
    as in Linux."""
    rss = get_mm_rss(mm)
    if rss > mm.hiwater_rss:
        mm.hiwater_rss = rss


def get_mm_hiwater_rss(mm: MmStruct) -> int:
    """get_mm_hiwater_rss(): the peak as readers see it (VmHWM, ru_maxrss):
    the recorded one or the current RSS, whichever is larger."""
    return max(mm.hiwater_rss, get_mm_rss(mm))


def mm_counters(mm: MmStruct) -> dict[str, int]:
    """The mm's size and RSS counters, named as in mm_struct / /proc/PID/status."""
    return {"total_vm": mm.total_vm, "exec_vm": mm.exec_vm, "stack_vm": mm.stack_vm,
            "data_vm": mm.data_vm, "map_count": mm.map_count, "nr_ptes": mm.nr_ptes,
            "rss_anon": mm.rss_anon, "rss_file": mm.rss_file, "rss_shmem": mm.rss_shmem,
            "hiwater_rss": get_mm_hiwater_rss(mm)}
