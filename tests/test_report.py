"""``repro_core.report`` on hand-built records (no model): what leads the report (J_end - J_b, ΔJ, the steps that
moved J most), the first paragraph's shade (a first paragraph that lowers J is shaded as harmful), the fixed colour
scale of ``write_html`` (``color_max``) and its saturation, the truncated marks in the page, the sparklines' axes, and
every field of a record escaped in the page. The J plot is tested in test_report_j_plot.py, the writing of the files in
test_report_files.py."""

from __future__ import annotations

import html
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from repro_core import report
from repro_core.errors import ReproError

# The full colours of the scale's two ends (report._POSITIVE_RGB and _NEGATIVE_RGB) and of zero.
FULL_POSITIVE, FULL_NEGATIVE, WHITE = "#4393c3", "#d6604d", "#ffffff"


def make_record(trace_id: Any, rewards: list[float], *, correct: bool | None = True, truncated: bool | None = None,
                cue: str | None = None, text: str = "Step {i}.", answer: Any = "42", predicted: Any = "42",
                prompt: Any = "What is 6 * 7?", problem: Any = 0, sample: Any = 0, tail: str = "",
                j: list[float] | None = None) -> dict[str, Any]:
    """A record as ``repro_core.analysis.score_traces`` writes it (docs/score.md, ``scores.jsonl``): one paragraph per
    step, each shaded by the value ``rewards`` gives it: r_2..r_m as the rewards, and the first as M_1 - M_b (its
    magnitude is set so); J rising by 0.25 a step unless ``j`` says. ``truncated=None`` leaves the field out, as in
    files written before it."""
    steps = len(rewards)
    cut_points = [10 * i for i in range(steps + 1)]
    j = [-3.0 + 0.25 * i for i in range(steps + 1)] if j is None else j
    paragraphs = [{"start": cut_points[i], "end": cut_points[i + 1], "text": text.format(i=i) + "\n\n",
                   "cue": cue if i == 1 else None, "step": i + 1} for i in range(steps)]
    magnitude = [0.0, *[0.5] * steps]
    if steps:
        magnitude[1] = report.BASELINE_MAGNITUDE + rewards[0]
    record = {
        "id": trace_id, "problem": problem, "sample": sample, "prompt": prompt, "answer": answer,
        "completion": "".join(p["text"] for p in paragraphs) + tail, "predicted": predicted, "correct": correct,
        "tokens": cut_points[-1], "thinking_tokens": cut_points[-1], "num_paragraphs": steps,
        "backtracks": int(cue is not None and steps > 1), "j_baseline": j[0], "j_end": j[-1],
        "mean_reward": sum(rewards) / steps if steps else None, "cut_points": cut_points, "j": j,
        "magnitude": magnitude, "stability": [0.0, *[0.5] * steps], "score": [0.0, *[0.4] * steps],
        "reward": [0.0, *rewards], "paragraphs": paragraphs, "tail": tail,
    }
    if truncated is not None:
        record["truncated"] = truncated
    return record


def scored_record(trace_id: Any, j: list[float], *, correct: bool | None = True, w: float = 0.1) -> dict[str, Any]:
    """A record of one paragraph per step whose magnitude, stability, score and reward are the Rust core's
    (``score_steps``) for the J values ``j`` (J_b first), as ``score_traces`` computes them."""
    import numpy as np

    import repro_core

    steps = repro_core.score_steps(np.asarray(j, dtype=np.float32), np.asarray([0, len(j)]), w=w)
    record = make_record(trace_id, [0.0] * (len(j) - 1), correct=correct, j=[float(v) for v in np.float32(j)])
    for key in ("magnitude", "stability", "score", "reward"):
        record[key] = getattr(steps, key).tolist()
    rewards = record["reward"][1:]
    record["mean_reward"] = sum(rewards) / len(rewards)
    return record


def paragraph_colors(page: str) -> list[str]:
    """The background of every paragraph span, in page order."""
    return re.findall(r'<span class="para(?: bt)?" style="background:(#[0-9a-f]{6})"', page)


def scale_legend(page: str) -> str:
    """The part of the page that shows the colour scale: the legend's bar with its two ends, and the bar's CSS."""
    bar = re.search(r"changed the score, <b>[^<]*</b> <span class=\"bar\"></span> <b>[^<]*</b>", page)
    css = re.search(r"\.bar \{[^}]*\}", page)
    assert bar and css
    return bar.group(0) + css.group(0)


def sections(page: str) -> dict[str, str]:
    """The HTML of each trace's section, by its ``id`` attribute."""
    return dict(re.findall(r'<section class="trace" id="([^"]*)">(.*?)</section>', page, flags=re.S))


