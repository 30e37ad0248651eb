"""The ``repro score`` command: its arguments (the convention of ``repro_core.arguments``), ``run`` and ``main``.

Flags have both spellings (``--repro_k``, ``--repro-k``) and can come from a YAML file (``--config FILE.yaml``);
the model is ``--model_name_or_path`` / ``--dtype`` (``ModelArguments``, shared with ``repro train``), the data
flags are ``repro train``'s (``--dataset``, ``--dataset_size``, ...) and RePro's settings its ``--repro_*`` flags
(``repro_core.config.ReproArguments``), limited to those scoring uses. A first argument that is not a flag is
the dataset (``repro score traces.jsonl``). Bad input is a ReproError naming the flag; ``main`` prints it as one
``repro: error: ...`` line and returns 2.

Nothing finished is lost: the output directory is checked writable before the model loads, every trace's record
is appended to ``scores.jsonl`` as soon as it is scored, a row that cannot be scored is skipped or stops the run
(``--on_error``), and the plots and the report are rebuilt from the records scored whenever the run ends: done,
stopped by an error, or interrupted.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import tempfile
import time
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..arguments import ModelArguments
from ..behaviour import DEFAULT_CUES
from ..config import ReproArguments
from ..data import REASONING_GYM_PREFIX
from ..errors import ReproError
from ..report import DEFAULT_COLOR_MAX, check_color_max
from .inputs import DEFAULT_INPUT, DEFAULT_PROBLEMS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

    from ..pipeline import ReproScorer
    from .inputs import Row, Trace

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

logger = logging.getLogger(__name__)

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
    on_error: Literal["skip", "stop"] = field(
        default="skip",
        metadata={"help": "A row that cannot be scored (text the tokenizer rejects, a trace longer than the model's "
                  "context under --long_traces refuse, a failing model pass): skip reports it and goes on; stop "
                  "ends the run with exit status 2. Either way the traces scored are kept."},
    )
    long_traces: Literal["refuse", "truncate"] = field(
        default="refuse",
        metadata={"help": "A trace (prompt, completion and answer) longer than the model's context "
                  "(max_position_embeddings): refuse makes the row an error (--on_error); truncate scores the "
                  "completion's first tokens that fit, with a warning, and marks it truncated."},
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
    color_max: float = field(
        default=DEFAULT_COLOR_MAX,
        metadata={"help": "The |process reward| that gets the full colour in report.html: one fixed scale, the same "
                  "in every report so that two reports compare (stronger rewards are clipped)."},
    )

    def __post_init__(self) -> None:
        _at_least("--table_rows", self.table_rows, 0)
        try:
            self.color_max = check_color_max(self.color_max)
        except ReproError as error:
            raise error.renamed("--color_max") from None

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
    """The command behind ``main`` once the arguments are parsed; 130 after an interrupt (the traces scored kept)."""
    from rich.console import Console

    from ..data import DEFAULT_SYSTEM_PROMPT
    from ..pipeline import ReproScorer
    from .inputs import load_rows
    from .table import print_table

    started = time.monotonic()
    data, generation, repro, report = arguments.data, arguments.generation, arguments.repro, arguments.report
    procedural = data.dataset.startswith(REASONING_GYM_PREFIX)  # no completions to read: sample some
    samples = (DEFAULT_SAMPLES if procedural else 0) if generation.generate is None else generation.generate
    k = _ALL_PARAGRAPHS if repro.repro_k is None else repro.repro_k
    config = repro.repro_config(temperature=generation.temperature, k=k)
    output = Path(report.output_dir)
    _check_writable(output)  # before anything slow: an unwritable folder would lose the whole run

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
    scoring = _Scoring(arguments, ReproScorer(model, tokenizer, config), rows, samples, system_prompt, output,
                       Console(stderr=True))
    interrupted = False
    try:
        scoring.run()
    except KeyboardInterrupt:
        interrupted = True
    except _Stopped as stop:
        raise ReproError(stop.argument, f"{stop.message} (the run stopped here, --on_error stop; the "
                         f"{len(scoring.records)} traces scored before are in {output}/)") from None
    finally:
        scoring.close()
        if scoring.records and scoring.writable:  # the plots and report of what was scored, however it ended
            settings = _settings(arguments, samples, len(scoring.records)) | scoring.status(interrupted)
            _write_outputs(scoring.records, output, settings, report.color_max)
    if scoring.skipped:
        rows_skipped = ", ".join(str(index) for index, _ in scoring.skipped)
        scoring.errors.print(f"repro: warning: rows skipped (--on_error skip): {rows_skipped}", highlight=False,
                             soft_wrap=True)
        if not scoring.records:
            raise ReproError("--on_error", f"no row could be scored; the first: {scoring.skipped[0][1]}")
    console = Console()
    print_table(scoring.records, console, max_rows=report.table_rows)
    console.print(f"{len(scoring.records)} traces scored on {device} in {time.monotonic() - started:.0f} s; wrote "
                  f"{', '.join(OUTPUT_FILES)} to {output}/", highlight=False)
    if interrupted:
        scoring.errors.print(f"repro: interrupted: the {len(scoring.records)} traces scored are in {output}/",
                             highlight=False, soft_wrap=True)
        return 130
    return 0


def _settings(arguments: CommandArguments, samples: int, traces: int) -> dict[str, Any]:
    """The settings line of the report."""
    from ..assets import DEFAULT_MODEL

    repro, generation = arguments.repro, arguments.generation
    settings: dict[str, Any] = {
        "model": arguments.model.model_name_or_path or f"{DEFAULT_MODEL} (embedded)",
        "dataset": arguments.data.dataset,
        "traces": traces,
        "cut points": "every paragraph boundary" if repro.repro_k is None else f"top-{repro.repro_k} breaks",
        "w": repro.repro_w,
        "delimiters": repro.repro_delimiters,
    }
    if samples:
        settings |= {"samples": samples, "temperature": generation.temperature,
                     "max new tokens": generation.max_new_tokens}
    return settings


class _Stopped(ReproError):
    """The error of a row that ends the run (``--on_error stop``)."""


class _Scoring:
    """One run's scoring loop: rows to traces (sampled or read) to records, batch by batch; every record appended
    to ``scores.jsonl`` as it comes; rows that fail skipped or stopping the run (``--on_error``)."""

    def __init__(self, arguments: CommandArguments, scorer: ReproScorer, rows: Sequence[Row], samples: int,
                 system_prompt: str | None, output: Path, errors: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from .records import ScoresFile

        self.arguments = arguments
        self.scorer = scorer
        self.tokenizer = scorer.objective.tokenizer
        self.rows = rows
        self.samples = samples
        self.system_prompt = system_prompt
        self.output = output
        self.errors = errors
        self.context = _context_length(scorer.objective.model)
        self.records: list[dict[str, Any]] = []
        self.skipped: list[tuple[int, str]] = []  # (row, why)
        self.stopped: str | None = None
        self.writable = True  # False once a write failed: nothing more is written
        columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[detail]}"))
        self.progress = Progress(*columns, console=errors)
        traces = len(rows) * (samples or 1)
        self.sampling = self.progress.add_task("sampling", total=traces, detail="") if samples else None
        self.task = self.progress.add_task("scoring", total=traces, detail="")
        try:
            output.mkdir(parents=True, exist_ok=True)
            for name in OUTPUT_FILES[1:]:  # the last run's plots and report would not match the new scores.jsonl
                (output / name).unlink(missing_ok=True)
            self.file = ScoresFile(output / OUTPUT_FILES[0])
        except OSError as error:
            raise ReproError("--output_dir", f"cannot write to {output}: {error}") from None

    def close(self) -> None:
        self.file.close()

    def status(self, interrupted: bool) -> dict[str, Any]:
        """What the report's settings line says about how the run ended."""
        status: dict[str, Any] = {}
        if self.skipped:
            status["skipped rows"] = ", ".join(str(index) for index, _ in self.skipped)
        if self.stopped is not None:
            status["stopped"] = self.stopped
        if interrupted:
            status["interrupted"] = f"after {len(self.records)} traces"
        return status

    def run(self) -> None:
        """Every row, batch by batch: its traces read or sampled, scored, and their records appended."""
        from .inputs import problem_numbers

        batch_size = self.arguments.device.batch_size
        numbers = problem_numbers(self.rows)
        if self.samples:
            import torch

            torch.manual_seed(self.arguments.generation.seed)
        with self.progress:
            for start in range(0, len(self.rows), batch_size):
                batch = list(enumerate(self.rows[start : start + batch_size], start=start))
                traces: list[Trace] = []
                try:
                    if self.samples:
                        self._sampled(batch, traces)
                    else:
                        for index, row in batch:
                            self._given(index, row, *numbers[index], traces)
                except _Stopped:  # the traces of the rows before the one that stops the run are still scored
                    self._score(traces)
                    raise
                self._score(traces)

    def _failed(self, index: int, error: Exception, traces: int = 1) -> None:
        """Row ``index`` cannot be scored (``traces`` of its traces lost): reported and skipped, or the run
        stopped with a ReproError naming the row (``--on_error stop``)."""
        if isinstance(error, ReproError):
            argument, message = flag_of(error.argument), error.message
            if f"row {index}" not in message:
                message = f"row {index}: {message}"
        else:
            argument, message = f"row {index}", f"{type(error).__name__}: {error}"
            logger.debug("row %d failed", index, exc_info=error)
        message = " ".join(message.split())
        self.progress.advance(self.task, traces)
        if self.arguments.data.on_error == "stop":
            self.stopped = f"{argument}: {message}"
            raise _Stopped(argument, message) from None
        self.skipped.append((index, f"{argument}: {message}"))
        self.progress.console.print(f"repro: warning: skipped {argument}: {message}", highlight=False, markup=False,
                                    soft_wrap=True)

    def _given(self, index: int, row: Row, problem: int, sample: int, traces: list[Trace]) -> None:
        """The trace of a row read with its completion, appended to ``traces`` unless the row fails."""
        from .generation import completion_ids, prompt_ids
        from .inputs import Trace, check_text

        try:
            for argument, text in (("prompt_column", row.prompt), ("completion_column", row.completion or ""),
                                   ("answer_column", row.answer)):
                check_text(argument, index, text)
            trace = Trace(problem, sample, row.prompt, prompt_ids(self.tokenizer, row.prompt, index),
                          completion_ids(self.tokenizer, row.completion or "", index), row.completion or "",
                          row.answer, truncated=row.truncated, id=index)
            traces.append(self._fit(trace, index))
        except ReproError as error:
            self._failed(index, error)

    def _sampled(self, batch: list[tuple[int, Row]], traces: list[Trace]) -> None:
        """Sampled traces of a batch of rows (``self.samples`` each) appended to ``traces``; rows that fail left
        out. A row that stops the run (``_Stopped``) does so after the rows before it are sampled."""
        from .generation import instruct, prompt_ids
        from .inputs import check_text

        kept: list[tuple[int, Row, Any, list[int]]] = []
        stopped: _Stopped | None = None
        for index, row in batch:
            prompt = instruct(row.prompt, self.system_prompt)
            try:
                check_text("prompt_column", index, prompt)
                check_text("answer_column", index, row.answer)
                kept.append((index, row, prompt, prompt_ids(self.tokenizer, prompt, index)))
            except ReproError as error:
                if self.sampling is not None:
                    self.progress.advance(self.sampling, self.samples)
                try:
                    self._failed(index, error, self.samples)
                except _Stopped as stop:
                    stopped = stop
                    break
        if kept:
            self._sample(kept, traces)
        if stopped is not None:
            raise stopped

    def _sample(self, kept: list[tuple[int, Row, Any, list[int]]], traces: list[Trace]) -> None:
        """The samples of the rows ``kept`` (index, row, prompt, prompt ids) appended to ``traces`` as they fit."""
        from .generation import generate, sampled_traces

        generation = self.arguments.generation
        before = self._completed(self.sampling)
        try:
            completions = generate(self.scorer.objective.model, self.tokenizer, [ids for *_, ids in kept],
                                   self.samples, max_new_tokens=generation.max_new_tokens,
                                   temperature=generation.temperature, top_p=generation.top_p, batch_size=len(kept),
                                   progress=self.progress, task=self.sampling)
        except Exception as error:  # noqa: BLE001 - a batch that cannot be sampled (out of memory): its rows fail
            self.progress.update(self.sampling, completed=before)  # type: ignore[arg-type]
            if len(kept) > 1:
                for one in kept:
                    self._sample([one], traces)
                return
            self.progress.advance(self.sampling, self.samples)  # type: ignore[arg-type]
            self._failed(kept[0][0], error, self.samples)
            return
        for trace in sampled_traces([index for index, *_ in kept], [row for _, row, *_ in kept],
                                    [prompt for *_, prompt, _ in kept], [ids for *_, ids in kept], completions,
                                    self.tokenizer):
            try:
                traces.append(self._fit(trace, trace.problem))
            except ReproError as error:
                self._failed(trace.problem, error)

    def _fit(self, trace: Trace, index: int) -> Trace:
        """The trace if it fits the model's context; else a ReproError (``--long_traces refuse``) or its
        completion cut to fit, with a warning (``truncate``)."""
        if self.context is None:
            return trace
        answer = len(self.scorer.objective.answer_ids(trace.answer, index).ids)
        length = len(trace.prompt_ids) + len(trace.completion_ids) + answer
        if length <= self.context:
            return trace
        room = self.context - len(trace.prompt_ids) - answer
        what = (f"row {index}: the trace is {length} tokens (prompt {len(trace.prompt_ids)}, completion "
                f"{len(trace.completion_ids)}, answer {answer}), more than the model's context of {self.context} "
                "tokens (max_position_embeddings)")
        if self.arguments.data.long_traces == "refuse":
            raise ReproError("--long_traces", f"{what}; --long_traces truncate scores the completion's first tokens "
                             "that fit")
        if room < 1:
            raise ReproError("--long_traces", f"{what}, and its prompt and answer alone fill it")
        self.progress.console.print(f"repro: warning: {what}: its completion is cut to its first {room} tokens "
                                    "(--long_traces truncate)", highlight=False, markup=False, soft_wrap=True)
        ids = trace.completion_ids[:room]
        return dataclasses.replace(trace, completion_ids=ids, completion=self.tokenizer.decode(ids), truncated=True)

    def _completed(self, task: TaskID | None) -> float:
        return next((t.completed for t in self.progress.tasks if t.id == task), 0.0)

    def _row(self, trace: Trace) -> int:
        """The input row of a trace: its problem when sampled, else its id."""
        return trace.problem if self.samples or trace.id is None else trace.id

    def _score(self, traces: list[Trace]) -> None:
        """Score ``traces`` together and append their records; when that fails, one by one, so that only the
        traces that fail alone are lost."""
        from .records import record_line, score_traces

        if not traces:
            return
        before = self._completed(self.task)
        try:
            records = score_traces(self.scorer, traces, cues=self.arguments.report.cues(), batch_size=len(traces),
                                   progress=self.progress, task=self.task)
            lines = [record_line(record) for record in records]
        except Exception as error:  # noqa: BLE001 - any failure is the row's, reported with its type
            self.progress.update(self.task, completed=before)
            if len(traces) > 1:
                for trace in traces:
                    self._score([trace])
                return
            self._failed(self._row(traces[0]), error)
            return
        for record, line in zip(records, lines, strict=True):
            try:
                self.file.append(line)
            except OSError as error:
                self.writable = False
                raise ReproError("--output_dir", f"cannot write to {self.file.path}: {error}; it holds the "
                                 f"{len(self.records)} traces scored before, each on a whole line (the plots and "
                                 "report are not written)") from None
            self.records.append(record)


