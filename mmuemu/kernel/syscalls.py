"""System calls, by name (the mm side and the few VFS calls the guests need).

The arch layer decodes registers and maps syscall numbers to these names
(:data:`SYSCALLS`); each handler takes the :class:`SyscallContext` and the
six raw argument words and returns the value for the return register
(negative errno on failure), as the kernel's sys_* functions do.
"""
from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field
from typing import Callable, Protocol

from mmuemu.kernel.filemap import (
    generic_file_read, generic_perform_write, truncate_inode_pages, write_cache_pages,
)
from mmuemu.kernel.fs import S_IFCHR, S_IFREG
from mmuemu.kernel.kernel import Kernel
from mmuemu.kernel.madvise import do_madvise, do_msync
from mmuemu.kernel.proc import proc_file
from mmuemu.kernel.mm_types import File, Inode
from mmuemu.kernel.mmap import do_mmap, do_mprotect, do_munmap
from mmuemu.kernel.mmap import sys_brk as mm_brk
from mmuemu.kernel.sched import TaskStruct
from mmuemu.kernel.uaccess import UserFault, copy_from_user, copy_to_user, strncpy_from_user

AT_FDCWD = -100
AT_REMOVEDIR = 0x200
AT_EMPTY_PATH = 0x1000
O_ACCMODE, O_CREAT, O_EXCL, O_TRUNC, O_APPEND = 3, 0o100, 0o200, 0o1000, 0o2000
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
MAX_RW = 0x7FFFF000


@dataclass(frozen=True, slots=True)
class Kstat:
    """struct kstat: what stat() reports, before the arch packs it."""

    dev: int
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blksize: int
    blocks: int


class SyscallAbi(Protocol):
    """The arch-specific parts a syscall needs (struct layouts, uname machine)."""

    machine: str

    def pack_stat(self, st: Kstat) -> bytes:
        """The arch's struct stat bytes."""
        ...


class EmuOps(Protocol):
    """What process syscalls need from the emulator (the CPU side of a task)."""

    def fork_context(self, child: TaskStruct) -> None:
        """Give ``child`` a copy of the current CPU state, returning 0 from the syscall."""
        ...


class SyscallRestart(Exception):
    """The task must sleep; the emulator re-runs the syscall when it is woken."""


class TaskKilled(Exception):
    """The calling task was killed by a signal (kill(getpid(), SIGKILL))."""

    def __init__(self, signal: int) -> None:
        super().__init__(signal)
        self.signal = signal


