"""The flags of ``repro train``: its dataclasses, its defaults and its parser.

The parser follows the package's command-line convention (:mod:`repro_core.arguments`): both
spellings of every flag, ``--config FILE.yaml``, errors as ``ReproError`` naming the flag. It is
built over :class:`TrainArguments`, :class:`~repro_core.arguments.ModelArguments`,
:class:`DataArguments` and the chosen algorithm's config (``ReproGRPOConfig`` or ``ReproPPOConfig``),
one ``--help`` group each, RePro's ``--repro_*`` flags in a group of their own.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..arguments import COMMAND_ERROR, ModelArguments, parse, read_config_key
from ..arguments import make_parser as make_command_parser
from ..data import DEFAULT_REASONING_GYM_SIZE, REASONING_GYM_PREFIX
from ..errors import ReproError
from .algorithms import ALGORITHMS
from .model import train_model_arguments
from .rewards import DEFAULT_REWARD, REWARD_FUNCS, resolve_reward_funcs

if TYPE_CHECKING:
    from ..trl import ReproGRPOConfig, ReproPPOConfig

__all__ = [
    "CLI_DEFAULTS",
    "EMBEDDED_MODEL_DEFAULTS",
    "DataArguments",
    "REASONING_GYM_PREFIX",
    "TrainArguments",
    "check_training_numbers",
    "device_defaults",
    "make_parser",
    "parse_args",
]

PROG = "repro train"
#: Defaults that differ from ``ReproGRPOConfig``'s own, for every run. A YAML file or a flag overrides any of them.
CLI_DEFAULTS: dict[str, Any] = {
    "output_dir": "repro-output",
    "num_train_epochs": 1.0,
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 100,  # plus the save at the last step that save_strategy="steps" always makes
    "save_total_limit": 2,  # a 135M checkpoint with AdamW state is ~1.6 GB
    "report_to": "none",
    "temperature": 1.0,
    "beta": 0.0,
}
#: Defaults for the embedded 135M model only (no --model_name_or_path), chosen so that ``repro train
#: --max-steps 3`` finishes in about a minute on a laptop CPU. With a model of your own, TRL's defaults
#: apply (8 x 8 completions of up to 256 tokens, learning rate 1e-6): sized for a real run on a GPU.
EMBEDDED_MODEL_DEFAULTS: dict[str, Any] = {
    # One prompt per optimizer step, four samples of it: the smallest group GRPO learns from
    # that still gives a usable within-group baseline.
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    # Enough for a short worked answer to a reasoning-gym arithmetic question plus \boxed{...};
    # CPU generation time is linear in it.
    "max_completion_length": 96,
    # Small models tolerate (and need) a larger step than the paper's 1e-6 for 1.5B-7B models.
    "learning_rate": 1e-5,
}


def device_defaults(cuda: bool) -> dict[str, Any]:
    """Defaults that depend on whether a CUDA device is present: bf16 autocast and gradient
    checkpointing only pay off on a GPU (on a CPU they cost time and save memory we don't need).
    Without CUDA, ``use_cpu``: under ``torchrun`` on CPUs accelerate otherwise sets up no process
    group for its gathers, and each process would normalise its own rows as if they were the batch."""
    return {"bf16": cuda, "gradient_checkpointing": cuda, "dataloader_pin_memory": cuda, "use_cpu": not cuda}


@dataclass
class DataArguments:
    """Which prompts to train on. Every source gives conversational prompts (rendered with the
    tokenizer's chat template) and an ``answer`` column for the reward and RePro's answer probe."""

    _argument_group_name = "data"

    dataset: str = field(
        default=REASONING_GYM_PREFIX + "basic_arithmetic",
        metadata={
            "help": "reasoning-gym:TASK generates TASK's questions procedurally (e.g. reasoning-gym:basic_arithmetic, "
            "reasoning-gym:chain_sum); anything else is a Hugging Face dataset name or a local .json/.jsonl file.",
            "aliases": ["--dataset_name", "--dataset-name"],
        },
    )
    dataset_size: int | None = field(
        default=None,
        metadata={
            "help": f"Number of prompts: generated for reasoning-gym (unset: {DEFAULT_REASONING_GYM_SIZE}), the "
            "first N rows otherwise (unset: all)."
        },
    )
    dataset_config: str | None = field(
        default=None,
        metadata={"help": "Configuration (subset) of a Hugging Face dataset that has several, e.g. main for "
                  "openai/gsm8k."},
    )
    dataset_seed: int = field(default=0, metadata={"help": "Seed of the reasoning-gym generator."})
    eval_size: int = field(
        default=0,
        metadata={
            "help": "Held-out prompts for TRL's evaluation (with --eval_strategy steps and --eval_steps N): this many "
            "more are generated for reasoning-gym, the last N rows otherwise, and none of them is trained on. 0: no "
            "evaluation."
        },
    )
    task_config: str | None = field(
        default=None,
        metadata={
            "help": "reasoning-gym task options as a JSON object (a mapping in the YAML file), e.g. "
            "'{\"min_terms\": 2, \"max_terms\": 3}'."
        },
    )
    question_column: str = field(
        default="question",
        metadata={"help": "Column of a Hugging Face / JSON dataset holding the question text."},
    )
    answer_column: str = field(
        default="answer",
        metadata={"help": "Column of a Hugging Face / JSON dataset holding the reference answer."},
    )
    split: str = field(
        default="train",
        metadata={"help": "Split of a Hugging Face dataset.",
                  "aliases": ["--dataset_train_split", "--dataset-train-split"]},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={
            "help": "System message of every prompt. Unset: repro_core.data's default ('You are a helpful assistant "
            "that solves math problems carefully.'); '' for none (the chat template may add its own). The user "
            "message always ends by asking for the final answer in \\boxed{}."
        },
    )


@dataclass
class TrainArguments:
    """How to train."""

    _argument_group_name = "algorithm"

    algorithm: str = field(
        default="grpo",
        metadata={
            "help": "RL algorithm: grpo (TRL's GRPOTrainer with RePro process rewards) or ppo (ReproPPOTrainer: "
            "a critic initialised from the policy, GAE, a KL penalty in the rewards; its own flags, --kl_coef, "
            "--vf_coef, --value_model_name_or_path, ..., are listed by `repro train --algorithm ppo --help`).",
            "choices": tuple(ALGORITHMS),
        },
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: [DEFAULT_REWARD],
        metadata={
            "help": f"Outcome reward functions, summed with --reward_weights, as in TRL's GRPO script: "
            f"{', '.join(REWARD_FUNCS)}, or the dotted import path of a TRL reward function (a module on "
            "PYTHONPATH or in the working directory, e.g. my_rewards.length_penalty)."
        },
    )


def make_parser(algorithm: str = "grpo", cuda: bool | None = None, embedded: bool = True) -> Any:
    """The ``repro train`` parser over the train, model (TRL's PEFT flags included) and data arguments
    and the algorithm's config, with :data:`CLI_DEFAULTS`, :func:`device_defaults` (``cuda=None`` asks
    torch) and, for the ``embedded`` default model, :data:`EMBEDDED_MODEL_DEFAULTS` applied. Its
    ``--help`` lists the algorithm, model, data and RePro groups before the ~250 flags of TRL and
    transformers."""
    if algorithm not in ALGORITHMS:
        raise ReproError("--algorithm", f"{algorithm!r} is not supported; choose from: {', '.join(ALGORITHMS)}")
    try:
        import torch
        from trl import GRPOConfig

        config_class = ALGORITHMS[algorithm].config_class()
    except ImportError as exc:
        raise ReproError(
            COMMAND_ERROR,
            f"{PROG} needs the trl extra (pip install '.[trl]' in a clone, the built wheel with [trl] elsewhere: "
            f"docs/install.md): {exc}",
        ) from exc
    if cuda is None:
        cuda = torch.cuda.is_available()
    # The fields an algorithm's config adds to GRPOConfig (PPO's critic and KL penalty), RePro's aside.
    own_fields = {f.name for f in dataclasses.fields(config_class)} - {f.name for f in dataclasses.fields(GRPOConfig)}
    others = "; ".join(f"`{PROG} --algorithm {name} --help` lists {name}'s" for name in ALGORITHMS if name != algorithm)
    sizing = ("the embedded 135M model's: sized for a CPU run" if embedded
              else "TRL's for batch, completion length and learning rate: sized for a real run")
    return make_command_parser(
        PROG,
        [TrainArguments, train_model_arguments(), DataArguments, config_class],
        description="RL post-training with RePro process rewards (arXiv 2512.01925) on TRL's GRPOTrainer "
        f"(--algorithm grpo) or RePro's PPO trainer (--algorithm ppo). Defaults shown are {sizing} (without "
        "--model_name_or_path the embedded model's apply). The flags below are those of --algorithm "
        f"{algorithm}; {others}.",
        defaults={**CLI_DEFAULTS, **device_defaults(cuda), **(EMBEDDED_MODEL_DEFAULTS if embedded else {})},
        group_titles={config_class: f"training ({config_class.__name__}: TRL's GRPOConfig and transformers' "
                      "TrainingArguments)"},
        field_groups={name: f"{algorithm} ({config_class.__name__}'s own flags)" for name in own_fields
                      if not name.startswith("repro_")},
    )


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataArguments, TrainArguments, ReproGRPOConfig | ReproPPOConfig]:
    """The arguments of ``argv`` (default ``sys.argv[1:]``) and of the ``--config`` YAML file it names.
    Raises ReproError on bad input; ``--help`` exits (SystemExit 0) after printing the flags."""
    args = list(sys.argv[1:] if argv is None else argv)
    # The parser's flags depend on the algorithm, so it is read before the parser is built.
    algorithm = read_config_key(args, "algorithm")
    embedded = read_config_key(args, "model_name_or_path") is None
    parser = make_parser(TrainArguments.algorithm if algorithm is None else str(algorithm), embedded=embedded)
    train_args, model_args, data_args, config = parse(parser, args)
    check_training_numbers(config)
    resolve_reward_funcs(train_args.reward_funcs, config.reward_weights)  # a bad name fails before the model loads
    return model_args, data_args, train_args, config


def check_training_numbers(config: ReproGRPOConfig | ReproPPOConfig) -> None:
    """The ReproError naming the flag for values that TRL and transformers would only refuse once the
    model is loaded (with a traceback)."""
    for name in ("seed", "data_seed"):
        value = getattr(config, name)
        if value is not None and not 0 <= value < 2**32:
            raise ReproError(f"--{name}", f"expected an integer in [0, 2**32), got {value}")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_completion_length"):
        if getattr(config, name) < 1:
            raise ReproError(f"--{name}", f"expected an integer >= 1, got {getattr(config, name)}")
    # AdamW moves every weight by about the learning rate per step: beyond 1 a run only diverges to NaN.
    if not 0 <= config.learning_rate <= 1:
        raise ReproError("--learning_rate", f"expected a number in [0, 1], got {config.learning_rate}")
