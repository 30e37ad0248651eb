"""The hand-written stub matches the extension, and the package type-checks against it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "repro_core"


def _run(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stub_matches_the_extension():
    _run("mypy.stubtest", "repro_core._core")


def test_package_type_checks():
    # No incremental cache: a cache left by earlier runs hid errors that a fresh clone's first run reports.
    _run("mypy", "--ignore-missing-imports", "--cache-dir", os.devnull, str(PACKAGE))
