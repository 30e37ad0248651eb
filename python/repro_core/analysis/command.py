"""The ``repro score`` command: its arguments (the convention of ``repro_core.arguments``), ``run`` and ``main``.

Flags have both spellings (``--repro_k``, ``--repro-k``) and can come from a YAML file (``--config FILE.yaml``);
the model is ``--model_name_or_path`` / ``--dtype`` (``ModelArguments``, shared with ``repro train``), the data
flags are ``repro train``'s (``--dataset``, ``--dataset_size``, ...) and RePro's settings its ``--repro_*`` flags
(``repro_core.config.ReproArguments``), limited to those scoring uses. A first argument that is not a flag is
the dataset (``repro score traces.jsonl``). Bad input is a ReproError naming the flag; ``main`` prints it as one
``repro: error: ...`` line and returns 2.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arguments import ModelArguments
from ..behaviour import DEFAULT_CUES
from ..config import ReproArguments
from ..data import REASONING_GYM_PREFIX
from ..errors import ReproError
from .inputs import DEFAULT_INPUT, DEFAULT_PROBLEMS

__all__ = [
    "OUTPUT_FILES",
    "CommandArguments",
    "DataArguments",
    "DeviceArguments",
    "GenerationArguments",
    "ReportArguments",
    "ReproScoreArguments",
    "main",
    "make_parser",
    "parse_arguments",
    "run",
]

PROG = "repro score"
OUTPUT_FILES = ("scores.jsonl", "j_curves.png", "rewards.png", "report.html")
#: Completions sampled per problem of a reasoning-gym dataset (which has none to read) unless --generate says.
DEFAULT_SAMPLES = 2
# k larger than any number of paragraph breaks: select_cuts then keeps every candidate, so the cut points are
# exactly the paragraph boundaries.
_ALL_PARAGRAPHS = 10**9


def _at_least(flag: str, value: int | None, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ReproError(flag, f"expected an integer >= {minimum}, got {value!r}")


@dataclass
class DataArguments:
    """The traces, or the prompts to sample them for; the names are ``repro train``'s."""

    _argument_group_name = "data"

    dataset: str = field(
        default=DEFAULT_INPUT,
        metadata={"help": "A JSONL/JSON file, a Hugging Face dataset id or directory, or reasoning-gym:TASK "
                  f"(which implies --generate {DEFAULT_SAMPLES}). Also the first argument: repro score FILE."},
    )
    dataset_size: int | None = field(
        default=None,
        metadata={"help": f"Use the first N rows (reasoning-gym: generate N problems, unset: {DEFAULT_PROBLEMS})."},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration (subset) of a Hugging Face dataset, e.g. main for openai/gsm8k."}
    )
    dataset_seed: int = field(default=0, metadata={"help": "Seed of the reasoning-gym generator."})
    task_config: str | None = field(
        default=None,
        metadata={"help": "reasoning-gym task options as a JSON object (a mapping in the YAML file), e.g. "
                  "'{\"min_terms\": 2, \"max_terms\": 3}'."},
    )
    split: str = field(default="train", metadata={"help": "Split of a Hugging Face dataset."})
    prompt_column: str | None = field(
        default=None, metadata={"help": "Prompt column: text or chat messages. Unset: prompt, else question."}
    )
    completion_column: str = field(
        default="completion", metadata={"help": "Completion column: text or chat messages (read unless --generate)."}
    )
    answer_column: str = field(
        default="answer",
        metadata={"help": "Gold answer column; GSM8K's '... #### 42' gives 42, a solution its last \\boxed{}."},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "System message of text prompts when sampling (--generate). Unset: repro_core.data's "
                  "default, as in repro train; '' for none."},
    )

    def __post_init__(self) -> None:
        _at_least("--dataset_size", self.dataset_size, 1)


@dataclass
class GenerationArguments:
    """Sampling completions with the model (``--generate N``) instead of reading them."""

    _argument_group_name = "generation"

    generate: int | None = field(
        default=None,
        metadata={"help": "Sample N completions per prompt instead of reading completions "
                  f"(unset: {DEFAULT_SAMPLES} for reasoning-gym datasets, else 0)."},
    )
    max_new_tokens: int = field(default=256, metadata={"help": "Tokens per sample."})
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature; also that of the entropies, which only --repro_k uses."}
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (1.0: off)."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampling."})

    def __post_init__(self) -> None:
        _at_least("--generate", self.generate, 0)
        _at_least("--max_new_tokens", self.max_new_tokens, 1)
        if not 0 < self.top_p <= 1:
            raise ReproError("--top_p", f"expected a number in (0, 1], got {self.top_p}")


