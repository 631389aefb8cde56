"""Raw mode's fork and context-switch cost, outside the guest.

    python -m bench.rawswitch [--arch x86_64|aarch64] [--switches 20]

Builds a raw-mode machine for ``cow_fork`` (its stack grown to 8 MiB, about
2060 pages), forks it from Python (``kernel_clone``, as the guest's fork
would), then switches between parent and child and prints the time per
fork and per switch, and the Unicorn calls a switch makes. The guests in
``guest/`` wait for their children at once, so the benchmark's ``cow_fork``
switches only twice; this measures what a guest that keeps both processes
running would pay every quantum.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from mmuemu.config import KernelConfig, RunConfig
from mmuemu.emu.machine import Machine
from mmuemu.kernel.syscalls import kernel_clone

REPO = Path(__file__).resolve().parent.parent
SIGCHLD = 17


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rawswitch", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="x86_64", choices=("x86_64", "aarch64"))
    p.add_argument("--switches", type=int, default=20, help="switch pairs to time")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        m = Machine(str(REPO / "guest" / "bin" / a.arch / "cow_fork"), ["64"],
                    kconfig=KernelConfig(), rconfig=RunConfig(mode="raw", root=root))
        t0 = time.perf_counter()
        child = m.kern.tasks[kernel_clone(m.sysctx, SIGCHLD)]
        t1 = time.perf_counter()
        m._switch_to(child)
        m._switch_to(m.init)  # both attached once
        mappers = list(m._raw_mappers.values())
        calls0 = [dict(mp.uc_calls) for mp in mappers]
        t2 = time.perf_counter()
        for _ in range(a.switches):
            m._switch_to(child)
            m._switch_to(m.init)
        t3 = time.perf_counter()
        n = 2 * a.switches
        calls = {k: sum(mp.uc_calls[k] - c[k] for mp, c in zip(mappers, calls0)) / n
                 for k in mappers[0].uc_calls}
        pages = len(mappers[0].pages)
        runs = [len(mp._get_layout().runs) for mp in mappers]
        print(f"{a.arch}: {pages} pages per task, runs {runs}; fork {1e3 * (t1 - t0):.1f} ms, "
              f"switch {1e3 * (t3 - t2) / n:.2f} ms "
              f"({calls['map']:.1f} mem_map_ptr + {calls['unmap']:.1f} mem_unmap per switch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
