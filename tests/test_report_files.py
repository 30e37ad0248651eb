"""The report's files (``report.html``, ``j_curves.png``, ``rewards.png``) reach the disk whole or not at all: a
write that fails part way (here a real one: the process's file-size limit, RLIMIT_FSIZE, makes the kernel refuse
the write as a full disk would) leaves the previous file as it was and no temporary file behind, and a symlink
planted at the output name is replaced, never followed (``repro_core.outputs.write_atomic``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro_core import report
from test_report import make_record

pytest.importorskip("matplotlib")

WRITERS = {"report.html": "write_html", "j_curves.png": "plot_j_curves", "rewards.png": "plot_rewards"}

# Run in a process of its own: the file-size limit, and SIGXFSZ ignored so that the write fails with EFBIG instead
# of killing the process. The records make every file larger than the limit.
_LIMITED_WRITE = """
import json, resource, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from repro_core import report
from test_report import make_record
records = [make_record(i, [0.1, -0.2, 0.05], text="{i} " + "x" * 4000) for i in range(20)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
try:
    getattr(report, sys.argv[1])(records, Path(sys.argv[2]))
except OSError as error:
    print(json.dumps([type(error).__name__, error.errno]))
"""


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_failed_write_leaves_the_previous_file_whole(tmp_path: Path, name: str) -> None:
    import errno
    import json

    path = tmp_path / name
    path.write_bytes(b"the previous run's file")
    tests = Path(__file__).parent
    result = subprocess.run([sys.executable, "-c", _LIMITED_WRITE, WRITERS[name], str(path), str(tests)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == ["OSError", errno.EFBIG]  # the write failed, and said so
    assert path.read_bytes() == b"the previous run's file"  # not cut off
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_symlink_at_the_output_name_is_replaced_not_followed(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("not the report's to overwrite")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    getattr(report, WRITERS[name])([make_record(0, [0.1, -0.2])], out / name)
    assert victim.read_text() == "not the report's to overwrite"
    assert not (out / name).is_symlink() and (out / name).stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_scores_jsonl_is_not_written_through_a_symlink(tmp_path: Path) -> None:
    from repro_core.analysis.records import ScoresFile
    from repro_core.errors import ReproError

    victim = tmp_path / "elsewhere.txt"
    victim.write_text("not scores.jsonl's to empty")
    (tmp_path / "scores.jsonl").symlink_to(victim)
    with pytest.raises(ReproError) as caught:
        ScoresFile(tmp_path / "scores.jsonl")
    assert caught.value.argument == "--output_dir" and "symbolic link" in caught.value.message
    assert victim.read_text() == "not scores.jsonl's to empty"


def test_files_written_whole_get_the_modes_a_plain_open_gives(tmp_path):
    """The temporary file of an atomic write starts 0600 (mkstemp); the written file is 0666 less the umask."""
    from repro_core.outputs import write_atomic

    previous = os.umask(0o022)
    try:
        write_atomic(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(previous)
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
