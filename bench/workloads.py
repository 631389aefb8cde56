"""The benchmark's workloads: which guest program, with which arguments, per tier.

Every workload runs on both architectures (``guest/bin/<arch>/<program>``).
``full`` sizes are what the README table shows; ``quick`` sizes keep the whole
``--quick`` run near two minutes on a 2-core machine; ``smoke`` sizes are for
the test suite (a fraction of a second each).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
GUEST_BIN = REPO / "guest" / "bin"
ARCHES = ("x86_64", "aarch64")
TIERS = ("smoke", "quick", "full")

#: the file that file_scan maps, created in the guest's root directory
SCAN_FILE = "bench_scan.dat"


def make_scan_file(root: Path, size: int) -> None:
    """A deterministic file of ``size`` bytes (64-bit words i * golden ratio)."""
    import numpy as np

    path = root / SCAN_FILE
    if path.exists() and path.stat().st_size == size:
        return
    words = np.arange(size // 8, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    words.tofile(path)


@dataclass(frozen=True)
class Workload:
    """One guest program run, sized per tier."""

    name: str
    kind: str                       # tlb | fault | file | cow | compute
    program: str
    args: dict[str, tuple[str, ...]]  # tier -> guest arguments
    what: str
    #: pages touched for the first time (for "cost per first touch"), per tier
    first_touch_pages: dict[str, int] = field(default_factory=dict)
    #: per-tier size of a file to create in the guest root before the run
    file_bytes: dict[str, int] = field(default_factory=dict)

    def argv(self, tier: str) -> tuple[str, ...]:
        return self.args[tier]

    def binary(self, arch: str) -> Path:
        return GUEST_BIN / arch / self.program

    def setup(self, root: Path, tier: str) -> None:
        """Create what the guest needs in its root directory (same for every variant)."""
        if self.file_bytes:
            make_scan_file(root, self.file_bytes[tier])

    def label(self, tier: str) -> str:
        return f"{self.program} {' '.join(self.args[tier])}".strip()


def _tlb(pages: int, accesses: dict[str, int]) -> Workload:
    return Workload(
        name=f"tlb_stress_{pages}", kind="tlb", program="tlb_stress",
        args={t: (str(pages), str(max(1, n // pages))) for t, n in accesses.items()},
        what=f"TLB stressor: {pages} pages, cyclic read+write of one byte per page")


#: accesses (page touches) per TLB-stressor run, per tier
TLB_ACCESSES = {"smoke": 20_000, "quick": 1_000_000, "full": 8_000_000}

WORKLOADS: tuple[Workload, ...] = (
    *(_tlb(w, TLB_ACCESSES) for w in (16, 64, 512, 4096)),
    Workload(
        name="anon_touch", kind="fault", program="anon_touch",
        args={"smoke": ("500",), "quick": ("10000",), "full": ("20000",)},
        first_touch_pages={"smoke": 500, "quick": 10000, "full": 20000},
        what="fault throughput: one write fault per page of a fresh anonymous mapping"),
    Workload(
        name="file_scan", kind="file", program="file_scan",
        args={"smoke": (SCAN_FILE, "1"), "quick": (SCAN_FILE, "4"), "full": (SCAN_FILE, "8")},
        file_bytes={"smoke": 64 << 10, "quick": 8 << 20, "full": 16 << 20},
        what="file read: mmap a page-cached file, read 8 bytes every 64, munmap; "
             "repeated (file faults with fault-around each pass)"),
    Workload(
        name="cow_fork", kind="cow", program="cow_fork",
        args={"smoke": ("64",), "quick": ("2048",), "full": ("8192",)},
        what="fork + COW: the child writes every page of an anon region shared at fork "
             "(COW copies), the parent waits, then writes every page (reuse)"),
    Workload(
        name="compute", kind="compute", program="compute",
        args={"smoke": ("100000",), "quick": ("20000000",), "full": ("50000000",)},
        what="compute loop: register-only arithmetic, no memory traffic"),
)

BY_NAME: dict[str, Workload] = {w.name: w for w in WORKLOADS}


def select(names: Optional[str]) -> list[Workload]:
    """Workloads named in a comma list ('tlb' selects every TLB stressor); all if None."""
    if not names:
        return list(WORKLOADS)
    out: list[Workload] = []
    for raw in names.split(","):
        name = raw.strip()
        if not name:
            continue
        hits = [w for w in WORKLOADS if w.name == name or w.kind == name
                or w.program == name]
        if not hits:
            raise ValueError(f"unknown workload {name!r} (choose from "
                             f"{', '.join(w.name for w in WORKLOADS)}, or a kind: "
                             f"{', '.join(sorted({w.kind for w in WORKLOADS}))})")
        out.extend(h for h in hits if h not in out)
    return out

