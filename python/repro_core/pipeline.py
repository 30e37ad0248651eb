"""One call from rollouts to per-token advantages (REPRO.md section 1).

``ReproScorer.score`` runs the entropy pass and J on the model (``objective``), and everything
else in the Rust core: cut selection, scores, process rewards, advantages. Each piece is computed
once: cut points are chosen chunk by chunk between the entropy pass and the probes that reuse its
KV cache.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._api import Advantages, Cuts, Estimator, Steps, compute_advantages, score_steps, segment_paragraphs, select_cuts
from ._core import ReproError
from .delimiters import Delimiters, think_end_id
from .objective import Evaluation, ObjectiveMode, ObjectiveScorer

__all__ = ["ReproConfig", "ReproResult", "ReproScorer", "cut_selector", "step_metrics"]

_ESTIMATORS = ("grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline")


@dataclass
class ReproConfig:
    """RePro's knobs (REPRO.md sections 1-4); defaults are the paper's."""

    k: int = field(default=20, metadata={"help": "Highest-entropy paragraph breaks kept as cut points per completion."})
    w: float = field(default=0.1, metadata={"help": "Weight of stability in the score: C = (1 - w) M + w S."})
    alpha: float = field(default=0.1, metadata={"help": "Scale of the process advantage added to the outcome one."})
    gamma: float = field(default=1.0, metadata={"help": "Discount of the reverse cumulative sums (and of GAE)."})
    lam: float = field(default=1.0, metadata={"help": "GAE lambda; only the 'ppo' estimator uses it."})
    stability_ema: float | None = field(
        default=None, metadata={"help": "EMA factor beta smoothing J before the stability score; None: no smoothing."}
    )
    estimator: Estimator = field(
        default="grpo",
        metadata={"help": "Advantage estimator: grpo, dr_grpo, ppo, reinforce_pp or reinforce_pp_baseline."},
    )
    delimiters: str | list[str] | list[int] = field(
        default="paper",
        metadata={
            "help": "Paragraph breaks: 'paper' (a blank line), 'line' (every newline), 'reference' (the "
            "authors' tokens), a list of token strings, or a list of token ids."
        },
    )
    think_end: str | int | None = field(
        default="</think>",
        metadata={"help": "End-of-thinking token (text or id); ignored when the tokenizer has no such single token."},
    )
    answer_template: str = field(
        default="\\boxed{{{answer}}}",
        metadata={"help": "str.format template of the scored answer text; {answer} is the ground truth."},
    )
    objective_mode: ObjectiveMode = field(
        default="shared",
        metadata={"help": "'shared': one pass plus cached probes (fast); 'per_cut': one sequence per cut point."},
    )
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature, for the entropies only (J uses raw logits)."}
    )
    max_batch_tokens: int = field(
        default=16384, metadata={"help": "Token budget of one forward call (rows x padded width)."}
    )

    def __post_init__(self) -> None:
        _check_int("k", self.k, minimum=0)
        _check_number("w", self.w, 0.0, 1.0)
        _check_number("alpha", self.alpha, -math.inf, math.inf)
        _check_number("gamma", self.gamma, 0.0, 1.0)
        _check_number("lam", self.lam, 0.0, 1.0)
        if self.stability_ema is not None:
            _check_number("stability_ema", self.stability_ema, 0.0, 1.0)
            if self.stability_ema == 0:
                raise ReproError("stability_ema: expected a number in (0, 1] or None, got 0")
        if self.estimator not in _ESTIMATORS:
            raise ReproError(f"estimator: expected one of {', '.join(_ESTIMATORS)}, got {self.estimator!r}")
        if self.lam != 1.0 and self.estimator != "ppo":
            raise ReproError(f"lam: only the 'ppo' estimator uses it, got lam={self.lam} with {self.estimator!r}")
        if self.objective_mode not in ("shared", "per_cut"):
            raise ReproError(f"objective_mode: expected 'shared' or 'per_cut', got {self.objective_mode!r}")
        _check_number("temperature", self.temperature, 0.0, math.inf)
        if self.temperature == 0:
            raise ReproError("temperature: expected a number > 0, got 0")
        _check_int("max_batch_tokens", self.max_batch_tokens, minimum=1)
        if self.think_end is not None and not isinstance(self.think_end, (str, int)):
            raise ReproError(f"think_end: expected a token string, a token id or None, got {self.think_end!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        self.objective = ObjectiveScorer(
            model,
            tokenizer,
            answer_template=config.answer_template,
            mode=config.objective_mode,
            temperature=config.temperature,
            max_batch_tokens=config.max_batch_tokens,
        )

    def evaluate(
        self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], answers: Sequence[Any]
    ) -> tuple[Evaluation, Steps]:
        """The per-completion part: entropies, cut points, J and scores (no batch statistics).

        A trainer whose batch is spread over processes runs this on its own rows, gathers the
        results and calls ``advantages`` once on the whole batch.
        """
        evaluation = self.objective.evaluate(prompt_ids, completion_ids, answers, self._select)
        steps = score_steps(evaluation.j, evaluation.cuts.offsets, w=self.config.w, stability_ema=self.config.stability_ema)
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
    ) -> Advantages:
        """``compute_advantages`` with the config's estimator, alpha, gamma and lam."""
        config = self.config
        return compute_advantages(
            config.estimator,
            outcome_rewards,
            step_rewards,
            offsets,
            positions,
            response_mask,
            group_index,
            alpha=config.alpha,
            gamma=config.gamma,
            lam=config.lam,
            values=values,
            token_rewards=token_rewards,
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
            j_baseline=evaluation.j[cuts.offsets[:-1]],
            j_end=evaluation.j[cuts.offsets[1:] - 1],
            num_paragraphs=np.diff(paragraphs.offsets),
        )


def cut_selector(tokenizer: Any, config: ReproConfig) -> functools.partial[Cuts]:
    """``select_cuts`` with the config's k, delimiters and think-end token resolved for ``tokenizer``."""
    if isinstance(config.think_end, str):
        end_id = think_end_id(tokenizer, config.think_end)
    else:
        end_id = config.think_end
    return functools.partial(
        select_cuts, delimiters=_delimiters(tokenizer, config.delimiters), k=config.k, think_end_id=end_id
    )


def step_metrics(
    j: np.ndarray, offsets: np.ndarray, *, magnitude: np.ndarray, stability: np.ndarray, reward: np.ndarray
) -> dict[str, float]:
    """The repro/* metrics of a batch: J at the baseline and at the end, cuts per row, and the means
    of the scores and process rewards over the scored cut points (the baseline points carry none)."""
    scored = np.ones(len(j), dtype=bool)
    scored[offsets[:-1]] = False
    any_scored = bool(scored.any())
    return {
        "repro/J_b": float(j[offsets[:-1]].mean()),
        "repro/J_end": float(j[offsets[1:] - 1].mean()),
        "repro/num_cuts": float(np.diff(offsets).mean()),
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


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ReproError(f"{name}: expected an int >= {minimum}, got {value!r}")


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise ReproError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
    if not math.isfinite(value):
        raise ReproError(f"{name}: expected a finite number, got {value!r}")
