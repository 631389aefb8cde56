"""Fault counts follow Linux's rules, derived from the programs' arguments,
and (x86-64) agree with the host kernel's own counts.

Expected numbers come from the rules (one anonymous fault per page touched,
a zero-page read fault plus a write-protect fault per page first read then
written, one file fault per page without fault-around) or from getrusage of
the same binary run natively, never from an earlier mmuemu run.
"""
from __future__ import annotations

import json
import tempfile
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmuemu.config import RunConfig
from tests.conftest import ARCHES
from tests.emu.helpers import binary, run_mmuemu

HOST_ORACLE = Path(__file__).with_name("host_oracle.py")


def stats(arch: str, name: str, args: list[str], tmp: Path,
          extra: list[str] | None = None) -> dict[str, Any]:
    d = tmp / f"{name}-{'-'.join(args)}-{'-'.join(extra or [])}"
    d.mkdir()
    out = run_mmuemu(arch, name, args, d, extra)
    assert out.status == 0, out.stderr.decode()
    assert out.stats is not None
    return out.stats


def delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, int]:
    keys = set(a["faults"]["by_type"]) | {"total", "minor", "major"}
    fa = {**a["faults"]["by_type"], **{k: a["faults"][k] for k in ("total", "minor", "major")}}
    fb = {**b["faults"]["by_type"], **{k: b["faults"][k] for k in ("total", "minor", "major")}}
    return {k: fb[k] - fa[k] for k in keys if fb[k] - fa[k]}


@pytest.mark.parametrize("arch", ARCHES)
def test_anon_touch_one_anon_fault_per_page(arch: str, tmp_path: Path) -> None:
    n1, n2 = 8, 8 + 300
    d = delta(stats(arch, "anon_touch", [str(n1)], tmp_path),
              stats(arch, "anon_touch", [str(n2)], tmp_path))
    assert d == {"anon": n2 - n1, "total": n2 - n1, "minor": n2 - n1}


@pytest.mark.parametrize("arch", ARCHES)
def test_anon_read_zero_page_then_wp_fault(arch: str, tmp_path: Path) -> None:
    n1, n2 = 4, 4 + 100
    d = delta(stats(arch, "anon_read", [str(n1)], tmp_path),
              stats(arch, "anon_read", [str(n2)], tmp_path))
    dn = n2 - n1
    assert d == {"zero": dn, "wp": dn, "total": 2 * dn, "minor": 2 * dn}


@pytest.mark.parametrize("arch", ARCHES)
def test_file_read_one_fault_per_page_without_fault_around(arch: str, tmp_path: Path) -> None:
    n1, n2 = 4, 4 + 64
    off = ["--fault-around-bytes", "4096"]
    d = delta(stats(arch, "file_read", [str(n1)], tmp_path, off),
              stats(arch, "file_read", [str(n2)], tmp_path, off))
    dn = n2 - n1
    assert d == {"file": dn, "total": dn, "minor": dn}


@pytest.mark.parametrize("arch", ARCHES)
def test_file_read_fault_around_cuts_faults_sixteenfold(arch: str, tmp_path: Path) -> None:
    # 64 KiB fault-around maps the 16-page aligned window around each fault:
    # a mapping of N pages costs between ceil(N/16) and ceil(N/16)+1 faults.
    n = 256
    base = stats(arch, "file_read", ["1"], tmp_path)
    big = stats(arch, "file_read", [str(n)], tmp_path)
    d = delta(base, big)
    file_faults = d.get("file", 0) + 1  # the N=1 run's single data-page fault
    assert n // 16 <= file_faults <= n // 16 + 1
    assert big["vmstat"]["fault_around_mapped"] >= n - file_faults


