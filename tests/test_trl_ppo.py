"""ReproPPOTrainer (CPU, tiny models, TRL's machinery): training moves policy and critic, the
advantages and returns are compute_advantages("ppo") of the rollout, alpha = 0 is plain PPO-GAE,
the value loss learns, and checkpoints restore both models and both optimisers."""

from __future__ import annotations

import itertools
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

import reference as ref  # noqa: E402
import repro_core as rc  # noqa: E402
import test_trl_grpo as grpo_tests  # noqa: E402
import tiny  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core.pipeline import ReproScorer  # noqa: E402
from repro_core.trl import ReproPPOConfig, ReproPPOTrainer  # noqa: E402
from test_trl_grpo import completions_of, generation_batch  # noqa: E402


def make_trainer(tok, tmp_path, **overrides) -> ReproPPOTrainer:
    return grpo_tests.make_trainer(tok, tmp_path, trainer=ReproPPOTrainer, **{"lam": 0.9, **overrides})


def independent_values(trainer, output) -> np.ndarray:
    """The critic's values straight from its forward: state before completion token t at column P + t - 1."""
    ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
    with torch.no_grad():
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = trainer.critic(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    width = output["completion_ids"].shape[1]
    return (logits[:, -width - 1 : -1, 0] * output["completion_mask"]).numpy()


@pytest.mark.slow
def test_training_moves_policy_and_critic(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path)
    policy = [p.detach().clone() for p in trainer.model.parameters()]
    critic = [p.detach().clone() for p in trainer.critic.parameters()]
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(policy, trainer.model.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(critic, trainer.critic.parameters(), strict=True))
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    for name in ("repro/J_b", "repro/process_reward_mean", "repro/time_fraction", "value/loss",
                 "value/explained_variance", "policy/kl", "policy/clipfrac"):
        assert all(name in entry for entry in logged), name
    assert logged[-1]["policy/kl"] != 0  # the policy moved away from the reference after one update


def test_advantages_and_returns_are_compute_advantages_ppo(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, kl_coef=0.0, repro_alpha=0.5)
    # A critic that is not zero, so that the values matter.
    torch.nn.init.normal_(trainer.critic.score.weight, std=0.05)
    inputs = generation_batch(trainer)
    output = trainer._generate_and_score_completions(inputs)
    values = independent_values(trainer, output)
    np.testing.assert_allclose(output["old_values"].numpy(), values, atol=1e-5)
    prompts, completions = completions_of(output)
    scorer = ReproScorer(trainer.model, tok, trainer.args.repro_settings())
    evaluation, steps = scorer.evaluate(prompts, completions, [x["answer"] for x in inputs])
    width = evaluation.mask.shape[1]
    expected = rc.compute_advantages(
        "ppo", trainer._rewards_per_func.sum(1).numpy(), steps.reward, evaluation.cuts.offsets,
        evaluation.cuts.positions, evaluation.mask, np.arange(len(inputs)) // trainer.num_generations,
        alpha=0.5, lam=0.9, values=values[:, :width],
    )
    np.testing.assert_allclose(output["advantages"][:, :width].numpy(), expected.advantages, atol=1e-5)
    np.testing.assert_allclose(output["returns"][:, :width].numpy(), expected.returns, atol=1e-5)


def test_the_authors_critic_target_is_the_advantage_plus_v(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, kl_coef=0.0, repro_alpha=0.5, repro_critic_target="advantages",
                           repro_stats_include_baseline=True, repro_drop_first_token_reward=True)
    torch.nn.init.normal_(trainer.critic.score.weight, std=0.05)
    output = trainer._generate_and_score_completions(generation_batch(trainer))
    mask = output["completion_mask"].bool()
    expected = (output["advantages"] + output["old_values"]) * mask
    torch.testing.assert_close(output["returns"] * mask, expected, atol=1e-5, rtol=1e-5)


def test_kl_penalty_enters_the_token_rewards(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, kl_coef=0.2, kl_estimator="k3", repro_enabled=False)
    with torch.no_grad():  # move the policy away from the reference
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    output = trainer._generate_and_score_completions(generation_batch(trainer))
    ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
    width, mask = output["completion_ids"].shape[1], output["completion_mask"].bool().numpy()
    reference = tiny.model(len(tok))  # the initial policy: same seed
    with torch.no_grad():
        logps = [torch.log_softmax(m(input_ids=ids, attention_mask=attention).logits[:, -width - 1 : -1].double(), -1)
                 .gather(2, output["completion_ids"][:, :, None])[:, :, 0] for m in (trainer.model, reference)]
    log_ratio = (logps[0] - logps[1]).numpy()
    kl = np.expm1(-log_ratio) + log_ratio
    lengths = mask.sum(1)
    rewards = trainer._rewards_per_func.sum(1).numpy()
    token_rewards = -0.2 * kl * mask
    token_rewards[np.arange(len(lengths)), np.maximum(lengths - 1, 0)] += rewards * (lengths > 0)
    values = output["old_values"].double().numpy()
    advantages = ref.masked_whiten(ref.gae(token_rewards, values, lengths, 1.0, 0.9), lengths)
    np.testing.assert_allclose(output["advantages"].numpy(), advantages, atol=2e-4)
    assert trainer._metrics["train"]["policy/kl"][-1] > 0


def test_alpha_zero_is_plain_ppo_gae(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, kl_coef=0.0, repro_alpha=0.0)
    torch.nn.init.normal_(trainer.critic.score.weight, std=0.05)
    output = trainer._generate_and_score_completions(generation_batch(trainer))
    mask = output["completion_mask"].bool().numpy()
    lengths = mask.sum(1)
    rewards = trainer._rewards_per_func.sum(1).numpy()
    token_rewards = np.zeros(mask.shape)
    token_rewards[np.arange(len(lengths)), lengths - 1] = rewards
    values = output["old_values"].double().numpy()
    gae = ref.gae(token_rewards, values, lengths, 1.0, 0.9)
    np.testing.assert_allclose(output["advantages"].numpy(), ref.masked_whiten(gae, lengths), atol=1e-5)
    np.testing.assert_allclose(output["returns"].numpy(), (gae + values) * mask, atol=1e-5)  # the raw GAE return


@pytest.mark.slow
def test_value_loss_falls_on_a_fixed_batch(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, kl_coef=0.0, vf_coef=1.0, critic_learning_rate=1e-3, learning_rate=0.0)
    batch = trainer._generate_and_score_completions(generation_batch(trainer))
    optimizer = trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test drives by hand
    assert len(optimizer.param_groups) > 1 and optimizer.param_groups[-1]["lr"] == 1e-3
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        trainer._compute_loss(trainer.model, batch).backward()
        optimizer.step()
        losses.append(trainer._metrics["train"]["value/loss"][-1])
    # Clipping keeps the new values within cliprange_value of the old ones, so the loss falls steadily, not to 0.
    assert all(b < a for a, b in itertools.pairwise(losses)) and losses[-1] < 0.9 * losses[0], losses


@pytest.mark.slow
def test_checkpoint_restores_both_models_and_optimisers(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, save_strategy="steps", save_steps=2, max_steps=2)
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert (checkpoint / "critic" / "model.safetensors").exists() and (checkpoint / "optimizer.pt").exists()
    saved_critic = {k: v.clone() for k, v in trainer.critic.state_dict().items()}
    saved_optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    assert len(saved_optimizer["param_groups"]) == len(trainer.optimizer.param_groups)

    resumed = make_trainer(tok, tmp_path, save_strategy="no", max_steps=3)
    resumed._load_from_checkpoint(str(checkpoint))
    for name, value in resumed.critic.state_dict().items():
        torch.testing.assert_close(value, saved_critic[name])
    resumed = make_trainer(tok, tmp_path, save_strategy="no", max_steps=3)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 3
    critic_ids = {id(p) for p in resumed.critic.parameters()}
    states = [resumed.optimizer.state[p] for group in resumed.optimizer.param_groups for p in group["params"]
              if id(p) in critic_ids]
    assert states and all("exp_avg" in s for s in states)  # the critic's Adam moments were restored and updated


def test_ppo_config_checks(tmp_path):
    common = dict(output_dir=str(tmp_path), bf16=False, use_cpu=True)
    for bad, message in [
        (dict(beta=0.1), "beta: PPO puts the KL into the rewards"),
        (dict(repro_estimator="grpo"), "repro_estimator: ReproPPOConfig takes one of ppo,"),
        (dict(kl_estimator="k2"), "kl_estimator"),
        (dict(vf_coef=-1.0), "vf_coef: expected a number >= 0"),
        (dict(lam=1.5), "^lam: "),  # the host's own field, as the user set it
        (dict(gamma=0.9, repro_gamma=0.5), "repro_gamma: PPO discounts"),
        (dict(off_policy_mask_threshold=0.5), "off_policy_mask_threshold: .* per token"),
        (dict(loss_type="vespo"), "loss_type: .* per token"),
        (dict(repro_critic_target="returns"), "repro_critic_target"),
    ]:
        with pytest.raises(ReproError, match=message):
            ReproPPOConfig(**common, **bad)
