"""Processes: the seeds' /dev/zero + fork experiment, the inspector, procfs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ARCHES
from tests.emu.helpers import run_mmuemu


def _reports(log: str) -> list[list[str]]:
    """Split the inspector's log into one block per findpage report."""
    blocks: list[list[str]] = []
    for line in log.splitlines():
        if line.startswith("page is ") or line.startswith("no page mapped"):
            blocks.append([])
        if blocks:
            blocks[-1].append(line)
    return blocks


def _vmas(block: list[str]) -> list[tuple[str, int, str]]:
    """(flags, pid, file) of each 'vma ...' line."""
    out = []
    for line in block:
        m = re.match(r"vma 0x[0-9a-f]+-0x[0-9a-f]+ flag ([0-9a-f]+) , vma task comm: (\S+) "
                     r"and pid (\d+) , d_iname : (.+)$", line)
        if m:
            out.append((m.group(1), int(m.group(3)), m.group(4)))
    return out


@pytest.mark.parametrize("arch", ARCHES)
def test_seed_experiment_dev_zero_shared_and_fork(arch: str, tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    out = run_mmuemu(arch, "mmap_fork", ["16"], tmp_path, ["--log", str(log)])
    assert out.status == 0, out.stderr
    assert out.stdout == b"mmap_fork: shared=pc var=42 child_status=0\n"
    blocks = _reports(log.read_text())
    assert len(blocks) == 4
    shared, stack_before, stack_after_child, stack_parent = blocks
    # the shared /dev/zero page: shmem, found through i_mmap, one VMA per task
    assert shared[0] == "page is file and compare rmap_walk_file"
    assert "mapping->a_ops: shmem_aops" in shared
    assert _vmas(shared) == [("fb", 1, "dev/zero"), ("fb", 2, "dev/zero")]
    assert shared.count("vma->vm_ops: shmem_vm_ops") == 2
    assert "page_mapcount(page) = 2" in shared
    # the stack page before the child writes: one anon page in both tasks
    assert stack_before[0] == "page is anonymous and compare rmap_walk_anon"
    assert _vmas(stack_before) == [("100173", 1, "no vm file"), ("100173", 2, "no vm file")]
    assert stack_before.count("vma->vm_ops is null") == 2
    assert "page_mapcount(page) = 2" in stack_before
    # after the child's write (COW) each task has its own page
    assert _vmas(stack_after_child) == [("100173", 2, "no vm file")]
    assert _vmas(stack_parent) == [("100173", 1, "no vm file")]
    # page->mapping of the anon page carries PAGE_MAPPING_ANON
    mapping = next(l for l in stack_before if l.startswith("page->mapping = "))
    assert int(mapping.split("= ")[1], 16) & 1 == 1
    mapping = next(l for l in shared if l.startswith("page->mapping = "))
    assert int(mapping.split("= ")[1], 16) & 1 == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_inspect_at_from_the_command_line(arch: str, tmp_path: Path) -> None:
    log = tmp_path / "k.log"
    # syscall 1 is the guest's first: the stack page holding argv is mapped by then
    out = run_mmuemu(arch, "hello", [], tmp_path,
                     ["--log", str(log), "--inspect-at", "1", "findtask", "1"])
    assert out.status == 0
    text = log.read_text()
    assert text.startswith("task comm: hello pid: 1 ppid: 0 state: R\n")
    assert "[stack]" in text and "/hello" in text


@pytest.mark.parametrize("arch", ARCHES)
def test_fork_cow_accounting(arch: str, tmp_path: Path) -> None:
    out = run_mmuemu(arch, "cow_fork", ["8"], tmp_path)
    assert out.status == 0
    assert out.stats is not None
    tasks = out.stats["tasks"]
    assert [t["pid"] for t in tasks] == [1, 2]
    assert tasks[1]["ppid"] == 1
    # The child writes the 8 shared pages: 8 COW copies. The parent, alone
    # again after wait4, writes its 8 pages: they are exclusively its own, so
    # each write fault reuses the page (wp, no copy). The stack page is shared
    # too: whichever task writes it first after the fork copies it (cow) and
    # the other then owns the original (a reuse, if it writes it at all);
    # which one does so depends on the compiler's use of the stack.
    by_type = out.stats["faults"]["by_type"]
    vm = out.stats["vmstat"]
    assert by_type["cow"] == vm["cow_copies"] == 8 + 1
    assert by_type["wp"] == vm["cow_reuses"]
    assert vm["cow_reuses"] in (8, 8 + 1)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name,args", [("cow_fork", ["16"]), ("mmap_fork", []),
                                       ("mremap_grow", ["8"]), ("munmap_hole", ["16"]),
                                       ("mprotect_split", ["8"]), ("stack_grow", ["1000"]),
                                       ("brk_heap", ["24"])])
def test_debug_vm_checks_pass_after_every_syscall(arch: str, name: str, args: list[str],
                                                  tmp_path: Path) -> None:
    """--debug-vm: validate_mm (rbtree, gaps, list, interval trees) and the
    mapcount/RSS invariants after each syscall of real programs."""
    out = run_mmuemu(arch, name, args, tmp_path, ["--debug-vm"])
    assert out.status == 0, out.stderr.decode()
    assert b"internal error" not in out.stderr
