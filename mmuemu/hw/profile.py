"""Hardware profiles: TLB geometry, walk caches and cycle costs, from TOML files.

A profile is a TOML file (``mmuemu/hw/profiles/NAME.toml`` for the named
ones; copy one and edit it). Every field is required, unless the file says
``base = "NAME"``: then it starts from that profile and overrides what it
lists. The layout (``skylake.toml`` documents every field)::

    name, arch, description, [base]
    [tlb]          asid_bits
    [tlb.l1i] [tlb.l1d] [tlb.l2]   entries, ways, latency, replacement
    [pwc]          walk-cache entries per level (x86: pml4e pdpte pde; arm64: l0 l1 l2)
    [walk]         latency, mem_ref_latency, hw_access_flag (arm64 FEAT_HAFDBS; default true)
    [cost]         base_cpi, syscall
    [cost.fault]   entry_exit, zero_page, copy_page, major_io
    [cost.fault.handler]   one cost per fault type (anon zero file cow wp shared swap spurious)
    [cost.flush]   one cost per TLB maintenance op of the architecture
    [cache]        line_bytes; arm64 also idc, dic, icache_aliasing, dcache_aliasing
                   (optional: the architecture's defaults, mmuemu.hw.cache)
    [cost.cache]   one cost per cache-maintenance instruction of the architecture
                   (optional: the defaults below)

Overrides (``--tlb`` on the command line) are ``l1d=32x4`` (entries x ways
of ``l1i``, ``l1d`` or ``l2``) or ``dotted.field=value`` for any field
(``cost.base_cpi=0.8``, ``tlb.l2.replacement=plru``, ``pwc.pde=0``).

Every problem is one :class:`ProfileError` line naming the field.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from mmuemu._types import Arch
from mmuemu.hw.arm64.pte import Arm64Pte
from mmuemu.hw.cache import ARM64_CACHE, CACHE_OPS, X86_CACHE, CacheConfig
from mmuemu.hw.pwc import PWC_LEVEL_NAMES
from mmuemu.hw.tlb import FLUSH_OP_NAMES, REPLACEMENT_POLICIES, TlbConfig
from mmuemu.hw.x86_64.pte import X86_64Pte

#: Fault types with a handler cost (the kernel's FaultKind values; ``faults.by_type``).
FAULT_TYPES = ("anon", "zero", "file", "cow", "wp", "shared", "swap", "spurious")
TLB_LEVELS = ("l1i", "l1d", "l2")
#: The profile used when none is given, per architecture.
DEFAULT_PROFILE: dict[Arch, str] = {Arch.X86_64: "skylake", Arch.ARM64: "neoverse-n1"}

_FORMAT_NAME = {Arch.X86_64: X86_64Pte.name, Arch.ARM64: Arm64Pte.name}
_MAX_ENTRIES = 1 << 20
#: [cache] of a profile that has none
DEFAULT_CACHE: dict[Arch, CacheConfig] = {Arch.X86_64: X86_CACHE, Arch.ARM64: ARM64_CACHE}
#: [cost.cache] of a profile that has none: cycles per instruction (estimates;
#: the bundled profiles list the same figures)
DEFAULT_CACHE_COSTS: dict[Arch, dict[str, float]] = {
    Arch.ARM64: {"dc_cvau": 20, "dc_cvac": 20, "dc_civac": 25, "dc_cvap": 30, "ic_ivau": 20,
                 "ic_iallu": 100, "ic_ialluis": 300, "dsb": 40, "isb": 20},
    Arch.X86_64: {"clflush": 250, "clflushopt": 100, "clwb": 100},
}
_CACHE_FIELDS: dict[Arch, tuple[str, ...]] = {
    Arch.X86_64: ("line_bytes",),  # x86-64 needs no cache maintenance: nothing else matters
    Arch.ARM64: ("line_bytes", "idc", "dic", "icache_aliasing", "dcache_aliasing"),
}
_MAX_ASID_BITS = 16


class ProfileError(ValueError):
    """A profile or an override is malformed; the message is one line naming the field."""


@dataclass(frozen=True, slots=True)
class WalkTiming:
    """Cycles of a page walk: a fixed part plus each table read."""

    latency: float
    mem_ref_latency: float
    #: the walker sets accessed (and dirty) bits itself: x86 always; arm64 with
    #: FEAT_HAFDBS. False on arm64: an entry with AF clear takes a software
    #: access-flag fault (the kernel's pte_mkyoung).
    hw_access_flag: bool = True


@dataclass(frozen=True, slots=True)
class FaultCosts:
    """Cycles of page-fault handling (see :mod:`mmuemu.hw.cost`)."""

    entry_exit: float
    zero_page: float
    copy_page: float
    major_io: float
    handler: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class CostParams:
    """The cycle model's parameters besides TLB and walk latencies."""

    base_cpi: float
    syscall: float
    fault: FaultCosts
    flush: Mapping[str, float]
    #: cycles per cache-maintenance instruction (mmuemu.hw.cache.CACHE_OPS)
    cache: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Profile:
    """One machine's MMU: TLBs, walk caches, timing.

    Attributes:
        name: profile name.
        arch: architecture it describes.
        description: one line for humans.
        source: the file it came from (and the overrides applied).
        asid_bits: ASID (arm64) / PCID (x86-64) width; 0 = untagged TLBs.
        l1i, l1d, l2: the TLB levels.
        pwc: walk-cache entries for levels 0, 1, 2 (0 = none).
        walk: walk timing.
        cost: everything else the cycle model needs.
        cache: what software knows of the caches (cache maintenance).
    """

    name: str
    arch: Arch
    description: str
    source: str
    asid_bits: int
    l1i: TlbConfig
    l1d: TlbConfig
    l2: TlbConfig
    pwc: tuple[int, int, int]
    walk: WalkTiming
    cost: CostParams
    cache: CacheConfig = CacheConfig()

    @property
    def pwc_level_names(self) -> tuple[str, str, str]:
        return PWC_LEVEL_NAMES[_FORMAT_NAME[self.arch]]

    def as_dict(self) -> dict[str, Any]:
        """The profile as a TOML-shaped dict (for stats and trace headers)."""
        tlb: dict[str, Any] = {"asid_bits": self.asid_bits}
        for lvl in TLB_LEVELS:
            t: TlbConfig = getattr(self, lvl)
            tlb[lvl] = {"entries": t.entries, "ways": t.ways, "latency": t.latency,
                        "replacement": t.replacement}
        return {
            "name": self.name, "arch": self.arch.label, "description": self.description,
            "source": self.source, "tlb": tlb,
            "pwc": dict(zip(self.pwc_level_names, self.pwc)),
            "walk": {"latency": self.walk.latency, "mem_ref_latency": self.walk.mem_ref_latency,
                     "hw_access_flag": self.walk.hw_access_flag},
            "cost": {
                "base_cpi": self.cost.base_cpi, "syscall": self.cost.syscall,
                "fault": {"entry_exit": self.cost.fault.entry_exit,
                          "zero_page": self.cost.fault.zero_page,
                          "copy_page": self.cost.fault.copy_page,
                          "major_io": self.cost.fault.major_io,
                          "handler": dict(self.cost.fault.handler)},
                "flush": dict(self.cost.flush),
                "cache": dict(self.cost.cache),
            },
            "cache": {k: getattr(self.cache, k) for k in _CACHE_FIELDS[self.arch]},
        }


