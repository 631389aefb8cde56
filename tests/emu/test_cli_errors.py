"""Bad input: one line on stderr naming the problem, a non-zero exit, no traceback."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.conftest import GUEST_BIN
from tests.emu.helpers import REPO

import os
import subprocess
import sys


def mmuemu(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmuemu", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def assert_one_line_error(p: subprocess.CompletedProcess[str], *words: str) -> None:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("mmuemu: error: ")
    for w in words:
        assert w in lines[0], lines[0]


def _hello() -> bytes:
    return (GUEST_BIN / "x86_64" / "hello").read_bytes()


def _mutate(tmp: Path, name: str, data: bytes) -> str:
    path = tmp / name
    path.write_bytes(data)
    path.chmod(0o755)
    return str(path)


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(mmuemu("run", str(tmp_path / "nope")), "no such file")


def test_not_elf(tmp_path: Path) -> None:
    assert_one_line_error(mmuemu("run", _mutate(tmp_path, "txt", b"#!/bin/sh\necho hi\n")),
                          "bad magic")


def test_truncated(tmp_path: Path) -> None:
    for n in (10, 63, 100, 300):
        assert_one_line_error(mmuemu("run", _mutate(tmp_path, f"t{n}", _hello()[:n])), "ELF")


def test_32_bit(tmp_path: Path) -> None:
    data = bytearray(_hello())
    data[4] = 1  # ELFCLASS32
    assert_one_line_error(mmuemu("run", _mutate(tmp_path, "c32", bytes(data))), "64-bit")


def test_big_endian(tmp_path: Path) -> None:
    data = bytearray(_hello())
    data[5] = 2  # ELFDATA2MSB
    assert_one_line_error(mmuemu("run", _mutate(tmp_path, "be", bytes(data))), "little-endian")


def test_no_pt_load(tmp_path: Path) -> None:
    data = bytearray(_hello())
    e_phoff, = struct.unpack_from("<Q", data, 32)
    _, e_phnum = struct.unpack_from("<HH", data, 54)
    for i in range(e_phnum):
        off = e_phoff + i * 56
        if struct.unpack_from("<I", data, off)[0] == 1:
            struct.pack_into("<I", data, off, 4)  # PT_LOAD -> PT_NOTE
    assert_one_line_error(mmuemu("run", _mutate(tmp_path, "noload", bytes(data))), "PT_LOAD")


def test_wrong_machine(tmp_path: Path) -> None:
    data = bytearray(_hello())
    struct.pack_into("<H", data, 18, 40)  # EM_ARM
    assert_one_line_error(mmuemu("run", _mutate(tmp_path, "arm", bytes(data))), "machine 40")


def test_arch_mismatch() -> None:
    p = mmuemu("run", "--arch", "aarch64", str(GUEST_BIN / "x86_64" / "hello"))
    assert_one_line_error(p, "x86_64", "aarch64")


@pytest.mark.parametrize("args,word", [
    (["run", "--bogus", "x"], "--bogus"),
    (["run", "--mem", "lots", "x"], "size"),
    (["run"], "BINARY"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_usage(args: list[str], word: str) -> None:
    p = mmuemu(*args)
    assert p.returncode == 2
    assert_one_line_error(p, word)


def test_guest_args_may_start_with_dashes(tmp_path: Path) -> None:
    p = mmuemu("run", "-q", "--root", str(tmp_path), str(GUEST_BIN / "x86_64" / "args"),
               "--stats", "-q", cwd=tmp_path)
    assert p.returncode == 0
    assert "argv[1]=--stats" in p.stdout and "argv[2]=-q" in p.stdout
    assert not (tmp_path / "-q").exists()


def test_insn_limit_stops_a_runaway_guest(tmp_path: Path) -> None:
    p = mmuemu("run", "-q", "--insn-limit", "5000", str(GUEST_BIN / "aarch64" / "compute"),
               "100000000", cwd=tmp_path)
    assert p.returncode == 124
    assert "instruction limit" in p.stderr and "Traceback" not in p.stderr


def test_time_limit_stops_a_runaway_guest(tmp_path: Path) -> None:
    p = mmuemu("run", "-q", "--time-limit", "0.5", str(GUEST_BIN / "x86_64" / "compute"),
               "10000000000", cwd=tmp_path)
    assert p.returncode == 124
    assert "time limit" in p.stderr


@pytest.mark.parametrize("mode", ["fast", "raw"])
def test_out_of_emulated_memory_is_an_oom_kill(tmp_path: Path, mode: str) -> None:
    """More anonymous memory than --mem and no swap: the OOM killer chooses
    the only task, which dies with the kernel's two log lines, exit 137."""
    p = mmuemu("run", "-q", "--mem", "16M", "--swap", "0", "--mode", mode,
               str(GUEST_BIN / "x86_64" / "anon_touch"), "10000", cwd=tmp_path)
    assert p.returncode == 128 + 9
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in p.stderr
    assert lines[0].startswith("anon_touch invoked oom-killer: ")
    assert lines[1].startswith("Out of memory: Killed process 1 (anon_touch) total-vm:")

def test_run_freezes_what_exists_before_the_run_and_unfreezes_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``mmuemu run`` keeps the set-up's objects out of the collector's young
    generations while the guest runs (gc.freeze), and gives the collector
    back as it was when it returns."""
    import gc

    from mmuemu import cli
    from mmuemu.emu.machine import Machine

    frozen_during: list[int] = []
    run = Machine.run

    def watching(self: Machine) -> object:
        frozen_during.append(gc.get_freeze_count())
        return run(self)

    monkeypatch.setattr(Machine, "run", watching)
    before = gc.get_freeze_count()
    assert cli.main(["run", "-q", "--root", str(tmp_path),
                     str(GUEST_BIN / "x86_64" / "hello")]) == 0
    assert len(frozen_during) == 1 and frozen_during[0] > before
    assert gc.get_freeze_count() == before
