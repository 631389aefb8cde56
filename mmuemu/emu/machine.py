"""One emulated machine: a Unicorn CPU, the MMU hardware model and the kernel model.

Translation (fast mode): Unicorn runs with UC_TLB_VIRTUAL. On a soft-TLB
miss it calls the native fill hook first, which walks the guest's page
tables in emulated physical memory (setting accessed/dirty bits) and fills
the entry; only when the walk fails does the Python fill hook run, which is
a real page fault: it goes to the kernel model's do_user_addr_fault() (as
user_addr_fault(), its tuple form) → handle_mm_fault(), then walks again.

Exact mode adds the architected TLB model (mmuemu/emu/exact.py): every data
access and every block's instruction fetch is looked up, in native code, in
the hardware profile's L1i/L1d/L2 TLBs and walk caches. Its fill hook wraps
the fast path's. In every mode the kernel's TLB flushes also become the
architecture's invalidations (x86 INVLPG / CR3 writes, arm64 TLBI), counted
and, in exact mode, applied to the model. Syscalls enter through UC_HOOK_INSN
(x86-64 ``syscall``) or UC_HOOK_INTR (arm64 ``svc``). Instructions are
counted per basic block by a native block hook (capstone counts each new
block once).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import capstone
import unicorn

from mmuemu._types import Access, Arch
from mmuemu.arch import BY_E_MACHINE, ArchSpec
from mmuemu.arch.base import HwFault
from mmuemu.config import KernelConfig, RunConfig
from mmuemu.emu.cpu import CPUS
from mmuemu.emu.exact import ExactMmu, TlbMaintenance, hw_stats
from mmuemu.emu.fault_address import effective_address
from mmuemu.emu.interrupt import InterruptWatcher
from mmuemu.emu.native import (UNCACHED_BLOCK, NativeFastPath, emu_starter, hook_add_native,
                               uc_tlb_flusher)
from mmuemu.emu.raw import RawMapper
from mmuemu.hw.cache import CacheMaintenance
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.profile import Profile, ProfileError, profile_for
from mmuemu.kernel.cacheflush import cacheflush_for
from mmuemu.kernel.binfmt_elf import ExecError, check_elf, load_elf_binary
from mmuemu.kernel.fault import SIGSEGV, AccessType, user_addr_fault

SIGKILL = 9
from mmuemu.kernel.kernel import Kernel
from mmuemu.kernel.mm_types import File, MmStruct, VmFault
from mmuemu.kernel.mmap import find_vma
from mmuemu.kernel.page_alloc import OutOfMemory
from mmuemu.kernel.exit import do_exit
from mmuemu.kernel.sched import TaskState, TaskStruct
from mmuemu.kernel.mm_types import mm_counters
from mmuemu.kernel.syscalls import (
    StrictSyscallError, SyscallContext, SyscallRestart, TaskExit, TaskKilled, dispatch,
    writeback_inode,
)

if TYPE_CHECKING:
    from mmuemu.emu.tracing import FaultTracer

_ACCESS_TYPE = {Access.READ: AccessType.READ, Access.WRITE: AccessType.WRITE,
                Access.FETCH: AccessType.EXEC}
#: the same keyed by the fill hook's plain int (calling ``Access(n)`` costs 0.5 us)
_ACCESS_OF_UC: dict[int, tuple[Access, AccessType]] = {int(a): (a, t) for a, t in _ACCESS_TYPE.items()}
_ARM64_EXCP_SWI = 2
SIGILL, SIGTRAP = 4, 5
#: QEMU's EXCP_UDEF and EXCP_BKPT: an undefined instruction, a brk
_ARM64_EXCP_SIGNAL = {1: SIGILL, 7: SIGTRAP}
MODES = ("fast", "raw", "exact")
_MM_SYSCALLS = frozenset({"mmap", "munmap", "mprotect", "brk", "mremap", "madvise"})


class MachineError(Exception):
    """The run cannot start or continue; the message is one line for the user."""


@dataclass(slots=True)
class RunResult:
    """How the guest ended."""

    exit_code: int
    signal: int = 0
    message: str = ""
    stop_reason: str = "exit"  # exit | signal | insn-limit | time-limit
    wall_seconds: float = 0.0


class UnicornTlb:
    """The kernel's TLB-flush requests, carried out on Unicorn's soft TLB.

    Unicorn 2.1.4 has no per-page flush: every request drops all of its
    cached translations (uc_ctl UC_CTL_TLB_FLUSH). In fast mode a page flush
    of the very page whose fault is being handled (``refill_vpn``, set by
    the fault handler) is left to the refill that follows
    (NativeFastPath.flush_deferral), which replaces that page's entry: a
    COW fault then keeps the rest of Unicorn's table. The
    counts say what the kernel asked for, by kind (``uc_flushes``: the
    flushes Unicorn did); ``maint`` turns each request into the
    architecture's invalidations (and applies them to the exact model),
    whatever Unicorn did.
    """

    def __init__(self) -> None:
        self.uc: Optional[unicorn.Uc] = None
        self._uc_flush: Callable[[], None] = lambda: None
        #: the page number of the fault being handled in fast mode (-1: none)
        self.refill_vpn = -1
        #: flush_deferral's flag (fast mode), else None; and the flushes left to it
        self._defer: Optional[memoryview] = None
        self.deferred_flushes = 0
        self.maint: Optional[TlbMaintenance] = None
        self.counts: dict[str, int] = {"page": 0, "range": 0, "mm": 0, "uc_flushes": 0}

    def attach(self, uc: unicorn.Uc) -> None:
        """Flush ``uc``'s soft TLB from now on."""
        self.uc = uc
        self._uc_flush = uc_tlb_flusher(uc)

    def use_native(self, native: NativeFastPath) -> None:
        """Fast mode: tell ``native``'s soft-TLB sizing of each flush, in the
        same foreign call as the flush."""
        assert self.uc is not None
        self._uc_flush = native.uc_tlb_flusher(self.uc)
        self._defer = native.flush_deferral()

    def _flush(self) -> None:
        if self.uc is not None:
            self._uc_flush()  # (and the sizing's bookkeeping, with use_native)
            self.counts["uc_flushes"] += 1
            maint = self.maint
            if maint is not None and maint.exact is not None:
                maint.uc_flushed()

    def flush_tlb_page(self, mm: MmStruct, addr: int) -> None:
        self.counts["page"] += 1
        trace_tlb_flush = mm.kernel.tracepoints.tlb_flush
        if trace_tlb_flush is not None:
            trace_tlb_flush(mm, "page", addr, addr + 4096)
        if self.maint is not None:
            self.maint.flush_tlb_page(mm.context_id, addr)
        if addr >> 12 == self.refill_vpn and self._defer is not None:
            self._defer[0] = 1  # left to the refill of this page
            self.deferred_flushes += 1
        else:
            self._flush()

    def flush_tlb_range(self, mm: MmStruct, start: int, end: int) -> None:
        self.counts["range"] += 1
        trace_tlb_flush = mm.kernel.tracepoints.tlb_flush
        if trace_tlb_flush is not None:
            trace_tlb_flush(mm, "range", start, end)
        if self.maint is not None:
            self.maint.flush_tlb_range(mm.context_id, start, end)
        self._flush()

    def flush_tlb_mm(self, mm: MmStruct) -> None:
        self.counts["mm"] += 1
        trace_tlb_flush = mm.kernel.tracepoints.tlb_flush
        if trace_tlb_flush is not None:
            trace_tlb_flush(mm, "mm", 0, 0)
        if self.maint is not None:
            self.maint.flush_tlb_mm(mm.context_id)
        self._flush()

    def clear_flush_young(self, mm: MmStruct, addr: int) -> None:
        """An accessed bit was cleared (ptep_clear_flush_young).

        arm64 Linux invalidates the entry and x86-64 Linux does not (the
        architectural flush counts say so). On x86-64 a real TLB may keep
        the entry, and with it the bit clear, until the entry is evicted.
        Unicorn's soft TLB is no model of that: its size changes with wall
        time (QEMU shrinks it after quiet 100 ms windows) and with the fill
        path's growth policy, so leaving its entry would make reclaim
        depend on timing. Unicorn's cache is dropped on both architectures:
        the next access walks and sets the bit again, as if the entry had
        been evicted at once."""
        self.counts["young"] = self.counts.get("young", 0) + 1
        if self.maint is not None:
            self.maint.clear_flush_young(mm.context_id, addr)
        self._flush()

    def switch_mm(self, prev: MmStruct, next_mm: MmStruct) -> None:
        """A context switch loaded another page-table root (CR3 / TTBR0)."""
        self.counts["switch_mm"] = self.counts.get("switch_mm", 0) + 1
        if self.maint is not None:  # CR3 write with the next PCID / TTBR0 with its ASID
            self.maint.switch_mm(next_mm.context_id, next_mm.pgd)
        self._flush()


