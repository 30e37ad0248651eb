"""``report.html``: one self-contained page of the summary, the plots and every trace's paragraphs."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .colors import DEFAULT_COLOR_MAX, check_color_max, reward_color
from .traces import OUTCOME_LABELS, Record, is_truncated, summarize

__all__ = ["write_html"]

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