class TaskExit(Exception):
    """exit/exit_group: the task is done (the emu layer stops running it)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class StrictSyscallError(Exception):
    """--strict and the guest made a syscall the model does not implement."""


@dataclass(slots=True)
class SyscallContext:
    """What a syscall handler may use: the kernel, the calling task, the arch ABI."""

    kern: Kernel
    task: TaskStruct
    abi: SyscallAbi
    #: virtual nanoseconds since boot (derived from instructions: deterministic)
    now_ns: Callable[[], int]
    warn: Callable[[str], None]
    strict: bool = False
    warned: set[str] = field(default_factory=set)
    #: the emulator's process hooks; None in kernel-only tests (fork is then -ENOSYS)
    emu: EmuOps | None = None


def _fd(ctx: SyscallContext, fd: int) -> File | None:
    return ctx.task.files.get(fd)


def _sign(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def sys_read(ctx: SyscallContext, fd: int, buf: int, count: int, *_: int) -> int:
    """read(2): through the page cache for files, the host stream for 0/1/2."""
    f = _fd(ctx, fd)
    if f is None:
        return -errno.EBADF
    if (f.f_flags & O_ACCMODE) == 1:
        return -errno.EBADF
    count = min(count, MAX_RW)
    if f.proc_data is not None:
        data = f.proc_data[f.f_pos:f.f_pos + count]
    elif f.host_fd >= 0:
        data = os.read(f.host_fd, count) if count else b""
    elif f.f_inode is ctx.kern.vfs.dev_zero:
        data = bytes(count)
    elif f.f_inode is ctx.kern.vfs.dev_null:
        data = b""
    else:
        data = generic_file_read(ctx.kern, f, f.f_pos, count)
    try:
        copy_to_user(ctx.task, buf, data)
    except UserFault:
        return -errno.EFAULT
    if f.host_fd < 0:
        f.f_pos += len(data)
    return len(data)


def sys_write(ctx: SyscallContext, fd: int, buf: int, count: int, *_: int) -> int:
    """write(2)."""
    f = _fd(ctx, fd)
    if f is None or (f.f_flags & O_ACCMODE) == 0:
        return -errno.EBADF
    count = min(count, MAX_RW)
    try:
        data = copy_from_user(ctx.task, buf, count)
    except UserFault:
        return -errno.EFAULT
    if f.host_fd >= 0:
        os.write(f.host_fd, data)
        return count
    if f.path == "/proc/mtest":
        ret = ctx.kern.mtest.command(ctx.task, data.decode(errors="replace"))
        return ret if ret < 0 else count
    if f.f_inode.i_mode & S_IFCHR == S_IFCHR:
        return count  # /dev/null, /dev/zero swallow writes
    if f.f_flags & O_APPEND:
        f.f_pos = f.f_inode.i_size
    n = generic_perform_write(ctx.kern, f, f.f_pos, data)
    f.f_pos += n
    return n


def sys_pread64(ctx: SyscallContext, fd: int, buf: int, count: int, pos: int, *_: int) -> int:
    """pread64(2)."""
    f = _fd(ctx, fd)
    if f is None or f.host_fd >= 0:
        return -errno.EBADF if f is None else -errno.ESPIPE
    saved = f.f_pos
    f.f_pos = _sign(pos)
    ret = sys_read(ctx, fd, buf, count)
    f.f_pos = saved
    return ret


def sys_pwrite64(ctx: SyscallContext, fd: int, buf: int, count: int, pos: int, *_: int) -> int:
    """pwrite64(2)."""
    f = _fd(ctx, fd)
    if f is None or f.host_fd >= 0:
        return -errno.EBADF if f is None else -errno.ESPIPE
    saved, flags = f.f_pos, f.f_flags
    f.f_pos = _sign(pos)
    f.f_flags &= ~O_APPEND
    ret = sys_write(ctx, fd, buf, count)
    f.f_pos, f.f_flags = saved, flags
    return ret


def _alloc_fd(task: TaskStruct, f: File) -> int:
    fd = 0
    while fd in task.files and task.files[fd] is not None:
        fd += 1
    task.files[fd] = f
    return fd


def sys_openat(ctx: SyscallContext, dirfd: int, path_ptr: int, flags: int, mode: int,
               *_: int) -> int:
    """openat(2): resolve inside the sandbox root; regular files and /dev/{zero,null}."""
    dirfd &= 0xFFFFFFFF
    if dirfd >= 1 << 31:
        dirfd -= 1 << 32
    try:
        path = strncpy_from_user(ctx.task, path_ptr).decode(errors="surrogateescape")
    except UserFault:
        return -errno.EFAULT
    if not path.startswith("/") and dirfd != AT_FDCWD:
        return -errno.ENOTDIR if _fd(ctx, dirfd) is not None else -errno.EBADF
    vfs = ctx.kern.vfs
    guest_abs = os.path.normpath(os.path.join(ctx.task.cwd, path))
    if guest_abs == "/proc" or guest_abs.startswith("/proc/"):
        return _open_proc(ctx, guest_abs, flags)
    err, host = vfs.resolve(ctx.task.cwd, path)
    if err:
        return err
    if host == "/dev/zero":
        return _alloc_fd(ctx.task, vfs.open_file(vfs.dev_zero, flags, path))
    if host == "/dev/null":
        return _alloc_fd(ctx.task, vfs.open_file(vfs.dev_null, flags, path))
    exists = os.path.lexists(host)
    if flags & O_CREAT and flags & O_EXCL and exists:
        return -errno.EEXIST
    if not exists:
        if not flags & O_CREAT:
            return -errno.ENOENT
        try:
            fd = os.open(host, os.O_CREAT | os.O_WRONLY, (mode & 0o7777) & ~0o022)
            os.close(fd)
        except OSError as e:
            return -(e.errno or errno.EIO)
    if os.path.isdir(host):
        if flags & O_ACCMODE:
            return -errno.EISDIR
        return -errno.EISDIR  # directories cannot be read here (no getdents)
    if (flags & O_ACCMODE) and not os.access(host, os.W_OK):
        return -errno.EACCES
    inode = vfs.host_inode(host)
    if flags & O_TRUNC and flags & O_ACCMODE:
        _truncate(ctx.kern, inode, 0)
    return _alloc_fd(ctx.task, vfs.open_file(inode, flags, path))


def _open_proc(ctx: SyscallContext, path: str, flags: int) -> int:
    """procfs: /proc/self|PID/maps|smaps (read), /proc/mtest (write: the inspector)."""
    vfs = ctx.kern.vfs
    if path == "/proc/mtest":
        if (flags & O_ACCMODE) == 0:
            return -errno.EACCES
        inode = vfs._new_inode(S_IFREG | 0o200, 0, None, vfs.simple_aops)
        return _alloc_fd(ctx.task, vfs.open_file(inode, flags, path))
    data = proc_file(ctx.kern, ctx.task, path)
    if data is None:
        return -errno.ENOENT
    if flags & O_ACCMODE:
        return -errno.EACCES
    inode = vfs._new_inode(S_IFREG | 0o444, 0, None, vfs.simple_aops)
    f = vfs.open_file(inode, flags, path)
    f.proc_data = data
    return _alloc_fd(ctx.task, f)


def _truncate(kern: Kernel, inode: Inode, length: int) -> None:
    truncate_inode_pages(kern, inode.i_mapping, length)
    inode.i_size = length
    if inode.host_path is not None:
        os.truncate(inode.host_path, length)


def sys_close(ctx: SyscallContext, fd: int, *_: int) -> int:
    """close(2)."""
    f = ctx.task.files.pop(fd, None)
    if f is None:
        return -errno.EBADF
    f.f_count -= 1
    return 0


def sys_lseek(ctx: SyscallContext, fd: int, offset: int, whence: int, *_: int) -> int:
    """lseek(2)."""
    f = _fd(ctx, fd)
    if f is None:
        return -errno.EBADF
    if f.host_fd >= 0:
        return -errno.ESPIPE
    off = _sign(offset)
    base = {SEEK_SET: 0, SEEK_CUR: f.f_pos, SEEK_END: f.f_inode.i_size}.get(whence)
    if base is None or base + off < 0:
        return -errno.EINVAL
    f.f_pos = base + off
    return f.f_pos


def _kstat(inode: Inode) -> Kstat:
    return Kstat(dev=0x803 if inode.host_path else 5, ino=inode.i_ino, mode=inode.i_mode,
                 nlink=inode.i_nlink, uid=0, gid=0, rdev=inode.i_rdev, size=inode.i_size,
                 blksize=4096, blocks=((inode.i_size + 4095) >> 12) * 8)


def sys_fstat(ctx: SyscallContext, fd: int, statbuf: int, *_: int) -> int:
    """fstat(2)."""
    f = _fd(ctx, fd)
    if f is None:
        return -errno.EBADF
    try:
        copy_to_user(ctx.task, statbuf, ctx.abi.pack_stat(_kstat(f.f_inode)))
    except UserFault:
        return -errno.EFAULT
    return 0


def sys_newfstatat(ctx: SyscallContext, dirfd: int, path_ptr: int, statbuf: int, flags: int,
                   *_: int) -> int:
    """newfstatat(2) (fstatat on arm64)."""
    try:
        path = strncpy_from_user(ctx.task, path_ptr).decode(errors="surrogateescape")
    except UserFault:
        return -errno.EFAULT
    if not path and flags & AT_EMPTY_PATH:
        return sys_fstat(ctx, dirfd, statbuf)
    vfs = ctx.kern.vfs
    err, host = vfs.resolve(ctx.task.cwd, path)
    if err:
        return err
    if host in ("/dev/zero", "/dev/null"):
        inode = vfs.dev_zero if host == "/dev/zero" else vfs.dev_null
    elif not os.path.exists(host):
        return -errno.ENOENT
    elif os.path.isdir(host):
        st = Kstat(dev=0x803, ino=1, mode=0o40755, nlink=2, uid=0, gid=0, rdev=0,
                   size=4096, blksize=4096, blocks=8)
        try:
            copy_to_user(ctx.task, statbuf, ctx.abi.pack_stat(st))
        except UserFault:
            return -errno.EFAULT
        return 0
    else:
        inode = vfs.host_inode(host)
    try:
        copy_to_user(ctx.task, statbuf, ctx.abi.pack_stat(_kstat(inode)))
    except UserFault:
        return -errno.EFAULT
    return 0


def sys_mmap(ctx: SyscallContext, addr: int, length: int, prot: int, flags: int, fd: int,
             off: int) -> int:
    """mmap(2) → ksys_mmap_pgoff() → do_mmap()."""
    from mmuemu.kernel.mmap import MAP_ANONYMOUS
    if off & 0xFFF:
        return -errno.EINVAL
    file = None
    if not flags & MAP_ANONYMOUS:
        fd32 = fd & 0xFFFFFFFF
        file = _fd(ctx, fd32)
        if file is None:
            return -errno.EBADF
        if file.host_fd >= 0:
            return -errno.ENODEV
    return do_mmap(ctx.task.mm, file, addr, length, prot, flags, off >> 12)


def sys_munmap(ctx: SyscallContext, addr: int, length: int, *_: int) -> int:
    """munmap(2)."""
    return do_munmap(ctx.task.mm, addr, length)


def sys_mprotect(ctx: SyscallContext, addr: int, length: int, prot: int, *_: int) -> int:
    """mprotect(2)."""
    return do_mprotect(ctx.task.mm, addr, length, prot)


def sys_brk(ctx: SyscallContext, brk: int, *_: int) -> int:
    """brk(2)."""
    return mm_brk(ctx.task.mm, brk)


def sys_exit(ctx: SyscallContext, code: int, *_: int) -> int:
    """exit(2) / exit_group(2): the task ends with status ``code & 0xff``."""
    raise TaskExit(code & 0xFF)


def sys_getpid(ctx: SyscallContext, *_: int) -> int:
    """getpid(2)."""
    return ctx.task.pid


def sys_getppid(ctx: SyscallContext, *_: int) -> int:
    """getppid(2)."""
    return ctx.task.ppid


def sys_uname(ctx: SyscallContext, buf: int, *_: int) -> int:
    """uname(2): a deterministic struct new_utsname."""
    fields = [b"Linux", b"mmuemu", b"6.1.0-mmuemu", b"#1 SMP mmuemu",
              ctx.abi.machine.encode(), b"(none)"]
    data = b"".join(f.ljust(65, b"\0") for f in fields)
    try:
        copy_to_user(ctx.task, buf, data)
    except UserFault:
        return -errno.EFAULT
    return 0


def sys_clock_gettime(ctx: SyscallContext, clk: int, tp: int, *_: int) -> int:
    """clock_gettime(2): virtual time derived from the instruction count."""
    ns = ctx.now_ns()
    if clk == 0:  # CLOCK_REALTIME: a fixed epoch so runs are reproducible
        ns += 1_700_000_000 * 10**9
    try:
        copy_to_user(ctx.task, tp, struct.pack("<qq", ns // 10**9, ns % 10**9))
    except UserFault:
        return -errno.EFAULT
    return 0


def sys_getrusage(ctx: SyscallContext, who: int, ru: int, *_: int) -> int:
    """getrusage(2): ru_minflt / ru_majflt are the model's own per-task counts."""
    who &= 0xFFFFFFFF
    if who >= 1 << 31:
        who -= 1 << 32
    if who not in (0, -1, 1):
        return -errno.EINVAL
    task = ctx.task
    if who == -1:
        minflt, majflt = task.children_min_flt, task.children_maj_flt
        maxrss = utime = 0
    else:
        minflt, majflt = task.counts.min_flt, task.counts.maj_flt
        maxrss = task.mm.hiwater_rss * 4
        utime = ctx.now_ns() // 1000
    longs = [maxrss, 0, 0, 0, minflt, majflt, 0, 0, 0, 0, 0, 0, 0, 0]
    data = struct.pack("<qqqq", utime // 10**6, utime % 10**6, 0, 0) + struct.pack("<14q", *longs)
    try:
        copy_to_user(ctx.task, ru, data)
    except UserFault:
        return -errno.EFAULT
    return 0


def sys_fsync(ctx: SyscallContext, fd: int, *_: int) -> int:
    """fsync(2): write the file's dirty pages back."""
    f = _fd(ctx, fd)
    if f is None:
        return -errno.EBADF
    if f.f_inode.host_path is not None:
        writeback_inode(ctx.kern, f.f_inode)
    return 0


def writeback_inode(kern: Kernel, inode: Inode) -> int:
    """filemap_write_and_wait(): dirty pages to the host file, size to i_size."""
    if inode.host_path is None or inode.i_nlink == 0:
        return 0
    n = write_cache_pages(kern, inode.i_mapping)
    try:
        if os.path.getsize(inode.host_path) != inode.i_size:
            os.truncate(inode.host_path, inode.i_size)
    except OSError:
        pass
    return n


def sys_ftruncate(ctx: SyscallContext, fd: int, length: int, *_: int) -> int:
    """ftruncate(2)."""
    f = _fd(ctx, fd)
    if f is None:
        return -errno.EBADF
    if f.f_inode.i_mode & S_IFREG != S_IFREG or not f.f_flags & O_ACCMODE:
        return -errno.EINVAL
    _truncate(ctx.kern, f.f_inode, _sign(length))
    return 0


def sys_unlinkat(ctx: SyscallContext, dirfd: int, path_ptr: int, flags: int, *_: int) -> int:
    """unlinkat(2): remove a file inside the sandbox."""
    try:
        path = strncpy_from_user(ctx.task, path_ptr).decode(errors="surrogateescape")
    except UserFault:
        return -errno.EFAULT
    vfs = ctx.kern.vfs
    err, host = vfs.resolve(ctx.task.cwd, path)
    if err:
        return err
    if host in ("/dev/zero", "/dev/null") or host == vfs.root:
        return -errno.EACCES
    try:
        if flags & AT_REMOVEDIR:
            os.rmdir(host)
        else:
            real = os.path.realpath(host)
            inode = vfs._inodes.get(real)
            os.unlink(host)
            if inode is not None:
                inode.i_nlink = 0
                vfs.forget(real)
    except OSError as e:
        return -(e.errno or errno.EIO)
    return 0


def sys_madvise(ctx: SyscallContext, addr: int, length: int, advice: int, *_: int) -> int:
    """madvise(2)."""
    return do_madvise(ctx.task.mm, addr, length, advice & 0xFFFFFFFF)


def sys_mremap(ctx: SyscallContext, addr: int, old_len: int, new_len: int, flags: int,
               new_addr: int, *_: int) -> int:
    """mremap(2)."""
    from mmuemu.kernel.mremap import do_mremap
    return do_mremap(ctx.task.mm, addr, old_len, new_len, flags & 0xFFFFFFFF, new_addr)


def sys_msync(ctx: SyscallContext, addr: int, length: int, flags: int, *_: int) -> int:
    """msync(2)."""
    return do_msync(ctx.task.mm, addr, length, flags & 0xFFFFFFFF)


CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_VFORK, CLONE_PARENT, CLONE_THREAD = 0x4000, 0x8000, 0x10000
SIGCHLD = 17
WNOHANG = 1
#: signals whose default action terminates the process (there are no handlers)
_FATAL_SIGNALS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27})


