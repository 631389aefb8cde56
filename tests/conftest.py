"""Shared fixtures: a kernel on a fake MMU (no Unicorn), for both architectures."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from mmuemu.config import KernelConfig
from mmuemu.hw.arm64.pte import Arm64Pte
from mmuemu.hw.physmem import PhysMem
from mmuemu.hw.pte import PteFormat
from mmuemu.hw.x86_64.pte import X86_64Pte
from mmuemu.kernel.kernel import Kernel
from mmuemu.kernel.sched import TaskStruct
from mmuemu.kernel.tlbflush import RecordingFlush

REPO = Path(__file__).resolve().parent.parent

# Every ``python -m mmuemu`` a test starts (often in a temporary directory)
# imports this checkout, not whichever mmuemu happens to be installed.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
GUEST_BIN = REPO / "guest" / "bin"
ARCHES = ["x86_64", "aarch64"]
FORMATS: dict[str, type[PteFormat]] = {"x86_64": X86_64Pte, "aarch64": Arm64Pte}


@dataclass
class KernelRig:
    """A kernel, one task and the fake MMU recording flushes."""

    kern: Kernel
    task: TaskStruct
    flush: RecordingFlush
    root: Path


def make_rig(arch: str, root: Path, **knobs: object) -> KernelRig:
    config = KernelConfig(mem_bytes=knobs.pop("mem_bytes", 64 << 20), **knobs)  # type: ignore[arg-type]
    flush = RecordingFlush()
    kern = Kernel(config, PhysMem(config.mem_bytes), FORMATS[arch](), flush, root=str(root))
    mm = kern.mm_alloc()
    from mmuemu.kernel.binfmt_elf import mmap_base
    mm.mmap_base = mmap_base(kern, mm.task_size)
    return KernelRig(kern, TaskStruct(pid=1, comm="test", mm=mm), flush, root)


@pytest.fixture(params=ARCHES)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> KernelRig:
    return make_rig(request.param, tmp_path)


def guest(arch: str, name: str) -> str:
    path = GUEST_BIN / arch / name
    if not path.exists():
        pytest.skip(f"{path} not built")
    return str(path)


def have(cmd: str) -> bool:
    return any(os.access(os.path.join(d, cmd), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-traces", action="store_true", default=False,
                     help="rewrite the golden fault traces in traces/ instead of comparing "
                          "against them")


@pytest.fixture
def update_traces(request: pytest.FixtureRequest) -> bool:
    """True under ``pytest --update-traces``: golden traces are rewritten, not compared."""
    return bool(request.config.getoption("--update-traces"))
