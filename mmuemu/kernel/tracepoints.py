"""Tracepoints: where the kernel model reports events (include/trace/events/*).

The kernel calls ``kern.trace.<event>(...)`` only when a sink is attached
(``kern.trace is not None``), so tracing costs one attribute test when off.
The emulator's sink adds what only it knows (instruction count, pc, the
faulting instruction) and hands events to the trace writers; the kernel
never imports them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Protocol

if TYPE_CHECKING:
    from mmuemu.kernel.mm_types import MmStruct, VmAreaStruct, VmFault
    from mmuemu.kernel.sched import TaskStruct


class TraceSink(Protocol):
    """Receives kernel events. Every method must be cheap and must not raise."""

    def fault(self, task: "TaskStruct", address: int, access: str, vmf: Optional["VmFault"],
              vma: Optional["VmAreaStruct"], major: bool, signal: int, user: bool) -> None:
        """A page fault was handled (signal 0) or ended in a signal."""

    def mm_op(self, task: "TaskStruct", op: str, start: int, length: int, prot: int,
              flags: int, result: int) -> None:
        """mmap / munmap / mprotect / brk / exec / exit changed the address space."""

    def tlb_flush(self, mm: "MmStruct", kind: str, start: int, end: int) -> None:
        """The kernel asked for a TLB flush (page / range / mm)."""
