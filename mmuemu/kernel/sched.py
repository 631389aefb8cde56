"""Tasks (include/linux/sched.h): what the model needs of task_struct.

Scheduling is the emulator's job (a deterministic round robin with an
instruction quantum); the kernel side keeps each task's state, its parent
and children, and what wait4() reports.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

from mmuemu.kernel.memory import FaultCounts
from mmuemu.kernel.mm_types import File, MmStruct

TASK_COMM_LEN = 16


class TaskState(enum.Enum):
    """The states the model distinguishes (TASK_RUNNING, TASK_INTERRUPTIBLE, EXIT_ZOMBIE, EXIT_DEAD)."""

    RUNNING = "R"
    SLEEPING = "S"
    ZOMBIE = "Z"
    DEAD = "X"


@dataclass(slots=True, eq=False)
class TaskStruct:
    """task_struct: a guest process."""

    pid: int
    comm: str
    mm: MmStruct
    ppid: int = 0
    cwd: str = "/"
    files: dict[int, Optional[File]] = field(default_factory=dict)
    counts: FaultCounts = field(default_factory=FaultCounts)
    exit_code: Optional[int] = None
    #: signal that killed the task, if any
    exit_signal: Optional[int] = None
    #: saved CPU context while not running (owned by the emu layer)
    context: Any = None
    #: instructions this task has executed so far
    insns: int = 0
    state: TaskState = TaskState.RUNNING
    parent: Optional["TaskStruct"] = None
    children: list["TaskStruct"] = field(default_factory=list)
    #: what the task sleeps on ("wait4"), None when runnable
    wait_chan: Optional[str] = None
    #: faults of reaped children (getrusage(RUSAGE_CHILDREN), signal->cmin_flt)
    children_min_flt: int = 0
    children_maj_flt: int = 0
    #: clone(2) with a new stack: the child's initial stack pointer
    context_sp: int = 0
    #: chosen by the OOM killer (TIF_MEMDIE): it dies with SIGKILL
    oom_victim: bool = False

    def set_comm(self, name: str) -> None:
        """__set_task_comm(): the executable's basename, at most 15 bytes."""
        self.comm = name[:TASK_COMM_LEN - 1]

    def wait_status(self) -> int:
        """The status word wait4() stores: exit code << 8, or the killing signal."""
        if self.exit_signal:
            return self.exit_signal & 0x7F
        return (self.exit_code or 0) << 8
