"""What the report reads from a trace record (the objects of ``scores.jsonl``): its outcome, whether it was
truncated, the backtracking cue of each step, the change of J of each step and over the trace (what answers "where
did the reasoning help"), the value each step is shaded by, the steps that moved J most, and the means over groups
of traces (``Summary``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BASELINE_MAGNITUDE",
    "OUTCOME_COLORS",
    "OUTCOME_LABELS",
    "Change",
    "Record",
    "Summary",
    "is_truncated",
    "j_changes",
    "j_gain",
    "largest_changes",
    "step_cues",
    "step_shades",
    "summarize",
]

Record = Mapping[str, Any]

#: Line colours of correct, incorrect and ungraded traces in the plots.
OUTCOME_COLORS = {True: "#1b7837", False: "#c2185b", None: "#7f7f7f"}
OUTCOME_LABELS = {True: "correct", False: "incorrect", None: "ungraded"}

#: M_b = 1 - tanh(1), the magnitude of a step that leaves J at J_b (docs/method.md, "Scores and process rewards").
BASELINE_MAGNITUDE = 1.0 - math.tanh(1.0)


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
    j_gain: float  # the mean of J_end - J_b

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
                j_gain=float(np.mean([j_gain(r) for r in members])) if members else math.nan,
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



def j_gain(record: Record) -> float:
    """J_end - J_b: how much the whole thinking part raised J (negative: it lowered it)."""
    return float(record["j_end"]) - float(record["j_baseline"])


def j_changes(record: Record) -> list[float]:
    """ΔJ_j = J_j - J_{j-1} of each step j >= 1: how much the step's paragraphs raised J."""
    j = record["j"]
    return [float(after) - float(before) for before, after in zip(j, j[1:], strict=False)]


def step_shades(record: Record) -> list[float]:
    """The value each step j >= 1 is shaded by in the report, on the reward scale: its process reward r_j, except
    for the first step, M_1 - M_b (``BASELINE_MAGNITUDE``). r_1 = C_1 is the score's level, not a change: positive
    for any first paragraph since C_0 = 0. M_1 - M_b has the sign of ΔJ_1, so a first paragraph that lowers J is
    shaded as harmful."""
    rewards = [float(r) for r in record["reward"][1:]]
    if rewards:
        rewards[0] = float(record["magnitude"][1]) - BASELINE_MAGNITUDE
    return rewards


@dataclass(frozen=True)
class Change:
    """One step of one trace, for the ranking of the steps that moved J most."""

    trace: Any  # the record's id
    step: int  # j >= 1
    paragraphs: tuple[int, int]  # the first and last paragraph of the step, counted from 1
    change: float  # ΔJ_j
    reward: float  # r_j
    text: str  # the text of the step's first paragraph


def largest_changes(records: Sequence[Record], count: int) -> tuple[list[Change], list[Change]]:
    """The ``count`` steps of all traces that raised J most (largest ΔJ first) and the ``count`` that lowered it
    most (most negative first); steps that left J where it was are in neither."""
    steps: list[Change] = []
    for record in records:
        members: dict[int, list[int]] = {}
        for index, paragraph in enumerate(record["paragraphs"]):
            members.setdefault(paragraph["step"], []).append(index)
        for step, change in enumerate(j_changes(record), start=1):
            indices = members.get(step)
            if indices is None:
                continue
            steps.append(Change(record["id"], step, (indices[0] + 1, indices[-1] + 1), change,
                                float(record["reward"][step]), record["paragraphs"][indices[0]]["text"]))
    raised = sorted((s for s in steps if s.change > 0), key=lambda s: -s.change)[:count]
    lowered = sorted((s for s in steps if s.change < 0), key=lambda s: s.change)[:count]
    return raised, lowered
