"""System calls, by name (the mm side and the few VFS calls the guests need).

The arch layer decodes registers and maps syscall numbers to these names
(:data:`SYSCALLS`); each handler takes the :class:`SyscallContext` and the
six raw argument words and returns the value for the return register
(negative errno on failure), as the kernel's sys_* functions do.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from mmuemu.kernel.filemap import (
    generic_file_read, generic_perform_write, truncate_inode_pages, write_cache_pages,
)
from mmuemu.kernel.fs import S_IFCHR, S_IFREG
from mmuemu.kernel.kernel import Kernel
from mmuemu.kernel.madvise import do_madvise, do_msync
from mmuemu.kernel.proc import proc_file, vma_name
from mmuemu.kernel.mm_types import File, Inode, get_mm_hiwater_rss
from mmuemu.kernel.mmap import do_mmap, do_mprotect, do_munmap, find_vma
from mmuemu.kernel.mmap import sys_brk as mm_brk
from mmuemu.kernel.sched import TaskStruct
from mmuemu.kernel.uaccess import UserFault, copy_from_user, copy_to_user, strncpy_from_user

AT_FDCWD = -100
AT_REMOVEDIR = 0x200
AT_EMPTY_PATH = 0x1000
O_ACCMODE, O_CREAT, O_EXCL, O_TRUNC, O_APPEND = 3, 0o100, 0o200, 0o1000, 0o2000
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
MAX_RW = 0x7FFFF000
UIO_MAXIOV = 1024
#: st_dev of pipefs (an anonymous superblock) for the stdio pipes
PIPEFS_DEV = 0xC


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


SyscallHandler = Callable[..., int]


class SyscallAbi(Protocol):
    """The arch-specific parts a syscall needs (struct layouts, uname machine)."""

    @property
    def machine(self) -> str:
        """uname's machine field."""
        ...

    @property
    def arch_syscalls(self) -> Mapping[str, SyscallHandler]:
        """Syscalls only this architecture has (x86-64 arch_prctl), by name."""
        ...

    @property
    def clone_backwards(self) -> bool:
        """CONFIG_CLONE_BACKWARDS: clone(flags, newsp, ptid, tls, ctid), not (..., ctid, tls)."""
        ...

    def pack_stat(self, st: Kstat) -> bytes:
        """The arch's struct stat bytes."""
        ...


class EmuOps(Protocol):
    """What process syscalls need from the emulator (the CPU side of a task)."""

    def fork_context(self, child: TaskStruct) -> None:
        """Give ``child`` a copy of the current CPU state, returning 0 from the syscall."""
        ...

    def user_reg(self, name: str, value: int | None = None) -> int:
        """The running task's register ``name`` (the arch's register table), after
        setting it to ``value`` if one is given: the thread-pointer registers
        that arch_prctl() manages."""
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
class SignalStruct:
    """Per-process state of the syscalls below that task_struct does not carry:
    signal_struct's resource limits (those changed from INIT_RLIMITS) and the
    blocked and pending signal masks (bit ``sig - 1``)."""

    rlim: dict[int, tuple[int, int]] = field(default_factory=dict)
    blocked: int = 0
    pending: int = 0


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
    #: bytes of the deterministic getrandom() stream handed out so far
    random_pos: int = 0
    #: rlimits and signal masks, by pid (created on first use)
    signals: dict[int, SignalStruct] = field(default_factory=dict)

    def signal(self, task: TaskStruct) -> SignalStruct:
        """``task``'s SignalStruct."""
        sig = self.signals.get(task.pid)
        if sig is None:
            sig = self.signals[task.pid] = SignalStruct()
        return sig


def _fd(ctx: SyscallContext, fd: int) -> File | None:
    return ctx.task.files.get(fd)