# --- finding and reading files ---------------------------------------------------------------

def available_profiles() -> list[str]:
    """Names of the bundled profiles."""
    files = resources.files("mmuemu.hw") / "profiles"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def _read(name_or_path: str) -> tuple[dict[str, Any], str]:
    """The TOML table of a profile name or file, and its display name."""
    looks_like_path = "/" in name_or_path or name_or_path.endswith(".toml")
    if looks_like_path or Path(name_or_path).is_file():
        path = Path(name_or_path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ProfileError(f"profile {name_or_path}: {e.strerror}") from None
        source = str(path)
    else:
        res = resources.files("mmuemu.hw") / "profiles" / f"{name_or_path}.toml"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name_or_path) or not res.is_file():
            raise ProfileError(f"unknown profile {name_or_path!r} (available: "
                               f"{', '.join(available_profiles())}; or give a .toml file)")
        text = res.read_text()
        source = name_or_path
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"profile {source}: not valid TOML: {e}") from None


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _resolve(name_or_path: str, depth: int = 0) -> tuple[dict[str, Any], str]:
    table, source = _read(name_or_path)
    base = table.pop("base", None)
    if base is None:
        return table, source
    if not isinstance(base, str):
        raise ProfileError(f"profile {source}: base: expected a profile name, got {base!r}")
    if depth >= 8:
        raise ProfileError(f"profile {source}: base: too many levels of base profiles")
    parent, _ = _resolve(base, depth + 1)
    return _merge(parent, table), source


