"""GRPO with RePro process rewards on competition math, on one or more GPUs.

The paper's recipe (arXiv 2512.01925) on a Qwen-family model: DeepScaleR problems, 8 samples per problem at
temperature 1, learning rate 1e-6, RePro with k = 20 cut points and alpha = 0.1, outcome reward = \\boxed{} accuracy
checked by math-verify. Every ReproGRPOConfig / GRPOConfig / TrainingArguments field is a flag, and the YAML file
next to this script holds the recipe::

    accelerate launch examples/grpo_math.py --config examples/grpo_math.yaml
    accelerate launch examples/grpo_math.py --config examples/grpo_math.yaml --use_vllm --vllm_mode colocate
    python examples/grpo_math.py --config examples/grpo_math.yaml --max_steps 10 --output_dir /tmp/smoke

Flags on the command line override the YAML file; both spellings (``--max_steps``, ``--max-steps``) work. The model
and data flags have the names ``repro train`` uses, so ``repro train --config examples/grpo_math.yaml`` reads the same
file. See docs/training.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from repro_core import ReproError
from repro_core.arguments import make_parser, parse
from repro_core.trl import ReproGRPOConfig


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(
        default="Qwen/Qwen2.5-Math-1.5B",
        metadata={"help": "Hub id or local path of the policy model (needs a chat template)."},
    )
    dataset: str = field(
        default="agentica-org/DeepScaleR-Preview-Dataset",
        metadata={"help": "Hugging Face dataset (or local .json/.jsonl file) of math problems."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration (subset), if any."})
    split: str = field(default="train", metadata={"help": "Split to train on."})
    question_column: str = field(default="problem", metadata={"help": "Column holding the problem text."})
    answer_column: str = field(default="answer", metadata={"help": "Column holding the reference answer."})
    dataset_size: int | None = field(default=None, metadata={"help": "Keep only the first N problems."})
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "System message of every prompt; unset: repro_core.data's default, '' for none."},
    )


def main(script_args: ScriptArguments, config: ReproGRPOConfig) -> None:
    from repro_core.data import DEFAULT_SYSTEM_PROMPT, load_prompts
    from repro_core.rewards import boxed_accuracy
    from repro_core.trl import ReproGRPOTrainer

    dataset = load_prompts(
        script_args.dataset,
        split=script_args.split,
        subset=script_args.dataset_config,
        question_column=script_args.question_column,
        answer_column=script_args.answer_column,
        system_prompt=DEFAULT_SYSTEM_PROMPT if script_args.system_prompt is None else script_args.system_prompt,
        limit=script_args.dataset_size,
    )
    # Given a model id, the trainer loads the model with config.model_init_kwargs (the YAML asks for float32
    # master weights: AdamW steps of ~1e-6 vanish in bfloat16) and its tokenizer with the chat template.
    trainer = ReproGRPOTrainer(
        model=script_args.model_name_or_path,
        reward_funcs=[boxed_accuracy],
        args=config,
        train_dataset=dataset,
    )
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    trainer.accelerator.print(f"model saved to {config.output_dir}")


def make_script_parser() -> Any:
    """The script's flags in repro_core's command-line convention (as `repro train`): transformers'
    HfArgumentParser with repro_core.arguments' --config handling, both spellings of every flag, and bad
    input as one line naming the flag."""
    return make_parser(
        "grpo_math.py",
        [ScriptArguments, ReproGRPOConfig],
        description="GRPO with RePro process rewards on competition math (the paper's recipe).",
        defaults={},
    )


if __name__ == "__main__":
    try:
        script_args, config = parse(make_script_parser(), sys.argv[1:])
        main(script_args, config)
    except ReproError as error:
        print(f"grpo_math.py: error: {error}", file=sys.stderr)
        sys.exit(2)
