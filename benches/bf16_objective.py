"""J in bfloat16 against float32, on the embedded model and real reasoning text.

The question (docs/semantics.md, "bf16"): how far J and the steps between cut points (ΔJ, what
the process rewards are made of) move when the policy runs in bf16, next to how large ΔJ
typically is, and whether the shared-prefix path is noisier than the per-cut forwards.

The embedded SmolLM2-135M-Instruct in float32 is the reference (per-cut J); the same weights cast
to bf16 are scored four ways: both modes, each with the output head's product in float32 (J's
default) and rounded to bf16 (the model's own head). The rollouts are the math solutions below,
each several paragraphs long, and, where the file exists, GSM8K test solutions (their steps as
paragraphs, calculator marks removed); the cut points are the k highest-entropy paragraph breaks
of the float32 model, the same for every variant.

    python benches/bf16_objective.py --json bf16.json        # the figures in benches/README.md
    python benches/bf16_objective.py --gsm8k none --rows 2   # a smoke run (tests/test_gpu_check.py)
    python benches/bf16_objective.py --device cuda           # on a GPU (benches/gpu_check.py runs it)
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

import repro_core as rc
from repro_core.objective import ObjectiveScorer
from repro_core.objective.model import ModelAdapter

GSM8K = Path("/work/shared/data/gsm8k/test.jsonl")

#: Problems and multi-paragraph solutions in the style of a reasoning model's rollouts.
SOLUTIONS = [
    ("A bakery sells muffins for $3 each and cookies for $1.50 each. On Monday it sold 48 muffins and "
     "twice as many cookies. How much money did it take in on Monday?",
     "Let me first find how many cookies were sold. Twice as many cookies as muffins means 2 * 48 = 96 "
     "cookies.\n\nNow the money from muffins: 48 muffins at $3 each is 48 * 3 = $144.\n\nThe money from "
     "cookies: 96 cookies at $1.50 each. Half of 96 is 48, so 96 * 1.5 = 96 + 48 = $144.\n\nWait, that is "
     "the same amount as the muffins. Let me double-check: 96 * 1.50 = 144. Yes, because twice as many "
     "items at half the price gives the same total.\n\nSo the total is 144 + 144 = $288.\n\nThe bakery took "
     "in $288 on Monday.", "288"),
    ("A train travels 180 km in 2 hours and then 240 km in 3 hours. What is its average speed over the "
     "whole trip, in km per hour?",
     "The average speed is the total distance divided by the total time, not the average of the two "
     "speeds.\n\nTotal distance: 180 + 240 = 420 km.\n\nTotal time: 2 + 3 = 5 hours.\n\nSo the average "
     "speed is 420 / 5 = 84 km per hour.\n\nLet me check this against the two legs. The first leg is "
     "180 / 2 = 90 km/h and the second is 240 / 3 = 80 km/h. The average has to lie between 80 and 90, "
     "and closer to 80 because more time was spent at 80. 84 fits.\n\nThe average speed is 84 km per hour.",
     "84"),
    ("Maria has 3 times as many marbles as Tom. Together they have 64 marbles. How many marbles does "
     "Maria have?",
     "Let t be the number of Tom's marbles. Then Maria has 3t.\n\nTogether: t + 3t = 64, so 4t = 64 and "
     "t = 16.\n\nMaria has 3 * 16 = 48 marbles.\n\nHmm, let me verify: 16 + 48 = 64, and 48 is three times "
     "16. Both conditions hold.\n\nMaria has 48 marbles.", "48"),
    ("A rectangle has a perimeter of 50 cm and its length is 5 cm more than its width. What is its area?",
     "Let the width be w. The length is w + 5.\n\nThe perimeter is 2 * (w + w + 5) = 4w + 10, and it "
     "equals 50. So 4w = 40 and w = 10.\n\nThe length is 10 + 5 = 15 cm.\n\nThe area is 10 * 15 = 150 "
     "square cm.\n\nCheck: 2 * (10 + 15) = 50. Correct.\n\nSo the area is 150 square centimetres.", "150"),
    ("A store marks a jacket up 40% over its cost, then sells it at 25% off the marked price. The sale "
     "price is $63. What did the jacket cost the store?",
     "Let c be the cost. The marked price is 1.4c.\n\nAt 25% off, the sale price is 0.75 * 1.4c = 1.05c.\n\n"
     "So 1.05c = 63, which gives c = 63 / 1.05 = 60.\n\nWait, let me redo the division to be sure: "
     "1.05 * 60 = 63. Yes.\n\nSo the store made a profit of only $3, or 5% of the cost, after the "
     "discount.\n\nThe jacket cost the store $60.", "60"),
    ("Three friends share a pizza bill. Ann pays twice what Ben pays, and Cal pays $4 more than Ben. "
     "The bill is $36. How much does Ann pay?",
     "Let Ben pay b dollars. Then Ann pays 2b and Cal pays b + 4.\n\nThe sum is b + 2b + b + 4 = 4b + 4 "
     "= 36.\n\nSo 4b = 32 and b = 8.\n\nAnn pays 2 * 8 = 16 dollars, and Cal pays 12.\n\nChecking the "
     "total: 8 + 16 + 12 = 36. Good.\n\nAnn pays $16.", "16"),
    ("A tank is filled by one pipe in 6 hours and emptied by a drain in 9 hours. With both open, how "
     "long does it take to fill the empty tank?",
     "The pipe fills 1/6 of the tank per hour. The drain empties 1/9 of the tank per hour.\n\nWith both "
     "open, the net rate is 1/6 - 1/9. The common denominator is 18, so this is 3/18 - 2/18 = 1/18 of "
     "the tank per hour.\n\nSo it takes 18 hours to fill the tank.\n\nThat is much slower than the pipe "
     "alone, which makes sense because the drain removes two thirds of what the pipe adds.\n\nIt takes "
     "18 hours.", "18"),
    ("The sum of three consecutive even numbers is 78. What is the largest of them?",
     "Let the numbers be n, n + 2 and n + 4.\n\nTheir sum is 3n + 6 = 78, so 3n = 72 and n = 24.\n\nThe "
     "numbers are 24, 26 and 28.\n\nActually, a quicker way: the middle number is the average, 78 / 3 = "
     "26, so the numbers are 24, 26, 28.\n\nThe largest is 28.", "28"),
]


def rollouts(tokenizer: Any, rows: int, gsm8k: Path | None) -> tuple[list[list[int]], list[list[int]], list[str]]:
    """Prompts (the chat template over the question), completions and answers: the solutions
    above, then GSM8K's, up to ``rows``."""
    problems = list(SOLUTIONS)
    if gsm8k is not None and gsm8k.exists():
        for line in gsm8k.read_text().splitlines():
            record = json.loads(line)
            steps, answer = record["answer"].split("####")
            steps = [re.sub(r"<<[^>]*>>", "", step).strip() for step in steps.strip().splitlines()]
            if len(steps) >= 3:  # several paragraphs, so several cut points
                problems.append((record["question"], "\n\n".join(steps), answer.strip().replace(",", "")))
    prompts, completions, answers = [], [], []
    for question, solution, answer in problems[:rows]:
        prompts.append(tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=True,
                                                     add_generation_prompt=True, return_dict=True)["input_ids"])
        completions.append(tokenizer(solution, add_special_tokens=False)["input_ids"])
        answers.append(answer)
    return prompts, completions, answers


