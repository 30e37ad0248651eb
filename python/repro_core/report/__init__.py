"""Plots and the HTML report of ``repro score`` (see ``repro_core.analysis`` and docs/score.md).

Everything here reads the trace records that ``repro_core.analysis.score_traces`` returns (the objects of
``scores.jsonl``), so a report can be rebuilt from a saved ``scores.jsonl`` without the model.

The report answers "where did the reasoning help" with changes of J: J_end - J_b per trace and by outcome, ΔJ per
step, the steps that moved J most. Paragraphs are shaded on one fixed scale (``DEFAULT_COLOR_MAX``, or
``color_max``) so that the reports of two runs compare, by their step's process reward, the first step by M_1 - M_b
(its r_1 = C_1 is positive for any paragraph); traces whose completion hit the token limit (the record's
``truncated``) are marked in the page and drawn dashed in the J plot. Each file is written whole or not at all.

One concern per module: ``traces`` (what the report reads from a record: changes of J, shades, group means),
``colors`` (the fixed colour scale), ``text`` (numbers and escaped fields), ``files`` (the plots as PNG files),
``j_plot`` (``j_curves.png``), ``rewards_plot`` (``rewards.png``), ``trace_section`` (one trace in the page) and
``page`` (``report.html``). Importing this package imports only the standard library and NumPy; the plot functions
import matplotlib.
"""

from __future__ import annotations

from .colors import DEFAULT_COLOR_MAX, check_color_max, reward_color
from .j_plot import LABELLED_TRACES, MIN_BAND_TRACES, j_curves_figure, plot_j_curves
from .page import RANKED_STEPS, write_html
from .rewards_plot import plot_rewards
from .traces import (
    BASELINE_MAGNITUDE,
    OUTCOME_COLORS,
    OUTCOME_LABELS,
    Change,
    Summary,
    is_truncated,
    j_changes,
    j_gain,
    largest_changes,
    step_cues,
    step_shades,
    summarize,
)

__all__ = [
    "BASELINE_MAGNITUDE",
    "DEFAULT_COLOR_MAX",
    "LABELLED_TRACES",
    "MIN_BAND_TRACES",
    "OUTCOME_COLORS",
    "OUTCOME_LABELS",
    "RANKED_STEPS",
    "Change",
    "Summary",
    "check_color_max",
    "is_truncated",
    "j_changes",
    "j_curves_figure",
    "j_gain",
    "largest_changes",
    "plot_j_curves",
    "plot_rewards",
    "reward_color",
    "step_cues",
    "step_shades",
    "summarize",
    "write_html",
]
