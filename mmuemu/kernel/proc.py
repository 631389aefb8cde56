"""procfs files the guests can read, and the /proc/mtest inspector
(fs/proc/task_mmu.c: show_map_vma, show_smap; the seeds' vma_test1 module).

Their contents are generated when the file is opened, from the live model.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Optional

from mmuemu.kernel.memory import vm_normal_page
from mmuemu.kernel.mm_types import (
    PG, VM, MmStruct, PageAnon, PageTest, VmAreaStruct, page_mapcount,
)
from mmuemu.kernel.pgtable import ptep_get, pte_offset_lookup, pte_range
from mmuemu.kernel.rmap import rmap_walk
from mmuemu.kernel.sched import TaskState, TaskStruct

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

_VMFLAG_NAMES = [  # show_smap_vma_flags(), in bit order
    (VM.READ, "rd"), (VM.WRITE, "wr"), (VM.EXEC, "ex"), (VM.SHARED, "sh"),
    (VM.MAYREAD, "mr"), (VM.MAYWRITE, "mw"), (VM.MAYEXEC, "me"), (VM.MAYSHARE, "ms"),
    (VM.GROWSDOWN, "gd"), (VM.PFNMAP, "pf"), (VM.LOCKED, "lo"), (VM.IO, "io"),
    (VM.SEQ_READ, "sr"), (VM.RAND_READ, "rr"), (VM.DONTCOPY, "dc"), (VM.DONTEXPAND, "de"),
    (VM.ACCOUNT, "ac"), (VM.NORESERVE, "nr"),
]


def vma_name(vma: VmAreaStruct) -> str:
    """The name column of /proc/PID/maps: file path, [heap], [stack], [vdso]..."""
    mm = vma.vm_mm
    if isinstance(vma.vm_private_data, str):
        return vma.vm_private_data
    if vma.vm_file is not None:
        path = vma.vm_file.path
        return path if path.startswith("/") else "/" + path
    if vma.vm_start <= mm.start_brk < vma.vm_end or \
            (vma.vm_start <= mm.brk <= vma.vm_end and vma.vm_start >= mm.start_brk):
        return "[heap]"
    if vma.vm_start <= mm.start_stack <= vma.vm_end:
        return "[stack]"
    return ""


def show_map_vma(vma: VmAreaStruct) -> str:
    """One line of /proc/PID/maps, padded as the kernel pads it."""
    f = vma.vm_flags
    perms = ("r" if f & VM.READ else "-") + ("w" if f & VM.WRITE else "-") + \
            ("x" if f & VM.EXEC else "-") + ("s" if f & VM.MAYSHARE else "p")
    ino, dev = 0, "00:00"
    if vma.vm_file is not None:
        ino = vma.vm_file.f_inode.i_ino
        dev = "08:03" if vma.vm_file.f_inode.host_path else "00:05"
    pgoff = vma.vm_pgoff << 12 if vma.vm_file is not None else 0
    line = f"{vma.vm_start:08x}-{vma.vm_end:08x} {perms} {pgoff:08x} {dev} {ino} "
    name = vma_name(vma)
    if name:
        line = line.ljust(73) + name
    return line


def proc_maps(mm: MmStruct) -> bytes:
    """/proc/PID/maps."""
    return "".join(show_map_vma(v) + "\n" for v in mm.mm_rb).encode()


def smap_counts(vma: VmAreaStruct) -> dict[str, int]:
    """smaps_pte_entry() over a VMA: Rss, Pss and the shared/private clean/dirty split (kB)."""
    mm = vma.vm_mm
    kern = mm.kernel
    fmt = kern.fmt
    c = {"Rss": 0, "Pss": 0, "Shared_Clean": 0, "Shared_Dirty": 0, "Private_Clean": 0,
         "Private_Dirty": 0, "Referenced": 0, "Anonymous": 0, "Swap": 0}
    pss = 0.0
    for addr, pte_pa in pte_range(mm, vma.vm_start, vma.vm_end):
        pte = ptep_get(mm, pte_pa)
        if not pte:
            continue
        if not fmt.pte_present(pte):  # a swap entry
            c["Swap"] += 4
            continue
        page = vm_normal_page(vma, addr, pte)
        c["Rss"] += 4
        if page is None:  # the zero page: counted in Rss, shared by everyone
            c["Shared_Clean"] += 4
            continue
        dirty = fmt.pte_dirty(pte) or PageTest(page, PG.dirty)
        mapcount = max(1, page_mapcount(page))
        key = ("Shared_" if mapcount > 1 else "Private_") + ("Dirty" if dirty else "Clean")
        c[key] += 4
        pss += 4.0 / mapcount
        if fmt.pte_young(pte) or PageTest(page, PG.referenced):
            c["Referenced"] += 4
        if PageAnon(page):
            c["Anonymous"] += 4
    c["Pss"] = int(pss)
    return c


def proc_smaps(mm: MmStruct) -> bytes:
    """/proc/PID/smaps."""
    out = []
    for vma in mm.mm_rb:
        out.append(show_map_vma(vma))
        c = smap_counts(vma)
        size = (vma.vm_end - vma.vm_start) >> 10
        rows = [("Size", size), ("KernelPageSize", 4), ("MMUPageSize", 4), ("Rss", c["Rss"]),
                ("Pss", c["Pss"]), ("Shared_Clean", c["Shared_Clean"]),
                ("Shared_Dirty", c["Shared_Dirty"]), ("Private_Clean", c["Private_Clean"]),
                ("Private_Dirty", c["Private_Dirty"]), ("Referenced", c["Referenced"]),
                ("Anonymous", c["Anonymous"]), ("LazyFree", 0), ("AnonHugePages", 0),
                ("ShmemPmdMapped", 0), ("FilePmdMapped", 0), ("Shared_Hugetlb", 0),
                ("Private_Hugetlb", 0), ("Swap", c["Swap"]), ("SwapPss", c["Swap"]),
                ("Locked", 0)]
        for name, kb in rows:
            out.append(f"{name + ':':<16}{kb:>8} kB")
        out.append("THPeligible:    0")
        flags = " ".join(n for bit, n in _VMFLAG_NAMES if vma.vm_flags & bit)
        out.append(f"VmFlags: {flags} ")
    return ("\n".join(out) + "\n").encode()


# --- the /proc/mtest inspector (the seeds' experiment module) -----------------------------

def _task_of(kern: "Kernel", mm: MmStruct) -> Optional[TaskStruct]:
    for t in kern.tasks.values():
        if t.mm is mm and t.state is not TaskState.DEAD:
            return t
    return None


def mtest_findpage(kern: "Kernel", task: TaskStruct, addr: int) -> list[str]:
    """What the seed's module printed for findpage0x<addr>."""
    lines: list[str] = []
    mm = task.mm
    pte_pa = pte_offset_lookup(mm, addr)
    pte = ptep_get(mm, pte_pa) if pte_pa is not None else 0
    fmt = kern.fmt
    if not pte or not fmt.pte_present(pte):
        return [f"no page mapped at 0x{addr:x} in pid {task.pid}"]
    pfn = fmt.pte_pfn(pte)
    if pfn == kern.zero_pfn:
        return [f"0x{addr:x} maps the zero page (pfn {pfn:#x}): no rmap"]
    page = kern.pfn_to_page(pfn)
    walk, vmas = rmap_walk(kern, page)
    if walk == "rmap_walk_anon":
        lines.append("page is anonymous and compare rmap_walk_anon")
    else:
        lines.append("page is file and compare rmap_walk_file")
        mapping = kern.kobj.lookup(page.mapping)
        lines.append(f"mapping->a_ops: {mapping.a_ops.name}")
    for vma in vmas:
        t = _task_of(kern, vma.vm_mm)
        comm, pid = (t.comm, t.pid) if t else ("?", 0)
        name = vma.vm_file.path if vma.vm_file is not None else "no vm file"
        lines.append(f"vma 0x{vma.vm_start:x}-0x{vma.vm_end:x} flag {vma.vm_flags:x} , "
                     f"vma task comm: {comm} and pid {pid} , d_iname : {name}")
        lines.append(f"vma->vm_ops: {vma.vm_ops.name}" if vma.vm_ops is not None
                     else "vma->vm_ops is null")
    lines.append(f"page_mapcount(page) = {page_mapcount(page)}")
    lines.append(f"page->flags = {page.flags:x}")
    lines.append(f"page->count = {page._count}")
    lines.append(f"page->mapping = {page.mapping:x}")
    return lines