def _sign(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _read_data(ctx: SyscallContext, f: File, count: int) -> bytes:
    """vfs_read() without the copy: up to ``count`` bytes at the file position."""
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
    return data


def _readable(ctx: SyscallContext, fd: int) -> File | None:
    f = _fd(ctx, fd)
    return None if f is None or (f.f_flags & O_ACCMODE) == 1 else f


def _writable(ctx: SyscallContext, fd: int) -> File | None:
    f = _fd(ctx, fd)
    return None if f is None or (f.f_flags & O_ACCMODE) == 0 else f


def sys_read(ctx: SyscallContext, fd: int, buf: int, count: int, *_: int) -> int:
    """read(2): through the page cache for files, the host stream for 0/1/2."""
    f = _readable(ctx, fd)
    if f is None:
        return -errno.EBADF
    data = _read_data(ctx, f, min(count, MAX_RW))
    try:
        copy_to_user(ctx.task, buf, data)
    except UserFault:
        return -errno.EFAULT
    if f.host_fd < 0:
        f.f_pos += len(data)
    return len(data)


def _write_data(ctx: SyscallContext, f: File, data: bytes) -> int:
    """vfs_write() after the copy from user space: bytes written, or -errno."""
    if f.host_fd >= 0:
        os.write(f.host_fd, data)
        return len(data)
    if f.path == "/proc/mtest":
        ret = ctx.kern.mtest.command(ctx.task, data.decode(errors="replace"))
        return ret if ret < 0 else len(data)
    if f.f_inode.i_mode & S_IFCHR == S_IFCHR:
        return len(data)  # /dev/null, /dev/zero swallow writes
    if f.f_flags & O_APPEND:
        f.f_pos = f.f_inode.i_size
    n = generic_perform_write(ctx.kern, f, f.f_pos, data)
    f.f_pos += n
    return n


def sys_write(ctx: SyscallContext, fd: int, buf: int, count: int, *_: int) -> int:
    """write(2)."""
    f = _writable(ctx, fd)
    if f is None:
        return -errno.EBADF
    try:
        data = copy_from_user(ctx.task, buf, min(count, MAX_RW))
    except UserFault:
        return -errno.EFAULT
    return _write_data(ctx, f, data)


def _import_iovec(ctx: SyscallContext, iov: int, iovcnt: int) -> list[tuple[int, int]] | int:
    """import_iovec(): the (base, len) pairs of a struct iovec array, the total
    clamped to MAX_RW as rw_verify_area() does; or -errno."""
    if iovcnt > UIO_MAXIOV:
        return -errno.EINVAL
    if iovcnt == 0:
        return []
    try:
        raw = copy_from_user(ctx.task, iov, 16 * iovcnt)
    except UserFault:
        return -errno.EFAULT
    segs: list[tuple[int, int]] = []
    room = MAX_RW
    for base, length in struct.iter_unpack("<QQ", raw):
        if length >= 1 << 63:  # a negative ssize_t
            return -errno.EINVAL
        length = min(length, room)
        room -= length
        segs.append((base, length))
    return segs


def sys_readv(ctx: SyscallContext, fd: int, iov: int, iovcnt: int, *_: int) -> int:
    """readv(2): one read of the total length, scattered over the buffers. A
    buffer that faults ends the copy there: the bytes before it count, or
    -EFAULT if there are none (the kernel's copy_to_iter short copy)."""
    f = _readable(ctx, fd)
    if f is None:
        return -errno.EBADF
    segs = _import_iovec(ctx, iov, iovcnt & 0xFFFFFFFF)
    if isinstance(segs, int):
        return segs
    data = _read_data(ctx, f, sum(n for _, n in segs))
    done = 0
    for base, length in segs:
        chunk = data[done:done + length]
        if not chunk:
            break
        try:
            copy_to_user(ctx.task, base, chunk)
        except UserFault:
            if done == 0:
                return -errno.EFAULT
            break
        done += len(chunk)
    if f.host_fd < 0:
        f.f_pos += done
    return done


def sys_writev(ctx: SyscallContext, fd: int, iov: int, iovcnt: int, *_: int) -> int:
    """writev(2): the buffers gathered into one write (glibc's __libc_message,
    assert and abort messages use it). A buffer that faults ends the gather
    there: what came before is written, or -EFAULT if nothing did."""
    f = _writable(ctx, fd)
    if f is None:
        return -errno.EBADF
    segs = _import_iovec(ctx, iov, iovcnt & 0xFFFFFFFF)
    if isinstance(segs, int):
        return segs
    data = bytearray()
    for base, length in segs:
        try:
            data += copy_from_user(ctx.task, base, length)
        except UserFault:
            if not data:
                return -errno.EFAULT
            break
    return _write_data(ctx, f, bytes(data)) if data else 0


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


def _stdio_kstat(fd: int) -> Kstat:
    """What fstat() says about a host stream (the guest's 0/1/2): a pipe, always.

    mmuemu carries the guest's stdio to its own, so to the guest they are
    pipes whatever the host's fds are (terminal, file or pipe). This keeps a
    run identical wherever its output goes: glibc sees a FIFO, makes stdout
    fully buffered with st_blksize bytes and never asks isatty(), exactly as
    in a native run with piped output.
    """
    return Kstat(dev=PIPEFS_DEV, ino=fd + 1, mode=stat.S_IFIFO | 0o600, nlink=1, uid=0, gid=0,
                 rdev=0, size=0, blksize=4096, blocks=0)


def sys_fstat(ctx: SyscallContext, fd: int, statbuf: int, *_: int) -> int:
    """fstat(2)."""
    f = _fd(ctx, fd)
    if f is None:
        return -errno.EBADF
    st = _stdio_kstat(f.host_fd) if f.host_fd >= 0 else _kstat(f.f_inode)
    try:
        copy_to_user(ctx.task, statbuf, ctx.abi.pack_stat(st))
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
        maxrss = get_mm_hiwater_rss(task.mm) * 4  # setmax_mm_hiwater_rss()
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
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID = 0x100000, 0x200000, 0x1000000
SIGCHLD = 17
WNOHANG = 1
#: signals whose default action terminates the process (there are no handlers)
_FATAL_SIGNALS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27})