def kernel_clone(ctx: SyscallContext, flags: int, newsp: int = 0) -> int:
    """kernel_clone() for fork(), vfork() and clone(SIGCHLD): a new process.

    Threads (CLONE_VM, CLONE_THREAD, ...) are not modelled: -EINVAL. vfork is
    a plain fork here (the parent does not wait for exec).
    """
    if flags & (CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | CLONE_FILES | CLONE_FS):
        if not (flags & CLONE_VFORK and flags & CLONE_VM and not flags & CLONE_THREAD):
            return -errno.EINVAL
    if ctx.emu is None:
        return -errno.ENOSYS
    from mmuemu.kernel.fork import copy_process
    from mmuemu.kernel.page_alloc import OutOfMemory
    kern = ctx.kern
    pid = kern.alloc_pid()
    try:
        child = copy_process(ctx.task, pid)
    except OutOfMemory:
        return -errno.ENOMEM
    kern.tasks[pid] = child
    child.context_sp = newsp
    ctx.emu.fork_context(child)
    if kern.trace is not None:
        kern.trace.mm_op(ctx.task, "fork", 0, 0, 0, flags, pid)
    return pid


def sys_fork(ctx: SyscallContext, *_: int) -> int:
    """fork(2)."""
    return kernel_clone(ctx, SIGCHLD)


