"""Every guest program gives the same stdout and exit status under mmuemu as
natively (x86-64 on this host) and under qemu-aarch64 (arm64)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ARCHES
from tests.emu.helpers import run_mmuemu, run_native

CASES: list[tuple[str, list[str]]] = [
    ("hello", []),
    ("exit_code", ["3"]),
    ("exit_code", ["0xff"]),
    ("args", ["one", "-x", "--two", "two words", ""]),
    ("anon_touch", ["64"]),
    ("anon_touch", ["1"]),
    ("anon_read", ["16"]),
    ("file_read", ["32"]),
    ("brk_heap", ["32"]),
    ("stack_grow", ["2000"]),
    ("segv", []),
    ("compute", ["20000"]),
    ("tlb_stress", ["64", "4"]),
    ("data_bss", []),
    ("getrusage_self", []),
    ("enosys", []),
    ("file_shared", ["16"]),
    ("file_cow", ["16"]),
    ("file_read_back", ["40"]),
    ("devzero_shared", ["16"]),
    ("rw_loop", ["16"]),
    ("madvise_dontneed", ["16"]),
    ("cow_fork", ["64"]),
    ("mmap_fork", ["16"]),
    ("mprotect_split", ["16"]),
    ("mremap_grow", ["16"]),
    ("munmap_hole", ["32"]),
]


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name,args", CASES, ids=[f"{n}-{'-'.join(a) or 'noargs'}"
                                                  for n, a in CASES])
def test_same_output_and_status_as_native(arch: str, name: str, args: list[str],
                                          tmp_path: Path) -> None:
    ref_dir = tmp_path / "native"
    emu_dir = tmp_path / "emu"
    ref_dir.mkdir()
    emu_dir.mkdir()
    ref = run_native(arch, name, args, ref_dir)
    if ref is None:
        pytest.skip("qemu-aarch64 not installed")
    got = run_mmuemu(arch, name, args, emu_dir)
    assert got.stdout == ref.stdout, got.stderr.decode(errors="replace")
    assert got.status == ref.status, got.stderr.decode(errors="replace")
    # the guest left the same files behind, with the same bytes in them
    emu_files = {p.name: p.read_bytes() for p in emu_dir.iterdir() if not p.name.startswith(".")}
    ref_files = {p.name: p.read_bytes() for p in ref_dir.iterdir()}
    assert emu_files == ref_files


@pytest.mark.parametrize("arch", ARCHES)
def test_segv_is_reported_like_the_kernel(arch: str, tmp_path: Path) -> None:
    got = run_mmuemu(arch, "segv", [], tmp_path)
    assert got.status == 139
    line = got.stderr.decode().strip().splitlines()[-1]
    if arch == "x86_64":
        # show_signal_msg(): write (2) | user (4), page not present: error 6
        assert line.startswith("segv[1]: segfault at 10 ip ")
        assert " error 6 in segv[" in line
    else:
        # DABT from EL0 (EC 0x24), IL, WnR, translation fault
        assert line.startswith("segv[1]: unhandled exception: DABT (lower EL), ESR 0x00000000920000")
        assert "translation fault at 0000000000000010 ip " in line
    assert got.stats is not None and got.stats["signal"] == 11


@pytest.mark.parametrize("arch", ARCHES)
def test_trap_instructions_kill_with_the_kernels_signal(arch: str, tmp_path: Path) -> None:
    """__builtin_trap(): x86-64 ud2 is SIGILL with do_invalid_op's "traps:"
    line; arm64 brk is SIGTRAP. The statuses are the native run's and qemu's."""
    got = run_mmuemu(arch, "trap", [], tmp_path)
    assert got.stdout == b"trap: about to trap\n"
    line = got.stderr.decode().strip().splitlines()[-1]
    if arch == "x86_64":
        assert got.status == 128 + 4
        assert line.startswith("traps: trap[1] trap invalid opcode ip:4")
        assert line.endswith(" error:0")
    else:
        assert got.status == 128 + 5
        assert line.startswith("trap[1]: breakpoint: pc=00000000004")
    assert "Traceback" not in got.stderr.decode() and "internal error" not in got.stderr.decode()


RAW_CASES = [c for c in CASES if c[0] not in ("getrusage_self", "file_shared", "mmap_fork")]


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name,args", RAW_CASES, ids=[f"{n}-{'-'.join(a) or 'noargs'}"
                                                      for n, a in RAW_CASES])
def test_raw_mode_gives_the_same_output(arch: str, name: str, args: list[str],
                                        tmp_path: Path) -> None:
    """--mode raw (no MMU model, everything pre-mapped) runs the same programs the same way.

    getrusage_self is left out: with every page populated up front, raw mode
    takes no faults, which is the point of it. file_shared and mmap_fork are
    left out: raw mode's MAP_SHARED pages are private copies (not coherent
    with the page cache, not shared across fork), as its docstring says.
    """
    fast = run_mmuemu(arch, name, args, tmp_path)
    (tmp_path / "raw").mkdir()
    raw = run_mmuemu(arch, name, args, tmp_path / "raw", ["--mode", "raw"])
    assert (raw.stdout, raw.status) == (fast.stdout, fast.status), raw.stderr.decode()
    assert raw.stats is not None and fast.stats is not None
    assert raw.stats["instructions"] == fast.stats["instructions"]
    assert raw.stats["tlb_fills"] == 0
