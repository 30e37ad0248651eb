"""``repro train``'s output directory: checked before anything loads, and the checkpoints in it.

A checkpoint is *complete* when its ``trainer_state.json`` reads as JSON and model weights are
beside it. transformers' ``Trainer._save_checkpoint`` writes ``checkpoint-N/`` in place, in this
order: the model (and tokenizer, and PPO's critic), the optimizer and scheduler, the RNG state,
and ``trainer_state.json`` last; so a save killed midway leaves a directory without (or with a
cut-off) ``trainer_state.json``, which is never "last" and never resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from ..errors import ReproError

__all__ = [
    "TRAINER_STATE",
    "checkpoint_problem",
    "check_output_dir",
    "last_complete_checkpoint",
    "numbered_checkpoints",
    "resolve_checkpoint",
]

logger = logging.getLogger(__name__)

#: The file transformers' Trainer writes last into a checkpoint.
TRAINER_STATE = "trainer_state.json"
#: The names under which Trainer saves a model's weights (whole, sharded, or a PEFT adapter).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
#: What ``--resume-from-checkpoint`` takes for "the newest complete checkpoint in output_dir".
LAST = ("last", "latest", "true")


def check_output_dir(output_dir: str) -> None:
    """Raise a ReproError naming ``--output_dir`` when ``output_dir`` cannot be created or written:
    it is a file, a file stands where one of its parents should be, or the place is not writable.
    Creates nothing."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ReproError("--output_dir", f"{output_dir} is a file, not a directory")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ReproError("--output_dir", f"cannot create {output_dir}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ReproError("--output_dir", f"cannot write to {existing}: permission denied")


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (its save was interrupted, or it is no checkpoint);
    None when it is complete."""
    if not checkpoint.is_dir():
        return "no such directory"
    state_file = checkpoint / TRAINER_STATE
    if not state_file.is_file():
        return f"no {TRAINER_STATE} (its save did not finish)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"{TRAINER_STATE} is cut short or unreadable (its save did not finish)"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"{TRAINER_STATE} holds no global_step"
    # Sharded (FSDP, DeepSpeed) and multi-adapter saves keep their weights in subdirectories.
    if not any((checkpoint / name).is_file() for name in WEIGHT_FILES) and not any(
            entry.is_dir() for entry in checkpoint.iterdir()):
        return "no model weights"
    return None


def numbered_checkpoints(output_dir: str) -> list[Path]:
    """The ``checkpoint-N`` directories of ``output_dir``, complete or not, by increasing N."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    numbered = [(int(match.group(1)), entry) for entry in root.iterdir()
                if (match := CHECKPOINT_NAME.fullmatch(entry.name)) and entry.is_dir()]
    return [entry for _, entry in sorted(numbered)]


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The ``checkpoint-N`` directory of ``output_dir`` with the largest N among the complete ones
    (newer incomplete ones are logged and skipped); None when there is none."""
    for checkpoint in reversed(numbered_checkpoints(output_dir)):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return str(checkpoint)
        logger.warning("skipping %s: %s", checkpoint, problem)
    return None


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """The checkpoint directory that ``--resume-from-checkpoint`` names: a complete checkpoint
    directory, or ``last`` (also ``latest``, ``true``) for the newest complete ``checkpoint-N`` in
    output_dir; None when unset. A ReproError names the flag when there is none to resume from."""
    if resume_from_checkpoint is None or resume_from_checkpoint == "":
        return None
    if resume_from_checkpoint.lower() in LAST:
        last_checkpoint = last_complete_checkpoint(output_dir)
        if last_checkpoint is None:
            raise ReproError("--resume_from_checkpoint",
                             f"{resume_from_checkpoint}: no complete checkpoint-N directory in {output_dir}")
        return last_checkpoint
    problem = checkpoint_problem(Path(resume_from_checkpoint))
    if problem is not None:
        raise ReproError("--resume_from_checkpoint",
                         f"{resume_from_checkpoint!r} is not a complete checkpoint directory: {problem}")
    return resume_from_checkpoint
