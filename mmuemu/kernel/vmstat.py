"""Event counters named as /proc/vmstat names them, plus fault classification.

Models include/linux/vm_event_item.h. One instance per emulated machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from mmuemu.kernel.mm_types import FaultKind


@dataclass(slots=True)
class VmStat:
    """Machine-wide VM events."""

    pgfault: int = 0
    pgmajfault: int = 0
    pgalloc: int = 0
    pgfree: int = 0
    pgactivate: int = 0
    pgdeactivate: int = 0
    pswpin: int = 0
    pswpout: int = 0
    pgpgin: int = 0
    pgpgout: int = 0
    pgrefill: int = 0
    pgscan_kswapd: int = 0
    pgscan_direct: int = 0
    pgsteal_kswapd: int = 0
    pgsteal_direct: int = 0
    allocstall: int = 0
    kswapd_wakeups: int = 0
    nr_vmscan_write: int = 0
    swap_ra: int = 0
    swap_cache_add: int = 0
    swap_cache_delete: int = 0
    swap_cache_find_total: int = 0
    swap_cache_find_success: int = 0
    oom_kill: int = 0
    thp_fault_alloc: int = 0
    cow_copies: int = 0
    cow_reuses: int = 0
    fault_around_mapped: int = 0
    readahead_pages: int = 0
    by_type: dict[str, int] = field(default_factory=lambda: {k.value: 0 for k in FaultKind})

    def as_dict(self) -> dict[str, object]:
        """Counters by name (by_type as a nested dict)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, dict) else value
        return out
