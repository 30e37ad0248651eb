"""One call from rollouts to per-token advantages (docs/method.md, "Cut points" to "Advantages").

``ReproScorer.score`` runs the entropy pass and J on the model (``objective``), and everything
else in the Rust core: cut selection, scores, process rewards, advantages. Each piece is computed
once: cut points are chosen chunk by chunk between the entropy pass and the probes that reuse its
KV cache.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._api import (
    Advantages,
    Cuts,
    ProcessStd,
    Steps,
    compute_advantages,
    score_steps,
    segment_paragraphs,
    select_cuts,
)
from .assets import DEFAULT_MODEL, cache_dir
from .config import ReproConfig
from .delimiters import Delimiters, think_end_id, tokenizer_size
from .errors import ReproError
from .objective import Evaluation, ObjectiveScorer

logger = logging.getLogger(__name__)
#: ReproConfig's think-end token: the one that may be missing from a tokenizer.
_DEFAULT_THINK_END = ReproConfig.__dataclass_fields__["think_end"].default
#: The tokenizers (by name) already told that they have no think-end token.
_WARNED_NO_THINK_END: set[str] = set()

# ReproConfig is declared in repro_core.config and offered here beside the scorer it configures.
__all__ = ["ReproConfig", "ReproResult", "ReproScorer", "cut_selector", "step_metrics"]


@dataclass(frozen=True)
class ReproResult:
    """Everything ``ReproScorer.score`` computed for one batch.

    Per token (B, T): ``token_ids``, ``entropies``, ``mask``, and ``advantages.advantages`` (plus
    ``advantages.returns`` for ppo). Per cut point (N,), in ``cuts`` order: ``j`` and ``steps``.
    Per row (B,): ``j_baseline`` (J at p = 0), ``j_end`` (J at the end of thinking) and
    ``num_paragraphs`` (paragraphs of the thinking part, all of them, not only the top-k).
    """

    token_ids: np.ndarray
    entropies: np.ndarray
    mask: np.ndarray
    cuts: Cuts
    j: np.ndarray
    steps: Steps
    advantages: Advantages
    j_baseline: np.ndarray
    j_end: np.ndarray
    num_paragraphs: np.ndarray


class ReproScorer:
    """RePro for one batch of rollouts: model passes for entropies and J, then the Rust core.

    Args:
        model: a ``transformers`` causal LM (the current policy).
        tokenizer: its tokenizer (paragraph table, think-end token, answer text).
        config: a ``ReproConfig``; defaults when None.
    """

    def __init__(self, model: Any, tokenizer: Any, config: ReproConfig | None = None) -> None:
        self.config = config = ReproConfig() if config is None else config
        self._select = cut_selector(tokenizer, config)
        self.delimiters: Delimiters = self._select.keywords["delimiters"]
        self.think_end_id: int | None = self._select.keywords["think_end_id"]
        try:
            self.objective = ObjectiveScorer(
                model,
                tokenizer,
                answer_template=config.answer_template,
                mode=config.objective_mode,
                temperature=config.temperature,
                max_batch_tokens=config.max_batch_tokens,
                j_tokens=config.j_tokens,
                answer_special_tokens=config.answer_special_tokens,
                j_at_rollout_temperature=config.j_at_rollout_temperature,
            )
        except ReproError as error:  # the scorer's mode is the config's objective_mode
            raise error.renamed("objective_mode") if error.argument == "mode" else error from None

    def evaluate(
        self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], answers: Sequence[Any],
        entropies: Any = None,
    ) -> tuple[Evaluation, Steps]:
        """The per-completion part: entropies, cut points, J and scores (no batch statistics).

        A trainer whose batch is spread over processes runs this on its own rows, gathers the
        results and calls ``advantages`` once on the whole batch. ``entropies`` (B, >= T): the
        completions' entropies from a pass the trainer made anyway (``ObjectiveScorer.evaluate``).
        """
        evaluation = self.objective.evaluate(prompt_ids, completion_ids, answers, self._select, entropies=entropies)
        config = self.config
        steps = score_steps(evaluation.j, evaluation.cuts.offsets, w=config.w, stability_ema=config.stability_ema)
        return evaluation, steps

    def advantages(
        self,
        outcome_rewards: Any,
        step_rewards: Any,
        offsets: Any,
        positions: Any,
        response_mask: Any,
        group_index: Any,
        values: Any = None,
        token_rewards: Any = None,
        process_std: ProcessStd = "group",
    ) -> Advantages:
        """``compute_advantages`` with the config's estimator and advantage options (``process_std``
        is the host's: TRL's ``scale_rewards``)."""
        config = self.config
        return compute_advantages(
            config.estimator,
            outcome_rewards,
            step_rewards,
            offsets,
            positions,
            response_mask,
            group_index,
            values=values,
            token_rewards=token_rewards,
            process_std=process_std,
            **config.advantage_options(),
        )

    def score(
        self,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        answers: Sequence[Any],
        outcome_rewards: Any,
        group_index: Any,
        values: Any = None,
        token_rewards: Any = None,
    ) -> ReproResult:
        """Cut points, J, scores and advantages for B rollouts.

        ``prompt_ids``/``completion_ids``: B token-id sequences each (unpadded); ``answers``: B
        ground truths for the answer template; ``outcome_rewards`` (B,); ``group_index`` (B,) ints
        (completions of one prompt share a value); ``values`` (B, T) critic values and
        ``token_rewards`` (B, T) extra per-token rewards (ppo and reinforce_pp), where T is the
        longest completion.
        """
        evaluation, steps = self.evaluate(prompt_ids, completion_ids, answers)
        cuts = evaluation.cuts
        j_rows = cuts.split(evaluation.j)  # every row has its baseline point p = 0 and its end point
        advantages = self.advantages(
            outcome_rewards, steps.reward, cuts.offsets, cuts.positions, evaluation.mask, group_index, values,
            token_rewards,
        )
        paragraphs = segment_paragraphs(
            evaluation.token_ids, evaluation.mask, delimiters=self.delimiters, think_end_id=self.think_end_id
        )
        return ReproResult(
            token_ids=evaluation.token_ids,
            entropies=evaluation.entropies,
            mask=evaluation.mask,
            cuts=cuts,
            j=evaluation.j,
            steps=steps,
            advantages=advantages,
            j_baseline=np.array([j[0] for j in j_rows]),
            j_end=np.array([j[-1] for j in j_rows]),
            num_paragraphs=np.diff(paragraphs.offsets),
        )


def cut_selector(tokenizer: Any, config: ReproConfig) -> functools.partial[Cuts]:
    """``select_cuts`` with the config's k, delimiters and think-end token resolved for ``tokenizer``.

    Errors name the config's fields (``delimiters``, ``think_end``): a think-end token given
    explicitly must be one token of the tokenizer (or an id of its vocabulary); the default
    ``"</think>"`` may be missing, and then completions are scored to their end (logged once per
    tokenizer, and not for the embedded default model).
    """
    try:
        delimiters = _delimiters(tokenizer, config.delimiters)
    except ReproError as error:
        if error.argument in ("mode", "ids"):  # Delimiters' own argument names
            raise error.renamed("delimiters") from None
        raise
    return functools.partial(
        select_cuts, delimiters=delimiters, k=config.k, think_end_id=_think_end(tokenizer, config.think_end)
    )


def _think_end(tokenizer: Any, token: str | int | None) -> int | None:
    """The think-end id of ``token`` for ``tokenizer`` (None: no thinking part, score to the end)."""
    if token is None:
        return None
    if isinstance(token, str):
        found = think_end_id(tokenizer, token)
        if found is not None:
            return found
        if token == _DEFAULT_THINK_END:
            # Said once per tokenizer (by name; one built in memory has none), and not for the embedded
            # default model, which does not think: scoring it to the end is what it needs.
            name = str(getattr(tokenizer, "name_or_path", "") or "")
            if name not in _WARNED_NO_THINK_END and not _is_embedded_default(name):
                if name:
                    _WARNED_NO_THINK_END.add(name)
                logger.warning(
                    "RePro: the tokenizer has no single %r token, so completions are scored to their end "
                    "(set think_end to None to say so, or to the model's end-of-thinking token)", token
                )
            return None
        raise ReproError(
            "think_end", f"{token!r} is not one token of the tokenizer (added and special tokens included); "
            "give a single token's text, its id, or None when completions have no thinking part"
        )
    size = tokenizer_size(tokenizer)
    if not 0 <= token < size:
        raise ReproError("think_end", f"token id {token} is outside the tokenizer's vocabulary (ids 0 to {size - 1})")
    return int(token)


def _is_embedded_default(name: str) -> bool:
    """Whether ``name`` (a tokenizer's ``name_or_path``) is the embedded default model's directory."""
    return bool(name) and Path(name).resolve() == (cache_dir() / DEFAULT_MODEL).resolve()


def step_metrics(
    cuts: Cuts, j: np.ndarray, *, magnitude: np.ndarray, stability: np.ndarray, reward: np.ndarray
) -> dict[str, float]:
    """The repro/* metrics of a batch: J at the baseline and at the end, cuts per row, and the means
    of the scores and process rewards over the scored cut points (the baseline points carry none).
    Rows without cut points (padding) are left out."""
    rows = [(values[0], values[-1]) for values in cuts.split(j) if len(values)]
    scored = np.ones(len(j), dtype=bool)
    scored[cuts.offsets[:-1][np.diff(cuts.offsets) > 0]] = False
    any_scored = bool(scored.any())
    return {
        "repro/J_b": float(np.mean([first for first, _ in rows])) if rows else 0.0,
        "repro/J_end": float(np.mean([last for _, last in rows])) if rows else 0.0,
        "repro/num_cuts": float(np.diff(cuts.offsets).mean()),
        "repro/magnitude": float(magnitude[scored].mean()) if any_scored else 0.0,
        "repro/stability": float(stability[scored].mean()) if any_scored else 0.0,
        "repro/process_reward_mean": float(reward[scored].mean()) if any_scored else 0.0,
        "repro/process_reward_std": float(reward[scored].std()) if any_scored else 0.0,
    }


def _delimiters(tokenizer: Any, spec: str | list[str] | list[int]) -> Delimiters:
    if isinstance(spec, str):
        return Delimiters.from_tokenizer(tokenizer, spec)
    items: list[Any] = list(spec)
    if items and all(isinstance(i, int) for i in items):
        return Delimiters.from_ids(items)
    return Delimiters.from_tokenizer(tokenizer, items)
