"""Process exit (kernel/exit.c, mm/mmap.c:exit_mmap).

do_exit() tears the address space down (exit_mmap: unmap every VMA, free
the page tables and the pgd), closes files and leaves a zombie for the
parent's wait4(); the parent's children are handed to pid 1 as on Linux.
"""
from __future__ import annotations

from mmuemu.kernel.cacheflush import flush_cache_mm
from mmuemu.kernel.interval_tree import vma_interval_tree_remove
from mmuemu.kernel.mm_types import MmStruct, update_hiwater_rss
from mmuemu.kernel.mmap import remove_vma, unmap_region
from mmuemu.kernel.vma_tree import vma_tree_clear
from mmuemu.kernel.sched import TaskState, TaskStruct


def exit_mmap(mm: MmStruct) -> None:
    """exit_mmap(): unmap and free everything, including the page-table pages."""
    kern = mm.kernel
    vmas = list(mm.mm_rb)
    flush_cache_mm(mm)
    if vmas:
        unmap_region(mm, vmas, 0, mm.task_size, 0, 0, fullmm=True)
    for vma in vmas:
        if vma.vm_file is not None:
            vma_interval_tree_remove(vma, vma.vm_file.f_mapping.i_mmap)
        remove_vma(vma)
    vma_tree_clear(mm.mm_rb)
    kern.put_page(kern.pfn_to_page(mm.pgd >> 12))
    mm.mm_users = 0


def do_exit(task: TaskStruct, code: int, signal: int = 0) -> None:
    """do_exit(): release the mm and files; become a zombie for the parent."""
    if task.state in (TaskState.ZOMBIE, TaskState.DEAD):
        return
    task.exit_code = code & 0xFF
    task.exit_signal = signal or None
    # setmax_mm_hiwater_rss(&signal->maxrss, mm): the model keeps the peak in the mm
    update_hiwater_rss(task.mm)
    exit_mmap(task.mm)
    for f in task.files.values():
        if f is not None:
            f.f_count -= 1
    task.files.clear()
    task.state = TaskState.ZOMBIE
    task.wait_chan = None
    parent = task.parent
    if parent is not None and parent.wait_chan == "wait4":
        parent.wait_chan = None
        parent.state = TaskState.RUNNING  # wake_up_parent()


def release_task(task: TaskStruct) -> None:
    """release_task(): a reaped zombie is gone."""
    task.state = TaskState.DEAD
    if task.parent is not None and task in task.parent.children:
        task.parent.children.remove(task)
