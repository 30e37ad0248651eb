"""Plots and the HTML report of ``repro score`` (see ``repro_core.analysis`` and docs/score.md).

Everything here reads the trace records that ``repro_core.analysis.score_traces`` returns (the objects of
``scores.jsonl``), so a report can be rebuilt from a saved ``scores.jsonl`` without the model.

Rewards are coloured on one fixed scale (``DEFAULT_COLOR_MAX``, or ``color_max``) so that the reports of two runs
compare; traces whose completion hit the token limit (the record's ``truncated``) are marked in the page and drawn
dashed in the J plot, since their J curves end mid-sentence.

Importing this module imports only the standard library and NumPy; the plot functions import matplotlib.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ReproError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_COLOR_MAX",
    "LABELLED_TRACES",
    "Summary",
    "check_color_max",
    "is_truncated",
    "j_curves_figure",
    "plot_j_curves",
    "plot_rewards",
    "reward_color",
    "summarize",
    "write_html",
]

Record = Mapping[str, Any]

#: Line colours of correct, incorrect and ungraded traces in the plots.
OUTCOME_COLORS = {True: "#1b7837", False: "#c2185b", None: "#7f7f7f"}
OUTCOME_LABELS = {True: "correct", False: "incorrect", None: "ungraded"}
# The two ends of the diverging reward colours (ColorBrewer RdBu, mid-saturation so black text stays readable).
_NEGATIVE_RGB = (214, 96, 77)
_POSITIVE_RGB = (67, 147, 195)
# Points of the relative-position grid on which the mean J curves are averaged.
_GRID_POINTS = 41

#: The |r| that gets the full colour in the HTML report (``color_max`` of ``write_html``), the same in every report
#: so that two runs compare. r_j = C_j - C_{j-1} with C_j in [0, 1] (docs/method.md, "Scores and process rewards"):
#: the rewards of paragraphs after the first mostly lie within +-0.25, and r_1 = C_1, at least 0.24 whenever the
#: first paragraph does not lower J, reaches the full colour.
DEFAULT_COLOR_MAX = 0.25

#: How many traces (the first ones, in input order) get their ``#id`` at the end of their line in the per-trace J
#: plot; more labels would hide the lines.
LABELLED_TRACES = 20


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


def check_color_max(color_max: float) -> float:
    """``color_max`` as a float: a finite number > 0, else ``ReproError("color_max", ...)``."""
    if isinstance(color_max, bool) or not isinstance(color_max, numbers.Real) or not math.isfinite(color_max) \
            or color_max <= 0:
        raise ReproError("color_max", f"expected a finite number > 0 (the |r| of the full colour), got {color_max!r}")
    return float(color_max)


def reward_color(reward: float, scale: float) -> str:
    """A diverging colour for a process reward: white at 0 (and NaN), blue above, red below, full at |reward| >=
    scale."""
    amount = min(abs(reward) / scale, 1.0) if scale > 0 and not math.isnan(reward) else 0.0
    end = _POSITIVE_RGB if reward > 0 else _NEGATIVE_RGB
    red, green, blue = (round(255 + (channel - 255) * amount) for channel in end)
    return f"#{red:02x}{green:02x}{blue:02x}"


# ------------------------------------------------------------------------------------------------ plots


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


def plot_rewards(records: Sequence[Record], path: Path) -> None:
    """``rewards.png``: process reward per paragraph index, and backtracking paragraphs against the others."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    points, boxes = figure.subplots(1, 2, width_ratios=(3, 1))
    rng = np.random.default_rng(0)  # fixed jitter: the same scores give the same picture
    by_index: dict[int, list[float]] = {}
    backtracking: list[float] = []
    others: list[float] = []
    for record in records:
        rewards = record["reward"][1:]
        if not rewards:
            continue
        index = np.arange(1, len(rewards) + 1)
        cues = step_cues(record)
        x = index + rng.uniform(-0.15, 0.15, size=len(index))
        flagged = np.array([cue is not None for cue in cues])
        color = OUTCOME_COLORS[record["correct"]]
        points.scatter(x[~flagged], np.asarray(rewards)[~flagged], s=14, color=color, alpha=0.6, marker="o")
        points.scatter(x[flagged], np.asarray(rewards)[flagged], s=40, color=color, alpha=0.9, marker="x")
        for i, reward, cue in zip(index, rewards, cues, strict=True):
            by_index.setdefault(int(i), []).append(reward)
            if i > 1:  # r_1 = C_1 is a score, not a change: it would swamp the comparison (see DEFAULT_COLOR_MAX)
                (backtracking if cue is not None else others).append(reward)
    if by_index:
        xs = sorted(by_index)
        points.plot(xs, [np.mean(by_index[i]) for i in xs], color="black", linewidth=1.2)
    points.axhline(0.0, color="black", linewidth=0.6, alpha=0.5)
    points.set(title="process reward r_j of each paragraph", xlabel="paragraph (step) index j",
               ylabel="process reward r_j")
    handles = [Line2D([], [], color=OUTCOME_COLORS[o], marker="o", linestyle="", label=OUTCOME_LABELS[o])
               for o in (True, False, None) if any(r["correct"] is o for r in records)]
    handles += [Line2D([], [], color="black", marker="x", linestyle="", label="opens with a backtracking cue"),
                Line2D([], [], color="black", label="mean over traces")]
    points.legend(handles=handles, loc="upper right", fontsize="small")
    groups = [(f"backtracking\n(n={len(backtracking)})", backtracking), (f"other\n(n={len(others)})", others)]
    shown = [(label, values) for label, values in groups if values]
    if shown:
        boxes.boxplot([values for _, values in shown], tick_labels=[label for label, _ in shown])
    boxes.axhline(0.0, color="black", linewidth=0.6, alpha=0.5)
    boxes.set(title="r_j for j ≥ 2, by kind", ylabel="process reward r_j")
    points.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axes in (points, boxes):
        axes.grid(alpha=0.3)
    figure.savefig(path, dpi=110)


