"""What the report reads from a trace record (the objects of ``scores.jsonl``): its outcome, whether it was
truncated, the backtracking cue of each step, and the means over groups of traces (``Summary``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["OUTCOME_COLORS", "OUTCOME_LABELS", "Record", "Summary", "is_truncated", "step_cues", "summarize"]

Record = Mapping[str, Any]

#: Line colours of correct, incorrect and ungraded traces in the plots.
OUTCOME_COLORS = {True: "#1b7837", False: "#c2185b", None: "#7f7f7f"}
OUTCOME_LABELS = {True: "correct", False: "incorrect", None: "ungraded"}


@dataclass(frozen=True)
class Summary:
    """Means over one group of traces (``label``): correct, incorrect, ungraded or all."""

    label: str
    count: int
    graded: int
    correct: int
    truncated: int
    tokens: float
    paragraphs: float
    backtracks: float
    j_baseline: float
    j_end: float
    mean_reward: float

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded if self.graded else None


def summarize(records: Sequence[Record]) -> list[Summary]:
    """Group means: one ``Summary`` per outcome present (correct, incorrect, ungraded), then one over all traces."""
    groups: list[tuple[str, list[Record]]] = []
    for outcome in (True, False, None):
        members = [r for r in records if r["correct"] is outcome]
        if members and len(members) < len(records):
            groups.append((OUTCOME_LABELS[outcome], members))
    groups.append(("all", list(records)))
    summaries = []
    for label, members in groups:
        def mean(key: str, rows: list[Record] = members) -> float:
            values = [float(r[key]) for r in rows if r[key] is not None]
            return float(np.mean(values)) if values else math.nan

        summaries.append(
            Summary(
                label=label,
                count=len(members),
                graded=sum(r["correct"] is not None for r in members),
                correct=sum(r["correct"] is True for r in members),
                truncated=sum(is_truncated(r) for r in members),
                tokens=mean("tokens"),
                paragraphs=mean("num_paragraphs"),
                backtracks=mean("backtracks"),
                j_baseline=mean("j_baseline"),
                j_end=mean("j_end"),
                mean_reward=mean("mean_reward"),
            )
        )
    return summaries


def step_cues(record: Record) -> list[str | None]:
    """The backtracking cue of each step j >= 1: that of the paragraph that opens the step's span."""
    cue_at = {p["start"]: p["cue"] for p in record["paragraphs"]}
    return [cue_at.get(start) for start in record["cut_points"][:-1]]


def is_truncated(record: Record) -> bool:
    """Whether the trace's completion hit the token limit (records written before the field existed: no)."""
    return bool(record.get("truncated", False))

