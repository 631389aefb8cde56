"""Unicorn CPU construction and register access per architecture."""
from __future__ import annotations

from dataclasses import dataclass

import unicorn
from unicorn import arm64_const, x86_const

from mmuemu._types import Arch


@dataclass(frozen=True, slots=True)
class CpuSpec:
    """How to create the CPU and name its registers."""

    uc_arch: int
    uc_mode: int
    regs: dict[str, int]
    #: how far the pc a syscall hook sees is behind the syscall's return
    #: address: x86-64's UC_HOOK_INSN runs before rip moves past the 2-byte
    #: ``syscall``; arm64's ``svc`` exception has already advanced pc
    syscall_hook_pc_lag: int
    #: registers a new program starts with besides pc and sp, by Unicorn id:
    #: the kernel's initial FPU state (Unicorn resets x87's control word and
    #: MXCSR to 0, i.e. single precision and every exception unmasked)
    exec_regs: dict[int, int]


def _x86_regs() -> dict[str, int]:
    names = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "rflags",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "fs_base", "gs_base"]
    return {n: getattr(x86_const, f"UC_X86_REG_{n.upper()}") for n in names}


def _arm64_regs() -> dict[str, int]:
    regs = {f"x{i}": getattr(arm64_const, f"UC_ARM64_REG_X{i}") for i in range(29)}
    regs.update(x29=arm64_const.UC_ARM64_REG_X29, x30=arm64_const.UC_ARM64_REG_X30,
                sp=arm64_const.UC_ARM64_REG_SP, pc=arm64_const.UC_ARM64_REG_PC,
                nzcv=arm64_const.UC_ARM64_REG_NZCV, tpidr_el0=arm64_const.UC_ARM64_REG_TPIDR_EL0)
    return regs


CPUS: dict[Arch, CpuSpec] = {
    # fpstate_init_fxstate(): FCW 0x37f (64-bit precision, exceptions masked),
    # MXCSR_DEFAULT 0x1f80. arm64 starts with FPCR 0, as Unicorn does.
    Arch.X86_64: CpuSpec(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64, _x86_regs(), 2,
                         {x86_const.UC_X86_REG_FPCW: 0x37F, x86_const.UC_X86_REG_MXCSR: 0x1F80}),
    Arch.ARM64: CpuSpec(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM, _arm64_regs(), 0, {}),
}


def context_regs(arch: Arch) -> list[int]:
    """Registers saved and restored on a context switch."""
    return list(CPUS[arch].regs.values())