def host_counts(name: str, args: list[str], cwd: Path, runs: int = 3) -> dict[str, int]:
    """The host's counts for one run: the median of ``runs`` runs (a small
    program's count varies by one now and then with page-cache state)."""
    env = dict(e.split("=", 1) for e in RunConfig().env)
    results = []
    for _ in range(runs):
        p = subprocess.run([sys.executable, str(HOST_ORACLE), str(cwd), binary("x86_64", name),
                            *args], capture_output=True, text=True, timeout=120,
                           env={"HOST_ORACLE_ENV": json.dumps(env), "PATH": "/usr/bin:/bin"})
        assert p.returncode == 0, p.stderr
        results.append(json.loads(p.stdout))
    results.sort(key=lambda r: (r["minflt"] + r["majflt"], r["majflt"]))
    return results[len(results) // 2]  # type: ignore[no-any-return]


# (program, args) run natively and under mmuemu. Counts are compared as the
# difference from a baseline program (exit_code 0) on each side, which
# cancels what is not the program's own doing: the host's spawn overhead
# and one fault the host takes before main() that the model does not
# (see README, "Fault counts against the host kernel").
HOST_PROGRAMS = [
    ("hello", []),
    ("anon_touch", ["272"]),
    ("anon_read", ["272"]),
    ("file_read", ["272"]),
    ("file_read_back", ["200"]),
    ("file_shared", ["64"]),
    ("file_cow", ["16"]),
    ("devzero_shared", ["16"]),
    ("rw_loop", ["16"]),
    ("madvise_dontneed", ["16"]),
    ("brk_heap", ["96"]),
    ("stack_grow", ["2000"]),
    ("data_bss", []),
    ("cow_fork", ["256"]),  # parent + reaped child: wait4's rusage includes the child
    ("mprotect_split", ["64"]),
    ("mremap_grow", ["64"]),
    ("munmap_hole", ["64"]),
]
BASELINE = ("exit_code", ["0"])

# Differences not yet explained, asserted exactly so that a change shows up:
# the host kernel counts the same faults for hello as for exit_code 0, while
# the model counts one more for hello: the copy_from_user fault on the
# .rodata page holding the message. A hello-like program that calls
# getrusage around that write() does take that fault on the host, so the
# host's hello saves it somewhere before main(); see README.
KNOWN_EXTRA_EMU_FAULTS = {"hello": 1}


@pytest.fixture(scope="module")
def disk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory on a disk file system (not tmpfs): shared file mappings
    then get page_mkwrite and writeback, as the model's disk file system does."""
    base = Path(__file__).resolve().parents[2] / ".pytest-host"
    base.mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(dir=base))


@pytest.fixture(scope="module")
def host_baseline(disk_dir: Path) -> dict[str, int]:
    return host_counts(BASELINE[0], BASELINE[1], disk_dir)


@pytest.fixture(scope="module")
def emu_baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return stats("x86_64", BASELINE[0], BASELINE[1], tmp_path_factory.mktemp("base"))


@pytest.mark.skipif(sys.platform != "linux" or __import__("platform").machine() != "x86_64",
                    reason="needs an x86-64 Linux host")
@pytest.mark.parametrize("name,args", HOST_PROGRAMS, ids=[n for n, _ in HOST_PROGRAMS])
def test_x86_64_faults_match_host_kernel(name: str, args: list[str], disk_dir: Path,
                                         host_baseline: dict[str, int],
                                         emu_baseline: dict[str, Any], tmp_path: Path) -> None:
    host = host_counts(name, args, disk_dir)
    emu = stats("x86_64", name, args, tmp_path)
    host_minor = host["minflt"] - host_baseline["minflt"]
    host_major = host["majflt"] - host_baseline["majflt"]
    emu_minor = emu["faults"]["minor"] - emu_baseline["faults"]["minor"]
    emu_major = emu["faults"]["major"] - emu_baseline["faults"]["major"]
    extra = KNOWN_EXTRA_EMU_FAULTS.get(name, 0)
    assert (emu_minor - extra, emu_major) == (host_minor, host_major)
