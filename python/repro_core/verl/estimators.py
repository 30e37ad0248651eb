"""The ``repro_*`` advantage estimators, registered with verl's ``register_adv_est`` on import.

One per repro_core estimator, named ``repro_<name>`` (``repro_gae`` for ``ppo``, as verl calls
GAE), each also under the name the authors' verl fork gives it (``ALIASES``). Each returns
``(advantages, returns)`` computed by ``repro_core.compute_advantages`` (docs/method.md,
"Advantages"); with alpha = 0 both are verl's own estimator's (tests/test_verl.py). It reads:

- the outcome from verl's ``token_level_rewards`` (the score on the last token, plus any in-reward
  KL): the sum of the whole row, padding included, for the grpo family and reinforce_pp_baseline,
  as verl's grpo (an empty response's score sits on the last column, outside the mask, and counts
  in its group's statistics); the tensor as token rewards, on the mask, for reinforce_pp and gae.
  A non-finite value anywhere in it is refused, naming its row and column: verl's own estimators
  would turn it into NaN advantages, through the row sum or the whitening;
- the groups from ``index`` (verl's ``uid``), grouped as verl does, by equality of the labels
  (of any hashable type, mixed: strings, integers, None);
- alpha, stats_include_baseline, drop_first_token_reward and critic_target (the authors' code's
  arithmetic, each on its own) from ``algorithm.repro`` (``ReproConfig``'s defaults when absent), gamma, lam
  (gae only) and ``norm_adv_by_std_in_grpo`` (grpo only, as verl's grpo) from ``algorithm``; the
  authors' fork's keys ``algorithm.repro_alpha`` and ``algorithm.num_forking_token`` are refused
  (``REFUSED_KEYS``), not read;
- the process rewards, never summed into the scores, from ``process_rewards(...)``: the cut points
  (``Cuts``, one row per batch row) and the step reward at every point, given for the duration of
  verl's advantage dispatch. The last cut point of a completion without a think-end tag closes on
  its last token, where the outcome sits too; in one tensor the two would be inseparable.

verl's dispatch passes estimators only ``token_level_rewards``, ``response_mask``, ``index`` and
``config``, hence the context manager::

    with repro_core.verl.process_rewards(cuts, step_rewards, values=None):
        data = compute_advantage(data, adv_estimator="repro_grpo", config=algorithm_config)

An estimator called outside it raises ``ReproError`` rather than drop the process part silently.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any, cast

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from verl.trainer.ppo.core_algos import register_adv_est

from .. import _api
from .._api import Cuts, Estimator, compute_advantages
from ..config import ADVANTAGE_SETTINGS, ReproConfig, preset_settings
from ..errors import ReproError

__all__ = [
    "ALIASES",
    "ESTIMATORS",
    "OUTSIDE_THE_BLOCK",
    "REFUSED_KEYS",
    "REPRO_KEYS",
    "ProcessRewards",
    "ReproEstimator",
    "check_algorithm_keys",
    "estimator_of",
    "process_rewards",
    "repro_block",
    "verl_name",
]

#: verl's spelling of an estimator where it differs from repro_core's: verl calls PPO's GAE "gae".
_VERL_SPELLING = {"ppo": "gae"}


def verl_name(estimator: str) -> str:
    """The verl name of a repro_core estimator: ``repro_<name>``, ``repro_gae`` for ``ppo``."""
    return f"repro_{_VERL_SPELLING.get(estimator, estimator)}"


#: verl name -> repro_core estimator, one per ``repro_core._api.ESTIMATORS``.
ESTIMATORS: dict[str, Estimator] = {verl_name(name): cast(Estimator, name) for name in _api.ESTIMATORS}
#: The authors' verl fork's names -> ours: the same estimator objects, registered under both.
ALIASES: dict[str, str] = {
    "repro_ppo": "repro_gae",
    "repro_reinforce_plus_plus": "repro_reinforce_pp",
    "repro_reinforce_plus_plus_baseline": "repro_reinforce_pp_baseline",
}
#: The authors' fork's keys at the top of ``algorithm`` -> the project's key for that setting.
#: Refused rather than honoured: one spelling per setting, and no run silently on the default.
REFUSED_KEYS: dict[str, str] = {"repro_alpha": "algorithm.repro.alpha", "num_forking_token": "algorithm.repro.k"}

#: ``ReproConfig`` fields that are not keys of ``algorithm.repro``, each with where it comes from.
#: verl's own config already has the first four; the last two choose how ``ObjectiveScorer`` runs
#: J on one machine, and the verl path runs J otherwise (one probe row per cut point through the
#: actor workers, batched by verl's own ``log_prob_*`` token limits), so it does not use them yet.
OUTSIDE_THE_BLOCK: dict[str, str] = {
    "estimator": "algorithm.adv_estimator",
    "gamma": "algorithm.gamma",
    "lam": "algorithm.lam",
    "temperature": "actor_rollout_ref.rollout.temperature",
}

#: Keys of ``algorithm.repro``: every other ``ReproConfig`` field.
REPRO_KEYS: tuple[str, ...] = tuple(f.name for f in fields(ReproConfig) if f.name not in OUTSIDE_THE_BLOCK)

#: The advantage options that the estimators read from ``algorithm.repro``; gamma and lam come from
#: ``algorithm``, where verl's own estimators read them.
_BLOCK_OPTIONS = tuple(name for name in ADVANTAGE_SETTINGS if name not in OUTSIDE_THE_BLOCK)
#: The verl keys that set ``compute_advantages``'s options (a ReproError from the core names them).
_OPTION_KEYS = {
    **{name: f"algorithm.repro.{name}" for name in _BLOCK_OPTIONS},
    "gamma": OUTSIDE_THE_BLOCK["gamma"],
    "lam": OUTSIDE_THE_BLOCK["lam"],
    "norm_by_std": "algorithm.norm_adv_by_std_in_grpo",
}
_MISSING = object()


def estimator_of(name: str) -> Estimator | None:
    """The repro_core estimator of a verl name (ours or the authors' alias), None for any other."""
    return ESTIMATORS.get(ALIASES.get(name, name))


def check_algorithm_keys(algorithm: Any) -> None:
    """Refuse the authors' fork's keys in verl's ``algorithm`` config (a ReproError naming ours)."""
    for key, ours in REFUSED_KEYS.items():
        if _get(algorithm, key, _MISSING) is not _MISSING:
            raise ReproError(f"algorithm.{key}", f"the authors' fork's key is not read here; set {ours} instead")


@dataclass(frozen=True)
class ProcessRewards:
    """RePro's process rewards of a batch, aligned with verl's rows.

    ``cuts``: the cut points, one row per batch row (``Cuts``; a padding row is empty), positions
    within each row's response; ``step_rewards`` (N,): the step reward r_j at every cut point in
    ``cuts`` order (``Steps.reward``; 0 at each row's baseline point 0); ``values`` (B, T): the
    critic's values, for repro_gae only.
    """

    cuts: Cuts
    step_rewards: np.ndarray
    values: np.ndarray | None = None

    def check(self, lengths: np.ndarray) -> None:
        """That the cuts fit a batch with these response lengths (ReproError naming process_rewards)."""
        rows, points = len(self.cuts), len(self.cuts.positions)
        if rows != len(lengths):
            raise ReproError(
                "process_rewards", f"the cuts have {rows} rows, expected one per batch row (B = {len(lengths)})"
            )
        if len(self.cuts.offsets) != rows + 1 or (rows and self.cuts.offsets[-1] != points):
            raise ReproError(
                "process_rewards", f"the cuts' offsets {self.cuts.offsets.tolist()} do not delimit "
                f"{points} positions in {rows} rows"
            )
        if len(self.step_rewards) != points:
            raise ReproError(
                "process_rewards", f"step_rewards has {len(self.step_rewards)} entries, expected one per cut "
                f"point (N = {points})"
            )
        if points:
            row = self.cuts.row_index()
            beyond = np.flatnonzero((self.cuts.positions < 0) | (self.cuts.positions > lengths[row]))
            if len(beyond):
                n = beyond[0]
                raise ReproError(
                    "process_rewards", f"batch row {row[n]}: cut point {self.cuts.positions[n]} lies outside its "
                    f"response of {lengths[row[n]]} tokens"
                )


_current: ContextVar[ProcessRewards | None] = ContextVar("repro_process_rewards", default=None)


@contextmanager
def process_rewards(cuts: Cuts, step_rewards: Any, values: Any = None) -> Iterator[ProcessRewards]:
    """Make a batch's process rewards visible to the repro_* estimators for the duration of the block.

    cuts: one row per batch row, in verl's row order (an empty row for a padding row), each row
    0 first, then increasing positions up to the row's response length; step_rewards (N,): the
    reward at every cut point, in ``cuts`` order (``score_steps(...).reward``); values (B, T): the
    critic's values, needed by repro_gae only. The estimator checks them against verl's batch.
    """
    if not isinstance(cuts, Cuts):
        raise ReproError("process_rewards", f"expected the cut points as a repro_core.Cuts, got {type(cuts).__name__}")
    rewards = _numpy(step_rewards, np.float64)
    if rewards.ndim != 1:
        raise ReproError("process_rewards", f"expected step_rewards of shape (N,), got {rewards.shape}")
    process = ProcessRewards(cuts, rewards, None if values is None else _numpy(values, np.float32))
    token = _current.set(process)
    try:
        yield process
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
                "algorithm.adv_estimator", f"{self.name} found no process rewards; run verl's compute_advantage "
                "inside repro_core.verl.process_rewards(...), as the repro_sync trainer does"
            )
        check_algorithm_keys(config)
        estimator = ESTIMATORS[self.name]
        mask = response_mask.bool().cpu().numpy()
        process.check(mask.sum(1))
        scores = _finite_rewards(token_level_rewards, mask)
        groups = np.arange(len(mask)) if index is None else _groups(index)
        per_token = estimator in ("reinforce_pp", "ppo")  # the KL in the rewards stays per token
        values = None
        if estimator == "ppo":
            if process.values is None:
                raise ReproError(
                    "process_rewards", f"{self.name} needs the critic's values: process_rewards(..., values=)"
                )
            values = process.values
            if values.shape != mask.shape:
                raise ReproError("process_rewards", f"values has shape {values.shape}, expected {mask.shape}")
        repro = repro_block(config)
        try:
            result = compute_advantages(
                estimator,
                np.zeros(len(mask)) if per_token else scores.sum(1),  # the whole row, as verl's grpo
                process.step_rewards,
                process.cuts.offsets,
                process.cuts.positions,
                mask,
                groups,
                gamma=_get(config, "gamma", 1.0),
                lam=_get(config, "lam", 1.0) if estimator == "ppo" else 1.0,
                # verl's grpo reads this flag; dr_grpo never divides, the others have no group std.
                norm_by_std=_get(config, "norm_adv_by_std_in_grpo", True) if estimator == "grpo" else True,
                values=values,
                token_rewards=scores if per_token else None,
                **{name: repro.get(name, getattr(ReproConfig, name)) for name in _BLOCK_OPTIONS},
            )
        except ReproError as error:
            if error.argument in _OPTION_KEYS:
                raise error.renamed(_OPTION_KEYS[error.argument]) from None
            if error.argument in ("offsets", "positions", "step_rewards", "values"):
                raise ReproError("process_rewards", f"{error.argument}: {error.message}") from None
            raise
        device = token_level_rewards.device
        advantages = torch.from_numpy(result.advantages).to(device)
        returns = advantages if result.returns is None else torch.from_numpy(result.returns).to(device)
        return advantages, returns


