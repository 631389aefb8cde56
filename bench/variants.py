"""How each workload is run: the variants, and which of them this machine has.

mmuemu variants are ``python -m mmuemu run`` with extra options; which ones
exist is read from the installed CLI (``mmuemu run --help``: the ``--mode``
choices and the ``--trace`` option) and confirmed by a tiny probe run, so a
variant the CLI does not offer yet is reported as unavailable, never timed.
``native`` runs the x86-64 binary directly (on an x86-64 host) and ``qemu``
runs it under qemu-user (``qemu-x86_64`` / ``qemu-aarch64``).
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bench.workloads import GUEST_BIN, REPO

#: placeholder in mmuemu_args, replaced by a per-run trace path
TRACE_PATH = "{trace}"


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str                                   # mmuemu | native | qemu
    what: str
    mmuemu_args: tuple[str, ...] = ()
    needs_mode: Optional[str] = None            # a --mode choice the CLI must offer
    needs_option: Optional[str] = None          # an option the CLI must offer
    #: another variant this one is an overhead over (trace -> fast)
    base: Optional[str] = None


VARIANTS: tuple[Variant, ...] = (
    Variant("raw", "mmuemu", "mmuemu --mode raw: same loader and syscalls, every page "
            "mapped up front, no MMU model (the floor of this design)",
            ("--mode", "raw"), needs_mode="raw"),
    Variant("fast", "mmuemu", "mmuemu --mode fast: native page walks on Unicorn soft-TLB "
            "fills, Python page-fault path", ("--mode", "fast"), needs_mode="fast"),
    Variant("fast-256", "mmuemu", "mmuemu --mode fast --soft-tlb-max 256: Unicorn's soft TLB "
            "left at its initial 256 entries (no flush to grow it)",
            ("--mode", "fast", "--soft-tlb-max", "256"), needs_mode="fast",
            needs_option="--soft-tlb-max"),
    Variant("exact", "mmuemu", "mmuemu --mode exact: per-access architected TLB model",
            ("--mode", "exact"), needs_mode="exact"),
    Variant("trace", "mmuemu", "mmuemu --mode fast --trace FILE.mmtrace (binary fault trace)",
            ("--mode", "fast", "--trace", TRACE_PATH + ".mmtrace"),
            needs_mode="fast", needs_option="--trace", base="fast"),
    Variant("trace-jsonl", "mmuemu", "mmuemu --mode fast --trace FILE.jsonl (JSON Lines trace)",
            ("--mode", "fast", "--trace", TRACE_PATH + ".jsonl"),
            needs_mode="fast", needs_option="--trace", base="fast"),
    Variant("native", "native", "the binary run directly on the host (x86-64 only here)"),
    Variant("qemu", "qemu", "qemu-user (qemu-x86_64 / qemu-aarch64): the user's alternative"),
)
BY_NAME: dict[str, Variant] = {v.name: v for v in VARIANTS}
#: the default variants, in their running order: each target's pair (fast and raw,
#: trace and fast) next to each other (see bench.cli.variant_order)
DEFAULT_VARIANTS = ("raw", "fast", "trace", "fast-256", "exact", "native", "qemu")


@dataclass
class Availability:
    """Whether a variant can run here, per architecture, and why not."""

    available: bool
    reason: str = ""
    #: architecture -> reason it is unavailable for that architecture only
    arch_reasons: dict[str, str] = field(default_factory=dict)
    tool: str = ""

    def for_arch(self, arch: str) -> tuple[bool, str]:
        if not self.available:
            return False, self.reason
        if arch in self.arch_reasons:
            return False, self.arch_reasons[arch]
        return True, ""


def select(names: Optional[str]) -> list[Variant]:
    if not names:
        return [BY_NAME[n] for n in DEFAULT_VARIANTS]
    out = []
    for raw in names.split(","):
        n = raw.strip()
        if not n:
            continue
        if n not in BY_NAME:
            raise ValueError(f"unknown variant {n!r} (choose from {', '.join(BY_NAME)})")
        if BY_NAME[n] not in out:
            out.append(BY_NAME[n])
    return out


def mmuemu_cmd(python: str = sys.executable) -> list[str]:
    return [python, "-m", "mmuemu"]


def mmuemu_env() -> dict[str, str]:
    """The environment of every mmuemu run: this checkout first on the module path.

    The runs' working directory is the guest's root, so without it
    ``python -m mmuemu`` imports whichever mmuemu is installed (an editable
    install of another clone, say), and the benchmark would time that code
    while reporting this checkout's commit.
    """
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + old if old else "")
    return env


def mmuemu_location(python: str = sys.executable) -> str:
    """Where the runs import mmuemu from (recorded with the results)."""
    try:
        out = subprocess.run([python, "-c", "import mmuemu; print(mmuemu.__file__)"],
                             capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir(),
                             env=mmuemu_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"? ({e})"
    return out.stdout.strip() or "?"


@dataclass
class CliCaps:
    """What the installed ``mmuemu run`` offers."""

    modes: tuple[str, ...]
    options: frozenset[str]
    help_text: str
    error: str = ""


def cli_caps(python: str = sys.executable) -> CliCaps:
    """Parse ``mmuemu run --help`` for the --mode choices and the option names."""
    try:
        out = subprocess.run([*mmuemu_cmd(python), "run", "--help"], capture_output=True,
                             text=True, timeout=60, env=mmuemu_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        return CliCaps((), frozenset(), "", f"mmuemu run --help: {e}")
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return CliCaps((), frozenset(), out.stdout, f"mmuemu run --help failed: {last}")
    text = out.stdout
    m = re.search(r"--mode\s+\{([^}]*)\}", text)
    modes = tuple(x.strip() for x in m.group(1).split(",")) if m else ()
    options = frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))
    return CliCaps(modes, options, text)


def _probe(variant: Variant, python: str) -> str:
    """Run ``hello`` through the variant; '' if it works, else a one-line reason."""
    with tempfile.TemporaryDirectory(prefix="mmuemu-bench-probe-") as tmp:
        args = [a.replace(TRACE_PATH, str(Path(tmp) / "probe")) for a in variant.mmuemu_args]
        cmd = [*mmuemu_cmd(python), "run", "--quiet", "--root", tmp, *args,
               str(GUEST_BIN / "x86_64" / "hello")]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp,
                                 env=mmuemu_env())
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"probe run failed: {e}"
        if out.returncode != 0 or out.stdout.strip() != "hello, world":
            last = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
            return f"probe run (hello) failed: {last[:200]}"
    return ""


def detect(variants: list[Variant], python: str = sys.executable,
           probe: bool = True) -> tuple[dict[str, Availability], CliCaps]:
    """Availability of each variant on this machine with this mmuemu."""
    caps = cli_caps(python)
    host = platform.machine()
    out: dict[str, Availability] = {}
    for v in variants:
        if v.kind == "mmuemu":
            if caps.error:
                out[v.name] = Availability(False, caps.error)
            elif v.needs_mode and v.needs_mode not in caps.modes:
                out[v.name] = Availability(False, f"`mmuemu run` has no --mode {v.needs_mode} "
                                           f"(offers: {', '.join(caps.modes) or 'none'})")
            elif v.needs_option and v.needs_option not in caps.options:
                out[v.name] = Availability(False, f"`mmuemu run` has no {v.needs_option} option")
            else:
                reason = _probe(v, python) if probe else ""
                out[v.name] = Availability(not reason, reason, tool="mmuemu")
        elif v.kind == "native":
            reasons = {a: f"host is {host}, cannot run {a} binaries natively"
                       for a in ("x86_64", "aarch64") if a != host}
            out[v.name] = Availability(True, "", reasons, tool=host)
        elif v.kind == "qemu":
            reasons = {}
            tools = []
            for a in ("x86_64", "aarch64"):
                exe = shutil.which(f"qemu-{a}")
                if exe is None:
                    reasons[a] = f"qemu-{a} not installed"
                else:
                    tools.append(_qemu_version(exe))
            ok = len(reasons) < 2
            out[v.name] = Availability(ok, "" if ok else "no qemu-user installed", reasons,
                                       tool="; ".join(tools))
    return out, caps


def _qemu_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].strip()
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return exe


def command(variant: Variant, arch: str, binary: Path, guest_args: tuple[str, ...],
            root: Path, out_dir: Path, run_id: str,
            python: str = sys.executable) -> tuple[list[str], Optional[Path], Optional[Path]]:
    """(argv, stats path, trace path) for one run."""
    if variant.kind == "native":
        return [str(binary), *guest_args], None, None
    if variant.kind == "qemu":
        return [f"qemu-{arch}", str(binary), *guest_args], None, None
    stats = out_dir / f"{run_id}.stats.json"
    trace: Optional[Path] = None
    args = []
    for a in variant.mmuemu_args:
        if TRACE_PATH in a:
            a = a.replace(TRACE_PATH, str(out_dir / run_id))
            trace = Path(a)
        args.append(a)
    cmd = [*mmuemu_cmd(python), "run", "--quiet", "--stats", str(stats), "--root", str(root),
           *args, str(binary), *guest_args]
    return cmd, stats, trace
