"""Installing as docs/install.md says: the wheel built from this checkout and installed with an extra into a fresh
virtual environment, then the package and the ``repro`` command run from there; and each extra is enough for its
command (``[score]`` scores without TRL or accelerate).

The fresh environment downloads nothing: it sees this environment's third-party packages through a ``.pth`` file
naming a folder of links to them (leaving out repro-core itself), and pip installs with ``PIP_NO_INDEX`` so the
extra resolves against exactly those. Building the wheel fetches maturin from PyPI into pip's isolated build
environment (the Rust reuses target/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The commands of docs/install.md's tested blocks, verbatim (tests/test_docs.py checks they are here).
BUILD = "pip wheel . --no-deps -w dist"
INSTALL = {
    "trl": 'pip install "$(ls dist/repro_core-*.whl)[trl]"',
    "score": 'pip install "$(ls dist/repro_core-*.whl)[score]"',
    "verl": 'pip install "$(ls dist/repro_core-*.whl)[verl]"',
}
# What each install is then checked with: the docs' own check for [trl], the command or plugin for the others.
CHECKS = {
    "trl": ['python -c "import repro_core, repro_core.trl; print(repro_core.__version__)"', "repro --help"],
    "score": ["repro score --help"],
    "verl": ["python -c \"from importlib.metadata import entry_points; "
             "print(entry_points(group='verl.plugins')['repro_core'].load().__name__)\""],
}

# Top-level names of what is ours in site-packages: the fresh environment must install its own.
OURS = ("repro_core", "repro-core", "__editable__", "_repro_core")


def bash(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def fresh_venv(path: Path, hidden: tuple[str, ...] = ()) -> dict[str, str]:
    """A new virtual environment seeing this one's packages except ours and ``hidden`` (import and distribution
    names); returns the environment variables that activate it, with pip offline."""
    # Without its own pip and setuptools, which would shadow newer ones that torch requires; `pip` runs this
    # environment's pip in it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, capture_output=True)
    pip = path / "bin" / "pip"
    pip.write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
    pip.chmod(0o755)
    visible = path / "visible"
    visible.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        name = entry.name.lower()
        project = name.split("-")[0].split(".")[0]  # of "trl", "trl-1.16.0.dist-info", "trl.py"
        if entry.suffix == ".pth" or name.startswith(OURS) or project in hidden:
            continue
        (visible / entry.name).symlink_to(entry)
    (fresh_site(path) / "test-visible.pth").write_text(f"{visible}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    return env | {"PATH": f"{path / 'bin'}{os.pathsep}{env['PATH']}", "VIRTUAL_ENV": str(path),
                  "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1"}


def fresh_site(venv: Path) -> Path:
    return Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The wheel, built by docs/install.md's command in the checkout's dist/ (ignored by git)."""
    if shutil.which("cargo") is None:
        pytest.skip("building the wheel needs a Rust toolchain (cargo)")
    for old in (ROOT / "dist").glob("repro_core-*.whl"):
        old.unlink()  # `ls dist/repro_core-*.whl` must name one wheel
    env = {k: v for k, v in os.environ.items() if k != "PIP_NO_INDEX"}  # maturin comes from PyPI
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # this environment's pip
    proc = bash(BUILD, ROOT, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (ROOT / "dist").glob("repro_core-*.whl")
    assert "-cp311-abi3-" in wheel.name  # one wheel for every CPython >= 3.11
    return wheel


@pytest.mark.slow
@pytest.mark.parametrize("extra", INSTALL)
def test_the_wheel_installs_with_an_extra(built, tmp_path, extra):
    venv = tmp_path / "venv"
    env = fresh_venv(venv)
    proc = bash(INSTALL[extra], ROOT, env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Successfully installed repro-core" in proc.stdout
    # The package imported is the installed wheel, not this checkout's editable one.
    where = bash('python -c "import repro_core, repro_core._core as core; print(repro_core.__file__, core.__file__)"',
                 tmp_path, env)
    assert where.returncode == 0, where.stderr
    site = fresh_site(venv)
    assert all(Path(path).is_relative_to(site) for path in where.stdout.split()), where.stdout
    assert Path(shutil.which("repro", path=env["PATH"])).is_relative_to(venv)
    for check in CHECKS[extra]:
        proc = bash(check, tmp_path, env)
        assert proc.returncode == 0, f"{check}: {proc.stderr[-3000:]}"
        assert proc.stdout.strip(), check
    if extra == "verl":
        assert proc.stdout.strip() == "repro_core.verl"


@pytest.mark.slow
def test_the_extra_is_resolved(built, tmp_path):
    """The same install with TRL hidden fails: [trl] really requires it, and nothing was fetched from elsewhere."""
    env = fresh_venv(tmp_path / "venv", hidden=("trl",))
    proc = bash(INSTALL["trl"], ROOT, env)
    assert proc.returncode != 0
    assert "trl" in proc.stderr.lower() and "no matching distribution" in proc.stderr.lower(), proc.stderr[-2000:]


# `repro score` with only its extra: TRL and accelerate absent. A module set to None in sys.modules is what an
# uninstalled one looks like to both `import` (ModuleNotFoundError) and importlib.util.find_spec (None), which
# transformers asks before using accelerate.
WITHOUT_TRL = ("import sys; sys.modules.update(trl=None, accelerate=None); from repro_core.cli import main; "
               "code = main(); assert not {'trl', 'accelerate'} & {m for m, v in sys.modules.items() if v}; "
               "sys.exit(code)")


def score_without_trl(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", WITHOUT_TRL, "score", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_score_help_needs_neither_trl_nor_accelerate(tmp_path):
    proc = score_without_trl(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--model_name_or_path" in proc.stdout


@pytest.mark.slow
def test_score_runs_without_trl_or_accelerate(tmp_path):
    """A trace scored end to end on a tiny Llama (tests/tiny.py) with TRL and accelerate absent."""
    pytest.importorskip("matplotlib")
    tiny = pytest.importorskip("tiny")
    tokenizer = tiny.tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n\n{% endfor %}"
    tiny.model(len(tokenizer), arch="llama").save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    trace = {"prompt": "What is two plus three?", "completion": "So two plus three.\n\nThe sum is five.\n\n"
             "\\boxed{5}", "answer": "5"}
    (tmp_path / "traces.jsonl").write_text(json.dumps(trace) + "\n")
    proc = score_without_trl(["traces.jsonl", "--model_name_or_path", "model", "-o", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert record["num_paragraphs"] == 3 and (tmp_path / "out" / "report.html").is_file()
