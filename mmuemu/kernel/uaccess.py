"""copy_from_user / copy_to_user / strncpy_from_user (arch/*/lib/uaccess).

The kernel reaches user memory through the task's page tables, as the MMU
would: for each page it walks the tables, and when the PTE is missing or
forbids the access it takes a page fault exactly like a user access
(counted in the task's fault counters), then retries. An unresolvable fault
is -EFAULT for the syscall, not a signal. The accessed/dirty bits are set as
the hardware would set them for a kernel access.
"""
from __future__ import annotations

from mmuemu._types import Access
from mmuemu.kernel.fault import AccessType, do_user_addr_fault
from mmuemu.kernel.pgtable import pte_offset_lookup
from mmuemu.kernel.sched import TaskStruct


class UserFault(Exception):
    """A user pointer the kernel could not access (the syscall returns -EFAULT)."""


def _user_frame(task: TaskStruct, addr: int, write: bool) -> int:
    """Physical address of the byte at ``addr``, faulting the page in if needed."""
    mm = task.mm
    kern = mm.kernel
    fmt = kern.fmt
    words = kern.phys.words
    if addr < 0 or addr >= mm.task_size:
        raise UserFault(addr)
    access = Access.WRITE if write else Access.READ
    for _ in range(3):
        pte_pa = pte_offset_lookup(mm, addr)
        if pte_pa is not None:
            pte = words[pte_pa >> 3]
            if fmt.pte_present(pte) and (not write or fmt.pte_write(pte)):
                new = fmt.hw_update(pte, access)
                if new is not None:
                    if new != pte:
                        words[pte_pa >> 3] = new
                    return (fmt.pte_pfn(pte) << 12) | (addr & 0xFFF)
        out = do_user_addr_fault(task, addr, AccessType.WRITE if write else AccessType.READ,
                                 user=False)
        if out.signal:
            raise UserFault(addr)
    raise UserFault(addr)


def copy_from_user(task: TaskStruct, addr: int, n: int) -> bytes:
    """copy_from_user(): ``n`` bytes at user address ``addr``. Raises UserFault."""
    phys = task.mm.kernel.phys
    out = bytearray()
    while n > 0:
        chunk = min(n, 4096 - (addr & 0xFFF))
        pa = _user_frame(task, addr, write=False)
        out += phys.read(pa, chunk)
        addr += chunk
        n -= chunk
    return bytes(out)


def copy_to_user(task: TaskStruct, addr: int, data: bytes) -> None:
    """copy_to_user(): store ``data`` at user address ``addr``. Raises UserFault."""
    phys = task.mm.kernel.phys
    off = 0
    while off < len(data):
        chunk = min(len(data) - off, 4096 - ((addr + off) & 0xFFF))
        pa = _user_frame(task, addr + off, write=True)
        phys.write(pa, data[off:off + chunk])
        off += chunk


def strncpy_from_user(task: TaskStruct, addr: int, limit: int = 4096) -> bytes:
    """strncpy_from_user(): a NUL-terminated string (without the NUL). Raises UserFault."""
    phys = task.mm.kernel.phys
    out = bytearray()
    while len(out) < limit:
        pa = _user_frame(task, addr, write=False)
        chunk = phys.read(pa, min(4096 - (addr & 0xFFF), limit - len(out)))
        nul = chunk.find(b"\0")
        if nul >= 0:
            out += chunk[:nul]
            return bytes(out)
        out += chunk
        addr += len(chunk)
    raise UserFault(addr)
