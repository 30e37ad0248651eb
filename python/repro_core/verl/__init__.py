"""RePro for verl: advantage estimators and the ``repro_sync`` trainer, in verl's own registries.

verl 0.9 imports this module in every process through the ``verl.plugins`` entry point (``pip
install "repro-core[verl]"``), which registers

    repro_grpo, repro_dr_grpo, repro_reinforce_pp, repro_reinforce_pp_baseline, repro_gae

with ``register_adv_est``. Each returns ``(advantages, returns)`` computed by
``repro_core.compute_advantages`` (REPRO.md section 4), reading:

- the outcome from verl's ``token_level_rewards`` (the score on the last token, plus any in-reward
  KL): its row sum for the grpo family and reinforce_pp_baseline; the whole tensor as token rewards
  for reinforce_pp and gae;
- the groups from ``index`` (verl's ``uid``);
- alpha from ``algorithm.repro.alpha`` (default 0.1), gamma and lam (gae only) from ``algorithm``;
- the process rewards from a tensor of their own, never summed into the scores, given for the
  duration of verl's advantage dispatch by ``process_rewards(...)``. The last cut point of a
  completion without a think-end tag closes on its last token, where the outcome sits too; in one
  tensor the two would be inseparable.

verl's dispatch passes estimators only ``token_level_rewards``, ``response_mask``, ``index`` and
``config``, hence the context manager::

    with repro_core.verl.process_rewards(rewards, placed, values=None):
        data = compute_advantage(data, adv_estimator="repro_grpo", config=algorithm_config)

An estimator called outside it raises ``ReproError`` rather than drop the process part silently.
The ``repro_sync`` trainer (``trainer.py``) computes the process rewards and does exactly that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from verl.trainer.ppo.core_algos import register_adv_est

from .._api import Estimator, compute_advantages
from ..errors import ReproError
from ..pipeline import ReproConfig

__all__ = ["ESTIMATORS", "ProcessRewards", "ReproEstimator", "ReproTrainerSync", "process_rewards"]

#: verl name -> repro_core estimator.
ESTIMATORS: dict[str, Estimator] = {
    "repro_grpo": "grpo",
    "repro_dr_grpo": "dr_grpo",
    "repro_reinforce_pp": "reinforce_pp",
    "repro_reinforce_pp_baseline": "reinforce_pp_baseline",
    "repro_gae": "ppo",
}
DEFAULT_ALPHA = ReproConfig.alpha


@dataclass(frozen=True)
class ProcessRewards:
    """RePro's process rewards of a batch, aligned with verl's responses.

    ``rewards`` (B, T): r_j on token p_j - 1 of each cut point p_j (j >= 1); ``placed`` (B, T) bool:
    where a reward sits (a reward may be 0); ``values`` (B, T): the critic's values, for repro_gae.
    """

    rewards: torch.Tensor
    placed: torch.Tensor
    values: torch.Tensor | None = None


_current: ContextVar[ProcessRewards | None] = ContextVar("repro_process_rewards", default=None)


@contextmanager
def process_rewards(
    rewards: torch.Tensor, placed: torch.Tensor, values: torch.Tensor | None = None
) -> Iterator[ProcessRewards]:
    """Make the batch's process rewards (and critic values) visible to the repro_* estimators."""
    token = _current.set(ProcessRewards(rewards, placed, values))
    try:
        yield _current.get()  # type: ignore[misc]
    finally:
        _current.reset(token)


@dataclass(frozen=True)
class ReproEstimator:
    """One registered estimator (a frozen dataclass: equal when re-registered, and picklable)."""

    name: str

    def __call__(
        self,
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index: np.ndarray | None = None,
        config: Any = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        process = _current.get()
        if process is None:
            raise ReproError(
                f"adv_estimator {self.name}: no process rewards; run verl's compute_advantage inside "
                "repro_core.verl.process_rewards(...)"
            )
        estimator = ESTIMATORS[self.name]
        mask = response_mask.bool().cpu().numpy()
        shape = mask.shape
        for name, tensor in (("rewards", process.rewards), ("placed", process.placed)):
            if tuple(tensor.shape) != shape:
                raise ReproError("process_rewards", f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
        scores = (token_level_rewards.detach().double().cpu().numpy()) * mask
        offsets, positions, step_rewards = _cut_points(process, mask)
        groups = np.arange(shape[0]) if index is None else np.unique(np.asarray(index), return_inverse=True)[1]
        repro = _get(config, "repro", None) or {}
        per_token = estimator in ("reinforce_pp", "ppo")  # the KL in the rewards stays per token
        values = None
        if estimator == "ppo":
            if process.values is None:
                raise ReproError("adv_estimator repro_gae: process_rewards(...) needs the critic's values")
            values = process.values.detach().float().cpu().numpy()
        result = compute_advantages(
            estimator,
            np.zeros(shape[0]) if per_token else scores.sum(1),
            step_rewards,
            offsets,
            positions,
            mask,
            groups,
            alpha=float(_get(repro, "alpha", DEFAULT_ALPHA)),
            gamma=float(_get(config, "gamma", 1.0)),
            lam=float(_get(config, "lam", 1.0)) if estimator == "ppo" else 1.0,
            values=values,
            token_rewards=scores if per_token else None,
        )
        device = token_level_rewards.device
        advantages = torch.from_numpy(result.advantages).to(device)
        returns = advantages if result.returns is None else torch.from_numpy(result.returns).to(device)
        return advantages, returns


def _cut_points(process: ProcessRewards, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cuts layout from placements: row b's points are 0 and t + 1 for every placed token t."""
    placed = process.placed.bool().cpu().numpy() & mask
    rows, cols = np.nonzero(placed)  # row-major, so sorted by row, then by token
    counts = placed.sum(1) + 1
    offsets = np.concatenate([[0], np.cumsum(counts)])
    firsts = np.zeros(offsets[-1], dtype=bool)
    firsts[offsets[:-1]] = True
    positions = np.zeros(offsets[-1], dtype=np.int64)
    positions[~firsts] = cols + 1
    step_rewards = np.zeros(offsets[-1])
    step_rewards[~firsts] = process.rewards.detach().double().cpu().numpy()[rows, cols]
    return offsets, positions, step_rewards


def _get(config: Any, key: str, default: Any) -> Any:
    """``config.get(key)`` for verl's configs, OmegaConf nodes and dicts alike."""
    return default if config is None else config.get(key, default)


for _name in ESTIMATORS:
    register_adv_est(_name)(ReproEstimator(_name))

# verl's engines next to TRL >= 1.13 (compat.py).
from .compat import narrow_verl_trl_check  # noqa: E402

narrow_verl_trl_check()

# The trainer registers itself with verl's v1 registry (trainer.v1.trainer_mode=repro_sync).
from .trainer import ReproTrainerSync  # noqa: E402
