"""Small shared vocabulary: architectures and access kinds.

Every layer imports these; they carry no state.
"""
from __future__ import annotations

import enum


class Arch(enum.Enum):
    """A guest architecture mmuemu models."""

    X86_64 = "x86_64"
    ARM64 = "aarch64"

    @property
    def label(self) -> str:
        """The name users type and stats files record (``x86_64``/``aarch64``)."""
        return self.value


class Access(enum.IntEnum):
    """Kind of memory access, numbered as Unicorn's TLB-fill hook numbers them.

    UC_MEM_READ = 16, UC_MEM_WRITE = 17, UC_MEM_FETCH = 18.
    """

    READ = 16
    WRITE = 17
    FETCH = 18


PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)


def page_align(addr: int) -> int:
    """Round ``addr`` up to the next page boundary (PAGE_ALIGN)."""
    return (addr + PAGE_SIZE - 1) & PAGE_MASK