def summary_rows(page: str) -> list[list[str]]:
    """The cells of the summary table (the first table of the page), header row first."""
    table = re.search(r'<table class="summary">(.*?)</table>', page, flags=re.S)
    assert table
    return [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table.group(1))]


# ------------------------------------------------------------------------------------------------ what leads


def test_a_first_paragraph_that_lowers_j_is_shaded_as_harmful(tmp_path: Path) -> None:
    # J falls by 0.9 nat over the first paragraph, then climbs: r_1 = C_1 is still positive (the score's level), so
    # the first paragraph is shaded by M_1 - M_b, which has the sign of ΔJ.
    harmful = scored_record(0, [-3.0, -3.9, -3.2, -2.0])
    helpful = scored_record(1, [-3.0, -2.4, -2.5, -2.0])
    still = scored_record(2, [-3.0, -3.0, -2.0])
    assert harmful["reward"][1] > 0 and helpful["reward"][1] > 0 and still["reward"][1] > 0
    shades = [report.step_shades(record)[0] for record in (harmful, helpful, still)]
    assert shades[0] < 0 < shades[1] and shades[2] == pytest.approx(0, abs=1e-6)
    assert report.step_shades(harmful)[1:] == harmful["reward"][2:]  # later steps: their process reward
    report.write_html([harmful, helpful, still], tmp_path / "report.html")
    by_id = sections((tmp_path / "report.html").read_text(encoding="utf-8"))
    first = [paragraph_colors(by_id[f"trace-{i}"])[0] for i in range(3)]
    assert first == [report.reward_color(shade, report.DEFAULT_COLOR_MAX) for shade in shades]
    assert [_hue(color) for color in first] == ["red", "blue", "white"]
    title = html.unescape(re.search(r'title="([^"]*)"', by_id["trace-0"].split('<div class="text">')[1]).group(1))
    assert title.startswith("paragraph 1, tokens 0-10\nΔJ = -0.9000: J = -3.9000, was -3.0000")
    assert f"r = C_1 = {harmful['reward'][1]:+.4f}" in title and f"M_1 - M_b = {shades[0]:+.4f}" in title


def _hue(color: str) -> str:
    """Red for a shade of the harmful end, blue for one of the helpful end, white for neither."""
    red, blue = int(color[1:3], 16), int(color[5:7], 16)
    return "red" if red > blue else "blue" if blue > red else "white"


