"""The trace event schema, version 1 (``docs/trace-format.md`` is its specification).

A trace is a header (what ran: arch, program, kernel knobs, which events
were kept) followed by events in the order they happened. Every event has
the same fields; a field that does not apply holds its default. Kinds are
``group.name`` strings; an event filter selects groups, kinds or bare names
(``fault``, ``fault.cow``, ``cow``, ``exit``).

Nothing here does I/O: the writers, the reader and the emulator's sink all
build on these definitions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

#: Bumped whenever a field, a kind or an encoding changes meaning.
SCHEMA_VERSION = 1
#: The JSON Lines header key whose value is the version.
JSONL_MAGIC_KEY = "mmuemu_trace"

PAGE_SHIFT = 12

# --- kinds -------------------------------------------------------------------------
#: Every kind with a one-line meaning; the order is the order of the stats tables.
KINDS: dict[str, str] = {
    "fault.anon": "do_anonymous_page allocated a zeroed page",
    "fault.zero": "do_anonymous_page mapped the shared zero page (read fault)",
    "fault.file": "do_read_fault: a page-cache page mapped read-only (with fault-around)",
    "fault.cow": "a private copy of a real page (do_cow_fault, wp_page_copy)",
    "fault.wp_zero": "a write to the zero page: wp_page_copy to a fresh zeroed page",
    "fault.wp_reuse": "a write-protect fault that reused the exclusive anon page",
    "fault.shared": "a write to a shared mapping (do_shared_fault, wp_page_shared)",
    "fault.swap": "do_swap_page brought a page back from swap",
    "fault.spurious": "the PTE already allowed the access (access flag, stale TLB)",
    "fault.bad_area": "no handler ran: no VMA, or the VMA forbids the access",
    "tlb.miss": "a TLB miss (exact TLB mode only)",
    "tlb.walk": "a hardware page walk (exact TLB mode only)",
    "flush.tlb_page": "flush_tlb_page",
    "flush.tlb_range": "flush_tlb_range",
    "flush.tlb_mm": "flush_tlb_mm",
    "flush.icache": "cache maintenance for an executable page (arm64 __sync_icache_dcache)",
    "mm.mmap": "mmap(2)",
    "mm.munmap": "munmap(2)",
    "mm.mprotect": "mprotect(2)",
    "mm.brk": "brk(2)",
    "mm.mremap": "mremap(2)",
    "mm.madvise": "madvise(2)",
    "task.fork": "fork/clone created a task",
    "task.exit": "the task ended (exit, signal or limit)",
    "reclaim.scan": "page reclaim scanned and freed pages",
    "reclaim.swap_out": "a page was written to swap and unmapped",
}

#: Groups in kind order.
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(k.split(".", 1)[0] for k in KINDS))

#: Kinds the emulator emits today; the others are reserved names for models
#: still to come (exact TLB, fork, reclaim and swap).
EMITTED_KINDS: frozenset[str] = frozenset(
    k for k in KINDS if k.split(".", 1)[0] in ("fault", "flush", "mm")) | {"task.exit"}

#: Fault outcomes.
OUTCOMES: tuple[str, ...] = ("minor", "major", "segv", "sigbus", "oom")
ACCESSES: tuple[str, ...] = ("read", "write", "exec")


def kind_group(kind: str) -> str:
    """``fault.cow`` → ``fault``."""
    return kind.split(".", 1)[0]


# --- the event -------------------------------------------------------------------
@dataclass(slots=True)
class TraceEvent:
    """One event. Field meanings are in ``docs/trace-format.md``.

    Integers that may be absent use None (``pc``, ``pfn``) or -1 (``page``).
    ``addr``, ``length`` and ``pc`` are unsigned 64-bit (``pc`` below 2**64-1,
    the binary form's "absent"); ``result`` is signed. A value record that
    nothing mutates; not ``frozen`` only because frozen construction costs
    2 µs more per event on the tracing path.
    """

    seq: int
    insns: int
    cycles: int
    pid: int
    arch: str
    kind: str
    addr: int
    length: int = 0
    access: str = ""
    user: bool = False
    role: str = ""
    page: int = -1
    pc: Optional[int] = None
    insn: str = ""
    outcome: str = ""
    pfn: Optional[int] = None
    prot: int = 0
    flags: int = 0
    result: int = 0


#: Field names in record order (the JSON Lines key order and the column order).
FIELDS: tuple[str, ...] = tuple(TraceEvent.__dataclass_fields__)
#: Fields every record carries (the others default when absent from a JSON line).
REQUIRED_FIELDS: tuple[str, ...] = ("seq", "insns", "cycles", "pid", "arch", "kind", "addr")
#: Defaults of the optional fields.
DEFAULTS: dict[str, Any] = {
    name: f.default for name, f in TraceEvent.__dataclass_fields__.items()
    if name not in REQUIRED_FIELDS
}
#: Fields written as ``"0x..."`` strings in JSON Lines.
HEX_FIELDS: frozenset[str] = frozenset({"addr", "pc"})
#: Fields holding strings (dictionary-coded in the columnar form).
STRING_FIELDS: tuple[str, ...] = ("arch", "kind", "access", "role", "insn", "outcome")


# --- the header ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TraceHeader:
    """What ran, and under which knobs. Deterministic: no times, no host paths."""

    arch: str
    program: str
    argv: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    #: how an event's ``cycles`` is computed
    cycles: str = "insns"
    version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The header as the JSON object both encodings store."""
        return {JSONL_MAGIC_KEY: self.version, "arch": self.arch, "program": self.program,
                "argv": list(self.argv), "config": self.config, "events": list(self.events),
                "cycles": self.cycles}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "TraceHeader":
        """Inverse of :meth:`to_json`. Raises ValueError naming a bad field."""
        try:
            version = obj[JSONL_MAGIC_KEY]
            arch, program = obj["arch"], obj["program"]
        except KeyError as e:
            raise ValueError(f"header lacks {e.args[0]!r}") from None
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f"header {JSONL_MAGIC_KEY!r} is not an integer")
        if not isinstance(arch, str) or not isinstance(program, str):
            raise ValueError("header arch and program must be strings")
        argv, config, events = obj.get("argv", []), obj.get("config", {}), obj.get("events", [])
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError("header argv must be a list of strings")
        if not isinstance(config, dict):
            raise ValueError("header config must be an object")
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise ValueError("header events must be a list of strings")
        return cls(arch=arch, program=program, argv=tuple(argv), config=config,
                   events=tuple(events), cycles=str(obj.get("cycles", "")), version=version)


