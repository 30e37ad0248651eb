"""The ``--algorithm`` table of ``repro train``: each algorithm's config and trainer classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .rewards import DEFAULT_REWARD, resolve_reward_funcs

if TYPE_CHECKING:
    import datasets
    from peft import PeftConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

    from ..trl import ReproGRPOConfig, ReproPPOConfig

__all__ = ["ALGORITHMS", "Algorithm"]


@dataclass(frozen=True)
class Algorithm:
    """One ``--algorithm``: its config and trainer classes in :mod:`repro_core.trl`, by name (TRL is
    imported only when they are needed)."""

    config_name: str
    trainer_name: str

    def config_class(self) -> type:
        from .. import trl

        return getattr(trl, self.config_name)

    def build_trainer(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: datasets.Dataset,
        config: ReproGRPOConfig | ReproPPOConfig,
        callbacks: list[TrainerCallback],
        eval_prompts: datasets.Dataset | None = None,
        *,
        reward_funcs: Sequence[str] = (DEFAULT_REWARD,),
        peft_config: PeftConfig | None = None,
    ) -> Trainer:
        """The trainer of ``model`` (wrapped in ``peft_config``'s adapter if given) on ``prompts``, rewarded
        by ``reward_funcs`` (``--reward_funcs`` names) and evaluated on ``eval_prompts``. PPO's critic starts
        from the policy's weights (or ``config.value_model_name_or_path``)."""
        from .. import trl

        trainer_class = getattr(trl, self.trainer_name)
        return trainer_class(
            model=model,
            reward_funcs=resolve_reward_funcs(reward_funcs, config.reward_weights),
            args=config,
            train_dataset=prompts,
            eval_dataset=eval_prompts,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=peft_config,
        )


#: ``--algorithm`` value -> Algorithm. A new one (PPO with a value model, say) adds an entry; the
#: parser is built over the chosen algorithm's config, and everything around the trainer (model,
#: data, metrics file, checkpoints, summary) is shared.
ALGORITHMS: dict[str, Algorithm] = {
    "grpo": Algorithm("ReproGRPOConfig", "ReproGRPOTrainer"),
    "ppo": Algorithm("ReproPPOConfig", "ReproPPOTrainer"),
}
