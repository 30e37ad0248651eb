"""The mechanism check, before any RL: on the SFT model's own sampled completions, do detour paragraphs
earn less process reward than progress paragraphs, and does J move less across them?

Every paragraph between two consecutive cut points is one line here (``--repro_delimiters line``, and k
above the number of lines). A paragraph is a detour or a progress step by its text (``task.is_detour``,
``task.is_progress``). The first paragraph is left out of the comparison: its reward r_1 = C_1 is
positive by construction (the baseline has no score before it), whatever the step does. So is the last,
which closes the thinking part with ``</think>`` (neither a detour nor a progress line by its text).

The same comparison is read back from ``repro score``'s own output on the same completions
(:func:`score_report`), so that its report.html, where each line is shaded by its reward, can be checked
against these figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from repro_core.data import chat_prompt

from .lm import SYSTEM_PROMPT, prompt_ids, sample
from .task import is_detour, is_progress, question

#: One completion's paragraphs after the first: (text, process reward, J's change across it).
Paragraphs = list[tuple[str, float, float]]


def check(model: Any, tokenizer: Any, rows: list[tuple[str, str]], *, seed: int, max_new_tokens: int,
          traces: Path) -> dict[str, Any]:
    """The check's figures over one sampled completion per problem of ``rows``; the completions are written
    to ``traces`` (JSONL: prompt as the model saw it, completion, answer) for ``repro score``."""
    from repro_core.pipeline import ReproConfig, ReproScorer

    questions = [question(word, letter) for word, letter in rows]
    completions = sample(model, tokenizer, questions, seed=seed, max_new_tokens=max_new_tokens)
    answers = [str(word.count(letter)) for word, letter in rows]
    scorer = ReproScorer(model, tokenizer, ReproConfig(k=64, delimiters="line"))
    evaluation, steps = scorer.evaluate([prompt_ids(tokenizer, q) for q in questions], completions, answers)
    completions_paragraphs: list[Paragraphs] = []
    for row, (start, stop) in enumerate(zip(evaluation.cuts.offsets[:-1], evaluation.cuts.offsets[1:], strict=True)):
        positions = evaluation.cuts.positions[start:stop]
        completions_paragraphs.append([
            (tokenizer.decode(completions[row][positions[j - 1]:positions[j]]), float(steps.reward[start + j]),
             float(evaluation.j[start + j] - evaluation.j[start + j - 1]))
            for j in range(2, len(positions))
        ])
    traces.write_text("".join(json.dumps({"prompt": chat_prompt(q, SYSTEM_PROMPT), "completion": tokenizer.decode(c),
                                          "answer": a}) + "\n"
                              for q, c, a in zip(questions, completions, answers, strict=True)))
    return summarise(completions_paragraphs)


def score_report(traces: Path, checkpoint: Path, out: Path) -> dict[str, Any]:
    """``repro score`` on ``traces`` with the SFT model, one paragraph per line and J after each (its report in
    ``out``), and the check's figures read back from its ``scores.jsonl``."""
    command = [sys.executable, "-m", "repro_core.analysis", str(traces), "--model_name_or_path", str(checkpoint),
               "--repro_delimiters", "line", "-o", str(out)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    completions_paragraphs = []
    for line in (out / "scores.jsonl").read_text().splitlines():
        record = json.loads(line)
        j, reward = record["j"], record["reward"]
        completions_paragraphs.append([(p["text"], reward[p["step"]], j[p["step"]] - j[p["step"] - 1])
                                       for p in record["paragraphs"] if p["step"] >= 2])
    return {"command": command, **summarise(completions_paragraphs)}


def summarise(completions_paragraphs: list[Paragraphs]) -> dict[str, Any]:
    """Mean (and standard error) of the process reward and of J's change over detour and progress paragraphs,
    and the share of the completions with both in which every detour scores below every progress step."""
    kinds: dict[str, dict[str, list[float]]] = {kind: {"reward": [], "delta_j": []} for kind in ("detour", "progress")}
    separated = eligible = 0
    for paragraphs in completions_paragraphs:
        rewards: dict[str, list[float]] = {"detour": [], "progress": []}
        for text, reward, delta_j in paragraphs:
            kind = "detour" if is_detour(text) else "progress" if is_progress(text) else None
            if kind is not None:
                rewards[kind].append(reward)
                kinds[kind]["reward"].append(reward)
                kinds[kind]["delta_j"].append(delta_j)
        if rewards["detour"] and rewards["progress"]:
            eligible += 1
            separated += max(rewards["detour"]) < min(rewards["progress"])
    summary: dict[str, Any] = {"completions": len(completions_paragraphs), "completions_with_both": eligible,
                               "every_detour_below_every_progress_step": separated / eligible if eligible else None}
    for kind, values in kinds.items():
        for name, series in values.items():
            array = np.asarray(series)
            summary[f"{kind}_{name}_mean"] = float(array.mean()) if len(array) else None
            summary[f"{kind}_{name}_sem"] = float(array.std(ddof=1) / np.sqrt(len(array))) if len(array) > 1 else None
        summary[f"{kind}_paragraphs"] = len(values["reward"])
    return summary


def print_check(summary: dict[str, Any], title: str) -> None:
    print(f"{title} ({summary['completions']} SFT completions, paragraphs 2..m-1):")
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
