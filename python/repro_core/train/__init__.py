"""``repro train``: RL post-training with RePro process rewards, from the command line or a YAML file.

Arguments come from four dataclasses, parsed the way every ``repro`` command parses
(:mod:`repro_core.arguments`: transformers' ``HfArgumentParser`` plus ``--config FILE.yaml``):

- :class:`~repro_core.arguments.ModelArguments`: which checkpoint (default: the embedded
  SmolLM2-135M-Instruct) and its dtype;
- :class:`DataArguments`: which prompts (default: reasoning-gym ``basic_arithmetic``, generated on the spot);
- :class:`TrainArguments`: the algorithm (``grpo`` or ``ppo``, :data:`ALGORITHMS`);
- :class:`repro_core.trl.ReproGRPOConfig` (or ``ReproPPOConfig`` with ``--algorithm ppo``): every
  ``GRPOConfig`` / ``TrainingArguments`` flag plus the ``repro_*`` ones (and PPO's).

Precedence, lowest first: the dataclass defaults, the defaults of :data:`CLI_DEFAULTS` (and
:func:`device_defaults`; for the embedded model, the CPU-sized :data:`EMBEDDED_MODEL_DEFAULTS`), the
YAML file, the command line. Both ``--max_steps`` and
``--max-steps`` spellings work.

Everything lands in ``output_dir`` (checked writable before anything loads): the final model and
tokenizer, ``checkpoint-N/`` directories (resumable with ``--resume-from-checkpoint DIR`` or
``last``, the newest complete one) and ``metrics.jsonl``, one JSON object per log.

The modules: ``arguments`` (flags, defaults, parser), ``algorithms`` (the ``--algorithm`` table),
``prompts`` (the training data), ``rewards`` (``--reward_funcs``), ``metrics`` (``metrics.jsonl``),
``checkpoints`` (the output directory and its checkpoints), ``model`` (the policy, its tokenizer and
TRL's PEFT flags), ``command`` (:func:`main`).
Importing this package imports nothing heavy; :func:`main` imports torch, transformers and TRL.
"""

from __future__ import annotations

from ..arguments import ModelArguments
from .algorithms import ALGORITHMS, Algorithm
from .arguments import (
    CLI_DEFAULTS,
    EMBEDDED_MODEL_DEFAULTS,
    DataArguments,
    TrainArguments,
    device_defaults,
    make_parser,
    parse_args,
)
from .checkpoints import last_complete_checkpoint, resolve_checkpoint
from .command import main
from .metrics import METRICS_FILE
from .model import load_model
from .prompts import load_train_prompts

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "CLI_DEFAULTS",
    "EMBEDDED_MODEL_DEFAULTS",
    "DataArguments",
    "METRICS_FILE",
    "ModelArguments",
    "TrainArguments",
    "device_defaults",
    "last_complete_checkpoint",
    "load_model",
    "load_train_prompts",
    "main",
    "make_parser",
    "parse_args",
    "resolve_checkpoint",
]
