"""Unicorn alone, no mmuemu: how fast one fresh instance runs a tight loop.

    python -m bench.ucspeed                  # 8 instances, 30,000,000 iterations each
    python -m bench.ucspeed --instances 4 --iterations 1000000 --keep

Each instance is a plain ``unicorn.Uc`` for x86-64 with one page of code,
``add rax, rcx; dec rcx; jnz`` (three instructions), no hooks, run to the
end of the loop; the wall time of ``emu_start`` is printed per instance.
On the machine this project is measured on, one instance takes 0.066 s and
the next 0.205 s for 30 M iterations, sometimes something between (the
speed changing during the run), with no relation to the process, the
address-space layout or the heap: so every mmuemu timing, raw mode
included, is exposed to a factor of up to three that mmuemu does not
cause (bench/README.md, item 5). ``--keep`` keeps every instance alive
(each gets a fresh translation buffer); by default each is closed before
the next is made, so its buffer's address is reused.
"""
from __future__ import annotations

import argparse
import time
from typing import Optional, Sequence

import unicorn
from unicorn.x86_const import UC_X86_REG_RCX

#: add rax, rcx; dec rcx; jnz -8 (back to the add)
LOOP = bytes.fromhex("4801c8" "48ffc9" "75f8")
BASE = 0x400000


def time_instance(iterations: int) -> tuple[float, unicorn.Uc]:
    """(seconds, the instance) for one fresh instance running the loop."""
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map(BASE, 0x1000)
    uc.mem_write(BASE, LOOP)
    uc.reg_write(UC_X86_REG_RCX, iterations)
    start = time.perf_counter()
    uc.emu_start(BASE, BASE + len(LOOP))
    return time.perf_counter() - start, uc


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ucspeed",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=8, help="fresh instances (default 8)")
    ap.add_argument("--iterations", type=int, default=30_000_000,
                    help="loop iterations per instance (default 30,000,000)")
    ap.add_argument("--keep", action="store_true",
                    help="keep every instance alive (default: close each before the next)")
    a = ap.parse_args(argv)
    if a.instances < 1 or a.iterations < 1:
        ap.error("--instances and --iterations must be positive")
    kept: list[unicorn.Uc] = []
    times: list[float] = []
    for _ in range(a.instances):
        seconds, uc = time_instance(a.iterations)
        times.append(seconds)
        if a.keep:
            kept.append(uc)
        del uc  # otherwise the last reference: the instance is closed here
    print(f"{a.iterations:,} iterations of a 3-instruction loop, one fresh Unicorn "
          f"{unicorn.__version__} instance each ({'kept' if a.keep else 'closed'}):")
    print("  " + "  ".join(f"{t:.3f}" for t in times) + " s")
    print(f"  fastest {min(times):.3f} s, slowest {max(times):.3f} s "
          f"({max(times) / min(times):.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
