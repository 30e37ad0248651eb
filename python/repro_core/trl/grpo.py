"""TRL's GRPO with RePro: every completion token gets its own advantage."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from .._core import ReproError
from ..pipeline import ReproScorer
from .config import ReproGRPOConfig

__all__ = ["ReproGRPOTrainer"]


class ReproGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose advantages are (B, T): the outcome advantage plus RePro's process part.

    After the parent has generated and scored a batch, the current policy (``self.model``) scores
    the local completions: entropies at the sampling temperature, cut points, J at temperature 1
    (``repro_core.pipeline.ReproScorer``). The per-completion results are gathered over processes,
    normalised per group on the whole batch (groups can straddle processes) and sliced back exactly
    as the parent slices its own advantages. With ``repro_estimator="grpo"`` the outcome part is
    TRL's advantage (so ``scale_rewards`` and ``multi_objective_aggregation`` apply); the other
    estimators compute it from the weighted sum of the rewards (REPRO.md section 4).

    Takes the same arguments as ``GRPOTrainer``; ``args`` must be a ``ReproGRPOConfig``.
    """

    args: ReproGRPOConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, ReproGRPOConfig):
            raise ReproError(f"args: expected a ReproGRPOConfig, got {type(self.args).__name__}")
        self.repro = ReproScorer(self.model, self._tokenizer, self.args.repro_config(self.args.temperature))
        self._rewards_per_func: torch.Tensor | None = None
        self._last_generation: tuple[float, float] | None = None  # (start, RePro seconds) of the previous batch

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> torch.Tensor:
        # Kept for the estimators whose outcome part is repro_core's: the parent returns advantages only.
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        start = time.perf_counter()
        output = super()._generate_and_score_completions(inputs)
        if not self.args.repro_enabled:
            return output
        repro_start = time.perf_counter()
        advantages, metrics = self._repro_advantages(inputs, output)
        output["advantages"] = advantages
        repro_seconds = time.perf_counter() - repro_start
        # Share of a whole cycle (generation, scoring, then the optimiser steps on this batch) spent in
        # RePro: measured from one generation to the next; the first batch only knows its own duration.
        if self._last_generation is None:
            metrics["repro/time_fraction"] = repro_seconds / (time.perf_counter() - start)
        else:
            last_start, last_repro = self._last_generation
            metrics["repro/time_fraction"] = last_repro / (start - last_start)
        self._last_generation = (start, repro_seconds)
        mode = "train" if self.model.training else "eval"
        for name, value in self._average_over_processes(metrics).items():
            self._metrics[mode][name].append(value)
        return output

    def _repro_advantages(self, inputs: list[dict[str, Any]], output: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        """(B_local, T_local) advantages and the local metric values."""
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        column = self.args.repro_answer_column
        if column not in inputs[0]:
            raise ReproError(f"repro_answer_column: {column!r} is not a dataset column (columns: {sorted(inputs[0])})")
        completion_mask = output["completion_mask"]
        lengths = completion_mask.sum(1).tolist()  # right-padded; truncated rows may be masked whole
        prompt_ids = [ids[mask.bool()].tolist() for ids, mask in zip(output["prompt_ids"], output["prompt_mask"])]
        completion_ids = [ids[:n].tolist() for ids, n in zip(output["completion_ids"], lengths)]
        self.repro.objective.model = self.model  # the current policy, as wrapped now
        evaluation, steps = self.repro.evaluate(prompt_ids, completion_ids, [x[column] for x in inputs])
        local = {
            "lengths": np.asarray(lengths, dtype=np.int64),
            "offsets": evaluation.cuts.offsets,
            "positions": evaluation.cuts.positions,
            "reward": steps.reward,
            "j": evaluation.j,
            "magnitude": steps.magnitude,
            "stability": steps.stability,
            "outcome": output["advantages"].float().cpu().numpy(),
        }
        rows = gather_object([local])  # one entry per process, in rank order
        batch = {key: np.concatenate([r[key] for r in rows]) for key in ("lengths", "reward", "j", "magnitude",
                                                                         "stability", "outcome", "positions")}
        counts = np.concatenate([np.diff(r["offsets"]) for r in rows])
        offsets = np.concatenate([[0], np.cumsum(counts)])
        width = max(1, int(batch["lengths"].max()))
        mask = np.arange(width) < batch["lengths"][:, None]
        group_index = np.arange(len(mask)) // group_size
        rewards, unscorable = self._outcome_rewards()
        if self.args.repro_estimator == "grpo":
            rewards = np.zeros(len(mask))  # the outcome part is TRL's advantage, added below
        total = self.repro.advantages(rewards, batch["reward"], offsets, batch["positions"], mask,
                                      group_index).advantages
        if self.args.repro_estimator == "grpo":
            total = total + batch["outcome"][:, None] * mask
        # Rows whose every reward function returned None carry no signal (TRL zeroes them too).
        total[unscorable] = 0.0
        first = self.accelerator.process_index * len(inputs)
        advantages = torch.zeros(completion_mask.shape, dtype=torch.float32)
        kept = min(width, completion_mask.shape[1])
        advantages[:, :kept] = torch.from_numpy(total[first : first + len(inputs), :kept])
        advantages = advantages.to(completion_mask.device) * completion_mask
        return advantages, self._metrics_of(batch, offsets, mask, total)

    def _outcome_rewards(self) -> tuple[np.ndarray, np.ndarray]:
        """The weighted sum of the reward functions over the whole batch, and the rows no function
        scored (every one returned None); those count 0 in the statistics."""
        assert self._rewards_per_func is not None, "the parent computes rewards before advantages"
        weights = self.reward_weights.to(self._rewards_per_func.device)
        rewards = (self._rewards_per_func * weights).nansum(dim=1)
        unscorable = torch.isnan(self._rewards_per_func).all(dim=1)
        return rewards.double().cpu().numpy(), unscorable.cpu().numpy()

    @staticmethod
    def _metrics_of(batch: dict[str, np.ndarray], offsets: np.ndarray, mask: np.ndarray, total: np.ndarray) -> dict:
        steps = np.ones(len(batch["j"]), dtype=bool)
        steps[offsets[:-1]] = False  # the baseline point of each row carries no score
        return {
            "repro/J_b": float(batch["j"][offsets[:-1]].mean()),
            "repro/J_end": float(batch["j"][offsets[1:] - 1].mean()),
            "repro/num_cuts": float(np.diff(offsets).mean()),
            "repro/magnitude": float(batch["magnitude"][steps].mean()) if steps.any() else 0.0,
            "repro/stability": float(batch["stability"][steps].mean()) if steps.any() else 0.0,
            "repro/process_reward_mean": float(batch["reward"][steps].mean()) if steps.any() else 0.0,
            "repro/process_reward_std": float(batch["reward"][steps].std()) if steps.any() else 0.0,
            "repro/advantage_abs_mean": float(np.abs(total[mask]).mean()) if mask.any() else 0.0,
        }

    def _average_over_processes(self, metrics: dict[str, float]) -> dict[str, float]:
        """Every metric but the time fraction is already over the gathered batch; that one is per process."""
        fraction = torch.tensor([metrics["repro/time_fraction"]], device=self.accelerator.device)
        metrics["repro/time_fraction"] = self.accelerator.gather(fraction).mean().item()
        return metrics
