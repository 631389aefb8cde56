"""Fault counts follow Linux's rules, derived from the programs' arguments,
and (x86-64) agree with the host kernel's own counts.

Expected numbers come from the rules (one anonymous fault per page touched,
a zero-page read fault plus a write-protect fault per page first read then
written, one file fault per page without fault-around) or from getrusage of
the same binary run natively, never from an earlier mmuemu run.
"""
from __future__ import annotations

import json
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


def host_counts(name: str, args: list[str], cwd: Path) -> dict[str, int]:
    env = dict(e.split("=", 1) for e in RunConfig().env)
    p = subprocess.run([sys.executable, str(HOST_ORACLE), str(cwd), binary("x86_64", name), *args],
                       capture_output=True, text=True, timeout=120,
                       env={"HOST_ORACLE_ENV": json.dumps(env), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)  # type: ignore[no-any-return]


HOST_DELTAS = [
    ("anon_touch", "16", "272"),
    ("anon_read", "16", "272"),
    ("file_read", "32", "272"),
    ("brk_heap", "32", "96"),
    ("stack_grow", "10", "2000"),
]


@pytest.mark.skipif(sys.platform != "linux" or __import__("platform").machine() != "x86_64",
                    reason="needs an x86-64 Linux host")
@pytest.mark.parametrize("name,a,b", HOST_DELTAS)
def test_x86_64_fault_deltas_match_host_kernel(name: str, a: str, b: str, tmp_path: Path) -> None:
    """Growing the workload adds exactly as many faults under mmuemu as on the host."""
    (tmp_path / "h").mkdir()
    host = [host_counts(name, [x], tmp_path / "h") for x in (a, b)]
    host_delta = (host[1]["minflt"] + host[1]["majflt"]) - (host[0]["minflt"] + host[0]["majflt"])
    emu = [stats("x86_64", name, [x], tmp_path) for x in (a, b)]
    emu_delta = emu[1]["faults"]["total"] - emu[0]["faults"]["total"]
    assert emu_delta == host_delta
