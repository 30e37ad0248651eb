"""Every fenced block of README.md and docs/*.md runs, or is checked, as written.

The convention (CONTRIBUTING.md, "Code blocks in the docs"), by the block's language:

- ``python``: executed in a fresh namespace, in an empty temporary directory, offline and on the CPU.
- ``bash``: run by bash in a scratch copy of the repository root (links to its entries), with the
  programs in ``CHECKED`` replaced by shell functions that record their arguments; each recorded
  command is then run or checked in order by ``check_command``. Any other program, except
  ``cat``, fails the block.
- ``console``: each ``$ COMMAND`` line is run by bash in the same scratch copy, with the package's
  ``repro``; the lines up to the next ``$`` are its exact output (stdout and stderr).
- ``yaml``: parsed; a block whose first line is ``# FILE.yaml`` is that file, written beside the
  bash and console blocks of its page before they run.
- ``text``: output or a diagram, not run.
- A block right after ``<!-- tested: PATH -->`` is run elsewhere: each of its command lines
  appears verbatim in PATH.

A block of any other language, or of none, fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent
#: Programs a bash block may name; each is recorded and checked by ``check_command``.
CHECKED = ("repro", "python", "python3", "pip", "accelerate", "trl", "ray", "cargo", "maturin", "ruff")
#: Real programs a bash block may run as they are.
REAL = ("cat",)
#: Entries of the repository root the scratch copy leaves out (builds, environments, git).
NOT_COPIED = {".git", ".venv", "target", "dist"}
FENCE = re.compile(r"^```(\S*)$")
TESTED = re.compile(r"^<!-- tested: (\S+) -->$")
# A long flag as the docs write it; `--repro_*` (a family of flags) is none.
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*+(?!\*)")
# A block that trains, loads the embedded model or runs a command on it takes seconds to a minute on a CPU.
SLOW = re.compile(r"\.train\(\)|load_default_model\(|^repro score \S+\.jsonl|^\$ ", re.M)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    tested_by: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    blocks, start, language = [], None, ""
    for number, line in enumerate(lines, start=1):
        fence = FENCE.match(line)
        if line.lstrip().startswith("```") and not fence:
            raise AssertionError(f"{page.name}:{number}: a fence must start its line and name one language")
        if not fence:
            continue
        if start is None:
            start, language = number, fence.group(1)
            continue
        assert not fence.group(1), f"{page.name}:{number}: a closing fence names no language"
        before = lines[start - 2] if start >= 2 else ""
        tested = TESTED.match(before)
        blocks.append(Block(page, start, language, "\n".join(lines[start:number - 1]) + "\n",
                            tested.group(1) if tested else None))
        start = None
    assert start is None, f"{page.name}:{start}: the block is never closed"
    return blocks


BLOCKS = [block for page in PAGES for block in blocks_of(page)]


def params(*languages: str) -> list[Any]:
    return [pytest.param(block, id=block.name, marks=[pytest.mark.slow] if SLOW.search(block.text) else [])
            for block in BLOCKS if block.language in languages and block.tested_by is None]


def test_every_block_has_a_known_language():
    unknown = [f"{block.name}: {block.language or '(none)'}" for block in BLOCKS
               if block.language not in ("python", "bash", "console", "yaml", "text")]
    assert not unknown, "blocks no rule checks (mark output as ```text): " + "; ".join(unknown)


def command_lines(text: str) -> list[str]:
    """The block's commands as written: continuation lines joined, comments and blank lines dropped."""
    joined = text.replace("\\\n", " ")
    lines = []
    for line in joined.splitlines():
        code = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if code:
            lines.append(" ".join(code.split()))
    return lines


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.tested_by], ids=lambda b: b.name)
def test_tested_blocks_appear_in_their_test(block):
    path = ROOT / block.tested_by
    assert path.is_file(), f"{block.name}: no file {block.tested_by}"
    text = " ".join(path.read_text().split())
    missing = [line for line in command_lines(block.text) if line not in text]
    assert not missing, f"{block.name}: not in {block.tested_by}: {missing}"


# ---------------------------------------------------------------------------------------------- python blocks