# ------------------------------------------------------------------------------------------------ HTML
# Every value that comes from a record or the settings goes through html.escape (quotes too), in text and in
# attributes alike: a trace is arbitrary model output or user input.

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #555; }
table.summary { border-collapse: collapse; margin: 1em 0; }
table.summary th, table.summary td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: right; }
table.summary th:first-child, table.summary td:first-child { text-align: left; }
img.plot { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.legend { position: sticky; top: 0; background: #fff; padding: 0.5em 0; border-bottom: 1px solid #ddd; z-index: 1; }
.bar { display: inline-block; width: 12em; height: 0.9em; vertical-align: middle; border: 1px solid #aaa;
       background: linear-gradient(to right, NEGATIVE, #ffffff, POSITIVE); }
section.trace { border-top: 2px solid #ccc; margin-top: 1.5em; padding-top: 0.5em; }
section.trace h3 { margin: 0.2em 0; }
.stats { color: #444; font-size: 0.9em; }
.ok { color: #1b7837; } .bad { color: #c2185b; } .na { color: #777; }
.badge { background: #a84300; color: #fff; border-radius: 3px; padding: 0.05em 0.45em; font-size: 0.75em;
         font-weight: 600; vertical-align: middle; }
.text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.9em; line-height: 1.5;
        border: 1px solid #eee; padding: 0.6em; }
.para { border-radius: 3px; }
.para:hover { outline: 2px solid #333; }
.para.bt { border-left: 4px solid #222; padding-left: 2px; }
.tail { color: #777; }
details pre { white-space: pre-wrap; background: #f7f7f7; padding: 0.5em; }
svg.spark { display: block; margin: 0.3em 0; }
"""
_TRUNCATED_BADGE = ('<span class="badge" title="the completion hit the token limit: it stops mid-way, so its last '
                    'paragraph, J_end and the end of its J curve are not those of a finished answer">truncated</span>')


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _outcome(correct: bool | None) -> str:
    css = {True: "ok", False: "bad", None: "na"}[correct]
    return f'<span class="{css}">{OUTCOME_LABELS[correct]}</span>'


def _summary_table(records: Sequence[Record]) -> str:
    head = ("traces", "n", "accuracy", "truncated", "tokens", "paragraphs", "backtracks", "J_b", "J_end", "mean r")
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for s in summarize(records):
        accuracy = "–" if s.accuracy is None else f"{s.correct}/{s.graded} ({s.accuracy:.0%})"
        cells = (s.label, str(s.count), accuracy, str(s.truncated), _number(s.tokens, 1), _number(s.paragraphs, 1),
                 _number(s.backtracks, 2), _number(s.j_baseline), _number(s.j_end), _number(s.mean_reward, 4, True))
        rows.append("<tr>" + "".join(f"<td>{_escape(c)}</td>" for c in cells) + "</tr>")
    table = '<table class="summary">' + "".join(rows) + "</table>"
    return table + ('<p class="meta">Means over the traces of each group; truncated: how many of them hit the token '
                    "limit.</p>")


def _sparkline(record: Record, low: float, high: float) -> str:
    """An inline SVG of the trace's J curve against token position, on the J range of all traces (labelled on
    the left), one dot per cut point with its value on hover; dashed when the trace is truncated."""
    width, height, pad, left = 420, 70, 6, 48
    positions = record["cut_points"]
    end = positions[-1] if positions and positions[-1] > 0 else 1
    span = high - low if high > low else 1.0
    points = [(left + (width - left - pad) * p / end, pad + (height - 2 * pad) * (high - j) / span)
              for p, j in zip(positions, record["j"], strict=True)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5"><title>token {_escape(p)}: J = {j:.3f}</title></circle>'
                   for (x, y), p, j in zip(points, positions, record["j"], strict=True))
    dash = ' stroke-dasharray="4 3"' if is_truncated(record) else ""
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="J curve"><rect width="{width}" height="{height}" fill="#fafafa"/>'
            f'<text x="2" y="{pad + 8}" font-size="10" fill="#777">{high:.2f}</text>'
            f'<text x="2" y="{height - pad}" font-size="10" fill="#777">{low:.2f}</text>'
            f'<polyline points="{line}" fill="none" stroke="#444" stroke-width="1.2"{dash}/>'
            f'<g fill="#444">{dots}</g></svg>')


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in prompt)


def _paragraph_title(record: Record, index: int, paragraph: Record) -> str:
    step = paragraph["step"]
    j, previous = record["j"][step], record["j"][step - 1]
    title = (f"paragraph {index + 1}, tokens {paragraph['start']}-{paragraph['end']}\n"
             f"J = {j:.4f} (ΔJ = {j - previous:+.4f}, J_b = {record['j_baseline']:.4f})\n"
             f"M = {record['magnitude'][step]:.4f}  S = {record['stability'][step]:.4f}  "
             f"C = {record['score'][step]:.4f}\nr = {record['reward'][step]:+.4f}")
    if record["cut_points"][step - 1] != paragraph["start"] or record["cut_points"][step] != paragraph["end"]:
        first, last = record["cut_points"][step - 1], record["cut_points"][step]
        title += f"\n(values of step {step}, tokens {first}-{last}, which holds this paragraph)"
    if paragraph["cue"] is not None:
        title += f"\nbacktracking cue: {paragraph['cue']}"
    return title


def _trace_html(record: Record, scale: float, j_range: tuple[float, float]) -> str:
    parts = []
    for index, paragraph in enumerate(record["paragraphs"]):
        color = reward_color(record["reward"][paragraph["step"]], scale)
        css = "para bt" if paragraph["cue"] is not None else "para"
        parts.append(f'<span class="{css}" style="background:{color}" '
                     f'title="{_escape(_paragraph_title(record, index, paragraph))}">'
                     f"{_escape(paragraph['text'])}</span>")
    if record["tail"]:
        parts.append(f'<span class="tail" title="after the end of thinking: not scored">'
                     f"{_escape(record['tail'])}</span>")
    stats = (f"tokens {record['tokens']} · paragraphs {record['num_paragraphs']} · backtracks {record['backtracks']}"
             f" · J_b {_number(record['j_baseline'])} · J_end {_number(record['j_end'])}"
             f" · mean r {_number(record['mean_reward'], 4, True)} · answer {record['answer']}"
             f" · predicted {record['predicted'] if record['predicted'] is not None else '–'}")
    badge = f" · {_TRUNCATED_BADGE}" if is_truncated(record) else ""
    return (f'<section class="trace" id="trace-{_escape(record["id"])}">'
            f"<h3>#{_escape(record['id'])} · problem {_escape(record['problem'])} · "
            f"sample {_escape(record['sample'])} · {_outcome(record['correct'])}{badge}</h3>"
            f'<p class="stats">{_escape(stats)}</p>{_sparkline(record, *j_range)}'
            f"<details><summary>prompt</summary><pre>{_escape(_prompt_text(record['prompt']))}</pre></details>"
            f'<div class="text">{"".join(parts)}</div></section>')


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{_escape(alt)}" src="data:image/png;base64,{data}">'


def _legend(records: Sequence[Record], scale: float) -> str:
    later = [r for record in records for r in record["reward"][1:] if not math.isnan(r)]
    seen = f" · r in this report: {min(later):+.3f} to {max(later):+.3f}" if later else ""
    truncated = f" · {_TRUNCATED_BADGE}: hit the token limit" if any(is_truncated(r) for r in records) else ""
    return (f'<div class="legend">process reward r: <b>{-scale:+.3g}</b> <span class="bar"></span> '
            f"<b>{scale:+.3g}</b> (a fixed scale, the same in every report: --color_max of repro score; larger |r| "
            f"get the full colour, as the first paragraph's r = C_1 often does){seen} · hover a paragraph for J, M, "
            f"S, C, r · black bar: opens with a backtracking cue · grey: after the end of thinking{truncated}</div>")


def write_html(records: Sequence[Record], path: Path, *, images: Sequence[Path] = (),
               settings: Mapping[str, Any] | None = None, color_max: float = DEFAULT_COLOR_MAX) -> None:
    """``report.html``: one self-contained page (inline CSS, images as data URIs, no script).

    Every paragraph of every trace is a ``<span>`` shaded by its process reward on the fixed scale +-``color_max``
    (``DEFAULT_COLOR_MAX``; beyond it the colour saturates), with J, M, S, C and r in its ``title`` (shown on
    hover); paragraphs that open with a backtracking cue get a black bar on the left, truncated traces a badge.
    Every value of the records and ``settings`` is escaped. ``ReproError("color_max", ...)`` unless ``color_max``
    is a finite number > 0.
    """
    scale = check_color_max(color_max)
    all_j = [j for record in records for j in record["j"]]
    j_range = (min(all_j, default=-1.0), max(all_j, default=0.0))
    meta = " · ".join(f"{key}: {value}" for key, value in (settings or {}).items())
    css = _CSS.replace("NEGATIVE", reward_color(-scale, scale)).replace("POSITIVE", reward_color(scale, scale))
    body = [
        "<h1>RePro score report</h1>",
        f'<p class="meta">{_escape(meta)}</p>',
        "<h2>Summary</h2>",
        _summary_table(records),
        *(_image(image, image.stem.replace("_", " ")) for image in images),
        "<h2>Traces</h2>",
        _legend(records, scale),
        *(_trace_html(record, scale, j_range) for record in records),
    ]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>RePro score report</title>'
            f"<style>{css}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
