"""Kernel-side architecture glue: syscall ABI and tables, fault decoding,
the segfault message, and which page-table format the hardware uses.

One :class:`ArchSpec` per architecture, chosen from :data:`ARCHES` by the
ELF's e_machine; nothing else in the model asks "which arch is this?".
"""
from __future__ import annotations

from mmuemu._types import Arch
from mmuemu.arch.base import ArchSpec
from mmuemu.arch.arm64 import ARM64
from mmuemu.arch.x86_64 import X86_64

ARCHES: dict[Arch, ArchSpec] = {Arch.X86_64: X86_64, Arch.ARM64: ARM64}
BY_E_MACHINE: dict[int, ArchSpec] = {spec.elf.e_machine: spec for spec in ARCHES.values()}

__all__ = ["ARCHES", "BY_E_MACHINE", "ArchSpec"]
