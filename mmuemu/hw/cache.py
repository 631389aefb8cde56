"""Cache maintenance: the instructions that keep the caches coherent with each
other and with instruction fetch, counted per instruction and per line.

This is the hardware side of ``asm/cacheflush.h``; the kernel side (which
instruction sequence Linux issues, and when) is :mod:`mmuemu.kernel.cacheflush`.

arm64 (Arm ARM D7.5 and the CTR_EL0 register): instruction fetch is not
coherent with data stores. Code written as data must be cleaned from the
D-cache to the point of unification (``dc cvau`` per line, then ``dsb ish``)
and invalidated from the I-cache (``ic ivau`` per line, ``dsb ish``, ``isb``).
CTR_EL0.IDC = 1 says the clean is not needed, CTR_EL0.DIC = 1 that the
invalidation is not; a VIPT I-cache that aliases (CTR_EL0.L1Ip) is invalidated
whole (``ic ialluis``) instead of by line. The D-cache is PIPT: one physical
line has one cache location whatever the virtual address.

x86-64 (SDM vol. 3A 11.6): stores snoop the instruction cache and the caches
are physically tagged, so Linux never issues maintenance for either;
``clflush``/``clflushopt``/``clwb`` exist for persistent memory and
non-coherent DMA and are only counted when the guest executes them.

``dcache_aliasing`` is a what-if knob (both real profiles say false): a
virtually indexed D-cache whose sets span more than a page, so one physical
line may sit in several places (nios2, parisc, ARMv6). The kernel then has to
flush every user alias of a page it writes (``flush_aliases``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmuemu._types import Arch

#: The cache-maintenance instructions counted, per architecture (stats keys
#: and the profile's ``cost.cache`` fields).
CACHE_OPS: dict[Arch, tuple[str, ...]] = {
    Arch.ARM64: ("dc_cvau", "dc_cvac", "dc_civac", "dc_cvap", "ic_ivau", "ic_iallu",
                 "ic_ialluis", "dsb", "isb"),
    Arch.X86_64: ("clflush", "clflushopt", "clwb"),
}
#: Instructions that maintain one line each, by cache.
_LINE_OPS = {"dc_cvau": "d", "dc_cvac": "d", "dc_civac": "d", "dc_cvap": "d", "ic_ivau": "i",
             "clflush": "d", "clflushopt": "d", "clwb": "d"}


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """What software must know about the caches (CTR_EL0 on arm64, CPUID on x86-64).

    Attributes:
        line_bytes: the smallest D- and I-cache line (CTR_EL0.DminLine /
            IminLine; CPUID.01H:EBX[15:8] x 8 for CLFLUSH), a power of two.
        idc: no D-cache clean is needed for instruction fetch to see stores.
        dic: no I-cache invalidation is needed for it.
        icache_aliasing: the I-cache is VIPT and aliases (invalidate it whole).
        dcache_aliasing: the D-cache aliases (see the module docstring).
    """

    line_bytes: int = 64
    idc: bool = False
    dic: bool = False
    icache_aliasing: bool = False
    dcache_aliasing: bool = False


#: x86-64: coherent, physically tagged caches; 64-byte lines.
X86_CACHE = CacheConfig(line_bytes=64, idc=True, dic=True)
#: arm64 as the seeds describe it (ARMv8.0: dc cvau + ic ivau needed), 64-byte lines.
ARM64_CACHE = CacheConfig(line_bytes=64, idc=False, dic=False)


class CacheMaintenance:
    """One CPU's cache-maintenance instructions: counted as the kernel model
    issues them (``kernel``, with the lines they covered) and as the guest
    executes them (``guest``).

    Instructions outside the architecture's set raise ValueError: the kernel
    side must not ask an x86-64 CPU for ``dc cvau``.
    """

    def __init__(self, arch: Arch, config: CacheConfig) -> None:
        if config.line_bytes < 4 or config.line_bytes & (config.line_bytes - 1):
            raise ValueError(f"cache line of {config.line_bytes} bytes is not a power of two")
        self.arch = arch
        self.config = config
        self.ops = CACHE_OPS[arch]
        self.kernel: dict[str, int] = dict.fromkeys(self.ops, 0)
        self.guest: dict[str, int] = dict.fromkeys(self.ops, 0)
        #: lines the kernel's by-line loops covered, per cache ("d", "i")
        self.lines: dict[str, int] = {"d": 0, "i": 0}

    def _check(self, op: str) -> None:
        if op not in self.kernel:
            raise ValueError(f"{op} is not a {self.arch.label} cache-maintenance instruction")

    def by_line(self, op: str, start: int, end: int) -> int:
        """One ``op`` per line of [start, end), as Linux's dcache_by_line_op and
        invalidate_icache_by_line loops do (start rounded down to a line).
        Returns the number of lines."""
        self._check(op)
        if op not in _LINE_OPS:
            raise ValueError(f"{op} does not operate on a line")
        if end <= start:
            return 0
        line = self.config.line_bytes
        n = (end - (start & ~(line - 1)) + line - 1) // line
        self.kernel[op] += n
        self.lines[_LINE_OPS[op]] += n
        return n

    def issue(self, op: str, n: int = 1) -> None:
        """The kernel issues ``op`` ``n`` times (barriers, whole-cache invalidations)."""
        self._check(op)
        self.kernel[op] += n

    def guest_executed(self, op: str, n: int = 1) -> None:
        """The guest executed ``op`` ``n`` times."""
        self._check(op)
        self.guest[op] += n

    def as_dict(self) -> dict[str, Any]:
        """The instruction counts: ``kernel`` (with the lines its loops covered) and ``guest``."""
        return {"kernel": {"insns": dict(self.kernel), "lines": dict(self.lines)},
                "guest": {"insns": dict(self.guest)}}
