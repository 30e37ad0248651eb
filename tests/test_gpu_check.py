"""benches/gpu_check.py, the one-command GPU check, as a smoke run on CPU: every part's figures
(the objective, verl's worker timed with J after its old-log-prob pass and inside it, J's bf16
noise) and every gpu-marked test (skipped without CUDA) land in one JSON; and gpu_check.sh's staging
of the parts that travel in separate calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("verl")

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_smoke_run_writes_one_json(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "gpu_check.py"), "--out", str(tmp_path), "--device", "cpu", "--small",
         "--bf16"],
        capture_output=True, text=True, timeout=1800,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] and report["machine"]["device"] == "cpu" and not report["skipped"]
    ratios = report["objective"]["ratios"]
    assert {"pipeline / yardstick", "J per cut / J shared", "J shared / yardstick (verl worker)"} <= set(ratios)
    assert report["objective"]["max_abs_delta_j"] < 0.02
    # verl's own worker, timed: J against its old-log-prob pass (shared after it, fused inside it), J
    # finite and verl's outputs unchanged by the fused call (asserted by the part) and near float32.
    worker = report["verl_worker"]
    plain = worker["compute_log_prob_s"]
    assert plain > 0 and worker["compute_repro_objective_s"] > 0 and worker["fused_compute_log_prob_s"] > 0
    assert worker["j_over_log_prob"] == worker["compute_repro_objective_s"] / plain
    assert worker["fused_over_log_prob"] == worker["fused_compute_log_prob_s"] / plain
    assert worker["shared_over_log_prob"] == (plain + worker["compute_repro_objective_s"]) / plain
    assert worker["log_probs_identical"] and 0 < worker["fused_tokens_ratio"] < worker["shared_tokens_ratio"]
    assert worker["fused_vs_shared_max"] < 0.1 and worker["fused_vs_per_cut_max"] < 0.1 and worker["per_cut_points"]
    assert worker["cut_points"] > 2 and worker["bf16_vs_float32"]["max"] < 0.1
    assert worker["j_alone_vs_in_batch_max"] < 0.1  # the part asserts it; here it must be reported
    bf16 = report["bf16"]["bf16_against_float32"]
    assert set(bf16) == {"shared, head in float32", "shared, head in bf16", "per_cut, head in float32",
                         "per_cut, head in bf16"}
    assert report["bf16"]["float32_shared_vs_per_cut_max"] < 1e-4
    names = {test["test"].rsplit("::", 1)[1] for test in report["tests"]}
    assert "test_two_steps_on_cuda_in_bfloat16" in names and any(n.startswith("test_cuda_matches_cpu") for n in names)
    assert any(n.startswith("test_cuda_kernels_give_finite_j_alone") for n in names)
    assert "test_fsdp2_cpu_offload[cuda]" in names
    assert {test["outcome"] for test in report["tests"]} == {"skipped"}  # no CUDA here


def test_the_parts_wait_between_calls(tmp_path):
    """`gpu_check.sh stage` keeps what a call carried (.verl's and .model's parts) for the last call."""
    for script in ("gpu_check.sh", "gpu_bundle.sh"):
        subprocess.run(["bash", "-n", str(ROOT / "benches" / script)], check=True)
    carried = tmp_path / "clone"
    (carried / ".verl" / "first").mkdir(parents=True)
    (carried / ".verl" / "first" / "ray.whl.part-aa").write_text("first part")
    (carried / ".model").mkdir()
    (carried / ".model" / "part-ab").write_text("second part")
    stage = tmp_path / "stage"
    result = subprocess.run(["bash", str(ROOT / "benches" / "gpu_check.sh"), "stage"], cwd=carried,
                            capture_output=True, text=True, env={**os.environ, "REPRO_STAGE": str(stage)})
    assert result.returncode == 0, result.stderr
    assert (stage / "verl" / "ray.whl.part-aa").read_text() == "first part"
    assert (stage / "model" / "part-ab").read_text() == "second part"
    result = subprocess.run(["bash", str(ROOT / "benches" / "gpu_check.sh")], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("usage: benches/gpu_check.sh stage | run")
