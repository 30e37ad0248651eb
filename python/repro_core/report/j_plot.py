"""``j_curves.png``: J against token position per trace, and mean J by outcome."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .traces import OUTCOME_COLORS, OUTCOME_LABELS, Record, is_truncated

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["LABELLED_TRACES", "j_curves_figure", "plot_j_curves"]

# Points of the relative-position grid on which the mean J curves are averaged.
_GRID_POINTS = 41

#: How many traces (the first ones, in input order) get their ``#id`` at the end of their line in the per-trace J
#: plot; more labels would hide the lines.
LABELLED_TRACES = 20


def _relative_curve(record: Record, grid: np.ndarray) -> np.ndarray | None:
    """J interpolated on ``grid`` (fractions of the thinking part); None for an empty completion."""
    positions = np.asarray(record["cut_points"], dtype=np.float64)
    if len(positions) < 2 or positions[-1] <= 0:
        return None
    return np.interp(grid, positions / positions[-1], np.asarray(record["j"], dtype=np.float64))


def j_curves_figure(records: Sequence[Record]) -> Figure:
    """The figure of ``j_curves.png``: J against token position per trace (dashed: truncated; the first
    ``LABELLED_TRACES`` labelled ``#id`` at their last point, as in the HTML report), and mean J against relative
    position by outcome."""
    from matplotlib.figure import Figure  # pyplot's global state is not needed to save a file
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    traces, means = figure.subplots(1, 2)
    for record in records:
        traces.plot(record["cut_points"], record["j"], color=OUTCOME_COLORS[record["correct"]], linewidth=0.8,
                    alpha=0.6, marker=".", markersize=3, linestyle="--" if is_truncated(record) else "-")
    labelled = list(records[:LABELLED_TRACES])
    which = f"of the first {len(labelled)} of {len(records)}" if len(records) > len(labelled) else "at the line's end"
    traces.set(title=f"J at every cut point, per trace (#id {which})",
               xlabel="token position in the completion", ylabel="J (mean log-prob of the answer)")
    traces.margins(x=0.1)  # room for the labels right of the longest traces
    handles = [Line2D([], [], color=OUTCOME_COLORS[o], label=OUTCOME_LABELS[o])
               for o in (True, False, None) if any(r["correct"] is o for r in records)]
    if any(is_truncated(r) for r in records):
        handles.append(Line2D([], [], color="black", linestyle="--", label="truncated (hit the token limit)"))
    if handles:
        traces.legend(handles=handles, loc="best", fontsize="small")
    grid = np.linspace(0.0, 1.0, _GRID_POINTS)
    for outcome in (True, False, None):
        members = [(r, c) for r in records if r["correct"] is outcome if (c := _relative_curve(r, grid)) is not None]
        if not members:
            continue
        stack = np.stack([curve for _, curve in members])
        mean = stack.mean(axis=0)
        color = OUTCOME_COLORS[outcome]
        cut = sum(is_truncated(r) for r, _ in members)
        label = f"{OUTCOME_LABELS[outcome]} (n={len(members)}" + (f", {cut} truncated)" if cut else ")")
        means.plot(grid, mean, color=color, linewidth=2, label=label)
        if len(members) > 1:
            error = stack.std(axis=0, ddof=1) / math.sqrt(len(members))
            means.fill_between(grid, mean - error, mean + error, color=color, alpha=0.2, linewidth=0)
    means.set(title="mean J by outcome (band: standard error)", xlabel="relative position in the thinking part",
              ylabel="J")
    if means.has_data():
        means.legend(loc="lower right")
    for axes in (traces, means):
        axes.grid(alpha=0.3)
    _label_line_ends(figure, traces, labelled)
    return figure


def _label_line_ends(figure: Figure, axes: Axes, records: Sequence[Record]) -> None:
    """``#id`` right of each trace's last point, moved up (with a leader line) where it would cover another label."""
    ends = [(f"#{r['id']}", r["cut_points"][-1], r["j"][-1], OUTCOME_COLORS[r["correct"]])
            for r in records if r["cut_points"]]
    if not ends:
        return
    figure.draw_without_rendering()  # the final layout, so that data map to where they will be drawn
    size = 7.0
    per_point = figure.dpi / 72  # display pixels per typographic point
    height = 1.3 * size * per_point
    placed: list[tuple[float, float, float]] = []  # x, y, width of each label, display pixels
    for text, x, y, color in sorted(ends, key=lambda end: (end[2], end[1])):
        anchor_x, anchor_y = axes.transData.transform((x, y))
        left, width = anchor_x + 3 * per_point, 0.65 * size * per_point * len(text)
        top = anchor_y
        # 0.999: a label moved to exactly one height above another must not clash with it again by rounding.
        while clash := [b for a, b, w in placed if abs(top - b) < 0.999 * height and left < a + w and a < left + width]:
            top = max(clash) + height
        placed.append((left, top, width))
        axes.annotate(text, (x, y), xytext=(3, (top - anchor_y) / per_point), textcoords="offset points",
                      fontsize=size, color=color, va="center", annotation_clip=False, in_layout=False, parse_math=False,
                      arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.5, "alpha": 0.6,
                                  "shrinkA": 0, "shrinkB": 0} if top != anchor_y else None)


def plot_j_curves(records: Sequence[Record], path: Path) -> None:
    """``j_curves.png``: ``j_curves_figure`` saved to ``path``."""
    j_curves_figure(records).savefig(path, dpi=110)
