"""PPO with RePro on TRL's machinery: a critic, GAE, a KL penalty in the rewards, a value loss.

TRL removed its PPO trainer in 1.13. This one reuses everything of ``GRPOTrainer`` that PPO shares
with it (generation with transformers or vLLM, reward functions, PEFT, accelerate, mini-batches
and epochs over a generation batch, the clipped policy loss, logging) and adds what PPO needs: a
critic, a frozen reference for the KL in the token rewards, GAE advantages and returns, and the
value loss (``ReproPPOTrainer``).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from accelerate.utils import fsdp2_prepare_model, is_peft_model
from transformers import AutoModelForTokenClassification
from trl.models import prepare_fsdp
from trl.trainer.utils import disable_dropout_in_model, use_adapter

from .config import ReproPPOConfig
from .grpo import ReproGRPOTrainer

__all__ = ["ReproPPOTrainer"]

CRITIC_DIR = "critic"


class ReproPPOTrainer(ReproGRPOTrainer):
    """PPO + RePro (docs/method.md, "Advantages", estimator ``ppo``).

    At each generation batch:
    - the critic gives V (B, T), the value of the state before each completion token;
    - with ``kl_coef > 0`` a frozen reference (a copy of the initial policy, or the policy with
      its adapters off under PEFT) gives the per-token KL (k1 or k3), and the token rewards are
      ``-kl_coef * KL`` plus the outcome reward on the last token;
    - RePro scores the completions; ``compute_advantages("ppo", ...)`` turns outcome, process and
      token rewards into advantages over the whole batch (groups of ``num_generations``
      completions normalise the process rewards), and gives the critic's returns
      R = GAE(r, V) + V of the token rewards alone, unwhitened (verl's ``gae``, classic PPO).
    The loss is TRL's clipped policy loss on those advantages plus ``vf_coef`` times the clipped
    value loss ``0.5 * max((V - R)^2, (clip(V, V_old +- cliprange_value) - R)^2)``. The critic's
    parameters are a second parameter group of the trainer's optimiser (``critic_learning_rate``),
    so they share its schedule, accumulation and checkpoints; the critic is saved beside the
    policy in ``critic/``.

    Args: those of ``GRPOTrainer``, ``args`` a ``ReproPPOConfig``, and ``value_model``: a token
    classification model with one label (default: ``args.value_model_name_or_path``, else one
    initialised from the policy's weights with a zero value head).
    """

    args: ReproPPOConfig  # type: ignore[assignment]  # a ReproGRPOConfig's sibling, checked in __init__
    config_class: type = ReproPPOConfig

    def __init__(self, *args: Any, value_model: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        policy = self.accelerator.unwrap_model(self.model)
        self._base_policy = policy.get_base_model() if is_peft_model(policy) else policy
        critic = self._make_critic() if value_model is None else value_model
        # Token-classification heads come with dropout (0.1 by default); a value target needs none.
        disable_dropout_in_model(critic)
        critic = critic.to(self.accelerator.device)
        self._fsdp2 = self.is_fsdp_enabled and self.accelerator.state.fsdp_plugin.fsdp_version == 2
        # FSDP2 shards a trained model in place, and the optimiser holds the shards: the critic is
        # sharded now, before its parameter group is made (create_scheduler).
        self.critic = (
            fsdp2_prepare_model(self.accelerator, critic) if self._fsdp2 else self.accelerator.prepare_model(critic)
        )
        self.reference = None
        if self.args.kl_coef > 0 and not is_peft_model(policy):
            reference = copy.deepcopy(self._base_policy).eval().requires_grad_(False)
            self.reference = (
                prepare_fsdp(reference, self.accelerator) if self._fsdp2
                else self.accelerator.prepare_model(reference, evaluation_mode=True)
            )

    def _make_critic(self) -> Any:
        base = self._base_policy
        if self.args.value_model_name_or_path is not None:
            return AutoModelForTokenClassification.from_pretrained(
                self.args.value_model_name_or_path, num_labels=1, dtype=base.dtype
            )
        config = copy.deepcopy(base.config)
        config.num_labels = 1
        critic = AutoModelForTokenClassification.from_config(config, dtype=base.dtype)
        getattr(critic, critic.base_model_prefix).load_state_dict(base.base_model.state_dict())
        torch.nn.init.zeros_(critic.score.weight)  # V = 0 at the start: advantages begin as plain returns
        return critic

    # ------------------------------------------------------------------------------ rollouts

    def _needs_own_advantages(self) -> bool:
        return True  # PPO's advantages and returns are always this trainer's

    def _rollout_arrays(self, output: dict[str, Any]) -> dict[str, np.ndarray]:
        input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        width = output["completion_ids"].shape[1]
        arrays = {}
        with torch.no_grad():
            was_training = self.critic.training
            self.critic.eval()
            arrays["values"] = self._values(input_ids, attention_mask, width)
            self.critic.train(was_training)
            if self.args.kl_coef > 0:
                logps = output.get("old_per_token_logps")
                if logps is None:
                    logps = self._logps(self.model, input_ids, attention_mask, width)
                if self.reference is not None:
                    reference = self._logps(self.reference, input_ids, attention_mask, width)
                else:  # PEFT: the policy without its adapters is the initial model
                    policy = self.accelerator.unwrap_model(self.model)
                    with use_adapter(policy, adapter_name="ref" if "ref" in policy.peft_config else None):
                        reference = self._logps(self.model, input_ids, attention_mask, width)
                log_ratio = logps - reference
                kl = log_ratio if self.args.kl_estimator == "k1" else torch.expm1(-log_ratio) + log_ratio
                arrays["kl"] = kl
        return {name: values.float().cpu().numpy() for name, values in arrays.items()}

    def _logps(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int) -> torch.Tensor:
        return self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, width, batch_size=self.args.per_device_train_batch_size
        )[0]

    def _values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int) -> torch.Tensor:
        """(B, width) values of the states before each completion token, in chunks of the per-device batch."""
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        step = self.args.per_device_train_batch_size
        parts = []
        for start in range(0, input_ids.shape[0], step):
            rows = slice(start, start + step)
            out = self.critic(
                input_ids=input_ids[rows], attention_mask=attention_mask[rows], position_ids=position_ids[rows]
            )
            parts.append(out.logits[:, -width - 1 : -1, 0].float())
        return torch.cat(parts)

    def _batch_advantages(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        kl = batch.get("kl")
        token_rewards = None if kl is None else -self.args.kl_coef * kl
        cuts = batch["cuts"]
        result = self.repro.advantages(batch["outcome_rewards"], batch["step_rewards"], cuts.offsets, cuts.positions,
                                       batch["mask"], batch["group_index"], values=batch["values"],
                                       token_rewards=token_rewards)
        advantages, returns = result.advantages, result.returns
        assert returns is not None, "the ppo estimator returns the critic's targets"
        advantages[batch["unscorable"]] = 0.0  # no reward function scored these rows (TRL zeroes them too)
        return {"advantages": advantages, "returns": returns, "old_values": batch["values"]}

    def _rollout_metrics(self, batch: dict[str, Any], per_token: dict[str, np.ndarray]) -> dict[str, float]:
        mask = batch["mask"]
        returns, values = per_token["returns"][mask], batch["values"][mask]
        variance = float(returns.var()) if returns.size > 1 else 0.0
        explained = 1.0 - float((returns - values).var()) / variance if variance > 0 else float("nan")
        metrics = {"value/explained_variance": explained}
        if "kl" in batch:
            metrics["policy/kl"] = float(batch["kl"][mask].mean()) if mask.any() else 0.0
        return metrics

    # ------------------------------------------------------------------------------ loss

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        loss = super()._compute_loss(model, inputs)
        mode = self._mode()
        completion_ids, mask = inputs["completion_ids"], inputs["completion_mask"].float()
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        self.critic.train(mode == "train")
        values = self._values(input_ids, attention_mask, completion_ids.shape[1])
        old, returns = inputs["old_values"], inputs["returns"]
        clipped = old + (values - old).clamp(-self.args.cliprange_value, self.args.cliprange_value)
        per_token = 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
        tokens = mask.sum().clamp(min=1.0)
        value_loss = (per_token * mask).sum() / tokens
        metrics = self._metrics[mode]
        metrics["value/loss"].append(self.accelerator.gather(value_loss.detach()).mean().item())
        clipfrac = (((values - old).abs() > self.args.cliprange_value).float() * mask).sum() / tokens
        metrics["value/clipfrac"].append(self.accelerator.gather(clipfrac).mean().item())
        if metrics.get("clip_ratio/region_mean"):  # the parent's share of clipped policy ratios
            metrics["policy/clipfrac"].append(metrics["clip_ratio/region_mean"][-1])
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        return loss + self.args.vf_coef * value_loss / normalizer

    # ------------------------------------------------------------------------------ optimiser, checkpoints

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model)
        if not self._fsdp2:
            self._add_critic_group(optimizer)
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        # FSDP2: accelerate swaps the optimiser's parameters for the policy's shards and knows only
        # the policy's, so the critic's group joins after that, before the schedule is built on it.
        target = self.optimizer if optimizer is None else optimizer
        if self._fsdp2 and target is not None:
            self._add_critic_group(target)
        return super().create_scheduler(num_training_steps, optimizer)

    def _add_critic_group(self, optimizer: torch.optim.Optimizer) -> None:
        parameters = [p for p in self.critic.parameters() if p.requires_grad]
        if any(parameters[0] is p for group in optimizer.param_groups for p in group["params"]):
            return  # added already (a second train() call)
        learning_rate = self.args.critic_learning_rate or self.args.learning_rate
        optimizer.add_param_group({"params": parameters, "lr": learning_rate, "weight_decay": self.args.weight_decay})

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            directory = os.path.join(str(output_dir or self.args.output_dir), CRITIC_DIR)
            self.accelerator.unwrap_model(self.critic).save_pretrained(directory)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = AutoModelForTokenClassification.from_pretrained(os.path.join(resume_from_checkpoint, CRITIC_DIR))
        self.accelerator.unwrap_model(self.critic).load_state_dict(saved.state_dict())
