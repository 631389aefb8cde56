"""The per-architecture interface of the kernel side."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from mmuemu._types import Arch
from mmuemu.hw.pte import PteFormat
from mmuemu.kernel.binfmt_elf import ElfArchInfo
from mmuemu.kernel.fault import AccessType
from mmuemu.kernel.syscalls import Kstat, SyscallHandler


@dataclass(frozen=True, slots=True)
class HwFault:
    """A translation failure as the hardware reports it, before the kernel looks."""

    address: int
    access: AccessType
    #: the walk found a present leaf that forbade the access (protection fault)
    present: bool
    #: table level where the walk stopped (0 = top, 3 = last level)
    level: int


@dataclass(frozen=True, slots=True)
class ArchSpec:
    """Everything architecture specific the kernel model and the emulator need."""

    arch: Arch
    elf: ElfArchInfo
    pte_format: Callable[[], PteFormat]
    #: syscall number → Linux name
    syscall_names: dict[int, str]
    #: registers: syscall number, the six arguments, the return value
    syscall_nr_reg: str
    syscall_arg_regs: tuple[str, ...]
    syscall_ret_reg: str
    pc_reg: str
    sp_reg: str
    #: bytes of the syscall instruction (to restart a syscall: pc -= this)
    syscall_insn_len: int
    #: uname machine
    machine: str
    pack_stat: Callable[[Kstat], bytes]
    #: decode a hardware fault into the kernel's error value (x86 error code / arm64 ESR)
    fault_code: Callable[[HwFault], int]
    #: the kernel's one-line report of a fatal user fault
    segfault_message: Callable[[str, int, HwFault, int, int, int, str], str]
    #: syscalls only this architecture has (arch/*/kernel), by name
    arch_syscalls: Mapping[str, SyscallHandler] = field(default_factory=dict)
    #: CONFIG_CLONE_BACKWARDS: clone(flags, newsp, ptid, tls, ctid), not (..., ctid, tls)
    clone_backwards: bool = False
    #: an instruction (capstone mnemonic, operands) -> the cache-maintenance
    #: instruction it is (mmuemu.hw.cache.CACHE_OPS names), or None
    cache_insn: Callable[[str, str], Optional[str]] = lambda mnemonic, op_str: None

    @property
    def name(self) -> str:
        """``x86_64`` or ``aarch64``."""
        return self.arch.label