# --- overrides --------------------------------------------------------------------------------

_GEOMETRY = re.compile(r"(\d+)x(\d+)")


def _parse_value(text: str) -> Any:
    """A TOML value (``12``, ``0.5``, ``true``, ``"lru"``), or the bare text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set(table: dict[str, Any], path: Sequence[str], value: Any) -> None:
    for key in path[:-1]:
        sub = table.get(key)
        if not isinstance(sub, dict):
            sub = {}
            table[key] = sub
        table = sub
    table[path[-1]] = value


def apply_overrides(table: dict[str, Any], overrides: Sequence[str]) -> dict[str, str]:
    """Apply ``--tlb`` overrides to a profile table in place.

    Returns: field path -> the override that set it (for error messages).
    Unknown fields are reported by validation, which knows the schema.
    """
    origin: dict[str, str] = {}
    for text in overrides:
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ProfileError(f"override {text!r}: expected KEY=VALUE "
                               "(e.g. l1d=32x4 or cost.base_cpi=0.8)")
        if key in TLB_LEVELS:
            m = _GEOMETRY.fullmatch(value)
            if not m:
                raise ProfileError(f"override {text!r}: tlb.{key}: expected ENTRIESxWAYS "
                                   f"(e.g. {key}=32x4)")
            _set(table, ("tlb", key, "entries"), int(m.group(1)))
            _set(table, ("tlb", key, "ways"), int(m.group(2)))
            origin[f"tlb.{key}.entries"] = origin[f"tlb.{key}.ways"] = text
            continue
        path = key.split(".")
        if not all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in path):
            raise ProfileError(f"override {text!r}: {key}: not a field name")
        _set(table, path, _parse_value(value))
        origin[key] = text
    return origin


# --- validation -------------------------------------------------------------------------------

class _Checker:
    """Reads fields out of a profile table, reporting problems by field path."""

    def __init__(self, source: str, origin: Mapping[str, str]) -> None:
        self.source = source
        self.origin = origin

    def fail(self, path: str, problem: str) -> ProfileError:
        where = self.origin.get(path)
        if where is None:
            where = next((o for p, o in self.origin.items() if p.startswith(path + ".")), None)
        prefix = f"override {where!r}" if where else f"profile {self.source}"
        return ProfileError(f"{prefix}: {path}: {problem}")

    def table(self, t: Mapping[str, Any], path: str, keys: Sequence[str]) -> Mapping[str, Any]:
        """The sub-table at ``path`` (relative key of ``t``), checked for unknown keys."""
        key = path.rsplit(".", 1)[-1]
        if key not in t:
            raise self.fail(path, "missing table")
        sub = t[key]
        if not isinstance(sub, dict):
            raise self.fail(path, f"expected a table, got {sub!r}")
        self.only(sub, path, keys)
        return sub

    def only(self, t: Mapping[str, Any], path: str, keys: Sequence[str]) -> None:
        for k in t:
            if k not in keys:
                full = f"{path}.{k}" if path else k
                raise self.fail(full, f"unknown field (expected one of: {', '.join(keys)})")

    def _get(self, t: Mapping[str, Any], path: str) -> Any:
        key = path.rsplit(".", 1)[-1]
        if key not in t:
            raise self.fail(path, "missing field")
        return t[key]

    def string(self, t: Mapping[str, Any], path: str) -> str:
        v = self._get(t, path)
        if not isinstance(v, str):
            raise self.fail(path, f"expected a string, got {v!r}")
        return v

    def integer(self, t: Mapping[str, Any], path: str, lo: int, hi: int) -> int:
        v = self._get(t, path)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(path, f"expected an integer, got {v!r}")
        if not lo <= v <= hi:
            raise self.fail(path, f"{v} is out of range ({lo} .. {hi})")
        return v

    def number(self, t: Mapping[str, Any], path: str) -> float:
        v = self._get(t, path)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(path, f"expected a number, got {v!r}")
        if v < 0 or v != v or v == float("inf"):
            raise self.fail(path, f"must be a finite number >= 0, got {v}")
        return float(v)

    def costs(self, t: Mapping[str, Any], path: str, keys: Sequence[str]) -> Mapping[str, float]:
        sub = self.table(t, path, keys)
        return MappingProxyType({k: self.number(sub, f"{path}.{k}") for k in keys})


def _tlb_config(c: _Checker, tlb: Mapping[str, Any], level: str) -> TlbConfig:
    path = f"tlb.{level}"
    t = c.table(tlb, path, ("entries", "ways", "latency", "replacement"))
    entries = c.integer(t, f"{path}.entries", 1, _MAX_ENTRIES)
    ways = c.integer(t, f"{path}.ways", 1, _MAX_ENTRIES)
    if entries % ways:
        raise c.fail(f"{path}.ways", f"{ways} does not divide entries {entries}")
    replacement = c.string(t, f"{path}.replacement")
    if replacement not in REPLACEMENT_POLICIES:
        raise c.fail(f"{path}.replacement", f"{replacement!r} is not one of "
                                            f"{', '.join(REPLACEMENT_POLICIES)}")
    return TlbConfig(entries=entries, ways=ways, latency=c.number(t, f"{path}.latency"),
                     replacement=replacement)


def _cache_config(c: _Checker, table: Mapping[str, Any], arch: Arch) -> CacheConfig:
    """[cache]: the architecture's defaults for what the table leaves out."""
    default = DEFAULT_CACHE[arch]
    if "cache" not in table:
        return default
    t = c.table(table, "cache", _CACHE_FIELDS[arch])
    values: dict[str, Any] = {}
    for key in _CACHE_FIELDS[arch]:
        path = f"cache.{key}"
        if key not in t:
            values[key] = getattr(default, key)
        elif key == "line_bytes":
            n = c.integer(t, path, 4, 4096)
            if n & (n - 1):
                raise c.fail(path, f"{n} is not a power of two")
            values[key] = n
        else:
            v = t[key]
            if not isinstance(v, bool):
                raise c.fail(path, f"expected true or false, got {v!r}")
            values[key] = v
    return CacheConfig(**{**{k: getattr(default, k) for k in ("idc", "dic", "icache_aliasing")},
                          **values})