def _context_length(model: Any) -> int | None:
    """The longest sequence the model's positions cover (its config's ``max_position_embeddings``), if it says."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _check_writable(output: Path) -> None:
    """A ReproError (``--output_dir``) unless ``output`` can be created and written: a file probed in it, then
    everything this made removed again (so a run that fails later leaves nothing behind)."""
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "exists and is not a directory" if existing == output else f"cannot be created: {existing} is a file"
        raise ReproError("--output_dir", f"{output} {where}")
    for name in OUTPUT_FILES:
        if (output / name).is_dir():
            raise ReproError("--output_dir", f"{output / name} is a directory, where repro score writes a file")
    created = [path for path in (output, *output.parents) if not path.exists()]
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as error:
        raise ReproError("--output_dir", f"cannot write to {output}: {error.strerror or error}") from None
    finally:
        for path in created:  # deepest first
            try:
                path.rmdir()
            except OSError:
                pass


def _write_outputs(records: Sequence[dict[str, Any]], output: Path, settings: dict[str, Any],
                   color_max: float) -> None:
    """The two plots and the report of ``records`` (what ``scores.jsonl`` holds) in ``output``."""
    from ..report import plot_j_curves, plot_rewards, write_html

    try:
        plot_j_curves(records, output / "j_curves.png")
        plot_rewards(records, output / "rewards.png")
        write_html(records, output / "report.html", images=[output / "j_curves.png", output / "rewards.png"],
                   settings=settings, color_max=color_max)
    except OSError as error:
        raise ReproError("--output_dir", f"cannot write to {output}: {error}; scores.jsonl holds the "
                         f"{len(records)} traces scored") from None


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
    except Exception as error:  # noqa: BLE001 - a failure no check foresaw: one line too, the traceback logged
        logger.debug("repro score failed", exc_info=error)
        message = " ".join(f"{type(error).__name__}: {error}".split())
        print(f"repro: error: {message}", file=sys.stderr)
        return 2
