"""``repro train``'s output folder and checkpoints under faults (issue 25): nothing is written through a link or
into a FIFO, a second run into a folder in use is refused, a checkpoint is the old one or the new one whatever kill
lands during a re-save, ``--resume-from-checkpoint last`` refuses another run's checkpoint and any resume another
model's, a run resumed at ``--max-steps`` trains nothing more, SIGTERM ends a run as Ctrl-C does, a full disk
during a save is one error line, and a run whose weights stop being finite stops before saving them. Real TRL
runs of tests/tiny.py's model (conftest's tiny_checkpoint)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import errno
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trl")

from repro_core.cli import main
from repro_core.train import command as train_command
from repro_core.train import last_complete_checkpoint
from repro_core.train.checkpoints import RUN_RECORD
from repro_core.train.saves import recover_saves
from test_train_cli import _small_run

SAVE_EVERY_STEP = ("--save_strategy", "steps", "--save_steps", "1")
SUBPROCESS_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def error_line(err: str) -> str:
    """The one ``repro: error:`` line, the last of stderr, with no traceback."""
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert [line for line in lines if line.startswith("repro: error:")] == lines[-1:], err[-3000:]
    return lines[-1]


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the check")

    monkeypatch.setattr(train_command, "load_model", refuse)


@pytest.fixture(scope="module")
def two_steps(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of 2 steps with checkpoint-1 and checkpoint-2, copied by the tests that resume it."""
    out = tmp_path_factory.mktemp("two-steps") / "run"
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "2", *SAVE_EVERY_STEP)) == 0
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


# ----------------------------------------------------------------------------------- links, FIFOs, a second run


@pytest.mark.parametrize("name", ["metrics.jsonl", "model.safetensors"])
def test_a_symlink_in_the_output_folder_is_refused(tiny_checkpoint, tmp_path, capsys, no_model, name):
    """Before: metrics.jsonl was opened through the link, truncating the file it points to."""
    elsewhere = tmp_path / "precious.txt"
    elsewhere.write_text("not repro's to overwrite")
    out = tmp_path / "run"
    out.mkdir()
    (out / name).symlink_to(elsewhere)
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "1")) == 2
    assert error_line(capsys.readouterr().err) == (
        f"repro: error: --output_dir: {out / name} is a symbolic link (to {elsewhere}), where a file is written; "
        "outputs are never written through links or into special files: remove it, or choose another --output_dir")
    assert elsewhere.read_text() == "not repro's to overwrite"


def test_a_fifo_in_the_output_folder_is_refused(tiny_checkpoint, tmp_path, capsys, no_model):
    """Before: the run hung when it opened metrics.jsonl, waiting for a reader."""
    out = tmp_path / "run"
    out.mkdir()
    os.mkfifo(out / "metrics.jsonl")
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "1")) == 2
    assert error_line(capsys.readouterr().err).startswith(
        f"repro: error: --output_dir: {out / 'metrics.jsonl'} is a FIFO (named pipe)")


def test_a_second_run_into_a_folder_in_use_is_refused(tiny_checkpoint, tmp_path, capsys, no_model, hold_output_dir):
    """Before: the second run crashed or interleaved its metrics with the first's. The folder's lock is held by
    another process here, as a running `repro train` (or `repro score`) holds it."""
    out = tmp_path / "run"
    hold_output_dir(out)
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "1")) == 2
    assert error_line(capsys.readouterr().err).startswith(
        f"repro: error: --output_dir: {out} is in use by another run (it holds the folder's lock)")
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------------------- whose checkpoint


def test_last_refuses_another_runs_checkpoint(two_steps, tiny_checkpoint, tmp_path, capsys, no_model):
    """A reused output folder (the default repro-output/ of every run): before, `last` went on silently from an
    older run of another dataset."""
    out = copy_of(two_steps, tmp_path)
    record = json.loads((out / "checkpoint-2" / RUN_RECORD).read_text())
    assert record["dataset"]["dataset_size"] == 8 and record["model"] == str(tiny_checkpoint)
    argv = _small_run(tiny_checkpoint, out, "--max-steps", "3", "--resume-from-checkpoint", "last")
    argv[argv.index("--dataset_size") + 1] = "6"
    assert main(argv) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"repro: error: --resume_from_checkpoint: last is {out / 'checkpoint-2'}, which another "
                           "run saved: its dataset.dataset_size 8 (now 6); train into another --output_dir, or name "
                           "the checkpoint itself")