def test_the_summary_leads_with_the_change_of_j(tmp_path: Path) -> None:
    # The correct traces raise J, the incorrect ones lower it; their mean r (C_m / m, positive by construction) would
    # rank them the other way round, and is not shown.
    records = [scored_record(0, [-3.0, -2.9, -2.8, -2.6, -2.4]), scored_record(1, [-3.0, -2.7, -2.5, -2.0]),
               scored_record(2, [-3.0, -3.9, -3.8], correct=False), scored_record(3, [-3.0, -3.1], correct=False)]
    assert records[3]["mean_reward"] > records[0]["mean_reward"] > 0
    correct, incorrect, overall = report.summarize(records)
    assert correct.j_gain == pytest.approx((0.6 + 1.0) / 2) and incorrect.j_gain == pytest.approx((-0.8 - 0.1) / 2)
    assert overall.j_gain == pytest.approx((0.6 + 1.0 - 0.8 - 0.1) / 4)
    report.write_html(records, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    rows = summary_rows(page)
    assert rows[0][:4] == ["traces", "n", "accuracy", "J_end - J_b"]
    assert [row[3] for row in rows[1:]] == ["+0.800", "-0.450", "+0.175"]
    assert "mean r" not in page
    assert "J_end - J_b = -0.800 (J from -3.000 to -3.800) · steps that raised J: 1 of 2" in sections(page)["trace-2"]


def test_the_steps_that_moved_j_most_are_listed_in_order(tmp_path: Path) -> None:
    records = [scored_record(0, [-3.0, -2.8, -2.0, -1.5]), scored_record(7, [-3.0, -3.9, -3.8], correct=False)]
    raised, lowered = report.largest_changes(records, 2)
    assert [(c.trace, c.step, round(c.change, 3)) for c in raised] == [(0, 2, 0.8), (0, 3, 0.5)]
    assert [(c.trace, c.step, round(c.change, 3)) for c in lowered] == [(7, 1, -0.9)]
    assert lowered[0].reward == records[1]["reward"][1] and lowered[0].text == "Step 0.\n\n"
    report.write_html(records, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    tables = re.findall(r'<table class="summary changes"><caption>(.*?)</caption>(.*?)</table>', page, flags=re.S)
    assert [caption for caption, _ in tables] == ["the 4 steps that raised J most", "the 1 steps that lowered J most"]
    raised_rows, lowered_rows = ([re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", t)]
                                 for _, t in tables)
    assert lowered_rows[1:] == [["1", "-0.900", f"{records[1]['reward'][1]:+.3f}", '<a href="#trace-7">#7</a>', "1",
                                 "Step 0."]]
    assert [row[1] for row in raised_rows[1:]] == ["+0.800", "+0.500", "+0.200", "+0.100"]  # largest first


def test_the_sparklines_have_axes_and_the_baseline(tmp_path: Path) -> None:
    report.write_html([scored_record(0, [-3.0, -3.5, -2.0])], tmp_path / "report.html")
    svg = re.search(r"<svg.*?</svg>", sections((tmp_path / "report.html").read_text(encoding="utf-8"))["trace-0"])
    assert svg
    labels = re.findall(r"<text[^>]*>(.*?)</text>", svg.group(0))
    assert labels == ["J -2.00", "-3.50", "token 0", "20 (end of thinking)"]
    assert re.search(r'<path d="M\d+,\d+ V\d+ H\d+"', svg.group(0))  # the two axes
    assert "<title>J_b = -3.000 (no reasoning)</title></line>" in svg.group(0)


# ------------------------------------------------------------------------------------------------ colour scale


def test_the_colour_scale_is_the_same_in_reports_of_different_rewards(tmp_path: Path) -> None:
    small = [make_record(0, [0.05, -0.1, 0.1])]
    large = [make_record(0, [0.3, -0.4, 0.1]), make_record(1, [0.2, 0.02])]
    report.write_html(small, tmp_path / "small.html")
    report.write_html(large, tmp_path / "large.html")
    small_page = (tmp_path / "small.html").read_text(encoding="utf-8")
    large_page = (tmp_path / "large.html").read_text(encoding="utf-8")
    assert scale_legend(small_page) == scale_legend(large_page)
    assert "<b>-0.25</b>" in scale_legend(small_page) and "<b>+0.25</b>" in scale_legend(small_page)
    assert report.DEFAULT_COLOR_MAX == 0.25
    # The same reward, the same colour, whatever the other rewards of the report.
    assert paragraph_colors(small_page)[2] == paragraph_colors(large_page)[2] == report.reward_color(0.1, 0.25)
    # What the report's rewards span is stated beside the fixed scale.
    assert "shades in this report: -0.100 to +0.100" in small_page
    assert "shades in this report: -0.400 to +0.300" in large_page


def test_rewards_beyond_color_max_saturate(tmp_path: Path) -> None:
    records = [make_record(0, [0.25, 0.3, 5.0, math.inf, -0.25, -7.0, 0.0, math.nan, 0.125])]
    report.write_html(records, tmp_path / "report.html")
    colors = paragraph_colors((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert colors[:4] == [FULL_POSITIVE] * 4
    assert colors[4:6] == [FULL_NEGATIVE] * 2
    assert colors[6:8] == [WHITE, WHITE]  # zero and NaN: no colour
    assert colors[8] not in (FULL_POSITIVE, WHITE)  # half the scale: half way


def test_color_max_sets_the_scale(tmp_path: Path) -> None:
    records = [make_record(0, [0.3, 0.5, -0.25])]
    report.write_html(records, tmp_path / "report.html", color_max=0.5)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<b>-0.5</b>" in page and "<b>+0.5</b>" in page
    assert paragraph_colors(page) == [report.reward_color(0.3, 0.5), FULL_POSITIVE, report.reward_color(-0.25, 0.5)]
    assert paragraph_colors(page)[0] != FULL_POSITIVE  # 0.3 saturates at the default scale, not at 0.5


@pytest.mark.parametrize("color_max", [0, -0.1, math.nan, math.inf, -math.inf, True, "0.2", None])
def test_a_bad_color_max_is_refused_before_anything_is_written(tmp_path: Path, color_max: Any) -> None:
    with pytest.raises(ReproError) as caught:
        report.write_html([make_record(0, [0.1])], tmp_path / "report.html", color_max=color_max)
    assert caught.value.argument == "color_max"
    assert repr(color_max) in caught.value.message
    assert not (tmp_path / "report.html").exists()


# ------------------------------------------------------------------------------------------------ truncated


def test_truncated_traces_get_a_badge_and_a_count_in_the_summary(tmp_path: Path) -> None:
    records = [make_record(0, [0.1, 0.2], truncated=True), make_record(1, [0.1], truncated=False),
               make_record(2, [0.2, -0.1]),  # written before the field existed: not truncated
               make_record(3, [0.1], correct=False, truncated=True)]
    report.write_html(records, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    by_id = sections(page)
    assert list(by_id) == ["trace-0", "trace-1", "trace-2", "trace-3"]
    badge = '<span class="badge" title="the completion hit the token limit'
    assert [badge in by_id[f"trace-{i}"] for i in range(4)] == [True, False, False, True]
    dashed = [re.search(r"<polyline[^>]*stroke-dasharray", by_id[f"trace-{i}"]) is not None for i in range(4)]
    assert dashed == [True, False, False, True]  # the J curve, not the J_b line
    # The summary: a truncated column holding the count of each group (correct, incorrect, all).
    table = re.search(r'<table class="summary">(.*?)</table>', page, flags=re.S)
    assert table
    rows = [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table.group(1))]
    column = rows[0].index("truncated")
    assert [(row[0], row[column]) for row in rows[1:]] == [("correct", "1"), ("incorrect", "1"), ("all", "2")]
    assert [s.truncated for s in report.summarize(records)] == [1, 1, 2]
    legend = re.search(r'<div class="legend">(.*?)</div>', page, flags=re.S)
    assert legend and badge in legend.group(1) and "hit the token limit</div>" in legend.group(0)


def test_a_report_without_truncated_traces_shows_no_badge(tmp_path: Path) -> None:
    report.write_html([make_record(0, [0.1]), make_record(1, [0.2], truncated=False)], tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "badge" not in page.split("</style>")[1]  # neither on a trace nor in the legend


# ------------------------------------------------------------------------------------------------ escaping

HOSTILE = "</style><script>alert(\"x\")</script>\"' onmouseover='alert(1)' <img src=x onerror=alert(2)>&amp;"


class _Page(HTMLParser):
    """The tags, attributes and text of a page as a browser's tokenizer sees them (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[str, list[str]] = {}
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "circle", "rect", "polyline"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.setdefault(self.open[-1] if self.open else "", []).append(data)


def test_every_field_is_escaped(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    image = tmp_path / f"{HOSTILE.replace('/', '|')}.png"  # its stem is the image's alt text
    report.plot_rewards([make_record(0, [0.1])], image)
    records = [
        make_record(HOSTILE, [0.1, -0.2], cue=HOSTILE, text=HOSTILE + " {i}", answer=HOSTILE, predicted=HOSTILE,
                    prompt=HOSTILE, problem=HOSTILE, sample=HOSTILE, tail=HOSTILE, truncated=True),
        make_record(1, [0.1], prompt=[{"role": HOSTILE, "content": HOSTILE}], correct=None),
    ]
    report.write_html(records, tmp_path / "report.html", images=[image], settings={HOSTILE: HOSTILE})
    page = _Page()
    page.feed((tmp_path / "report.html").read_text(encoding="utf-8"))
    page.close()
    tags = {tag for tag, _ in page.tags}
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "table", "caption", "tr",
                    "th", "td", "a", "img", "div", "span", "b", "section", "svg", "rect", "text", "path", "line",
                    "polyline", "g", "circle", "details", "summary", "pre"}, tags
    assert "script" not in tags
    attributes = {name for _, attrs in page.tags for name in attrs}
    assert not [name for name in attributes if name.startswith("on")]
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 1 and images[0]["class"] == "plot" and images[0]["src"].startswith("data:image/png;base64,")
    assert images[0]["alt"] == image.stem
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]  # the steps that moved J most, to their trace
    assert links and set(links) <= {f"#trace-{HOSTILE}", "#trace-1"}
    assert HOSTILE not in "".join(page.text["style"])  # nothing closes the style element early
    # Each field arrives whole, as text or as an attribute's value.
    sections = [attrs["id"] for tag, attrs in page.tags if tag == "section"]
    assert sections == [f"trace-{HOSTILE}", "trace-1"]
    heading = "".join(page.text["h3"])
    assert heading.count(HOSTILE) == 3  # id, problem, sample
    assert f"answer {HOSTILE} · predicted {HOSTILE}" in "".join(page.text["p"])
    assert f"{HOSTILE}: {HOSTILE}" in "".join(page.text["p"])  # the settings line
    prompts = page.text["pre"]
    assert prompts == [HOSTILE, f"[{HOSTILE}] {HOSTILE}"]
    spans = "".join(page.text["span"])
    assert f"{HOSTILE} 0" in spans and f"{HOSTILE} 1" in spans and HOSTILE in spans  # paragraphs and tail
    titles = [attrs.get("title") or "" for tag, attrs in page.tags if tag == "span"]
    assert any(title.endswith(f"backtracking cue: {HOSTILE}") for title in titles)
