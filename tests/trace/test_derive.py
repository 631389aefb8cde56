"""The packed record format (mmuemu.trace.derive): what the tracer packs at an
event comes back, derived, as the row the schema defines."""
from __future__ import annotations

from mmuemu.trace.derive import (_FAULT, _OTHER, F_MAJOR, F_PC, F_PLACED, F_PTE, F_USER,
                                 RECORD, U64, Interner, RecordDeriver)
from mmuemu.trace.schema import FIELDS


def _deriver() -> RecordDeriver:
    # a toy PTE format: bit 0 present, the pfn above bit 12
    return RecordDeriver("x86_64", lambda pte: bool(pte & 1), lambda pte: pte >> 12, cpi=2)


def test_an_mm_event_keeps_negative_results_and_pages() -> None:
    ids = Interner()
    data = RECORD.pack(_OTHER, 0, 0, 7, 1000, 0x7000_0000, 8192, -12 & U64, -3, 0x22,
                       ids.id("mm.mmap"), ids.id(""), ids.id("heap"), 0, 0, 3)
    row = dict(zip(FIELDS, _deriver().rows((ids.take_new(), data))))
    assert row["kind"] == "mm.mmap" and row["result"] == -12 and row["page"] == -3
    assert (row["length"], row["flags"], row["prot"], row["role"]) == (8192, 0x22, 3, "heap")
    assert (row["pid"], row["insns"], row["cycles"]) == (7, 1000, 2000)


def test_a_fault_is_named_placed_and_given_its_pfn() -> None:
    ids = Interner()
    pl = ("anon", 0x10_0000, False, 0)
    d = _deriver()
    recs = RECORD.pack(_FAULT, F_USER | F_MAJOR | F_PC | F_PTE, 0, 1, 5, 0x10_3008, 0x401000,
                       (0x1234 << 12) | 1, 0, 0, ids.id("wp"), ids.id("zero"), ids.id("write"),
                       ids.id("mov byte ptr [rax], 1"), ids.id(pl), 0)
    recs += RECORD.pack(_OTHER, F_PLACED, 0, 1, 6, 0x10_3000, 4096, 0, -1, 0,
                        ids.id("flush.tlb_page"), ids.id(""), 0, 0, ids.id(pl), 0)
    rows = d.rows((ids.take_new(), recs))
    fault, flush = (dict(zip(FIELDS, rows[i:i + len(FIELDS)]))
                    for i in range(0, len(rows), len(FIELDS)))
    assert fault["kind"] == "fault.wp_zero" and fault["outcome"] == "major"
    assert (fault["role"], fault["page"], fault["pfn"]) == ("anon", 3, 0x1234)
    assert fault["pc"] == 0x401000 and fault["insn"] == "mov byte ptr [rax], 1"
    assert (fault["seq"], flush["seq"]) == (0, 1)
    assert (flush["kind"], flush["role"], flush["page"]) == ("flush.tlb_page", "anon", 3)
    # a later batch refers to objects numbered in an earlier one
    again = RECORD.pack(_OTHER, F_PLACED, 0, 1, 7, 0x10_5000, 4096, 0, -1, 0,
                        ids.id("flush.tlb_page"), ids.id(""), 0, 0, ids.id(pl), 0)
    assert ids.take_new() == []
    row = dict(zip(FIELDS, d.rows(([], again))))
    assert (row["seq"], row["page"]) == (2, 5)
