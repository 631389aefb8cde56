"""exec of a static ELF binary (fs/binfmt_elf.c:load_elf_binary, fs/exec.c).

PT_LOAD segments become private file mappings (elf_map), the part of bss
beyond the last file page an anonymous VMA (vm_brk_flags), the zero tail of
the last file page is cleared with padzero() (a write fault, as on Linux),
and the stack gets argv, envp, the exec filename, AT_RANDOM bytes and the
auxiliary vector laid out as create_elf_tables() lays them out. The mm's
start_code/end_code/start_data/end_data/start_brk/brk/start_stack follow the
kernel's rules. Address-space randomisation is off (as under ``setarch -R``),
so runs are deterministic.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from mmuemu.kernel.fs import VmOperations
from mmuemu.kernel.mm_types import VM, VM_STACK_FLAGS, MmStruct, VmAreaStruct, VmFault, VmFaultReason
from mmuemu.kernel.mmap import (
    MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE, do_brk_flags, do_mmap,
    get_unmapped_area, vm_get_page_prot, vm_stat_account, vma_adjust, vma_link,
)
from mmuemu.kernel.sched import TaskStruct
from mmuemu.kernel.uaccess import UserFault, copy_to_user

if TYPE_CHECKING:
    from mmuemu.kernel.kernel import Kernel

PT_LOAD, PT_INTERP = 1, 3
PF_X, PF_W, PF_R = 1, 2, 4
ET_EXEC, ET_DYN = 2, 3

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ = 0, 3, 4, 5, 6
AT_BASE, AT_FLAGS, AT_ENTRY, AT_UID, AT_EUID, AT_GID, AT_EGID = 7, 8, 9, 11, 12, 13, 14
AT_PLATFORM, AT_HWCAP, AT_CLKTCK, AT_SECURE, AT_RANDOM = 15, 16, 17, 23, 25
AT_HWCAP2, AT_EXECFN, AT_MINSIGSTKSZ = 26, 31, 51

STACK_EXPAND = 128 * 1024  # setup_arg_pages(): stack_expand


class ExecError(Exception):
    """The binary cannot be executed; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class ElfArchInfo:
    """What exec needs to know about the target architecture."""

    e_machine: int
    name: str
    platform: str
    hwcap: int
    minsigstksz: int
    #: the special mappings arch_setup_additional_pages() places (name, pages),
    #: lowest first; their only effect here is on the address-space layout
    vdso_layout: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ExecResult:
    """Where the new program starts."""

    entry: int
    sp: int