def validate(table: Mapping[str, Any], source: str,
             origin: Mapping[str, str] | None = None) -> Profile:
    """Build a :class:`Profile` from a TOML table, or raise :class:`ProfileError`."""
    c = _Checker(source, origin or {})
    c.only(table, "", ("name", "arch", "description", "tlb", "pwc", "walk", "cost", "cache"))
    name = c.string(table, "name")
    arch_name = c.string(table, "arch")
    arches = {a.label: a for a in Arch}
    if arch_name not in arches:
        raise c.fail("arch", f"{arch_name!r} is not one of {', '.join(arches)}")
    arch = arches[arch_name]
    description = c.string(table, "description")

    tlb = c.table(table, "tlb", ("asid_bits", *TLB_LEVELS))
    asid_bits = c.integer(tlb, "tlb.asid_bits", 0, _MAX_ASID_BITS)
    l1i, l1d, l2 = (_tlb_config(c, tlb, lvl) for lvl in TLB_LEVELS)

    level_names = PWC_LEVEL_NAMES[_FORMAT_NAME[arch]]
    pwc_t = c.table(table, "pwc", level_names)
    pwc = tuple(c.integer(pwc_t, f"pwc.{n}", 0, 4096) for n in level_names)

    walk_t = c.table(table, "walk", ("latency", "mem_ref_latency", "hw_access_flag"))
    hw_af = walk_t.get("hw_access_flag", True)
    if not isinstance(hw_af, bool):
        raise c.fail("walk.hw_access_flag", f"expected true or false, got {hw_af!r}")
    if not hw_af and arch is not Arch.ARM64:
        raise c.fail("walk.hw_access_flag", "x86-64 page walks always set the accessed bit")
    walk = WalkTiming(c.number(walk_t, "walk.latency"), c.number(walk_t, "walk.mem_ref_latency"),
                      hw_af)

    cost_t = c.table(table, "cost", ("base_cpi", "syscall", "fault", "flush", "cache"))
    fault_t = c.table(cost_t, "cost.fault",
                      ("entry_exit", "zero_page", "copy_page", "major_io", "handler"))
    fault = FaultCosts(entry_exit=c.number(fault_t, "cost.fault.entry_exit"),
                       zero_page=c.number(fault_t, "cost.fault.zero_page"),
                       copy_page=c.number(fault_t, "cost.fault.copy_page"),
                       major_io=c.number(fault_t, "cost.fault.major_io"),
                       handler=c.costs(fault_t, "cost.fault.handler", FAULT_TYPES))
    cache_costs = dict(DEFAULT_CACHE_COSTS[arch])  # [cost.cache] is optional, field by field
    if "cache" in cost_t:
        given = c.table(cost_t, "cost.cache", CACHE_OPS[arch])
        cache_costs.update({k: c.number(given, f"cost.cache.{k}") for k in given})
    cost = CostParams(base_cpi=c.number(cost_t, "cost.base_cpi"),
                      syscall=c.number(cost_t, "cost.syscall"), fault=fault,
                      flush=c.costs(cost_t, "cost.flush", FLUSH_OP_NAMES[arch]),
                      cache=MappingProxyType(cache_costs))
    cache = _cache_config(c, table, arch)
    if origin:
        source = f"{source} + {' '.join(dict.fromkeys(origin.values()))}"
    return Profile(name=name, arch=arch, description=description, source=source,
                   asid_bits=asid_bits, l1i=l1i, l1d=l1d, l2=l2,
                   pwc=(pwc[0], pwc[1], pwc[2]), walk=walk, cost=cost, cache=cache)


def load_profile(name_or_path: str, overrides: Sequence[str] = ()) -> Profile:
    """Load a named profile or a TOML file, apply ``overrides``, validate.

    Raises:
        ProfileError: one line naming the file or override and the field.
    """
    table, source = _resolve(name_or_path)
    origin = apply_overrides(table, overrides)
    return validate(table, source, origin)


def profile_for(arch: Arch, name_or_path: str | None = None,
                overrides: Sequence[str] = ()) -> Profile:
    """The profile for a run on ``arch``: the named/file one (which must be for
    ``arch``) or the architecture's default."""
    profile = load_profile(name_or_path or DEFAULT_PROFILE[arch], overrides)
    if profile.arch is not arch:
        raise ProfileError(f"profile {profile.name} is for {profile.arch.label}, "
                           f"the program is {arch.label}")
    return profile
