"""``repro score``'s output folder under faults (issue 25): nothing outside it is written (a symbolic link or a FIFO
at an output name is refused, naming it), its input is never one of its outputs, a second run into it is refused
while the first holds it, SIGTERM ends a run as Ctrl-C does (the traces scored kept, the report rebuilt), and a
full disk leaves whole lines and one error line. Runs the command on tests/tiny.py's model, as
tests/test_score_faults.py does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

import test_score_faults as faults  # noqa: E402
from repro_core import analysis  # noqa: E402
from repro_core.analysis import command  # noqa: E402
from repro_core.outputs import claimed_output_dir  # noqa: E402
from test_score_faults import error_line, row, scores, write_rows  # noqa: E402

# test_score_faults' fixtures: the tiny model's checkpoint, the command run in-process, the model never loaded.
model_dir, score, no_model = faults.model_dir, faults.score, faults.no_model

SUBPROCESS_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


# ----------------------------------------------------------------------------------- links and special files


@pytest.mark.parametrize("name", analysis.OUTPUT_FILES)
def test_a_symlink_at_an_output_name_is_refused(tmp_path: Path, score, no_model: None, name: str) -> None:
    """Before: scores.jsonl was opened with O_TRUNC through the link, emptying the file it points to."""
    elsewhere = tmp_path / "precious.txt"
    elsewhere.write_text("not repro's to overwrite")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(elsewhere)
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0)]), "-o", out)
    assert code == 2
    assert error_line(err) == (f"repro: error: --output_dir: {out / name} is a symbolic link (to {elsewhere}), where "
                               "a file is written; outputs are never written through links or into special files: "
                               "remove it, or choose another --output_dir")
    assert elsewhere.read_text() == "not repro's to overwrite"


def test_a_fifo_at_scores_jsonl_is_refused_without_hanging(tmp_path: Path, score, no_model: None) -> None:
    """Before: opening the FIFO for writing waited for a reader, forever."""
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "scores.jsonl")
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0)]), "-o", out)
    assert code == 2
    assert error_line(err).startswith(f"repro: error: --output_dir: {out / 'scores.jsonl'} is a FIFO (named pipe)")


def test_the_input_cannot_be_the_output(tmp_path: Path, score, no_model: None) -> None:
    """`repro score DIR/scores.jsonl -o DIR`: before, the file was emptied when scoring started, and an unfinished
    run lost it."""
    out = tmp_path / "out"
    out.mkdir()
    source = write_rows(out / "scores.jsonl", [row(0), row(1)])
    before = source.read_bytes()
    for given in (source, out / ".." / "out" / "scores.jsonl"):
        code, err = score(given, "-o", out)
        assert code == 2
        assert error_line(err).startswith(f"repro: error: --output_dir: the input {given} is {out / 'scores.jsonl'}, "
                                          "which this run writes")
    assert source.read_bytes() == before


# ----------------------------------------------------------------------------------- concurrent runs


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path: Path, score, no_model: None, hold_output_dir) -> None:
    """Before: two runs into one folder both exited 0, their records mixed and a line cut off. The folder's lock is
    held here by another process, as a running `repro score` holds it; when that process dies the lock goes."""
    out = tmp_path / "out"
    holder = hold_output_dir(out)
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0)]), "-o", out)
    assert code == 2
    assert error_line(err) == (f"repro: error: --output_dir: {out} is in use by another run (it holds the "
                               "folder's lock): two runs into one folder would mix their outputs; wait for it to "
                               "end, or choose another --output_dir")
    assert list(out.iterdir()) == []
    holder.kill()
    holder.wait()
    with claimed_output_dir(out, "--output_dir"):  # free again once its holder is gone (even by SIGKILL)
        pass


def test_two_runs_at_once_do_not_mix(tmp_path: Path, model_dir: Path) -> None:
    """Two real `repro score` processes into one folder: one scores everything, the other is refused."""
    source = write_rows(tmp_path / "t.jsonl", [row(i) for i in range(6)])
    argv = [sys.executable, "-m", "repro_core.analysis", str(source), "-o", str(tmp_path / "out"),
            "--model_name_or_path", str(model_dir), "--batch_size", "1"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)
    deadline = time.monotonic() + 300
    while not (tmp_path / "out" / "scores.jsonl").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(argv, capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=300)
    first_err = first.communicate(timeout=300)[1]
    assert first.returncode == 0, first_err[-2000:]
    assert second.returncode == 2 and "is in use by another run" in error_line(second.stderr)
    assert [r["id"] for r in scores(tmp_path / "out")] == list(range(6))


# ----------------------------------------------------------------------------------- SIGTERM


def test_sigterm_keeps_the_traces_scored_and_rebuilds_the_report(tmp_path: Path, model_dir: Path) -> None:
    """Before: SIGTERM (a batch system's, timeout's) killed the run at once: no report, no message."""
    out = tmp_path / "out"
    source = write_rows(tmp_path / "t.jsonl", [row(i) for i in range(200)])
    proc = subprocess.Popen([sys.executable, "-m", "repro_core.analysis", str(source), "-o", str(out),
                             "--model_name_or_path", str(model_dir), "--batch_size", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if (out / "scores.jsonl").is_file() and (out / "scores.jsonl").read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    kept = scores(out)
    assert 2 <= len(kept) < 200
    assert err.strip().splitlines()[-1] == f"repro: terminated: the {len(kept)} traces scored are in {out}/"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f'id="trace-{len(kept) - 1}"' in page and "interrupted" in page
    assert (out / "j_curves.png").is_file() and (out / "rewards.png").is_file()


def test_sigterm_before_scoring_is_one_line(tmp_path: Path, score, monkeypatch: pytest.MonkeyPatch) -> None:
    def terminated(*args: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM was not handled")

    monkeypatch.setattr(command, "_load_model", terminated)
    out = tmp_path / "out"
    code, err = score(write_rows(tmp_path / "t.jsonl", [row(0)]), "-o", out)
    assert code == 143 and err.strip().splitlines()[-1] == "repro: terminated"
    assert not out.exists()  # the folder this run made is removed again, empty
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


# ----------------------------------------------------------------------------------- full disk


def test_a_full_small_filesystem_leaves_whole_lines(tmp_path: Path, score) -> None:
    """A real full disk: the output folder on a 32 kB tmpfs, each record about 1.5 kB."""
    from small_fs import small_filesystem

    with small_filesystem(tmp_path / "small", "32k") as small:
        rows = [row(i) for i in range(40)]
        code, err = score(write_rows(tmp_path / "t.jsonl", rows), "-o", small / "out", "--batch_size", "4")
        assert code == 2
        line = error_line(err)
        assert line.startswith("repro: error: --output_dir: cannot write to ") and "No space left on device" in line
        kept = scores(small / "out")  # whole lines only
        assert 0 < len(kept) < 40 and [r["id"] for r in kept] == list(range(len(kept)))


def test_a_filesystem_that_cannot_lock_runs_with_a_warning(tmp_path: Path, score, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """flock failing with ENOLCK (NFS without a lock manager): the run goes on, saying that a second run into the
    folder would not be detected, rather than waiting or failing."""
    import errno
    import fcntl

    def no_locks(*args: object) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level("WARNING", logger="repro_core.outputs"):
        code, err = score(write_rows(tmp_path / "t.jsonl", [row(0)]), "-o", tmp_path / "out")
    assert code == 0, err
    assert [r.getMessage() for r in caplog.records if r.name == "repro_core.outputs"] == [
        f"cannot lock {tmp_path / 'out'} ([Errno {errno.ENOLCK}] No locks available): a second run into it at the "
        "same time would not be detected"]
    assert len(scores(tmp_path / "out")) == 1