def mtest_findtask(kern: "Kernel", pid: int) -> list[str]:
    """findtask<pid>: the task and its VMAs."""
    t = kern.tasks.get(pid)
    if t is None or t.state is TaskState.DEAD:
        return [f"no task with pid {pid}"]
    lines = [f"task comm: {t.comm} pid: {t.pid} ppid: {t.ppid} state: {t.state.value}"]
    if t.state is not TaskState.ZOMBIE:
        lines += [show_map_vma(v) for v in t.mm.mm_rb]
    return lines


class MtestInspector:
    """/proc/mtest: a write of ``findtask<pid>`` selects a task and lists it;
    ``findpage0x<addr>`` walks rmap from the page the selected task (by
    default the writer) maps at addr. Output goes to the kernel log."""

    def __init__(self, kern: "Kernel", log: Callable[[str], None]) -> None:
        self.kern = kern
        self.log = log
        self.selected: Optional[int] = None

    def command(self, writer: TaskStruct, text: str) -> int:
        """Handle one write; returns 0 or -EINVAL."""
        cmd = text.strip()
        if cmd.startswith("findtask"):
            try:
                pid = int(cmd[len("findtask"):], 0)
            except ValueError:
                return -22
            self.selected = pid
            for line in mtest_findtask(self.kern, pid):
                self.log(line)
            return 0
        if cmd.startswith("findpage"):
            try:
                addr = int(cmd[len("findpage"):], 16)
            except ValueError:
                return -22
            task = self.kern.tasks.get(self.selected) if self.selected else None
            if task is None or task.state is not TaskState.RUNNING and \
                    task.state is not TaskState.SLEEPING:
                task = writer
            for line in mtest_findpage(self.kern, task, addr):
                self.log(line)
            return 0
        return -22


