"""``repro train``: RL post-training with RePro process rewards, from the command line or a YAML file.

Arguments come from four dataclasses, parsed by TRL's :class:`~trl.TrlParser` (an
``HfArgumentParser`` that also reads ``--config FILE.yaml``, like TRL's own scripts):

- :class:`ModelArguments`: which checkpoint (default: the embedded SmolLM2-135M-Instruct) and its dtype;
- :class:`DataArguments`: which prompts (default: reasoning-gym ``basic_arithmetic``, generated on the spot);
- :class:`TrainArguments`: the algorithm (``grpo`` or ``ppo``);
- :class:`repro_core.trl.ReproGRPOConfig` (or ``ReproPPOConfig`` with ``--algorithm ppo``): every
  ``GRPOConfig`` / ``TrainingArguments`` flag plus the ``repro_*`` ones (and PPO's).

Precedence, lowest first: the dataclass defaults, the CPU-friendly defaults of :data:`CLI_DEFAULTS`
(and :func:`device_defaults`), the YAML file, the command line. Both ``--max_steps`` and
``--max-steps`` spellings work.

Everything lands in ``output_dir``: the final model and tokenizer, ``checkpoint-N/`` directories
(resumable with ``--resume-from-checkpoint``) and ``metrics.jsonl``, one JSON object per log.

Importing this module imports nothing heavy; :func:`main` imports torch, transformers and TRL.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from .errors import ReproError

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

    from .trl import ReproGRPOConfig, ReproPPOConfig

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "CLI_DEFAULTS",
    "DataArguments",
    "METRICS_FILE",
    "ModelArguments",
    "TrainArguments",
    "device_defaults",
    "main",
    "make_parser",
]

#: The file in ``output_dir`` that gets one JSON object per trainer log.
METRICS_FILE = "metrics.jsonl"
#: The ``--dataset`` prefix that selects a procedurally generated reasoning-gym task.
REASONING_GYM_PREFIX = "reasoning-gym:"

#: Defaults that differ from ``ReproGRPOConfig``'s own, chosen so that ``repro train --max-steps 3``
#: finishes in a few minutes on a laptop CPU with the 135M embedded model. A YAML file or a flag
#: overrides any of them.
CLI_DEFAULTS: dict[str, Any] = {
    "output_dir": "repro-output",
    # One prompt per optimizer step, four samples of it: the smallest group GRPO learns from
    # that still gives a usable within-group baseline.
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    # Enough for a short worked answer to a reasoning-gym arithmetic question plus \boxed{...};
    # CPU generation time is linear in it.
    "max_completion_length": 96,
    # Small models tolerate (and need) a larger step than the paper's 1e-6 for 1.5B-7B models.
    "learning_rate": 1e-5,
    "num_train_epochs": 1.0,
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 100,  # plus the save at the last step that save_strategy="steps" always makes
    "save_total_limit": 2,  # a 135M checkpoint with AdamW state is ~1.6 GB
    "report_to": "none",
    "temperature": 1.0,
    "beta": 0.0,
}


def device_defaults(cuda: bool) -> dict[str, Any]:
    """Defaults that depend on whether a CUDA device is present: bf16 autocast and gradient
    checkpointing only pay off on a GPU (on a CPU they cost time and save memory we don't need)."""
    return {"bf16": cuda, "gradient_checkpointing": cuda, "dataloader_pin_memory": cuda}


@dataclass
class ModelArguments:
    """Which policy model to train."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Local checkpoint directory or Hugging Face Hub id of a causal LM with a chat template. "
            "Unset: the embedded SmolLM2-135M-Instruct (cached in $REPRO_CACHE, else ~/.cache/repro-core)."
        },
    )
    dtype: Literal["auto", "float32", "bfloat16"] = field(
        default="auto",
        metadata={
            "help": "dtype of the trained weights. auto = the dtype in --model_init_kwargs if there is one, else "
            "float32: AdamW steps at learning rates like 1e-6 are far below bfloat16's resolution and would be lost; "
            "on CUDA, --bf16 (on by default there) still runs the forward and backward passes in bfloat16. "
            "bfloat16 halves the memory of weights and optimizer state."
        },
    )


@dataclass
class DataArguments:
    """Which prompts to train on. Every source gives conversational prompts (rendered with the
    tokenizer's chat template) and an ``answer`` column for the reward and RePro's answer probe."""

    dataset: str = field(
        default=REASONING_GYM_PREFIX + "basic_arithmetic",
        metadata={
            "help": "reasoning-gym:TASK generates TASK's questions procedurally (e.g. reasoning-gym:basic_arithmetic, "
            "reasoning-gym:chain_sum); anything else is a Hugging Face dataset name or a local .json/.jsonl file."
        },
    )
    dataset_size: int | None = field(
        default=None,
        metadata={
            "help": "Number of prompts: generated for reasoning-gym (unset: 512), the first N rows otherwise "
            "(unset: all)."
        },
    )
    dataset_config: str | None = field(
        default=None,
        metadata={"help": "Configuration (subset) of a Hugging Face dataset that has several, e.g. main for "
                  "openai/gsm8k."},
    )
    dataset_seed: int = field(default=0, metadata={"help": "Seed of the reasoning-gym generator."})
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
    split: str = field(default="train", metadata={"help": "Split of a Hugging Face dataset."})
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

    algorithm: str = field(
        default="grpo",
        metadata={
            "help": "RL algorithm: grpo (TRL's GRPOTrainer with RePro process rewards) or ppo (ReproPPOTrainer: "
            "a critic initialised from the policy, GAE, a KL penalty in the rewards)."
        },
    )


@dataclass(frozen=True)
class Algorithm:
    """One ``--algorithm``: its config and trainer classes in :mod:`repro_core.trl`, by name (TRL is
    imported only when they are needed)."""

    config_name: str
    trainer_name: str

    def config_class(self) -> type:
        from . import trl

        return getattr(trl, self.config_name)

    def trainer(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        dataset: datasets.Dataset,
        config: ReproGRPOConfig | ReproPPOConfig,
        callbacks: list[TrainerCallback],
    ) -> Trainer:
        from . import trl
        from .rewards import boxed_accuracy

        # PPO's critic starts from the policy's weights (or config.value_model_name_or_path).
        return getattr(trl, self.trainer_name)(
            model=model,
            reward_funcs=[boxed_accuracy],
            args=config,
            train_dataset=dataset,
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


def _algorithm_of(args: Sequence[str]) -> str:
    """The --algorithm named on the command line, else in the --config file, else grpo: the parser's
    flags depend on it, so it is read before the parser is built."""
    for i, arg in enumerate(args):
        if arg == "--algorithm" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--algorithm="):
            return arg.split("=", 1)[1]
    if "--config" in args and args.index("--config") + 1 < len(args):
        import yaml

        try:
            with open(args[args.index("--config") + 1]) as file:
                config = yaml.safe_load(file)
        except (OSError, yaml.YAMLError) as exc:
            raise ReproError(f"cannot read the --config file: {exc}") from exc
        if not isinstance(config, dict):
            raise ReproError(f"the --config file {args[args.index('--config') + 1]} must hold a YAML mapping")
        if "algorithm" in config:
            return str(config["algorithm"])
    return TrainArguments.algorithm


def make_parser(algorithm: str = "grpo", cuda: bool | None = None):
    """The ``repro train`` parser: a TrlParser over the model, data and train arguments and the
    algorithm's config, with :data:`CLI_DEFAULTS` and :func:`device_defaults` applied (``cuda=None``
    asks torch)."""
    if algorithm not in ALGORITHMS:
        known = ", ".join(ALGORITHMS)
        raise ReproError(f"--algorithm {algorithm!r} is not supported (yet); choose from: {known}")
    try:
        import torch
        from trl import TrlParser

        config_class = ALGORITHMS[algorithm].config_class()
    except ImportError as exc:
        raise ReproError(f"repro train needs the trl extra (pip install 'repro-core[trl]'): {exc}") from exc

    class _Parser(TrlParser):
        # The usage line of ~250 flags is a screenful; errors say one line and go through ReproError.
        def error(self, message: str) -> NoReturn:
            raise ReproError(f"{message} (see `repro train --help`)")

    dataclass_types: list[Any] = [ModelArguments, DataArguments, TrainArguments, config_class]
    parser = _Parser(
        dataclass_types,
        prog="repro train",
        usage="repro train [--config FILE.yaml] [--FLAG VALUE ...]",
        description=(
            "RL post-training with RePro process rewards (arXiv 2512.01925) on TRL's GRPOTrainer. Flags can also "
            "come from a YAML file (--config FILE.yaml, keys as the flag names with underscores); flags on the "
            "command line win. Defaults shown are this command's (tuned for a CPU run of the embedded 135M model)."
        ),
    )
    if cuda is None:
        cuda = torch.cuda.is_available()
    parser.set_defaults_with_config(**CLI_DEFAULTS, **device_defaults(cuda))
    return parser


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataArguments, TrainArguments, ReproGRPOConfig]:
    """Parse ``argv`` (and the ``--config`` YAML file it names). Raises ReproError on bad input;
    ``--help`` exits (SystemExit 0) after printing the flags."""
    import yaml

    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args and args.index("--config") == len(args) - 1:
        raise ReproError("--config needs a YAML file path")
    parser = make_parser(_algorithm_of(args))
    try:
        model_args, data_args, train_args, config, unknown_keys, unknown_args = parser.parse_args_and_config(
            args, return_remaining_strings=True, separate_remaining_strings=True)
    except ReproError:
        raise
    except (OSError, yaml.YAMLError) as exc:
        raise ReproError(f"cannot read the --config file: {exc}") from exc
    except (ValueError, TypeError) as exc:  # TrainingArguments/GRPOConfig validation, unknown YAML keys
        raise ReproError(str(exc).strip().replace("\n", " ")) from exc
    if unknown_args:
        raise ReproError(f"unrecognized arguments: {' '.join(unknown_args)} (see `repro train --help`)")
    if unknown_keys:
        keys = ", ".join(key[2:] for key in unknown_keys[::2])
        raise ReproError(f"unknown keys in the --config file: {keys} (see `repro train --help`)")
    return model_args, data_args, train_args, config


def load_model(args: ModelArguments, config: ReproGRPOConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch

    from .assets import load_default_model

    dtypes = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16}
    dtype = dtypes[args.dtype]
    # This command loads the model itself; of GRPOConfig's model_init_kwargs (a YAML written for TRL-style
    # scripts may have them) only a dtype is honoured, and only when --dtype is left at auto.
    raw = config.model_init_kwargs or {}
    init_kwargs = dict(json.loads(raw) if isinstance(raw, str) else raw)  # GRPOConfig parses JSON; be sure
    config.model_init_kwargs = None  # else TRL warns that they are ignored
    wanted = init_kwargs.pop("dtype", None)
    if args.dtype == "auto" and wanted is not None:
        if str(wanted).removeprefix("torch.") not in ("float32", "bfloat16"):
            raise ReproError(f"model_init_kwargs dtype {wanted!r}: use --dtype auto, float32 or bfloat16")
        dtype = dtypes[str(wanted).removeprefix("torch.")]
    if init_kwargs:
        print(f"repro train: ignoring model_init_kwargs {sorted(init_kwargs)} (only dtype applies here)",
              file=sys.stderr)
    model, tokenizer = load_default_model(args.model_name_or_path, dtype=dtype)
    if not getattr(tokenizer, "chat_template", None):
        name = args.model_name_or_path or "the default model"
        raise ReproError(f"the tokenizer of {name} has no chat template, which the conversational prompts need; "
                         "use an instruct/chat checkpoint or add a chat_template to its tokenizer_config.json")
    return model, tokenizer


def load_data(args: DataArguments, config: ReproGRPOConfig) -> datasets.Dataset:
    from .data import DEFAULT_SYSTEM_PROMPT, load_prompts, reasoning_gym_dataset

    if args.dataset_size is not None and args.dataset_size < 1:
        raise ReproError(f"--dataset_size must be at least 1, got {args.dataset_size}")
    system_prompt = DEFAULT_SYSTEM_PROMPT if args.system_prompt is None else args.system_prompt
    task_config = _task_config(args.task_config)
    try:
        if args.dataset.startswith(REASONING_GYM_PREFIX):
            task = args.dataset[len(REASONING_GYM_PREFIX):].strip()
            if not task:
                example = REASONING_GYM_PREFIX + "basic_arithmetic"
                raise ReproError(f"names no task: use {REASONING_GYM_PREFIX}TASK, e.g. {example}")
            dataset = reasoning_gym_dataset(task, size=args.dataset_size or 512, seed=args.dataset_seed,
                                            system_prompt=system_prompt, task_config=task_config)
        else:
            if task_config is not None:
                raise ReproError(f"--task_config applies to {REASONING_GYM_PREFIX}TASK datasets only")
            dataset = load_prompts(args.dataset, split=args.split, subset=args.dataset_config,
                                   question_column=args.question_column, answer_column=args.answer_column,
                                   system_prompt=system_prompt, limit=args.dataset_size)
    except ReproError as exc:
        raise ReproError(f"--dataset {args.dataset}: {exc}") from None
    if len(dataset) == 0:
        raise ReproError(f"--dataset {args.dataset}: no prompts")
    if config.repro_enabled and config.repro_answer_column not in dataset.column_names:
        raise ReproError(f"--repro_answer_column {config.repro_answer_column!r} is not a column of the prompts "
                         f"(columns: {', '.join(dataset.column_names)})")
    return dataset


def _task_config(raw: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None or isinstance(raw, dict):  # a YAML mapping arrives as a dict
        return raw
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ReproError(f"--task_config is not valid JSON ({exc}): {raw!r}") from exc
    if not isinstance(value, dict):
        raise ReproError(f"--task_config must be a JSON object, got {raw!r}")
    return value


def _resolve_checkpoint(resume: str | None, output_dir: str) -> str | None:
    """``--resume-from-checkpoint`` takes a checkpoint directory, or ``last`` (also ``true``) for the
    newest ``checkpoint-N`` in output_dir."""
    if resume is None or resume == "":
        return None
    if resume.lower() in ("last", "latest", "true"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if last is None:
            raise ReproError(f"--resume_from_checkpoint {resume}: no checkpoint-N directory in {output_dir}")
        return last
    if not os.path.isfile(os.path.join(resume, "trainer_state.json")):
        raise ReproError(f"--resume_from_checkpoint {resume!r} is not a checkpoint directory (no trainer_state.json)")
    return resume


def _metrics_callback(path: Path) -> TrainerCallback:
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        """Appends each log (step, epoch and every logged value) to ``metrics.jsonl`` on rank 0.

        At train begin it keeps only the lines up to the starting step: nothing on a fresh run, the
        history of the checkpoint on a resume (dropping lines of steps that are about to be redone).
        """

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            kept = []
            if state.global_step > 0 and path.is_file():
                for line in path.read_text().splitlines():
                    try:
                        if json.loads(line).get("step", math.inf) <= state.global_step:
                            kept.append(line + "\n")
                    except (json.JSONDecodeError, AttributeError):
                        continue
            path.write_text("".join(kept))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            record = {"step": state.global_step, "epoch": state.epoch, **logs}
            with path.open("a") as out:
                out.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")

    return MetricsFile()


def _jsonable(value: Any) -> Any:
    """Strict JSON: NaN and infinities become null, tensors and numpy scalars plain numbers."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``repro train`` with ``argv`` (default ``sys.argv[1:]``). Returns 0; raises ReproError
    on bad input (``repro`` turns it into ``repro: error: ...`` and exit status 2)."""
    start = time.monotonic()
    model_args, data_args, train_args, config = parse_args(argv)
    output_dir = Path(str(config.output_dir))  # TrainingArguments fills in None
    resume = _resolve_checkpoint(config.resume_from_checkpoint, str(output_dir))
    # Data first: it is quick, and a bad dataset should not wait for the model to load.
    dataset = load_data(data_args, config)
    model, tokenizer = load_model(model_args, config)
    metrics_path = output_dir / METRICS_FILE
    build = ALGORITHMS[train_args.algorithm].trainer
    trainer = build(model, tokenizer, dataset, config, [_metrics_callback(metrics_path)])

    main_process = trainer.is_world_process_zero()
    if main_process:
        model_name = model_args.model_name_or_path or "SmolLM2-135M-Instruct (embedded default)"
        per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps * config.world_size
        steps = f"{config.max_steps} steps" if config.max_steps > 0 else f"{config.num_train_epochs:g} epoch(s)"
        print(f"repro train: {train_args.algorithm} on {model_name}, {len(dataset)} prompts from {data_args.dataset}; "
              f"{per_step // config.num_generations} prompt(s) x {config.num_generations} completions "
              f"(<= {config.max_completion_length} tokens) per step, {steps}, RePro "
              f"{'on' if config.repro_enabled else 'off'} -> {output_dir}"
              + (f"; resuming from {resume}" if resume else ""), flush=True)

    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except KeyboardInterrupt:
        if main_process:
            from transformers.trainer_utils import get_last_checkpoint

            last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
            hint = f"go on from {last} with --resume-from-checkpoint last" if last else "no checkpoint saved yet"
            print(f"\nrepro train: interrupted at step {trainer.state.global_step}; {hint}", file=sys.stderr)
        return 130
    trainer.save_model(str(output_dir))
    if main_process:
        _summary(trainer, result.metrics, output_dir, metrics_path, time.monotonic() - start)
    return 0


def _summary(trainer: Trainer, train_metrics: dict[str, Any], output_dir: Path, metrics_path: Path,
             elapsed: float) -> None:
    history = trainer.state.log_history
    last = next((entry for entry in reversed(history) if "reward" in entry), {})
    steps = trainer.state.global_step
    print(f"\nrepro train: done, {steps} step{'s' if steps != 1 else ''} "
          f"(train {train_metrics.get('train_runtime', float('nan')):.1f} s, total {elapsed:.1f} s)")
    if last:
        rewards = [entry["reward"] for entry in history if "reward" in entry]
        reward_std = last.get("reward_std", float("nan"))
        print(f"  reward at step {last.get('step', '?')}: {last['reward']:.4f} (std {reward_std:.4f}); "
              f"mean over {len(rewards)} logged steps: {sum(rewards) / len(rewards):.4f}")
        if "completions/mean_length" in last:
            print(f"  completion length: mean {last['completions/mean_length']:.1f} tokens, "
                  f"clipped {last.get('completions/clipped_ratio', float('nan')):.0%}")
        for prefix in ("repro/", ("value/", "policy/")):  # PPO logs the last two
            shown = {k: v for k, v in last.items() if k.startswith(prefix)}
            if shown:
                print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()))
    checkpoints = sorted((p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                         key=lambda p: int(p.name.split("-")[-1]))
    print(f"  model + tokenizer: {output_dir}/")
    if checkpoints:
        print(f"  checkpoints: {', '.join(p.name for p in checkpoints)} (resume: --resume-from-checkpoint "
              f"{checkpoints[-1]})")
    print(f"  metrics: {metrics_path} (one JSON object per log)")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ReproError as error:
        print(f"repro: error: {error}", file=sys.stderr)
        sys.exit(2)
