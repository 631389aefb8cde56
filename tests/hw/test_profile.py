"""Hardware profiles (mmuemu/hw/profile.py): the bundled figures, inheritance,
overrides, and a one-line error naming the field for every malformed input."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmuemu._types import Arch
from mmuemu.hw.profile import (
    DEFAULT_PROFILE, FAULT_TYPES, ProfileError, available_profiles, load_profile, profile_for,
)
from mmuemu.hw.tlb import FLUSH_OP_NAMES, TlbConfig
from mmuemu.kernel.mm_types import FaultKind


def test_bundled_profiles_have_the_published_geometry() -> None:
    assert {"skylake", "neoverse-n1"} <= set(available_profiles())
    sky = load_profile("skylake")
    assert sky.arch is Arch.X86_64 and sky.asid_bits == 12
    assert (sky.l1d.entries, sky.l1d.ways) == (64, 4)
    assert (sky.l1i.entries, sky.l1i.ways) == (128, 8)
    assert (sky.l2.entries, sky.l2.ways, sky.l2.sets) == (1536, 12, 128)
    assert sky.pwc_level_names == ("pml4e", "pdpte", "pde")
    n1 = load_profile("neoverse-n1")
    assert n1.arch is Arch.ARM64 and n1.asid_bits == 16
    assert (n1.l1i.entries, n1.l1i.ways, n1.l1i.sets) == (48, 48, 1)
    assert (n1.l1d.entries, n1.l1d.ways, n1.l1d.sets) == (48, 48, 1)
    assert (n1.l2.entries, n1.l2.ways, n1.l2.sets) == (1280, 5, 256)
    assert n1.pwc_level_names == ("l0", "l1", "l2")
    for p in (sky, n1):
        assert set(p.cost.fault.handler) == set(FAULT_TYPES)
        assert set(p.cost.flush) == set(FLUSH_OP_NAMES[p.arch])
        assert p.as_dict()["tlb"]["l2"]["entries"] == p.l2.entries


def test_fault_types_are_the_kernels() -> None:
    assert set(FAULT_TYPES) == {k.value for k in FaultKind}


def test_default_profile_per_arch_and_arch_check() -> None:
    assert profile_for(Arch.X86_64).name == DEFAULT_PROFILE[Arch.X86_64] == "skylake"
    assert profile_for(Arch.ARM64).name == "neoverse-n1"
    with pytest.raises(ProfileError, match="profile skylake is for x86_64, the program is aarch64"):
        profile_for(Arch.ARM64, "skylake")


def test_overrides() -> None:
    p = load_profile("skylake", ["l1d=32x4", "l2=2048x16", "l1i=16x16",
                                 "tlb.l2.replacement=plru", "cost.base_cpi=0.75",
                                 "pwc.pde=0", "tlb.asid_bits=0", "walk.latency=3"])
    assert p.l1d == TlbConfig(32, 4, latency=0.0)
    assert (p.l2.entries, p.l2.ways, p.l2.replacement) == (2048, 16, "plru")
    assert (p.l1i.entries, p.l1i.ways) == (16, 16)
    assert p.cost.base_cpi == 0.75 and p.pwc == (2, 4, 0) and p.asid_bits == 0
    assert p.walk.latency == 3.0
    assert "l1d=32x4" in p.source


def test_a_copied_file_and_a_base_profile(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "mmuemu" / "hw" / "profiles" / "skylake.toml"
    copy = tmp_path / "mine.toml"
    copy.write_text(src.read_text().replace("entries = 64 ", "entries = 32 "))
    assert load_profile(str(copy)).l1d.entries == 32
    small = tmp_path / "small.toml"
    small.write_text('base = "neoverse-n1"\nname = "small"\n[tlb.l2]\nentries = 640\n')
    p = load_profile(str(small))
    assert (p.name, p.l2.entries, p.l2.ways, p.l1d.entries) == ("small", 640, 5, 48)


def _error(tmp_path: Path, text: str, overrides: list[str] | None = None) -> str:
    f = tmp_path / "bad.toml"
    f.write_text('base = "skylake"\n' + text)
    with pytest.raises(ProfileError) as e:
        load_profile(str(f), overrides or [])
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("text, field, problem", [
    ("colour = 1\n", "colour", "unknown field"),
    ("[tlb.l1d]\nsize = 3\n", "tlb.l1d.size", "unknown field"),
    ("[tlb.l1d]\nentries = 64.0\n", "tlb.l1d.entries", "expected an integer"),
    ("[tlb.l1d]\nentries = true\n", "tlb.l1d.entries", "expected an integer"),
    ("[tlb.l1d]\nentries = 0\n", "tlb.l1d.entries", "out of range"),
    ("[tlb.l1d]\nways = 5\n", "tlb.l1d.ways", "5 does not divide entries 64"),
    ("[tlb.l1d]\nlatency = -1\n", "tlb.l1d.latency", ">= 0"),
    ("[tlb.l1d]\nlatency = \"fast\"\n", "tlb.l1d.latency", "expected a number"),
    ("[tlb.l2]\nreplacement = \"random\"\n", "tlb.l2.replacement", "not one of lru, plru"),
    ("[tlb]\nasid_bits = 17\n", "tlb.asid_bits", "out of range"),
    ("arch = \"mips\"\n", "arch", "not one of"),
    ("name = 3\n", "name", "expected a string"),
    ("tlb = 3\n", "tlb", "expected a table"),
    ("[pwc]\nl2 = 4\n", "pwc.l2", "unknown field"),  # an arm64 name in an x86 profile
    ("[pwc]\npde = -1\n", "pwc.pde", "out of range"),
    ("[cost.fault.handler]\nthp = 1\n", "cost.fault.handler.thp", "unknown field"),
    ("[cost.flush]\ntlbi_vae1is = 1\n", "cost.flush.tlbi_vae1is", "unknown field"),
    ("[walk]\nmem_ref_latency = nan\n", "walk.mem_ref_latency", "finite"),
])
def test_malformed_profile_names_the_field(tmp_path: Path, text: str, field: str,
                                           problem: str) -> None:
    msg = _error(tmp_path, text)
    assert f": {field}: " in msg and problem in msg and "bad.toml" in msg


def test_missing_fields_and_tables(tmp_path: Path) -> None:
    f = tmp_path / "partial.toml"
    f.write_text('name = "p"\narch = "x86_64"\ndescription = "d"\n')
    with pytest.raises(ProfileError, match=r"partial.toml: tlb: missing table"):
        load_profile(str(f))
    text = (Path(__file__).resolve().parents[2] / "mmuemu/hw/profiles/skylake.toml").read_text()
    f.write_text(text.replace("swap = 2500\n", ""))
    with pytest.raises(ProfileError, match=r"cost\.fault\.handler\.swap: missing field"):
        load_profile(str(f))


@pytest.mark.parametrize("override, match", [
    ("l1d=32x5", r"override 'l1d=32x5': tlb\.l1d\.ways: 5 does not divide entries 32"),
    ("l1d=32", r"override 'l1d=32': tlb\.l1d: expected ENTRIESxWAYS"),
    ("l1d=", r"expected KEY=VALUE"),
    ("nonsense", r"expected KEY=VALUE"),
    ("l3=64x4", r"override 'l3=64x4': l3: unknown field"),
    ("tlb.l1d.colour=2", r"tlb\.l1d\.colour: unknown field"),
    ("cost.base_cpi=fast", r"override 'cost.base_cpi=fast': cost\.base_cpi: expected a number"),
    ("cost.flush.invlpg=-3", r"cost\.flush\.invlpg: must be a finite number >= 0"),
    ("tlb.l2.replacement=fifo", r"tlb\.l2\.replacement: 'fifo' is not one of"),
    ("tlb..l2=1", r"not a field name"),
])
def test_malformed_override_names_the_field(override: str, match: str) -> None:
    with pytest.raises(ProfileError, match=match) as e:
        load_profile("skylake", [override])
    assert "\n" not in str(e.value)


def test_unknown_profile_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"unknown profile 'zen9' \(available: .*skylake"):
        load_profile("zen9")
    with pytest.raises(ProfileError, match=r"missing\.toml: No such file"):
        load_profile(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[tlb\n")
    with pytest.raises(ProfileError, match=r"bad\.toml: not valid TOML"):
        load_profile(str(bad))
    bad.write_text("base = 3\n")
    with pytest.raises(ProfileError, match=r"base: expected a profile name"):
        load_profile(str(bad))
    loop = tmp_path / "loop.toml"
    loop.write_text(f'base = "{loop}"\n')
    with pytest.raises(ProfileError, match=r"too many levels"):
        load_profile(str(loop))