@pytest.mark.parametrize("block", params("python"))
def test_python_block_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    code = compile(block.text, block.name, "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, {"__name__": "__doc_block__"})


# ------------------------------------------------------------------------------------------------ yaml blocks


def yaml_files(page: Path) -> dict[str, str]:
    """The ``# FILE.yaml`` blocks of a page: file name -> text."""
    files = {}
    for block in blocks_of(page):
        first = block.text.splitlines()[0] if block.text.strip() else ""
        if block.language == "yaml" and re.fullmatch(r"# [\w.-]+\.ya?ml", first):
            files[first[2:]] = block.text
    return files


@pytest.mark.parametrize("block", params("yaml"))
def test_yaml_block_parses(block):
    assert isinstance(yaml.safe_load(block.text), dict), block.name


# --------------------------------------------------------------------------------------- bash, console blocks


def scratch_root(tmp_path: Path, page: Path) -> Path:
    """A directory that looks like the repository root (links to its entries) plus the page's YAML files:
    commands written for the clone see its files and write nothing into it."""
    root = tmp_path / "repo"
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in NOT_COPIED:
            (root / entry.name).symlink_to(entry)
    for name, text in yaml_files(page).items():
        (root / name).write_text(text)
    return root


def record_commands(block: Block, cwd: Path, log: Path) -> list[list[str]]:
    """Run the block in bash with the CHECKED programs recorded (as written: `repro`, `.venv/bin/repro`, ...)."""
    bin_dir = cwd.parent / "bin"
    bin_dir.mkdir()
    for program in REAL:
        (bin_dir / program).symlink_to(shutil.which(program))
    names = [*CHECKED, *(f".venv/bin/{name}" for name in CHECKED)]
    functions = "".join(f'{name}() {{ record {shlex.quote(name)} "$@"; }}\n' for name in names)
    script = (
        f"set -e\nrecord() {{ {{ printf '%s\\0' \"$@\"; printf '\\1\\0'; }} >> {shlex.quote(str(log))}; }}\n"
        "command_not_found_handle() { echo \"not a program the docs may run: $1\" >&2; return 127; }\n"
        f"{functions}{block.text}\nwait\n"
    )
    env = {"PATH": str(bin_dir), "HOME": str(cwd.parent), "LANG": "C.UTF-8"}
    result = subprocess.run(["/bin/bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{block.name}: bash failed: {result.stderr}"
    if not log.exists():
        return []
    commands, current = [], []
    for field in log.read_text().split("\0")[:-1]:
        if field == "\1":
            commands.append(current)
            current = []
        else:
            current.append(field)
    return commands


@pytest.mark.parametrize("block", params("bash"))
def test_bash_block_runs_or_checks(block, tmp_path, monkeypatch):
    cwd = scratch_root(tmp_path, block.page)
    commands = record_commands(block, cwd, tmp_path / "commands")
    assert commands, f"{block.name}: no command"
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for argv in commands:
        try:
            check_command(argv, cwd)
        except Exception as error:
            raise AssertionError(f"{block.name}: {shlex.join(argv)}: {type(error).__name__}: {error}") from error


@pytest.mark.parametrize("block", params("console"))
def test_console_block_prints_what_it_shows(block, tmp_path):
    cwd = scratch_root(tmp_path, block.page)
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "COLUMNS": "200"}
    lines = block.text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
    assert starts and starts[0] == 0, f"{block.name}: a console block starts with a `$ ` command"
    for start, end in zip(starts, [*starts[1:], len(lines)], strict=True):
        command, shown = lines[start][2:], lines[start + 1:end]
        result = subprocess.run(["/bin/bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=600)
        printed = (result.stdout + result.stderr).rstrip("\n").splitlines()
        assert printed == shown, f"{block.name}: `{command}` printed:\n" + "\n".join(printed)


# ------------------------------------------------------------------------------------ the commands and checks


def check_command(argv: list[str], cwd: Path) -> None:
    """Run or check one recorded command (its program as the block wrote it: `repro`, `.venv/bin/python`)."""
    program, args = argv[0].removeprefix(".venv/bin/"), argv[1:]
    if program == "repro":
        check_repro(args, cwd)
    elif program in ("python", "python3"):
        check_python(args, cwd)
    elif program == "pip":
        check_pip(args, cwd)
    elif program == "accelerate":
        check_accelerate(args, cwd)
    elif program == "trl":
        assert args[:1] == ["vllm-serve"], "only `trl vllm-serve` is checked"
        from trl.scripts.vllm_serve import make_parser

        make_parser().parse_args_and_config(args[1:])
    elif program == "ray":
        check_ray(args)
    elif program == "maturin":
        backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["build-backend"]
        assert backend == "maturin", f"the build backend is {backend}"
        if shutil.which("maturin"):  # pip builds with its own copy; check the flags where one is installed
            check_help_lists_flags(["maturin", args[0]], args[1:], cwd)
    elif program == "cargo":
        check_help_lists_flags(["cargo", args[0]], args[1:], cwd)
    elif program == "ruff":
        check_help_lists_flags([str(VENV_BIN / "ruff"), args[0]], args[1:], cwd)
    else:
        raise AssertionError(f"no check for {program}")


def run_in_process(args: list[str]) -> tuple[int, str]:
    """``repro ARGS`` in this process: its exit status and what it printed."""
    from repro_core.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(args)
        except SystemExit as exit_:  # --help
            code = exit_.code if isinstance(exit_.code, int) else 0
    return code, out.getvalue()


def check_repro(args: list[str], cwd: Path) -> None:
    """`repro demo` and `--help` run; `repro train` is parsed by its own parser (training is
    tests/test_train_cli.py's); `repro score` is parsed, and run when it only scores a local file with
    the embedded model (seconds), else (sampling, another model) only parsed; `repro verl-check` runs
    and must find nothing (a command in the docs is one that starts)."""
    command, rest = args[0], args[1:]
    if command == "demo" or "--help" in rest or "-h" in rest:
        code, printed = run_in_process(args)
        assert code == 0 and printed.strip(), printed
    elif command == "train":
        from repro_core.train.arguments import parse_args

        parse_args(rest)
    elif command == "score":
        from repro_core.analysis.arguments import parse_arguments

        parsed = parse_arguments(rest)
        if (cwd / parsed.data.dataset).is_file() and parsed.model.model_name_or_path is None \
                and not parsed.generation.generate:
            code, printed = run_in_process(args)
            assert code == 0, printed
    elif command == "verl-check":
        pytest.importorskip("verl")
        code, printed = run_in_process(args)
        assert code == 0 and printed.startswith("ok: "), printed
    else:
        raise AssertionError(f"no check for repro {command}")


def check_python(args: list[str], cwd: Path) -> None:
    if args[:2] == ["-m", "venv"]:
        return  # .ci/run makes its environment this way
    if args[:1] == ["-c"]:
        result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    elif args[:2] == ["-m", "repro_core.train"]:
        check_repro(["train", *args[2:]], cwd)
    elif args[:2] == ["-m", "repro_core.analysis"]:
        check_repro(["score", *args[2:]], cwd)
    elif args[:2] == ["-m", "pytest"]:
        check_pytest(args[2:], cwd)
    elif args and args[0].endswith(".py"):
        check_script(args[0], args[1:], cwd)
    else:
        raise AssertionError("no check for this python command")


def check_script(script: str, args: list[str], cwd: Path) -> None:
    """A script with a ``make_script_parser()`` parses its arguments with it; any other lists them in ``--help``."""
    path = cwd / script
    assert path.is_file(), f"no file {script}"
    if "--help" not in args:
        module = load_script(path)
        if hasattr(module, "make_script_parser"):
            from repro_core.arguments import parse

            with as_on_a_gpu():
                parse(module.make_script_parser(), args)
            return
    check_help_lists_flags([sys.executable, script], args, cwd)


def load_script(path: Path) -> Any:
    """The module of a script, loaded without running its ``__main__`` part."""
    name = f"doc_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def as_on_a_gpu() -> Any:
    """The GPU recipes (examples/, `accelerate launch`) set bf16: parse them as a GPU machine would, where
    transformers' check that bf16 runs says yes."""
    return mock.patch("transformers.training_args.is_torch_bf16_gpu_available", return_value=True)


def check_pytest(args: list[str], cwd: Path) -> None:
    """The suite's own command is .ci/run's; any other collects (its paths, options and markers exist)."""
    if not args:
        assert any(line.endswith("-m pytest") for line in ci_commands()), ".ci/run does not run the suite"
        return
    result = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q"], cwd=cwd,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def check_help_lists_flags(command: list[str], args: list[str], cwd: Path) -> None:
    """``COMMAND --help`` succeeds and lists every flag of ``args`` (up to a ``--``); path-like arguments exist."""
    result = subprocess.run([*command, "--help"], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for arg in args[:args.index("--")] if "--" in args else args:
        if arg.startswith("-"):
            flag = arg.split("=", 1)[0]
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", result.stdout), \
                f"{shlex.join(command)} has no flag {flag}"
        elif "/" in arg:
            assert (cwd / arg).exists(), f"no path {arg}"


def check_pip(args: list[str], cwd: Path) -> None:
    """`pip install` of this repository (a directory with its pyproject.toml) and extras it declares."""
    assert args[:1] == ["install"], "only `pip install` is checked"
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    targets = [arg for arg in args[1:] if not arg.startswith("-")]
    assert targets, "nothing to install"
    for target in targets:
        match = re.fullmatch(r"([^\[\]]+)(?:\[([\w,-]+)\])?", target)
        assert match, f"cannot read {target!r}"
        path, wanted = match.groups()
        assert (cwd / path / "pyproject.toml").is_file(), f"{target}: not this repository (no package index " \
            "has repro-core; install from a clone or a built wheel, docs/install.md)"
        unknown = set((wanted or "").split(",")) - extras - {""}
        assert not unknown, f"{target}: no extra {sorted(unknown)} in pyproject.toml ({sorted(extras)})"


def check_accelerate(args: list[str], cwd: Path) -> None:
    if args == ["config"]:
        return  # interactive: asks for the machine's GPUs and precision
    assert args[:1] == ["launch"], "only `accelerate launch` and `accelerate config` are checked"
    from accelerate.commands.launch import launch_command_parser

    launch = launch_command_parser().parse_args(args[1:])
    with as_on_a_gpu():
        if launch.module:
            check_python(["-m", launch.training_script, *launch.training_script_args], cwd)
        else:
            check_script(launch.training_script, launch.training_script_args, cwd)


def check_ray(args: list[str]) -> None:
    """`ray start` and `ray job submit` are parsed by ray's own CLI; the job's verl overrides compose on
    verl's config, and a RePro run's settings pass repro_sync's start-up checks."""
    from ray.scripts.scripts import cli

    command, path = cli, []
    while hasattr(command, "commands") and args and args[0] in command.commands:
        path.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    assert path in (["start"], ["job", "submit"]), f"no check for ray {' '.join(path)}"
    context = command.make_context(" ".join(path), list(args))
    if path == ["job", "submit"]:
        entrypoint = list(context.params["entrypoint"])
        assert entrypoint[:3] == ["python3", "-m", "verl.trainer.main_ppo"], entrypoint
        verl_run(entrypoint[3:])


def verl_run(overrides: list[str]) -> Any:
    """verl's composed config of these overrides, checked as ``main_ppo`` checks it before it starts:
    verl's own ``validate_config``, then ``repro_sync``'s start-up checks (``repro verl-check``)."""
    pytest.importorskip("verl")
    from repro_core.verl.check import compose, problems

    config = compose(overrides)
    found = problems(config)
    assert not found, "\n".join(map(str, found))
    return config


@cache
def ci_commands() -> list[str]:
    return [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]


# ------------------------------------------------------------------------------------------ the docs' flags


@cache
def known_flags() -> set[str]:
    """Every flag of the repository's commands: `repro train` (GRPO and PPO), `repro score`, `repro demo`,
    examples/grpo_math.py, and the flags of the docs' bash blocks (each checked by its own program)."""
    from repro_core.analysis.arguments import make_parser as score_parser
    from repro_core.demo import make_parser as demo_parser
    from repro_core.train.arguments import make_parser as train_parser

    example = load_script(ROOT / "examples" / "grpo_math.py")
    parsers = [train_parser("grpo"), train_parser("ppo"), score_parser(), demo_parser(), example.make_script_parser()]
    flags = {option for parser in parsers for action in parser._actions for option in action.option_strings}
    flags |= set(FLAG.findall(script_help(ROOT / "benches" / "replicate.py")))
    for block in BLOCKS:
        if block.language == "bash":
            flags |= set(FLAG.findall(block.text))
    return flags


def script_help(path: Path) -> str:
    """``python SCRIPT --help`` as its own ``main()`` prints it, in this process (the script builds its parser
    there; a new interpreter would import torch again for it)."""
    module = load_script(path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), mock.patch.object(sys, "argv", [str(path), "--help"]), \
            pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code in (0, None), out.getvalue()
    return out.getvalue()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_flag_the_docs_name_exists(page):
    mentioned = set(FLAG.findall(page.read_text()))
    unknown = sorted(mentioned - known_flags())
    assert not unknown, f"{page.name} names flags no command has: {unknown}"


# ------------------------------------------------------------------------------- what the docs say of the code

README = (ROOT / "README.md").read_text()


def test_the_docs_name_every_method_reprogrpotrainer_overrides():
    from trl import GRPOTrainer

    from repro_core.trl import ReproGRPOTrainer

    overridden = {name for name, value in vars(ReproGRPOTrainer).items()
                  if callable(value) and hasattr(GRPOTrainer, name) and name != "__init__"}
    trainers = (ROOT / "docs" / "trainers.md").read_text()
    for page, text in (("README.md", README), ("docs/trainers.md", trainers)):
        text = " ".join(text.split())
        sentence = re.search(r"ReproGRPOTrainer`\**:? (?:it )?overrides ((?:`\w+`(?: \([^)]*\))?(?:, | and )?)+)",
                             text, re.I)
        assert sentence, f"{page} does not list what ReproGRPOTrainer overrides"
        assert set(re.findall(r"`(\w+)`", sentence.group(1))) == overridden, (page, overridden)


def test_numpy_example_gives_per_token_advantages():
    example = re.search(r"```python\n(import numpy.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(example, namespace)
    advantages, mask = namespace["adv"].advantages, namespace["mask"]
    assert advantages.shape == (2, 12) and advantages.dtype == np.float32
    assert np.all(advantages[~mask] == 0)
    assert len(np.unique(advantages[0, : mask[0].sum()])) > 1  # RePro varies along the row


def test_authors_recipe_snippet_sets_the_preset(tmp_path, monkeypatch):
    snippet = re.search(r"```python\n(from repro_core.config import preset_config.*?)```", README, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(snippet, namespace)
    assert namespace["config"].w == 0.0 and namespace["config"].k == 30
    assert namespace["args"].repro_settings().alpha == 0.05


def test_ci_runs_exactly_the_readme_test_command():
    quick_start = re.search(r"## Quick start.*?```bash\n(.*?)```", README, re.S).group(1)
    test_command = quick_start.strip().splitlines()[1].split("#")[0].strip()
    assert ci_commands()[-1] == test_command


def test_quick_start_runs_the_main_job_on_the_embedded_default():
    quick_start = re.search(r"## Quick start.*?```bash\n(.*?)```", README, re.S).group(1)
    setup = quick_start.strip().splitlines()[0].split("#")[0].strip()
    # The job itself runs in tests/test_train_cli.py (on a tiny model, to keep the suite fast).
    assert setup.endswith("&& .venv/bin/repro train --max-steps 3")


def test_readme_verl_switch_composes_into_a_repro_sync_run():
    """The README's verl job: its overrides make a repro_sync run with the paper's settings."""
    pytest.importorskip("verl")
    from repro_core.verl.check import repro_config

    block = re.search(r"## verl.*?```bash\n(.*?)```", README, re.S).group(1)
    command = block.split("verl.trainer.main_ppo", 1)[1].replace("\\\n", " ").replace("$HOME", "/home/user")
    config = verl_run(command.split())
    assert (config.trainer.v1.trainer_mode, config.algorithm.adv_estimator) == ("repro_sync", "repro_grpo")
    repro = repro_config(config)
    assert (repro.estimator, repro.alpha, repro.k, repro.w, repro.delimiters) == ("grpo", 0.1, 20, 0.1, "paper")
    assert repro.objective_mode == "shared"


def test_demo_command_scores_every_estimator():
    result = subprocess.run(
        [sys.executable, "-m", "repro_core.cli", "demo", "--batch", "16", "--width", "512"],
        capture_output=True, text=True, check=True,
    )
    for estimator in ("grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline"):
        assert re.search(rf"^{estimator}\s+\d", result.stdout, re.M), result.stdout


def test_demo_reports_bad_arguments_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "repro_core.cli", "demo", "--k", "-1"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "repro: error: --k: expected an integer >= 0, got -1"


def test_links_between_pages_point_into_the_repository():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not re.match(r"https?://", target):
                assert (page.parent / target).exists(), f"{page.name}: no file {target}"


def test_python_api_lists_every_reproconfig_field():
    import dataclasses

    from repro_core.config import ReproConfig

    text = " ".join((ROOT / "docs" / "python-api.md").read_text().split())
    listed = re.search(r"`ReproConfig` fields: `([\w, ]+)`", text).group(1).split(", ")
    assert listed == [field.name for field in dataclasses.fields(ReproConfig)]


def test_no_file_cites_documents_outside_the_repository():
    """The method is defined in docs/method.md; no tracked file points at design notes kept elsewhere."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    outside = re.compile("|".join(("REPRO" + r"\.md", "DESIGN" + r"\.md", r"\.\./" + "shared/")))
    cited = []
    for name in listed.stdout.splitlines():
        path = ROOT / name
        if path.suffix in (".md", ".py", ".rs", ".toml", ".yaml", ".sh", ".pyi", ".txt") and path.is_file():
            cited += [f"{name}: {match}" for match in outside.findall(path.read_text(errors="replace"))]
    assert not cited, cited
