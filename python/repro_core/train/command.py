"""The ``repro train`` command: parse, load the model and the prompts, train, save, summarise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..arguments import COMMAND_ERROR, ModelArguments
from ..errors import ReproError
from ..interrupts import Interrupt, terminate_as_interrupt
from ..outputs import claimed_output_dir
from .algorithms import ALGORITHMS
from .arguments import DataArguments, TrainArguments, parse_args
from .checkpoints import (
    LAST,
    TRAINER_STATE,
    check_output_dir,
    check_run,
    check_same_model,
    checkpoint_step,
    last_complete_checkpoint,
    numbered_checkpoints,
    resolve_checkpoint,
    run_record,
)
from .guards import non_finite_guard
from .metrics import METRICS_FILE, metrics_file_callback
from .model import load_model, peft_config
from .prompts import load_train_prompts
from .saves import recover_saves, save_final_model, stage_saves

if TYPE_CHECKING:
    from transformers import Trainer

    from ..trl import ReproGRPOConfig, ReproPPOConfig

__all__ = ["main"]

logger = logging.getLogger(__name__)

EMBEDDED = "SmolLM2-135M-Instruct (embedded default)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``repro train`` with ``argv`` (default ``sys.argv[1:]``). Returns 0 (130 when interrupted, 143 when
    terminated by SIGTERM, which is handled as Ctrl-C); raises ReproError on bad input (``repro`` turns it into
    ``repro: error: ...`` and exit status 2). The output folder is held (locked) by the main process for the run:
    a second run into it is refused."""
    start = time.monotonic()
    model_args, data_args, train_args, config = parse_args(argv)
    output_dir = Path(str(config.output_dir))  # TrainingArguments fills in None
    check_output_dir(str(output_dir))
    claimed = claimed_output_dir(output_dir, "--output_dir") if _saves(config) else nullcontext()
    with terminate_as_interrupt() as interrupt, claimed:
        try:
            return _run(model_args, data_args, train_args, config, output_dir, interrupt, start)
        except KeyboardInterrupt:  # before the training began: nothing to keep
            print(f"repro train: {interrupt.word}", file=sys.stderr)
            return interrupt.status


def _saves(config: ReproGRPOConfig | ReproPPOConfig) -> bool:
    """Whether this process writes the output folder (transformers' ``should_save``: the main process, or each
    node's with --save_on_each_node), the one that holds it and repairs what a killed save left."""
    _ = config.device  # sets up transformers' view of the processes, which should_save reads
    return bool(config.should_save)


def _run(model_args: ModelArguments, data_args: DataArguments, train_args: TrainArguments,
         config: ReproGRPOConfig | ReproPPOConfig, output_dir: Path, interrupt: Interrupt, start: float) -> int:
    if _saves(config):
        recover_saves(output_dir)  # what a killed save left: finished or undone
    resume_checkpoint = resolve_checkpoint(config.resume_from_checkpoint, str(output_dir))
    record = run_record(model_args, data_args, train_args, config)
    resumed_step = 0
    if resume_checkpoint:
        check_run(resume_checkpoint, record, named=str(config.resume_from_checkpoint).lower() not in LAST)
        resumed_step = checkpoint_step(resume_checkpoint)
        if 0 < config.max_steps < resumed_step:
            raise ReproError("--max_steps", f"{resume_checkpoint} is at step {resumed_step}, past --max-steps "
                             f"{config.max_steps}; raise --max-steps to go on from it, or name an earlier checkpoint")
    # Prompts first: they are quick, and a bad dataset should not wait for the model to load.
    prompts, eval_prompts = load_train_prompts(data_args, config)
    model, tokenizer = load_model(model_args, config)
    if resume_checkpoint:
        check_same_model(resume_checkpoint, model, model_args.model_name_or_path or EMBEDDED)
    metrics_path = output_dir / METRICS_FILE
    algorithm = ALGORITHMS[train_args.algorithm]
    try:
        trainer = algorithm.build_trainer(model, tokenizer, prompts, config,
                                          [non_finite_guard(), metrics_file_callback(metrics_path)],
                                          eval_prompts, reward_funcs=train_args.reward_funcs,
                                          peft_config=peft_config(model_args))
    except ReproError:
        raise
    except (ValueError, ImportError, OSError) as exc:
        # What TRL and transformers refuse in a config they are handed (a --report_to integration that is not
        # installed, --use_vllm without vLLM, a --value_model_name_or_path that cannot be loaded) is bad input.
        logger.debug("building the trainer failed", exc_info=True)
        message = str(exc).strip().replace("\n", " ")
        raise ReproError(COMMAND_ERROR, f"cannot set up the trainer: {type(exc).__name__}: {message}") from exc
    stage_saves(trainer, record)

    main_process = trainer.is_world_process_zero()
    if main_process:
        model_name = model_args.model_name_or_path or EMBEDDED
        samples_per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps * config.world_size
        length = f"{config.max_steps} steps" if config.max_steps > 0 else f"{config.num_train_epochs:g} epoch(s)"
        held_out = f" (+{len(eval_prompts)} held out for evaluation)" if eval_prompts is not None else ""
        print(f"repro train: {train_args.algorithm} on {model_name}, {len(prompts)} prompts{held_out} from "
              f"{data_args.dataset}; "
              f"{samples_per_step // config.num_generations} prompt(s) x {config.num_generations} completions "
              f"(<= {config.max_completion_length} tokens) per step, {length}, RePro "
              f"{'on' if config.repro_enabled else 'off'} -> {output_dir}"
              + (f"; resuming from {resume_checkpoint}" if resume_checkpoint else ""), flush=True)

    if resume_checkpoint and resumed_step == config.max_steps:
        train_metrics = _at_max_steps(trainer, resume_checkpoint)  # transformers would train one step past it
    else:
        try:
            train_metrics = trainer.train(resume_from_checkpoint=resume_checkpoint).metrics
        except KeyboardInterrupt:
            if main_process:
                last_checkpoint = last_complete_checkpoint(str(output_dir))  # never one whose save was cut short
                hint = (f"go on from {last_checkpoint} with --resume-from-checkpoint last" if last_checkpoint
                        else "no complete checkpoint saved yet")
                print(f"\nrepro train: {interrupt.word} at step {trainer.state.global_step}; {hint}", file=sys.stderr)
            return interrupt.status
    save_final_model(trainer, output_dir)
    if main_process:
        print_summary(trainer, train_metrics, output_dir, metrics_path, time.monotonic() - start)
    return 0


