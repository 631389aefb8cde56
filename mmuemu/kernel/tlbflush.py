"""The kernel's view of TLB maintenance (asm/tlbflush.h; caches: cacheflush.py).

The kernel model calls these where Linux calls them; the machine supplies an
implementation that drives the hardware model (and Unicorn's soft TLB).
:class:`RecordingFlush` is the fake MMU side used by kernel tests.
"""
from __future__ import annotations

from typing import Protocol

from mmuemu.kernel.mm_types import MmStruct


class TlbFlushOps(Protocol):
    """What the kernel asks of the MMU after it changes page tables."""

    def flush_tlb_page(self, mm: MmStruct, addr: int) -> None:
        """One page's translation is stale (invlpg / TLBI VAE1IS)."""

    def flush_tlb_range(self, mm: MmStruct, start: int, end: int) -> None:
        """Translations in [start, end) are stale."""

    def flush_tlb_mm(self, mm: MmStruct) -> None:
        """Every translation of ``mm`` is stale (CR3 write / TLBI ASIDE1IS)."""

    def clear_flush_young(self, mm: MmStruct, addr: int) -> None:
        """ptep_clear_flush_young(): the PTE's accessed bit was just cleared
        (x86-64: no flush; arm64: TLBI VALE1IS without waiting)."""


class RecordingFlush:
    """A fake MMU that records every request, for kernel tests."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def flush_tlb_page(self, mm: MmStruct, addr: int) -> None:
        self.calls.append(("page", addr, addr + 4096))

    def flush_tlb_range(self, mm: MmStruct, start: int, end: int) -> None:
        self.calls.append(("range", start, end))

    def flush_tlb_mm(self, mm: MmStruct) -> None:
        self.calls.append(("mm", 0, 0))

    def clear_flush_young(self, mm: MmStruct, addr: int) -> None:
        self.calls.append(("young", addr, addr + 4096))
