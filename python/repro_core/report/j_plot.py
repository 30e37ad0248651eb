"""``j_curves.png``: J along each trace against the fraction of its thinking part, and mean J by outcome."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .files import save_figure
from .traces import OUTCOME_COLORS, OUTCOME_LABELS, Record, is_truncated

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["LABELLED_TRACES", "MIN_BAND_TRACES", "j_curves_figure", "plot_j_curves"]

# Points of the relative-position grid on which the mean J curves are averaged.
_GRID_POINTS = 41

#: How many traces (the first ones, in input order) get their ``#id`` at the end of their line in the per-trace J
#: plot; more labels would hide the lines.
LABELLED_TRACES = 20

#: The fewest traces of one outcome whose mean J gets a standard-error band: from fewer, the band says nothing.
MIN_BAND_TRACES = 5

# The labels' font size, in points, and their line height in font sizes.
_LABEL_SIZE = 7.0
_LABEL_LINE = 1.3


def _relative_positions(record: Record) -> np.ndarray | None:
    """The cut points as fractions of the thinking part (0 to 1); None for an empty completion."""
    positions = np.asarray(record["cut_points"], dtype=np.float64)
    if len(positions) < 2 or positions[-1] <= 0:
        return None
    return positions / positions[-1]


def j_curves_figure(records: Sequence[Record]) -> Figure:
    """The figure of ``j_curves.png``: J of each trace against the fraction of its thinking part (so that one long
    trace does not squash the others; dashed: truncated; the first ``LABELLED_TRACES`` labelled ``#id`` right of
    their end, as in the HTML report), and mean J by outcome on the same axis, with a standard-error band where an
    outcome has at least ``MIN_BAND_TRACES`` traces."""
    from matplotlib.figure import Figure  # pyplot's global state is not needed to save a file
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    traces, means = figure.subplots(1, 2)
    drawn: list[Record] = []
    for record in records:
        fractions = _relative_positions(record)
        if fractions is None:
            continue
        drawn.append(record)
        traces.plot(fractions, record["j"], color=OUTCOME_COLORS[record["correct"]], linewidth=0.8, alpha=0.6,
                    marker=".", markersize=3, linestyle="--" if is_truncated(record) else "-")
    labelled = drawn[:LABELLED_TRACES]
    which = f": the first {len(labelled)} of {len(drawn)}" if len(drawn) > len(labelled) else ""
    traces.set(title=f"J along each trace (#id at its end{which})", xlabel="fraction of the thinking part",
               ylabel="J (mean log-prob of the answer)", xlim=(0.0, 1.14))  # room for the labels right of 1
    handles = [Line2D([], [], color=OUTCOME_COLORS[o], label=OUTCOME_LABELS[o])
               for o in (True, False, None) if any(r["correct"] is o for r in records)]
    if any(is_truncated(r) for r in records):
        handles.append(Line2D([], [], color="black", linestyle="--", label="truncated (hit the token limit)"))
    if handles:
        traces.legend(handles=handles, loc="best", fontsize="small")
    _draw_means(means, drawn)
    for axes in (traces, means):
        axes.grid(alpha=0.3)
    _label_line_ends(figure, traces, labelled)
    return figure


def _draw_means(axes: Axes, records: Sequence[Record]) -> None:
    """Mean J of each outcome on a grid of fractions of the thinking part; its legend entry says n and whether it
    has a band."""
    grid = np.linspace(0.0, 1.0, _GRID_POINTS)
    for outcome in (True, False, None):
        curves = [(fractions, r) for r in records
                  if r["correct"] is outcome and (fractions := _relative_positions(r)) is not None]
        if not curves:
            continue
        members = [r for _, r in curves]
        stack = np.stack([np.interp(grid, fractions, np.asarray(r["j"], dtype=np.float64)) for fractions, r in curves])
        mean = stack.mean(axis=0)
        color = OUTCOME_COLORS[outcome]
        notes = [f"n={len(members)}"]
        if cut := sum(is_truncated(r) for r in members):
            notes.append(f"{cut} truncated")
        if len(members) >= MIN_BAND_TRACES:
            error = stack.std(axis=0, ddof=1) / math.sqrt(len(members))
            axes.fill_between(grid, mean - error, mean + error, color=color, alpha=0.2, linewidth=0)
        else:
            notes.append("no band")
        axes.plot(grid, mean, color=color, linewidth=2, label=f"{OUTCOME_LABELS[outcome]} ({', '.join(notes)})")
    axes.set(title=f"mean J by outcome (band: ± standard error, for n ≥ {MIN_BAND_TRACES})",
             xlabel="fraction of the thinking part", ylabel="J", xlim=(0.0, 1.0))
    if axes.has_data():
        axes.legend(loc="lower right")


def _label_line_ends(figure: Figure, axes: Axes, records: Sequence[Record]) -> None:
    """``#id`` in a column right of the traces' ends (x = 1), each as near its line's end as the others allow: where
    labels would cover each other they are spread apart, with a leader line to their end."""
    if not records:
        return
    figure.draw_without_rendering()  # the final layout, so that data map to where they will be drawn
    per_point = figure.dpi / 72  # display pixels per typographic point
    height = _LABEL_LINE * _LABEL_SIZE * per_point
    ends = sorted(((float(r["j"][-1]), r) for r in records), key=lambda end: end[0])
    anchors = [float(axes.transData.transform((1.0, j))[1]) for j, _ in ends]
    bottom, top = axes.bbox.y0 + height / 2, axes.bbox.y1 - height / 2
    places = _spread(anchors, height, bottom, top)
    for (j, record), anchor, place in zip(ends, anchors, places, strict=True):
        color = OUTCOME_COLORS[record["correct"]]
        moved = abs(place - anchor) > 0.5
        axes.annotate(f"#{record['id']}", (1.0, j), xytext=(3, (place - anchor) / per_point),
                      textcoords="offset points", fontsize=_LABEL_SIZE, color=color, va="center",
                      annotation_clip=False, in_layout=False, parse_math=False,
                      arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.5, "alpha": 0.6,
                                  "shrinkA": 0, "shrinkB": 0} if moved else None)


def _spread(anchors: Sequence[float], height: float, bottom: float, top: float) -> list[float]:
    """Heights for labels wanted at the ascending ``anchors`` that are at least ``height`` apart, each as near its
    anchor as that allows, and within ``bottom`` .. ``top`` where they fit in it (else from ``bottom`` up)."""
    # 1.001: labels exactly one height apart must not touch again by rounding.
    step = 1.001 * height
    places: list[float] = []
    for anchor in anchors:  # upwards: each label at its anchor, or just above the one below it
        places.append(max(anchor, bottom, places[-1] + step if places else -math.inf))
    ceiling = top
    for index in range(len(places) - 1, -1, -1):  # downwards: none above the top, each below the one above it
        places[index] = min(places[index], ceiling)
        ceiling = places[index] - step
    if places and places[0] < bottom:  # too many to fit: a column from the bottom up, overflowing at the top
        places = [bottom + index * step for index in range(len(places))]
    return places


def plot_j_curves(records: Sequence[Record], path: Path) -> None:
    """``j_curves.png``: ``j_curves_figure`` written to ``path`` whole or not at all (``files.save_figure``)."""
    save_figure(j_curves_figure(records), path)
