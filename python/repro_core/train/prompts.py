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


def load_train_prompts(
    args: DataArguments, config: ReproGRPOConfig | ReproPPOConfig
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The conversational prompts (and their ``answer`` column) that ``args`` select, for training
    and, with ``--eval_size N``, N held-out ones for evaluation (else None). Raises ReproError naming
    the flag at fault."""
    from ..data import DEFAULT_REASONING_GYM_SIZE, DEFAULT_SYSTEM_PROMPT, REASONING_GYM_PREFIX, load_dataset_prompts

    evaluating = config.eval_strategy != "no"
    if args.eval_size < 0:
        raise ReproError("--eval_size", f"expected a count >= 0, got {args.eval_size}")
    if args.eval_size and not evaluating:
        raise ReproError("--eval_strategy", f"--eval_size {args.eval_size} holds out prompts for an evaluation that "
                         "never runs; set --eval_strategy steps (and --eval_steps N)")
    if evaluating and not args.eval_size:
        raise ReproError("--eval_size", f"--eval_strategy {config.eval_strategy} needs held-out prompts; set "
                         "--eval_size N")
    size = args.dataset_size
    if args.eval_size and args.dataset.startswith(REASONING_GYM_PREFIX):  # generate the held-out ones too
        size = (DEFAULT_REASONING_GYM_SIZE if size is None else size) + args.eval_size
    elif args.eval_size and size is not None:
        size += args.eval_size
    system_prompt = DEFAULT_SYSTEM_PROMPT if args.system_prompt is None else args.system_prompt
    try:
        # load_dataset_prompts' parameters are named as DataArguments' fields: its errors name the flag.
        prompts = load_dataset_prompts(
            args.dataset, dataset_size=size, dataset_config=args.dataset_config,
            dataset_seed=args.dataset_seed, task_config=args.task_config, split=args.split,
            question_column=args.question_column, answer_column=args.answer_column, system_prompt=system_prompt,
        )
    except ReproError as error:
        raise error.renamed(f"--{error.argument}") from None
    if len(prompts) <= args.eval_size:
        raise ReproError("--dataset", f"{args.dataset!r} holds {len(prompts)} prompts, none left to train on after "
                         f"--eval_size {args.eval_size}")
    if config.repro_enabled and config.repro_answer_column not in prompts.column_names:
        raise ReproError("--repro_answer_column", f"{config.repro_answer_column!r} is not a column of the prompts "
                         f"(columns: {', '.join(prompts.column_names)})")
    if not args.eval_size:
        return prompts, None
    cut = len(prompts) - args.eval_size
    return prompts.select(range(cut)), prompts.select(range(cut, len(prompts)))
