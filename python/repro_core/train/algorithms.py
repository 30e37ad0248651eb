"""The ``--algorithm`` table of ``repro train``: each algorithm's config and trainer classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets
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
    ) -> Trainer:
        """The trainer of ``model`` on ``prompts``, rewarded by ``boxed_accuracy`` and evaluated on
        ``eval_prompts``. PPO's critic starts from the policy's weights (or
        ``config.value_model_name_or_path``)."""
        from .. import trl
        from ..rewards import boxed_accuracy

        trainer_class = getattr(trl, self.trainer_name)
        return trainer_class(
            model=model,
            reward_funcs=[boxed_accuracy],
            args=config,
            train_dataset=prompts,
            eval_dataset=eval_prompts,
            processing_class=tokenizer,
            callbacks=callbacks,
        )


#: ``--algorithm`` value -> Algorithm. A new one (PPO with a value model, say) adds an entry; the
#: parser is built over the chosen algorithm's config, and everything around the trainer (model,
#: data, metrics file, checkpoints, summary) is shared.
ALGORITHMS: dict[str, Algorithm] = {
    "grpo": Algorithm("ReproGRPOConfig", "ReproGRPOTrainer"),
    "ppo": Algorithm("ReproPPOConfig", "ReproPPOTrainer"),
}
