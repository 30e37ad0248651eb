"""The J workload shared by ``bench_objective.py`` (CPU, pytest-benchmark) and ``gpu_objective.py``
(CUDA script): rollouts of reasoning text, the methods timed, and the ratios reported.

Methods, all on the same rollouts and the same token budget per forward call:
- ``bare``: one no-grad forward returning only the last logit (``logits_to_keep=1``);
- ``forward_entropies``: the yardstick of docs/method.md ("Shared-prefix J"), a no-grad forward
  with the entropy at every completion position (what an RL trainer runs anyway):
  ``ObjectiveScorer.entropies``;
- ``shared``: J at the given cut points, shared-prefix mode (a prefix pass keeping the KV cache,
  then the probes against it): ``ObjectiveScorer.score``;
- ``evaluate``: what the pipeline runs: the entropy pass, cut selection (Rust) and J from the
  probes against that pass's cache: ``ObjectiveScorer.evaluate``;
- ``per_cut``: J with one sequence per cut point: ``ObjectiveScorer.score(mode="per_cut")``.
"""

from __future__ import annotations

import functools
import os
import random
import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import repro_core as rc  # noqa: E402
import tiny  # noqa: E402
from repro_core.objective import ObjectiveScorer  # noqa: E402

METHODS = ("bare", "forward_entropies", "shared", "evaluate", "per_cut")
LABELS = {
    "bare": "bare forward (last logit only)",
    "forward_entropies": "forward + entropies (yardstick)",
    "shared": "J shared (prefix pass + probes)",
    "evaluate": "entropies + cuts + J shared (pipeline)",
    "per_cut": "J per cut (one sequence per cut)",
}


@dataclass
class Workload:
    model: Any
    tokenizer: Any
    prompts: list[list[int]]
    completions: list[list[int]]
    answers: list[str]
    select: Callable[..., rc.Cuts]
    cuts: rc.Cuts
    max_batch_tokens: int

    def scorer(self, mode: str = "shared") -> ObjectiveScorer:
        return ObjectiveScorer(self.model, self.tokenizer, mode=mode, max_batch_tokens=self.max_batch_tokens)

    def run(self, method: str) -> Any:
        if method == "bare":
            return bare_forward(self.model, self.prompts, self.completions, self.max_batch_tokens)
        if method == "forward_entropies":
            return self.scorer().entropies(self.prompts, self.completions)
        if method == "evaluate":
            return self.scorer().evaluate(self.prompts, self.completions, self.answers, self.select)
        mode = "per_cut" if method == "per_cut" else "shared"
        return self.scorer(mode).score(self.prompts, self.completions, self.answers, self.cuts.offsets,
                                       self.cuts.positions)

    @property
    def tokens(self) -> int:
        return sum(map(len, self.prompts)) + sum(map(len, self.completions))


def reasoning_ids(tokenizer: Any, length: int, rng: random.Random) -> list[int]:
    """Paragraphs of reasoning text, tokenized, cut to ``length`` tokens."""
    ids: list[int] = []
    while len(ids) < length:
        ids += tokenizer(tiny.reasoning_text(rng, 8) + "\n\n", add_special_tokens=False)["input_ids"]
    return ids[:length]


def build(model: Any, tokenizer: Any, lengths: list[int], *, k: int = 20, max_batch_tokens: int = 16384,
          seed: int = 0) -> Workload:
    """Rollouts with prompts of 40 to 120 tokens and completions of the given lengths; cuts from
    the model's own entropies (k highest-entropy paragraph breaks)."""
    rng = random.Random(seed)
    prompts = [reasoning_ids(tokenizer, rng.randint(40, 120), rng) for _ in lengths]
    completions = [reasoning_ids(tokenizer, n, rng) for n in lengths]
    answers = [str(rng.randint(1, 999)) for _ in lengths]
    select = functools.partial(rc.select_cuts, delimiters=rc.Delimiters.from_tokenizer(tokenizer), k=k)
    cuts = ObjectiveScorer(model, tokenizer, max_batch_tokens=max_batch_tokens).evaluate(
        prompts, completions, answers, select
    ).cuts
    return Workload(model, tokenizer, prompts, completions, answers, select, cuts, max_batch_tokens)


def bare_forward(model: Any, prompts: list[list[int]], completions: list[list[int]], budget: int) -> None:
    """Left-padded rows through the model, chunked by the same budget, keeping one logit per row."""
    device = next(model.parameters()).device
    rows = sorted(range(len(prompts)), key=lambda b: -(len(prompts[b]) + len(completions[b])))
    width = len(prompts[rows[0]]) + len(completions[rows[0]])
    per_call = max(1, budget // width)
    with torch.no_grad():
        for start in range(0, len(rows), per_call):
            chunk = [prompts[b] + completions[b] for b in rows[start : start + per_call]]
            longest = max(map(len, chunk))
            ids = torch.zeros((len(chunk), longest), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, seq in enumerate(chunk):
                ids[i, longest - len(seq) :] = torch.tensor(seq)
                mask[i, longest - len(seq) :] = 1
            model(input_ids=ids.to(device), attention_mask=mask.to(device),
                  position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device), logits_to_keep=1)


#: The ratios the objective issues set targets on: (numerator, denominator, name, target).
RATIOS = [
    ("evaluate", "forward_entropies", "pipeline / yardstick", "target <= 1.3 on the GPU"),
    ("shared", "bare", "J shared / bare forward", ""),
    # verl's shared path runs exactly ObjectiveScorer.score in each actor worker, whose
    # old-log-prob pass is the yardstick's work (log-probs and entropies).
    ("shared", "forward_entropies", "J shared / yardstick (verl worker)", "target <= 1.3 on the GPU"),
    ("per_cut", "shared", "J per cut / J shared", "target >= 8"),
    ("forward_entropies", "bare", "yardstick / bare forward", ""),
]


def ratios(times: dict[str, float]) -> dict[str, float]:
    """The ratios of ``RATIOS`` that ``times`` has both sides of, by name."""
    return {name: times[a] / times[b] for a, b, name, _ in RATIOS if a in times and b in times}


def ratio_lines(times: dict[str, float]) -> list[str]:
    """The table in ms and the ratios the objective issue sets targets on."""
    lines = [f"    {LABELS[m]:<42s} {times[m] * 1e3:11.1f} ms" for m in METHODS if m in times]
    values = ratios(times)
    lines += [f"    {name:<42s} {values[name]:11.2f}x   {target}" for _, _, name, target in RATIOS if name in values]
    return lines
