"""The records of ``repro score``: one per trace, with J at every cut point, the step values (magnitude,
stability, composite score, process reward) and the paragraphs with their backtracking cues: the objects of
``scores.jsonl`` (docs/score.md; the quantities are defined in docs/method.md, "Scores and process rewards").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..behaviour import DEFAULT_CUES, paragraphs
from .inputs import Trace

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..pipeline import ReproScorer

__all__ = ["score_traces"]

def score_traces(
    scorer: ReproScorer,
    traces: Sequence[Trace],
    *,
    cues: Sequence[str] = DEFAULT_CUES,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Score every trace with ``scorer`` (build it with ``ReproConfig(k=...)`` as large as the paragraphs for J at
    every paragraph boundary) and return one record per trace: the objects of ``scores.jsonl`` (docs/score.md).
    """
    import numpy as np

    from ..rewards import boxed_accuracy, last_boxed

    tokenizer = scorer.objective.tokenizer
    task = progress.add_task("scoring", total=len(traces)) if progress is not None else None
    records: list[dict[str, Any]] = []
    for start in range(0, len(traces), batch_size):
        batch = traces[start : start + batch_size]
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
                "id": start + row,
                "problem": trace.problem,
                "sample": trace.sample,
                "prompt": trace.prompt,
                "answer": trace.answer,
                "completion": trace.completion,
                "predicted": last_boxed(trace.completion),
                "correct": None,  # graded below, in one call for all traces
                "tokens": len(ids),
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
