"""Kernel virtual addresses for kernel objects that are referred to by value.

page->mapping holds an address (with the PAGE_MAPPING_ANON low bit for an
anon_vma), and the /proc/mtest inspector prints such values. This is the
slab of the model: objects get deterministic, 64-byte aligned addresses in
the direct map and can be found again from their address.
"""
from __future__ import annotations

from typing import Any

DIRECT_MAP_BASE = 0xFFFF_8880_0000_0000


class KObjects:
    """Address allocator and registry for kernel objects (no reuse, deterministic)."""

    __slots__ = ("_next", "_by_addr")

    def __init__(self, base: int = DIRECT_MAP_BASE) -> None:
        self._next = base + 0x1000
        self._by_addr: dict[int, Any] = {}

    def alloc(self, size: int = 64) -> int:
        """kmem_cache_alloc(): a fresh address for an object of ``size`` bytes."""
        addr = self._next
        self._next += (size + 63) & ~63
        return addr

    def register(self, addr: int, obj: Any) -> None:
        """Remember which object lives at ``addr``."""
        self._by_addr[addr] = obj

    def lookup(self, addr: int) -> Any:
        """The object at ``addr`` (tag bits already stripped)."""
        return self._by_addr[addr]

    def free(self, addr: int) -> None:
        """kmem_cache_free(): forget the object (its address is not reused)."""
        self._by_addr.pop(addr, None)
