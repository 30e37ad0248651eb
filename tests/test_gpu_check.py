"""benches/gpu_check.py, the one-command GPU check, as a smoke run on CPU: the objective's figures
and every gpu-marked test (skipped without CUDA) land in one JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_smoke_run_writes_one_json(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "gpu_check.py"), "--out", str(tmp_path), "--device", "cpu", "--small"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] and report["machine"]["device"] == "cpu"
    ratios = report["objective"]["ratios"]
    assert {"pipeline / yardstick", "J per cut / J shared", "J shared / yardstick (verl worker)"} <= set(ratios)
    assert report["objective"]["max_abs_delta_j"] < 0.02
    names = {test["test"].rsplit("::", 1)[1] for test in report["tests"]}
    assert "test_two_steps_on_cuda_in_bfloat16" in names and any(n.startswith("test_cuda_matches_cpu") for n in names)
    assert {test["outcome"] for test in report["tests"]} == {"skipped"}  # no CUDA here
