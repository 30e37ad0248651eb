"""One ``repro score`` run's scoring and its outputs: the loop that reads or samples the traces, scores them and
appends their records to ``scores.jsonl`` (``Scoring``), the output directory's check, and the plots and report.

Nothing finished is lost: the output directory is checked writable before the model loads (``check_writable``),
every trace's record is appended to ``scores.jsonl`` as soon as it is scored, a row that cannot be scored is
skipped or stops the run (``--on_error``), and the plots and the report (its settings line ``report_settings``) are
rebuilt from the records scored (``write_outputs``) whenever the run ends: done, stopped by an error, or interrupted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ReproError
from ..interrupts import Interrupt, held_back
from ..outputs import check_output_file
from .arguments import OUTPUT_FILES, CommandArguments, flag_of
from .generation import longest_token

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

    from ..pipeline import ReproScorer
    from .inputs import Row, Trace

__all__ = ["Scoring", "Stopped", "check_input_not_output", "check_writable", "report_settings", "write_outputs"]

logger = logging.getLogger(__name__)


class Stopped(ReproError):
    """The error of a row that ends the run (``--on_error stop``)."""


class Scoring:
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
        # The most characters a trace can have and still fit the context: longer ones are refused or cut by their
        # length in characters, before the tokenizer sees all of them (a 50 MB completion took minutes and GBs).
        self.max_chars = None if self.context is None else self.context * longest_token(self.tokenizer)
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

    def skipped_rows(self) -> str:
        """The rows skipped (``--on_error skip``), as "2, 5"."""
        return ", ".join(str(index) for index, _ in self.skipped)

    def warn(self, message: str) -> None:
        """One ``repro: warning: ...`` line on stderr, printed as it is (no rich markup in row text)."""
        self.errors.print(f"repro: warning: {message}", highlight=False, markup=False, soft_wrap=True)

    def status(self, interrupted: bool) -> dict[str, Any]:
        """What the report's settings line says about how the run ended."""
        status: dict[str, Any] = {}
        if self.skipped:
            status["skipped rows"] = self.skipped_rows()
        if self.stopped is not None:
            status["stopped"] = self.stopped
        if interrupted:
            status["interrupted"] = f"after {len(self.records)} traces"
        return status

    def run(self, interrupt: Interrupt) -> None:
        """Every row, batch by batch: its traces read or sampled, scored, and their records appended; ``interrupt``
        checked before each batch."""
        from .inputs import problem_numbers

        batch_size = self.arguments.device.batch_size
        numbers = problem_numbers(self.rows)
        if self.samples:
            import torch

            torch.manual_seed(self.arguments.generation.seed)
        with self.progress:
            for start in range(0, len(self.rows), batch_size):
                interrupt.check()
                batch = list(enumerate(self.rows[start : start + batch_size], start=start))
                traces: list[Trace] = []
                try:
                    if self.samples:
                        self._sampled(batch, traces)
                    else:
                        for index, row in batch:
                            self._given(index, row, *numbers[index], traces)
                except Stopped:  # the traces of the rows before the one that stops the run are still scored
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
            raise Stopped(argument, message) from None
        self.skipped.append((index, f"{argument}: {message}"))
        self.warn(f"skipped {argument}: {message}")

    def _given(self, index: int, row: Row, problem: int, sample: int, traces: list[Trace]) -> None:
        """The trace of a row read with its completion, appended to ``traces`` unless the row fails."""
        from .generation import completion_ids, prompt_ids
        from .inputs import Trace, check_text

        try:
            for argument, text in (("prompt_column", row.prompt), ("completion_column", row.completion or ""),
                                   ("answer_column", row.answer)):
                check_text(argument, index, text)
            completion = self._within_reach(index, row.prompt, row.completion or "")
            trace = Trace(problem, sample, row.prompt, prompt_ids(self.tokenizer, row.prompt, index),
                          completion_ids(self.tokenizer, completion, index), completion, row.answer,
                          truncated=row.truncated, id=index)
            traces.append(self._fit(trace, index))
        except ReproError as error:
            self._failed(index, error)

    def _sampled(self, batch: list[tuple[int, Row]], traces: list[Trace]) -> None:
        """Sampled traces of a batch of rows (``self.samples`` each) appended to ``traces``; rows that fail left
        out. A row that stops the run (``Stopped``) does so after the rows before it are sampled."""
        from .generation import instruct, prompt_ids
        from .inputs import check_text

        kept: list[tuple[int, Row, Any, list[int]]] = []
        stopped: Stopped | None = None
        for index, row in batch:
            prompt = instruct(row.prompt, self.system_prompt)
            try:
                check_text("prompt_column", index, prompt)
                check_text("answer_column", index, row.answer)
                self._within_reach(index, prompt, "")
                kept.append((index, row, prompt, prompt_ids(self.tokenizer, prompt, index)))
            except ReproError as error:
                if self.sampling is not None:
                    self.progress.advance(self.sampling, self.samples)
                try:
                    self._failed(index, error, self.samples)
                except Stopped as stop:
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

    def _within_reach(self, index: int, prompt: str | list[dict[str, Any]], completion: str) -> str:
        """The part of ``completion`` worth tokenizing, judged by characters alone: all of it when the trace may
        fit the context; when it cannot (more characters than ``max_chars``), a ReproError (``--long_traces
        refuse``, or a prompt that alone cannot fit) or, for ``truncate``, a prefix twice as long as could fit,
        which ``_fit`` then cuts to the tokens that do."""
        if self.max_chars is None or self.context is None:
            return completion
        prompt_chars = len(prompt) if isinstance(prompt, str) else sum(len(str(m.get("content", ""))) for m in prompt)
        if prompt_chars + len(completion) <= self.max_chars:
            return completion
        what = (f"row {index}: the trace is {prompt_chars + len(completion):,} characters (prompt {prompt_chars:,}, "
                f"completion {len(completion):,}), more than fit the model's context of {self.context} tokens "
                f"(max_position_embeddings) at {self.max_chars // self.context} characters per token, its "
                "tokenizer's longest")
        if prompt_chars > self.max_chars:
            raise ReproError("--long_traces", f"{what}; the prompt alone cannot fit")
        if self.arguments.data.long_traces == "refuse":
            raise ReproError("--long_traces", f"{what}; --long_traces truncate scores the completion's first tokens "
                             "that fit")
        return completion[: 2 * self.max_chars]

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
        self.warn(f"{what}: its completion is cut to its first {room} tokens (--long_traces truncate)")
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
        with held_back():  # an interrupt between a line and its record would make the file and the count disagree
            for record, line in zip(records, lines, strict=True):
                try:
                    self.file.append(line)
                except OSError as error:
                    self.writable = False
                    raise ReproError("--output_dir", f"cannot write to {self.file.path}: {error}; it holds the "
                                     f"{len(self.records)} traces scored before, each on a whole line (the plots "
                                     "and report are not written)") from None
                self.records.append(record)


