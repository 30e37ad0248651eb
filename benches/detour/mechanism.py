"""The mechanism check, before any RL: on the SFT model's own sampled completions, do detour paragraphs
earn less process reward than progress paragraphs, and does J move less across them?

Every paragraph between two consecutive cut points is one line here (``--repro_delimiters line``, and k
above the number of lines). A paragraph is a detour or a progress step by its text (``task.is_detour``,
``task.is_progress``). The first paragraph is left out of the comparison: its reward r_1 = C_1 is
positive by construction (the baseline has no score before it), whatever the step does. So is the last,
which closes the thinking part with ``</think>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .lm import prompt_ids, sample
from .task import is_detour, is_progress, question


def check(model: Any, tokenizer: Any, rows: list[tuple[str, str]], *, seed: int, max_new_tokens: int,
          traces: Path | None = None) -> dict[str, Any]:
    """The check's figures over one sampled completion per problem of ``rows`` (and, with ``traces``, a
    JSONL file of them for ``repro score``)."""
    from repro_core.pipeline import ReproConfig, ReproScorer

    questions = [question(word, letter) for word, letter in rows]
    completions = sample(model, tokenizer, questions, seed=seed, max_new_tokens=max_new_tokens)
    answers = [str(word.count(letter)) for word, letter in rows]
    scorer = ReproScorer(model, tokenizer, ReproConfig(k=64, delimiters="line"))
    evaluation, steps = scorer.evaluate([prompt_ids(tokenizer, q) for q in questions], completions, answers)
    kinds: dict[str, dict[str, list[float]]] = {kind: {"reward": [], "delta_j": []} for kind in ("detour", "progress")}
    separated = eligible = 0
    for row, (start, stop) in enumerate(zip(evaluation.cuts.offsets[:-1], evaluation.cuts.offsets[1:], strict=True)):
        positions = evaluation.cuts.positions[start:stop]
        rewards = {"detour": [], "progress": []}
        for j in range(2, len(positions) - 1):  # the first and the last paragraph aside (module docstring)
            text = tokenizer.decode(completions[row][positions[j - 1]:positions[j]]).strip()
            kind = "detour" if is_detour(text) else "progress" if is_progress(text) else None
            if kind is None:
                continue
            rewards[kind].append(float(steps.reward[start + j]))
            kinds[kind]["reward"].append(float(steps.reward[start + j]))
            kinds[kind]["delta_j"].append(float(evaluation.j[start + j] - evaluation.j[start + j - 1]))
        if rewards["detour"] and rewards["progress"]:
            eligible += 1
            separated += max(rewards["detour"]) < min(rewards["progress"])
    if traces is not None:
        traces.write_text("".join(json.dumps({"prompt": q, "completion": tokenizer.decode(c), "answer": a}) + "\n"
                                  for q, c, a in zip(questions, completions, answers, strict=True)))
    summary: dict[str, Any] = {"completions": len(completions), "completions_with_both": eligible,
                               "every_detour_below_every_progress_step": separated / eligible if eligible else None}
    for kind, values in kinds.items():
        for name, series in values.items():
            array = np.asarray(series)
            summary[f"{kind}_{name}_mean"] = float(array.mean()) if len(array) else None
            summary[f"{kind}_{name}_sem"] = float(array.std(ddof=1) / np.sqrt(len(array))) if len(array) > 1 else None
        summary[f"{kind}_paragraphs"] = len(values["reward"])
    return summary


def print_check(summary: dict[str, Any]) -> None:
    print(f"mechanism check on {summary['completions']} SFT completions (paragraphs 2..m-1):")
    for kind in ("progress", "detour"):
        reward, delta = summary[f"{kind}_reward_mean"], summary[f"{kind}_delta_j_mean"]
        if reward is None:
            print(f"  {kind:<8s}: none")
            continue
        reward_sem, delta_sem = summary[f"{kind}_reward_sem"] or 0.0, summary[f"{kind}_delta_j_sem"] or 0.0
        print(f"  {kind:<8s}: {summary[f'{kind}_paragraphs']:>5d} paragraphs, process reward {reward:+.4f} "
              f"+- {reward_sem:.4f}, J change {delta:+.4f} +- {delta_sem:.4f} (mean +- standard error)")
    share = summary["every_detour_below_every_progress_step"]
    if share is not None:
        print(f"  every detour below every progress step in {share:.0%} of the {summary['completions_with_both']} "
              "completions with both")