def sys_clone(ctx: SyscallContext, flags: int, newsp: int, *_: int) -> int:
    """clone(2): only the fork-like forms (clone(SIGCHLD, 0) as libc's fork uses)."""
    flags &= 0xFFFFFFFF
    if flags & CLONE_VFORK and flags & CLONE_VM:
        flags &= ~(CLONE_VM | CLONE_VFORK)  # posix_spawn's vfork: run it as a fork
    return kernel_clone(ctx, flags, newsp)


def sys_wait4(ctx: SyscallContext, pid: int, status: int, options: int, ru: int,
              *_: int) -> int:
    """wait4(2): reap a zombie child, sleep until one exits, or -ECHILD."""
    from mmuemu.kernel.exit import release_task
    from mmuemu.kernel.sched import TaskState
    pid &= 0xFFFFFFFF
    if pid >= 1 << 31:
        pid -= 1 << 32
    task = ctx.task
    candidates = [c for c in task.children if pid <= 0 or c.pid == pid]
    if not candidates:
        return -errno.ECHILD
    zombie = next((c for c in candidates if c.state is TaskState.ZOMBIE), None)
    if zombie is None:
        if options & WNOHANG:
            return 0
        task.state = TaskState.SLEEPING
        task.wait_chan = "wait4"
        raise SyscallRestart()
    try:
        if status:
            copy_to_user(task, status, struct.pack("<i", zombie.wait_status()))
        if ru:
            longs = [0, 0, 0, 0, zombie.counts.min_flt, zombie.counts.maj_flt] + [0] * 8
            copy_to_user(task, ru, struct.pack("<qqqq", 0, 0, 0, 0) + struct.pack("<14q", *longs))
    except UserFault:
        return -errno.EFAULT
    task.children_min_flt += zombie.counts.min_flt + zombie.children_min_flt
    task.children_maj_flt += zombie.counts.maj_flt + zombie.children_maj_flt
    release_task(zombie)
    return zombie.pid


