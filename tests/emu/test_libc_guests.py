"""Ordinary static C programs (guest/libc) under mmuemu: glibc on x86-64 and
arm64, musl on x86-64.

Each prints the same stdout and exits with the same status as natively
(x86-64 on this host) and under qemu-aarch64 (arm64), with no
unsupported-syscall warning: glibc's startup (arch_prctl, set_tid_address,
set_robust_list, rseq, prlimit64, readlink(at) of /proc/self/exe, getrandom)
and what stdio, malloc, qsort, fork and abort() use are all implemented. Runs
are deterministic. The syscalls are also checked one by one against their
Linux semantics on the kernel model alone.

The guests run in-process through the CLI (capturing fds 1 and 2), which
keeps the whole file to a few seconds.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mmuemu._types import Arch
from mmuemu.arch import ARCHES as ARCH_SPECS
from mmuemu.cli import main as mmuemu_main
from mmuemu.config import RunConfig
from mmuemu.kernel.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, do_mmap
from mmuemu.kernel.syscalls import (
    SYSCALLS, StrictSyscallError, SyscallContext, TaskKilled, dispatch,
)
from mmuemu.kernel.uaccess import copy_from_user, copy_to_user
from tests.conftest import ARCHES, REPO, KernelRig, make_rig
from tests.emu.helpers import Outcome, qemu_aarch64

LIBC_BIN = REPO / "guest" / "libc" / "bin"

CASES: list[tuple[str, list[str]]] = [
    ("hello", ["one", "two words", ""]),  # exits with argc - 1 = 3
    ("malloc_sum", ["3"]),
    ("stdio_file", ["300"]),
    ("qsort_fork", ["5000"]),
]

#: what glibc needs beyond the freestanding guests, by syscall name
GLIBC_SYSCALLS = ["set_robust_list", "rseq", "prlimit64", "readlink", "readlinkat",
                  "getrandom", "ioctl", "writev", "readv", "futex", "sysinfo", "unlink",
                  "getcpu", "gettid", "tgkill", "tkill", "rt_sigprocmask"]


#: bin/ subdirectories: the glibc builds per architecture, and musl for x86-64
VARIANTS = [*ARCHES, "x86_64-musl"]


def libc_guest(variant: str, name: str) -> Path:
    path = LIBC_BIN / variant / name
    if not path.exists():
        pytest.skip(f"{path} not built")
    return path


def run_emu(variant: str, name: str, args: list[str], root: Path,
            capfd: pytest.CaptureFixture[bytes], extra: list[str] | None = None) -> Outcome:
    """``mmuemu run`` in-process, in sandbox ``root``, with --stats."""
    stats_path = root.parent / f"{root.name}.stats.json"
    capfd.readouterr()
    status = mmuemu_main(["run", "--quiet", "--root", str(root), "--stats", str(stats_path),
                          *(extra or []), str(libc_guest(variant, name)), *args])
    out, err = capfd.readouterr()
    stats: dict[str, Any] | None = None
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
    return Outcome(out, err, status, stats)


def run_reference(variant: str, name: str, args: list[str], cwd: Path) -> Outcome:
    """The host CPU for x86-64, qemu-user for arm64 (the test skips without it)."""
    cmd = [str(libc_guest(variant, name)), *args]
    if variant == "aarch64":
        qemu = qemu_aarch64()
        if qemu is None:
            pytest.skip("qemu-aarch64 not installed")
        cmd.insert(0, qemu)
    env = dict(e.split("=", 1) for e in RunConfig().env)
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=60, env=env,
                       preexec_fn=_no_core_dumps)
    status = p.returncode if p.returncode >= 0 else 128 - p.returncode
    return Outcome(p.stdout, p.stderr, status)


def _no_core_dumps() -> None:
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # qsort_fork's child aborts


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name,args", CASES, ids=[n for n, _ in CASES])
def test_same_output_and_status_as_native(variant: str, name: str, args: list[str],
                                          tmp_path: Path,
                                          capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    ref_dir, emu_dir = tmp_path / "native", tmp_path / "emu"
    ref_dir.mkdir()
    emu_dir.mkdir()
    ref = run_reference(variant, name, args, ref_dir)
    got = run_emu(variant, name, args, emu_dir, capfdbinary)
    err = got.stderr.decode(errors="replace")
    assert got.stdout == ref.stdout, err
    assert got.status == ref.status, err
    # every syscall the C library made is implemented: no -ENOSYS warning
    assert "warning" not in err, err
    # stdio_file removes its file again; nothing else is written
    assert sorted(os.listdir(emu_dir)) == sorted(os.listdir(ref_dir)) == []


def test_expected_outputs() -> None:
    """The programs do what their sources say (so a parity test cannot pass on
    two equally wrong runs)."""
    hello = (LIBC_BIN / "x86_64" / "hello")
    if not hello.exists():
        pytest.skip("guest/libc not built")
    p = subprocess.run([str(hello), "a"], capture_output=True, timeout=10)
    assert p.returncode == 1
    assert p.stdout.splitlines()[0] == b"hello from hello, through stdio"
    assert b'argv[1] = "a" (1 bytes)' in p.stdout
    # 10 / 3 in x87 extended precision, after a control-word reload
    assert b"long double: 3 + 0.6666666666666666667" in p.stdout


@pytest.mark.parametrize("arch", ARCHES)
def test_runs_are_deterministic_and_strict_clean(arch: str, tmp_path: Path,
                                                 capfdbinary: pytest.CaptureFixture[bytes]
                                                 ) -> None:
    """Same binary, args and config: the same output and the same counts, down
    to the instruction (getrandom's bytes, the fork and the abort included).
    The second run is under --strict, which nothing in it trips.

    Not Unicorn's TLB fills: QEMU shrinks its soft TLB at a flush after 100 ms
    of low use, so their number follows the wall clock (qsort_fork 3000 on
    arm64: 264 fills in 0.1 s, 280 when slowed to 0.36 s)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = run_emu(arch, "qsort_fork", ["3000"], tmp_path / "a", capfdbinary)
    second = run_emu(arch, "qsort_fork", ["3000"], tmp_path / "b", capfdbinary, ["--strict"])
    assert first.stats is not None and second.stats is not None
    assert (second.stdout, second.status) == (first.stdout, first.status), second.stderr
    assert b"child killed by signal 6" in first.stdout
    keys = ["instructions", "syscalls", "faults", "tasks", "mm"]
    assert {k: second.stats[k] for k in keys} == {k: first.stats[k] for k in keys}


# --- the syscalls one by one, on the kernel model (no CPU) ----------------------------

@pytest.fixture
def rig(arch: str, tmp_path: Path) -> KernelRig:
    """A kernel for the test's ``arch`` (not conftest's own arch parameter),
    with pid 1 registered."""
    rig = make_rig(arch, tmp_path)
    rig.kern.tasks[rig.task.pid] = rig.task
    return rig


def _ctx(rig: KernelRig, arch: str, strict: bool = False) -> tuple[SyscallContext, list[str]]:
    warnings: list[str] = []
    spec = ARCH_SPECS[Arch(arch)]
    return SyscallContext(kern=rig.kern, task=rig.task, abi=spec, now_ns=lambda: 5 * 10**9,
                          warn=warnings.append, strict=strict), warnings


def _buf(rig: KernelRig, pages: int = 1) -> int:
    addr = do_mmap(rig.task.mm, None, 0, pages * 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, 0)
    assert addr > 0
    return addr


def test_every_glibc_syscall_is_named_and_implemented() -> None:
    for name in GLIBC_SYSCALLS:
        assert name in SYSCALLS, name
    for spec in ARCH_SPECS.values():
        names = set(spec.syscall_names.values())
        for name in GLIBC_SYSCALLS:
            if name not in ("readlink", "unlink"):  # the legacy x86-64 calls
                assert name in names, (spec.name, name)
    assert "arch_prctl" in ARCH_SPECS[Arch.X86_64].arch_syscalls
    assert "arch_prctl" not in ARCH_SPECS[Arch.ARM64].syscall_names.values()


@pytest.mark.parametrize("arch", ARCHES)
def test_getrandom_is_a_deterministic_stream(arch: str, rig: KernelRig) -> None:
    buf = _buf(rig)
    ctx, _ = _ctx(rig, arch)
    assert SYSCALLS["getrandom"](ctx, buf, 8, 1) == 8  # GRND_NONBLOCK
    assert SYSCALLS["getrandom"](ctx, buf + 8, 100, 0) == 100
    first = copy_from_user(rig.task, buf, 108)
    again, _ = _ctx(rig, arch)  # a new machine: the same bytes, in one call or two
    assert SYSCALLS["getrandom"](again, buf, 108, 0) == 108
    assert copy_from_user(rig.task, buf, 108) == first
    assert first[:8] != first[8:16] and len(set(first)) > 50
    assert SYSCALLS["getrandom"](ctx, buf, 8, 8) == -errno.EINVAL
    assert SYSCALLS["getrandom"](ctx, 0, 8, 0) == -errno.EFAULT


@pytest.mark.parametrize("arch", ARCHES)
def test_prlimit64_reports_init_rlimits_and_keeps_changes(arch: str, rig: KernelRig) -> None:
    buf = _buf(rig)
    ctx, _ = _ctx(rig, arch)
    prlimit = SYSCALLS["prlimit64"]
    inf = (1 << 64) - 1
    assert prlimit(ctx, 0, 3, 0, buf) == 0  # RLIMIT_STACK: the configured soft limit
    assert struct.unpack("<QQ", copy_from_user(rig.task, buf, 16)) == (8 << 20, inf)
    assert prlimit(ctx, 0, 7, 0, buf) == 0  # RLIMIT_NOFILE: INR_OPEN_CUR / INR_OPEN_MAX
    assert struct.unpack("<QQ", copy_from_user(rig.task, buf, 16)) == (1024, 4096)
    copy_to_user(rig.task, buf + 16, struct.pack("<QQ", 100, 200))
    assert prlimit(ctx, 0, 7, buf + 16, buf) == 0  # old value reported, new one kept
    assert struct.unpack("<QQ", copy_from_user(rig.task, buf, 16)) == (1024, 4096)
    assert prlimit(ctx, 1, 7, 0, buf) == 0
    assert struct.unpack("<QQ", copy_from_user(rig.task, buf, 16)) == (100, 200)
    copy_to_user(rig.task, buf + 16, struct.pack("<QQ", 300, 200))
    assert prlimit(ctx, 0, 7, buf + 16, 0) == -errno.EINVAL  # soft above hard
    assert prlimit(ctx, 0, 16, 0, buf) == -errno.EINVAL
    assert prlimit(ctx, 99, 7, 0, buf) == -errno.ESRCH


@pytest.mark.parametrize("arch", ARCHES)
def test_futex_without_threads(arch: str, rig: KernelRig) -> None:
    buf = _buf(rig)
    ctx, warnings = _ctx(rig, arch)
    futex = SYSCALLS["futex"]
    copy_to_user(rig.task, buf, struct.pack("<I", 7))
    assert futex(ctx, buf, 1 | 128, 1, 0, 0, 0) == 0  # FUTEX_WAKE_PRIVATE: nobody waits
    assert futex(ctx, buf, 0, 8, 0, 0, 0) == -errno.EAGAIN  # the value changed already
    copy_to_user(rig.task, buf + 64, struct.pack("<qq", 0, 1000))
    assert futex(ctx, buf, 0, 7, buf + 64, 0, 0) == -errno.ETIMEDOUT
    assert futex(ctx, buf + 1, 0, 7, 0, 0, 0) == -errno.EINVAL
    with pytest.raises(StrictSyscallError, match="sleep forever"):
        futex(ctx, buf, 0, 7, 0, 0, 0)
    assert futex(ctx, buf, 3, 1, 0, 0, 0) == -errno.ENOSYS  # FUTEX_REQUEUE: not modelled
    assert warnings == ["unsupported futex op 3: returning -ENOSYS"]


@pytest.mark.parametrize("arch", ARCHES)
def test_blocked_fatal_signal_waits_for_unblock(arch: str, rig: KernelRig) -> None:
    """raise(): block everything, tgkill(self), restore the mask: death comes then."""
    buf = _buf(rig)
    ctx, _ = _ctx(rig, arch)
    pid = rig.task.pid
    copy_to_user(rig.task, buf, struct.pack("<Q", (1 << 64) - 1))
    assert SYSCALLS["rt_sigprocmask"](ctx, 0, buf, buf + 8, 8) == 0  # SIG_BLOCK all
    assert copy_from_user(rig.task, buf + 8, 8) == bytes(8)
    assert SYSCALLS["gettid"](ctx) == pid
    assert SYSCALLS["tgkill"](ctx, pid, pid, 6) == 0  # SIGABRT, blocked: pending
    assert SYSCALLS["tgkill"](ctx, pid, pid + 1, 6) == -errno.ESRCH
    assert SYSCALLS["rt_sigprocmask"](ctx, 2, buf, 0, 8) == 0  # still blocked
    with pytest.raises(TaskKilled) as killed:
        SYSCALLS["rt_sigprocmask"](ctx, 2, buf + 8, 0, 8)  # SIG_SETMASK to the empty set
    assert killed.value.signal == 6
    assert SYSCALLS["rt_sigprocmask"](ctx, 0, buf, 0, 4) == -errno.EINVAL  # sigsetsize


@pytest.mark.parametrize("arch", ARCHES)
def test_stdio_is_a_pipe_and_no_tty(arch: str, rig: KernelRig) -> None:
    buf = _buf(rig)
    ctx, _ = _ctx(rig, arch)
    vfs = rig.kern.vfs
    f = vfs.open_file(vfs.dev_null, 1, "/dev/fd/1")
    f.host_fd = 1
    rig.task.files[1] = f
    assert SYSCALLS["fstat"](ctx, 1, buf) == 0
    mode_off = 24 if arch == "x86_64" else 16  # st_mode in the arch's struct stat
    (mode,) = struct.unpack("<I", copy_from_user(rig.task, buf + mode_off, 4))
    assert stat.S_ISFIFO(mode)
    assert SYSCALLS["ioctl"](ctx, 1, 0x5401, buf) == -errno.ENOTTY  # TCGETS: isatty() false
    assert SYSCALLS["ioctl"](ctx, 1, 0x5451, 0) == 0  # FIOCLEX
    assert SYSCALLS["ioctl"](ctx, 9, 0x5401, buf) == -errno.EBADF


@pytest.mark.parametrize("arch", ARCHES)
def test_readlink_proc_and_sandbox(arch: str, rig: KernelRig) -> None:
    buf = _buf(rig)
    ctx, _ = _ctx(rig, arch)
    (rig.root / "target.txt").write_text("x")
    os.symlink("target.txt", rig.root / "link")
    readlinkat = SYSCALLS["readlinkat"]
    at_fdcwd = (1 << 64) - 100

    def readlink(path: str, size: int = 256) -> bytes | int:
        copy_to_user(rig.task, buf, path.encode() + b"\0")
        n = readlinkat(ctx, at_fdcwd, buf, buf + 1024, size)
        return n if n < 0 else copy_from_user(rig.task, buf + 1024, n)

    assert readlink("/proc/self") == str(rig.task.pid).encode()
    assert readlink("/proc/self/cwd") == b"/"
    assert readlink("/link") == b"target.txt"
    assert readlink("link", 3) == b"tar"  # truncated, no NUL
    assert readlink("/target.txt") == -errno.EINVAL
    assert readlink("/missing") == -errno.ENOENT
    assert readlink("/proc/self/maps") == -errno.EINVAL
    assert readlink("/link", 0) == -errno.EINVAL


@pytest.mark.parametrize("arch", ARCHES)
def test_writev_gathers(arch: str, rig: KernelRig) -> None:
    buf = _buf(rig)
    ctx, _ = _ctx(rig, arch)
    copy_to_user(rig.task, buf, b"out.txt\0")
    at_fdcwd = (1 << 64) - 100
    fd = SYSCALLS["openat"](ctx, at_fdcwd, buf, 0o1 | 0o100, 0o644)
    assert fd >= 0
    copy_to_user(rig.task, buf + 64, b"hello, world\n")
    copy_to_user(rig.task, buf + 128, struct.pack("<QQQQQQ", buf + 64, 7, buf + 71, 0,
                                                  buf + 71, 6))
    assert SYSCALLS["writev"](ctx, fd, buf + 128, 3) == 13
    assert SYSCALLS["writev"](ctx, fd, buf + 128, 1025) == -errno.EINVAL
    copy_to_user(rig.task, buf + 128, struct.pack("<QQQQ", buf + 64, 5, 8, 5))
    assert SYSCALLS["writev"](ctx, fd, buf + 128, 2) == 5  # stops at the faulting buffer
    assert SYSCALLS["fsync"](ctx, fd) == 0
    assert (rig.root / "out.txt").read_bytes() == b"hello, world\nhello"


@pytest.mark.parametrize("arch", ARCHES)
def test_rseq_is_configured_out_silently(arch: str, rig: KernelRig) -> None:
    """CONFIG_RSEQ=n: -ENOSYS with no warning, even under --strict; glibc falls
    back to getcpu(). An unknown syscall still warns (and is fatal under --strict)."""
    ctx, warnings = _ctx(rig, arch)
    spec = ARCH_SPECS[Arch(arch)]
    nr = {v: k for k, v in spec.syscall_names.items()}
    buf = _buf(rig)
    assert dispatch(ctx, "rseq", nr["rseq"], (buf, 32, 0, 0x53053053, 0, 0)) == -errno.ENOSYS
    assert dispatch(ctx, "getcpu", nr["getcpu"], (buf, buf + 4, 0, 0, 0, 0)) == 0
    assert dispatch(ctx, None, 999, (0,) * 6) == -errno.ENOSYS
    assert warnings == ["unsupported syscall #999: returning -ENOSYS"]
    strict, _ = _ctx(rig, arch, strict=True)
    assert dispatch(strict, "rseq", nr["rseq"], (buf, 32, 0, 0, 0, 0)) == -errno.ENOSYS
    with pytest.raises(StrictSyscallError):
        dispatch(strict, None, 999, (0,) * 6)
