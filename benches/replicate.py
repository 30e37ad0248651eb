"""Does RePro change training? GRPO and GRPO + RePro side by side, several seeds each.

Every arm runs ``repro train`` on the same task, held-out evaluation problems, seeds and budget;
arms differ only in their RePro flags. Each run evaluates before training and every
``--eval-steps`` steps (TRL's evaluation, completions drawn from a fixed seed): accuracy
(``boxed_accuracy``), mean completion tokens, share of clipped completions, paragraphs and
backtracking paragraphs per completion, and J_end - J_b (``repro_core.behaviour``).

    python benches/replicate.py --out replication              # the CPU experiment of the README
    python benches/replicate.py --out replication --seeds 0 1 2 --max-steps 12 --arm alpha0.3="--repro_alpha 0.3"
    python benches/replicate.py --smoke --out /tmp/smoke        # two steps, one seed, one evaluation problem
    python benches/replicate.py --measure --out tasks           # the untrained model's accuracy on candidate tasks

It writes ``replication.json`` (per arm, per seed, per evaluation step: every metric),
``replication.png`` (accuracy and mean completion tokens against step: the mean over seeds per arm,
the band their range) and prints a summary table. That table gives each arm's last evaluation, mean
over seeds with their standard deviation, and each arm's difference to the first arm with its
spread, twice the standard error of the difference. A difference smaller than its spread is
reported as none. Each run's own output (``repro train``'s files) stays under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: The task: reasoning-gym's basic_arithmetic, additions of two one-digit numbers. The embedded 135M
#: model adds them right but seldom writes the sum in \boxed{}, so the outcome reward is rare; the
#: harder candidates below score 0 (``--measure``; README, "Does it work?").
TASK = ["--dataset", "reasoning-gym:basic_arithmetic", "--task_config",
        '{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"], '
        '"allow_negation": false, "allow_parentheses": false}']
#: What ``--measure`` compares: the task above and harder neighbours.
CANDIDATES = {
    "basic_arithmetic +, 2 terms, 1 digit": TASK,
    "basic_arithmetic + - * /, 2 terms, 1 digit": [
        "--dataset", "reasoning-gym:basic_arithmetic",
        "--task_config", '{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}'],
    "basic_arithmetic + - * /, 2 terms, 1-2 digits": [
        "--dataset", "reasoning-gym:basic_arithmetic",
        "--task_config", '{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}'],
    "chain_sum, 2 terms, 1 digit": [
        "--dataset", "reasoning-gym:chain_sum",
        "--task_config", '{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}'],
}
#: The arms every run has: plain GRPO first (the reference of the differences), then with RePro.
ARMS = {"grpo": ["--repro_enabled", "false"], "grpo+repro": ["--repro_enabled", "true"]}
#: Metric name in the table and JSON -> the key TRL's evaluation logs it under in metrics.jsonl.
METRICS = {
    "accuracy": "eval_rewards/boxed_accuracy/mean",
    "completion_tokens": "eval_completions/mean_length",
    "clipped": "eval_completions/clipped_ratio",
    "paragraphs": "eval_repro/paragraphs",
    "backtracks": "eval_repro/backtracks",
    "J_gain": "eval_repro/J_gain",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for replication.json, .png and the runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=12, help="training steps of every run")
    parser.add_argument("--eval-steps", type=int, default=6, help="evaluate every N steps (and before training)")
    parser.add_argument("--eval-size", type=int, default=6,
                        help="held-out problems (each sampled num_generations times)")
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=FLAGS",
                        help="an extra arm: its repro train flags, e.g. alpha0.3='--repro_alpha 0.3'")
    parser.add_argument("--train-flags", default="", help="flags every run gets, e.g. '--max_completion_length 128'")
    parser.add_argument("--smoke", action="store_true", help="two steps, one seed, one evaluation problem, short")
    parser.add_argument("--measure", action="store_true", help="only the untrained model's accuracy per task")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.measure:
        measure(args)
        return
    if args.smoke:
        args.seeds, args.max_steps, args.eval_steps, args.eval_size = args.seeds[:1], 2, 2, 1
        args.train_flags += " --max_completion_length 24"
    arms = dict(ARMS)
    for spec in args.arm:
        name, _, flags = spec.partition("=")
        arms[name] = shlex.split(flags)
    common = [*TASK, "--max_steps", str(args.max_steps), "--eval_size", str(args.eval_size),
              "--eval_strategy", "steps", "--eval_steps", str(args.eval_steps), "--eval_on_start", "true",
              "--save_strategy", "no", "--report_to", "none", *shlex.split(args.train_flags)]
    runs: dict[str, dict[str, list[dict]]] = {}
    total = len(arms) * len(args.seeds)
    started = time.monotonic()
    for n, (arm, seed) in enumerate(((arm, seed) for seed in args.seeds for arm in arms), start=1):
        output = args.out / "runs" / f"{arm}-seed{seed}"
        print(f"[{n}/{total}] {arm}, seed {seed} -> {output} ({time.monotonic() - started:.0f} s so far)", flush=True)
        command = [sys.executable, "-m", "repro_core.train", *common, "--seed", str(seed),
                   "--output_dir", str(output), *arms[arm]]
        subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        runs.setdefault(arm, {})[str(seed)] = evaluations(output / "metrics.jsonl")
    report = {"command": sys.argv, "task": TASK, "common_flags": common, "arms": {a: arms[a] for a in arms},
              "seeds": args.seeds, "seconds": round(time.monotonic() - started), "runs": runs,
              "summary": summary(runs)}
    (args.out / "replication.json").write_text(json.dumps(report, indent=2))
    plot(runs, args.out / "replication.png")
    print_summary(report["summary"])
    print(f"wrote {args.out / 'replication.json'} and {args.out / 'replication.png'}")


def evaluations(metrics_file: Path) -> list[dict]:
    """The evaluations of one run: step and every metric of ``METRICS``."""
    rows = []
    for line in metrics_file.read_text().splitlines():
        entry = json.loads(line)
        if METRICS["accuracy"] in entry:
            rows.append({"step": entry["step"], **{name: entry.get(key) for name, key in METRICS.items()}})
    return rows


def summary(runs: dict[str, dict[str, list[dict]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm and metric, the last evaluation over seeds (mean, std, n) and the difference to the
    first arm (mean, spread = twice its standard error, and whether it exceeds the spread)."""
    last = {arm: {name: np.array([seeds[s][-1][name] for s in seeds], dtype=float) for name in METRICS}
            for arm, seeds in runs.items()}
    baseline = next(iter(last))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for arm, values in last.items():
        out[arm] = {}
        for name, v in values.items():
            entry = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
            if arm != baseline:
                b = last[baseline][name]
                error = np.sqrt(entry["std"] ** 2 / len(v) + (b.std(ddof=1) if len(b) > 1 else 0.0) ** 2 / len(b))
                difference = float(v.mean() - b.mean())
                entry.update(difference=difference, spread=float(2 * error),
                             beyond_spread=bool(abs(difference) > 2 * error))
            out[arm][name] = entry
    return out


