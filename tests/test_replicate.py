"""benches/replicate.py --smoke: both arms train two steps on the embedded model with held-out
evaluations, and the harness writes replication.json, replication.png and its summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_replicate_smoke(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "replicate.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads((tmp_path / "replication.json").read_text())
    assert list(report["runs"]) == ["grpo", "grpo+repro"] and report["seeds"] == [0]
    for arm, seeds in report["runs"].items():
        evaluations = seeds["0"]
        assert [row["step"] for row in evaluations] == [0, 2], arm
        for row in evaluations:
            assert 0 <= row["accuracy"] <= 1 and row["completion_tokens"] > 0 and row["paragraphs"] >= 0
    # Both arms start from the same model and draw the same evaluation completions before training.
    assert report["runs"]["grpo"]["0"][0] == report["runs"]["grpo+repro"]["0"][0]
    difference = report["summary"]["grpo+repro"]["accuracy"]
    assert {"difference", "spread", "beyond_spread"} <= set(difference)
    assert (tmp_path / "replication.png").stat().st_size > 10_000
    assert "difference to grpo" in result.stdout