@dataclass
class DeviceArguments:
    """Where and in what batches the model runs."""

    _argument_group_name = "device"

    device: str | None = field(default=None, metadata={"help": "Torch device. Unset: cuda when available, else cpu."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call and traces per scoring call."})

    def __post_init__(self) -> None:
        _at_least("--batch_size", self.batch_size, 1)


@dataclass
class ReportArguments:
    """The outputs and the backtracking count."""

    _argument_group_name = "report"

    output_dir: str = field(
        default="repro-score",
        metadata={"help": f"Where {', '.join(OUTPUT_FILES)} go (created; files in it are overwritten).",
                  "aliases": ["-o"]},
    )
    table_rows: int = field(default=30, metadata={"help": "Traces listed in the terminal table before the means."})
    backtrack_cues: str = field(
        default=",".join(DEFAULT_CUES),
        metadata={"help": "Comma-separated paragraph openings counted as backtracking."},
    )

    def __post_init__(self) -> None:
        _at_least("--table_rows", self.table_rows, 0)

    def cues(self) -> list[str]:
        return [cue.strip() for cue in self.backtrack_cues.split(",") if cue.strip()]


#: The RePro settings scoring uses; the others (alpha, gamma, estimator) shape advantages, which it has none of.
SCORING_SETTINGS = ("k", "w", "stability_ema", "delimiters", "think_end", "answer_template", "j_tokens",
                    "answer_special_tokens", "j_at_rollout_temperature", "objective_mode", "max_batch_tokens")


def _repro_score_fields() -> list[tuple[str, Any, Any]]:
    types = typing.get_type_hints(ReproArguments)
    wanted = {f"repro_{name}" for name in SCORING_SETTINGS}
    specs: list[tuple[str, Any, Any]] = []
    for source in dataclasses.fields(ReproArguments):
        if source.name not in wanted:
            continue
        if source.name == "repro_k":
            help_ = ("Cut points: only the k highest-entropy paragraph breaks, as in training. Unset: every "
                     "paragraph boundary, so J is measured after each paragraph.")
            specs.append(("repro_k", int | None, field(default=None, metadata={"help": help_})))
        else:
            specs.append((source.name, types[source.name],
                          field(default=source.default, metadata=dict(source.metadata))))
    return specs


#: ``ReproArguments`` restricted to ``SCORING_SETTINGS`` (the same defaults and help), ``repro_k`` unset meaning
#: every paragraph boundary.
ReproScoreArguments = dataclasses.make_dataclass(
    "ReproScoreArguments",
    _repro_score_fields(),
    namespace={"_argument_group_name": "RePro", "repro_config": ReproArguments.repro_config,
               "__doc__": "RePro's settings that scoring uses, as repro train's --repro_* flags."},
)
ReproScoreArguments.__module__ = __name__


@dataclass(frozen=True)
class CommandArguments:
    """The parsed arguments of ``repro score``, one dataclass per group."""

    model: ModelArguments
    data: DataArguments
    generation: GenerationArguments
    device: DeviceArguments
    repro: Any  # a ReproScoreArguments
    report: ReportArguments


_GROUPS = (ModelArguments, DataArguments, GenerationArguments, DeviceArguments, ReproScoreArguments, ReportArguments)
_FLAGS = {f.name for group in _GROUPS for f in dataclasses.fields(group)}
# What errors from the layers below call a setting -> the flag that sets it.
_ALIASES = {"name_or_path": "model_name_or_path", "prompt": "prompt_column",
            **{name: f"repro_{name}" for name in SCORING_SETTINGS}}


def flag_of(argument: str) -> str:
    """The ``--flag`` of a ReproError's argument when a flag sets it (``repro_k``, ``k`` -> ``--repro_k``)."""
    name = _ALIASES.get(argument, argument)
    return f"--{name}" if name in _FLAGS else argument


def make_parser(prog: str = PROG) -> Any:
    """The command's ``TrlParser`` (``repro_core.arguments.make_parser``) over its argument dataclasses."""
    from ..arguments import make_parser as make_command_parser

    parser = make_command_parser(
        prog, _GROUPS, defaults={},
        description="Score reasoning traces with RePro: J at every paragraph boundary, magnitude, stability, process "
        "rewards and backtracking, with plots and an HTML report (docs/score.md).",
    )
    parser.usage = f"{prog} [INPUT] [--config FILE.yaml] [--FLAG VALUE ...]"
    return parser


def parse_arguments(argv: Sequence[str], prog: str = PROG) -> CommandArguments:
    """The arguments of ``argv``; a first argument that is not a flag is the dataset (``--dataset``)."""
    from ..arguments import parse

    args = list(argv)
    if args and not args[0].startswith("-"):
        if any(arg == "--dataset" or arg.startswith("--dataset=") for arg in args[1:]):
            raise ReproError("--dataset", f"given twice: as the first argument ({args[0]}) and as --dataset")
        args = ["--dataset", *args]
    return CommandArguments(*parse(make_parser(prog), args))


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Loading weights" progress bar from transformers while the model loads: ours is the only one."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def run(arguments: CommandArguments) -> int:
    """The command behind ``main`` once the arguments are parsed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..assets import DEFAULT_MODEL
    from ..data import DEFAULT_SYSTEM_PROMPT
    from ..pipeline import ReproScorer
    from .generation import generate, instruct, prompt_ids, sampled_traces
    from .inputs import given_traces, load_rows
    from .records import score_traces
    from .table import print_table

    started = time.monotonic()
    data, generation, repro, report = arguments.data, arguments.generation, arguments.repro, arguments.report
    procedural = data.dataset.startswith(REASONING_GYM_PREFIX)  # no completions to read: sample some
    samples = (DEFAULT_SAMPLES if procedural else 0) if generation.generate is None else generation.generate
    k = _ALL_PARAGRAPHS if repro.repro_k is None else repro.repro_k
    config = repro.repro_config(temperature=generation.temperature, k=k)
    output = Path(report.output_dir)
    if output.exists() and not output.is_dir():
        raise ReproError("--output_dir", f"{output} exists and is not a directory")

    system_prompt = DEFAULT_SYSTEM_PROMPT if data.system_prompt is None else data.system_prompt
    try:
        rows = load_rows(data.dataset, split=data.split, dataset_config=data.dataset_config,
                         dataset_size=data.dataset_size, dataset_seed=data.dataset_seed, task_config=data.task_config,
                         system_prompt=system_prompt, prompt_column=data.prompt_column,
                         answer_column=data.answer_column,
                         completion_column=None if samples else data.completion_column)
    except ReproError as error:
        if error.argument == "completion_column":
            raise ReproError("--completion_column", f"{error.message}; pass --generate N to sample completions "
                             "with the model") from None
        raise
    model, tokenizer, device = _load_model(arguments.model, arguments.device)
    scorer = ReproScorer(model, tokenizer, config)
    prompts = [instruct(row.prompt, system_prompt) if samples else row.prompt for row in rows]
    ids = [prompt_ids(tokenizer, prompt, index) for index, prompt in enumerate(prompts)]
    errors = Console(stderr=True)
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    batch_size = arguments.device.batch_size
    with Progress(*columns, console=errors) as progress:
        if samples:
            import torch

            torch.manual_seed(generation.seed)
            completions = generate(model, tokenizer, ids, samples, max_new_tokens=generation.max_new_tokens,
                                   temperature=generation.temperature, top_p=generation.top_p,
                                   batch_size=batch_size, progress=progress)
            traces = sampled_traces(rows, prompts, ids, completions, tokenizer)
        else:
            traces = given_traces(rows, ids, tokenizer)
        records = score_traces(scorer, traces, cues=report.cues(), batch_size=batch_size, progress=progress)

    settings: dict[str, Any] = {
        "model": arguments.model.model_name_or_path or f"{DEFAULT_MODEL} (embedded)",
        "dataset": data.dataset,
        "traces": len(records),
        "cut points": "every paragraph boundary" if repro.repro_k is None else f"top-{repro.repro_k} breaks",
        "w": repro.repro_w,
        "delimiters": repro.repro_delimiters,
    }
    if samples:
        settings |= {"samples": samples, "temperature": generation.temperature,
                     "max new tokens": generation.max_new_tokens}
    _write_outputs(records, output, settings)
    console = Console()
    print_table(records, console, max_rows=report.table_rows)
    console.print(f"{len(records)} traces scored on {device} in {time.monotonic() - started:.0f} s; wrote "
                  f"{', '.join(OUTPUT_FILES)} to {output}/", highlight=False)
    return 0


def _write_outputs(records: Sequence[dict[str, Any]], output: Path, settings: dict[str, Any]) -> None:
    """``OUTPUT_FILES`` in ``output``: the records as JSON lines, the two plots and the report."""
    from ..report import plot_j_curves, plot_rewards, write_html

    try:
        output.mkdir(parents=True, exist_ok=True)
        with open(output / "scores.jsonl", "w", encoding="utf-8") as file:
            for record in records:
                file.write(json.dumps(record, ensure_ascii=False) + "\n")
        plot_j_curves(records, output / "j_curves.png")
        plot_rewards(records, output / "rewards.png")
        write_html(records, output / "report.html", images=[output / "j_curves.png", output / "rewards.png"],
                   settings=settings)
    except OSError as error:
        raise ReproError("--output_dir", f"cannot write to {output}: {error}") from None


def _load_model(model: ModelArguments, device: DeviceArguments) -> tuple[Any, Any, str]:
    import torch

    from ..assets import load_default_model

    name = device.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(name)
    except RuntimeError as error:
        raise ReproError("--device", f"{error}") from None
    dtype = torch.bfloat16 if model.dtype == "bfloat16" else torch.float32  # auto: float32
    with _quiet_transformers():
        loaded, tokenizer = load_default_model(model.model_name_or_path, dtype=dtype, device=name)
    return loaded, tokenizer, name


def main(argv: Sequence[str] | None = None) -> int:
    """``repro score``: returns the exit status; bad input prints one ``repro: error:`` line and returns 2."""
    try:
        return run(parse_arguments(sys.argv[1:] if argv is None else argv))
    except ReproError as error:
        message = " ".join(str(error.renamed(flag_of(error.argument))).split())  # one line, whatever it held
        print(f"repro: error: {message}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print("repro: interrupted", file=sys.stderr)
        return 130
