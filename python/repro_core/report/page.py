"""``report.html``: one self-contained page: the summary (means by outcome, led by J_end - J_b), the steps that
moved J most, the plots, and every trace's section (``trace_section``)."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..outputs import write_atomic
from .colors import DEFAULT_COLOR_MAX, check_color_max, reward_color
from .text import TRUNCATED_BADGE, escape, number
from .trace_section import trace_section
from .traces import Change, Record, is_truncated, largest_changes, step_shades, summarize

__all__ = ["RANKED_STEPS", "write_html"]

#: How many steps the summary lists among those that raised J most, and as many among those that lowered it most.
RANKED_STEPS = 5
# The characters of a paragraph's text shown in the lists of the steps that moved J most.
_EXCERPT = 90

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #555; }
table.summary { border-collapse: collapse; margin: 1em 0; }
table.summary th, table.summary td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: right;
                                     white-space: nowrap; }
table.summary th:first-child, table.summary td:first-child { text-align: left; }
table.summary a { color: inherit; }
table.changes caption { text-align: left; font-weight: 600; padding-bottom: 0.2em; }
table.changes th:last-child { text-align: left; }
td.excerpt { text-align: left !important; white-space: normal; font-family: ui-monospace, monospace; font-size: 0.85em;
             color: #333; }
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
def _summary_table(records: Sequence[Record]) -> str:
    head = ("traces", "n", "accuracy", "J_end - J_b", "J_b", "J_end", "tokens", "paragraphs", "backtracks", "truncated")
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for s in summarize(records):
        accuracy = "–" if s.accuracy is None else f"{s.correct}/{s.graded} ({s.accuracy:.0%})"
        cells = (s.label, str(s.count), accuracy, number(s.j_gain, sign=True), number(s.j_baseline), number(s.j_end),
                 number(s.tokens, 1), number(s.paragraphs, 1), number(s.backtracks, 2), str(s.truncated))
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    table = '<table class="summary">' + "".join(rows) + "</table>"
    return table + ('<p class="meta">Means over the traces of each group. J_end - J_b: how much the thinking part '
                    "raised J, the log-probability of the right answer (negative: it lowered it); truncated: how many "
                    "traces hit the token limit.</p>")


def _ranked_steps(records: Sequence[Record]) -> str:
    """The steps of all traces that raised J most and those that lowered it most, each linked to its trace."""
    raised, lowered = largest_changes(records, RANKED_STEPS)
    if not raised and not lowered:
        return ""
    return ("<h3>Where J moved most</h3>" + _changes_table("raised J most", raised)
            + _changes_table("lowered J most", lowered) + '<p class="meta">ΔJ: the change of J over the step (a '
            "paragraph, or the paragraphs between two cut points); r: its process reward.</p>")


def _changes_table(what: str, changes: Sequence[Change]) -> str:
    if not changes:
        return ""
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in ("", "ΔJ", "r", "trace", "paragraph", "text")) + "</tr>"]
    for rank, change in enumerate(changes, start=1):
        first, last = change.paragraphs
        text = " ".join(change.text.split())
        excerpt = text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"
        cells = (escape(rank), escape(number(change.change, sign=True)), escape(number(change.reward, sign=True)),
                 f'<a href="#trace-{escape(change.trace)}">#{escape(change.trace)}</a>',
                 escape(first if first == last else f"{first}-{last}"))
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells)
                    + f'<td class="excerpt">{escape(excerpt)}</td></tr>')
    return (f'<table class="summary changes"><caption>the {len(changes)} steps that {what}</caption>'
            + "".join(rows) + "</table>")


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _legend(records: Sequence[Record], scale: float) -> str:
    shades = [s for record in records for s in step_shades(record) if not math.isnan(s)]
    seen = f" · shades in this report: {min(shades):+.3f} to {max(shades):+.3f}" if shades else ""
    truncated = f" · {TRUNCATED_BADGE}: hit the token limit" if any(is_truncated(r) for r in records) else ""
    return (f'<div class="legend">shade: how the paragraph changed the score, <b>{-scale:+.3g}</b> '
            f'<span class="bar"></span> <b>{scale:+.3g}</b>: its process reward r, but the first paragraph\'s '
            f"M_1 - M_b, which has the sign of its ΔJ (r_1 = C_1 is positive for any paragraph) · a fixed scale, "
            f"the same in every report (--color_max of repro score){seen} · hover a paragraph for ΔJ, J, M, S, C, "
            f"r · black bar: opens with a backtracking cue · grey: after the end of thinking{truncated}</div>")


def write_html(records: Sequence[Record], path: Path, *, images: Sequence[Path] = (),
               settings: Mapping[str, Any] | None = None, color_max: float = DEFAULT_COLOR_MAX) -> None:
    """``report.html``: one self-contained page (inline CSS, images as data URIs, no script).

    The summary leads with J_end - J_b by outcome and lists the steps that raised and lowered J most. Every
    paragraph of every trace is a ``<span>`` shaded on the fixed scale +-``color_max`` (``DEFAULT_COLOR_MAX``;
    beyond it the colour saturates) by ``traces.step_shades`` (its step's process reward; the first step's M_1 -
    M_b, which has the sign of its ΔJ), with ΔJ, J, M, S, C and r in its ``title`` (shown on hover); paragraphs
    that open with a backtracking cue get a black bar on the left, truncated traces a badge. Every value of the
    records and ``settings`` is escaped. The page is written whole or not at all (``outputs.write_atomic``).
    ``ReproError("color_max", ...)`` unless ``color_max`` is a finite number > 0.
    """
    scale = check_color_max(color_max)
    all_j = [j for record in records for j in record["j"]]
    j_range = (min(all_j, default=-1.0), max(all_j, default=0.0))
    meta = " · ".join(f"{key}: {value}" for key, value in (settings or {}).items())
    css = _CSS.replace("NEGATIVE", reward_color(-scale, scale)).replace("POSITIVE", reward_color(scale, scale))
    body = [
        "<h1>RePro score report</h1>",
        f'<p class="meta">{escape(meta)}</p>',
        "<h2>Summary</h2>",
        _summary_table(records),
        _ranked_steps(records),
        *(_image(image, image.stem.replace("_", " ")) for image in images),
        "<h2>Traces</h2>",
        _legend(records, scale),
        *(trace_section(record, scale, j_range) for record in records),
    ]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>RePro score report</title>'
            f"<style>{css}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    write_atomic(path, page)
