"""Instructions spent handling faults, counted by callgrind: a noise-free A/B.

    python -m bench.instructions                       # anon_touch 2000, x86-64: fast and traced
    python -m bench.instructions --arch aarch64 cow_fork 512
    python -m bench.instructions --checkout /other/clone   # that clone's mmuemu
    python -m bench.instructions --whole anon_touch 20000  # the whole emulation loop

Wall time on this 2-core VM spreads 20-70% from run to run (bench/README.md,
item 5), too much to see a 5% change. This runs the workload in process,
in fast mode, once plainly and once with a binary trace, each under
``valgrind --tool=callgrind`` with collection switched on only inside the
native fault hook (``mmuemu_tlb_fill_faulting``: the walk, the Python fault
path, the trace recorder, and Unicorn's flushes made from there), and
prints the instructions counted: the same binary and arguments give the
same count to within a few hundred instructions (``PYTHONHASHSEED=0``). It
counts user-mode instructions only: the host's page faults on first touch
of the emulated RAM, most of the wall-time noise, are not in it. Each run
takes about 100 times its normal time; valgrind must be installed.

Python's cyclic garbage collector runs when enough objects have been
allocated, wherever the program then is. A full collection costs up to
about 10 M instructions here, and whether one starts inside the fault hook
depends on every allocation before it, so an unrelated change can move one
in or out (seen: 94.7 M and 101.6 M for two versions of arm64
``anon_touch 2000`` that differ by one mask test, 93.6 M and 90.7 M with
the collector off). ``--no-gc`` turns the collector off for the counted
run: the count is then the fault path's own work, the better A/B for a
change that does not alter what is allocated.

``--whole`` counts the whole emulation instead: everything inside Unicorn's
run loop (``vm_start_x86_64`` / ``vm_start_aarch64``, entered once per
``emu_start``), that is the guest's translated code, the fill hook, the
fault path, the system calls, the tracer and the collector's work done
there. Start-up, ELF loading and closing the trace are outside it. It is
what a traced run costs the emulator's own thread, all of it; what the
writer process does on the other core is in neither count.
"""
from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
FAULT_HOOK = "mmuemu_tlb_fill_faulting"


def one_run(arch: str, program: str, args: list[str], trace: bool, no_gc: bool = False) -> int:
    """The run itself (in the process valgrind watches); returns the fault count.
    ``no_gc``: the cyclic garbage collector is off while the machine runs."""
    from mmuemu.config import KernelConfig, RunConfig
    from mmuemu.emu.machine import Machine
    from mmuemu.emu.tracing import FaultTracer

    with tempfile.TemporaryDirectory(prefix="mmuemu-instructions-") as root:
        tracer = FaultTracer(os.path.join(root, "run.mmtrace"), argv=args) if trace else None
        m = Machine(str(REPO / "guest" / "bin" / arch / program), args, KernelConfig(),
                    RunConfig(mode="fast", root=root), tracer=tracer)
        if no_gc:
            gc.disable()
        m.run()  # (the guest's output goes to stdout, before the fault count)
        gc.enable()
        if tracer is not None:
            tracer.close()
        return int(m.stats()["faults"]["total"])


def collected_function(arch: str, whole: bool) -> str:
    """The function whose calls callgrind counts: the fault hook, or (``whole``)
    Unicorn's run loop for ``arch``."""
    return f"vm_start_{arch}" if whole else FAULT_HOOK


def counted(arch: str, program: str, args: list[str], trace: bool,
            checkout: Path = REPO, no_gc: bool = False,
            whole: bool = False) -> tuple[int, int]:
    """(instructions inside the fault hook, or with ``whole`` inside the whole
    emulation loop; faults) of one run under callgrind, with the mmuemu of
    ``checkout`` (built in place); ``no_gc``: the cyclic garbage collector
    off during the run."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": str(checkout)}
    # this file run as a script: the module path starts with bench/, then checkout
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           f"--toggle-collect={collected_function(arch, whole)}", sys.executable, str(Path(__file__).resolve()),
           "--one", "--arch", arch, *(["--trace"] if trace else []),
           *(["--no-gc"] if no_gc else []), program, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=checkout, env=env,
                         timeout=1800)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
        raise RuntimeError(f"run failed: {last}")
    m = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    faults = re.search(r"^faults=(\d+)$", out.stdout, re.M)
    if m is None or faults is None:
        raise RuntimeError("no callgrind total or fault count in the output")
    return int(m.group(1)), int(faults.group(1))


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.instructions",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="x86_64", choices=("x86_64", "aarch64"))
    ap.add_argument("--checkout", type=Path, default=REPO,
                    help="count the mmuemu of this clone (its extensions built in place); "
                         "default: this one")
    ap.add_argument("--no-gc", action="store_true",
                    help="turn Python's cyclic garbage collector off during the counted runs "
                         "(where its collections land moves with any change)")
    ap.add_argument("--whole", action="store_true",
                    help="count the whole emulation loop (vm_start_<arch>: guest code, "
                         "hooks, fault path, syscalls, tracer), not only the fault hook")
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("program", nargs="?", default="anon_touch")
    ap.add_argument("args", nargs="*", default=None)
    a = ap.parse_args(argv)
    args = a.args if a.args else (["2000"] if a.program == "anon_touch" else [])
    if a.one:
        print(f"faults={one_run(a.arch, a.program, args, a.trace, a.no_gc)}")
        return 0
    if shutil.which("valgrind") is None:
        print("bench.instructions: valgrind is not installed (apt-get install valgrind)",
              file=sys.stderr)
        return 1
    try:
        plain, faults = counted(a.arch, a.program, args, trace=False, checkout=a.checkout,
                                no_gc=a.no_gc, whole=a.whole)
        traced, _ = counted(a.arch, a.program, args, trace=True, checkout=a.checkout,
                            no_gc=a.no_gc, whole=a.whole)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"bench.instructions: {e}", file=sys.stderr)
        return 1
    print(f"{a.program} {' '.join(args)} on {a.arch}, fast mode: instructions inside "
          f"{collected_function(a.arch, a.whole)} (callgrind), mmuemu of {a.checkout}"
          f"{', garbage collector off' if a.no_gc else ''}")
    print(f"  untraced  {plain:>13,}  {plain / max(faults, 1):>9,.0f} a fault ({faults} faults)")
    print(f"  traced    {traced:>13,}  {traced / max(faults, 1):>9,.0f} a fault  "
          f"(x{traced / plain:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
