"""`repro train`'s options beyond RePro's settings, end to end on CPU with real TRL and peft: TRL's reward
functions by name or import path, TRL's PEFT flags, and the shuffled-rewards control of the trainers."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

pytest.importorskip("trl")

from repro_core._api import Cuts
from repro_core.cli import main
from repro_core.trl.grpo import shuffled_within_groups


def test_shuffled_rewards_stay_in_their_group_and_keep_the_baselines_zero():
    cuts = Cuts.from_rows([[0, 3, 5], [0, 2], [0, 1, 4, 6], [0], [0, 7]])
    rewards = np.array([0, 1, 2, 0, 3, 0, 4, 5, 6, 0, 0, 7.0])
    groups = np.array([0, 0, 1, 1, 1])
    seen = set()
    for seed in range(20):
        shuffled = shuffled_within_groups(rewards, cuts, groups, np.random.default_rng(seed))
        first = np.asarray(cuts.offsets[:-1])
        assert (shuffled[first] == 0).all()
        assert sorted(shuffled[[1, 2, 4]]) == [1, 2, 3]  # group 0's placed rewards, among its own points
        assert sorted(shuffled[[6, 7, 8, 11]]) == [4, 5, 6, 7]
        seen.add(tuple(shuffled))
    assert len(seen) > 5  # a permutation, not the identity
    assert (rewards == [0, 1, 2, 0, 3, 0, 4, 5, 6, 0, 0, 7.0]).all()  # the input is left alone


@pytest.mark.slow
def test_reward_functions_peft_and_shuffled_rewards_in_one_run(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    (tmp_path / "prompts.jsonl").write_text("".join(
        json.dumps({"question": f"{a} + {a}?", "answer": str(2 * a)}) + "\n" for a in range(8)))
    (tmp_path / "my_rewards.py").write_text("def shorter(completion_ids, **kwargs):\n"
                                            "    return [-len(ids) / 100 for ids in completion_ids]\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code = main(["train", "--model_name_or_path", str(tiny_checkpoint), "--output-dir", str(out),
                 "--dataset_name", "prompts.jsonl", "--max-steps", "2", "--per-device-train-batch-size", "4",
                 "--num_generations", "4", "--max-completion-length", "12", "--repro_k", "4",
                 "--reward_funcs", "boxed_accuracy", "my_rewards.shorter", "--reward_weights", "1", "0.5",
                 "--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj",
                 "--repro_shuffle_rewards", "true", "--learning_rate", "1e-3"])
    assert code == 0, capsys.readouterr().err
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [entry for entry in logged if "reward" in entry]
    assert len(steps) == 2
    for entry in steps:
        assert -0.12 <= entry["rewards/shorter/mean"] < 0 and "rewards/boxed_accuracy/mean" in entry
        assert "repro/J_b" in entry  # RePro ran; its rewards were shuffled before the advantages
    # The saved model is a LoRA adapter over the tiny checkpoint.
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]


@pytest.mark.slow
def test_two_processes_under_torchrun_on_cpus(tiny_checkpoint, tmp_path):
    """repro train under torchrun without CUDA: the processes gather their rows (use_cpu is the CPU default);
    before, accelerate's gathers did nothing there and the second process failed in the advantages."""
    import subprocess
    import sys

    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541", "-m",
         "repro_core.train", "--model_name_or_path", str(tiny_checkpoint), "--output_dir", str(out), "--max_steps",
         "1", "--dataset_size", "8", "--per_device_train_batch_size", "4", "--num_generations", "4",
         "--max_completion_length", "12", "--repro_k", "4"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "repro train: done, 1 step" in result.stdout
