"""Guest paths stay inside --root; unknown syscalls; determinism."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from tests.conftest import ARCHES
from tests.emu.helpers import run_mmuemu


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "inside.txt").write_text("inside\n")
    (root / "sub").mkdir()
    (outside / "secret.txt").write_text("secret\n")
    os.symlink(outside / "secret.txt", root / "abs-link")
    os.symlink("../outside/secret.txt", root / "rel-link")
    os.symlink("inside.txt", root / "ok-link")
    return root, outside


@pytest.mark.parametrize("arch", ARCHES)
def test_paths_resolve_inside_root(arch: str, sandbox: tuple[Path, Path]) -> None:
    root, outside = sandbox
    out = run_mmuemu(arch, "open_path", [
        "inside.txt", "/inside.txt", "sub/../inside.txt", "ok-link",
        "../outside/secret.txt", "/../outside/secret.txt", "sub/../../outside/secret.txt",
        "abs-link", "rel-link", "/etc/passwd", "/dev/null",
        "+../outside/evil.txt", "+abs-link", "+made.txt",
    ], root)
    assert out.status == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    eacces, enoent = -errno.EACCES, -errno.ENOENT
    assert lines == [
        "open inside.txt: inside|",
        "open /inside.txt: inside|",
        "open sub/../inside.txt: inside|",
        "open ok-link: inside|",
        f"open ../outside/secret.txt: {eacces}",
        f"open /../outside/secret.txt: {eacces}",
        f"open sub/../../outside/secret.txt: {eacces}",
        f"open abs-link: {eacces}",
        f"open rel-link: {eacces}",
        f"open /etc/passwd: {enoent}",
        "open /dev/null: ",
        f"create ../outside/evil.txt: {eacces}",
        f"create abs-link: {eacces}",
        "create made.txt: wrote 21",
    ]
    # nothing outside changed; the file made inside holds what was written
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret\n"
    assert (root / "made.txt").read_text() == "written by open_path\n"


@pytest.mark.parametrize("arch", ARCHES)
def test_unknown_syscall_is_enosys_with_one_warning(arch: str, tmp_path: Path) -> None:
    out = run_mmuemu(arch, "enosys", [], tmp_path)
    assert out.status == 0
    assert out.stdout == b"enosys: ret=-38\n"
    warnings = [l for l in out.stderr.decode().splitlines() if "warning" in l]
    assert warnings == ["mmuemu: warning: unsupported syscall #999: returning -ENOSYS"]


@pytest.mark.parametrize("arch", ARCHES)
def test_strict_makes_unknown_syscall_fatal(arch: str, tmp_path: Path) -> None:
    out = run_mmuemu(arch, "enosys", [], tmp_path, ["--strict"])
    assert out.status == 2
    err = out.stderr.decode().strip().splitlines()
    assert err == ["mmuemu: error: unsupported syscall #999"]


@pytest.mark.parametrize("arch", ARCHES)
def test_same_run_same_counters(arch: str, tmp_path: Path) -> None:
    runs = []
    for i in range(2):
        d = tmp_path / str(i)
        d.mkdir()
        out = run_mmuemu(arch, "file_read", ["40"], d)
        assert out.stats is not None
        stats = dict(out.stats)
        stats.pop("wall_seconds")
        runs.append(json.dumps(stats, sort_keys=True))
    assert runs[0] == runs[1]
