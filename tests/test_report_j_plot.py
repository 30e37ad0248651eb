"""``j_curves.png`` (``repro_core.report.j_curves_figure``) on hand-built records: J against the fraction of each
trace (one long trace squashes none), the ``#id`` labels right of the ends (the first ``LABELLED_TRACES``, never
covering each other, inside the axes), the dashed truncated traces, and the mean J's band only from
``MIN_BAND_TRACES`` traces, its legend saying n."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro_core import report
from test_report import make_record

pytest.importorskip("matplotlib")


def test_the_j_plot_labels_each_line_with_its_trace_id_and_dashes_truncated_ones() -> None:
    records = [make_record(i, [0.1 * i, -0.05], truncated=i == 1, correct=i != 2) for i in range(3)]
    figure = report.j_curves_figure(records)
    traces, means = figure.axes
    assert sorted(text.get_text() for text in traces.texts) == ["#0", "#1", "#2"]
    for text, record in zip(sorted(traces.texts, key=lambda t: t.get_text()), records, strict=True):
        assert text.xy == (1.0, record["j"][-1])  # at the end of its own line, at the end of the thinking part
        assert text.get_color() == report.OUTCOME_COLORS[record["correct"]]
    assert [line.get_linestyle() for line in traces.lines] == ["-", "--", "-"]
    assert "truncated (hit the token limit)" in [t.get_text() for t in traces.get_legend().get_texts()]
    assert traces.get_title() == "J along each trace (#id at its end)"
    assert [t.get_text() for t in means.get_legend().get_texts()] == ["correct (n=2, 1 truncated, no band)",
                                                                      "incorrect (n=1, no band)"]


def test_the_j_plot_labels_the_first_traces_only_and_says_so() -> None:
    count = report.LABELLED_TRACES + 5
    figure = report.j_curves_figure([make_record(i, [0.1, 0.01 * i]) for i in range(count)])
    traces = figure.axes[0]
    assert [text.get_text() for text in sorted(traces.texts, key=lambda t: int(t.get_text()[1:]))] == \
        [f"#{i}" for i in range(report.LABELLED_TRACES)]
    assert traces.get_title().endswith(f"(#id at its end: the first {report.LABELLED_TRACES} of {count})")
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


def test_one_long_trace_squashes_none_of_the_others() -> None:
    # One trace of 1000 tokens beside two of 20: each is drawn over the whole axis, its cut points as fractions.
    short = make_record(0, [0.1, 0.2])
    other = make_record(1, [0.1, -0.1])
    long = make_record(2, [0.01] * 100)  # 100 paragraphs of 10 tokens
    traces = report.j_curves_figure([short, other, long]).axes[0]
    for line, record in zip(traces.lines, (short, other, long), strict=True):
        x = list(line.get_xdata())
        assert x == [point / record["cut_points"][-1] for point in record["cut_points"]]
        assert (x[0], x[-1]) == (0.0, 1.0)
    assert traces.get_xlabel() == "fraction of the thinking part"


def draw(figure) -> list:
    """Draw ``figure`` and return the window boxes of its per-trace plot's labels (the text, not the leader)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    return [Text.get_window_extent(label, renderer) for label in figure.axes[0].texts]


def test_labels_of_close_ends_are_spread_inside_the_axes() -> None:
    # Twenty traces whose J ends within 0.02 of each other: twenty labels, none covering another, all inside the
    # plot's height, each joined to its end by a leader line where it had to move.
    records = [make_record(i, [0.1, 0.2], j=[-3.0, -2.5, -2.0 + 0.001 * i]) for i in range(report.LABELLED_TRACES)]
    figure = report.j_curves_figure(records)
    boxes = draw(figure)
    axes = figure.axes[0].get_window_extent()
    assert len(boxes) == report.LABELLED_TRACES
    for a in range(len(boxes)):
        assert axes.y0 <= boxes[a].y0 and boxes[a].y1 <= axes.y1
        for b in range(a + 1, len(boxes)):
            assert not boxes[a].overlaps(boxes[b])
    assert any(label.arrow_patch is not None for label in figure.axes[0].texts)


def test_labels_of_distant_ends_stay_at_their_ends() -> None:
    records = [make_record(i, [0.1, 0.2], j=[-3.0, -2.5, end]) for i, end in enumerate((-4.0, -2.0, -0.5))]
    figure = report.j_curves_figure(records)
    draw(figure)
    for label in figure.axes[0].texts:
        assert label.arrow_patch is None and label.xyann == (3, 0)  # 3 points right of its end, no leader


@pytest.mark.parametrize("count", [report.MIN_BAND_TRACES - 1, report.MIN_BAND_TRACES])
def test_the_mean_j_band_needs_enough_traces(count: int) -> None:
    from matplotlib.collections import PolyCollection

    records = [make_record(i, [0.1, 0.2], j=[-3.0, -2.5 - 0.1 * i, -2.0]) for i in range(count)]
    records.append(make_record(count, [0.1], correct=False))
    means = report.j_curves_figure(records).axes[1]
    bands = [c for c in means.collections if isinstance(c, PolyCollection)]
    banded = count >= report.MIN_BAND_TRACES
    assert len(bands) == int(banded)  # the incorrect trace alone never has one
    assert [t.get_text() for t in means.get_legend().get_texts()] == [
        f"correct (n={count})" if banded else f"correct (n={count}, no band)", "incorrect (n=1, no band)"]
    assert f"for n ≥ {report.MIN_BAND_TRACES}" in means.get_title()
