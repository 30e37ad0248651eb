"""``repro train``'s output directory: checked before anything loads, and the checkpoints in it.

A checkpoint is *complete* when its ``trainer_state.json`` reads as JSON and model weights are
beside it. ``repro train`` saves each one whole into a staging folder and renames it into place
(:mod:`.saves`), so a ``checkpoint-N/`` is complete; one written in place by transformers'
``Trainer._save_checkpoint`` (an older run, plain TRL) gets ``trainer_state.json`` last, so a save
killed midway leaves it without (or with a cut-off) ``trainer_state.json``: never "last", never
resumed from.

A checkpoint also records the run it belongs to (``repro_run.json``: the model, the dataset, the
algorithm and the settings), so that ``--resume-from-checkpoint last`` in a reused output folder
refuses another run's checkpoint instead of silently going on from it (``check_run``), and a
checkpoint of another model is refused before its weights are loaded (``check_same_model``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ReproError
from ..outputs import check_output_file
from .metrics import jsonable

__all__ = [
    "RUN_RECORD",
    "TRAINER_STATE",
    "check_output_dir",
    "check_run",
    "check_same_model",
    "checkpoint_problem",
    "checkpoint_step",
    "last_complete_checkpoint",
    "numbered_checkpoints",
    "resolve_checkpoint",
    "run_record",
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
#: The file in each checkpoint that says which run it belongs to.
RUN_RECORD = "repro_run.json"
#: The parts of a run record that make it another run when they differ (the rest are settings: a warning).
IDENTITY = ("model", "algorithm", "dataset")
#: The config fields recorded as a run's settings, besides every ``repro_*`` one.
SETTINGS = ("num_generations", "per_device_train_batch_size", "gradient_accumulation_steps", "max_completion_length",
            "learning_rate", "lr_scheduler_type", "weight_decay", "beta", "temperature", "top_p", "seed", "loss_type",
            "num_iterations", "epsilon")
#: The config.json fields that make a checkpoint's model another model than the one loaded.
ARCHITECTURE = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "intermediate_size")


def check_output_dir(output_dir: str) -> None:
    """Raise a ReproError naming ``--output_dir`` when ``output_dir`` cannot be created or written:
    it is a file, a file stands where one of its parents should be, the place is not writable, or
    a symbolic link or special file (a FIFO, a device) is among its entries, where the run would
    write through the link (a file outside the folder truncated) or hang. Creates nothing."""
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
    if path.is_dir():
        for entry in sorted(path.iterdir()):
            if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
                check_output_file(entry, "--output_dir")


def checkpoint_step(checkpoint: str) -> int:
    """The global step a complete checkpoint was saved at."""
    return int(json.loads((Path(checkpoint) / TRAINER_STATE).read_text(encoding="utf-8"))["global_step"])


def run_record(model_args: Any, data_args: Any, train_args: Any, config: Any) -> dict[str, Any]:
    """What run a checkpoint belongs to: the model (a local one by its absolute path), the algorithm, the dataset
    (every data flag, a local file by its absolute path), and the settings (every ``repro_*`` flag, ``SETTINGS``
    and the other model flags), as they round-trip through JSON."""
    def absolute(value: Any) -> Any:  # a local path, wherever the command ran from
        return os.path.abspath(value) if isinstance(value, str) and os.path.exists(value) else value

    model = absolute(model_args.model_name_or_path)
    dataset = dataclasses.asdict(data_args)
    dataset["dataset"] = absolute(dataset.get("dataset"))
    settings = {name: getattr(config, name) for name in sorted(vars(config)) if name.startswith("repro_")}
    settings |= {name: getattr(config, name) for name in SETTINGS if hasattr(config, name)}
    settings |= {f"model.{name}": value for name, value in dataclasses.asdict(model_args).items()
                 if name != "model_name_or_path"}
    record = {"model": model or "SmolLM2-135M-Instruct (embedded default)", "algorithm": train_args.algorithm,
              "dataset": dataset, "settings": settings}
    return json.loads(json.dumps(jsonable(record)))


def check_run(checkpoint: str, record: dict[str, Any], *, named: bool) -> None:
    """Compare the run ``checkpoint`` belongs to with this one's ``record``. Another model, algorithm or dataset
    is a ReproError (``--resume_from_checkpoint``) when the checkpoint was found as ``last`` (a reused output
    folder), and a warning when it was ``named``; other settings that differ, and a checkpoint that records no run,
    are warnings."""
    try:
        saved = json.loads((Path(checkpoint) / RUN_RECORD).read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError(f"{RUN_RECORD} holds {type(saved).__name__}")
    except (OSError, ValueError) as error:
        logger.warning("%s records no run (%s): it may be another run's; resuming from it with this run's model, "
                       "dataset and settings", checkpoint, error)
        return
    identity = _differences({key: saved.get(key) for key in IDENTITY}, {key: record[key] for key in IDENTITY})
    if identity and not named:
        raise ReproError("--resume_from_checkpoint", f"last is {checkpoint}, which another run saved: its "
                         f"{'; '.join(identity)}; train into another --output_dir, or name the checkpoint itself to "
                         "go on from it anyway")
    if identity:
        logger.warning("going on from %s, saved by another run: its %s", checkpoint, "; ".join(identity))
    settings = _differences(saved.get("settings") or {}, record["settings"])
    if settings:
        logger.warning("going on from %s with other settings than it was saved with: its %s", checkpoint,
                       "; ".join(settings))


def _differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """'key saved (now current)' for every key whose values differ, nested dicts by dotted keys."""
    found = []
    for key in sorted(saved.keys() | current.keys()):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            found.append(f"{prefix}{key} {old!r} (now {new!r})")
    return found


def check_same_model(checkpoint: str, model: Any, name: str) -> None:
    """A ReproError (``--resume_from_checkpoint``) when the checkpoint's config.json describes another model than
    ``model`` (the one ``name`` loaded): its weights would not load (a traceback from deep in torch)."""
    try:
        saved = json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # an adapter-only (PEFT) or sharded save: its own loader checks it
    current = model.config.to_dict()
    differences = [f"{key} {saved[key]!r} (this model: {current.get(key)!r})" for key in ARCHITECTURE
                   if key in saved and saved[key] != current.get(key)]
    if differences:
        raise ReproError("--resume_from_checkpoint", f"{checkpoint} holds another model than {name}: "
                         f"{', '.join(differences)}; resume with the model it was trained from, or start a fresh run "
                         "in another --output_dir")


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
