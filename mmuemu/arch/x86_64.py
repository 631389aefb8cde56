"""x86-64: #PF error code, the syscall table (arch/x86/entry/syscalls/syscall_64.tbl),
struct stat, and show_signal_msg()'s segfault line."""
from __future__ import annotations

import errno
import struct
from typing import Optional

from mmuemu._types import Arch
from mmuemu.arch.base import ArchSpec, HwFault
from mmuemu.hw.x86_64.pte import X86_64Pte
from mmuemu.kernel.binfmt_elf import ElfArchInfo
from mmuemu.kernel.fault import AccessType
from mmuemu.kernel.syscalls import Kstat, SyscallContext
from mmuemu.kernel.uaccess import UserFault, copy_to_user

X86_PF_PROT = 1 << 0
X86_PF_WRITE = 1 << 1
X86_PF_USER = 1 << 2
X86_PF_RSVD = 1 << 3
X86_PF_INSTR = 1 << 4

SYSCALL_NAMES = {
    0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 5: "fstat", 6: "lstat",
    7: "poll", 8: "lseek", 9: "mmap", 10: "mprotect", 11: "munmap", 12: "brk",
    13: "rt_sigaction", 14: "rt_sigprocmask", 16: "ioctl", 17: "pread64", 18: "pwrite64",
    19: "readv", 20: "writev", 21: "access", 22: "pipe", 24: "sched_yield", 25: "mremap",
    26: "msync", 28: "madvise", 32: "dup", 33: "dup2", 39: "getpid", 56: "clone",
    57: "fork", 58: "vfork", 59: "execve", 60: "exit", 61: "wait4", 62: "kill",
    63: "uname", 72: "fcntl", 74: "fsync", 75: "fdatasync", 76: "truncate",
    77: "ftruncate", 79: "getcwd", 80: "chdir", 87: "unlink", 89: "readlink",
    96: "gettimeofday", 97: "getrlimit", 98: "getrusage", 99: "sysinfo", 102: "getuid",
    104: "getgid", 107: "geteuid", 108: "getegid", 110: "getppid", 158: "arch_prctl",
    186: "gettid", 200: "tkill", 201: "time", 202: "futex", 218: "set_tid_address",
    228: "clock_gettime", 230: "clock_nanosleep", 231: "exit_group", 234: "tgkill", 257: "openat",
    262: "newfstatat", 263: "unlinkat", 267: "readlinkat", 273: "set_robust_list",
    274: "get_robust_list", 302: "prlimit64", 309: "getcpu", 318: "getrandom",
    334: "rseq",
}

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
#: the base registers arch_prctl() sets and reads (the emulator's register names)
_BASE_REGS = {ARCH_SET_FS: "fs_base", ARCH_GET_FS: "fs_base",
              ARCH_SET_GS: "gs_base", ARCH_GET_GS: "gs_base"}


def sys_arch_prctl(ctx: SyscallContext, option: int, arg2: int, *_: int) -> int:
    """arch_prctl(2) (do_arch_prctl_64()): the FS and GS base registers.

    glibc's startup sets FS to its thread control block (ARCH_SET_FS): %fs
    is the thread pointer for TLS. A base must be a user address
    (< TASK_SIZE_MAX, else -EPERM); ARCH_GET_* store the base at ``arg2``.
    Other options (CPUID faulting, vDSO mapping, CET/shadow stacks) are
    -EINVAL, as from a kernel without those features.
    """
    option &= 0xFFFFFFFF
    reg = _BASE_REGS.get(option)
    if reg is None:
        return -errno.EINVAL
    if ctx.emu is None:
        return -errno.ENOSYS  # kernel-only tests: no CPU
    if option in (ARCH_SET_FS, ARCH_SET_GS):
        if arg2 >= ctx.task.mm.task_size:
            return -errno.EPERM
        ctx.emu.user_reg(reg, arg2)
        return 0
    try:
        copy_to_user(ctx.task, arg2, struct.pack("<Q", ctx.emu.user_reg(reg)))
    except UserFault:
        return -errno.EFAULT
    return 0


def pack_stat(st: Kstat) -> bytes:
    """struct stat (arch/x86/include/uapi/asm/stat.h), 144 bytes."""
    return struct.pack("<QQQIIIIQqqq6q3q", st.dev, st.ino, st.nlink, st.mode, st.uid, st.gid,
                       0, st.rdev, st.size, st.blksize, st.blocks, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def fault_code(f: HwFault) -> int:
    """The #PF error code the CPU pushes for a user-mode access."""
    code = X86_PF_USER
    if f.present:
        code |= X86_PF_PROT
    if f.access is AccessType.WRITE:
        code |= X86_PF_WRITE
    elif f.access is AccessType.EXEC:
        code |= X86_PF_INSTR
    return code


def segfault_message(comm: str, pid: int, f: HwFault, ip: int, sp: int, code: int,
                     where: str) -> str:
    """show_signal_msg(): ``comm[pid]: segfault at ADDR ip IP sp SP error CODE in FILE[BASE+LEN]``."""
    return (f"{comm}[{pid}]: segfault at {f.address:x} ip {ip:016x} sp {sp:016x} "
            f"error {code:x}{where}")


_CACHE_INSNS = frozenset(("clflush", "clflushopt", "clwb"))


def cache_insn(mnemonic: str, op_str: str) -> Optional[str]:
    """clflush / clflushopt / clwb (the guest's own cache maintenance)."""
    return mnemonic if mnemonic in _CACHE_INSNS else None


X86_64 = ArchSpec(
    arch=Arch.X86_64,
    # vvar, vvar_vclock and vdso sizes as /proc/PID/maps shows them on this
    # host's 6.x kernel (4 + 2 + 2 pages)
    elf=ElfArchInfo(e_machine=62, name="x86_64", platform="x86_64", hwcap=0x178BFBFF,
                    minsigstksz=3632,
                    vdso_layout=(("[vvar]", 4), ("[vvar_vclock]", 2), ("[vdso]", 2))),
    pte_format=X86_64Pte,
    syscall_names=SYSCALL_NAMES,
    syscall_nr_reg="rax",
    syscall_arg_regs=("rdi", "rsi", "rdx", "r10", "r8", "r9"),
    syscall_ret_reg="rax",
    pc_reg="rip",
    sp_reg="rsp",
    syscall_insn_len=2,
    machine="x86_64",
    pack_stat=pack_stat,
    fault_code=fault_code,
    segfault_message=segfault_message,
    arch_syscalls={"arch_prctl": sys_arch_prctl},
    cache_insn=cache_insn,
)