def proc_vmstat(kern: "Kernel") -> bytes:
    """/proc/vmstat: the page counts and the event counters, by Linux's names."""
    rows = {"nr_free_pages": kern.buddy.stats.nr_free_pages, **kern.lruvec.counts()}
    rows["nr_swapcached"] = kern.swapper_space.nrpages
    for name, value in kern.vmstat.as_dict().items():
        if isinstance(value, int):
            rows[name] = value
    return "".join(f"{k} {v}\n" for k, v in rows.items()).encode()


def proc_meminfo(kern: "Kernel") -> bytes:
    """/proc/meminfo: the lines of it the model can fill."""
    lv = kern.lruvec.counts()
    kb = {"MemTotal": kern.buddy.stats.managed_pages, "MemFree": kern.buddy.stats.nr_free_pages,
          "SwapCached": kern.swapper_space.nrpages,
          "Active": lv["nr_active_anon"] + lv["nr_active_file"],
          "Inactive": lv["nr_inactive_anon"] + lv["nr_inactive_file"],
          "Active(anon)": lv["nr_active_anon"], "Inactive(anon)": lv["nr_inactive_anon"],
          "Active(file)": lv["nr_active_file"], "Inactive(file)": lv["nr_inactive_file"],
          "Unevictable": lv["nr_unevictable"],
          "SwapTotal": kern.swap.total_swap_pages, "SwapFree": kern.swap.nr_swap_pages}
    return "".join(f"{k + ':':<16}{v * 4:>8} kB\n" for k, v in kb.items()).encode()


def proc_file(kern: "Kernel", task: TaskStruct, path: str) -> Optional[bytes]:
    """Contents of a readable /proc file, or None if the model has no such file."""
    parts = os.path.normpath(path).split("/")
    if len(parts) == 3 and parts[1] == "proc":
        if parts[2] == "vmstat":
            return proc_vmstat(kern)
        if parts[2] == "meminfo":
            return proc_meminfo(kern)
    if len(parts) == 4 and parts[1] == "proc":
        who, what = parts[2], parts[3]
        target: Optional[TaskStruct] = task if who == "self" else None
        if target is None and who.isdigit():
            target = kern.tasks.get(int(who))
        if target is None or target.state in (TaskState.ZOMBIE, TaskState.DEAD):
            return None
        if what == "maps":
            return proc_maps(target.mm)
        if what == "smaps":
            return proc_smaps(target.mm)
    return None
