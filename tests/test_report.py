"""``repro_core.report`` on hand-built records (no model): the fixed colour scale of ``write_html`` (``color_max``)
and its saturation, the truncated marks in the page and the J plot, the ``#id`` labels of the per-trace J plot, and
every field of a record escaped in the page."""

from __future__ import annotations

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
                prompt: Any = "What is 6 * 7?", problem: Any = 0, sample: Any = 0, tail: str = "") -> dict[str, Any]:
    """A record as ``repro_core.analysis.score_traces`` writes it (docs/score.md, ``scores.jsonl``): one paragraph per
    step, rewards r_1..r_m as given; ``truncated=None`` leaves the field out, as in files written before it."""
    steps = len(rewards)
    cut_points = [10 * i for i in range(steps + 1)]
    j = [-3.0 + 0.25 * i for i in range(steps + 1)]
    paragraphs = [{"start": cut_points[i], "end": cut_points[i + 1], "text": text.format(i=i) + "\n\n",
                   "cue": cue if i == 1 else None, "step": i + 1} for i in range(steps)]
    record = {
        "id": trace_id, "problem": problem, "sample": sample, "prompt": prompt, "answer": answer,
        "completion": "".join(p["text"] for p in paragraphs) + tail, "predicted": predicted, "correct": correct,
        "tokens": cut_points[-1], "thinking_tokens": cut_points[-1], "num_paragraphs": steps,
        "backtracks": int(cue is not None and steps > 1), "j_baseline": j[0], "j_end": j[-1],
        "mean_reward": sum(rewards) / steps if steps else None, "cut_points": cut_points, "j": j,
        "magnitude": [0.0, *[0.5] * steps], "stability": [0.0, *[0.5] * steps], "score": [0.0, *[0.4] * steps],
        "reward": [0.0, *rewards], "paragraphs": paragraphs, "tail": tail,
    }
    if truncated is not None:
        record["truncated"] = truncated
    return record


def paragraph_colors(page: str) -> list[str]:
    """The background of every paragraph span, in page order."""
    return re.findall(r'<span class="para(?: bt)?" style="background:(#[0-9a-f]{6})"', page)


def scale_legend(page: str) -> str:
    """The part of the page that shows the colour scale: the legend's bar with its two ends, and the bar's CSS."""
    bar = re.search(r"process reward r: <b>[^<]*</b> <span class=\"bar\"></span> <b>[^<]*</b>", page)
    css = re.search(r"\.bar \{[^}]*\}", page)
    assert bar and css
    return bar.group(0) + css.group(0)


def sections(page: str) -> dict[str, str]:
    """The HTML of each trace's section, by its ``id`` attribute."""
    return dict(re.findall(r'<section class="trace" id="([^"]*)">(.*?)</section>', page, flags=re.S))


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
    assert "r in this report: -0.100 to +0.100" in small_page
    assert "r in this report: -0.400 to +0.300" in large_page


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
    assert ['stroke-dasharray' in by_id[f"trace-{i}"] for i in range(4)] == [True, False, False, True]
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


# ------------------------------------------------------------------------------------------------ J plot


def test_the_j_plot_labels_each_line_with_its_trace_id_and_dashes_truncated_ones() -> None:
    records = [make_record(i, [0.1 * i, -0.05], truncated=i == 1, correct=i != 2) for i in range(3)]
    figure = report.j_curves_figure(records)
    traces, means = figure.axes
    assert sorted(text.get_text() for text in traces.texts) == ["#0", "#1", "#2"]
    for text, record in zip(sorted(traces.texts, key=lambda t: t.get_text()), records, strict=True):
        assert text.xy == (record["cut_points"][-1], record["j"][-1])  # at the end of its own line
        assert text.get_color() == report.OUTCOME_COLORS[record["correct"]]
    assert [line.get_linestyle() for line in traces.lines] == ["-", "--", "-"]
    assert "truncated (hit the token limit)" in [t.get_text() for t in traces.get_legend().get_texts()]
    assert "#id at the line's end" in traces.get_title()
    assert [t.get_text() for t in means.get_legend().get_texts()] == ["correct (n=2, 1 truncated)",
                                                                      "incorrect (n=1)"]


def test_the_j_plot_labels_the_first_traces_only_and_says_so() -> None:
    count = report.LABELLED_TRACES + 5
    figure = report.j_curves_figure([make_record(i, [0.1, 0.01 * i]) for i in range(count)])
    traces = figure.axes[0]
    assert [text.get_text() for text in sorted(traces.texts, key=lambda t: int(t.get_text()[1:]))] == \
        [f"#{i}" for i in range(report.LABELLED_TRACES)]
    assert f"first {report.LABELLED_TRACES} of {count}" in traces.get_title()
    assert "truncated" not in [t.get_text() for t in traces.get_legend().get_texts()]


def test_labels_of_lines_that_end_at_one_point_do_not_cover_each_other() -> None:
    # Ten truncated traces that end at the same token with the same J: their labels are stacked, not drawn over
    # each other.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    figure = report.j_curves_figure([make_record(i, [0.1, 0.2], truncated=True) for i in range(10)])
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    boxes = [Text.get_window_extent(label, renderer) for label in figure.axes[0].texts]  # the text, not its leader
    assert len(boxes) == 10
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            assert not boxes[a].overlaps(boxes[b]), (figure.axes[0].texts[a], figure.axes[0].texts[b])


def test_the_j_plot_saves_any_trace_id_as_plain_text(tmp_path: Path) -> None:
    # A "$" would start matplotlib's mathtext, and an unbalanced one fails to draw.
    records = [make_record("a $ b $\\frac{", [0.1]), make_record("<x>", [0.2])]
    report.plot_j_curves(records, tmp_path / "j_curves.png")
    assert (tmp_path / "j_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(t.get_text() for t in report.j_curves_figure(records).axes[0].texts) == ["#<x>", "#a $ b $\\frac{"]


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
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "table", "tr", "th", "td",
                    "img", "div", "span", "b", "section", "svg", "rect", "text", "polyline", "g", "circle", "details",
                    "summary", "pre"}, tags
    assert "script" not in tags
    attributes = {name for _, attrs in page.tags for name in attrs}
    assert not [name for name in attributes if name.startswith("on")]
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 1 and images[0]["class"] == "plot" and images[0]["src"].startswith("data:image/png;base64,")
    assert images[0]["alt"] == image.stem
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
