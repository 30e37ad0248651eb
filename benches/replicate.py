"""Does RePro cut reasoning that makes no progress? Four arms on a task with a known detour, several seeds.

The task (``detour/task.py``) counts a letter in a spelt word, one line per letter with the running count;
the worked solutions of the warm start carry detour lines that restate the count and add nothing. A small
Llama (``detour/lm.py``) is trained from scratch on them with TRL's ``SFTTrainer`` (cached by its settings),
then every arm runs ``repro train`` from that checkpoint with the same data, seeds and budget, differing
only in the flags of ``ARMS``:

- ``grpo``: GRPO on the outcome reward (``boxed_accuracy``);
- ``grpo+repro``: GRPO + RePro;
- ``grpo+repro shuffled``: GRPO + RePro with the process rewards permuted within each group
  (``--repro_shuffle_rewards``): the same scale, no information;
- ``grpo+length``: GRPO + TRL's soft overlong punishment (``detour.task.length_penalty``): "just shorter".

Before any RL, the mechanism check (``detour/mechanism.py``) compares RePro's process rewards and J's change
on detour and progress paragraphs of the SFT model's own completions. Each run evaluates before training and
every ``--eval-steps`` steps on held-out problems (TRL's evaluation, completions drawn from a fixed seed):
strict accuracy (``boxed_accuracy``), lenient accuracy (the last number), completion tokens, clipped share,
stop rate, detours and backtracks per completion, and J_end - J_b.

    python benches/replicate.py --out replication              # the README's experiment (4 arms x 5 seeds)
    python benches/replicate.py --out replication --seeds 0 1 2 3 4 5 6    # resumes: only the new seeds run
    python benches/replicate.py --smoke --out /tmp/smoke        # every step, tiny: the test suite's check

Each (arm, seed) run records ``runs/ARM-seedS/result.json`` when it finishes; running the same command again
skips the finished runs, so the experiment can be completed over several sittings. It writes
``replication.json`` (settings, SFT figures, the mechanism check, every run, the summary) and
``replication.png`` (accuracy, completion tokens and detours against step: mean over seeds and their range),
and prints the summary: each arm's last evaluation over seeds, and its difference to ``grpo`` with the
spread (twice the standard error of the difference), called "none" when within it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

BENCHES = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHES))

from detour import mechanism  # noqa: E402
from detour.lm import SYSTEM_PROMPT, ModelSettings, load, sample, sft_checkpoint  # noqa: E402
from detour.task import (  # noqa: E402
    MAX_COMPLETION_LENGTH,
    TaskSettings,
    count_detours,
    problems,
    question,
    write_prompts,
)

#: Every run's reward functions: the outcome (weight 1) and two that only log (weight 0).
REWARDS = ["boxed_accuracy", "detour.task.lenient_accuracy", "detour.task.detours"]
WEIGHTS = ["1", "0", "0"]
#: The arms, in the summary's order; the first is the reference of the differences.
ARMS = {
    "grpo": ["--repro_enabled", "false", "--reward_funcs", *REWARDS, "--reward_weights", *WEIGHTS],
    "grpo+repro": ["--repro_enabled", "true", "--reward_funcs", *REWARDS, "--reward_weights", *WEIGHTS],
    "grpo+repro shuffled": ["--repro_enabled", "true", "--repro_shuffle_rewards", "true",
                            "--reward_funcs", *REWARDS, "--reward_weights", *WEIGHTS],
    "grpo+length": ["--repro_enabled", "false", "--reward_funcs", *REWARDS, "detour.task.length_penalty",
                    "--reward_weights", *WEIGHTS, "1"],
}
#: Metric name in the table and JSON -> the key TRL's evaluation logs it under in metrics.jsonl.
METRICS = {
    "accuracy": "eval_rewards/boxed_accuracy/mean",
    "lenient_accuracy": "eval_rewards/lenient_accuracy/mean",
    "completion_tokens": "eval_completions/mean_length",
    "clipped": "eval_completions/clipped_ratio",
    "detours": "eval_rewards/detours/mean",
    "backtracks": "eval_repro/backtracks",
    "J_gain": "eval_repro/J_gain",
}
PLOTTED = {"accuracy": "strict accuracy", "completion_tokens": "completion tokens", "detours": "detours per completion"}


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """What every (arm, seed) run shares."""

    train_problems: int = 2000
    eval_problems: int = 128
    max_steps: int = 120
    eval_steps: int = 30
    batch_size: int = 32
    generations: int = 8
    learning_rate: float = 1e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for replication.json, .png and the runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="which arms to run")
    for settings in (RunSettings(), ModelSettings()):  # every setting of the runs and of the warm start
        for field in dataclasses.fields(settings):
            kind = {"float": float, "int": int}.get(field.type, str)
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=getattr(settings, field.name),
                                help=f"{type(settings).__name__}.{field.name}")
    parser.add_argument("--train-flags", default="", help="more repro train flags for every run")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one CPU thread each")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("REPRO_CACHE", Path.home() / ".cache" /
                                                                          "repro-core")) / "replicate",
                        help="where the SFT checkpoints are cached (by their settings)")
    parser.add_argument("--smoke", action="store_true", help="every step of the experiment, tiny (minutes)")
    args = parser.parse_args()
    task = TaskSettings()
    model = ModelSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ModelSettings)})
    runs = RunSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunSettings)})
    if args.smoke:
        model = dataclasses.replace(model, sft_problems=256, sft_steps=20)
        runs = RunSettings(train_problems=32, eval_problems=8, max_steps=2, eval_steps=2, batch_size=8,
                           generations=4)
        args.seeds = args.seeds[:1]
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = sft_checkpoint(task, model, args.cache)
    sft = sft_figures(checkpoint, task, runs, args.out, args.seeds[0])
    dataset = write_data(task, runs, args.out / "data" / "prompts.jsonl")
    common = ["--model_name_or_path", str(checkpoint), "--dataset", str(dataset), "--eval_size",
              str(runs.eval_problems), "--system_prompt", SYSTEM_PROMPT, "--repro_delimiters", "line",
              "--max_completion_length", str(MAX_COMPLETION_LENGTH), "--per_device_train_batch_size",
              str(runs.batch_size), "--num_generations", str(runs.generations), "--num_generations_eval", "1",
              "--per_device_eval_batch_size", str(runs.batch_size), "--learning_rate", str(runs.learning_rate),
              "--max_steps", str(runs.max_steps), "--eval_strategy", "steps", "--eval_steps", str(runs.eval_steps),
              "--eval_on_start", "true", "--save_strategy", "no", "--report_to", "none",
              *shlex.split(args.train_flags)]
    todo = [(arm, seed) for seed in args.seeds for arm in args.arms]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(lambda job: run(args.out, common, *job), todo))
    results = {arm: {str(seed): json.loads((run_dir(args.out, arm, seed) / "result.json").read_text())
                     for seed in args.seeds} for arm in args.arms}
    report = {"command": sys.argv, "task": dataclasses.asdict(task), "model": dataclasses.asdict(model),
              "runs_settings": dataclasses.asdict(runs), "arms": {arm: ARMS[arm] for arm in args.arms},
              "common_flags": common, "seeds": args.seeds, "sft": sft,
              "seconds_this_sitting": round(time.monotonic() - started),
              "seconds_all_runs": round(sum(r["seconds"] for seeds in results.values() for r in seeds.values())),
              "runs": {arm: {seed: r["evaluations"] for seed, r in seeds.items()} for arm, seeds in results.items()},
              "summary": summary(results)}
    (args.out / "replication.json").write_text(json.dumps(report, indent=2))
    plot(report["runs"], args.out / "replication.png")
    print_summary(report["summary"])
    print(f"wrote {args.out / 'replication.json'} and {args.out / 'replication.png'} "
          f"({report['seconds_all_runs']} s of runs in all, {report['seconds_this_sitting']} s this sitting)")


def write_data(task: TaskSettings, runs: RunSettings, path: Path) -> Path:
    """The prompts file of every run: training problems, then the held-out ones (``--eval_size``)."""
    held_out = problems(task, runs.eval_problems, seed=2)
    train = problems(task, runs.train_problems, seed=1, exclude=set(held_out))
    return write_prompts(path, train + held_out)


def sft_figures(checkpoint: Path, task: TaskSettings, runs: RunSettings, out: Path, seed: int) -> dict:
    """The warm start's accuracy and detour share on held-out problems, and the mechanism check, by the scorer
    and by ``repro score`` (recorded in ``sft.json`` as each is done; ``mechanism-traces.jsonl`` holds the
    completions, ``mechanism-score/`` repro score's report on them)."""
    recorded = out / "sft.json"
    figures = json.loads(recorded.read_text()) if recorded.is_file() else {}
    if figures.get("checkpoint") != str(checkpoint):
        from repro_core.rewards import boxed_accuracy

        model, tokenizer = load(checkpoint)
        rows = problems(task, runs.eval_problems, seed=2)
        completions = [tokenizer.decode(ids) for ids in sample(
            model, tokenizer, [question(w, c) for w, c in rows], seed=seed, max_new_tokens=MAX_COMPLETION_LENGTH)]
        accuracy = boxed_accuracy(completions, [str(w.count(c)) for w, c in rows])
        figures = {"checkpoint": str(checkpoint), "settings": json.loads((checkpoint / "settings.json").read_text()),
                   "strict_accuracy": float(np.mean(accuracy)),
                   "with_detour": float(np.mean([count_detours(text) > 0 for text in completions])),
                   "detours_per_completion": float(np.mean([count_detours(text) for text in completions])),
                   "mechanism": mechanism.check(model, tokenizer, rows, seed=seed + 1,
                                                max_new_tokens=MAX_COMPLETION_LENGTH,
                                                traces=out / "mechanism-traces.jsonl")}
        recorded.write_text(json.dumps(figures, indent=2))
    if "repro_score" not in figures:
        figures["repro_score"] = mechanism.score_report(out / "mechanism-traces.jsonl", checkpoint,
                                                        out / "mechanism-score")
        recorded.write_text(json.dumps(figures, indent=2))
    print(f"SFT model on held-out problems: strict accuracy {figures['strict_accuracy']:.3f}, "
          f"{figures['with_detour']:.0%} of completions with a detour "
          f"({figures['detours_per_completion']:.2f} per completion)", flush=True)
    mechanism.print_check(figures["mechanism"], "mechanism check")
    mechanism.print_check(figures["repro_score"], "the same from repro score's scores.jsonl (mechanism-score/)")
    return figures


def run_dir(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / f"{arm.replace(' ', '-')}-seed{seed}"


def run(out: Path, common: list[str], arm: str, seed: int) -> None:
    """One (arm, seed) run of ``repro train``, unless its result is recorded; a run cut short starts over."""
    folder = run_dir(out, arm, seed)
    if (folder / "result.json").is_file():
        print(f"{arm}, seed {seed}: recorded, skipped", flush=True)
        return
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "repro_core.train", *common, "--seed", str(seed), "--output_dir",
               str(folder / "train"), *ARMS[arm]]
    # One thread per run: several small runs side by side use the cores better than one run's threads do.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "REPRO_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCHES), os.environ.get("PYTHONPATH")]))}
    folder.mkdir(parents=True)
    print(f"{arm}, seed {seed}: started -> {folder}", flush=True)
    started = time.monotonic()
    with open(folder / "log.txt", "w") as log:
        code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"{arm}, seed {seed} failed (exit {code}); its log: {folder / 'log.txt'}")
    evaluations = read_evaluations(folder / "train" / "metrics.jsonl")
    (folder / "result.json").write_text(json.dumps({"arm": arm, "seed": seed, "seconds": round(seconds, 1),
                                                    "command": command, "evaluations": evaluations}, indent=2))
    last = evaluations[-1]
    print(f"{arm}, seed {seed}: done in {seconds:.0f} s; last evaluation: accuracy {last['accuracy']:.3f}, "
          f"{last['completion_tokens']:.1f} tokens, {last['detours']:.2f} detours", flush=True)


