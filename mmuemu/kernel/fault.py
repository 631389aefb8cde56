"""The arch-independent part of the page-fault handler (arch/*/mm/fault.c).

do_user_addr_fault() finds the VMA (growing the stack if the address is just
below a VM_GROWSDOWN VMA), checks the access against vm_flags and calls
handle_mm_fault(). The arch layer decodes the hardware fault into a
:class:`FaultRequest` and formats the kernel's message when the result is a
signal.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from mmuemu.kernel.memory import handle_mm_fault
from mmuemu.kernel.mm_types import (
    VM, FaultFlag, FaultKind, VmAreaStruct, VmFault, VmFaultReason, VM_FAULT_ERROR,
)
from mmuemu.kernel.mmap import expand_stack, find_vma
from mmuemu.kernel.sched import TaskStruct

SIGBUS = 7
SIGSEGV = 11
SEGV_MAPERR = 1
SEGV_ACCERR = 2


class AccessType(enum.Enum):
    """What the faulting access wanted."""

    READ = "read"
    WRITE = "write"
    EXEC = "exec"


@dataclass(frozen=True, slots=True)
class FaultOutcome:
    """What happened: resolved (signal 0) or a signal with its si_code."""

    signal: int
    si_code: int
    kind: Optional[FaultKind]
    major: bool
    vma: Optional[VmAreaStruct]
    vmf: Optional[VmFault] = None


def access_error(access: AccessType, vma: VmAreaStruct) -> bool:
    """access_error(): the VMA does not allow this kind of access."""
    if access is AccessType.WRITE:
        return not vma.vm_flags & VM.WRITE
    if access is AccessType.EXEC:
        return not vma.vm_flags & VM.EXEC
    return not vma.vm_flags & (VM.READ | VM.WRITE | VM.EXEC)


def do_user_addr_fault(task: TaskStruct, address: int, access: AccessType,
                       user: bool = True) -> FaultOutcome:
    """do_user_addr_fault(): resolve a fault on a user address or name the signal."""
    out = __do_user_addr_fault(task, address, access, user)
    trace = task.mm.kernel.trace
    if trace is not None:
        trace.fault(task, address, access.value, out.vmf, out.vma, out.major, out.signal, user)
    return out


def __do_user_addr_fault(task: TaskStruct, address: int, access: AccessType,
                         user: bool) -> FaultOutcome:
    mm = task.mm
    vma = find_vma(mm, address)
    if vma is None:
        return FaultOutcome(SIGSEGV, SEGV_MAPERR, None, False, None)
    if vma.vm_start > address:
        if not vma.vm_flags & VM.GROWSDOWN or expand_stack(mm, vma, address):
            return FaultOutcome(SIGSEGV, SEGV_MAPERR, None, False, None)
    if access_error(access, vma):
        return FaultOutcome(SIGSEGV, SEGV_ACCERR, None, False, vma)
    flags = FaultFlag.ALLOW_RETRY | FaultFlag.KILLABLE
    if user:
        flags |= FaultFlag.USER
    if access is AccessType.WRITE:
        flags |= FaultFlag.WRITE
    elif access is AccessType.EXEC:
        flags |= FaultFlag.INSTRUCTION
    ret, vmf = handle_mm_fault(vma, address, flags, task.counts)
    kind = vmf.kind
    if ret & VM_FAULT_ERROR:
        if ret & VmFaultReason.OOM:
            return FaultOutcome(9, 0, kind, False, vma, vmf)  # pagefault_out_of_memory: OOM kill
        if ret & VmFaultReason.SIGBUS:
            return FaultOutcome(SIGBUS, 2, kind, False, vma, vmf)  # BUS_ADRERR
        return FaultOutcome(SIGSEGV, SEGV_ACCERR, kind, False, vma, vmf)
    return FaultOutcome(0, 0, kind, bool(ret & VmFaultReason.MAJOR), vma, vmf)