def check_elf(path: str, arch: ElfArchInfo | None = None) -> tuple[int, str]:
    """Validate an executable; return (e_machine, a short description).

    Raises ExecError with a one-line reason for anything exec would refuse.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise ExecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ExecError(f"{path}: is a directory") from None
    except OSError as e:
        raise ExecError(f"{path}: {e.strerror}") from None
    if len(head) < 4 or head[:4] != b"\x7fELF":
        raise ExecError(f"{path}: not an ELF file (bad magic)")
    if len(head) < 64:
        raise ExecError(f"{path}: malformed ELF: truncated header")
    if head[4] != 2:
        raise ExecError(f"{path}: unsupported ELF class {head[4]} (only 64-bit ELF is supported)")
    if head[5] != 1:
        raise ExecError(f"{path}: unsupported ELF data encoding {head[5]} "
                        "(only little-endian is supported)")
    e_type, e_machine = struct.unpack_from("<HH", head, 16)
    if e_type not in (ET_EXEC, ET_DYN):
        raise ExecError(f"{path}: not an executable (e_type {e_type})")
    if arch is not None and e_machine != arch.e_machine:
        raise ExecError(f"{path}: ELF machine {e_machine} is not {arch.name}")
    e_phoff, = struct.unpack_from("<Q", head, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", head, 54)
    size = os.path.getsize(path)
    if e_phnum == 0:
        raise ExecError(f"{path}: no program headers (no PT_LOAD segment)")
    if e_phentsize != 56:
        raise ExecError(f"{path}: malformed ELF: e_phentsize {e_phentsize} (expected 56)")
    if e_phoff + e_phnum * e_phentsize > size:
        raise ExecError(f"{path}: truncated ELF: program headers end at offset "
                        f"{e_phoff + e_phnum * e_phentsize:#x}, file has {size:#x} bytes")
    return e_machine, "static executable"


def _load_segments(path: str) -> tuple[dict[str, int], list[dict[str, int]]]:
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            hdr = {"e_entry": elf.header.e_entry, "e_phoff": elf.header.e_phoff,
                   "e_phentsize": elf.header.e_phentsize, "e_phnum": elf.header.e_phnum,
                   "e_type": 2 if elf.header.e_type == "ET_EXEC" else 3}
            size = os.fstat(f.fileno()).st_size
            segs = []
            for seg in elf.iter_segments():
                h = seg.header
                ptype = {"PT_LOAD": PT_LOAD, "PT_INTERP": PT_INTERP}.get(h.p_type, -1)
                if ptype == PT_INTERP:
                    raise ExecError(f"{path}: dynamically linked (has PT_INTERP); "
                                    "only static executables are supported")
                if ptype != PT_LOAD:
                    continue
                if h.p_filesz and h.p_offset + h.p_filesz > size:
                    raise ExecError(f"{path}: malformed ELF: PT_LOAD at offset {h.p_offset:#x} "
                                    f"runs past the end of the file")
                if h.p_filesz > h.p_memsz:
                    raise ExecError(f"{path}: malformed ELF: p_filesz > p_memsz")
                if (h.p_vaddr - h.p_offset) % 4096:
                    raise ExecError(f"{path}: malformed ELF: PT_LOAD not page-congruent")
                segs.append({"p_vaddr": h.p_vaddr, "p_offset": h.p_offset,
                             "p_filesz": h.p_filesz, "p_memsz": h.p_memsz,
                             "p_flags": h.p_flags})
    except ExecError:
        raise
    except (ELFError, struct.error, ValueError, KeyError, AttributeError, OSError) as e:
        raise ExecError(f"{path}: malformed ELF: {e}") from None
    except Exception as e:  # pyelftools raises assorted errors on garbage
        raise ExecError(f"{path}: malformed ELF: {type(e).__name__}: {e}") from None
    if not segs:
        raise ExecError(f"{path}: no PT_LOAD segment")
    if hdr["e_type"] != ET_EXEC:
        raise ExecError(f"{path}: position-independent executables (ET_DYN) are not supported")
    return hdr, segs


def _make_prot(p_flags: int) -> int:
    prot = 0
    if p_flags & PF_R:
        prot |= PROT_READ
    if p_flags & PF_W:
        prot |= PROT_WRITE
    if p_flags & PF_X:
        prot |= PROT_EXEC
    return prot


def mmap_base(kern: "Kernel", task_size: int) -> int:
    """mmap_base(): TASK_SIZE less the stack gap (clamped to 128 MiB .. 5/6 of TASK_SIZE)."""
    gap = kern.config.stack_rlimit + (kern.config.stack_guard_gap_pages << 12)
    gap = max(gap, 128 << 20)
    gap = min(gap, task_size // 6 * 5)
    return (task_size - gap) & ~0xFFF


def load_elf_binary(kern: "Kernel", task: TaskStruct, path: str, argv: list[bytes],
                    envp: list[bytes], arch: ElfArchInfo) -> ExecResult:
    """load_elf_binary(): build ``task``'s address space for the static ELF at ``path``.

    Raises ExecError for anything the kernel would refuse (ENOEXEC, ENOENT...).
    """
    check_elf(path, arch)
    hdr, segs = _load_segments(path)
    mm = task.mm
    inode = kern.vfs.host_inode(path)
    from mmuemu.kernel.filemap import populate_page_cache
    if kern.config.page_cache == "warm":
        populate_page_cache(kern, inode.i_mapping)
    file = kern.vfs.open_file(inode, 0, os.path.basename(path))
    mm.mmap_base = mmap_base(kern, mm.task_size)

    # The stack VMA comes first (bprm_mm_init), at STACK_TOP with no randomisation.
    stack_top = mm.task_size if arch.name == "aarch64" else kern.fmt.task_size
    stack_flags = VM_STACK_FLAGS | VM.READ | VM.WRITE | VM.MAYREAD | VM.MAYWRITE | VM.MAYEXEC
    stack = VmAreaStruct(vm_mm=mm, vm_start=stack_top - 4096, vm_end=stack_top,
                         vm_flags=stack_flags, vm_page_prot=vm_get_page_prot(mm, stack_flags),
                         vm_pgoff=(stack_top - 4096) >> 12)
    vma_link(mm, stack)
    vm_stat_account(mm, stack_flags, 1)

    start_code, end_code, start_data, end_data = (1 << 64) - 1, 0, 0, 0
    elf_bss = elf_brk = 0
    for seg in segs:
        vaddr, off = seg["p_vaddr"], seg["p_offset"]
        filesz, memsz = seg["p_filesz"], seg["p_memsz"]
        prot = _make_prot(seg["p_flags"])
        pageoff = vaddr & 0xFFF
        if filesz:
            ret = do_mmap(mm, file, vaddr - pageoff, filesz + pageoff, prot,
                          MAP_PRIVATE | MAP_FIXED, (off - pageoff) >> 12)
            if ret < 0:
                raise ExecError(f"{path}: cannot map segment at {vaddr:#x} (error {-ret})")
        if memsz > filesz:
            zero_start = vaddr + filesz
            zero_end = vaddr + memsz
            if filesz and zero_start & 0xFFF:
                padzero(task, zero_start, prot)
            zs = (zero_start + 4095) & ~0xFFF if filesz else vaddr - pageoff
            ze = (zero_end + 4095) & ~0xFFF
            if ze > zs:
                flags = VM.EXEC if prot & PROT_EXEC else VM.NONE
                if do_brk_flags(mm, zs, ze - zs, flags) < 0:
                    raise ExecError(f"{path}: cannot map bss at {zs:#x}")
                if not prot & PROT_WRITE or not prot & PROT_READ:
                    from mmuemu.kernel.mmap import do_mprotect
                    do_mprotect(mm, zs, ze - zs, prot)
        k = vaddr
        if seg["p_flags"] & PF_X and k < start_code:
            start_code = k
        if start_data < k:
            start_data = k
        k = vaddr + filesz
        elf_bss = max(elf_bss, k)
        if seg["p_flags"] & PF_X and end_code < k:
            end_code = k
        end_data = max(end_data, k)
        elf_brk = max(elf_brk, vaddr + memsz)
    arch_setup_additional_pages(mm, arch)
    mm.start_code, mm.end_code = start_code, end_code
    mm.start_data, mm.end_data = start_data, end_data
    mm.start_brk = mm.brk = (elf_brk + 4095) & ~0xFFF

    first = segs[0]
    phdr_addr = first["p_vaddr"] - first["p_offset"] + hdr["e_phoff"]
    sp = _create_elf_tables(task, stack, stack_top, path, argv, envp, arch, hdr, phdr_addr)
    # setup_arg_pages(): the stack VMA gets 128 KiB below the argument pages.
    new_start = (stack.vm_start - STACK_EXPAND) & ~0xFFF
    vma_adjust(mm, stack, new_start, stack.vm_end, new_start >> 12)
    vm_stat_account(mm, stack_flags, STACK_EXPAND >> 12)
    mm.start_stack = sp
    task.set_comm(os.path.basename(path))
    return ExecResult(entry=hdr["e_entry"], sp=sp)


def arch_setup_additional_pages(mm: "MmStruct", arch: ElfArchInfo) -> None:
    """arch_setup_additional_pages(): the vvar/vdso special mappings, placed by
    get_unmapped_area() top-down below mmap_base as Linux places them.

    Their contents are not modelled and no AT_SYSINFO_EHDR is passed, so
    guests never use them; they are here because they move every later
    mmap() by their size, which changes which fault-around windows a
    mapping's pages fall in.
    """
    total = sum(pages for _, pages in arch.vdso_layout) << 12
    if not total:
        return
    base = get_unmapped_area(mm, 0, total, 0)
    if base < 0:
        return
    addr = base
    for name, pages in arch.vdso_layout:
        flags = VM.READ | VM.MAYREAD
        if name == "[vdso]":
            flags |= VM.EXEC | VM.MAYEXEC
        else:
            flags |= VM.IO | VM.PFNMAP | VM.DONTEXPAND
        vma = VmAreaStruct(vm_mm=mm, vm_start=addr, vm_end=addr + (pages << 12), vm_flags=flags,
                           vm_page_prot=vm_get_page_prot(mm, flags), vm_pgoff=0,
                           vm_ops=special_mapping_vmops, vm_private_data=name)
        vma_link(mm, vma)
        vm_stat_account(mm, flags, pages)
        addr += pages << 12


def _special_mapping_fault(vmf: "VmFault") -> int:
    """special_mapping_fault(): vDSO contents are not modelled: SIGBUS."""
    return VmFaultReason.SIGBUS


special_mapping_vmops = VmOperations(name="special_mapping_vmops", fault=_special_mapping_fault)


def padzero(task: TaskStruct, address: int, prot: int) -> None:
    """padzero(): clear the rest of the last file-backed page of a segment (clear_user).

    On a writable segment this write takes a COW fault, as on Linux; errors
    are ignored for read-only segments.
    """
    nbyte = 4096 - (address & 0xFFF)
    try:
        copy_to_user(task, address, bytes(nbyte))
    except UserFault:
        if prot & PROT_WRITE:
            raise ExecError(f"padzero at {address:#x} failed") from None


def _create_elf_tables(task: TaskStruct, stack: VmAreaStruct, stack_top: int, path: str,
                       argv: list[bytes], envp: list[bytes], arch: ElfArchInfo,
                       hdr: dict[str, int], phdr_addr: int) -> int:
    """copy_strings() + create_elf_tables(): strings at the top, then the tables."""
    mm = task.mm
    blob = bytearray()
    # Strings are copied downwards from STACK_TOP - sizeof(void *): filename
    # highest, then envp, then argv, so argv[0] ends up lowest.
    execfn = path.encode() + b"\0"
    strings_env = b"".join(e + b"\0" for e in envp)
    strings_arg = b"".join(a + b"\0" for a in argv)
    blob = bytearray(strings_arg + strings_env + execfn)
    p = stack_top - 8 - len(blob)
    arg_start = p
    env_start = p + len(strings_arg)
    execfn_addr = env_start + len(strings_env)
    # the argument pages must be inside the stack VMA before the copy
    need = p & ~0xFFF
    if need < stack.vm_start:
        vma_adjust(mm, stack, need, stack.vm_end, need >> 12)
    _copy(task, p, bytes(blob))
    mm.arg_start, mm.arg_end = arg_start, env_start
    mm.env_start, mm.env_end = env_start, execfn_addr
    p &= ~0xF
    platform = arch.platform.encode() + b"\0"
    p -= len(platform)
    platform_addr = p
    _copy(task, p, platform)
    # AT_RANDOM: 16 bytes; deterministic here (derived from the path) for reproducibility.
    rnd = hashlib.sha256(b"mmuemu-at-random:" + os.path.basename(path).encode()).digest()[:16]
    p -= 16
    random_addr = p
    _copy(task, p, rnd)
    auxv = [
        (AT_MINSIGSTKSZ, arch.minsigstksz), (AT_HWCAP, arch.hwcap), (AT_PAGESZ, 4096),
        (AT_CLKTCK, 100), (AT_PHDR, phdr_addr), (AT_PHENT, hdr["e_phentsize"]),
        (AT_PHNUM, hdr["e_phnum"]), (AT_BASE, 0), (AT_FLAGS, 0), (AT_ENTRY, hdr["e_entry"]),
        (AT_UID, 0), (AT_EUID, 0), (AT_GID, 0), (AT_EGID, 0), (AT_SECURE, 0),
        (AT_RANDOM, random_addr), (AT_HWCAP2, 0), (AT_EXECFN, execfn_addr),
        (AT_PLATFORM, platform_addr), (AT_NULL, 0),
    ]
    words: list[int] = [len(argv)]
    off = arg_start
    for a in argv:
        words.append(off)
        off += len(a) + 1
    words.append(0)
    off = env_start
    for e in envp:
        words.append(off)
        off += len(e) + 1
    words.append(0)
    for k, v in auxv:
        words += [k, v]
    sp = (p - len(words) * 8) & ~0xF
    _copy(task, sp, struct.pack(f"<{len(words)}Q", *words))
    return sp


def _copy(task: TaskStruct, addr: int, data: bytes) -> None:
    try:
        copy_to_user(task, addr, data)
    except UserFault:
        raise ExecError(f"cannot write the initial stack at {addr:#x}") from None
