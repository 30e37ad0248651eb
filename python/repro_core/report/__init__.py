"""Plots and the HTML report of ``repro score`` (see ``repro_core.analysis`` and docs/score.md).

Everything here reads the trace records that ``repro_core.analysis.score_traces`` returns (the objects of
``scores.jsonl``), so a report can be rebuilt from a saved ``scores.jsonl`` without the model.

Rewards are coloured on one fixed scale (``DEFAULT_COLOR_MAX``, or ``color_max``) so that the reports of two runs
compare; traces whose completion hit the token limit (the record's ``truncated``) are marked in the page and drawn
dashed in the J plot, since their J curves end mid-sentence.

One concern per module: ``traces`` (what the report reads from a record, the group means), ``colors`` (the fixed
colour scale), ``j_plot`` (``j_curves.png``), ``rewards_plot`` (``rewards.png``) and ``page`` (``report.html``).
Importing this package imports only the standard library and NumPy; the plot functions import matplotlib.
"""

from __future__ import annotations

from .colors import DEFAULT_COLOR_MAX, check_color_max, reward_color
from .j_plot import LABELLED_TRACES, j_curves_figure, plot_j_curves
from .page import write_html
from .rewards_plot import plot_rewards
from .traces import OUTCOME_COLORS, OUTCOME_LABELS, Summary, is_truncated, step_cues, summarize

__all__ = [
    "DEFAULT_COLOR_MAX",
    "LABELLED_TRACES",
    "OUTCOME_COLORS",
    "OUTCOME_LABELS",
    "Summary",
    "check_color_max",
    "is_truncated",
    "j_curves_figure",
    "plot_j_curves",
    "plot_rewards",
    "reward_color",
    "step_cues",
    "summarize",
    "write_html",
]
