"""Tracepoints: where the kernel model reports events (include/trace/events/*).

The kernel calls ``kern.trace.<event>(...)`` only when a sink is attached
(``kern.trace is not None``), so tracing costs one attribute test when off.
The two frequent events go through probes bound when the sink is set
(:class:`Tracepoints`): ``kern.tracepoints.page_fault(...)`` (the sink's
``fault``) and ``kern.tracepoints.tlb_flush(...)`` (its ``tlb_flush``), each
None when off.
The emulator's sink adds what only it knows (instruction count, pc, the
faulting instruction) and hands events to the trace writers; the kernel
never imports them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Protocol

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


class Tracepoints:
    """The kernel's tracepoints: the attached sink, and the probes of the two
    events that come on every fault or TLB flush.

    A probe is the sink's bound method (or whatever callable the sink put in
    its place) read once, when the sink is attached: an attribute holding
    the callable is what Python 3.11 reads fastest, where ``sink.fault``,
    a method the emulator's sink shadows with its C recorder, is a generic
    lookup of some 200 instructions a call. A sink that changes its
    ``fault`` or ``tlb_flush`` attaches itself again. Its own object, so
    the kernel's attributes stay few enough for Python to keep them in
    place (past 30 an instance's attributes move to a dict and every read
    on the fault path slows down).
    """

    __slots__ = ("sink", "page_fault", "tlb_flush")

    def __init__(self) -> None:
        self.sink: Optional[TraceSink] = None
        #: the sink's ``fault``; None when tracing is off
        self.page_fault: Optional[Callable[..., None]] = None
        #: the sink's ``tlb_flush``; None when tracing is off
        self.tlb_flush: Optional[Callable[["MmStruct", str, int, int], None]] = None

    def attach(self, sink: Optional[TraceSink]) -> None:
        """Report to ``sink`` from now on (None: to nobody)."""
        self.sink = sink
        self.page_fault = None if sink is None else sink.fault
        self.tlb_flush = None if sink is None else sink.tlb_flush
