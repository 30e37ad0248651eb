"""benches/replicate.py --smoke: the whole experiment, tiny. A model trained from scratch on the letter-counting
task (TRL's SFTTrainer), its mechanism check, and the four arms trained two steps each with held-out
evaluations; the harness writes replication.json and replication.png with every arm and the detour metric,
and a second run of the same command skips the finished runs. Also the task's detour detector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))

from detour.task import (  # noqa: E402
    DETOURS,
    TaskSettings,
    count_detours,
    detours,
    is_progress,
    lenient_accuracy,
    problems,
    solution,
)

ARMS = ["grpo", "grpo+repro", "grpo+repro shuffled", "grpo+length"]


def test_every_detour_of_a_worked_solution_is_found_and_nothing_else():
    rng = np.random.default_rng(0)
    for word, letter in problems(TaskSettings(), 200, seed=0):
        text = solution(word, letter, rng, detour_rate=0.5)
        thinking = text.split("</think>")[0].splitlines()
        progress = [line for line in thinking if is_progress(line)]
        assert len(progress) == len(word) and progress[-1].endswith(f" {word.count(letter)}")
        assert count_detours(text) == len(thinking) - len(word)  # every other line is a detour
        assert text.endswith(f"\\boxed{{{word.count(letter)}}}")
    assert count_detours("1 a 1\n" + DETOURS[0].format(count=1) + "\n2 b 1\nWait, so far one.\n</think>") == 1
    assert detours([[{"role": "assistant", "content": "a 0\nWait, so far 0.\n</think>\n\\boxed{0}"}]]) == [1.0]
    assert lenient_accuracy(["a 1\nb 2\n</think>\nit is 2", "\\boxed{3}", "none"], answer=["2", "2", "2"]) == [
        1.0, 0.0, 0.0]


def test_held_out_problems_are_not_trained_on(tmp_path):
    held_out = problems(TaskSettings(), 64, seed=2)
    train = problems(TaskSettings(), 2000, seed=1, exclude=set(held_out))
    assert len(set(train)) == 2000 and not set(train) & set(held_out)


@pytest.mark.slow
def test_replicate_smoke(tmp_path):
    command = [sys.executable, str(ROOT / "benches" / "replicate.py"), "--smoke", "--out", str(tmp_path / "out"),
               "--cache", str(tmp_path / "cache")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads((tmp_path / "out" / "replication.json").read_text())
    assert list(report["runs"]) == ARMS and report["seeds"] == [0]
    for arm, seeds in report["runs"].items():
        evaluations = seeds["0"]
        assert [row["step"] for row in evaluations] == [0, 2], arm
        for row in evaluations:
            assert 0 <= row["accuracy"] <= row["lenient_accuracy"] <= 1 and row["completion_tokens"] > 0
            assert row["detours"] >= 0 and 0 <= row["stop_rate"] <= 1
    # Every arm starts from the same checkpoint and draws the same evaluation completions before training.
    assert all(report["runs"][arm]["0"][0] == report["runs"]["grpo"]["0"][0] for arm in ARMS)
    difference = report["summary"]["grpo+repro"]["detours"]
    assert {"difference", "spread", "beyond_spread"} <= set(difference) and difference["spread"] is None  # one seed
    mechanism = report["sft"]["mechanism"]
    assert mechanism["completions"] == 8 and "detour_reward_mean" in mechanism
    # The same completions through repro score: its report, and the check read back from its scores.jsonl.
    assert report["sft"]["repro_score"]["completions"] == 8
    assert (tmp_path / "out" / "mechanism-score" / "report.html").stat().st_size > 1000
    assert (tmp_path / "out" / "replication.png").stat().st_size > 10_000
    assert "difference to grpo" in result.stdout and "SFT warm start" in result.stdout

    again = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("recorded, skipped") == len(ARMS) and "SFT checkpoint (cached)" in again.stdout
