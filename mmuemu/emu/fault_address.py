"""The exact address of a faulting data access.

Unicorn's TLB-fill hook reports the page, not the byte, that missed. For the
kernel-style segfault report (``segfault at 10``) the machine decodes the
faulting instruction with capstone and computes its memory operand's
effective address from the registers; the result is used only if it lies in
the page the fill reported (otherwise the page address stands).
"""
from __future__ import annotations

from typing import Callable

import capstone
from capstone import arm64_const as cs_arm64
from capstone import x86_const as cs_x86


def effective_address(md: capstone.Cs, code: bytes, pc: int,
                      read_reg: Callable[[str], int | None], page: int) -> int:
    """Best effort: the data address the instruction at ``pc`` accessed, within ``page``."""
    try:
        insn = next(md.disasm(code, pc, 1))
    except StopIteration:
        return page
    candidates: list[int] = []
    for op in insn.operands:
        if md.arch == capstone.CS_ARCH_X86 and op.type == cs_x86.X86_OP_MEM:
            m = op.mem
            ea = m.disp
            if m.base:
                name = insn.reg_name(m.base)
                base = pc + insn.size if name == "rip" else read_reg(name)
                if base is None:
                    continue
                ea += base
            if m.index:
                idx = read_reg(insn.reg_name(m.index))
                if idx is None:
                    continue
                ea += idx * m.scale
            if m.segment:
                seg = read_reg(insn.reg_name(m.segment) + "_base")
                ea += seg or 0
            candidates.append(ea & 0xFFFF_FFFF_FFFF_FFFF)
        elif md.arch == capstone.CS_ARCH_ARM64 and op.type == cs_arm64.ARM64_OP_MEM:
            m = op.mem
            base = read_reg(insn.reg_name(m.base)) if m.base else 0
            if base is None:
                continue
            ea = base + m.disp
            if m.index:
                idx = read_reg(insn.reg_name(m.index).replace("w", "x", 1))
                if idx is None:
                    continue
                ea += idx
            candidates.append(ea & 0xFFFF_FFFF_FFFF_FFFF)
    for ea in candidates:
        if ea & ~0xFFF == page & ~0xFFF:
            return ea
    return page