def test_a_checkpoint_of_another_model_is_refused(two_steps, tiny_checkpoint, tmp_path, capsys):
    """Before: a traceback from torch's load_state_dict (size mismatch)."""
    import tiny
    from conftest import CHAT_TEMPLATE

    other = tmp_path / "three-layers"
    tokenizer = tiny.tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tiny.model(len(tokenizer), num_hidden_layers=3, hidden_size=32).save_pretrained(other)
    tokenizer.save_pretrained(other)
    out = copy_of(two_steps, tmp_path)
    checkpoint = out / "checkpoint-2"
    assert main(_small_run(other, out, "--max-steps", "3", "--resume-from-checkpoint", str(checkpoint))) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"repro: error: --resume_from_checkpoint: {checkpoint} holds another model than {other}: "
                           "hidden_size 64 (this model: 32), num_hidden_layers 2 (this model: 3)")


# ----------------------------------------------------------------------------------- saves whole, or not at all


def test_an_interrupted_resave_leaves_the_old_checkpoint(two_steps, tiny_checkpoint, tmp_path, capsys,
                                                         save_interrupted_at_step_2):
    """Resumed from checkpoint-1, the run saves checkpoint-2 again; Ctrl-C (or a kill) once the new weights and
    optimizer are written. Before: checkpoint-2 held the new weights with the old trainer_state.json, and `last`
    trusted it. Now it is the old checkpoint-2, byte for byte, and the next start removes the staging folder."""
    out = copy_of(two_steps, tmp_path)
    before = {path.name: path.read_bytes() for path in (out / "checkpoint-2").iterdir() if path.is_file()}
    argv = _small_run(tiny_checkpoint, out, "--max-steps", "2", *SAVE_EVERY_STEP,
                      "--resume-from-checkpoint", str(out / "checkpoint-1"), "--seed", "1")
    assert main(argv) == 130
    assert {path.name: path.read_bytes() for path in (out / "checkpoint-2").iterdir() if path.is_file()} == before
    assert (out / ".checkpoint-2.staging").is_dir() and last_complete_checkpoint(str(out)) == str(out / "checkpoint-2")
    capsys.readouterr()
    recover_saves(out)
    assert not (out / ".checkpoint-2.staging").exists()


def test_a_save_killed_between_its_renames_is_finished(tmp_path):
    """The one moment neither checkpoint-2 nor its staged successor is in place: the next start finishes the save."""
    out = tmp_path / "run"
    staged = out / ".checkpoint-2.staging" / "checkpoint-2"
    staged.mkdir(parents=True)
    (staged / "model.safetensors").write_bytes(b"new weights")
    (staged / "trainer_state.json").write_text('{"global_step": 2}')
    (staged / RUN_RECORD).write_text("{}")
    old = out / ".checkpoint-2.old"
    old.mkdir()
    (old / "model.safetensors").write_bytes(b"old weights")
    recover_saves(out)
    assert (out / "checkpoint-2" / "model.safetensors").read_bytes() == b"new weights"
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint-2"]
    # Killed before the staged one was complete: the old one is put back.
    (out / "checkpoint-2").rename(old)
    (out / ".checkpoint-2.staging" / "checkpoint-2").mkdir(parents=True)
    recover_saves(out)
    assert (out / "checkpoint-2" / "model.safetensors").read_bytes() == b"new weights"
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint-2"]


def test_resuming_at_max_steps_trains_nothing_more(two_steps, tiny_checkpoint, tmp_path, capsys):
    """Before: the run trained step 3 past --max-steps 2 and saved checkpoint-3."""
    out = copy_of(two_steps, tmp_path)
    metrics = (out / "metrics.jsonl").read_text()
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "2", *SAVE_EVERY_STEP,
                           "--resume-from-checkpoint", "last")) == 0
    printed = capsys.readouterr().out
    assert f"{out / 'checkpoint-2'} is at step 2, --max-steps already: nothing left to train" in printed
    assert "repro train: done, 2 steps" in printed
    assert not (out / "checkpoint-3").exists() and (out / "metrics.jsonl").read_text() == metrics
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "1", "--resume-from-checkpoint", "last")) == 2
    assert error_line(capsys.readouterr().err).startswith(
        f"repro: error: --max_steps: {out / 'checkpoint-2'} is at step 2, past --max-steps 1")


