"""arm64: ESR_EL1 for data/instruction aborts (the fault_info[] table of
arch/arm64/mm/fault.c), the asm-generic syscall table, struct stat, and
arm64_show_signal()'s line."""
from __future__ import annotations

import struct
from typing import Optional

from mmuemu._types import Arch
from mmuemu.arch.base import ArchSpec, HwFault
from mmuemu.hw.arm64.pte import Arm64Pte
from mmuemu.kernel.binfmt_elf import ElfArchInfo
from mmuemu.kernel.fault import AccessType
from mmuemu.kernel.syscalls import Kstat

ESR_ELx_EC_IABT_LOW = 0x20
ESR_ELx_EC_DABT_LOW = 0x24
ESR_ELx_EC_SHIFT = 26
ESR_ELx_IL = 1 << 25
ESR_ELx_WNR = 1 << 6

#: fault_info[] names for the fault status codes the model raises
FAULT_NAMES = {
    **{0x04 + lvl: f"level {lvl} translation fault" for lvl in range(4)},
    **{0x08 + lvl: f"level {lvl} access flag fault" for lvl in range(4)},
    **{0x0C + lvl: f"level {lvl} permission fault" for lvl in range(4)},
}

SYSCALL_NAMES = {
    17: "getcwd", 23: "dup", 24: "dup3", 25: "fcntl", 29: "ioctl", 34: "mkdirat",
    35: "unlinkat", 46: "ftruncate", 48: "faccessat", 49: "chdir", 56: "openat",
    57: "close", 59: "pipe2", 62: "lseek", 63: "read", 64: "write", 65: "readv",
    66: "writev", 67: "pread64", 68: "pwrite64", 78: "readlinkat", 79: "newfstatat",
    80: "fstat", 82: "fsync", 83: "fdatasync", 93: "exit", 94: "exit_group",
    96: "set_tid_address", 98: "futex", 99: "set_robust_list", 100: "get_robust_list",
    101: "nanosleep", 113: "clock_gettime", 115: "clock_nanosleep",
    124: "sched_yield", 129: "kill", 130: "tkill", 131: "tgkill", 134: "rt_sigaction",
    135: "rt_sigprocmask",
    160: "uname", 165: "getrusage", 168: "getcpu", 169: "gettimeofday", 172: "getpid",
    173: "getppid", 174: "getuid", 175: "geteuid", 176: "getgid", 177: "getegid",
    178: "gettid", 179: "sysinfo",
    214: "brk", 215: "munmap", 216: "mremap", 220: "clone", 221: "execve", 222: "mmap",
    226: "mprotect", 227: "msync", 233: "madvise", 260: "wait4", 261: "prlimit64",
    278: "getrandom", 293: "rseq",
}


def pack_stat(st: Kstat) -> bytes:
    """struct stat (include/uapi/asm-generic/stat.h), 128 bytes."""
    return struct.pack("<QQIIIIQQqiiq6qii", st.dev, st.ino, st.mode, st.nlink, st.uid, st.gid,
                       st.rdev, 0, st.size, st.blksize, 0, st.blocks, 0, 0, 0, 0, 0, 0, 0, 0)


def fault_status(f: HwFault) -> int:
    """DFSC/IFSC: translation fault at the level the walk stopped, or permission fault."""
    return (0x0C if f.present else 0x04) + f.level


def fault_code(f: HwFault) -> int:
    """ESR_EL1 for an abort from EL0."""
    ec = ESR_ELx_EC_IABT_LOW if f.access is AccessType.EXEC else ESR_ELx_EC_DABT_LOW
    esr = (ec << ESR_ELx_EC_SHIFT) | ESR_ELx_IL | fault_status(f)
    if f.access is AccessType.WRITE:
        esr |= ESR_ELx_WNR
    return esr


def segfault_message(comm: str, pid: int, f: HwFault, ip: int, sp: int, esr: int,
                     where: str) -> str:
    """arm64_show_signal(): ``comm[pid]: unhandled exception: DABT (lower EL), ESR ..., NAME``,
    with the fault address, pc and sp added (the kernel prints them in the
    register dump that follows)."""
    ec = esr >> ESR_ELx_EC_SHIFT
    ec_name = "IABT (lower EL)" if ec == ESR_ELx_EC_IABT_LOW else "DABT (lower EL)"
    name = FAULT_NAMES.get(esr & 0x3F, "unknown fault")
    return (f"{comm}[{pid}]: unhandled exception: {ec_name}, ESR 0x{esr:016x}, {name} "
            f"at {f.address:016x} ip {ip:016x} sp {sp:016x}{where}")


#: DC and IC operations counted (the by-VA maintenance ops and the I-cache
#: invalidations; DC ZVA zeroes memory and is not maintenance)
_DC_IC_OPS = frozenset(("dc_cvau", "dc_cvac", "dc_civac", "dc_cvap", "ic_ivau", "ic_iallu",
                        "ic_ialluis"))


def cache_insn(mnemonic: str, op_str: str) -> Optional[str]:
    """dc cvau/cvac/civac/cvap, ic ivau/iallu/ialluis, dsb, isb."""
    if mnemonic in ("dsb", "isb"):
        return mnemonic
    if mnemonic in ("dc", "ic"):
        name = f"{mnemonic}_{op_str.split(',', 1)[0].strip().lower()}"
        return name if name in _DC_IC_OPS else None
    return None


ARM64 = ArchSpec(
    arch=Arch.ARM64,
    # [vvar] then [vdso], as __setup_additional_pages() maps them; the sizes
    # (4 + 2 pages) are those of a 6.x arm64 kernel with 4 KiB pages
    elf=ElfArchInfo(e_machine=183, name="aarch64", platform="aarch64", hwcap=0x3,
                    minsigstksz=5120, vdso_layout=(("[vvar]", 4), ("[vdso]", 2))),
    pte_format=Arm64Pte,
    syscall_names=SYSCALL_NAMES,
    syscall_nr_reg="x8",
    syscall_arg_regs=("x0", "x1", "x2", "x3", "x4", "x5"),
    syscall_ret_reg="x0",
    pc_reg="pc",
    sp_reg="sp",
    syscall_insn_len=4,
    machine="aarch64",
    pack_stat=pack_stat,
    fault_code=fault_code,
    segfault_message=segfault_message,
    clone_backwards=True,
    cache_insn=cache_insn,
)