def sys_kill(ctx: SyscallContext, pid: int, sig: int, *_: int) -> int:
    """kill(2): the default action of a fatal signal ends the target process."""
    from mmuemu.kernel.exit import do_exit
    from mmuemu.kernel.sched import TaskState
    pid &= 0xFFFFFFFF
    if pid >= 1 << 31:
        pid -= 1 << 32
    sig &= 0xFFFFFFFF
    if sig > 64:
        return -errno.EINVAL
    if pid <= 0:
        return -errno.EINVAL  # process groups are not modelled
    target = ctx.kern.tasks.get(pid)
    if target is None or target.state in (TaskState.ZOMBIE, TaskState.DEAD):
        return -errno.ESRCH
    if sig == 0 or sig not in _FATAL_SIGNALS:
        return 0  # existence check, or a signal whose default action is to ignore
    if target is ctx.task:
        raise TaskKilled(sig)
    do_exit(target, 0, sig)
    return 0


def sys_set_tid_address(ctx: SyscallContext, *_: int) -> int:
    """set_tid_address(2): returns the tid."""
    return ctx.task.pid


SyscallHandler = Callable[..., int]

#: every syscall the model implements, by its Linux name
SYSCALLS: dict[str, SyscallHandler] = {
    "read": sys_read, "write": sys_write, "openat": sys_openat, "close": sys_close,
    "lseek": sys_lseek, "fstat": sys_fstat, "newfstatat": sys_newfstatat,
    "mmap": sys_mmap, "munmap": sys_munmap, "mprotect": sys_mprotect, "brk": sys_brk,
    "exit": sys_exit, "exit_group": sys_exit, "getpid": sys_getpid, "getppid": sys_getppid,
    "uname": sys_uname, "clock_gettime": sys_clock_gettime, "getrusage": sys_getrusage,
    "pread64": sys_pread64, "pwrite64": sys_pwrite64, "fsync": sys_fsync,
    "fdatasync": sys_fsync, "ftruncate": sys_ftruncate, "unlinkat": sys_unlinkat,
    "madvise": sys_madvise, "msync": sys_msync, "mremap": sys_mremap,
    "fork": sys_fork, "vfork": sys_fork, "clone": sys_clone, "wait4": sys_wait4,
    "kill": sys_kill, "set_tid_address": sys_set_tid_address,
}


