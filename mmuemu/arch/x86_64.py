"""x86-64: #PF error code, the syscall table (arch/x86/entry/syscalls/syscall_64.tbl),
struct stat, and show_signal_msg()'s segfault line."""
from __future__ import annotations

import struct

from mmuemu._types import Arch
from mmuemu.arch.base import ArchSpec, HwFault
from mmuemu.hw.x86_64.pte import X86_64Pte
from mmuemu.kernel.binfmt_elf import ElfArchInfo
from mmuemu.kernel.fault import AccessType
from mmuemu.kernel.syscalls import Kstat

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
    77: "ftruncate", 79: "getcwd", 80: "chdir", 87: "unlink", 96: "gettimeofday",
    98: "getrusage", 102: "getuid", 104: "getgid", 107: "geteuid", 108: "getegid",
    110: "getppid", 158: "arch_prctl", 186: "gettid", 201: "time",
    218: "set_tid_address", 228: "clock_gettime", 230: "clock_nanosleep",
    231: "exit_group", 257: "openat", 262: "newfstatat", 263: "unlinkat",
    302: "prlimit64", 318: "getrandom", 334: "rseq",
}


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
)
