"""`repro train` under faults (issue 18): a save cut short (a kill or Ctrl-C in the middle of writing checkpoint-N)
never becomes the checkpoint that `--resume-from-checkpoint last` or the interrupt hint names, and an output
directory that cannot be written is refused before the model loads. Real TRL runs of tests/tiny.py's model."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from repro_core import ReproError
from repro_core.cli import main
from repro_core.train import last_complete_checkpoint, resolve_checkpoint
from test_train_cli import _small_run

SAVE_EVERY_STEP = ("--save_strategy", "steps", "--save_steps", "1")


def _complete_checkpoint(path: Path, step: int) -> None:
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))


@pytest.mark.parametrize(
    ("half_written", "problem"),
    [
        ({"model.safetensors": "weights", "optimizer.pt": "state"}, "no trainer_state.json"),
        ({"model.safetensors": "weights", "trainer_state.json": '{"global_step": 4, "log_hi'}, "cut short"),
        ({"model.safetensors": "weights", "trainer_state.json": "[]"}, "holds no global_step"),
        ({"trainer_state.json": '{"global_step": 4}'}, "no model weights"),
        ({}, "no trainer_state.json"),
    ],
)
def test_last_is_the_newest_complete_checkpoint(tmp_path, caplog, half_written, problem):
    _complete_checkpoint(tmp_path / "checkpoint-2", 2)
    newer = tmp_path / "checkpoint-4"
    newer.mkdir()
    for name, content in half_written.items():
        (newer / name).write_text(content)
    with caplog.at_level(logging.WARNING, logger="repro_core"):
        assert resolve_checkpoint("last", str(tmp_path)) == str(tmp_path / "checkpoint-2")
    assert f"skipping {newer}" in caplog.text and problem in caplog.text
    with pytest.raises(ReproError, match="not a complete checkpoint directory") as error:
        resolve_checkpoint(str(newer), str(tmp_path))
    assert error.value.argument == "--resume_from_checkpoint" and problem in error.value.message
    # Only half-written ones: nothing to resume from.
    other = tmp_path / "only-half-written"
    other.mkdir()
    newer.rename(other / "checkpoint-4")
    with pytest.raises(ReproError, match="no complete checkpoint-N directory"):
        resolve_checkpoint("latest", str(other))
    assert last_complete_checkpoint(str(tmp_path / "missing")) is None


def test_output_dir_that_cannot_be_written_is_refused_before_the_model_loads(tiny_checkpoint, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    # A model that does not exist: loading it would be a different error, so the check came first.
    for output_dir, message in ((a_file, "is a file, not a directory"),
                                (a_file / "run", f"cannot create {a_file / 'run'}: {a_file} is a file")):
        assert main(["train", "--model_name_or_path", str(tmp_path / "no-model"), "--output-dir", str(output_dir),
                     "--max-steps", "1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("repro: error: --output_dir: ") and message in err and err.count("\n") == 1, err
    assert a_file.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_output_dir_in_a_read_only_directory_is_refused(tmp_path, capsys):
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    assert main(["train", "--output-dir", str(read_only / "run"), "--max-steps", "1"]) == 2
    assert capsys.readouterr().err.startswith(f"repro: error: --output_dir: cannot write to {read_only}")


def test_interrupt_during_a_save_names_the_last_complete_checkpoint(tiny_checkpoint, tmp_path, capsys,
                                                                   save_interrupted_at_step_2):
    """Ctrl-C while checkpoint-2 is being written (after its weights and optimizer, before trainer_state.json):
    the hint names checkpoint-1, the newest complete one."""
    out = tmp_path / "run"
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "3", *SAVE_EVERY_STEP)) == 130
    err = capsys.readouterr().err
    # Saved through a staging folder: the half-written checkpoint never appears as checkpoint-2 (issue 25).
    assert (out / ".checkpoint-2.staging" / "checkpoint-2" / "model.safetensors").is_file()
    assert not (out / "checkpoint-2").exists()
    assert f"interrupted at step 2; go on from {out / 'checkpoint-1'} with --resume-from-checkpoint last" in err
    assert str(out / "checkpoint-2 ") not in err + " "


@pytest.mark.slow
def test_resume_last_after_a_kill_during_a_save(tiny_checkpoint, tmp_path, capsys):
    """SIGKILL in the middle of writing checkpoint-2: no handler runs, the directory stays half-written.
    `--resume-from-checkpoint last` goes on from checkpoint-1 and the run finishes."""
    out = tmp_path / "run"
    killed_during_save = (
        "import os, signal, sys\n"
        "from transformers import Trainer\n"
        "save_rng_state = Trainer._save_rng_state\n"
        "def killed_at_step_2(self, output_dir):\n"
        "    if self.state.global_step == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    save_rng_state(self, output_dir)\n"
        "Trainer._save_rng_state = killed_at_step_2\n"
        "from repro_core.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = _small_run(tiny_checkpoint, out, "--max-steps", "2", *SAVE_EVERY_STEP)
    proc = subprocess.run([sys.executable, "-c", killed_during_save, *argv], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()
    assert (out / ".checkpoint-2.staging" / "checkpoint-2" / "optimizer.pt").is_file()  # staged, not in place
    assert not (out / "checkpoint-2").exists()

    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "2", *SAVE_EVERY_STEP,
                           "--resume-from-checkpoint", "last")) == 0
    printed = capsys.readouterr().out
    assert f"resuming from {out / 'checkpoint-1'}" in printed and "repro train: done, 2 steps" in printed
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    assert last_complete_checkpoint(str(out)) == str(out / "checkpoint-2")
