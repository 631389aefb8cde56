"""The fault path tests pte_present/pte_write/pte_special inline as
``pte & fmt.*_mask`` and builds entries with the formats' bit sets instead of
calling pfn_pte/pte_mkyoung/pte_mkdirty/pte_mkwrite: each inline form must
answer as the named helpers do, for every kind of entry the kernel writes
(each protection, made writable, dirty, old, special, write-protected,
PROT_NONE, swap entries) and for arbitrary words."""
from __future__ import annotations

import itertools
import random

import pytest

from mmuemu.hw.arm64.pte import Arm64Pte
from mmuemu.hw.pte import PteFormat, VmProt
from mmuemu.hw.x86_64.pte import X86_64Pte


def _entries(fmt: PteFormat) -> list[int]:
    out = [0]
    for r, w, x, shared in itertools.product((False, True), repeat=4):
        base = fmt.pfn_pte(0x1234, fmt.protection_map(VmProt(r, w, x, shared)))
        for e in (base, fmt.pte_mkwrite(base), fmt.pte_mkdirty(fmt.pte_mkwrite(base)),
                  fmt.pte_mkold(base), fmt.pte_mkyoung(base), fmt.pte_mkspecial(base),
                  fmt.pte_wrprotect(fmt.pte_mkwrite(base)), fmt.pte_mkclean(base)):
            out.append(e)
    out += [fmt.swp_entry_to_pte(t, off) for t in (0, 1, 5) for off in (1, 0x777, 1 << 30)]
    rnd = random.Random(7)
    out += [rnd.getrandbits(64) for _ in range(2000)]
    return out


@pytest.mark.parametrize("fmt", [X86_64Pte(), Arm64Pte()], ids=["x86_64", "aarch64"])
def test_inline_masks_answer_as_the_pte_helpers(fmt: PteFormat) -> None:
    entries = _entries(fmt)
    # the sample has both answers for each test, or it would prove nothing
    for helper in (fmt.pte_present, fmt.pte_write, fmt.pte_special):
        assert {helper(e) for e in entries} == {False, True}
    for e in entries:
        assert fmt.pte_present(e) == bool(e & fmt.present_mask), hex(e)
        assert fmt.pte_write(e) == bool(e & fmt.write_mask), hex(e)
        assert fmt.pte_special(e) == bool(e & fmt.special_mask), hex(e)


@pytest.mark.parametrize("fmt", [X86_64Pte(), Arm64Pte()], ids=["x86_64", "aarch64"])
def test_inline_entry_building_matches_the_pte_helpers(fmt: PteFormat) -> None:
    for e in _entries(fmt):
        assert fmt.pte_mkwrite(fmt.pte_mkdirty(e)) == \
            (e | fmt.write_dirty_set) & ~fmt.write_dirty_clear, hex(e)
        assert fmt.pte_mkyoung(e) == e | fmt.young_bits, hex(e)
        assert fmt.pte_mkwrite(fmt.pte_mkdirty(fmt.pte_mkyoung(e))) == \
            (e | fmt.young_bits | fmt.write_dirty_set) & ~fmt.write_dirty_clear, hex(e)
    for r, w, x, shared in itertools.product((False, True), repeat=4):
        prot = fmt.protection_map(VmProt(r, w, x, shared))
        for pfn in (1, 0x1234, (1 << 36) - 1):
            assert fmt.pfn_pte(pfn, prot) == pfn << 12 | prot


def test_arm64_user_exec_is_the_absence_of_uxn() -> None:
    # set_pte_at tests !pte_user_exec() as pte & PTE_UXN (Arm64CacheFlush.sync_skip_bits)
    from mmuemu.hw.arm64.pte import PTE_UXN
    fmt = Arm64Pte()
    entries = _entries(fmt)
    assert {fmt.pte_user_exec(e) for e in entries} == {False, True}
    for e in entries:
        assert fmt.pte_user_exec(e) == (not e & PTE_UXN), hex(e)
