"""The records of ``repro score``: one per trace, with J at every cut point, the step values (magnitude,
stability, composite score, process reward) and the paragraphs with their backtracking cues: the objects of
``scores.jsonl`` (docs/score.md; the quantities are defined in docs/method.md, "Scores and process rewards"),
and ``ScoresFile``, which appends them to that file one whole line at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..behaviour import DEFAULT_CUES, paragraphs
from .inputs import Trace

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ..pipeline import ReproScorer

__all__ = ["ScoresFile", "record_line", "score_traces"]


def score_traces(
    scorer: ReproScorer,
    traces: Sequence[Trace],
    *,
    cues: Sequence[str] = DEFAULT_CUES,
    batch_size: int = 8,
    progress: Progress | None = None,
    task: TaskID | None = None,
) -> list[dict[str, Any]]:
    """Score every trace with ``scorer`` (build it with ``ReproConfig(k=...)`` as large as the paragraphs for J at
    every paragraph boundary) and return one record per trace: the objects of ``scores.jsonl`` (docs/score.md).

    ``progress`` gets a "scoring" task (or advances ``task``) per batch of ``batch_size`` traces; its ``detail``
    field counts the model's forward passes, which keeps moving while one long trace is scored.
    """
    import numpy as np

    from ..rewards import boxed_accuracy, last_boxed

    tokenizer = scorer.objective.tokenizer
    if progress is not None and task is None:
        task = progress.add_task("scoring", total=len(traces), detail="")
    records: list[dict[str, Any]] = []
    for start in range(0, len(traces), batch_size):
        batch = traces[start : start + batch_size]
        with _passes_shown(scorer, progress, task):
            evaluation, steps = scorer.evaluate([t.prompt_ids for t in batch], [t.completion_ids for t in batch],
                                                [t.answer for t in batch])
        cuts = evaluation.cuts
        batch_paragraphs = paragraphs(scorer, evaluation.token_ids, evaluation.mask, cues)
        for row, trace in enumerate(batch):
            points = slice(int(cuts.offsets[row]), int(cuts.offsets[row + 1]))
            positions = cuts.positions[points].tolist()
            ids = trace.completion_ids
            end = int(cuts.ends[row])
            row_paragraphs = [{
                "start": first,
                "end": last,
                "text": text,
                "cue": cue,
                # The step whose span [p_{j-1}, p_j) holds the paragraph: j = its index when every break is cut.
                "step": int(np.searchsorted(positions, first, side="right")),
            } for first, last, text, cue in batch_paragraphs[row]]
            j = evaluation.j[points].tolist()
            rewards = steps.reward[points].tolist()
            records.append({
                "id": start + row if trace.id is None else trace.id,
                "problem": trace.problem,
                "sample": trace.sample,
                "prompt": trace.prompt,
                "answer": trace.answer,
                "completion": trace.completion,
                "predicted": last_boxed(trace.completion),
                "correct": None,  # graded below, in one call for all traces
                "tokens": len(ids),
                "truncated": trace.truncated,
                "thinking_tokens": end,
                "num_paragraphs": len(row_paragraphs),
                "backtracks": sum(p["cue"] is not None for p in row_paragraphs),
                "j_baseline": j[0],
                "j_end": j[-1],
                "mean_reward": float(np.mean(rewards[1:])) if len(rewards) > 1 else None,
                "cut_points": positions,
                "j": j,
                "magnitude": steps.magnitude[points].tolist(),
                "stability": steps.stability[points].tolist(),
                "score": steps.score[points].tolist(),
                "reward": rewards,
                "paragraphs": row_paragraphs,
                "tail": tokenizer.decode(ids[end:]),
            })
        if progress is not None and task is not None:
            progress.advance(task, len(batch))
    graded = boxed_accuracy([t.completion for t in traces], [t.answer for t in traces])
    for record, grade in zip(records, graded, strict=True):
        record["correct"] = None if grade is None else grade == 1.0
    return records


@contextmanager
def _passes_shown(scorer: ReproScorer, progress: Progress | None, task: TaskID | None) -> Iterator[None]:
    """While scoring: each forward pass of the model's decoder counted in ``task``'s ``detail`` field."""
    if progress is None or task is None:
        yield
        return
    model = scorer.objective.model
    decoder = getattr(model, "base_model", model)

    def count(module: Any, args: Any) -> None:
        passes = next(t for t in progress.tasks if t.id == task).fields.get("passes", 0) + 1
        progress.update(task, passes=passes, detail=f"{passes} model passes")

    handle = decoder.register_forward_pre_hook(count)
    try:
        yield
    finally:
        handle.remove()


def record_line(record: dict[str, Any]) -> bytes:
    """A record as one line of ``scores.jsonl``: JSON (non-ASCII kept as UTF-8), then "\\n"."""
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


class ScoresFile:
    """``scores.jsonl`` written as records come: each line reaches the file in the same call (no buffer to lose
    on an interrupt), and a line that cannot be written whole (a full disk) is cut off again, so the file only
    ever holds complete lines. Opening it empties it; a symlink or a special file at ``path`` is refused
    (``outputs.open_output``, a ReproError naming ``--output_dir``), never written through."""

    def __init__(self, path: Path) -> None:
        from ..outputs import open_output

        self.path = path
        self.lines = 0
        self._size = 0
        self._fd = open_output(path, "--output_dir")

    def append(self, line: bytes) -> None:
        """Append one ``record_line``; on OSError the file is left as it was and the error raised."""
        try:
            _write_all(self._fd, line)
        except OSError:
            os.ftruncate(self._fd, self._size)
            raise
        self._size += len(line)
        self.lines += 1

    def close(self) -> None:
        os.close(self._fd)


def _write_all(fd: int, data: bytes) -> None:
    """``data`` to ``fd``, however many ``os.write`` calls it takes (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