def dispatch(ctx: SyscallContext, name: str | None, nr: int, args: tuple[int, ...]) -> int:
    """Run syscall ``name`` (None: the arch has no name for ``nr``).

    Unknown or unimplemented calls return -ENOSYS with a one-time warning,
    or raise StrictSyscallError under --strict.
    """
    handler = SYSCALLS.get(name) if name is not None else None
    if handler is None:
        label = f"{name} ({nr})" if name else f"#{nr}"
        if ctx.strict:
            raise StrictSyscallError(f"unsupported syscall {label}")
        if label not in ctx.warned:
            ctx.warned.add(label)
            ctx.warn(f"unsupported syscall {label}: returning -ENOSYS")
        return -errno.ENOSYS
    ret = handler(ctx, *args)
    trace = ctx.kern.trace
    if trace is not None and name in _MM_OPS:
        a = args
        if name == "mmap":
            trace.mm_op(ctx.task, name, ret if ret >= 0 else a[0], a[1], a[2], a[3], ret)
        elif name == "brk":
            trace.mm_op(ctx.task, name, a[0], 0, 0, 0, ret)
        else:
            trace.mm_op(ctx.task, name, a[0], a[1], a[2] if name == "mprotect" else 0, 0, ret)
    return ret


_MM_OPS = frozenset({"mmap", "munmap", "mprotect", "brk", "mremap", "madvise", "msync"})