@contextmanager
def head_in_model_dtype() -> Iterator[None]:
    """J with the head's product rounded to the model's dtype (the model's own head), for comparison."""
    default = ModelAdapter.logits
    ModelAdapter.logits = lambda self, hidden, **_: default(self, hidden)
    try:
        yield
    finally:
        ModelAdapter.logits = default


def errors(j: np.ndarray, reference: np.ndarray, offsets: np.ndarray) -> dict[str, float]:
    """|J - reference| and |ΔJ - ΔJ reference| between consecutive cut points of a row: max and mean."""
    delta, delta_ref = steps(j, offsets), steps(reference, offsets)
    j_error, delta_error = np.abs(j - reference), np.abs(delta - delta_ref)
    flipped = np.sign(delta) != np.sign(delta_ref)  # steps whose direction bf16 reverses
    return {"j_max": float(j_error.max()), "j_mean": float(j_error.mean()),
            "delta_j_max": float(delta_error.max()), "delta_j_mean": float(delta_error.mean()),
            "delta_j_sign_flips": int(flipped.sum()),
            "largest_flipped_step": float(np.abs(delta_ref[flipped]).max(initial=0.0))}


def steps(j: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """ΔJ between consecutive cut points of each row."""
    return np.concatenate([np.diff(j[offsets[b]:offsets[b + 1]]) for b in range(len(offsets) - 1)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=16, help="rollouts: the solutions above, then GSM8K's")
    parser.add_argument("--gsm8k", default=str(GSM8K), help="GSM8K's test.jsonl, read if it exists; 'none' to skip")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of the shared path (the fastest kept)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    from repro_core.assets import load_default_model

    model32, tokenizer = load_default_model(device=args.device)
    model16 = copy.deepcopy(model32).to(torch.bfloat16)
    gsm8k = None if args.gsm8k == "none" else Path(args.gsm8k)
    prompts, completions, answers = rollouts(tokenizer, args.rows, gsm8k)
    select = functools.partial(rc.select_cuts, delimiters=rc.Delimiters.from_tokenizer(tokenizer), k=args.k)
    cuts = ObjectiveScorer(model32, tokenizer).evaluate(prompts, completions, answers, select).cuts

    def score(model: Any, mode: str) -> tuple[np.ndarray, float]:
        """J, and the fastest of ``--repeats`` calls' seconds (per_cut: one call)."""
        best = float("inf")
        for _ in range(args.repeats if mode == "shared" else 1):
            started = time.perf_counter()
            j = ObjectiveScorer(model, tokenizer, mode=mode).score(prompts, completions, answers, cuts.offsets,
                                                                   cuts.positions)
            if args.device != "cpu":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
        return j, best

    reference, _ = score(model32, "per_cut")
    shared32, _ = score(model32, "shared")
    variants: dict[str, dict[str, float]] = {}
    # Warm-up: bf16 kernels and the allocator, on one row.
    ObjectiveScorer(model16, tokenizer).score(prompts[:1], completions[:1], answers[:1], [0, 1], [0])
    for mode in ("shared", "per_cut"):
        j, seconds = score(model16, mode)
        variants[f"{mode}, head in float32"] = {**errors(j, reference, cuts.offsets), "seconds": seconds}
        with head_in_model_dtype():
            j, seconds = score(model16, mode)
        variants[f"{mode}, head in bf16"] = {**errors(j, reference, cuts.offsets), "seconds": seconds}
    delta = np.abs(steps(reference, cuts.offsets))
    report = {
        "device": torch.cuda.get_device_name() if args.device != "cpu" else "cpu",
        "rows": len(prompts), "completion_tokens": int(sum(map(len, completions))),
        "cut_points": int(len(cuts.positions)), "steps": int(len(delta)),
        "typical_abs_delta_j": {"mean": float(delta.mean()), "median": float(np.median(delta)),
                                "p10": float(np.quantile(delta, 0.1))},
        "float32_shared_vs_per_cut_max": float(np.abs(shared32 - reference).max()),
        "bf16_against_float32": variants,
    }
    print(f"{report['rows']} rollouts, {report['completion_tokens']} completion tokens, {report['cut_points']} cut "
          f"points, {report['steps']} steps; |ΔJ| float32: mean {delta.mean():.4f}, median {np.median(delta):.4f}")
    print(f"{'bf16 against float32':<26s} {'J max':>8s} {'J mean':>8s} {'ΔJ max':>8s} {'ΔJ mean':>8s} "
          f"{'flips':>6s} {'< |ΔJ|':>8s} {'seconds':>8s}")
    for name, v in variants.items():
        print(f"{name:<26s} {v['j_max']:8.4f} {v['j_mean']:8.4f} {v['delta_j_max']:8.4f} {v['delta_j_mean']:8.4f} "
              f"{v['delta_j_sign_flips']:6d} {v['largest_flipped_step']:8.4f} {v['seconds']:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