def _at_max_steps(trainer: Trainer, checkpoint: str) -> dict[str, Any]:
    """The run resumed from a checkpoint at --max-steps: nothing is left to train, its model (and state) is the
    result. Returns the train metrics of no training."""
    from transformers.trainer_callback import TrainerState

    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE))
    if trainer.is_world_process_zero():
        print(f"repro train: {checkpoint} is at step {trainer.state.global_step}, --max-steps already: nothing left "
              "to train; its model is the result", flush=True)
    return {"train_runtime": 0.0}


def print_summary(trainer: Trainer, train_metrics: dict[str, Any], output_dir: Path, metrics_path: Path,
                  elapsed: float) -> None:
    """The end-of-run lines: steps and time, the last logged reward and RePro values, what was written."""
    history = trainer.state.log_history
    last_reward_log = next((entry for entry in reversed(history) if "reward" in entry), {})
    steps = trainer.state.global_step
    print(f"\nrepro train: done, {steps} step{'s' if steps != 1 else ''} "
          f"(train {train_metrics.get('train_runtime', float('nan')):.1f} s, total {elapsed:.1f} s)")
    if last_reward_log:
        # A step whose rewards are all undefined (a reward function returning None) logs None.
        rewards = [entry["reward"] for entry in history if isinstance(entry.get("reward"), (int, float))]
        mean = f"{sum(rewards) / len(rewards):.4f}" if rewards else "none defined"
        print(f"  reward at step {last_reward_log.get('step', '?')}: {_shown(last_reward_log['reward'])} "
              f"(std {_shown(last_reward_log.get('reward_std'))}); mean over {len(rewards)} logged steps: {mean}")
        if "completions/mean_length" in last_reward_log:
            print(f"  completion length: mean {last_reward_log['completions/mean_length']:.1f} tokens, "
                  f"clipped {last_reward_log.get('completions/clipped_ratio', float('nan')):.0%}")
        for prefix in ("repro/", ("value/", "policy/")):  # PPO logs the last two
            shown = {key: value for key, value in last_reward_log.items() if key.startswith(prefix)}
            if shown:
                print("  " + ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                                       for key, value in shown.items()))
    checkpoints = numbered_checkpoints(str(output_dir))
    last_checkpoint = last_complete_checkpoint(str(output_dir))
    print(f"  model + tokenizer: {output_dir}/")
    if checkpoints:
        resume = f" (resume: --resume-from-checkpoint {last_checkpoint})" if last_checkpoint else ""
        print(f"  checkpoints: {', '.join(path.name for path in checkpoints)}{resume}")
    print(f"  metrics: {metrics_path} (one JSON object per log)")


def _shown(value: Any) -> str:
    """A logged number to 4 decimals; "none" when it was logged as None."""
    return f"{value:.4f}" if isinstance(value, (int, float)) else "none"
