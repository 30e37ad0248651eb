"""RePro's fields for TRL configs, in TRL's dataclass style."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

from trl import GRPOConfig

from .._core import ReproError
from ..pipeline import ReproConfig

__all__ = ["ReproArguments", "ReproGRPOConfig", "ReproPPOConfig"]

_GRPO_ESTIMATORS = ("grpo", "dr_grpo", "reinforce_pp", "reinforce_pp_baseline")


@dataclass
class ReproArguments:
    """The ``repro_*`` fields shared by the GRPO and PPO configs (REPRO.md sections 1-4)."""

    repro_enabled: bool = field(
        default=True, metadata={"help": "Add RePro process advantages; False trains with the parent trainer's own."}
    )
    repro_alpha: float = field(
        default=0.1, metadata={"help": "Scale of the process advantage added to the outcome advantage."}
    )
    repro_k: int = field(
        default=20, metadata={"help": "Highest-entropy paragraph breaks scored per completion (cut points)."}
    )
    repro_w: float = field(default=0.1, metadata={"help": "Weight of stability in the step score (1 - w on magnitude)."})
    repro_stability_ema: float | None = field(
        default=None, metadata={"help": "EMA factor smoothing J before the stability score; None: no smoothing."}
    )
    repro_gamma: float = field(default=1.0, metadata={"help": "Discount of the process rewards' reverse cumulative sum."})
    repro_estimator: str = field(
        default="grpo",
        metadata={
            "help": "Advantage estimator: grpo (outcome part = TRL's own advantage), dr_grpo, reinforce_pp or "
            "reinforce_pp_baseline.",
            "choices": list(_GRPO_ESTIMATORS),
        },
    )
    repro_delimiters: str = field(
        default="paper",
        metadata={"help": "Paragraph breaks: paper (a blank line), line (every newline) or reference (the authors')."},
    )
    repro_think_end: str | None = field(
        default="</think>",
        metadata={"help": "End-of-thinking token; empty or None when completions have no thinking part."},
    )
    repro_answer_template: str = field(
        default="\\boxed{{{answer}}}",
        metadata={"help": "str.format template of the scored answer text; {answer} is the answer column's value."},
    )
    repro_answer_column: str = field(
        default="answer", metadata={"help": "Dataset column holding the ground-truth answer."}
    )
    repro_objective_mode: str = field(
        default="shared",
        metadata={
            "help": "How J is computed: shared (one pass plus cached probes) or per_cut (one sequence per cut).",
            "choices": ["shared", "per_cut"],
        },
    )
    repro_max_batch_tokens: int = field(
        default=16384, metadata={"help": "Token budget of one forward call of the RePro passes (rows x width)."}
    )

    estimators: ClassVar[tuple[str, ...]] = _GRPO_ESTIMATORS

    def repro_config(self, temperature: float) -> ReproConfig:
        """The pipeline config; entropies are taken at the sampling ``temperature``."""
        if self.repro_estimator not in self.estimators:
            raise ReproError(
                f"repro_estimator: expected one of {', '.join(self.estimators)}, got {self.repro_estimator!r}"
            )
        try:
            return self._repro_config(temperature)
        except ReproError as exc:
            # Name the config field: "k: ..." is "repro_k: ..." here (temperature is TRL's own field).
            message = str(exc)
            raise ReproError(message if message.startswith("temperature") else f"repro_{message}") from None

    def _check_repro(self, temperature: float) -> None:
        """Every check of the repro_* fields, at construction."""
        if self.repro_think_end == "None":  # how a command line spells it
            self.repro_think_end = None
        self.repro_config(temperature)

    def _repro_config(self, temperature: float) -> ReproConfig:
        return ReproConfig(
            k=self.repro_k,
            w=self.repro_w,
            alpha=self.repro_alpha,
            gamma=self.repro_gamma,
            stability_ema=self.repro_stability_ema,
            estimator=self.repro_estimator,  # type: ignore[arg-type]
            delimiters=self.repro_delimiters,
            think_end=self.repro_think_end or None,
            answer_template=self.repro_answer_template,
            objective_mode=self.repro_objective_mode,  # type: ignore[arg-type]
            temperature=temperature,
            max_batch_tokens=self.repro_max_batch_tokens,
        )


@dataclass
class ReproGRPOConfig(ReproArguments, GRPOConfig):
    """``GRPOConfig`` plus RePro's ``repro_*`` fields (see ``ReproArguments``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_repro(self.temperature)


@dataclass
class ReproPPOConfig(ReproArguments, GRPOConfig):
    """PPO on TRL's GRPO machinery (generation, vLLM, PEFT, accelerate, logging) plus a critic.

    The generation batch is split into ``steps_per_generation`` mini-batches (one optimiser step
    each with ``gradient_accumulation_steps=1``) and reused for ``num_iterations`` epochs; the
    policy loss is TRL's clipped loss (``epsilon``) on the per-token advantages. TRL's own KL term
    (``beta``) stays 0: PPO puts the KL into the token rewards (``kl_coef``).
    """

    estimators: ClassVar[tuple[str, ...]] = ("ppo",)

    repro_estimator: str = field(
        default="ppo", metadata={"help": "Advantage estimator: ppo (GAE with the critic's values).", "choices": ["ppo"]}
    )
    kl_coef: float = field(
        default=0.05, metadata={"help": "Weight of the per-token KL to the reference model in the token rewards."}
    )
    kl_estimator: str = field(
        default="k1",
        metadata={"help": "Per-token KL estimator: k1 (log ratio) or k3 (non-negative).", "choices": ["k1", "k3"]},
    )
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss in the total loss."})
    cliprange_value: float = field(
        default=0.2, metadata={"help": "Clip range of the new values around the old ones in the value loss."}
    )
    gamma: float = field(default=1.0, metadata={"help": "Discount of GAE (outcome and process rewards alike)."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    critic_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the critic; None: the policy's learning_rate."}
    )
    value_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Critic checkpoint (token classification, 1 label); None: initialised from the policy."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta != 0.0:
            raise ReproError(f"beta: PPO puts the KL into the rewards (kl_coef); expected beta = 0, got {self.beta}")
        if self.repro_gamma not in (1.0, self.gamma):
            raise ReproError(
                f"repro_gamma: PPO discounts outcome and process rewards with one gamma ({self.gamma}); "
                f"got repro_gamma={self.repro_gamma}"
            )
        if self.kl_estimator not in ("k1", "k3"):
            raise ReproError(f"kl_estimator: expected 'k1' or 'k3', got {self.kl_estimator!r}")
        for name in ("kl_coef", "vf_coef", "cliprange_value"):
            if not getattr(self, name) >= 0:
                raise ReproError(f"{name}: expected a number >= 0, got {getattr(self, name)!r}")
        self._check_repro(self.temperature)

    def _repro_config(self, temperature: float) -> ReproConfig:
        return replace(super()._repro_config(temperature), gamma=self.gamma, lam=self.lam)
