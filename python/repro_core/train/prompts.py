"""The training prompts of ``repro train``, from ``--dataset`` and its options, through
:mod:`repro_core.data`'s loaders."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import ReproError
from .arguments import REASONING_GYM_PREFIX, DataArguments

if TYPE_CHECKING:
    import datasets

    from ..trl import ReproGRPOConfig, ReproPPOConfig

__all__ = ["load_train_prompts"]

#: repro_core.data's argument names -> the ``repro train`` flags that set them.
LOADER_FLAGS = {
    "task": "--dataset",
    "name": "--dataset",
    "size": "--dataset_size",
    "limit": "--dataset_size",
    "seed": "--dataset_seed",
    "task_config": "--task_config",
    "subset": "--dataset_config",
    "split": "--split",
    "question_column": "--question_column",
    "answer_column": "--answer_column",
    "system_prompt": "--system_prompt",
}


def load_train_prompts(args: DataArguments, config: ReproGRPOConfig | ReproPPOConfig) -> datasets.Dataset:
    """The conversational prompts (and their ``answer`` column) that ``args`` select. Raises
    ReproError naming the flag at fault."""
    from ..data import DEFAULT_SYSTEM_PROMPT, load_prompts, reasoning_gym_dataset

    if args.dataset_size is not None and args.dataset_size < 1:
        raise ReproError("--dataset_size", f"must be at least 1, got {args.dataset_size}")
    system_prompt = DEFAULT_SYSTEM_PROMPT if args.system_prompt is None else args.system_prompt
    task_options = parse_task_config(args.task_config)
    try:
        if args.dataset.startswith(REASONING_GYM_PREFIX):
            task = args.dataset[len(REASONING_GYM_PREFIX):].strip()
            if not task:
                example = REASONING_GYM_PREFIX + "basic_arithmetic"
                raise ReproError("--dataset", f"{args.dataset!r} names no task: use {REASONING_GYM_PREFIX}TASK, "
                                 f"e.g. {example}")
            prompts = reasoning_gym_dataset(task, size=args.dataset_size or 512, seed=args.dataset_seed,
                                            system_prompt=system_prompt, task_config=task_options)
        else:
            if task_options is not None:
                raise ReproError("--task_config", f"applies to {REASONING_GYM_PREFIX}TASK datasets only, "
                                 f"not to {args.dataset!r}")
            prompts = load_prompts(args.dataset, split=args.split, subset=args.dataset_config,
                                   question_column=args.question_column, answer_column=args.answer_column,
                                   system_prompt=system_prompt, limit=args.dataset_size)
    except ReproError as error:
        raise error.renamed(LOADER_FLAGS.get(error.argument, error.argument)) from None
    if len(prompts) == 0:
        raise ReproError("--dataset", f"{args.dataset!r} holds no prompts")
    if config.repro_enabled and config.repro_answer_column not in prompts.column_names:
        raise ReproError("--repro_answer_column", f"{config.repro_answer_column!r} is not a column of the prompts "
                         f"(columns: {', '.join(prompts.column_names)})")
    return prompts


def parse_task_config(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """``--task_config`` as a mapping: a JSON object on the command line, a mapping in the YAML file."""
    if value is None or isinstance(value, dict):  # a YAML mapping arrives as a dict
        return value
    try:
        options = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ReproError("--task_config", f"is not valid JSON ({exc}): {value!r}") from exc
    if not isinstance(options, dict):
        raise ReproError("--task_config", f"must be a JSON object, got {value!r}")
    return options
