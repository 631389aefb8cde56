"""The host kernel as the oracle for x86-64 fault counts.

Runs a guest binary natively with ASLR off (personality ADDR_NO_RANDOMIZE,
inherited through posix_spawn) and the same small environment mmuemu gives
its guests, and reports the child's ru_minflt / ru_majflt from wait4.
posix_spawn (vfork-style) keeps the pre-exec faults of the child near zero.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys

ADDR_NO_RANDOMIZE = 0x0040000


def main() -> None:
    cwd, argv = sys.argv[1], sys.argv[2:]
    env = json.loads(os.environ.get("HOST_ORACLE_ENV", "{}"))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.personality(ADDR_NO_RANDOMIZE)
    os.chdir(cwd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[
        (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)])
    _, status, ru = os.wait4(pid, 0)
    print(json.dumps({"minflt": ru.ru_minflt, "majflt": ru.ru_majflt,
                      "status": os.waitstatus_to_exitcode(status)}))


if __name__ == "__main__":
    main()
