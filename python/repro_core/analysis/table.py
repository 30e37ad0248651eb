"""The terminal summary of ``repro score``: one row per trace, led by ΔJ = J_end - J_b (how much the thinking part
raised J), then the means by outcome, and a caption that says where J was measured (repro train's unset k differs). A
completion that hit the token limit (the record's ``truncated``) is marked "cut" after its number: its J curve ends
mid-sentence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["cut_points_note", "print_table"]


def print_table(records: Sequence[dict[str, Any]], console: Console, *, max_rows: int = 30) -> None:
    """The terminal summary: one row per trace (the first ``max_rows``), then the means by outcome."""
    from rich import box
    from rich.table import Table

    from ..report import is_truncated, j_gain, summarize
    from ..report.text import number

    table = Table(title="RePro scores", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    names = ("trace", "correct", "ΔJ", "J_b", "J_end", "tokens", "paras", "backtracks")
    for name in names:
        table.add_column(name, justify="left" if name in ("trace", "correct") else "right", no_wrap=True)
    marks = {True: "[green]yes[/]", False: "[red]no[/]", None: "–"}
    for record in records[:max_rows]:
        cut = " [yellow]cut[/]" if is_truncated(record) else ""
        table.add_row(f"{record['id']}{cut}", marks[record["correct"]], number(j_gain(record), sign=True),
                      number(record["j_baseline"]), number(record["j_end"]), str(record["tokens"]),
                      str(record["num_paragraphs"]), str(record["backtracks"]))
    if len(records) > max_rows:
        table.add_row(f"… {len(records) - max_rows} more", *[""] * (len(names) - 1))
    table.add_section()
    summaries = summarize(records)
    for summary in summaries:
        accuracy = "–" if summary.accuracy is None else f"{summary.correct}/{summary.graded}"
        table.add_row(f"{summary.label} ({summary.count})", accuracy, number(summary.j_gain, sign=True),
                      number(summary.j_baseline), number(summary.j_end), number(summary.tokens, 1),
                      number(summary.paragraphs, 1), number(summary.backtracks, 2), style="bold")
    table.caption = ("ΔJ = J_end - J_b: how much the thinking part raised J, the log-probability of the right "
                     f"answer (negative: it lowered it)\n{cut_points_note(records)}\n"
                     "bold rows: means over the correct, incorrect and all traces")
    truncated = summaries[-1].truncated  # the last summary is over all traces
    if truncated:
        table.caption += (f"\ncut: the completion hit the token limit ({truncated} of {len(records)}), so its J "
                          "curve ends mid-sentence")
    table.caption_justify = "left"
    console.print(table)


def cut_points_note(records: Sequence[dict[str, Any]]) -> str:
    """Where J was measured in ``records``: after every paragraph (repro score's default, which repro train's unset
    k is not) or at the top-k breaks only (``--repro_k``)."""
    from ..config import ReproConfig

    merged = sum(len(r["cut_points"]) - 1 < r["num_paragraphs"] for r in records)
    if merged:
        return (f"J at the --repro_k highest-entropy paragraph breaks: in {merged} of {len(records)} traces a step "
                "holds several paragraphs")
    return (f"J after every paragraph (repro score's default; repro train's default k = {ReproConfig.k} cuts only at "
            f"the {ReproConfig.k} highest-entropy breaks: --repro_k {ReproConfig.k} scores as it does)")
