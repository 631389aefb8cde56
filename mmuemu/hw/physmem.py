"""Emulated physical memory: one zero-initialised buffer.

Unicorn maps the same buffer with ``mem_map_ptr`` (zero copy), so what the
kernel model writes here (page tables, file data, zeroed pages) is what the
guest CPU reads, and vice versa.
"""
from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt

from mmuemu._types import PAGE_SHIFT, PAGE_SIZE


#: what clear_page() writes
_ZERO_PAGE = bytes(PAGE_SIZE)


class WordView:
    """``words`` on a big-endian host: little-endian 64-bit words through numpy."""

    __slots__ = ("_u64",)

    def __init__(self, u64: "npt.NDArray[np.uint64]") -> None:
        self._u64 = u64

    def __getitem__(self, i: int) -> int:
        return int(self._u64[i])

    def __setitem__(self, i: int, value: int) -> None:
        self._u64[i] = value

    def __len__(self) -> int:
        return len(self._u64)


class PhysMem:
    """Guest RAM: ``size`` bytes starting at physical address 0.

    ``buf`` is a numpy uint8 array; ``u64`` views the same bytes as
    little-endian 64-bit words (page-table entries are read and written
    through it).
    """

    __slots__ = ("size", "buf", "u64", "words", "_bytes")

    def __init__(self, size: int) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"physical memory size must be a positive multiple of {PAGE_SIZE}")
        self.size = size
        # np.zeros is calloc: pages the guest never touches cost no host RAM.
        self.buf: npt.NDArray[np.uint8] = np.zeros(size, dtype=np.uint8)
        self.u64: npt.NDArray[np.uint64] = self.buf.view("<u8")
        #: the same words for one-at-a-time access: ``words[i]`` reads an int and
        #: ``words[i] = v`` stores one at about a third of a numpy scalar's cost
        #: (page-table entries are read and written one by one on every fault)
        self.words: "memoryview | WordView" = self.buf.data.cast("Q") \
            if sys.byteorder == "little" else WordView(self.u64)
        #: the same bytes as a memoryview: a page copied or cleared through it is
        #: one memmove, without numpy's slicing and dispatch (about 0.2 us a page
        #: instead of 0.5)
        self._bytes = self.buf.data

    @property
    def nr_frames(self) -> int:
        """Number of 4 KiB page frames."""
        return self.size >> PAGE_SHIFT

    def address(self) -> int:
        """Host address of the buffer (for Unicorn and the native walker)."""
        return int(self.buf.ctypes.data)

    def read_u64(self, pa: int) -> int:
        """Read the 8-byte little-endian word at physical address ``pa``."""
        return self.words[pa >> 3]

    def write_u64(self, pa: int, value: int) -> None:
        """Write an 8-byte little-endian word at physical address ``pa``."""
        self.words[pa >> 3] = value

    def read(self, pa: int, n: int) -> bytes:
        """Copy ``n`` bytes out of physical memory."""
        return self.buf[pa:pa + n].tobytes()

    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` into physical memory at ``pa``."""
        self.buf[pa:pa + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def zero_frame(self, pfn: int) -> None:
        """clear_page(): fill one frame with zeroes."""
        base = pfn << PAGE_SHIFT
        self._bytes[base:base + PAGE_SIZE] = _ZERO_PAGE

    def copy_frame(self, dst_pfn: int, src_pfn: int) -> None:
        """copy_page(): copy one whole frame."""
        d = dst_pfn << PAGE_SHIFT
        s = src_pfn << PAGE_SHIFT
        mem = self._bytes
        mem[d:d + PAGE_SIZE] = mem[s:s + PAGE_SIZE]
