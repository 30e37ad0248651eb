"""Plots and the HTML report of ``repro score`` (see ``repro_core.analysis`` and docs/score.md).

Everything here reads the trace records that ``repro_core.analysis.score_traces`` returns (the objects of
``scores.jsonl``), so a report can be rebuilt from a saved ``scores.jsonl`` without the model.

Importing this module imports only the standard library and NumPy; the plot functions import matplotlib.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Summary", "plot_j_curves", "plot_rewards", "reward_color", "reward_scale", "summarize", "write_html"]

Record = Mapping[str, Any]

#: Line colours of correct, incorrect and ungraded traces in the plots.
OUTCOME_COLORS = {True: "#1b7837", False: "#c2185b", None: "#7f7f7f"}
OUTCOME_LABELS = {True: "correct", False: "incorrect", None: "ungraded"}
# The two ends of the diverging reward colours (ColorBrewer RdBu, mid-saturation so black text stays readable).
_NEGATIVE_RGB = (214, 96, 77)
_POSITIVE_RGB = (67, 147, 195)
# Points of the relative-position grid on which the mean J curves are averaged.
_GRID_POINTS = 41


@dataclass(frozen=True)
class Summary:
    """Means over one group of traces (``label``): correct, incorrect, ungraded or all."""

    label: str
    count: int
    graded: int
    correct: int
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


def reward_scale(records: Iterable[Record]) -> float:
    """The |r| that gets the full colour: the largest one after the first step.

    r_1 = C_1 is a score, not a difference of scores, so it is structurally large (about 0.24 even when the first
    paragraph leaves J unchanged); scaling by it would wash out every later paragraph. It saturates instead.
    """
    later: list[float] = []
    first: list[float] = []
    for record in records:
        first.extend(abs(r) for r in record["reward"][1:2])
        later.extend(abs(r) for r in record["reward"][2:])
    scale = max(later or first or [0.0])
    return scale if scale > 0 else 1.0


def reward_color(reward: float, scale: float) -> str:
    """A diverging colour for a process reward: white at 0, blue above, red below, full at |reward| >= scale."""
    amount = min(abs(reward) / scale, 1.0) if scale > 0 else 0.0
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


def plot_j_curves(records: Sequence[Record], path: Path) -> None:
    """``j_curves.png``: J against token position per trace, and mean J against relative position by outcome."""
    from matplotlib.figure import Figure  # pyplot's global state is not needed to save a file

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    traces, means = figure.subplots(1, 2)
    for record in records:
        traces.plot(record["cut_points"], record["j"], color=OUTCOME_COLORS[record["correct"]], linewidth=0.8,
                    alpha=0.6, marker=".", markersize=3)
    traces.set(title="J at every cut point, per trace", xlabel="token position in the completion",
               ylabel="J (mean log-prob of the answer)")
    grid = np.linspace(0.0, 1.0, _GRID_POINTS)
    for outcome in (True, False, None):
        curves = [c for r in records if r["correct"] is outcome if (c := _relative_curve(r, grid)) is not None]
        if not curves:
            continue
        stack = np.stack(curves)
        mean = stack.mean(axis=0)
        color = OUTCOME_COLORS[outcome]
        means.plot(grid, mean, color=color, linewidth=2, label=f"{OUTCOME_LABELS[outcome]} (n={len(curves)})")
        if len(curves) > 1:
            error = stack.std(axis=0, ddof=1) / math.sqrt(len(curves))
            means.fill_between(grid, mean - error, mean + error, color=color, alpha=0.2, linewidth=0)
    means.set(title="mean J by outcome (band: standard error)", xlabel="relative position in the thinking part",
              ylabel="J")
    if means.has_data():
        means.legend(loc="lower right")
    for axes in (traces, means):
        axes.grid(alpha=0.3)
    figure.savefig(path, dpi=110)


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
            if i > 1:  # r_1 = C_1 is a score, not a change: it would swamp the comparison (see reward_scale)
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
.text { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.9em; line-height: 1.5;
        border: 1px solid #eee; padding: 0.6em; }
.para { border-radius: 3px; }
.para:hover { outline: 2px solid #333; }
.para.bt { border-left: 4px solid #222; padding-left: 2px; }
.tail { color: #777; }
details pre { white-space: pre-wrap; background: #f7f7f7; padding: 0.5em; }
svg.spark { display: block; margin: 0.3em 0; }
"""


