"""``rewards.png``: the process reward of each paragraph against its index, backtracking against other paragraphs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .files import save_figure
from .traces import OUTCOME_COLORS, OUTCOME_LABELS, Record, step_cues

__all__ = ["plot_rewards"]


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
            if i > 1:  # r_1 = C_1 is a level, not a change (traces.step_shades): it would swamp it
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
    save_figure(figure, path)