def kernel_clone(ctx: SyscallContext, flags: int, newsp: int = 0, parent_tid: int = 0,
                 child_tid: int = 0) -> int:
    """kernel_clone() for fork(), vfork() and clone(SIGCHLD): a new process.

    Threads (CLONE_VM, CLONE_THREAD, ...) are not modelled: -EINVAL. vfork is
    a plain fork here (the parent does not wait for exec).
    CLONE_PARENT_SETTID stores the new pid at ``parent_tid`` in the parent,
    CLONE_CHILD_SETTID at ``child_tid`` in the child (glibc's fork() points
    it at the child's own struct pthread tid); a fault there is ignored, as
    by schedule_tail(). CLONE_CHILD_CLEARTID needs nothing: the kernel only
    acts on it when a thread exits while its mm lives on.
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
    parent = ctx.signal(ctx.task)  # copy_signal(): limits and the blocked mask are inherited
    ctx.signals[pid] = SignalStruct(rlim=dict(parent.rlim), blocked=parent.blocked)
    tid = struct.pack("<i", pid)
    for flag, task, addr in ((CLONE_PARENT_SETTID, ctx.task, parent_tid),
                             (CLONE_CHILD_SETTID, child, child_tid)):
        if flags & flag:
            try:
                copy_to_user(task, addr, tid)
            except UserFault:
                pass
    if kern.trace is not None:
        kern.trace.mm_op(ctx.task, "fork", 0, 0, 0, flags, pid)
    return pid


def sys_fork(ctx: SyscallContext, *_: int) -> int:
    """fork(2)."""
    return kernel_clone(ctx, SIGCHLD)


def sys_clone(ctx: SyscallContext, flags: int, newsp: int, parent_tid: int, arg3: int,
              arg4: int, *_: int) -> int:
    """clone(2): only the fork-like forms (clone(SIGCHLD, 0) as libc's fork uses).

    The child-tid pointer is the fourth argument, or the fifth where the
    architecture has CONFIG_CLONE_BACKWARDS (tls before it: arm64).
    """
    flags &= 0xFFFFFFFF
    if flags & CLONE_VFORK and flags & CLONE_VM:
        flags &= ~(CLONE_VM | CLONE_VFORK)  # posix_spawn's vfork: run it as a fork
    child_tid = arg4 if ctx.abi.clone_backwards else arg3
    return kernel_clone(ctx, flags, newsp, parent_tid, child_tid)


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
    return send_signal(ctx, target, sig)


SIGKILL, SIGSTOP = 9, 19
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
_UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))


def send_signal(ctx: SyscallContext, target: TaskStruct, sig: int) -> int:
    """The default action of ``sig`` on ``target`` (handlers are not modelled):
    a fatal signal ends the process, or, while ``target`` blocks it, stays
    pending until rt_sigprocmask() unblocks it. Others are ignored."""
    from mmuemu.kernel.exit import do_exit
    if sig == 0 or sig not in _FATAL_SIGNALS:
        return 0  # existence check, or a signal whose default action is to ignore
    bit = 1 << (sig - 1)
    signal = ctx.signal(target)
    if signal.blocked & bit:
        signal.pending |= bit
        return 0
    if target is ctx.task:
        raise TaskKilled(sig)
    do_exit(target, 0, sig)
    return 0


def sys_tgkill(ctx: SyscallContext, tgid: int, tid: int, sig: int, *_: int) -> int:
    """tgkill(2): raise() and abort() signal their own thread with it. Every
    process has one thread, whose tid is the pid."""
    from mmuemu.kernel.sched import TaskState
    tgid, tid, sig = _int32(tgid), _int32(tid), sig & 0xFFFFFFFF
    if tgid <= 0 or tid <= 0 or sig > 64:
        return -errno.EINVAL
    target = ctx.kern.tasks.get(tid)
    if target is None or target.pid != tgid or \
            target.state in (TaskState.ZOMBIE, TaskState.DEAD):
        return -errno.ESRCH
    return send_signal(ctx, target, sig)


def sys_tkill(ctx: SyscallContext, tid: int, sig: int, *_: int) -> int:
    """tkill(2)."""
    return sys_tgkill(ctx, tid, tid, sig)


def sys_gettid(ctx: SyscallContext, *_: int) -> int:
    """gettid(2): one thread per process, so the pid."""
    return ctx.task.pid


def sys_rt_sigprocmask(ctx: SyscallContext, how: int, nset: int, oset: int, sigsetsize: int,
                       *_: int) -> int:
    """rt_sigprocmask(2): the blocked mask (SIGKILL and SIGSTOP cannot be blocked).

    raise() blocks every signal around its tgkill(); a fatal signal that
    arrived blocked is delivered, ending the process, when the mask that
    unblocks it is set.
    """
    if sigsetsize != 8:
        return -errno.EINVAL
    signal = ctx.signal(ctx.task)
    old = signal.blocked
    if nset:
        try:
            (mask,) = struct.unpack("<Q", copy_from_user(ctx.task, nset, 8))
        except UserFault:
            return -errno.EFAULT
        how &= 0xFFFFFFFF
        if how == SIG_BLOCK:
            new = old | mask
        elif how == SIG_UNBLOCK:
            new = old & ~mask
        elif how == SIG_SETMASK:
            new = mask
        else:
            return -errno.EINVAL
        signal.blocked = new & ~_UNBLOCKABLE
    if oset:
        try:
            copy_to_user(ctx.task, oset, struct.pack("<Q", old))
        except UserFault:
            return -errno.EFAULT
    deliver = signal.pending & ~signal.blocked
    if deliver:  # on the way back to user space: the lowest-numbered first
        raise TaskKilled((deliver & -deliver).bit_length())
    return 0


def sys_set_tid_address(ctx: SyscallContext, *_: int) -> int:
    """set_tid_address(2): returns the tid.

    The pointer is not kept: the kernel only uses clear_child_tid when a
    thread exits while other users of its mm remain (mm_release()), and the
    model has no threads.
    """
    return ctx.task.pid


#: sizeof(struct robust_list_head) on a 64-bit kernel
ROBUST_LIST_HEAD_SIZE = 24


def sys_set_robust_list(ctx: SyscallContext, head: int, length: int, *_: int) -> int:
    """set_robust_list(2): glibc registers its (empty) robust-mutex list at startup.

    Any head is accepted, as by the kernel (which only checks the size). The
    list is not kept: the kernel walks it at exit (exit_robust_list()) to
    mark robust mutexes the dying thread still holds as FUTEX_OWNER_DIED,
    which only matters to another thread or a process sharing the mutex,
    and no futex waiter can exist here (see sys_futex).
    """
    if length != ROBUST_LIST_HEAD_SIZE:
        return -errno.EINVAL
    return 0


def sys_ni_syscall(ctx: SyscallContext, *_: int) -> int:
    """sys_ni_syscall(): a syscall that is configured out of the modelled kernel.

    -ENOSYS with no warning: the call is known, the kernel just does not
    offer it. rseq is one (the kernel is built with CONFIG_RSEQ=n): glibc
    probes it at startup and, on -ENOSYS, sets __rseq_size to 0 and uses
    the getcpu syscall instead. qemu-user answers rseq the same way. A real
    rseq would need the CPU loop to abort critical sections on preemption,
    which the model does not do.
    """
    return -errno.ENOSYS


FIONCLEX, FIOCLEX = 0x5450, 0x5451


def sys_ioctl(ctx: SyscallContext, fd: int, cmd: int, arg: int, *_: int) -> int:
    """ioctl(2): no file here is a terminal or has ioctls of its own.

    FIOCLEX/FIONCLEX succeed (there is no exec for close-on-exec to act
    on); anything else, terminal requests like TCGETS (isatty()) and
    TIOCGWINSZ included, is -ENOTTY, as for a pipe or a regular file.
    """
    if _fd(ctx, fd & 0xFFFFFFFF) is None:
        return -errno.EBADF
    if cmd & 0xFFFFFFFF in (FIONCLEX, FIOCLEX):
        return 0
    return -errno.ENOTTY


def _exe_path(task: TaskStruct) -> str | None:
    """d_path(mm->exe_file): the executable as /proc/PID/maps names it."""
    mm = task.mm
    vma = find_vma(mm, mm.start_code)
    if vma is None or vma.vm_start > mm.start_code or vma.vm_file is None:
        return None
    return vma_name(vma)


def _proc_readlink(ctx: SyscallContext, path: str) -> str | int:
    """The procfs symlinks: /proc/self, /proc/PID/exe and /proc/PID/cwd."""
    from mmuemu.kernel.sched import TaskState
    parts = path.split("/")[2:]  # "", "proc", ...
    if not parts:
        return -errno.EINVAL  # the /proc directory
    if parts == ["self"]:
        return str(ctx.task.pid)
    if len(parts) != 2:
        return -errno.EINVAL if proc_file(ctx.kern, ctx.task, path) is not None else -errno.ENOENT
    who, what = parts
    task = ctx.task if who == "self" else \
        ctx.kern.tasks.get(int(who)) if who.isdigit() else None
    if task is None or task.state is TaskState.DEAD:
        return -errno.ENOENT
    if what == "cwd":
        return task.cwd
    if what == "exe":
        exe = _exe_path(task) if task.state is not TaskState.ZOMBIE else None
        return exe if exe is not None else -errno.ENOENT
    return -errno.EINVAL if proc_file(ctx.kern, task, path) is not None else -errno.ENOENT


def sys_readlinkat(ctx: SyscallContext, dirfd: int, path_ptr: int, buf: int, bufsiz: int,
                   *_: int) -> int:
    """readlinkat(2): glibc reads /proc/self/exe at startup (_dl_non_dynamic_init).

    /proc/self, /proc/PID/exe (the executable as /proc/PID/maps shows it)
    and /proc/PID/cwd are links; in the sandbox, a host symlink's target is
    returned as stored. Anything else that exists is not a link: -EINVAL.
    """
    dirfd = _int32(dirfd)
    bufsiz = _int32(bufsiz)
    if bufsiz <= 0:
        return -errno.EINVAL
    try:
        path = strncpy_from_user(ctx.task, path_ptr).decode(errors="surrogateescape")
    except UserFault:
        return -errno.EFAULT
    if not path:
        return -errno.ENOENT
    if not path.startswith("/") and dirfd != AT_FDCWD:
        return -errno.ENOTDIR if _fd(ctx, dirfd) is not None else -errno.EBADF
    guest_abs = os.path.normpath(os.path.join(ctx.task.cwd, path))
    if guest_abs.startswith("//"):
        guest_abs = guest_abs[1:]
    target: str | int
    if guest_abs == "/proc" or guest_abs.startswith("/proc/"):
        target = _proc_readlink(ctx, guest_abs)
    else:
        target = _sandbox_readlink(ctx, guest_abs)
    if isinstance(target, int):
        return target
    data = os.fsencode(target)[:bufsiz]
    try:
        copy_to_user(ctx.task, buf, data)
    except UserFault:
        return -errno.EFAULT
    return len(data)


def _sandbox_readlink(ctx: SyscallContext, guest_abs: str) -> str | int:
    """readlink of a path in the sandbox: the link itself is not followed, its
    directory must resolve inside the root."""
    name = os.path.basename(guest_abs)
    if not name:
        return -errno.EINVAL  # "/"
    err, parent = ctx.kern.vfs.resolve("/", os.path.dirname(guest_abs))
    if err:
        return err
    host = os.path.join(parent, name)
    if os.path.islink(host):
        return os.readlink(host)
    return -errno.EINVAL if os.path.lexists(host) or guest_abs in ("/dev/zero", "/dev/null") \
        else -errno.ENOENT


def sys_readlink(ctx: SyscallContext, path_ptr: int, buf: int, bufsiz: int, *_: int) -> int:
    """readlink(2) (x86-64): readlinkat(AT_FDCWD, ...)."""
    return sys_readlinkat(ctx, AT_FDCWD, path_ptr, buf, bufsiz)


def sys_open(ctx: SyscallContext, path_ptr: int, flags: int, mode: int, *_: int) -> int:
    """open(2) (x86-64; musl's fopen uses it): openat(AT_FDCWD, ...)."""
    return sys_openat(ctx, AT_FDCWD, path_ptr, flags, mode)


def sys_stat(ctx: SyscallContext, path_ptr: int, statbuf: int, *_: int) -> int:
    """stat(2) (x86-64; musl's stat() uses it): newfstatat(AT_FDCWD, path, buf, 0)."""
    return sys_newfstatat(ctx, AT_FDCWD, path_ptr, statbuf, 0)


def sys_unlink(ctx: SyscallContext, path_ptr: int, *_: int) -> int:
    """unlink(2) (x86-64; glibc's remove() uses it): unlinkat(AT_FDCWD, path, 0)."""
    return sys_unlinkat(ctx, AT_FDCWD, path_ptr, 0)


RLIM_INFINITY = (1 << 64) - 1
RLIM_NLIMITS = 16
RLIMIT_STACK, RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_SIGPENDING = 3, 6, 7, 11
#: fs.nr_open: the ceiling of RLIMIT_NOFILE
NR_OPEN = 1 << 20
#: THREAD_SIZE / PAGE_SIZE on x86-64 and arm64 (16 KiB kernel stacks)
THREAD_PAGES = 4


def init_rlimits(ctx: SyscallContext) -> dict[int, tuple[int, int]]:
    """INIT_RLIMITS (include/asm-generic/resource.h) as init starts with them.

    RLIMIT_STACK's soft limit is the configured one (it also bounds stack
    growth); RLIMIT_NPROC and RLIMIT_SIGPENDING are max_threads / 2, which
    fork_init() derives from the memory size.
    """
    inf = RLIM_INFINITY
    max_threads = max(20, ctx.kern.buddy.stats.managed_pages // (8 * THREAD_PAGES))
    nproc = max_threads // 2
    return {
        0: (inf, inf), 1: (inf, inf), 2: (inf, inf),        # CPU, FSIZE, DATA
        RLIMIT_STACK: (ctx.kern.config.stack_rlimit, inf),
        4: (0, inf), 5: (inf, inf),                         # CORE, RSS
        RLIMIT_NPROC: (nproc, nproc), RLIMIT_NOFILE: (1024, 4096),
        8: (8 << 20, 8 << 20), 9: (inf, inf), 10: (inf, inf),  # MEMLOCK, AS, LOCKS
        RLIMIT_SIGPENDING: (nproc, nproc), 12: (819200, 819200),  # MSGQUEUE
        13: (0, 0), 14: (0, 0), 15: (inf, inf),             # NICE, RTPRIO, RTTIME
    }


def task_rlimit(ctx: SyscallContext, task: TaskStruct, resource: int) -> tuple[int, int]:
    """task->signal->rlim[resource]: (soft, hard)."""
    own = ctx.signal(task).rlim
    return own[resource] if resource in own else init_rlimits(ctx)[resource]


def sys_prlimit64(ctx: SyscallContext, pid: int, resource: int, new_ptr: int, old_ptr: int,
                  *_: int) -> int:
    """prlimit64(2): glibc's getrlimit/setrlimit (it reads RLIMIT_STACK at startup).

    New limits are kept per process and inherited by fork, and reported
    back; none is enforced. (Stack growth follows the configured
    RLIMIT_STACK.) The caller is root, so raising a hard limit is allowed
    up to fs.nr_open for RLIMIT_NOFILE.
    """
    from mmuemu.kernel.sched import TaskState
    pid = _int32(pid)
    resource &= 0xFFFFFFFF
    if resource >= RLIM_NLIMITS:
        return -errno.EINVAL
    if pid < 0:
        return -errno.EINVAL
    task = ctx.task if pid == 0 else ctx.kern.tasks.get(pid)
    if task is None or task.state in (TaskState.ZOMBIE, TaskState.DEAD):
        return -errno.ESRCH
    new: tuple[int, int] | None = None
    if new_ptr:
        try:
            cur, hard = struct.unpack("<QQ", copy_from_user(ctx.task, new_ptr, 16))
        except UserFault:
            return -errno.EFAULT
        if cur > hard:
            return -errno.EINVAL
        if resource == RLIMIT_NOFILE and hard > NR_OPEN:
            return -errno.EPERM
        new = (cur, hard)
    old = task_rlimit(ctx, task, resource)
    if old_ptr:
        try:
            copy_to_user(ctx.task, old_ptr, struct.pack("<QQ", *old))
        except UserFault:
            return -errno.EFAULT
    if new is not None:
        ctx.signal(task).rlim[resource] = new
    return 0


GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4


def get_random_bytes(ctx: SyscallContext, n: int) -> bytes:
    """The machine's random stream: deterministic (BLAKE2b of a block counter),
    so a run repeats exactly. Every caller draws from the one stream, in
    syscall order."""
    out = bytearray()
    pos = ctx.random_pos
    while len(out) < n:
        block, skip = divmod(pos, 64)
        digest = hashlib.blake2b(block.to_bytes(8, "little"), key=b"mmuemu-getrandom").digest()
        take = digest[skip:skip + n - len(out)]
        out += take
        pos += len(take)
    ctx.random_pos = pos
    return bytes(out)


def sys_getrandom(ctx: SyscallContext, buf: int, count: int, flags: int, *_: int) -> int:
    """getrandom(2): bytes from the deterministic stream (glibc seeds malloc's
    tcache key with 8 of them at startup). The pool is always initialised,
    so GRND_NONBLOCK never gives -EAGAIN."""
    flags &= 0xFFFFFFFF
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) or \
            flags & (GRND_INSECURE | GRND_RANDOM) == GRND_INSECURE | GRND_RANDOM:
        return -errno.EINVAL
    count = min(count, MAX_RW)
    done = 0
    while done < count:  # page by page, so a fault leaves the stream where the copy stopped
        chunk = min(count - done, 4096)
        saved = ctx.random_pos
        try:
            copy_to_user(ctx.task, buf + done, get_random_bytes(ctx, chunk))
        except UserFault:
            ctx.random_pos = saved
            return done if done else -errno.EFAULT
        done += chunk
    return done


FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 0, 1, 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_CMD_MASK = ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)


def sys_futex(ctx: SyscallContext, uaddr: int, op: int, val: int, utime: int, uaddr2: int,
              val3: int) -> int:
    """futex(2): FUTEX_WAIT/WAKE (and the _BITSET forms) for a task with no threads.

    There are never waiters: a wake wakes nobody (0). A wait whose value
    no longer matches is -EAGAIN, and one with a timeout times out
    (-ETIMEDOUT), since no thread exists that could wake it first. A wait
    with no timeout would sleep forever on Linux; as futex wakeups between
    processes sharing memory are not modelled either, the run stops there
    with a one-line error instead of hanging. Other operations (requeue,
    WAKE_OP, the PI futexes) are not modelled: -ENOSYS, warned about like an
    unknown syscall.
    """
    cmd = op & 0xFFFFFFFF & FUTEX_CMD_MASK
    if cmd not in (FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET):
        return unsupported(ctx, f"futex op {cmd}")
    if op & FUTEX_CLOCK_REALTIME and cmd != FUTEX_WAIT_BITSET:
        return -errno.ENOSYS  # futex_cmd_has_timeout() only allows it on WAIT_BITSET
    if uaddr & 3:
        return -errno.EINVAL
    if cmd in (FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET) and val3 & 0xFFFFFFFF == 0:
        return -errno.EINVAL
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        return 0
    timeout: tuple[int, int] | None = None
    if utime:
        try:
            timeout = struct.unpack("<qq", copy_from_user(ctx.task, utime, 16))
        except UserFault:
            return -errno.EFAULT
        if timeout[0] < 0 or not 0 <= timeout[1] < 10**9:
            return -errno.EINVAL
    try:
        (word,) = struct.unpack("<I", copy_from_user(ctx.task, uaddr, 4))
    except UserFault:
        return -errno.EFAULT
    if word != val & 0xFFFFFFFF:
        return -errno.EAGAIN
    if timeout is not None:
        return -errno.ETIMEDOUT
    raise StrictSyscallError(f"futex wait at {uaddr:#x} with no timeout would sleep forever "
                             "(threads and futex wakeups between processes are not modelled)")


def sys_getcpu(ctx: SyscallContext, cpup: int, nodep: int, *_: int) -> int:
    """getcpu(2): the model has one CPU in one NUMA node (glibc's sched_getcpu()
    asks the kernel, as rseq is not offered)."""
    try:
        for ptr in (cpup, nodep):
            if ptr:
                copy_to_user(ctx.task, ptr, struct.pack("<I", 0))
    except UserFault:
        return -errno.EFAULT
    return 0


def sys_sysinfo(ctx: SyscallContext, info: int, *_: int) -> int:
    """sysinfo(2): the model's memory (glibc's qsort asks for the physical page count).

    Uptime is virtual time; there is no swap, no load and no highmem.
    """
    from mmuemu.kernel.sched import TaskState
    stats = ctx.kern.buddy.stats
    procs = sum(1 for t in ctx.kern.tasks.values()
                if t.state in (TaskState.RUNNING, TaskState.SLEEPING))
    data = struct.pack("<q3Q6QHH4xQQI4x", ctx.now_ns() // 10**9, 0, 0, 0,
                       stats.managed_pages << 12, stats.nr_free_pages << 12, 0, 0, 0, 0,
                       procs, 0, 0, 0, 1)
    try:
        copy_to_user(ctx.task, info, data)
    except UserFault:
        return -errno.EFAULT
    return 0


def _int32(v: int) -> int:
    """An int argument: the low 32 bits of the register, signed."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v

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
    "readv": sys_readv, "writev": sys_writev, "ioctl": sys_ioctl,
    "readlink": sys_readlink, "readlinkat": sys_readlinkat, "unlink": sys_unlink,
    "open": sys_open, "stat": sys_stat,
    "set_robust_list": sys_set_robust_list, "rseq": sys_ni_syscall,
    "prlimit64": sys_prlimit64, "getrandom": sys_getrandom, "futex": sys_futex,
    "sysinfo": sys_sysinfo, "getcpu": sys_getcpu, "gettid": sys_gettid,
    "tgkill": sys_tgkill, "tkill": sys_tkill, "rt_sigprocmask": sys_rt_sigprocmask,
}


def dispatch(ctx: SyscallContext, name: str | None, nr: int, args: tuple[int, ...]) -> int:
    """Run syscall ``name`` (None: the arch has no name for ``nr``).

    Unknown or unimplemented calls return -ENOSYS with a one-time warning,
    or raise StrictSyscallError under --strict.
    """
    handler = None
    if name is not None:
        handler = SYSCALLS.get(name) or ctx.abi.arch_syscalls.get(name)
    if handler is None:
        return unsupported(ctx, f"syscall {name} ({nr})" if name else f"syscall #{nr}")
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


def unsupported(ctx: SyscallContext, what: str) -> int:
    """Something the model does not implement: -ENOSYS and a warning the first
    time, or StrictSyscallError under --strict."""
    if ctx.strict:
        raise StrictSyscallError(f"unsupported {what}")
    if what not in ctx.warned:
        ctx.warned.add(what)
        ctx.warn(f"unsupported {what}: returning -ENOSYS")
    return -errno.ENOSYS


_MM_OPS = frozenset({"mmap", "munmap", "mprotect", "brk", "mremap", "madvise", "msync"})