def _context_length(model: Any) -> int | None:
    """The longest sequence the model's positions cover (its config's ``max_position_embeddings``), if it says."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_writable(output: Path) -> None:
    """A ReproError (``--output_dir``) unless ``output`` can be created and written: a file probed in it, then
    everything this made removed again (so a run that fails later leaves nothing behind)."""
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "exists and is not a directory" if existing == output else f"cannot be created: {existing} is a file"
        raise ReproError("--output_dir", f"{output} {where}")
    for name in OUTPUT_FILES:  # never written through a link (it would truncate a file elsewhere), nor a FIFO
        check_output_file(output / name, "--output_dir")
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


def check_input_not_output(dataset: str, output: Path) -> None:
    """A ReproError (``--output_dir``) when the input file ``dataset`` is one of the files this run writes in
    ``output`` (``repro score DIR/scores.jsonl -o DIR``): it would be emptied when scoring starts, and lost if
    the run did not finish."""
    if not os.path.isfile(dataset):
        return
    for name in OUTPUT_FILES:
        try:
            same = os.path.samefile(dataset, output / name)
        except OSError:  # not there (yet)
            continue
        if same:
            raise ReproError("--output_dir", f"the input {dataset} is {output / name}, which this run writes: it "
                             "would be emptied before its traces are scored; choose another --output_dir (or score a "
                             "copy of the file)")


def report_settings(arguments: CommandArguments, samples: int, traces: int) -> dict[str, Any]:
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


def write_outputs(records: Sequence[dict[str, Any]], output: Path, settings: dict[str, Any],
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