def print_summary(table: dict[str, dict[str, dict[str, float]]]) -> None:
    arms = list(table)
    print("\nlast evaluation, mean +- std over seeds; difference to " + arms[0] + " +- spread (2 standard errors)")
    print(f"{'metric':<18s}" + "".join(f"{arm:>24s}" for arm in arms) + "".join(
        f"{'diff ' + arm:>30s}" for arm in arms[1:]))
    for name in METRICS:
        cells = [f"{table[arm][name]['mean']:>12.3f} +- {table[arm][name]['std']:<7.3f}" for arm in arms]
        diffs = []
        for arm in arms[1:]:
            entry = table[arm][name]
            verdict = "" if entry["beyond_spread"] else " (none)"
            diffs.append(f"{entry['difference']:>+14.3f} +- {entry['spread']:<6.3f}{verdict:>7s}")
        print(f"{name:<18s}" + "".join(f"{cell:>24s}" for cell in cells) + "".join(f"{d:>30s}" for d in diffs))


def plot(runs: dict[str, dict[str, list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm, seeds in runs.items():
        steps = [row["step"] for row in next(iter(seeds.values()))]
        for axis, name, label in ((axes[0], "accuracy", "accuracy (boxed_accuracy)"),
                                  (axes[1], "completion_tokens", "mean completion tokens")):
            values = np.array([[row[name] for row in rows] for rows in seeds.values()], dtype=float)
            line = axis.plot(steps, values.mean(0), marker="o", label=f"{arm} ({len(seeds)} seeds)")[0]
            axis.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
            axis.set_xlabel("training step")
            axis.set_ylabel(label)
    axes[0].legend()
    figure.suptitle("held-out evaluation: mean over seeds, band = range")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def measure(args: argparse.Namespace) -> None:
    """The untrained model's evaluation on each candidate task (``--eval-size`` problems)."""
    from repro_core.train.algorithms import ALGORITHMS
    from repro_core.train.arguments import parse_args
    from repro_core.train.model import load_model
    from repro_core.train.prompts import load_train_prompts

    results = {}
    model = tokenizer = None
    for name, flags in CANDIDATES.items():
        argv = [*flags, "--eval_size", str(args.eval_size), "--eval_strategy", "steps", "--dataset_size", "4",
                "--output_dir", str(args.out / "measure"), "--report_to", "none", *shlex.split(args.train_flags)]
        _, data_args, _, config = parse_args(argv)
        prompts, eval_prompts = load_train_prompts(data_args, config)
        if model is None:
            model, tokenizer = load_model(parse_args(argv)[0], config)
        trainer = ALGORITHMS["grpo"].build_trainer(model, tokenizer, prompts, config, [], eval_prompts)
        metrics = trainer.evaluate()
        results[name] = {metric: metrics.get(key) for metric, key in METRICS.items()}
        print(f"{name:<40s} " + ", ".join(f"{k} {v:.3f}" for k, v in results[name].items() if v is not None),
              flush=True)
    (args.out / "tasks.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
