"""Run configuration: every knob with its Linux default and a help text.

Frozen dataclasses, like gem5's SimObject params. Each knob that changes
fault or event counts is recorded in the stats and trace headers
(:meth:`KernelConfig.as_dict`), so two runs can be compared from their files.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def default_min_free_kbytes(mem_bytes: int) -> int:
    """init_per_zone_wmark_min(): min_free_kbytes = int_sqrt(lowmem_kbytes * 16),
    clamped to [128, 65536] (mm/page_alloc.c; all of memory is lowmem here)."""
    return max(128, min(65536, math.isqrt((mem_bytes >> 10) * 16)))


@dataclass(frozen=True, slots=True)
class KernelConfig:
    """The sysctls and build options of the modelled kernel."""

    mem_bytes: int = _knob(1 << 30, "emulated physical memory (--mem)")
    fault_around_bytes: int = _knob(65536, "do_fault_around window (/sys/kernel/mm/..."
                                           "fault_around_bytes); 4096 disables it")
    ra_pages: int = _knob(32, "readahead window in pages (bdi ra_pages, 128 KiB)")
    use_zero_page: bool = _knob(True, "read faults on anonymous memory map the zero page")
    transparent_hugepage: str = _knob("never", "THP mode; only 'never' (4 KiB faults) is modelled")
    stack_rlimit: int = _knob(8 << 20, "RLIMIT_STACK (ulimit -s)")
    stack_guard_gap_pages: int = _knob(256, "stack_guard_gap in pages")
    page_cache: str = _knob("warm", "files start in the page cache ('warm', like a second run) "
                                    "or outside it ('cold', like a fresh boot)")
    hw_access_flag: bool = _knob(True, "arm64: hardware Access Flag / DBM update (FEAT_HAFDBS)")
    swap_bytes: int = _knob(-1, "swap device size (--swap); -1 = twice mem_bytes, 0 = no swap")
    swappiness: int = _knob(60, "vm.swappiness: anon versus file reclaim balance (0-200)")
    page_cluster: int = _knob(3, "vm.page-cluster: swap readahead reads 2**page_cluster slots")
    min_free_kbytes: int = _knob(-1, "vm.min_free_kbytes; -1 = Linux's default, "
                                     "sqrt(16 * lowmem kB) clamped to [128, 65536]")

    def __post_init__(self) -> None:
        # Resolve the automatic values, so stats and trace headers record the
        # sizes that were used.
        if self.swap_bytes < 0:
            object.__setattr__(self, "swap_bytes", 2 * self.mem_bytes)
        if self.min_free_kbytes < 0:
            object.__setattr__(self, "min_free_kbytes", default_min_free_kbytes(self.mem_bytes))

    def as_dict(self) -> dict[str, Any]:
        """Knob values by name, for stats and trace headers."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """What a run needs besides the kernel knobs."""

    mode: str = _knob("fast", "translation model: fast (native walks on soft-TLB fills), "
                              "raw (no MMU model: the benchmark floor)")
    root: str = _knob(".", "sandbox directory the guest's / resolves to (--root)")
    strict: bool = _knob(False, "an unknown syscall is fatal instead of -ENOSYS (--strict)")
    insn_limit: int = _knob(0, "stop after this many guest instructions; 0 = no limit")
    time_limit: float = _knob(0.0, "stop after this many seconds of wall time; 0 = no limit")
    log: str = _knob("", "kernel log file (segfault lines of child tasks, /proc/mtest); "
                         "'' = stderr")
    inspect_at: tuple[int, str] | None = _knob(None, "(syscall number, /proc/mtest command) "
                                                     "to run during the run")
    debug_vm: bool = _knob(False, "run validate_mm and the mapcount/RSS checks after "
                                  "every syscall (CONFIG_DEBUG_VM)")
    soft_tlb_max: int = _knob(1 << 20, "let Unicorn's soft TLB grow to about this many entries "
                                       "by flushing it when it overflows (fast and exact "
                                       "mode; 256 or less = never); changes tlb_fills, "
                                       "never faults")
    quantum: int = _knob(50_000, "scheduler time slice in guest instructions (with several tasks)")
    env: tuple[str, ...] = _knob(("PATH=/bin:/usr/bin", "HOME=/", "TERM=dumb", "LANG=C"),
                                 "the guest's environment")
