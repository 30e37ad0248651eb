"""The hand-written stub matches the extension, and the package type-checks against it."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")
PACKAGE = Path(__file__).resolve().parents[1] / "python" / "repro_core"


def _run(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stub_matches_the_extension():
    _run("mypy.stubtest", "repro_core._core")


def test_package_type_checks():
    _run("mypy", "--ignore-missing-imports", "--no-incremental", str(PACKAGE))
