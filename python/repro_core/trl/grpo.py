"""TRL's GRPO with RePro: every completion token gets its own advantage."""

from __future__ import annotations

import logging
import time
from collections.abc import Sized
from dataclasses import replace
from typing import Any, cast

import numpy as np
import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation

from .._api import Cuts, ProcessStd
from ..behaviour import j_gain, paragraphs
from ..errors import ReproError
from ..pipeline import ReproScorer, step_metrics
from .config import ReproGRPOConfig

__all__ = ["ReproGRPOTrainer", "shuffled_within_groups"]

logger = logging.getLogger(__name__)


class ReproGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose advantages are (B, T): the outcome advantage plus RePro's process part.

    After the parent has generated and scored a batch, the current policy (``self.model``) scores
    the local completions: entropies at the sampling temperature, cut points, J at temperature 1
    unless ``repro_j_at_rollout_temperature`` (``repro_core.pipeline.ReproScorer``). The
    per-completion results are gathered over processes, normalised per group on the whole batch
    (groups can straddle processes) and sliced back exactly as the parent slices its own
    advantages. With ``repro_estimator="grpo"`` the outcome part is TRL's advantage (so
    ``scale_rewards`` and ``multi_objective_aggregation`` apply) and the process part follows
    ``scale_rewards`` (the group's std, the batch's, or none); the other estimators compute it
    from the weighted sum of the rewards (docs/method.md, "Advantages").

    Takes the same arguments as ``GRPOTrainer``; ``args`` must be a ``ReproGRPOConfig``.
    """

    args: ReproGRPOConfig
    config_class: type = ReproGRPOConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, self.config_class):
            raise ReproError("args", f"expected a {self.config_class.__name__}, got {type(self.args).__name__}")
        config = self.args.repro_settings()
        if not self.args.repro_enabled:
            config = replace(config, alpha=0.0)  # the process part is off (PPO still computes its advantages)
        try:
            self.repro = ReproScorer(self.model, self._tokenizer, config)
        except ReproError as error:  # resolving the settings for the tokenizer: name the repro_* field
            if hasattr(self.args, f"repro_{error.argument}"):
                raise error.renamed(f"repro_{error.argument}") from None
            raise
        if self.args.repro_enabled:
            self._check_answer_column()
        self._rewards_per_func: torch.Tensor | None = None
        self._last_generation: tuple[float, float] | None = None  # (start, RePro seconds) of the previous batch
        # TRL's old-log-prob pass's entropies while it runs (_get_per_token_logps_and_entropies), else None.
        self._pass_entropies: list[torch.Tensor] | None = None

    def _check_answer_column(self) -> None:
        """The answer column is a column of every dataset that lists its columns (iterable datasets
        without column names are checked at the first generation); log the first scored answer text."""
        column = self.args.repro_answer_column
        datasets: list[tuple[str, Any]] = [("train_dataset", self.train_dataset)]
        if isinstance(self.eval_dataset, dict):
            datasets += [(f"eval_dataset[{name!r}]", data) for name, data in self.eval_dataset.items()]
        else:
            datasets.append(("eval_dataset", self.eval_dataset))
        first: tuple[str, Any] | None = None
        for name, data in datasets:
            columns = getattr(data, "column_names", None)
            if not isinstance(columns, (list, tuple)):
                continue
            if column not in columns:
                raise ReproError(
                    "repro_answer_column", f"{column!r} is not a column of the {name} (columns: {sorted(columns)})"
                )
            if first is None and isinstance(data, Sized) and len(data) > 0:
                rows: Any = data.select_columns([column]) if hasattr(data, "select_columns") else data
                first = (name, rows[0][column])
        if first is not None:
            name, answer = first
            text = self.repro.objective.answer_ids.template.format(answer=answer)
            logger.info("RePro scores J on the answer text %r (first row of the %s)", text, name)

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> torch.Tensor:
        # Kept for the estimators whose outcome part is repro_core's: the parent returns advantages only.
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """TRL's evaluation, its completions sampled from ``args.seed`` every time: two runs (or two
        evaluations of one run) are scored on the same draws of the same prompts, and training's
        own random stream is left as it was."""
        devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.args.seed + self.accelerator.process_index)
            return super().evaluate(*args, **kwargs)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        start = time.perf_counter()
        # When TRL runs its own old-log-prob pass, the entropies it computes there are RePro's.
        self._pass_entropies = [] if self.args.repro_enabled and self._runs_old_log_prob_pass() else None
        try:
            output = super()._generate_and_score_completions(inputs)
            pass_entropies = self._pass_entropies[0] if self._pass_entropies else None
        finally:
            self._pass_entropies = None
        if not self._needs_own_advantages():
            if self._mode() == "eval":
                for name, value in self._behaviour_metrics(inputs, output, None).items():
                    self._metrics["eval"][name].append(value)
            return output
        batch, repro_seconds = self._gather_rollouts(inputs, output, pass_entropies)
        if self.args.repro_shuffle_rewards:
            # Every process holds the whole batch and draws the same permutation from the same seed.
            rng = np.random.default_rng((self.args.seed, self.state.global_step, self._mode() == "eval"))
            batch["step_rewards"] = shuffled_within_groups(batch["step_rewards"], batch["cuts"], batch["group_index"],
                                                           rng)
        per_token = self._batch_advantages(batch)
        for name, values in per_token.items():  # "advantages", and "returns" / "old_values" for PPO
            output[name] = self._local_rows(values, output["completion_mask"])
        metrics = self._metrics_of(batch, per_token["advantages"]) if self.args.repro_enabled else {}
        metrics.update(self._rollout_metrics(batch, per_token))
        if self._mode() == "eval":
            metrics.update(self._behaviour_metrics(inputs, output, batch))
        if self.args.repro_enabled:
            # Share of a whole cycle (generation, scoring, then the optimiser steps on this batch) spent
            # in RePro: from one generation to the next; the first batch only knows its own duration.
            if self._last_generation is None:
                fraction = repro_seconds / (time.perf_counter() - start)
            else:
                last_start, last_repro = self._last_generation
                fraction = last_repro / (start - last_start)
            self._last_generation = (start, repro_seconds)
            metrics["repro/time_fraction"] = self._mean_over_processes(fraction)
        for name, value in metrics.items():
            self._metrics[self._mode()][name].append(value)
        return output

    def _runs_old_log_prob_pass(self) -> bool:
        """Whether TRL's ``_generate_and_score_completions`` runs its old-log-prob pass on the
        policy (TRL 1.16's condition there): generation and optimisation steps misaligned
        (``steps_per_generation`` or ``num_iterations`` beyond the accumulation), or vLLM's
        importance-sampling correction."""
        generate_every = cast(int, self.args.steps_per_generation) * self.num_iterations  # resolved by TRL
        return bool(self.args.gradient_accumulation_steps % generate_every != 0
                    or (self.use_vllm and self.vllm_importance_sampling_correction))

    def _get_per_token_logps_and_entropies(self, model: Any, *args: Any, compute_entropy: bool = False,
                                           **kwargs: Any) -> Any:
        """TRL's; its old-log-prob pass (the first call on the policy while ``_pass_entropies`` waits)
        also keeps the entropies its fused head computes in the same call (at the sampling
        temperature, one per completion token), for RePro's cut points."""
        if self._pass_entropies is None or self._pass_entropies or model is not self.model:
            return super()._get_per_token_logps_and_entropies(model, *args, compute_entropy=compute_entropy, **kwargs)
        logps, entropies, aux_loss = super()._get_per_token_logps_and_entropies(model, *args, compute_entropy=True,
                                                                               **kwargs)
        self._pass_entropies.append(entropies)
        return logps, entropies if compute_entropy else None, aux_loss

    def _evaluate_completions(
        self, inputs: list[dict[str, Any]], output: dict[str, Any], entropies: torch.Tensor | None = None
    ) -> tuple[Any, Any]:
        """``ReproScorer.evaluate`` of the local completions (``Evaluation``, ``Steps``) with the
        current policy as TRL's generation sees it: ZeRO-3's parameters gathered, an FSDP2 policy as
        it is (the scorer keeps its ranks in step). ``entropies``: TRL's old-log-prob pass's, which
        spare the scorer its own entropy pass."""
        column = self.args.repro_answer_column
        if column not in inputs[0]:
            raise ReproError(
                "repro_answer_column", f"{column!r} is not a dataset column (columns: {sorted(inputs[0])})"
            )
        prompt_ids, completion_ids = self._token_lists(output)
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator) as policy:
            self.repro.objective.model = policy
            return self.repro.evaluate(prompt_ids, completion_ids, [x[column] for x in inputs], entropies=entropies)

    def _behaviour_metrics(
        self, inputs: list[dict[str, Any]], output: dict[str, Any], batch: dict[str, Any] | None
    ) -> dict[str, float]:
        """Evaluation's view of the completions' reasoning, RePro on or off, means over the batch:
        ``repro/paragraphs`` and ``repro/backtracks`` per completion (repro_core.behaviour), and
        ``repro/J_gain`` (J at the end minus J at the baseline), from the step's own J when the
        whole ``batch`` has it, else from an evaluation of the local completions."""
        lengths = output["completion_mask"].sum(1).cpu().numpy()
        token_ids = output["completion_ids"].cpu().numpy()
        mask = np.arange(token_ids.shape[1]) < lengths[:, None]
        found = paragraphs(self.repro, token_ids * mask, mask)
        metrics = {
            "repro/paragraphs": self._mean_over_processes(float(np.mean([len(row) for row in found]))),
            "repro/backtracks": self._mean_over_processes(
                float(np.mean([sum(cue is not None for *_, cue in row) for row in found]))
            ),
        }
        if batch is not None and "j" in batch:
            gain = float(j_gain(batch["cuts"], batch["j"]).mean())  # the whole batch's already
        else:
            evaluation, _ = self._evaluate_completions(inputs, output)
            gain = float(j_gain(evaluation.cuts, evaluation.j).mean())
        # Through the same reduction either way, so that RePro on and off log the same value.
        metrics["repro/J_gain"] = self._mean_over_processes(gain)
        return metrics

    @staticmethod
    def _token_lists(output: dict[str, Any]) -> tuple[list[list[int]], list[list[int]]]:
        """The local rows' prompt and completion token ids, unpadded."""
        lengths = output["completion_mask"].sum(1).tolist()
        prompt_ids = [
            ids[mask.bool()].tolist() for ids, mask in zip(output["prompt_ids"], output["prompt_mask"], strict=True)
        ]
        return prompt_ids, [ids[:n].tolist() for ids, n in zip(output["completion_ids"], lengths, strict=True)]

    def _mode(self) -> str:
        return "train" if self.model is not None and self.model.training else "eval"

    def _needs_own_advantages(self) -> bool:
        return self.args.repro_enabled

    def _rollout_arrays(self, output: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per-token (B_local, T_local) arrays that the advantages need besides RePro's (none here)."""
        return {}

    def _rollout_metrics(self, batch: dict[str, Any], per_token: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics of the whole batch beyond repro/* (none here)."""
        return {}

    def _gather_rollouts(
        self, inputs: list[dict[str, Any]], output: dict[str, Any], entropies: torch.Tensor | None = None
    ) -> tuple[dict[str, Any], float]:
        """RePro on the local completions (``entropies``: TRL's old-log-prob pass's, when it ran),
        then everything the advantages need, over all processes.

        Returns the whole batch (rows in rank order, as the parent lays out its rewards) and the
        seconds spent in RePro here. Its entries: per row (B,) ``lengths``, ``outcome_rewards``
        (the weighted sum of the reward functions), ``outcome_advantages`` (TRL's advantage),
        ``unscorable`` and ``group_index``; ``cuts`` (a ``Cuts``) and per cut point, in its layout,
        ``step_rewards`` (RePro's process rewards) and, when RePro is on, ``j``, ``magnitude`` and
        ``stability``; per token (B, T) ``mask`` and the arrays of ``_rollout_arrays``.
        """
        completion_mask = output["completion_mask"]
        lengths = completion_mask.sum(1).tolist()  # right-padded; truncated rows may be masked whole
        local: dict[str, Any] = {"lengths": np.asarray(lengths, dtype=np.int64)}
        started = time.perf_counter()
        if self.args.repro_enabled:
            evaluation, steps = self._evaluate_completions(inputs, output, entropies)
            local.update(cuts=evaluation.cuts, step_rewards=steps.reward, j=evaluation.j, magnitude=steps.magnitude,
                         stability=steps.stability)
        else:  # only the baseline point: no process reward
            local.update(cuts=Cuts.from_rows([[0]] * len(lengths)), step_rewards=np.zeros(len(lengths)))
        repro_seconds = time.perf_counter() - started
        local["outcome_advantages"] = output["advantages"].float().cpu().numpy()
        arrays = self._rollout_arrays(output)
        local["token_rows"] = {
            name: [row[:n] for row, n in zip(values, lengths, strict=True)] for name, values in arrays.items()
        }
        parts = gather_object([local])  # one entry per process, in rank order
        # Rows and their cut points one process after another: per-row and per-point arrays
        # concatenate in that same order.
        batch: dict[str, Any] = {
            key: np.concatenate([part[key] for part in parts]) for key in local if key not in ("cuts", "token_rows")
        }
        batch["cuts"] = Cuts.concat([part["cuts"] for part in parts])
        width = max(1, int(batch["lengths"].max()))
        batch["mask"] = np.arange(width) < batch["lengths"][:, None]
        for name in arrays:
            padded = np.zeros(batch["mask"].shape, dtype=np.float32)
            padded[batch["mask"]] = np.concatenate([row for part in parts for row in part["token_rows"][name]])
            batch[name] = padded
        # TRL resolves both counts in its __init__ (eval falls back to the training one).
        group_size = cast(int, self.num_generations_eval if self._mode() == "eval" else self.num_generations)
        batch["group_index"] = np.arange(len(batch["lengths"])) // group_size
        batch["outcome_rewards"], batch["unscorable"] = self._outcome_rewards()
        return batch, repro_seconds

    def _batch_advantages(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """(B, T) advantages of the whole batch (B rows over all processes)."""
        grpo = self.args.repro_estimator == "grpo"
        # For grpo the outcome part is TRL's advantage, added below.
        outcome_rewards = np.zeros(len(batch["lengths"])) if grpo else batch["outcome_rewards"]
        cuts = batch["cuts"]
        # For grpo the process part follows TRL's scale_rewards too: the group's std, the batch's, or none.
        process_std = cast(ProcessStd, self.args.scale_rewards) if grpo else "group"
        total = self.repro.advantages(outcome_rewards, batch["step_rewards"], cuts.offsets, cuts.positions,
                                      batch["mask"], batch["group_index"], process_std=process_std).advantages
        if grpo:
            total = total + batch["outcome_advantages"][:, None] * batch["mask"]
        total[batch["unscorable"]] = 0.0  # no reward function scored these rows (TRL zeroes them too)
        return {"advantages": total}

    def _local_rows(self, values: np.ndarray, completion_mask: torch.Tensor) -> torch.Tensor:
        """This process's rows of a whole-batch (B, T) array, at the local width, zero off the mask."""
        rows, width = completion_mask.shape
        first = self.accelerator.process_index * rows  # the parent's own slicing
        local = torch.zeros((rows, width), dtype=torch.float32)
        kept = min(width, values.shape[1])
        local[:, :kept] = torch.from_numpy(np.ascontiguousarray(values[first : first + rows, :kept]))
        return local.to(completion_mask.device) * completion_mask

    def _outcome_rewards(self) -> tuple[np.ndarray, np.ndarray]:
        """The weighted sum of the reward functions over the whole batch, and the rows no function
        scored (every one returned None); those count 0 in the statistics."""
        assert self._rewards_per_func is not None, "the parent computes rewards before advantages"
        weights = self.reward_weights.to(self._rewards_per_func.device)
        rewards = (self._rewards_per_func * weights).nansum(dim=1)
        unscorable = torch.isnan(self._rewards_per_func).all(dim=1)
        return rewards.double().cpu().numpy(), unscorable.cpu().numpy()

    @staticmethod
    def _metrics_of(batch: dict[str, Any], advantages: np.ndarray) -> dict[str, float]:
        """The repro/* metrics over the whole batch (every process logs the same values)."""
        mask = batch["mask"]
        metrics = step_metrics(batch["cuts"], batch["j"], magnitude=batch["magnitude"],
                               stability=batch["stability"], reward=batch["step_rewards"])
        metrics["repro/advantage_abs_mean"] = float(np.abs(advantages[mask]).mean()) if mask.any() else 0.0
        return metrics

    def _mean_over_processes(self, value: float) -> float:
        gathered = self.accelerator.gather(torch.tensor([value], device=self.accelerator.device))
        return float(gathered.mean().item())


def shuffled_within_groups(
    step_rewards: np.ndarray, cuts: Cuts, group_index: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``step_rewards`` (one per cut point, in ``cuts``' layout) with the rewards of each group's placed
    cut points permuted among them (``repro_shuffle_rewards``); each row's baseline point keeps its 0."""
    rows = cuts.row_index()
    placed = np.ones(len(rows), dtype=bool)
    placed[:1] = False
    placed[1:] = rows[1:] == rows[:-1]  # the first point of a row is its baseline
    groups = np.asarray(group_index)[rows]
    shuffled = np.array(step_rewards, copy=True)
    for group in np.unique(groups[placed]):
        points = np.flatnonzero(placed & (groups == group))
        shuffled[points] = step_rewards[rng.permutation(points)]
    return shuffled
