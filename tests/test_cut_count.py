"""k = 0: a count of breaks, not a limit that 0 switches off. It keeps no paragraph break, so each
completion is one step from its start to the end of its thinking, with one process reward; the
setting's help says so, and training and ``repro score`` read it alike."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import dataclasses
import random

import numpy as np
import pytest

pytest.importorskip("torch")

import tiny  # noqa: E402
from repro_core.config import ReproConfig  # noqa: E402
from repro_core.pipeline import ReproScorer  # noqa: E402


def test_the_help_says_what_zero_means():
    help_ = {f.name: f for f in dataclasses.fields(ReproConfig)}["k"].metadata["help"]
    assert "0 keeps none (not 'no limit')" in help_ and "one step" in help_


def test_zero_makes_each_completion_one_step(tok, tiny_model):
    rng = random.Random(0)
    prompts = [tok("Compute the sum.")["input_ids"]] * 4
    completions = [tok(tiny.reasoning_text(rng, 4))["input_ids"][:n] for n in (60, 45, 30)] + [[]]
    think_end = tok.convert_tokens_to_ids("</think>")
    completions[1] = completions[1][:20] + [think_end] + completions[1][20:]  # thinking ends at 21
    scorer = ReproScorer(tiny_model, tok, ReproConfig(k=0, alpha=1.0))
    evaluation, steps = scorer.evaluate(prompts, completions, ["5"] * 4)
    rows = [evaluation.cuts.row(b).tolist() for b in range(4)]
    assert rows == [[0, len(completions[0])], [0, 21], [0, len(completions[2])], [0]]
    with_breaks = ReproScorer(tiny_model, tok, ReproConfig(k=20)).evaluate(prompts, completions, ["5"] * 4)[0]
    assert np.all(np.diff(with_breaks.cuts.offsets)[[0, 2]] > 2)  # the same rows have breaks to keep
    first_steps = evaluation.cuts.offsets[:3] + 1  # j = 1 of the three non-empty rows
    np.testing.assert_array_equal(steps.reward[first_steps], steps.score[first_steps])  # r_1 = C_1
    width = max(len(c) for c in completions)
    mask = np.arange(width) < np.array([len(c) for c in completions])[:, None]
    advantages = scorer.advantages(np.zeros(4), steps.reward, evaluation.cuts.offsets, evaluation.cuts.positions,
                                   mask, np.zeros(4, dtype=int)).advantages
    # One process reward per completion, on its last thinking token: constant up to it, 0 after.
    assert np.ptp(advantages[1, :21]) == 0 and advantages[1, 0] != 0 and np.all(advantages[1, 21:] == 0)


def test_training_and_scoring_read_zero_alike(tmp_path):
    pytest.importorskip("trl")
    from repro_core.analysis.arguments import parse_arguments
    from repro_core.train import parse_args

    *_, config = parse_args(["--repro_k", "0", "--output_dir", str(tmp_path / "out")])
    assert config.repro_settings().k == 0
    assert parse_arguments(["traces.jsonl", "--repro_k", "0"]).repro.repro_k == 0  # not "every boundary" (unset)
