"""The package type-checks: mypy over mmuemu/ (its settings are in pyproject.toml)."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_errors_in_the_package() -> None:
    pytest.importorskip("mypy", reason="mypy is in the test extras: pip install -e '.[test]'")
    with tempfile.TemporaryDirectory(prefix="mmuemu-mypy-") as cache:
        out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", cache, "mmuemu"],
                             cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
