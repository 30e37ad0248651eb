"""RePro's fields for TRL configs, in TRL's dataclass style."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from .._api import ESTIMATORS
from ..config import ReproArguments, ReproConfig, repro_field
from ..errors import ReproError

__all__ = ["GRPO_ESTIMATORS", "ReproGRPOConfig", "ReproPPOConfig", "ReproTrainerArguments"]

#: The estimators whose outcome part fits TRL's GRPO loop (PPO needs a critic: ReproPPOConfig).
GRPO_ESTIMATORS = tuple(name for name in ESTIMATORS if name != "ppo")


@dataclass
class ReproTrainerArguments(ReproArguments):
    """``ReproArguments`` plus what a trainer adds: the switch and the dataset's answer column."""

    repro_enabled: bool = field(
        default=True, metadata={"help": "Add RePro process advantages; False trains with the parent trainer's own."}
    )
    repro_answer_column: str = field(
        default="answer", metadata={"help": "Dataset column holding the ground-truth answer."}
    )
    repro_shuffle_rewards: bool = field(
        default=False,
        metadata={
            "help": "A control for experiments, not a method: permute the process rewards among the cut points of "
            "each group (the completions of one prompt) before the advantages, so that they keep their scale and "
            "count and lose what they say about each paragraph. Off by default."
        },
    )
    repro_estimator: str = repro_field(
        "estimator",
        default="grpo",
        help="Advantage estimator: grpo (outcome part = TRL's own advantage), dr_grpo, reinforce_pp or "
        "reinforce_pp_baseline.",
        choices=GRPO_ESTIMATORS,
    )

    def repro_config(self, **host: Any) -> ReproConfig:
        allowed = self.__dataclass_fields__["repro_estimator"].metadata["choices"]
        if self.repro_estimator not in allowed:
            takes = f"{type(self).__name__} takes one of {', '.join(allowed)}"
            raise ReproError("repro_estimator", f"{takes}, got {self.repro_estimator!r}")
        return super().repro_config(**host)


def refuse_sequence_level_options(config: GRPOConfig) -> None:
    """TRL options that assume one advantage per sequence: with RePro's (B, T) advantages they would
    become per-token decisions without saying so, so they are refused (a ReproError naming TRL's field)."""
    if config.off_policy_mask_threshold is not None:
        raise ReproError(
            "off_policy_mask_threshold",
            "off-policy sequence masking drops a sequence by the sign of its advantage, but RePro's advantages are "
            f"per token (their sign changes within a sequence); got {config.off_policy_mask_threshold!r}, expected "
            "None",
        )
    if config.loss_type == "vespo":
        raise ReproError(
            "loss_type",
            "'vespo' weighs a sequence by the sign of its advantage, but RePro's advantages are per token (their "
            "sign changes within a sequence); choose another loss_type",
        )
    if config.importance_sampling_level != "token":
        raise ReproError(
            "importance_sampling_level",
            f"{config.importance_sampling_level!r} (GSPO) takes one importance ratio per sequence, so the gradient "
            "sees each sequence's mean advantage, but RePro's advantages are per token (their credit would be lost); "
            "expected 'token'",
        )
    if config.loss_type == "luspo":
        raise ReproError(
            "loss_type",
            "'luspo' is a sequence-level loss, meant for importance_sampling_level='sequence', where the gradient "
            "sees each sequence's mean advantage, but RePro's advantages are per token; at 'token' it is 'dr_grpo' "
            "times max_completion_length: choose 'dr_grpo' (or another loss_type)",
        )


@dataclass
class ReproGRPOConfig(ReproTrainerArguments, GRPOConfig):
    """``GRPOConfig`` plus RePro's ``repro_*`` fields (see ``repro_core.config.ReproArguments``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.repro_settings()  # every check of the repro_* fields, at construction
        if self.repro_enabled:
            refuse_sequence_level_options(self)

    def repro_settings(self) -> ReproConfig:
        """The ``ReproConfig`` of this run; entropies are taken at the sampling temperature."""
        return self.repro_config(temperature=self.temperature)


@dataclass
class ReproPPOConfig(ReproTrainerArguments, GRPOConfig):
    """PPO on TRL's GRPO machinery (generation, vLLM, PEFT, accelerate, logging) plus a critic.

    The generation batch is split into ``steps_per_generation`` mini-batches (one optimiser step
    each with ``gradient_accumulation_steps=1``) and reused for ``num_iterations`` epochs; the
    policy loss is TRL's clipped loss (``epsilon``) on the per-token advantages. TRL's own KL term
    (``beta``) stays 0: PPO puts the KL into the token rewards (``kl_coef``).
    """

    repro_estimator: str = repro_field(
        "estimator", default="ppo", help="Advantage estimator: ppo (GAE with the critic's values).", choices=["ppo"]
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
        refuse_sequence_level_options(self)  # PPO's advantages are per token even without RePro
        if self.beta != 0.0:
            raise ReproError("beta", f"PPO puts the KL into the rewards (kl_coef); expected beta = 0, got {self.beta}")
        if self.repro_gamma not in (1.0, self.gamma):
            raise ReproError(
                "repro_gamma", f"PPO discounts outcome and process rewards with one gamma ({self.gamma}); "
                f"got repro_gamma={self.repro_gamma}"
            )
        if self.kl_estimator not in ("k1", "k3"):
            raise ReproError("kl_estimator", f"expected 'k1' or 'k3', got {self.kl_estimator!r}")
        for name in ("kl_coef", "vf_coef", "cliprange_value"):
            if not getattr(self, name) >= 0:
                raise ReproError(name, f"expected a number >= 0, got {getattr(self, name)!r}")
        self.repro_settings()

    def repro_settings(self) -> ReproConfig:
        """PPO discounts outcome and process rewards with its own gamma and lam."""
        return self.repro_config(temperature=self.temperature, gamma=self.gamma, lam=self.lam)
