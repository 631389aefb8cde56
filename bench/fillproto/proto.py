"""A minimal standalone virtual-TLB prototype, to bisect fast mode's cost.

    python -m bench.fillproto [options] guest/bin/<arch>/tlb_stress 4096 1953

It runs a static guest (the mmuemu guests' runtime needs four syscalls:
write, mmap, munmap, exit_group) without mmuemu's kernel model:

* ``--mode vtlb`` (default): ``UC_TLB_VIRTUAL``, guest RAM one ``mem_map_ptr``
  of ``--mem`` bytes at PA 0 (as mmuemu's fast mode), 4-level page tables in
  the real x86-64 or arm64 format in that RAM, a native fill hook walking
  them, and a Python fill hook chained after it that demand-faults anonymous
  pages in (the prototype DESIGN.md describes).
* ``--mode raw``: Unicorn's own TLB, every region ``mem_map_ptr``-ed at its
  virtual address with its permissions (as mmuemu's raw mode).

Knobs for bisecting against mmuemu's fast mode (each one adds back one thing
mmuemu does):

  --fill proto|mmuemu   the prototype's 20-line walk, or mmuemu_tlb_fill
                        (fastpath.c, with its counters and A/D logic)
  --chain 1|3           fill hooks: native, Python; or native, Python, native
  --block none|proto|mmuemu   block hook: none, a counter, or mmuemu_block
                        (instruction count table, limit check)
  --rwx                 the fill returns R|W|X for every page (proto fill)
  --ram-prot all|rw|vma Unicorn permissions of the RAM region. vtlb: all, or
                        rw with a fetch-permission hook so that code still
                        runs; rw changes two things in Unicorn 2.1.4: stores
                        no longer invalidate translated code
                        (tb_invalidate_phys_page_fast), and any memory hook
                        stops notdirty_write from calling tlb_set_dirty.
                        raw: vma (each region its own, as mmuemu raw) or all
  --populate            mmap fills the page tables at once (no faults)
  --ad                  leave A/D clear in the leaves: first touches write them

Prints one line to stderr: the emulation wall and CPU time (``emu_start``
only), fills, faults, blocks. ``--json`` prints it as JSON instead. Compare
variants with ``python -m bench.fillproto.compare`` (see bench/README.md).
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import unicorn
from elftools.elf.elffile import ELFFile
from unicorn import arm64_const, x86_const
from unicorn.unicorn_py3.unicorn import uclib

PAGE = 4096
HERE = Path(__file__).resolve().parent

# syscall numbers: (write, mmap, munmap, exit, exit_group)
SYSNR = {"x86_64": {1: "write", 9: "mmap", 11: "munmap", 60: "exit", 231: "exit"},
         "aarch64": {64: "write", 222: "mmap", 215: "munmap", 93: "exit", 94: "exit"}}
STACK_TOP = {"x86_64": 0x7FFF_FFFF_F000, "aarch64": 0xFFFF_FFFF_F000}
MMAP_TOP = {"x86_64": 0x7FFF_F7FF_F000, "aarch64": 0xFFFF_F7FF_F000}
STACK_PAGES = 64

# x86-64 entry bits
X_P, X_RW, X_US, X_A, X_D, X_NX = 1, 2, 4, 1 << 5, 1 << 6, 1 << 63
# arm64 stage-1 bits
A_VALID_PAGE, A_USER, A_RDONLY, A_AF, A_NG, A_UXN, A_PXN = 3, 1 << 6, 1 << 7, 1 << 10, 1 << 11, \
    1 << 54, 1 << 53


class ProtoState(ctypes.Structure):
    _fields_ = [("phys", ctypes.c_void_p), ("root", ctypes.c_uint64), ("arch", ctypes.c_uint32),
                ("force_rwx", ctypes.c_uint32), ("fills", ctypes.c_uint64),
                ("blocks", ctypes.c_uint64)]


def build_lib() -> ctypes.CDLL:
    """Compile proto.c into a per-user cache directory (once per source version)."""
    src = HERE / "proto.c"
    out_dir = Path(tempfile.gettempdir()) / f"mmuemu-fillproto-{os.getuid()}"
    out_dir.mkdir(exist_ok=True)
    so = out_dir / f"proto-{hashlib.sha1(src.read_bytes()).hexdigest()[:12]}.so"
    if not so.exists():
        cc = sysconfig.get_config_var("CC") or "cc"
        subprocess.run([*cc.split()[:1], "-O2", "-shared", "-fPIC", "-o", str(so), str(src)],
                       check=True)
    return ctypes.CDLL(str(so))


def hook_native(uc: unicorn.Uc, htype: int, fn: int, data: int) -> None:
    h = ctypes.c_size_t()
    err = uclib.uc_hook_add(uc._uch, ctypes.byref(h), ctypes.c_int32(htype), ctypes.c_void_p(fn),
                            ctypes.c_void_p(data), ctypes.c_uint64(1), ctypes.c_uint64(0))
    if err:
        raise unicorn.UcError(err)


def addr_of(fn: Any) -> int:
    return int(ctypes.cast(fn, ctypes.c_void_p).value or 0)


class Proto:
    def __init__(self, path: str, argv: list[str], a: argparse.Namespace) -> None:
        self.a = a
        self.ph = np.zeros(a.mem, dtype=np.uint8)
        self.u64 = self.ph.view("<u8")
        self.next_pa = 1 << 20
        with open(path, "rb") as f:
            elf = ELFFile(f)
            self.arch = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}[elf["e_machine"]]
            self.entry = elf["e_entry"]
            segs = [(s["p_vaddr"], s["p_memsz"], s["p_flags"], s.data())
                    for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        self.x86 = self.arch == "x86_64"
        self.vtlb = a.mode == "vtlb"
        if self.x86:
            self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        else:
            self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)
        uc = self.uc
        if self.vtlb:
            if not self.x86 and not a.page_1k:
                uc.ctl_set_page_size(4096)
            uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)  # type: ignore[attr-defined]
            prot = unicorn.UC_PROT_ALL if a.ram_prot == "all" else \
                unicorn.UC_PROT_READ | unicorn.UC_PROT_WRITE
            uc.mem_map_ptr(0, a.mem, prot, self.ph.ctypes.data)
            self.root = self.alloc(1)
        #: anonymous regions: (start, end, writable) for demand faults
        self.regions: list[tuple[int, int]] = []
        self.mmap_top = MMAP_TOP[self.arch]
        for vaddr, memsz, flags, data in segs:
            start = vaddr & ~(PAGE - 1)
            end = (vaddr + memsz + PAGE - 1) & ~(PAGE - 1)
            pa = self.map_region(start, end - start, bool(flags & 2), bool(flags & 1))
            off = pa + (vaddr - start)
            self.ph[off:off + len(data)] = np.frombuffer(data, dtype=np.uint8)
        # stack with argc, argv, envp (empty), auxv (AT_NULL)
        top = STACK_TOP[self.arch]
        spa = self.map_region(top - STACK_PAGES * PAGE, STACK_PAGES * PAGE, True, False)
        strings = b""
        ptrs = []
        base = top - 1024
        for s in [path, *argv]:
            ptrs.append(base + len(strings))
            strings += s.encode() + b"\0"
        words = [len(ptrs), *ptrs, 0, 0, 0, 0]
        sp = (base - 8 * len(words) - 64) & ~15
        self.sp = sp
        stack_pa = lambda va: spa + (va - (top - STACK_PAGES * PAGE))  # noqa: E731
        self.ph[stack_pa(base):stack_pa(base) + len(strings)] = np.frombuffer(strings, np.uint8)
        for i, w in enumerate(words):
            self.u64[(stack_pa(sp) >> 3) + i] = w
        self.st = ProtoState(phys=self.ph.ctypes.data, root=getattr(self, "root", 0),
                             arch=0 if self.x86 else 1, force_rwx=int(a.rwx))
        self.out = bytearray()
        self.done = False
        self._hooks()

    # --- memory -------------------------------------------------------------------
    def alloc(self, n: int) -> int:
        pa = self.next_pa
        self.next_pa += n * PAGE
        if self.next_pa > self.a.mem:
            raise MemoryError("prototype out of RAM")
        return pa

    def make_pte(self, pa: int, writable: bool, exec_: bool) -> int:
        if self.x86:
            e = pa | X_P | X_US | (X_RW if writable else 0) | (0 if exec_ else X_NX)
            return e if self.a.ad else e | X_A | (X_D if writable else 0)
        e = pa | A_VALID_PAGE | A_USER | A_NG | A_PXN | (0 if writable else A_RDONLY) | \
            (0 if exec_ else A_UXN)
        return e if self.a.ad else e | A_AF

    def pte_slot(self, va: int) -> int:
        """Physical address of the leaf entry for va (tables allocated on the way)."""
        t = self.root
        for lvl in range(3):
            i = (va >> (39 - 9 * lvl)) & 0x1FF
            e = int(self.u64[(t >> 3) + i])
            if not e & 1:
                nt = self.alloc(1)
                e = nt | (X_P | X_RW | X_US | X_A if self.x86 else 3)
                self.u64[(t >> 3) + i] = e
            t = e & 0x0000_FFFF_FFFF_F000
        return t + 8 * ((va >> 12) & 0x1FF)

    def map_region(self, va: int, size: int, writable: bool, exec_: bool,
                   populate: bool = True) -> int:
        """Back [va, va+size) with contiguous frames; returns the first frame's PA."""
        n = size // PAGE
        if not self.vtlb:
            pa = self.alloc(n)
            perms = unicorn.UC_PROT_READ | (unicorn.UC_PROT_WRITE if writable else 0) | \
                (unicorn.UC_PROT_EXEC if exec_ else 0)
            if self.a.ram_prot == "all":
                perms = unicorn.UC_PROT_ALL
            self.uc.mem_map_ptr(va, size, perms, self.ph.ctypes.data + pa)
            return pa
        if not populate:
            self.regions.append((va, va + size))
            return 0
        pa = self.alloc(n)
        for i in range(n):
            self.u64[self.pte_slot(va + i * PAGE) >> 3] = self.make_pte(pa + i * PAGE, writable, exec_)
        return pa

    # --- hooks ----------------------------------------------------------------------
    def _hooks(self) -> None:
        a, uc = self.a, self.uc
        self.lib = build_lib()
        self.native = None
        if a.fill == "mmuemu" or a.block == "mmuemu":
            sys.path.insert(0, str(HERE.parent.parent))
            from mmuemu._types import Arch
            from mmuemu.emu.native import NativeFastPath
            from mmuemu.hw.physmem import PhysMem
            pm = PhysMem.__new__(PhysMem)
            pm.size, pm.buf, pm.u64 = a.mem, self.ph, self.u64
            self.native = NativeFastPath(pm, Arch.X86_64 if self.x86 else Arch.ARM64)
            self.native.set_root(getattr(self, "root", 0))
            self.native.set_count_block(lambda addr, size: max(1, size // 4))
            self.native.set_stop(uc)
        native = self.native
        if self.vtlb:
            if a.fill == "mmuemu":
                assert native is not None
                nfill, ndata = native.tlb_fill_addr, native.state_addr
            else:
                nfill, ndata = addr_of(self.lib.proto_fill), ctypes.addressof(self.st)
            hook_native(uc, unicorn.UC_HOOK_TLB_FILL, nfill, ndata)
            uc.hook_add(unicorn.UC_HOOK_TLB_FILL, self._fault)
            if a.chain == 3:
                hook_native(uc, unicorn.UC_HOOK_TLB_FILL, nfill, ndata)
        if self.vtlb and a.ram_prot == "rw":
            hook_native(uc, unicorn.UC_HOOK_MEM_FETCH_PROT, addr_of(self.lib.proto_fetch_prot), 0)
        if a.block == "proto":
            hook_native(uc, unicorn.UC_HOOK_BLOCK, addr_of(self.lib.proto_block),
                        ctypes.addressof(self.st))
        elif a.block == "mmuemu":
            assert native is not None
            hook_native(uc, unicorn.UC_HOOK_BLOCK, native.block_hook_addr, native.state_addr)
        if self.x86:
            uc.hook_add(unicorn.UC_HOOK_INSN, self._syscall_x86, None, 1, 0,
                        x86_const.UC_X86_INS_SYSCALL)
        else:
            uc.hook_add(unicorn.UC_HOOK_INTR, self._intr)
        self.faults = 0

    def _fault(self, uc: unicorn.Uc, va: int, access: int, e: object, _: object) -> bool:
        for start, end in self.regions:
            if start <= va < end:
                pa = self.alloc(1)
                self.u64[self.pte_slot(va) >> 3] = self.make_pte(pa, True, False)
                self.faults += 1
                if self.a.chain == 3:
                    return False  # the native hook after this one fills
                e.paddr = pa  # type: ignore[attr-defined]
                e.perms = 7 if self.a.rwx else 3  # type: ignore[attr-defined]
                return True
        print(f"fillproto: fault at {va:#x} access {access} outside every region", file=sys.stderr)
        uc.emu_stop()
        return False

    def _syscall_x86(self, uc: unicorn.Uc, _: object) -> None:
        r = x86_const
        nr = uc.reg_read(r.UC_X86_REG_RAX)
        args = [uc.reg_read(x) for x in (r.UC_X86_REG_RDI, r.UC_X86_REG_RSI, r.UC_X86_REG_RDX)]
        uc.reg_write(r.UC_X86_REG_RAX, self._sys(nr, args) & (2**64 - 1))

    def _intr(self, uc: unicorn.Uc, intno: int, _: object) -> None:
        r = arm64_const
        nr = uc.reg_read(r.UC_ARM64_REG_X8)
        args = [uc.reg_read(getattr(r, f"UC_ARM64_REG_X{i}")) for i in range(3)]
        uc.reg_write(r.UC_ARM64_REG_X0, self._sys(nr, args) & (2**64 - 1))

    def _read_virt(self, va: int, n: int) -> bytes:
        if not self.vtlb:
            return bytes(self.uc.mem_read(va, n))
        out = bytearray()
        while n:
            k = min(n, PAGE - (va & (PAGE - 1)))
            e = int(self.u64[self.pte_slot(va) >> 3])
            pa = (e & 0x0000_FFFF_FFFF_F000) | (va & (PAGE - 1))
            out += self.ph[pa:pa + k].tobytes()
            va, n = va + k, n - k
        return bytes(out)

    def _sys(self, nr: int, args: list[int]) -> int:
        name = SYSNR[self.arch].get(nr)
        if name == "write":
            data = self._read_virt(args[1], args[2])
            (sys.stdout.buffer if args[0] == 1 else sys.stderr.buffer).write(data)
            return len(data)
        if name == "mmap":
            size = (args[1] + PAGE - 1) & ~(PAGE - 1)
            self.mmap_top -= size
            self.map_region(self.mmap_top, size, True, False, populate=self.a.populate)
            return self.mmap_top
        if name == "munmap":
            return 0  # the prototype leaves the mapping (the guest exits next)
        if name == "exit":
            self.done = True
            self.uc.emu_stop()
            return 0
        print(f"fillproto: syscall {nr} not supported", file=sys.stderr)
        self.uc.emu_stop()
        return -38

    def run(self) -> dict[str, object]:
        uc = self.uc
        if self.x86:
            uc.reg_write(x86_const.UC_X86_REG_RSP, self.sp)
        else:
            uc.reg_write(arm64_const.UC_ARM64_REG_SP, self.sp)
        c0, t0 = time.thread_time(), time.perf_counter()
        uc.emu_start(self.entry, 0)
        wall = time.perf_counter() - t0
        cpu = time.thread_time() - c0
        sys.stdout.flush()
        fills = self.native.fills if self.native is not None and self.a.fill == "mmuemu" \
            else self.st.fills
        return {"wall_seconds": round(wall, 6), "cpu_seconds": round(cpu, 6),
                "fills": int(fills), "faults": self.faults,
                "blocks": int(self.native.blocks if self.native is not None and
                              self.a.block == "mmuemu" else self.st.blocks),
                "exited": self.done}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fillproto",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("vtlb", "raw"), default="vtlb")
    p.add_argument("--fill", choices=("proto", "mmuemu"), default="proto")
    p.add_argument("--chain", type=int, choices=(1, 3), default=1)
    p.add_argument("--block", choices=("none", "proto", "mmuemu"), default="none")
    p.add_argument("--rwx", action="store_true")
    p.add_argument("--ram-prot", choices=("all", "rw", "vma"), default=None,
                   help="vtlb: the RAM region's permissions (default all); raw: every "
                        "region's (default vma: the segment's or mapping's own)")
    p.add_argument("--populate", action="store_true")
    p.add_argument("--ad", action="store_true")
    p.add_argument("--page-1k", action="store_true", help="arm64: keep Unicorn's 1 KiB TLB page")
    p.add_argument("--mem", type=int, default=1 << 30)
    p.add_argument("--json", action="store_true")
    p.add_argument("binary")
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if a.ram_prot is None:
        a.ram_prot = "all" if a.mode == "vtlb" else "vma"
    res = Proto(a.binary, a.args, a).run()
    if a.json:
        print(json.dumps(res), file=sys.stderr)
    else:
        print(" ".join(f"{k}={v}" for k, v in res.items()), file=sys.stderr)
    return 0 if res["exited"] else 1


if __name__ == "__main__":
    sys.exit(main())
