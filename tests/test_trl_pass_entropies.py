"""When TRL runs its own old-log-prob pass (generation and optimisation steps misaligned, or vLLM's
importance-sampling correction), ReproGRPOTrainer takes the entropies that pass computes in the same
call (TRL's fused head) instead of running an entropy pass of its own: the cut points, J and
advantages are the pipeline's, and the scorer's own entropy head never runs."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

import peft  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

import tiny  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core.objective.model import ModelAdapter  # noqa: E402
from repro_core.pipeline import ReproScorer  # noqa: E402
from repro_core.trl import ReproGRPOTrainer  # noqa: E402
from test_trl_grpo import completions_of, generation_batch, make_trainer  # noqa: E402


def counting_entropy_heads(monkeypatch) -> list[int]:
    """Counts the scorer's own entropy passes (``ModelAdapter.entropies``)."""
    calls: list[int] = []
    original = ModelAdapter.entropies

    def entropies(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ModelAdapter, "entropies", entropies)
    return calls


class WithAdapters(ReproGRPOTrainer):
    """The trainer on a PEFT policy: TRL's reference is the policy with its adapters off."""

    def __init__(self, *args, **kwargs):
        lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        super().__init__(*args, peft_config=lora, **kwargs)


@pytest.mark.parametrize("setting", ["steps_per_generation", "num_iterations", "reference", "peft_reference"])
def test_trls_own_pass_gives_the_entropies(tok, tmp_path, monkeypatch, setting):
    """TRL's pass runs with steps_per_generation or num_iterations above the accumulation; with a
    KL term, its reference pass comes after it, on a reference model or on the PEFT policy with its
    adapters off, and is not taken for the policy's entropies."""
    overrides = dict(num_iterations=2) if setting == "num_iterations" else dict(steps_per_generation=2)
    if "reference" in setting:
        tiny.model(len(tok)).save_pretrained(tmp_path / "policy")  # TRL loads the reference by the path
        overrides.update(beta=0.04, model=AutoModelForCausalLM.from_pretrained(tmp_path / "policy"))
    if setting == "peft_reference":
        overrides["trainer"] = WithAdapters
    trainer = make_trainer(tok, tmp_path, repro_estimator="dr_grpo", repro_alpha=0.5, per_device_train_batch_size=4,
                           **overrides)
    assert trainer._runs_old_log_prob_pass()
    calls = counting_entropy_heads(monkeypatch)
    inputs = generation_batch(trainer)
    output = trainer._generate_and_score_completions(inputs)
    assert output["old_per_token_logps"] is not None and not calls  # TRL's pass ran, the scorer's did not
    assert trainer._pass_entropies is None  # kept for that call only
    prompts, completions = completions_of(output)
    groups = np.arange(len(inputs)) // trainer.num_generations
    expected = ReproScorer(trainer.model, tok, trainer.args.repro_settings()).score(
        prompts, completions, [x["answer"] for x in inputs], trainer._rewards_per_func.sum(1).numpy(), groups)
    assert calls  # the pipeline computes its own entropies
    width = expected.advantages.advantages.shape[1]
    np.testing.assert_allclose(output["advantages"][:, :width].numpy(), expected.advantages.advantages, atol=1e-5)
    assert np.any(np.diff(expected.cuts.offsets) > 2)


def test_aligned_steps_keep_the_scorers_own_pass(tok, tmp_path, monkeypatch):
    """Without TRL's pass (its default: generation aligned with the optimiser steps) the scorer
    computes the entropies itself."""
    trainer = make_trainer(tok, tmp_path, repro_estimator="dr_grpo", repro_alpha=0.5)
    assert not trainer._runs_old_log_prob_pass()
    calls = counting_entropy_heads(monkeypatch)
    output = trainer._generate_and_score_completions(generation_batch(trainer))
    assert output.get("old_per_token_logps") is None and calls


def test_entropies_of_another_shape_are_refused(tok, tiny_model):
    scorer = ReproScorer(tiny_model, tok)
    prompts, completions = [[5, 6], [7]], [[8, 9, 10], []]
    with pytest.raises(ReproError, match=r"entropies: expected \(2, >= 3\).*got shape \(2, 2\)"):
        scorer.evaluate(prompts, completions, ["1", "2"], entropies=np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ReproError, match=r"entropies: expected \(2, >= 3\).*got shape \(3,\)"):
        scorer.evaluate(prompts, completions, ["1", "2"], entropies=np.zeros(3, dtype=np.float32))
    evaluation, _ = scorer.evaluate(prompts, completions, ["1", "2"], entropies=torch.ones(2, 5))
    assert evaluation.entropies.shape == (2, 3) and evaluation.entropies[1].sum() == 0  # nothing past a row's end