# ----------------------------------------------------------------------------------- full disk, non-finite


def test_a_full_disk_during_a_checkpoint_save_is_one_error(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """ENOSPC while checkpoint-2 is written (its RNG state): before, a traceback. Now one line naming the folder
    and the last complete checkpoint; the staging folder is removed, checkpoint-1 kept."""
    from transformers import Trainer

    save_rng_state = Trainer._save_rng_state

    def disk_full_at_step_2(self, output_dir):
        if self.state.global_step == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        save_rng_state(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", disk_full_at_step_2)
    out = tmp_path / "run"
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "3", *SAVE_EVERY_STEP)) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"repro: error: --output_dir: cannot save checkpoint-2 in {out}: No space left on device (")
    assert line.endswith(f"the last complete checkpoint, {out / 'checkpoint-1'}, is intact (free some space, then "
                         "--resume-from-checkpoint last)")
    assert sorted(path.name for path in out.iterdir() if "checkpoint" in path.name) == ["checkpoint-1"]


def test_a_full_small_filesystem_during_the_first_save(tiny_checkpoint, tmp_path, capsys):
    """A real full disk: the output folder on a 300 kB tmpfs; the tiny model's checkpoint needs about 1 MB."""
    from small_fs import small_filesystem

    with small_filesystem(tmp_path / "small", "300k") as small:
        out = small / "run"
        assert main(_small_run(tiny_checkpoint, out, "--max-steps", "2", *SAVE_EVERY_STEP)) == 2
        line = error_line(capsys.readouterr().err)
        assert line.startswith(f"repro: error: --output_dir: cannot save checkpoint-1 in {out}: ")
        assert "No space left on device" in line and line.endswith("no complete checkpoint was saved before")
        assert not any("checkpoint" in path.name for path in out.iterdir())


def test_weights_that_stop_being_finite_stop_the_run_before_the_save(tiny_checkpoint, tmp_path, capsys,
                                                                      monkeypatch):
    """An optimizer step that leaves a NaN in the weights at step 2 (as --learning_rate 1e30 or a bf16 overflow
    does). Before: the NaN model was saved over checkpoint-1's successors and the run exited 0."""
    import torch

    step = torch.optim.AdamW.step
    calls = []

    def poisoned(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    out = tmp_path / "run"
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "3", *SAVE_EVERY_STEP)) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith("repro: error: training: step 2: the weights are no longer finite (")
    assert "nothing was saved at this step" in line
    assert sorted(path.name for path in out.iterdir() if "checkpoint" in path.name) == ["checkpoint-1"]
    assert not (out / "model.safetensors").exists()


# ----------------------------------------------------------------------------------- SIGTERM


@pytest.mark.slow
def test_sigterm_ends_a_run_as_ctrl_c_does(tiny_checkpoint, tmp_path):
    """Before: SIGTERM killed the run with no message; now the hint of Ctrl-C, status 143, and `last` resumes."""
    out = tmp_path / "run"
    argv = _small_run(tiny_checkpoint, out, "--max-steps", "50", *SAVE_EVERY_STEP)
    proc = subprocess.Popen([sys.executable, "-m", "repro_core.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)
    deadline = time.monotonic() + 600
    while not (out / "checkpoint-1").is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 143, err[-3000:]
    last = last_complete_checkpoint(str(out))
    assert last is not None and "\nrepro train: terminated at step " in err
    assert f"; go on from {last} with --resume-from-checkpoint last\n" in err


def undefined_reward(completions, **kwargs):
    """A reward function that defines no reward (TRL logs the step's reward as None)."""
    return [None] * len(completions)


def test_a_run_whose_rewards_are_all_undefined_ends_with_its_summary(tiny_checkpoint, tmp_path, capsys):
    """Before: the end-of-run summary crashed (TypeError formatting None) with exit 1, as it did for a dataset whose
    answers were empty (those rows are now skipped at load, tests/test_data.py)."""
    out = tmp_path / "run"
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "1",
                           "--reward_funcs", f"{__name__}.undefined_reward")) == 0
    printed = capsys.readouterr().out
    assert "  reward at step 1: none (std " in printed and "mean over 0 logged steps: none defined" in printed
