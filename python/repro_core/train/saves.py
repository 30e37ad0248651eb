"""``repro train``'s saves: every checkpoint whole or not at all, and a full disk as one error naming the folder.

transformers writes ``checkpoint-N/`` in place. Over an existing one (a resumed run saving again at a step it has
saved before) a kill midway would leave the new weights beside the old optimizer state and the old
``trainer_state.json``, which "last" would trust. Here the trainer writes the checkpoint into a staging folder
``.checkpoint-N.staging/`` in the output folder (the same filesystem: renames are atomic), the run record is added
(:data:`.checkpoints.RUN_RECORD`), and only then is it renamed into place: an existing ``checkpoint-N`` is first
renamed to ``.checkpoint-N.old`` and removed once the new one is in place. A kill at any point leaves the old
checkpoint or the new one: ``recover_saves`` (at the next start, the output folder locked) finishes or undoes what
the killed save left. A write that fails (a full disk) removes the staging folder and ends the run with one error
that names the folder, the space left and the last complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ReproError
from ..outputs import write_atomic, write_failure
from .checkpoints import CHECKPOINT_NAME, RUN_RECORD, TRAINER_STATE, checkpoint_problem, last_complete_checkpoint

if TYPE_CHECKING:
    from transformers import Trainer

__all__ = ["recover_saves", "save_final_model", "stage_saves"]

logger = logging.getLogger(__name__)

STAGING = ".staging"
REPLACED = ".old"


def stage_saves(trainer: Trainer, record: dict[str, Any]) -> None:
    """Make ``trainer`` save each checkpoint through a staging folder (this module's docstring), with ``record``
    in it; on every process, as all of them take part in a save."""
    save = trainer._save_checkpoint
    root = Path(str(trainer.args.output_dir))

    def staged_save(model: Any, trial: Any) -> None:
        name = f"checkpoint-{trainer.state.global_step}"
        staging = root / f".{name}{STAGING}"
        if trainer.args.should_save and staging.exists():
            shutil.rmtree(staging)  # a save killed before: this run holds the folder, so nothing else writes it
        trainer.accelerator.wait_for_everyone()
        # The one place transformers takes a checkpoint's folder from (TRL's save reads it too).
        trainer._get_output_dir = lambda trial=None: str(staging)  # type: ignore[method-assign,misc]
        try:
            save(model, trial)
        except Exception as error:
            failure = write_failure(error, root)
            if failure is None:
                raise
            shutil.rmtree(staging, ignore_errors=True)
            raise ReproError("--output_dir", f"cannot save {name} in {root}: {failure}; {_last(root)}") from error
        finally:
            del trainer._get_output_dir
        trainer.accelerator.wait_for_everyone()
        if trainer.args.should_save:
            _move_into_place(trainer, staging / name, root / name, record)
            staging.rmdir()
            _rotate(trainer, root)
        trainer.accelerator.wait_for_everyone()

    trainer._save_checkpoint = staged_save  # type: ignore[method-assign]


def _move_into_place(trainer: Trainer, staged: Path, final: Path, record: dict[str, Any]) -> None:
    """The staged checkpoint, with its run record, renamed to ``final`` (an existing one replaced)."""
    best = trainer.state.best_model_checkpoint
    if best is not None and Path(best).parent == staged.parent:  # as transformers saw it during the save
        trainer.state.best_model_checkpoint = str(final.parent / Path(best).name)
        write_atomic(staged / TRAINER_STATE, json.dumps(dataclasses.asdict(trainer.state), indent=2, sort_keys=True))
    write_atomic(staged / RUN_RECORD, json.dumps(record, indent=1))
    if final.exists():
        replaced = final.with_name(f".{final.name}{REPLACED}")
        shutil.rmtree(replaced, ignore_errors=True)
        final.rename(replaced)
        staged.rename(final)
        shutil.rmtree(replaced)
    else:
        staged.rename(final)


def _rotate(trainer: Trainer, root: Path) -> None:
    """``--save_total_limit``, as transformers applies it after a save (its own call saw only the staging folder)."""
    from transformers.trainer_utils import rotate_checkpoints

    rotate_checkpoints(output_dir=str(root), save_total_limit=trainer.args.save_total_limit,
                       best_model_checkpoint=trainer.state.best_model_checkpoint, use_mtime=True)


def recover_saves(output_dir: Path) -> None:
    """Finish or undo the saves a kill interrupted (the caller holds the output folder): a staged checkpoint that
    is complete and has no ``checkpoint-N`` (killed between the two renames) is moved into place, the old one it
    replaced is removed; otherwise the staging folder is removed, and an old checkpoint put back where none is."""
    if not output_dir.is_dir():
        return
    for staging in sorted(output_dir.glob(f".checkpoint-*{STAGING}")):
        name = staging.name[1 : -len(STAGING)]
        staged, final = staging / name, output_dir / name
        if CHECKPOINT_NAME.fullmatch(name) and not final.exists() and checkpoint_problem(staged) is None \
                and (staged / RUN_RECORD).is_file():
            logger.warning("moving %s into place: its save was interrupted after it was complete", staged)
            staged.rename(final)
        else:
            logger.warning("removing %s, left by an interrupted save", staging)
        shutil.rmtree(staging)
    for replaced in sorted(output_dir.glob(f".checkpoint-*{REPLACED}")):
        final = output_dir / replaced.name[1 : -len(REPLACED)]
        if final.exists():
            shutil.rmtree(replaced)
        else:
            logger.warning("putting %s back as %s: the save that replaced it was interrupted", replaced, final)
            replaced.rename(final)


def save_final_model(trainer: Trainer, output_dir: Path) -> None:
    """The trained model (and tokenizer) in ``output_dir``; a failed write is a ReproError naming the folder."""
    try:
        trainer.save_model(str(output_dir))
    except Exception as error:
        failure = write_failure(error, output_dir)
        if failure is None:
            raise
        raise ReproError("--output_dir", f"cannot save the trained model in {output_dir}: {failure}; "
                         f"{_last(output_dir)}") from error


def _last(root: Path) -> str:
    """Where a run whose save failed can go on from."""
    last = last_complete_checkpoint(str(root))
    return (f"the last complete checkpoint, {last}, is intact (free some space, then --resume-from-checkpoint last)"
            if last else "no complete checkpoint was saved before")
