"""The OOM killer (mm/oom_kill.c).

When reclaim can free nothing and no swap space is left, out_of_memory()
picks the process with the largest badness: its resident pages, swap
entries and page-table pages (oom_badness(); every oom_score_adj is 0 in
the model). Processes are visited in pid order and a later one wins a tie,
as select_bad_process() does. The victim is killed with SIGKILL and its
memory freed at once (the oom_reaper's work); the kernel log gets Linux's
two lines.

Model difference: pid 1 is the program mmuemu runs, not a system init, so
it may be chosen.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from mmuemu.kernel.sched import TaskState, TaskStruct

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

SIGKILL = 9


def get_mm_rss(task: TaskStruct) -> int:
    """get_mm_rss(): resident pages of the task's mm."""
    mm = task.mm
    return mm.rss_anon + mm.rss_file + mm.rss_shmem


def oom_badness(task: TaskStruct) -> int:
    """oom_badness(): rss + swap entries + page-table pages."""
    return get_mm_rss(task) + task.mm.rss_swap + task.mm.nr_ptes


def select_bad_process(kern: "Kernel") -> Optional[TaskStruct]:
    """select_bad_process(): the live task with the largest badness."""
    chosen: Optional[TaskStruct] = None
    chosen_points = -1
    for pid in sorted(kern.tasks):
        task = kern.tasks[pid]
        if task.state not in (TaskState.RUNNING, TaskState.SLEEPING) or task.oom_victim:
            continue
        points = oom_badness(task)
        if points >= chosen_points:
            chosen, chosen_points = task, points
    return chosen


def oom_kill_message(task: TaskStruct) -> str:
    """__oom_kill_process()'s line (Linux 6.x format)."""
    mm = task.mm
    return (f"Out of memory: Killed process {task.pid} ({task.comm}) "
            f"total-vm:{mm.total_vm * 4}kB, anon-rss:{mm.rss_anon * 4}kB, "
            f"file-rss:{mm.rss_file * 4}kB, shmem-rss:{mm.rss_shmem * 4}kB, "
            f"UID:0 pgtables:{mm.nr_ptes * 4}kB oom_score_adj:0")


def out_of_memory(kern: "Kernel") -> bool:
    """out_of_memory(): kill the worst task. Returns True when the memory of a
    task other than current was freed (the allocation may retry), False when
    current itself must die (or nothing could be chosen)."""
    current = kern.current
    victim = select_bad_process(kern)
    if victim is None:
        return False
    who = current.comm if current is not None else "kswapd0"
    kern.printk(f"{who} invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|"
                f"__GFP_COMP), order=0, oom_score_adj=0")
    kern.printk(oom_kill_message(victim))
    kern.vmstat.oom_kill += 1
    victim.oom_victim = True
    if victim is current:
        return False
    kern.kill_task(victim, SIGKILL)
    return True