# --- event filters -------------------------------------------------------------------
class EventFilterError(ValueError):
    """An event-filter word names no group, kind or kind name."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    """The set of kinds a trace keeps (``--trace-events``)."""

    kinds: frozenset[str]

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> "EventFilter":
        """``"fault,mm"`` → a filter.

        Words are ``all``, a group (``fault``), a kind (``fault.cow``) or the
        part of a kind after the dot (``cow``, ``exit``, ``mmap``). A word
        starting with ``-`` removes what it names: ``all,-flush``.
        """
        words = [w.strip() for w in (text.split(",") if isinstance(text, str) else text)]
        kinds: set[str] = set()
        for word in words:
            if not word:
                continue
            drop = word.startswith("-")
            name = word[1:] if drop else word
            chosen = _resolve(name)
            if not chosen:
                raise EventFilterError(
                    f"unknown trace event {name!r} (use all, a group: {', '.join(GROUPS)}; "
                    "or a kind such as fault.cow, cow, mmap, exit)")
            if drop:
                kinds -= chosen
            else:
                kinds |= chosen
        return cls(frozenset(kinds))

    def __contains__(self, kind: object) -> bool:
        return kind in self.kinds

    def names(self) -> tuple[str, ...]:
        """The kept kinds in schema order (for the trace header); ``("all",)`` for all."""
        if self.kinds >= set(KINDS):
            return ("all",)
        return tuple(k for k in KINDS if k in self.kinds)


def _resolve(name: str) -> set[str]:
    if name == "all":
        return set(KINDS)
    if name in GROUPS:
        return {k for k in KINDS if kind_group(k) == name}
    if name in KINDS:
        return {name}
    return {k for k in KINDS if k.split(".", 1)[1] == name}


ALL_EVENTS = EventFilter(frozenset(KINDS))
