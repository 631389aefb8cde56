"""Tasks (include/linux/sched.h): what the model needs of task_struct."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from mmuemu.kernel.memory import FaultCounts
from mmuemu.kernel.mm_types import File, MmStruct

TASK_COMM_LEN = 16


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

    def set_comm(self, name: str) -> None:
        """__set_task_comm(): the executable's basename, at most 15 bytes."""
        self.comm = name[:TASK_COMM_LEN - 1]