def read_evaluations(metrics_file: Path) -> list[dict]:
    """The evaluations of one run: step and every metric of ``METRICS``, plus the stop rate (the share of
    completions that end before the token limit)."""
    rows = []
    for line in metrics_file.read_text().splitlines():
        entry = json.loads(line)
        if METRICS["accuracy"] in entry:
            row = {"step": entry["step"], **{name: entry.get(key) for name, key in METRICS.items()}}
            row["stop_rate"] = 1.0 - row["clipped"]
            rows.append(row)
    return rows


def summary(results: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm and metric, the last evaluation over seeds (mean, std, n) and the difference to the first arm
    (mean, spread = twice its standard error, relative to the first arm's mean, and whether it exceeds the
    spread)."""
    names = [*METRICS, "stop_rate"]
    last = {arm: {name: np.array([seeds[s]["evaluations"][-1][name] for s in seeds], dtype=float) for name in names}
            for arm, seeds in results.items()}
    baseline = next(iter(last))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for arm, values in last.items():
        out[arm] = {}
        for name, v in values.items():
            entry = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
            if arm != baseline:
                b = last[baseline][name]
                difference = float(v.mean() - b.mean())
                entry.update(difference=difference, relative=difference / abs(b.mean()) if b.mean() else None,
                             spread=None, beyond_spread=None)  # one seed: no spread to compare with
                if len(v) > 1 and len(b) > 1:
                    error = np.sqrt(v.var(ddof=1) / len(v) + b.var(ddof=1) / len(b))
                    entry.update(spread=float(2 * error), beyond_spread=bool(abs(difference) > 2 * error))
            out[arm][name] = entry
    return out


def print_summary(table: dict[str, dict[str, dict[str, float]]]) -> None:
    arms = list(table)
    print(f"\nlast evaluation, mean +- std over seeds; difference to {arms[0]} +- spread (2 standard errors)")
    for name in table[arms[0]]:
        print(f"{name}:")
        for arm in arms:
            entry = table[arm][name]
            line = f"  {arm:<22s} {entry['mean']:>9.3f} +- {entry['std']:<7.3f}"
            if "difference" in entry and entry["spread"] is None:
                line += f" diff {entry['difference']:>+8.3f} (one seed: no spread)"
            elif "difference" in entry:
                verdict = "" if entry["beyond_spread"] else "  none"
                line += f" diff {entry['difference']:>+8.3f} +- {entry['spread']:<7.3f}{verdict}"
            print(line)


def plot(runs: dict[str, dict[str, list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(PLOTTED), figsize=(5 * len(PLOTTED), 4))
    for arm, seeds in runs.items():
        steps = [row["step"] for row in next(iter(seeds.values()))]
        for axis, (name, label) in zip(axes, PLOTTED.items(), strict=True):
            values = np.array([[row[name] for row in rows] for rows in seeds.values()], dtype=float)
            line = axis.plot(steps, values.mean(0), marker="o", label=f"{arm} ({len(seeds)} seeds)")[0]
            axis.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)
            axis.set_xlabel("training step")
            axis.set_ylabel(label)
    axes[0].legend(fontsize=8)
    figure.suptitle("held-out evaluation: mean over seeds, band = range over seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
