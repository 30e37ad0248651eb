"""TRL's sequence-level options with RePro's per-token advantages: GSPO's
``importance_sampling_level="sequence"`` and ``loss_type="luspo"`` are refused at construction,
because on TRL's own loss they reduce each completion's advantages to their mean (shown here on
TRL's real GRPOTrainer), so RePro's per-token credit would be lost without a word."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

import tiny  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core.trl import ReproGRPOConfig, ReproPPOConfig  # noqa: E402

REFUSED = [(dict(importance_sampling_level="sequence"), "importance_sampling_level"),
           (dict(importance_sampling_level="sequence", loss_type="grpo"), "importance_sampling_level"),
           (dict(loss_type="luspo"), "loss_type"),
           (dict(loss_type="luspo", importance_sampling_level="sequence"), "importance_sampling_level")]


@pytest.mark.parametrize(("overrides", "field"), REFUSED)
def test_sequence_level_options_are_refused_naming_the_field(tmp_path, overrides, field):
    common = dict(output_dir=str(tmp_path), bf16=False, use_cpu=True, report_to="none")
    for config in (ReproGRPOConfig, ReproPPOConfig):
        with pytest.raises(ReproError) as caught:
            config(**common, **overrides)
        assert caught.value.argument == field and "per token" in caught.value.message, config
    # Without RePro it is TRL's own trainer, with TRL's own options.
    ReproGRPOConfig(**common, repro_enabled=False, **overrides)


def _reward(completions, **kwargs):
    return [float(len(c)) for c in completions]


def _gradient(trainer: GRPOTrainer, inputs: dict, advantages: torch.Tensor, *, level: str, loss: str) -> torch.Tensor:
    """The policy gradient of TRL's own loss for these (B, T) advantages, flattened."""
    trainer.importance_sampling_level, trainer.loss_type = level, loss
    trainer.model.zero_grad()
    trainer.compute_loss(trainer.model, {**inputs, "advantages": advantages}).backward()
    return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])


def test_trls_sequence_level_loss_sees_only_the_mean_advantage(tok, tmp_path):
    """Why they are refused: with one importance ratio per sequence, TRL's gradient for per-token
    advantages equals the gradient for each row's mean advantage; per token it does not. And
    'luspo' at token level is 'dr_grpo' times max_completion_length (what the refusal suggests)."""
    prompts = Dataset.from_dict({"prompt": ["What is 2 + 3?", "Compute 4 * 5."] * 4})
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=12, report_to="none", bf16=False, use_cpu=True, seed=0)
    trainer = GRPOTrainer(model=tiny.model(len(tok)), reward_funcs=[_reward], args=args, train_dataset=prompts,
                          processing_class=tok)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = trainer._generate_and_score_completions([prompts[i] for i in range(2) for _ in range(4)])
    mask = inputs["completion_mask"].float()
    per_token = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0)) * mask
    row_mean = (per_token.sum(1) / mask.sum(1).clamp(min=1))[:, None] * mask

    sequence = _gradient(trainer, inputs, per_token, level="sequence", loss="grpo")
    torch.testing.assert_close(sequence, _gradient(trainer, inputs, row_mean, level="sequence", loss="grpo"),
                               rtol=1e-5, atol=1e-6)
    token = _gradient(trainer, inputs, per_token, level="token", loss="grpo")
    assert (token - _gradient(trainer, inputs, row_mean, level="token", loss="grpo")).abs().max() > 1e-3
    luspo = _gradient(trainer, inputs, per_token, level="sequence", loss="luspo")
    torch.testing.assert_close(luspo, _gradient(trainer, inputs, row_mean, level="sequence", loss="luspo"),
                               rtol=1e-5, atol=1e-6)
    dr_grpo = _gradient(trainer, inputs, per_token, level="token", loss="dr_grpo")
    torch.testing.assert_close(_gradient(trainer, inputs, per_token, level="token", loss="luspo"),
                               dr_grpo * args.max_completion_length, rtol=1e-4, atol=1e-5)
