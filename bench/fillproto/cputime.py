"""``PYTHONPATH=TREE python bench/fillproto/cputime.py OUT.json run ...``: run mmuemu's CLI
with ``Machine.run`` timed by the thread's CPU clock as well as the wall
clock, so that comparisons on a loaded machine are not skewed by time spent
waiting for a core. Writes {"wall_seconds", "cpu_seconds"} to OUT.json."""
from __future__ import annotations

import json
import sys
import time


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    from mmuemu.emu import machine
    from mmuemu.cli import main as cli_main

    orig = machine.Machine.run
    times: dict[str, float] = {}

    def run(self: machine.Machine) -> machine.RunResult:
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            return orig(self)
        finally:
            times["cpu_seconds"] = time.thread_time() - c0
            times["wall_seconds"] = time.perf_counter() - w0

    machine.Machine.run = run  # type: ignore[method-assign]
    try:
        rc = cli_main(argv[1:] if argv and argv[0] == "mmuemu" else argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    with open(out, "w") as f:
        json.dump(times, f)
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