def arch_of(path: str) -> ArchSpec:
    """The ArchSpec for an ELF file, or MachineError naming the problem."""
    try:
        e_machine, _ = check_elf(path)
    except ExecError as e:
        raise MachineError(str(e)) from None
    spec = BY_E_MACHINE.get(e_machine)
    if spec is None:
        raise MachineError(f"{path}: unsupported ELF machine {e_machine} "
                           "(supported: x86_64, aarch64)")
    return spec


class Machine:
    """Builds the machine, execs ``path`` as pid 1, and runs it to completion.

    ``profile`` (a name or a TOML file; default: the architecture's) and
    ``tlb_overrides`` (``l1d=32x4``, ``cost.base_cpi=0.8``, ...) choose the
    hardware profile: exact mode's TLB geometry, and the cycle model in
    every mode.
    """

    def __init__(self, path: str, argv: list[str], kconfig: KernelConfig | None = None,
                 rconfig: RunConfig | None = None,
                 warn: Callable[[str], None] | None = None,
                 expect_arch: Arch | None = None,
                 tracer: "FaultTracer | None" = None, profile: str | None = None,
                 tlb_overrides: Sequence[str] = ()) -> None:
        self.kconfig = kconfig or KernelConfig()
        self.rconfig = rconfig or RunConfig()
        self.warn = warn or (lambda msg: print(f"mmuemu: warning: {msg}", file=sys.stderr))
        self.path = path
        self.spec = arch_of(path)
        if expect_arch is not None and expect_arch is not self.spec.arch:
            raise MachineError(f"{path}: is a {self.spec.name} binary, not {expect_arch.label}")
        if not os.path.isdir(self.rconfig.root):
            raise MachineError(f"--root {self.rconfig.root}: not a directory")
        try:
            self.profile: Profile = profile_for(self.spec.arch, profile, tlb_overrides)
        except ProfileError as e:
            raise MachineError(str(e)) from None
        if not self.profile.walk.hw_access_flag and self.kconfig.hw_access_flag:
            # the profile's walker leaves AF to software: the kernel model and the
            # stats/trace headers record it through the kernel knob
            self.kconfig = dataclasses.replace(self.kconfig, hw_access_flag=False)
        self.phys = PhysMem(self.kconfig.mem_bytes)
        self.tlb = UnicornTlb()
        #: the CPU's cache-maintenance instructions (kernel-issued and the guest's)
        self.caches = CacheMaintenance(self.spec.arch, self.profile.cache)
        #: blocks holding cache-maintenance instructions: (instructions, (op, count)...)
        self._maint_blocks: dict[tuple[int, int], tuple[int, tuple[tuple[str, int], ...]]] = {}
        self.kern = Kernel(self.kconfig, self.phys, self.spec.pte_format(), self.tlb,
                           root=self.rconfig.root,
                           cacheflush=cacheflush_for(self.spec.name, self.caches))
        if self.rconfig.mode not in MODES:
            raise MachineError(f"unknown mode {self.rconfig.mode!r} (choose from {', '.join(MODES)})")
        self.raw_mode = self.rconfig.mode == "raw"
        self.kern.reclaim_may_unmap = not self.raw_mode
        cpu = CPUS[self.spec.arch]
        self.regs = cpu.regs
        self.uc = unicorn.Uc(cpu.uc_arch, cpu.uc_mode)
        if not self.raw_mode:
            if self.spec.arch is Arch.ARM64:
                # QEMU's arm64 soft-TLB page is 1 KiB by default; fills must be per
                # 4 KiB frame. This must come before ctl_set_tlb_mode().
                self.uc.ctl_set_page_size(4096)
            # (unicorn_py3's Uc has it; mypy's view of the binding's re-exports does not)
            self.uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)  # type: ignore[attr-defined]
            self.uc.mem_map_ptr(0, self.phys.size, unicorn.UC_PROT_ALL, self.phys.address())
            self.tlb.attach(self.uc)
        self.native = NativeFastPath(self.phys, self.spec.arch, self.kconfig.hw_access_flag)
        self.exact: Optional[ExactMmu] = None
        if self.rconfig.mode == "exact":
            self.exact = ExactMmu(self.phys, self.spec.arch, self.profile)
        self.maint = TlbMaintenance(self.spec.arch, self.profile, self.exact)
        self.tlb.maint = self.maint
        self._md: capstone.Cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64) \
            if self.spec.arch is Arch.X86_64 else \
            capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        self._md.detail = True
        self.task = TaskStruct(pid=1, comm="", mm=self.kern.mm_alloc())
        self.init = self.task
        self.kern.tasks[1] = self.task
        self.kern.current = self.task
        self.kern.kill_task = self._oom_kill_other
        self._stdio()
        self.tracer = tracer
        if tracer is not None:  # before exec, so exec's own faults are traced
            tracer.attach(self, cpi=self.profile.cost.base_cpi)
        argv_b = [os.fsencode(a) for a in [path, *argv]]
        argv_b[0] = os.fsencode(path)
        envp = [e.encode() for e in self.rconfig.env]
        try:
            self.exec = load_elf_binary(self.kern, self.task, path, argv_b, envp, self.spec.elf)
        except ExecError as e:
            raise MachineError(str(e)) from None
        except OutOfMemory:
            raise MachineError("out of emulated memory while loading the program "
                               "(raise --mem)") from None
        self.native.set_root(self.task.mm.pgd)
        # exec_mmap() -> activate_mm(): the first switch to the new address space
        self.maint.switch_mm(self.task.mm.context_id, self.task.mm.pgd)
        self.raw: Optional[RawMapper] = None
        self._raw_mappers: dict[int, RawMapper] = {}
        if self.raw_mode:
            self.raw = RawMapper(self.uc, self.kern, self.task)
            self._raw_mappers[1] = self.raw
            self.raw.grow_stack_fully()
            try:
                self.raw.sync()
            except OutOfMemory:
                raise MachineError("out of emulated memory while loading the program "
                                   "(raise --mem)") from None
        self.result: Optional[RunResult] = None
        self._fault: Optional[HwFault] = None
        #: the vm_fault every page fault of this CPU fills (handle_mm_fault),
        #: where Linux's sits in a kernel stack frame: empty until the first
        self._fault_vmf: VmFault = VmFault.__new__(VmFault)
        self._pending_signal = 0
        self._pending_message = ""
        self._internal_error: Optional[BaseException] = None
        self.sysctx = SyscallContext(kern=self.kern, task=self.task, abi=self.spec,
                                     now_ns=self._now_ns, warn=self.warn,
                                     strict=self.rconfig.strict, emu=self)
        self.syscalls = 0
        self._log_file = open(self.rconfig.log, "a") if self.rconfig.log else None
        self.kern.printk = self._printk
        #: why the current slice stopped: "exit", "block", "kill" or None
        self._slice_stop: Optional[str] = None
        self._exit_code = 0
        self.context_switches = 0
        self._install_hooks()

    # --- setup --------------------------------------------------------------------
    def _stdio(self) -> None:
        vfs = self.kern.vfs
        for fd, flags in ((0, 0), (1, 1), (2, 1)):
            f: File = vfs.open_file(vfs.dev_null, flags, f"/dev/fd/{fd}")
            f.host_fd = fd
            self.task.files[fd] = f

    def _install_hooks(self) -> None:
        uc = self.uc
        self._hooks: list[Any] = []
        if self.raw_mode:
            self._hooks.append(uc.hook_add(unicorn.UC_HOOK_MEM_INVALID, self._on_raw_invalid))
        elif self.exact is not None:
            # the exact model's fill hook wraps the fast path's (never add both)
            self._hooks.extend(self.exact.attach(uc, self.native))
            self._hooks.append(uc.hook_add(unicorn.UC_HOOK_TLB_FILL, self._on_tlb_fault))
        else:
            # one native hook: walk → (on failure) the Python page-fault
            # handler, called from C → walk again, all from C, so
            # a miss the tables resolve never enters Python
            self.native.set_fault_handler(self._on_fault)
            self._hooks.append(hook_add_native(uc, unicorn.UC_HOOK_TLB_FILL,
                                               self.native.tlb_fill_faulting_addr,
                                               self.native.state_addr))
        if self.exact is not None:
            self.exact.grow_soft_tlb(self.rconfig.soft_tlb_max)
        elif not self.raw_mode:
            self.native.grow_soft_tlb(uc, self.rconfig.soft_tlb_max)
            self.tlb.use_native(self.native)
        self._hooks.append(hook_add_native(uc, unicorn.UC_HOOK_BLOCK,
                                           self.native.block_hook_addr, self.native.state_addr))
        self.native.set_count_block(self._count_block)
        self.native.set_stop(uc)
        if self.spec.arch is Arch.X86_64:
            self._hooks.append(uc.hook_add(unicorn.UC_HOOK_INSN, self._on_syscall_x86, None, 1, 0,
                                           unicorn.x86_const.UC_X86_INS_SYSCALL))
        else:
            self._hooks.append(uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr_arm64))

    # --- time and counting ----------------------------------------------------------
    def _now_ns(self) -> int:
        """Virtual time: one nanosecond per instruction (a 1 GHz, CPI 1 clock)."""
        return self.native.insns

    def _count_block(self, address: int, size: int) -> int:
        """Instructions in a new basic block, counted once with capstone.

        A block with cache-maintenance instructions (dc/ic/dsb/isb on arm64,
        clflush/clflushopt/clwb on x86-64) is flagged UNCACHED_BLOCK: the
        native hook asks again at each execution, and each execution adds
        its instructions to the guest's cache-maintenance counts."""
        key = (address, size)
        known = self._maint_blocks.get(key)
        if known is not None:
            n, ops = known
            for known_op, k in ops:
                self.caches.guest_executed(known_op, k)
            return n | UNCACHED_BLOCK
        code = bytearray()
        va = address
        end = address + size
        while va < end:
            res = self.native.walk(va, Access.FETCH, count=False)
            if not res.ok:
                break
            n = min(end - va, 4096 - (va & 0xFFF))
            code += self.phys.read(res.pa | (va & 0xFFF), n)
            va += n
        n = 0
        found: dict[str, int] = {}
        cache_insn = self.spec.cache_insn
        for _, _, mnemonic, op_str in self._md.disasm_lite(bytes(code), address):
            n += 1
            op = cache_insn(mnemonic, op_str)
            if op is not None:
                found[op] = found.get(op, 0) + 1
        if not found:
            return n
        self._maint_blocks[key] = (n, tuple(found.items()))
        for op, k in found.items():
            self.caches.guest_executed(op, k)
        return n | UNCACHED_BLOCK

    # --- faults ----------------------------------------------------------------------
    def _hw_fault(self, vaddr: int, access: Access) -> HwFault:
        res = self.native.walk(vaddr, access, count=False)
        return HwFault(address=vaddr, access=_ACCESS_TYPE[access],
                       present=res.level == 3 and not res.ok, level=res.level)

    def _on_fault(self, vaddr: int, access: int) -> int:
        """Fast mode's page-fault handler, called from the native fill hook
        when its walk failed: 1 once the kernel has resolved the fault (the
        hook walks again and fills), 0 when the fault ends in a signal or
        the model failed (no fill, and the run stops)."""
        try:
            acc, access_type = _ACCESS_OF_UC[access]
            if self.kern.kswapd_wait:  # kswapd ran while the task executed
                self.kern.kswapd()
            tlb = self.tlb
            tlb.refill_vpn = vaddr >> 12  # its flush is left to the refill
            signal = user_addr_fault(self.task, vaddr, access_type, True, self._fault_vmf)[0]
            tlb.refill_vpn = -1
            if signal:
                self._fault = self._hw_fault(vaddr, acc)
                self._pending_signal = signal
                return 0
            return 1
        except BaseException as e:  # never unwind through ctypes and Unicorn
            self.tlb.refill_vpn = -1
            self._internal_error = e
            self.uc.emu_stop()
            return 0

    def _on_tlb_fault(self, uc: unicorn.Uc, vaddr: int, access: int, entry: Any,
                      user_data: Any) -> bool:
        """Exact mode's second fill hook: the exact model's walk failed, so
        this is a page fault. Fills the entry once the kernel has resolved
        it; returns False when the fault ends in a signal (the run stops).
        """
        try:
            acc, access_type = _ACCESS_OF_UC[access]
            if self.kern.kswapd_wait:  # kswapd ran while the task executed
                self.kern.kswapd()
            signal = user_addr_fault(self.task, vaddr, access_type, True, self._fault_vmf)[0]
            if signal:
                self._fault = self._hw_fault(vaddr, acc)
                self._pending_signal = signal
                return False
            assert self.exact is not None
            res = self.native.walk(vaddr, acc)
            if not res.ok:
                raise AssertionError(f"fault at {vaddr:#x} ({acc.name}) resolved by the kernel "
                                     "but the page walk still fails")
            entry.paddr = self.exact.fill_paddr(uc, vaddr, res.pa, acc)
            entry.perms = res.perms
            return True
        except BaseException as e:  # never unwind through Unicorn
            self._internal_error = e
            uc.emu_stop()
            return False

    def _on_raw_invalid(self, uc: unicorn.Uc, access: int, address: int, size: int,
                        value: int, user_data: Any) -> bool:
        """Raw mode: an access outside every mapping is a segfault (no fault path)."""
        kinds = {unicorn.UC_MEM_WRITE_UNMAPPED: AccessType.WRITE,
                 unicorn.UC_MEM_WRITE_PROT: AccessType.WRITE,
                 unicorn.UC_MEM_FETCH_UNMAPPED: AccessType.EXEC,
                 unicorn.UC_MEM_FETCH_PROT: AccessType.EXEC}
        present = access in (unicorn.UC_MEM_WRITE_PROT, unicorn.UC_MEM_READ_PROT,
                             unicorn.UC_MEM_FETCH_PROT)
        self._fault = HwFault(address=address, access=kinds.get(access, AccessType.READ),
                              present=present, level=3 if present else 0)
        self._pending_signal = SIGSEGV
        return False

    # --- syscalls --------------------------------------------------------------------
    def _syscall(self, uc: unicorn.Uc) -> None:
        spec = self.spec
        nr = uc.reg_read(self.regs[spec.syscall_nr_reg])
        args = tuple(uc.reg_read(self.regs[r]) for r in spec.syscall_arg_regs)
        self.syscalls += 1
        try:
            ret = dispatch(self.sysctx, spec.syscall_names.get(nr), nr, args)
        except TaskExit as e:
            self._slice_stop = "exit"
            self._exit_code = e.code
            uc.emu_stop()
            return
        except SyscallRestart:
            # the task sleeps; the syscall instruction runs again when it wakes
            pc = self.regs[spec.pc_reg]
            uc.reg_write(pc, uc.reg_read(pc) - spec.syscall_insn_len)
            self._slice_stop = "block"
            uc.emu_stop()
            return
        except TaskKilled as e:
            self._slice_stop = "kill"
            self._pending_signal = e.signal
            uc.emu_stop()
            return
        except StrictSyscallError as e:
            self._internal_error = MachineError(str(e))
            uc.emu_stop()
            return
        except OutOfMemory:
            if self.task.oom_victim:  # the OOM killer chose the caller: SIGKILL
                self._pending_signal = SIGKILL
                uc.emu_stop()
                return
            ret = -12  # -ENOMEM
        except BaseException as e:
            self._internal_error = e
            uc.emu_stop()
            return
        uc.reg_write(self.regs[spec.syscall_ret_reg], ret & 0xFFFF_FFFF_FFFF_FFFF)
        if self.task.oom_victim:  # the OOM killer chose the caller during the syscall
            self._pending_signal = SIGKILL
            uc.emu_stop()
            return
        if self.kern.kswapd_wait:
            try:
                self.kern.kswapd()
            except BaseException as e:
                self._internal_error = e
                uc.emu_stop()
                return
        inspect = self.rconfig.inspect_at
        if inspect is not None and self.syscalls == inspect[0]:
            self.kern.mtest.command(self.task, inspect[1])
        if self.rconfig.debug_vm:
            self._debug_vm()
        if self.raw is not None and spec.syscall_names.get(nr) in _MM_SYSCALLS:
            try:
                self.raw.sync()
            except OutOfMemory:  # raw mode populates eagerly: the task is OOM-killed
                self._pending_signal = SIGKILL
                uc.emu_stop()

    def _on_syscall_x86(self, uc: unicorn.Uc, user_data: Any) -> None:
        self._syscall(uc)

    def _on_intr_arm64(self, uc: unicorn.Uc, intno: int, user_data: Any) -> None:
        if intno == _ARM64_EXCP_SWI:
            self._syscall(uc)
            return
        sig = _ARM64_EXCP_SIGNAL.get(intno)
        if sig is not None:  # do_undefinstr / brk: the task gets SIGILL / SIGTRAP
            pc = uc.reg_read(self.regs["pc"])
            what = "undefined instruction" if sig == SIGILL else "breakpoint"
            self._pending_signal = sig
            self._pending_message = f"{self.task.comm}[{self.task.pid}]: {what}: pc={pc:016x}"
            uc.emu_stop()
            return
        self._internal_error = MachineError(f"unhandled arm64 exception {intno} at pc "
                                            f"{uc.reg_read(self.regs['pc']):#x}")
        uc.emu_stop()

    # --- running ----------------------------------------------------------------------
    def _oom_message(self, task: TaskStruct) -> str:
        """pagefault_out_of_memory(): the OOM kill of the faulting task, in
        oom_kill_process()'s words. (The full OOM killer, choosing the task
        with the largest badness, belongs to the reclaim model.)"""
        mm = task.mm
        self.kern.vmstat.oom_kill += 1
        return (f"Out of memory: Killed process {task.pid} ({task.comm}) "
                f"total-vm:{mm.total_vm * 4}kB, anon-rss:{mm.rss_anon * 4}kB, "
                f"file-rss:{mm.rss_file * 4}kB, shmem-rss:{mm.rss_shmem * 4}kB")

    def _oom_kill_other(self, victim: TaskStruct, signal: int) -> None:
        """The OOM killer chose a task that is not running: it dies now (its
        memory is freed at once, as the oom_reaper would)."""
        self._end_task(victim, 0, signal)

    def _read_reg(self, name: str) -> int | None:
        reg = self.regs.get(name)
        return None if reg is None else int(self.uc.reg_read(reg))

    def _segv_message(self, pc: int, sp: int) -> str:
        f = self._fault
        assert f is not None
        if f.access is not AccessType.EXEC and not self.raw_mode:
            res = self.native.walk(pc, Access.FETCH, count=False)
            if res.ok:
                n = min(16, 4096 - (pc & 0xFFF))
                insn_bytes = self.phys.read(res.pa | (pc & 0xFFF), n)
                addr = effective_address(self._md, insn_bytes, pc, self._read_reg, f.address)
                f = dataclasses.replace(f, address=addr)
                self._fault = f
        vma = find_vma(self.task.mm, pc)
        where = ""
        if vma is not None and vma.vm_start <= pc and vma.vm_file is not None:
            name = os.path.basename(vma.vm_file.path)
            where = f" in {name}[{vma.vm_start:x}+{vma.vm_end - vma.vm_start:x}]"
        code = self.spec.fault_code(f)
        return self.spec.segfault_message(self.task.comm, self.task.pid, f, pc, sp, code, where)

    def _debug_vm(self) -> None:
        """--debug-vm: every live mm's tree and every mapped page's counts."""
        from mmuemu.kernel.debug_vm import check_lru, check_mapcounts, check_swap, validate_mm
        live = [t.mm for t in self.kern.tasks.values()
                if t.state in (TaskState.RUNNING, TaskState.SLEEPING)]
        for mm in live:
            validate_mm(mm)
        check_mapcounts(self.kern, live)
        check_swap(self.kern, live)
        check_lru(self.kern)

    # --- processes: the emulator side of fork, wait and kill ---------------------------
    def user_reg(self, name: str, value: int | None = None) -> int:
        """The running task's register ``name`` (set to ``value`` first if given): arch_prctl."""
        if value is not None:
            self.uc.reg_write(self.regs[name], value)
        return int(self.uc.reg_read(self.regs[name]))

    def fork_context(self, child: TaskStruct) -> None:
        """The child starts as a copy of the current CPU state, returning 0 from fork."""
        if self.tracer is not None:
            self.tracer.fork(self.task, child)
        uc = self.uc
        ret_reg = self.regs[self.spec.syscall_ret_reg]
        sp_reg = self.regs[self.spec.sp_reg]
        saved, saved_sp = uc.reg_read(ret_reg), uc.reg_read(sp_reg)
        uc.reg_write(ret_reg, 0)
        if child.context_sp:  # clone(2) with a new stack
            uc.reg_write(sp_reg, child.context_sp)
        child.context = uc.context_save()
        pc_reg, lag = self.regs[self.spec.pc_reg], CPUS[self.spec.arch].syscall_hook_pc_lag
        child.context.reg_write(pc_reg, child.context.reg_read(pc_reg) + lag)  # resume after it
        uc.reg_write(ret_reg, saved)
        uc.reg_write(sp_reg, saved_sp)
        child.insns = 0
        if self.raw_mode:
            mapper = RawMapper(uc, self.kern, child)
            mapper.populate_detached()
            self._raw_mappers[child.pid] = mapper

    def _switch_to(self, task: TaskStruct) -> None:
        """context_switch(): save the running task's registers, load the next
        task's, and switch the address space (switch_mm): a new page-table
        root for the walker and, since Unicorn's soft TLB has no ASIDs, a
        flush of all its cached translations."""
        prev = self.task
        if prev is task:
            return
        if prev.state not in (TaskState.ZOMBIE, TaskState.DEAD):
            prev.context = self.uc.context_save()
        if self.raw_mode:
            old = self._raw_mappers.get(prev.pid)
            if old is not None:
                old.detach()
            self.raw = self._raw_mappers[task.pid]
            self.raw.attach()
        if task.context is not None:
            self.uc.context_restore(task.context)
        self.native.set_root(task.mm.pgd)
        self.tlb.switch_mm(prev.mm, task.mm)
        self.task = task
        self.kern.current = task
        self.sysctx.task = task
        self.context_switches += 1

    def _pick_next(self) -> Optional[TaskStruct]:
        """Round robin over runnable tasks in pid order, starting after the current one."""
        tasks = sorted(self.kern.tasks.values(), key=lambda t: t.pid)
        runnable = [t for t in tasks if t.state is TaskState.RUNNING]
        if not runnable:
            return None
        after = [t for t in runnable if t.pid > self.task.pid]
        if self.task.state is TaskState.RUNNING and self._slice_stop is None and \
                not self._quantum_expired:
            return self.task
        return after[0] if after else runnable[0]

    def _live_tasks(self) -> int:
        return sum(1 for t in self.kern.tasks.values()
                   if t.state in (TaskState.RUNNING, TaskState.SLEEPING))

    def _end_task(self, task: TaskStruct, code: int, signal: int = 0,
                  message: str = "") -> None:
        if message:
            if task is self.init:
                self._init_message = message
            else:
                self.warn_kernel(message)
        self.final_mm_stats[task.pid] = mm_counters(task.mm)
        if self.tracer is not None:
            self.tracer.hand_over()  # the writer works while the address space is torn down
        do_exit(task, code, signal)
        if self.tracer is not None:
            self.tracer.exit(task, code, signal)
        if self.raw_mode:
            mapper = self._raw_mappers.pop(task.pid, None)
            if mapper is not None:
                mapper.detach()
                self.raw = None

    def warn_kernel(self, message: str) -> None:
        """A kernel log line (what dmesg would show) for a task other than pid 1."""
        self._printk(message)

    def _printk(self, line: str) -> None:
        if self._log_file is not None:
            self._log_file.write(line + "\n")
            self._log_file.flush()
        else:
            print(line, file=sys.stderr)

    # --- running ----------------------------------------------------------------------
    def run(self) -> RunResult:
        """Run until every task has exited (pid 1's status is the result) or a limit hits."""
        uc = self.uc
        pc_reg, sp_reg = self.regs[self.spec.pc_reg], self.regs[self.spec.sp_reg]
        uc.reg_write(sp_reg, self.exec.sp)
        uc.reg_write(pc_reg, self.exec.entry)
        for reg, value in CPUS[self.spec.arch].exec_regs.items():
            uc.reg_write(reg, value)
        self.final_mm_stats: dict[int, dict[str, int]] = {}
        self._init_message = ""
        self._quantum_expired = False
        user_limit = self.rconfig.insn_limit
        quantum = self.rconfig.quantum
        time_limit = self.rconfig.time_limit
        start = time.perf_counter()
        stop_reason = "exit"
        emu_start = emu_starter(uc)  # uc.emu_start, keeping the GIL
        with InterruptWatcher(uc) as interrupt:
            while True:
                nxt = self._pick_next()
                if nxt is None:
                    break
                self._switch_to(nxt)
                task = self.task
                self._slice_stop = None
                self._quantum_expired = False
                self._pending_signal = 0
                self._pending_message = ""
                limit = user_limit
                if self._live_tasks() > 1:
                    slice_end = self.native.insns + quantum
                    limit = min(limit, slice_end) if limit else slice_end
                self.native.set_insn_limit(limit)
                timeout_us = 0
                if time_limit:
                    left = time_limit - (time.perf_counter() - start)
                    if left <= 0:
                        stop_reason = "time-limit"
                        break
                    timeout_us = max(1, int(left * 1e6))
                insns0 = self.native.insns
                err: Optional[unicorn.UcError] = None
                try:
                    emu_start(uc.reg_read(pc_reg), 0, timeout_us, 0)
                except unicorn.UcError as e:
                    err = e
                task.insns += self.native.insns - insns0
                if self._internal_error is not None:
                    raise self._internal_error
                self.native.raise_pending()  # an exception in the block-count callback
                if interrupt.fired:  # Ctrl-C: end the run here, as interrupted
                    stop_reason = "interrupted"
                    break
                if self._slice_stop == "exit":
                    self._end_task(task, self._exit_code)
                elif self._slice_stop == "kill" or self._pending_signal:
                    sig = self._pending_signal
                    if self._slice_stop == "kill":
                        msg = ""
                    elif self._pending_message:
                        msg = self._pending_message
                    elif sig == SIGKILL:  # the fault path ran out of memory
                        # the OOM killer has logged its choice already
                        msg = "" if task.oom_victim else self._oom_message(task)
                    else:
                        msg = self._segv_message(uc.reg_read(pc_reg), uc.reg_read(sp_reg))
                    self._end_task(task, 0, sig, msg)
                elif self._slice_stop == "block":
                    pass  # sleeping in wait4 until a child exits
                elif self.native.limit_hit:
                    if user_limit and self.native.insns + 64 > user_limit or \
                            user_limit and limit == user_limit:
                        stop_reason = "insn-limit"
                        break
                    self._quantum_expired = True
                elif time_limit and time.perf_counter() - start >= time_limit:
                    stop_reason = "time-limit"
                    break
                elif err is not None and err.errno == unicorn.UC_ERR_INSN_INVALID:
                    # do_invalid_op(): SIGILL, with the kernel's "traps:" line
                    pc, sp = uc.reg_read(pc_reg), uc.reg_read(sp_reg)
                    self._end_task(task, 0, SIGILL, f"traps: {task.comm}[{task.pid}] trap invalid "
                                   f"opcode ip:{pc:x} sp:{sp:x} error:0")
                elif err is not None:
                    pc = uc.reg_read(pc_reg)
                    self._end_task(task, 0, SIGSEGV,
                                   f"{task.comm}[{task.pid}]: CPU exception at ip {pc:016x}: {err}")
                else:
                    self._quantum_expired = True
                if task is self.init and task.state is not TaskState.RUNNING and \
                        task.state is not TaskState.SLEEPING and self._live_tasks() == 0:
                    break
        wall = time.perf_counter() - start
        init = self.init
        if stop_reason == "interrupted":
            self.result = RunResult(exit_code=130, stop_reason="interrupted",
                                    message="interrupted (SIGINT)")
        elif stop_reason == "insn-limit":
            self.result = RunResult(exit_code=124, stop_reason="insn-limit",
                                    message=f"instruction limit reached "
                                            f"({user_limit} instructions)")
        elif stop_reason == "time-limit":
            self.result = RunResult(exit_code=124, stop_reason="time-limit",
                                    message=f"time limit reached ({time_limit:g} s)")
        elif init.exit_signal:
            self.result = RunResult(exit_code=128 + init.exit_signal, signal=init.exit_signal,
                                    message=self._init_message, stop_reason="signal")
        else:
            self.result = RunResult(exit_code=init.exit_code or 0, stop_reason="exit")
        self.result.wall_seconds = wall
        self.kern.close()  # swapoff: the swap file goes
        if self.tracer is not None:  # a limit stopped pid 1 before it exited
            self.tracer.task_exit(self.init, self.result)
        self._sync_files()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.result

    def _sync_files(self) -> None:
        """sync(2) at shutdown: every dirty page-cache page reaches its host file."""
        for inode in list(self.kern.vfs._inodes.values()):
            writeback_inode(self.kern, inode)

    def _cache_stats(self) -> dict[str, Any]:
        """Cache maintenance: the profile's caches, the kernel's hooks and the
        instructions they issued, and the guest's own cache-maintenance instructions."""
        counts = self.caches.as_dict()
        return {"config": self.profile.as_dict()["cache"],
                "kernel": {**self.kern.cacheflush.as_dict(), **counts["kernel"]},
                "guest": counts["guest"]}

    def _soft_tlb_stats(self) -> dict[str, Any]:
        """How Unicorn's soft TLB was grown (see ``_native/softtlb.h``)."""
        if self.raw_mode:
            return {"max_entries": 0, "estimated_entries": 0, "grow_flushes": 0}
        sizing = self.exact.soft_tlb if self.exact is not None else self.native.soft_tlb
        out = sizing.as_dict()
        # Unicorn's own flushes: the kernel model's requests that reached it,
        # and (fast mode) the page flushes a refill of the same page replaced
        uc_flushes = self.tlb.counts["uc_flushes"]
        if self.exact is None:
            elided = self.native.flushes_elided
            uc_flushes += self.tlb.deferred_flushes - elided  # made when a refill failed
            out["page_flushes_left_to_refill"] = elided
        out["uc_flushes"] = uc_flushes
        return out

    def stats(self) -> dict[str, Any]:
        """The run's counters (the --stats JSON)."""
        vm = self.kern.vmstat
        tasks = sorted(self.kern.tasks.values(), key=lambda t: t.pid)
        res = self.result
        minor = sum(t.counts.min_flt for t in tasks)
        major = sum(t.counts.maj_flt for t in tasks)
        mmc = getattr(self, "final_mm_stats", {}).get(1) or mm_counters(self.init.mm)
        return {
            "arch": self.spec.name,
            "mode": self.rconfig.mode,
            "program": self.path,
            "exit_code": res.exit_code if res else None,
            "signal": res.signal if res else 0,
            "stop_reason": res.stop_reason if res else None,
            "instructions": self.native.insns,
            "basic_blocks": self.native.blocks,
            "syscalls": self.syscalls,
            "faults": {
                "total": minor + major,
                "minor": minor,
                "major": major,
                "by_type": dict(vm.by_type),
            },
            "tasks": [{"pid": t.pid, "ppid": t.ppid, "comm": t.comm,
                       "exit_code": t.exit_code, "signal": t.exit_signal or 0,
                       "instructions": t.insns, "minflt": t.counts.min_flt,
                       "majflt": t.counts.maj_flt} for t in tasks],
            "context_switches": self.context_switches,
            "tlb_fills": self.native.fills,
            "page_walks": self.native.walks,
            "page_walk_mem_refs": self.native.walk_mem_refs,
            "tlb_flush_requests": {k: v for k, v in self.tlb.counts.items() if k != "uc_flushes"},
            "soft_tlb": self._soft_tlb_stats(),
            "vmstat": {k: v for k, v in vm.as_dict().items() if k != "by_type"},
            "mm": mmc,
            "memory": {"mem_bytes": self.kconfig.mem_bytes,
                       "free_pages": self.kern.buddy.stats.nr_free_pages,
                       "managed_pages": self.kern.buddy.stats.managed_pages,
                       "min_free_pages": self.kern.buddy.stats.min_free_pages,
                       "pcp": {"count": len(self.kern.buddy.pcp),
                               "high": self.kern.buddy.pcp_high,
                               "batch": self.kern.buddy.pcp_batch},
                       "watermarks": self.kern.wmark.as_dict(),
                       "lru": self.kern.lruvec.counts(),
                       "swap_cache_pages": self.kern.swapper_space.nrpages,
                       "swap": self.kern.swap.as_dict()},
            "config": self.kconfig.as_dict(),
            "wall_seconds": round(res.wall_seconds, 6) if res else None,
            "cache": self._cache_stats(),
            **hw_stats(self.profile, self.maint, self.native, syscalls=self.syscalls,
                       faults_by_type=dict(vm.by_type), major_faults=major,
                       cache_insns={op: self.caches.kernel[op] + self.caches.guest[op]
                                    for op in self.caches.ops}),
        }
