"""Random sequences of mmap, munmap, mprotect, mremap, brk, fork and touches,
checked after every step against a plain reference model of the address
space (which pages are mapped with which protection), with validate_mm()
and the mapcount/RSS invariants."""
from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmuemu.kernel.debug_vm import check_mapcounts, validate_mm
from mmuemu.kernel.fault import AccessType, do_user_addr_fault
from mmuemu.kernel.fork import copy_process
from mmuemu.kernel.mmap import (
    MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, do_mmap, do_mprotect,
    do_munmap, sys_brk,
)
from mmuemu.kernel.mremap import MREMAP_MAYMOVE, do_mremap
from mmuemu.kernel.exit import do_exit
from tests.conftest import make_rig

PAGE = 4096
BASE = 0x10_0000_0000  # a small window, so that operations overlap often
WINDOW = 16

_touch = st.tuples(st.just("touch"), st.integers(0, WINDOW - 1), st.sampled_from([0, 1]),
                  st.just(0))
op = st.one_of(
    _touch, _touch, _touch,
    st.tuples(st.just("mmap"), st.integers(0, WINDOW - 1), st.integers(1, 6), st.sampled_from([1, 3])),
    st.tuples(st.just("munmap"), st.integers(0, WINDOW - 1), st.integers(1, 6), st.just(0)),
    st.tuples(st.just("mprotect"), st.integers(0, WINDOW - 1), st.integers(1, 6),
              st.sampled_from([0, 1, 3])),
    st.tuples(st.just("touch"), st.integers(0, WINDOW - 1), st.sampled_from([0, 1]), st.just(0)),
    st.tuples(st.just("mremap"), st.integers(0, WINDOW - 1), st.integers(1, 4), st.integers(1, 6)),
    st.tuples(st.just("brk"), st.integers(0, 12), st.just(0), st.just(0)),
    st.tuples(st.just("fork"), st.just(0), st.just(0), st.just(0)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=40), arch=st.sampled_from(["x86_64", "aarch64"]))
def test_random_vma_operations_keep_every_invariant(ops: list[tuple[str, int, int, int]],
                                                     arch: str, tmp_path: Path) -> None:
    rig = make_rig(arch, tmp_path)
    kern, task = rig.kern, rig.task
    mm = task.mm
    mm.start_brk = mm.brk = 0x60_0000
    model: dict[int, int] = {}  # page index in the window -> prot
    children = []
    for name, a, b, c in ops:
        if name == "mmap":
            n = min(b, WINDOW - a)
            r = do_mmap(mm, None, BASE + a * PAGE, n * PAGE, c,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, 0)
            assert r == BASE + a * PAGE
            for i in range(a, a + n):
                model[i] = c
        elif name == "munmap":
            n = min(b, WINDOW - a)
            assert do_munmap(mm, BASE + a * PAGE, n * PAGE) == 0
            for i in range(a, a + n):
                model.pop(i, None)
        elif name == "mprotect":
            n = min(b, WINDOW - a)
            r = do_mprotect(mm, BASE + a * PAGE, n * PAGE, c)
            if all(i in model for i in range(a, a + n)):
                assert r == 0
                for i in range(a, a + n):
                    model[i] = c
            else:
                assert r == -12  # -ENOMEM: a hole in the range
                # pages before the first hole may have changed: resync from the tree
                for i in range(a, a + n):
                    if i not in model:
                        break
                    model[i] = c
        elif name == "touch":
            addr = BASE + a * PAGE
            access = AccessType.WRITE if b else AccessType.READ
            sig = do_user_addr_fault(task, addr, access).signal
            prot = model.get(a)
            allowed = prot is not None and (prot & 2 if b else prot & 1)
            assert (sig == 0) == bool(allowed), (name, a, b, prot, sig)
        elif name == "mremap":
            old, new = b, c
            if all(i in model for i in range(a, min(a + old, WINDOW))) and a + old <= WINDOW:
                prot = {model[i] for i in range(a, a + old)}
                r = do_mremap(mm, BASE + a * PAGE, old * PAGE, new * PAGE, MREMAP_MAYMOVE, 0)
                if len(prot) == 1 and r >= 0:
                    p = prot.pop()
                    for i in range(a, a + old):
                        model.pop(i)
                    if BASE <= r < BASE + WINDOW * PAGE:
                        start = (r - BASE) // PAGE
                        for i in range(start, min(start + new, WINDOW)):
                            model[i] = p
        elif name == "brk":
            sys_brk(mm, 0x60_0000 + a * PAGE)
        elif name == "fork" and len(children) < 3:
            child = copy_process(task, 2 + len(children))
            kern.tasks[child.pid] = child
            children.append(child)
        validate_mm(mm)
        for ch in children:
            validate_mm(ch.mm)
        check_mapcounts(kern, [mm] + [ch.mm for ch in children])
        # the window's mapped pages and protections equal the model's
        seen: dict[int, int] = {}
        for vma in mm.mm_rb:
            if vma.vm_end <= BASE or vma.vm_start >= BASE + WINDOW * PAGE:
                continue
            prot = (1 if vma.vm_flags & 1 else 0) | (2 if vma.vm_flags & 2 else 0)
            for addr in range(max(vma.vm_start, BASE), min(vma.vm_end, BASE + WINDOW * PAGE), PAGE):
                seen[(addr - BASE) // PAGE] = prot
        assert seen == model
    for ch in children:
        do_exit(ch, 0)
    check_mapcounts(kern, [mm])


def _seeded_ops(seed: int, n: int = 40) -> list[tuple[str, int, int, int]]:
    """Plain random sequences weighted towards overlapping map/touch/unmap."""
    import random
    rng = random.Random(seed)
    ops: list[tuple[str, int, int, int]] = []
    for _ in range(n):
        kind = rng.choice(["mmap", "mmap", "munmap", "mprotect", "touch", "touch", "touch",
                           "mremap", "brk", "fork"])
        a = rng.randrange(WINDOW)
        if kind == "mmap":
            ops.append((kind, a, rng.randint(1, 6), rng.choice([1, 3])))
        elif kind == "munmap":
            ops.append((kind, a, rng.randint(1, 6), 0))
        elif kind == "mprotect":
            ops.append((kind, a, rng.randint(1, 6), rng.choice([0, 1, 3])))
        elif kind == "touch":
            ops.append((kind, a, rng.choice([0, 1, 1]), 0))
        elif kind == "mremap":
            ops.append((kind, a, rng.randint(1, 4), rng.randint(1, 6)))
        elif kind == "brk":
            ops.append((kind, rng.randint(0, 12), 0, 0))
        else:
            ops.append((kind, 0, 0, 0))
    return ops


def test_seeded_random_vma_operations(tmp_path: Path) -> None:
    inner = test_random_vma_operations_keep_every_invariant.hypothesis.inner_test  # type: ignore[attr-defined]
    for seed in range(120):
        d = tmp_path / str(seed)
        d.mkdir()
        inner(ops=_seeded_ops(seed), arch="x86_64" if seed % 2 else "aarch64", tmp_path=d)
