"""The terminal summary of ``repro score``: one row per trace, then the means by outcome. A completion that hit
the token limit (the record's ``truncated``) is marked "cut" after its number: its J curve ends mid-sentence."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["print_table"]


def print_table(records: Sequence[dict[str, Any]], console: Console, *, max_rows: int = 30) -> None:
    """The terminal summary: one row per trace (the first ``max_rows``), then the means by outcome."""
    from rich import box
    from rich.table import Table

    from ..report import is_truncated, summarize

    def number(value: float | None, digits: int = 3, sign: bool = False) -> str:
        if value is None or math.isnan(value):
            return "–"
        return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"

    table = Table(title="RePro scores", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    names = ("trace", "correct", "tokens", "paras", "backtracks", "J_b", "J_end", "mean r")
    for name in names:
        table.add_column(name, justify="left" if name in ("trace", "correct") else "right", no_wrap=True)
    marks = {True: "[green]yes[/]", False: "[red]no[/]", None: "–"}
    for record in records[:max_rows]:
        cut = " [yellow]cut[/]" if is_truncated(record) else ""
        table.add_row(f"{record['id']}{cut}", marks[record["correct"]], str(record["tokens"]),
                      str(record["num_paragraphs"]), str(record["backtracks"]), number(record["j_baseline"]),
                      number(record["j_end"]), number(record["mean_reward"], 3, True))
    if len(records) > max_rows:
        table.add_row(f"… {len(records) - max_rows} more", *[""] * (len(names) - 1))
    table.add_section()
    summaries = summarize(records)
    for summary in summaries:
        accuracy = "–" if summary.accuracy is None else f"{summary.correct}/{summary.graded}"
        table.add_row(f"{summary.label} ({summary.count})", accuracy, number(summary.tokens, 1),
                      number(summary.paragraphs, 1), number(summary.backtracks, 2), number(summary.j_baseline),
                      number(summary.j_end), number(summary.mean_reward, 3, True), style="bold")
    table.caption = "bold rows: means over the correct, incorrect and all traces"
    truncated = summaries[-1].truncated  # the last summary is over all traces
    if truncated:
        table.caption += (f"\ncut: the completion hit the token limit ({truncated} of {len(records)}), so its J "
                          "curve ends mid-sentence")
    table.caption_justify = "left"
    console.print(table)
