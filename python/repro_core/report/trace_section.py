"""One trace's section of ``report.html``: its heading, its change of J, its J curve with axes, its prompt, and its
paragraphs shaded by how their step changed the score (``traces.step_shades``), the values on hover."""

from __future__ import annotations

from typing import Any

from .colors import reward_color
from .text import TRUNCATED_BADGE, escape, number, outcome
from .traces import Record, is_truncated, j_changes, j_gain, step_shades

__all__ = ["trace_section"]

# The J curve's drawing: its size, the margin around it and the room for the axis labels, in CSS pixels.
_WIDTH, _HEIGHT, _PAD, _LEFT, _BOTTOM = 440, 86, 6, 48, 16


def trace_section(record: Record, scale: float, j_range: tuple[float, float]) -> str:
    """The ``<section>`` of ``record``, its shades on the fixed scale +-``scale``, its J curve on ``j_range`` (the
    range of all the report's traces, so that curves compare)."""
    shades = step_shades(record)
    parts = []
    for index, paragraph in enumerate(record["paragraphs"]):
        color = reward_color(shades[paragraph["step"] - 1], scale)
        css = "para bt" if paragraph["cue"] is not None else "para"
        parts.append(f'<span class="{css}" style="background:{color}" '
                     f'title="{escape(_paragraph_title(record, index, paragraph, shades))}">'
                     f"{escape(paragraph['text'])}</span>")
    if record["tail"]:
        parts.append(f'<span class="tail" title="after the end of thinking: not scored">'
                     f"{escape(record['tail'])}</span>")
    changes = j_changes(record)
    stats = (f"J_end - J_b = {number(j_gain(record), sign=True)} (J from {number(record['j_baseline'])} to "
             f"{number(record['j_end'])}) · steps that raised J: {sum(c > 0 for c in changes)} of {len(changes)} · "
             f"tokens {record['tokens']} · paragraphs {record['num_paragraphs']} · backtracks {record['backtracks']}"
             f" · answer {record['answer']} · predicted {'–' if record['predicted'] is None else record['predicted']}")
    badge = f" · {TRUNCATED_BADGE}" if is_truncated(record) else ""
    return (f'<section class="trace" id="trace-{escape(record["id"])}">'
            f"<h3>#{escape(record['id'])} · problem {escape(record['problem'])} · "
            f"sample {escape(record['sample'])} · {outcome(record['correct'])}{badge}</h3>"
            f'<p class="stats">{escape(stats)}</p>{_sparkline(record, *j_range)}'
            f"<details><summary>prompt</summary><pre>{escape(_prompt_text(record['prompt']))}</pre></details>"
            f'<div class="text">{"".join(parts)}</div></section>')


def _sparkline(record: Record, low: float, high: float) -> str:
    """An inline SVG of the trace's J curve: J (its axis on the left, on the range of all traces) against the token
    position in the completion (its axis below, 0 to the end of thinking), J_b as a dotted line, one dot per cut
    point with its values on hover; the curve dashed when the trace is truncated."""
    positions = record["cut_points"]
    end = positions[-1] if positions and positions[-1] > 0 else 1
    span = high - low if high > low else 1.0
    right, floor = _WIDTH - _PAD, _HEIGHT - _BOTTOM

    def y_of(j: float) -> float:
        return _PAD + (floor - _PAD) * (high - j) / span

    points = [(_LEFT + (right - _LEFT) * p / end, y_of(j)) for p, j in zip(positions, record["j"], strict=True)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5"><title>token {escape(p)}: J = {j:.3f}</title></circle>'
                   for (x, y), p, j in zip(points, positions, record["j"], strict=True))
    dash = ' stroke-dasharray="4 3"' if is_truncated(record) else ""
    baseline = y_of(float(record["j_baseline"]))
    label = 'font-size="10" fill="#666"'
    return (f'<svg class="spark" width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
            f'role="img" aria-label="J against token position">'
            f'<rect width="{_WIDTH}" height="{_HEIGHT}" fill="#fafafa"/>'
            f'<path d="M{_LEFT},{_PAD} V{floor} H{right}" fill="none" stroke="#999" stroke-width="1"/>'
            f'<text x="{_LEFT - 4}" y="{_PAD + 8}" text-anchor="end" {label}>J {high:.2f}</text>'
            f'<text x="{_LEFT - 4}" y="{floor}" text-anchor="end" {label}>{low:.2f}</text>'
            f'<text x="{_LEFT}" y="{_HEIGHT - 3}" {label}>token 0</text>'
            f'<text x="{right}" y="{_HEIGHT - 3}" text-anchor="end" {label}>{escape(end)} (end of thinking)</text>'
            f'<line x1="{_LEFT}" y1="{baseline:.1f}" x2="{right}" y2="{baseline:.1f}" stroke="#999" '
            f'stroke-dasharray="1 2"><title>J_b = {float(record["j_baseline"]):.3f} (no reasoning)</title></line>'
            f'<polyline points="{line}" fill="none" stroke="#444" stroke-width="1.2"{dash}/>'
            f'<g fill="#444">{dots}</g></svg>')


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in prompt)


def _paragraph_title(record: Record, index: int, paragraph: Record, shades: list[float]) -> str:
    """The values shown on hover: ΔJ first, then J, the scores, r and what the shade is."""
    step = paragraph["step"]
    j, previous = record["j"][step], record["j"][step - 1]
    title = (f"paragraph {index + 1}, tokens {paragraph['start']}-{paragraph['end']}\n"
             f"ΔJ = {j - previous:+.4f}: J = {j:.4f}, was {previous:.4f} (J_b = {record['j_baseline']:.4f})\n"
             f"M = {record['magnitude'][step]:.4f}  S = {record['stability'][step]:.4f}  "
             f"C = {record['score'][step]:.4f}\n")
    if step == 1:
        title += (f"r = C_1 = {record['reward'][step]:+.4f}: the score's level, positive for any first paragraph; "
                  f"shaded by M_1 - M_b = {shades[0]:+.4f}, which has the sign of ΔJ")
    else:
        title += f"r = {record['reward'][step]:+.4f} (the shade)"
    if record["cut_points"][step - 1] != paragraph["start"] or record["cut_points"][step] != paragraph["end"]:
        first, last = record["cut_points"][step - 1], record["cut_points"][step]
        title += f"\n(values of step {step}, tokens {first}-{last}, which holds this paragraph)"
    if paragraph["cue"] is not None:
        title += f"\nbacktracking cue: {paragraph['cue']}"
    return title
