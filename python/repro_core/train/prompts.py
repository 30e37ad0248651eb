"""The training prompts of ``repro train``, from ``--dataset`` and its options, through
:mod:`repro_core.data`'s loaders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ReproError
from .arguments import DataArguments

if TYPE_CHECKING:
    import datasets

    from ..trl import ReproGRPOConfig, ReproPPOConfig

__all__ = ["load_train_prompts"]


def load_train_prompts(args: DataArguments, config: ReproGRPOConfig | ReproPPOConfig) -> datasets.Dataset:
    """The conversational prompts (and their ``answer`` column) that ``args`` select. Raises
    ReproError naming the flag at fault."""
    from ..data import DEFAULT_SYSTEM_PROMPT, load_dataset_prompts

    system_prompt = DEFAULT_SYSTEM_PROMPT if args.system_prompt is None else args.system_prompt
    try:
        # load_dataset_prompts' parameters are named as DataArguments' fields: its errors name the flag.
        prompts = load_dataset_prompts(
            args.dataset, dataset_size=args.dataset_size, dataset_config=args.dataset_config,
            dataset_seed=args.dataset_seed, task_config=args.task_config, split=args.split,
            question_column=args.question_column, answer_column=args.answer_column, system_prompt=system_prompt,
        )
    except ReproError as error:
        raise error.renamed(f"--{error.argument}") from None
    if len(prompts) == 0:
        raise ReproError("--dataset", f"{args.dataset!r} holds no prompts")
    if config.repro_enabled and config.repro_answer_column not in prompts.column_names:
        raise ReproError("--repro_answer_column", f"{config.repro_answer_column!r} is not a column of the prompts "
                         f"(columns: {', '.join(prompts.column_names)})")
    return prompts