def repro_block(algorithm: Any) -> dict[str, Any]:
    """``algorithm.repro`` as a dict, its ``preset`` (a name of ``repro_core.config.PRESETS``) applied
    under the block's other keys, which win. The estimators and the trainer read the block through it."""
    block = _get(algorithm, "repro", None)
    if block is None:
        return {}
    if isinstance(block, DictConfig):
        block = OmegaConf.to_container(block, resolve=True)
    if not isinstance(block, Mapping):
        raise ReproError("algorithm.repro", f"expected a mapping, got {block!r}")
    values = {str(key): value for key, value in block.items()}
    preset = values.pop("preset", None)
    if preset is None:
        return values
    return {**preset_settings(str(preset), "algorithm.repro.preset"), **values}


def _finite_rewards(token_level_rewards: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """verl's ``token_level_rewards`` in float64, refused (naming row and column) where not finite."""
    rewards = token_level_rewards.detach().double().cpu().numpy()
    bad = np.argwhere(~np.isfinite(rewards))
    if len(bad):
        row, column = (int(i) for i in bad[0])
        where = "inside" if mask[row, column] else "outside"
        raise ReproError(
            "token_level_rewards",
            f"row {row}, column {column} ({where} the response mask) holds {rewards[row, column]} "
            f"({len(bad)} non-finite in all); verl's own estimators would turn it into NaN advantages. "
            "Make the reward function's scores (and any in-reward KL) finite, padding included"
        )
    return rewards


def _groups(index: Any) -> np.ndarray:
    """Group labels 0..G-1 in order of first appearance, grouping ``index`` as verl's estimators do:
    by the labels' equality as dict keys, whatever their types."""
    labels: dict[Any, int] = {}
    groups = np.empty(len(index), dtype=np.int64)
    for row, label in enumerate(index):
        try:
            groups[row] = labels.setdefault(label, len(labels))
        except TypeError:
            raise ReproError(
                "index", f"row {row}: the group label {label!r} ({type(label).__name__}) is not hashable; verl groups "
                "rows by their uid as dict keys, so give each prompt a string or integer uid"
            ) from None
    return groups


def _numpy(value: Any, dtype: type[np.generic]) -> np.ndarray:
    """A tensor (any device) or array-like as a NumPy array of ``dtype``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double()  # NumPy reads no bfloat16
    return np.asarray(value, dtype=dtype)


def _get(config: Any, key: str, default: Any) -> Any:
    """``config.get(key)`` for verl's configs, OmegaConf nodes and dicts alike."""
    return default if config is None else config.get(key, default)


_REGISTERED = {name: ReproEstimator(name) for name in ESTIMATORS}
for _name, _estimator in [*_REGISTERED.items(), *((alias, _REGISTERED[name]) for alias, name in ALIASES.items())]:
    register_adv_est(_name)(_estimator)