def _number(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _outcome(correct: bool | None) -> str:
    css = {True: "ok", False: "bad", None: "na"}[correct]
    return f'<span class="{css}">{OUTCOME_LABELS[correct]}</span>'


def _summary_table(records: Sequence[Record]) -> str:
    head = ("traces", "n", "accuracy", "tokens", "paragraphs", "backtracks", "J_b", "J_end", "mean r")
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for s in summarize(records):
        accuracy = "–" if s.accuracy is None else f"{s.correct}/{s.graded} ({s.accuracy:.0%})"
        cells = (s.label, str(s.count), accuracy, _number(s.tokens, 1), _number(s.paragraphs, 1),
                 _number(s.backtracks, 2), _number(s.j_baseline), _number(s.j_end), _number(s.mean_reward, 4, True))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    table = '<table class="summary">' + "".join(rows) + "</table>"
    return table + '<p class="meta">Means over the traces of each group.</p>'


def _sparkline(record: Record, low: float, high: float) -> str:
    """An inline SVG of the trace's J curve against token position, on the J range of all traces (labelled on
    the left), one dot per cut point with its value on hover."""
    width, height, pad, left = 420, 70, 6, 48
    positions = record["cut_points"]
    end = positions[-1] if positions and positions[-1] > 0 else 1
    span = high - low if high > low else 1.0
    points = [(left + (width - left - pad) * p / end, pad + (height - 2 * pad) * (high - j) / span)
              for p, j in zip(positions, record["j"], strict=True)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5"><title>token {p}: J = {j:.3f}</title></circle>'
                   for (x, y), p, j in zip(points, positions, record["j"], strict=True))
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="J curve"><rect width="{width}" height="{height}" fill="#fafafa"/>'
            f'<text x="2" y="{pad + 8}" font-size="10" fill="#777">{high:.2f}</text>'
            f'<text x="2" y="{height - pad}" font-size="10" fill="#777">{low:.2f}</text>'
            f'<polyline points="{line}" fill="none" stroke="#444" stroke-width="1.2"/>'
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
                     f'title="{html.escape(_paragraph_title(record, index, paragraph))}">'
                     f"{html.escape(paragraph['text'])}</span>")
    if record["tail"]:
        parts.append(f'<span class="tail" title="after the end of thinking: not scored">'
                     f"{html.escape(record['tail'])}</span>")
    stats = (f"tokens {record['tokens']} · paragraphs {record['num_paragraphs']} · backtracks {record['backtracks']}"
             f" · J_b {_number(record['j_baseline'])} · J_end {_number(record['j_end'])}"
             f" · mean r {_number(record['mean_reward'], 4, True)} · answer {record['answer']}"
             f" · predicted {record['predicted'] if record['predicted'] is not None else '–'}")
    return (f'<section class="trace" id="trace-{record["id"]}">'
            f"<h3>#{record['id']} · problem {record['problem']} · sample {record['sample']} · "
            f"{_outcome(record['correct'])}</h3>"
            f'<p class="stats">{html.escape(stats)}</p>{_sparkline(record, *j_range)}'
            f"<details><summary>prompt</summary><pre>{html.escape(_prompt_text(record['prompt']))}</pre></details>"
            f'<div class="text">{"".join(parts)}</div></section>')


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_html(records: Sequence[Record], path: Path, *, images: Sequence[Path] = (),
               settings: Mapping[str, Any] | None = None) -> None:
    """``report.html``: one self-contained page (inline CSS, images as data URIs, no script).

    Every paragraph of every trace is a ``<span>`` shaded by its process reward, with J, M, S, C and r in its
    ``title`` (shown on hover); paragraphs that open with a backtracking cue get a black bar on the left.
    """
    scale = reward_scale(records)
    all_j = [j for record in records for j in record["j"]]
    j_range = (min(all_j, default=-1.0), max(all_j, default=0.0))
    meta = " · ".join(f"{key}: {value}" for key, value in (settings or {}).items())
    css = _CSS.replace("NEGATIVE", reward_color(-scale, scale)).replace("POSITIVE", reward_color(scale, scale))
    body = [
        "<h1>RePro score report</h1>",
        f'<p class="meta">{html.escape(meta)}</p>',
        "<h2>Summary</h2>",
        _summary_table(records),
        *(_image(image, image.stem.replace("_", " ")) for image in images),
        "<h2>Traces</h2>",
        f'<div class="legend">process reward r: <b>{_number(-scale, 3, True)}</b> <span class="bar"></span> '
        f"<b>{_number(scale, 3, True)}</b> (stronger colours are clipped; the first paragraph's r = C_1 often is) · "
        "hover a paragraph for J, M, S, C, r · black bar: opens with a backtracking cue · grey: after the end "
        "of thinking</div>",
        *(_trace_html(record, scale, j_range) for record in records),
    ]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>RePro score report</title>'
            f"<style>{css}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
