"""The arch-independent part of the page-fault handler (arch/*/mm/fault.c).

do_user_addr_fault() finds the VMA (growing the stack if the address is just
below a VM_GROWSDOWN VMA), checks the access against vm_flags and calls
handle_mm_fault(). The arch layer decodes the hardware fault into a
:class:`FaultRequest` and formats the kernel's message when the result is a
signal.
"""
from __future__ import annotations

import enum
from typing import Optional

from mmuemu.kernel.memory import handle_mm_fault
from mmuemu.kernel.mm_types import (
    VM, FaultFlag, FaultKind, VmAreaStruct, VmFault, VmFaultReason, VM_FAULT_ERROR,
)
from mmuemu.kernel.mmap import expand_stack
from mmuemu.kernel.vma_tree import find_vma as _find_vma
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


class FaultOutcome:
    """What happened: resolved (signal 0) or a signal with its si_code.

    What do_user_addr_fault() returns (to the kernel's own user accesses and
    to tests); the machine takes the same fields as a tuple from
    user_addr_fault(), which is cheaper. Treat it as read-only.
    """

    __slots__ = ("signal", "si_code", "kind", "major", "vma", "vmf")

    def __init__(self, signal: int, si_code: int, kind: Optional[FaultKind], major: bool,
                 vma: Optional[VmAreaStruct], vmf: Optional[VmFault] = None) -> None:
        self.signal = signal
        self.si_code = si_code
        self.kind = kind
        self.major = major
        self.vma = vma
        self.vmf = vmf

    def __repr__(self) -> str:
        return (f"FaultOutcome(signal={self.signal}, si_code={self.si_code}, "
                f"kind={self.kind}, major={self.major})")


#: the FAULT_FLAG_* bits every user fault starts with (do_user_addr_fault)
_DEFAULT_FLAGS = FaultFlag.ALLOW_RETRY | FaultFlag.KILLABLE
_MAJOR = VmFaultReason.MAJOR
_USER = FaultFlag.USER

#: per access type (keyed by its value): the vm_flags of which one must be set,
#: and the FAULT_FLAG_* bits of the fault (the defaults and what the access
#: adds). A str-keyed dict: hashing an Enum member and reading one through its
#: class both cost a Python call.
_ACCESS_RULES: dict[str, tuple[int, int]] = {
    "read": (VM.READ | VM.WRITE | VM.EXEC, _DEFAULT_FLAGS),
    "write": (VM.WRITE, _DEFAULT_FLAGS | FaultFlag.WRITE),
    "exec": (VM.EXEC, _DEFAULT_FLAGS | FaultFlag.INSTRUCTION),
}


def access_error(access: AccessType, vma: VmAreaStruct) -> bool:
    """access_error(): the VMA does not allow this kind of access (a write needs
    VM_WRITE, a fetch VM_EXEC, a read any of read, write or exec)."""
    return not vma.vm_flags & _ACCESS_RULES[access._value_][0]


#: do_user_addr_fault()'s outcome as a plain tuple: (signal, si_code, kind,
#: major, vma, vmf), the fields of :class:`FaultOutcome` in its order
FaultResult = tuple[int, int, Optional[FaultKind], bool, Optional[VmAreaStruct],
                    Optional[VmFault]]


def do_user_addr_fault(task: TaskStruct, address: int, access: AccessType,
                       user: bool = True) -> FaultOutcome:
    """do_user_addr_fault(): resolve a fault on a user address or name the signal."""
    return FaultOutcome(*user_addr_fault(task, address, access, user))


def user_addr_fault(task: TaskStruct, address: int, access: AccessType,
                    user: bool = True, vmf: Optional[VmFault] = None) -> FaultResult:
    """do_user_addr_fault() with its outcome as a :data:`FaultResult` tuple: the
    machine's page-fault entry. A tuple is built and taken apart in C; a
    FaultOutcome, made and freed on every fault, was some 2,500 instructions
    of the ~47,000 a fault took then (``python -m bench.instructions``). The
    trace records every outcome: a resolved fault here, a signal in
    :func:`_signalled`. ``vmf``: storage for the fault's vm_fault, reused
    from fault to fault (:func:`~mmuemu.kernel.memory.handle_mm_fault`)."""
    mm = task.mm
    # find_vma(), its mmap_cache test inline (the last VMA found: almost every
    # fault), else straight to the tree
    mt = mm.mm_rb
    vma = mt.mmap_cache
    if vma is None or vma.vm_end <= address or vma.vm_start > address:
        vma = _find_vma(mt, address)
    if vma is None:
        return _signalled(task, address, access, user, SIGSEGV, SEGV_MAPERR, None, None)
    if vma.vm_start > address:
        if not vma.vm_flags & VM.GROWSDOWN or expand_stack(mm, vma, address):
            return _signalled(task, address, access, user, SIGSEGV, SEGV_MAPERR, None, None)
    need, flags = _ACCESS_RULES[access._value_]
    if not vma.vm_flags & need:  # access_error()
        return _signalled(task, address, access, user, SIGSEGV, SEGV_ACCERR, vma, None)
    if user:
        flags |= _USER
    ret, vmf = handle_mm_fault(vma, address, flags, task.counts, vmf)
    if ret & VM_FAULT_ERROR:
        if ret & VmFaultReason.OOM:  # pagefault_out_of_memory: OOM kill
            return _signalled(task, address, access, user, 9, 0, vma, vmf)
        if ret & VmFaultReason.SIGBUS:  # BUS_ADRERR
            return _signalled(task, address, access, user, SIGBUS, 2, vma, vmf)
        return _signalled(task, address, access, user, SIGSEGV, SEGV_ACCERR, vma, vmf)
    major = ret & _MAJOR != 0
    trace_page_fault = mm.kernel.tracepoints.page_fault
    if trace_page_fault is not None:
        trace_page_fault(task, address, access._value_, vmf, vma, major, 0, user)
    return 0, 0, vmf.kind, major, vma, vmf


def _signalled(task: TaskStruct, address: int, access: AccessType, user: bool, signal: int,
               si_code: int, vma: Optional[VmAreaStruct], vmf: Optional[VmFault]) -> FaultResult:
    """The outcome of a fault that ends in ``signal``, recorded in the trace."""
    trace_page_fault = task.mm.kernel.tracepoints.page_fault
    if trace_page_fault is not None:
        trace_page_fault(task, address, access._value_, vmf, vma, False, signal, user)
    return signal, si_code, None if vmf is None else vmf.kind, False, vma, vmf
