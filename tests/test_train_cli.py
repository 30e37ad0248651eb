"""`repro train` end to end on CPU with real TRL: a tiny random Qwen2 checkpoint, two GRPO steps with RePro,
metrics.jsonl, checkpoints, resuming, both spellings of every flag, YAML files, and one-line errors that name
the flag at fault. Also the `repro` dispatcher and `repro demo`'s flags."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from trl import GRPOConfig

from repro_core import ReproError
from repro_core.cli import main
from repro_core.train import CLI_DEFAULTS, EMBEDDED_MODEL_DEFAULTS, parse_args, resolve_checkpoint
from repro_core.train.metrics import jsonable

REPRO_KEYS = ("repro/J_b", "repro/J_end", "repro/num_cuts", "repro/process_reward_mean", "repro/advantage_abs_mean")


def _small_run(checkpoint: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model_name_or_path", str(checkpoint),
        "--output-dir", str(output_dir),
        "--dataset_size", "8",
        "--per-device-train-batch-size", "4",
        "--num_generations", "4",
        "--max-completion-length", "16",
        "--repro_k", "4",
        "--seed", "0",
        *extra,
    ]


def _metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: repro train")
    for flag in ("--model_name_or_path", "--dataset", "--algorithm", "--max-steps", "--max_steps",
                 "--resume-from-checkpoint", "--repro_alpha", "--repro_k", "--num_generations", "--use_vllm"):
        assert flag in help_text
    assert "--algorithm {grpo,ppo}" in help_text
    # The CPU defaults are what --help shows.
    words = " ".join(help_text.split())
    assert "(default: repro-output)" in words
    assert "(default: reasoning-gym:basic_arithmetic)" in words



def _help_groups(help_text: str) -> list[str]:
    """The group titles of an argparse help text, in order."""
    return [line[:-1] for line in help_text.splitlines() if line.endswith(":") and not line.startswith(" ")]


def test_help_groups_repro_flags_before_trls_and_names_ppos_flags(capsys):
    """issue 17: the algorithm choices, the RePro flags in a group of their own near the top, and the way to
    PPO's own flags (shown by --algorithm ppo --help, in a group of their own)."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    groups = _help_groups(help_text)
    assert groups[:5] == ["options", "algorithm", "model", "data", "RePro"], groups
    assert groups[5].startswith("training (ReproGRPOConfig"), groups
    repro_group = help_text.split("\nRePro:\n")[1].split("\ntraining (")[0]
    assert "--repro_k" in repro_group and "--repro_preset" in repro_group and "--repro_enabled" in repro_group
    assert "--learning_rate" not in repro_group and "--kl_coef KL_COEF" not in help_text
    assert "--algorithm {grpo,ppo}" in help_text
    assert "`repro train --algorithm ppo --help`" in " ".join(help_text.split())

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--algorithm", "ppo", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    groups = _help_groups(help_text)
    assert groups[:6] == ["options", "algorithm", "model", "data", "RePro", "ppo (ReproPPOConfig's own flags)"], groups
    ppo_group = help_text.split("\nppo (ReproPPOConfig's own flags):\n")[1].split("\ntraining (")[0]
    for flag in ("--kl_coef", "--vf_coef", "--value_model_name_or_path", "--critic_learning_rate"):
        assert flag in ppo_group, flag


def test_the_shared_parser_needs_neither_trl_nor_accelerate():
    """issue 17: `repro score` ([score] extra) parses its flags, a --config file and a preset without TRL."""
    code = ("import sys; from repro_core.analysis.arguments import parse_arguments; "
            "arguments = parse_arguments(['traces.jsonl', '--repro_preset', 'authors', '--repro-k', '3']); "
            "print(arguments.repro.repro_k, arguments.repro.repro_w); "
            "print(sorted(m for m in ('trl', 'accelerate', 'torch') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["3 0.0", "[]"]


def test_config_file_conventions(tmp_path, monkeypatch):
    """What TRL's parser did with --config, kept: YAML keys as flag names, the command line wins, an env: mapping
    sets environment variables, null/none unsets an optional number; also --config=FILE."""
    monkeypatch.delenv("REPRO_TEST_FROM_YAML", raising=False)
    config_file = tmp_path / "run.yaml"
    config_file.write_text("max_steps: 7\nrepro_preset: authors\nrepro_w: 0.3\ndataset_size: 5\n"
                           "env:\n  REPRO_TEST_FROM_YAML: 1\n")
    _, data_args, _, config = parse_args([f"--config={config_file}", "--repro_alpha", "0.2",
                                          "--repro_stability_ema", "null", "--dataset-size", "none"])
    assert os.environ["REPRO_TEST_FROM_YAML"] == "1"
    assert config.max_steps == 7 and data_args.dataset_size is None and config.repro_stability_ema is None
    # preset (alpha 0.05, w 0) < file (w 0.3) < command line (alpha 0.2)
    assert (config.repro_w, config.repro_alpha, config.repro_delimiters) == (0.3, 0.2, "reference")
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "env.yaml").write_text("env: [1]\n")
    (tmp_path / "broken.yaml").write_text("max_steps: [1\n")
    for name, message in (("list.yaml", "must hold a YAML mapping"), ("env.yaml", "env in"),
                          ("broken.yaml", "cannot read the file"), ("missing.yaml", "cannot read the file")):
        with pytest.raises(ReproError, match=message) as error:
            parse_args(["--config", str(tmp_path / name)])
        assert error.value.argument == "--config"

def test_repro_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for command in ("demo", "train", "score"):
        assert f"    {command} " in help_text


@pytest.mark.parametrize(("argv", "message"), [(["tarin"], "COMMAND: invalid choice: 'tarin'"),
                                                ([], "COMMAND: missing: one of demo, train, score")])
def test_unknown_command_is_one_error_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"repro: error: {message}") and err.count("\n") == 1, err


def test_both_spellings_and_the_yaml_file(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("algorithm: ppo\nmax_steps: 7\nlearning_rate: 2.0e-5\nrepro_k: 6\n"
                           "task_config:\n  max_terms: 3\n")
    model_args, data_args, train_args, config = parse_args([
        "--config", str(config_file), "--max-steps", "9", "--dataset_size", "3", "--per-device-train-batch-size", "2",
        "--num_generations", "2", "--repro-alpha", "0.3", "--model-name-or-path", "some/model", "--dtype", "bfloat16",
    ])
    assert train_args.algorithm == "ppo" and type(config).__name__ == "ReproPPOConfig"
    assert config.max_steps == 9  # the command line wins over the file
    assert (config.learning_rate, config.repro_k, config.repro_alpha) == (2e-5, 6, 0.3)
    assert (config.per_device_train_batch_size, config.num_generations) == (2, 2)
    assert data_args.dataset_size == 3 and data_args.task_config == {"max_terms": 3}
    assert (model_args.model_name_or_path, model_args.dtype) == ("some/model", "bfloat16")
    # What neither sets comes from the command's defaults; with a model of one's own, the batch, completion length
    # and learning rate are TRL's (the embedded model's small-run defaults do not apply).
    assert config.output_dir == CLI_DEFAULTS["output_dir"]
    assert (config.max_completion_length, config.learning_rate) == (GRPOConfig.max_completion_length, 2e-5)
    _, _, _, embedded = parse_args(["--max-steps", "1"])
    assert {name: getattr(embedded, name) for name in EMBEDDED_MODEL_DEFAULTS} == EMBEDDED_MODEL_DEFAULTS
    _, _, _, own = parse_args(["--model_name_or_path", "some/model"])
    assert {name: getattr(own, name) for name in EMBEDDED_MODEL_DEFAULTS} == {
        name: getattr(GRPOConfig, name) for name in EMBEDDED_MODEL_DEFAULTS}


@pytest.mark.slow
def test_train_writes_metrics_and_checkpoints_then_resumes(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "2")) == 0
    printed = capsys.readouterr().out
    assert "repro train: done, 2 steps" in printed
    assert "repro/J_end" in printed and str(out / "metrics.jsonl") in printed
    assert f"checkpoints: checkpoint-2 (resume: --resume-from-checkpoint {out / 'checkpoint-2'})" in printed

    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert (out / "tokenizer_config.json").is_file()
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    records = _metrics(out)
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        assert isinstance(record["epoch"], float)
        for key in (*REPRO_KEYS, "loss", "reward", "completions/mean_length"):
            assert key in record, key
    assert "train_runtime" in records[-1]

    assert main(_small_run(tiny_checkpoint, out, "--max-steps", "3",
                           "--resume-from-checkpoint", str(out / "checkpoint-2"))) == 0
    printed = capsys.readouterr().out
    assert "resuming from" in printed and "repro train: done, 3 steps" in printed
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    # The first run's lines up to the checkpoint are kept, then the resumed run's.
    assert [r["step"] for r in _metrics(out) if "reward" in r] == [1, 2, 3]


def test_evaluation_on_held_out_prompts(tiny_checkpoint, tmp_path, capsys):
    """--eval_size holds out prompts the run never trains on; TRL's evaluation (before training with
    --eval_on_start, then every --eval_steps) logs accuracy, lengths and the reasoning metrics, and
    samples the same completions from the same policy each time (a fixed seed)."""
    out = tmp_path / "run"
    extra = ("--max-steps", "2", "--eval_size", "2", "--eval_strategy", "steps", "--eval_steps", "2",
             "--eval_on_start", "true", "--learning_rate", "0", "--save_strategy", "no")
    assert main(_small_run(tiny_checkpoint, out, *extra)) == 0
    assert "8 prompts (+2 held out for evaluation)" in capsys.readouterr().out
    evaluations = [r for r in _metrics(out) if "eval_reward" in r]
    assert [r["step"] for r in evaluations] == [0, 2]
    for record in evaluations:
        for key in ("eval_rewards/boxed_accuracy/mean", "eval_completions/mean_length",
                    "eval_completions/clipped_ratio", "eval_repro/paragraphs", "eval_repro/backtracks",
                    "eval_repro/J_gain", "eval_repro/J_b"):
            assert key in record, key
        assert record["eval_repro/J_gain"] == pytest.approx(record["eval_repro/J_end"] - record["eval_repro/J_b"])
    # learning rate 0: the policy is unchanged, so the fixed seed draws the same completions.
    assert evaluations[0]["eval_completions/mean_length"] == evaluations[1]["eval_completions/mean_length"]
    assert evaluations[0]["eval_repro/J_b"] == pytest.approx(evaluations[1]["eval_repro/J_b"], abs=1e-6)


def test_evaluation_metrics_with_repro_off(tiny_checkpoint, tmp_path):
    """Plain GRPO (the control arm) still logs the reasoning metrics at evaluation."""
    out = tmp_path / "run"
    extra = ("--max-steps", "1", "--eval_size", "1", "--eval_strategy", "steps", "--eval_steps", "1",
             "--repro_enabled", "false", "--save_strategy", "no")
    assert main(_small_run(tiny_checkpoint, out, *extra)) == 0
    evaluation = [r for r in _metrics(out) if "eval_reward" in r][-1]
    assert {"eval_repro/paragraphs", "eval_repro/backtracks", "eval_repro/J_gain"} <= set(evaluation)
    assert not any(key.startswith("repro/") for r in _metrics(out) for key in r)  # nothing of RePro in training


def test_resume_last_finds_the_newest_checkpoint(tmp_path):
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"weights")
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    assert resolve_checkpoint("last", str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert resolve_checkpoint(None, str(tmp_path)) is None
    with pytest.raises(ReproError, match="not a complete checkpoint directory: no such directory") as error:
        resolve_checkpoint(str(tmp_path / "nope"), str(tmp_path))
    assert error.value.argument == "--resume_from_checkpoint"


def test_metrics_values_are_strict_json():
    import numpy as np
    import torch

    record = {"nan": float("nan"), "inf": float("-inf"), "tensor": torch.tensor(0.5), "scalar": np.float32(2.0),
              "nested": {"values": (1, float("nan"))}, "other": Path("x")}
    assert json.loads(json.dumps(jsonable(record), allow_nan=False)) == {
        "nan": None, "inf": None, "tensor": 0.5, "scalar": 2.0, "nested": {"values": [1, None]}, "other": "x"}


@pytest.mark.parametrize(
    ("args", "argument", "message"),
    [
        (["--dataset", "reasoning-gym:no_such_task"], "--dataset", "unknown reasoning-gym task 'no_such_task'"),
        (["--dataset", "reasoning-gym:"], "--dataset", "names no task"),
        (["--dataset", "{jsonl}", "--question_column", "problem"], "--question_column", "no column 'problem'"),
        (["--dataset", "{jsonl}", "--task_config", '{{"max_terms": 3}}'], "--task_config", "reasoning-gym:TASK"),
        (["--task_config", "[1]"], "--task_config", "expected a JSON object"),
        (["--dataset_size", "0"], "--dataset_size", "expected a positive integer, got 0"),
        (["--model_name_or_path", "{missing}"], "--model_name_or_path", "cannot load"),
        (["--algorithm", "dpo"], "--algorithm", "'dpo' is not supported; choose from: grpo, ppo"),
        (["--config", "{yaml_dpo}"], "--algorithm", "'dpo' is not supported"),
        (["--repro_k", "-1"], "--repro_k", "expected an integer >= 0"),
        (["--repro-k", "-1"], "--repro_k", "expected an integer >= 0"),
        (["--resume-from-checkpoint", "last"], "--resume_from_checkpoint", "no complete checkpoint-N directory"),
        (["--resume-from-checkpoint", "{jsonl}"], "--resume_from_checkpoint", "not a complete checkpoint directory"),
        (["--output_dir", "{jsonl}"], "--output_dir", "is a file, not a directory"),
        (["--seed", "-1"], "--seed", "expected an integer in [0, 2**32), got -1"),
        (["--learning_rate", "-1"], "--learning_rate", "expected a number in [0, 1]"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size", "expected an integer >= 1"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps", "expected an integer >= 1"),
        (["--max_completion_length", "0"], "--max_completion_length", "expected an integer >= 1"),
        (["--report_to", "no_such_tracker"], "arguments", "cannot set up the trainer: ValueError: no_such_tracker"),
        (["--config", "{yaml_list}"], "--config", "must hold a YAML mapping"),
        (["--config", "{yaml_unknown_key}"], "--config", "unknown keys in the file: no_such_key"),
        (["--config"], "--config", "needs a YAML file path"),
        (["--num_generations", "3"], "arguments", "must be divisible by num_generations"),
        (["--no_such_flag", "1"], "arguments", "unrecognized arguments: --no_such_flag 1"),
        (["--max_steps", "many"], "arguments", "invalid int value: 'many'"),
        (["--eval_size", "4"], "--eval_strategy", "holds out prompts for an evaluation that never runs"),
        (["--eval_strategy", "steps"], "--eval_size", "needs held-out prompts"),
        (["--eval_size", "-1", "--eval_strategy", "steps"], "--eval_size", "expected a count >= 0"),
        (["--dataset", "{jsonl}", "--eval_size", "1", "--eval_strategy", "steps"], "--dataset",
         "none left to train on"),
    ],
)
def test_bad_input_is_one_error_line_naming_the_flag(tiny_checkpoint, tmp_path, capsys, args, argument, message):
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text(json.dumps({"question": "1 + 1?", "answer": "2"}) + "\n")
    (tmp_path / "dpo.yaml").write_text("algorithm: dpo\n")
    (tmp_path / "unknown.yaml").write_text("max_steps: 1\nno_such_key: 2\n")
    (tmp_path / "list.yaml").write_text("- max_steps\n")
    args = [a.format(jsonl=jsonl, missing=tmp_path / "missing", yaml_dpo=tmp_path / "dpo.yaml",
                     yaml_unknown_key=tmp_path / "unknown.yaml", yaml_list=tmp_path / "list.yaml") for a in args]
    argv = ["train", "--output-dir", str(tmp_path / "out"), "--max-steps", "1", "--model_name_or_path",
            str(tiny_checkpoint), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    # Other lines on stderr can only be progress bars (datasets reading a JSON file).
    errors = [line for line in err.splitlines() if "repro: error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"repro: error: {argument}: ") and message in errors[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_input_from_the_command_line_has_no_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "repro_core.cli",
         "train", "--dataset", "reasoning-gym:no_such_task", "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("repro: error: --dataset: unknown reasoning-gym task 'no_such_task'"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_python_m_repro_core_train_is_repro_train(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "repro_core.train", "--algorithm=dpo", "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "repro: error: --algorithm: 'dpo' is not supported; choose from: grpo, ppo\n"


def test_importing_the_commands_is_light():
    code = ("import sys, repro_core.train, repro_core.cli, repro_core.demo; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert proc.stdout.strip() == "[]"


def test_demo_takes_both_spellings_and_names_the_flag_at_fault(capsys):
    assert main(["demo", "--batch", "8", "--width", "64", "--group-size", "4"]) == 0
    first = capsys.readouterr().out
    assert main(["demo", "--batch", "8", "--width", "64", "--group_size", "4"]) == 0
    assert capsys.readouterr().out.split("\n")[:-2] == first.split("\n")[:-2]  # all but the timing line
    assert main(["demo", "--w", "-1"]) == 2
    assert capsys.readouterr().err.startswith("repro: error: --w: ")
    assert main(["demo", "--batch", "1"]) == 2
    assert capsys.readouterr().err == "repro: error: --batch: expected an integer >= 2, got 1\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "100000000000"], "--batch, --width: 100000000000 x 4096 = 409,600,000,000,000 token slots"),
        (["--width", "100000000000"], "--batch, --width: 64 x 100000000000"),
        (["--width", "3"], "--width: expected an integer >= 4, got 3"),
        (["--group_size", "0"], "--group_size: expected an integer >= 1, got 0"),
        (["--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
        (["--k", "-1"], "--k: expected an integer >= 0"),
        (["--k", "1.5"], "arguments: argument --k: invalid int value: '1.5'"),
        (["--w", "nan"], "--w: expected a weight in [0, 1]"),
        (["--alpha", "inf"], "--alpha: expected a finite number"),
        (["--estimator", "grpo"], "arguments: unrecognized arguments: --estimator grpo"),
        (["--batch"], "arguments: argument --batch: expected one argument"),
    ],
)
def test_demo_bad_arguments_are_one_error_line(args, message):
    """issue 18: every bad `repro demo` argument, huge sizes included, is one line and exit status 2."""
    proc = subprocess.run([sys.executable, "-m", "repro_core.cli", "demo", *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith(f"repro: error: {message}") and proc.stderr.count("\n") == 1, proc.stderr


def test_library_messages_are_logged_through_the_command(tiny_checkpoint, capsys, caplog):
    """The library logs (no prints to stderr); `repro` shows repro_core's messages as `repro: ...` on stderr."""
    import logging

    from repro_core.train import load_model

    model_args, _, _, config = parse_args(["--model_name_or_path", str(tiny_checkpoint), "--model_init_kwargs",
                                           '{"dtype": "float32", "attn_implementation": "eager"}'])
    with caplog.at_level(logging.INFO, logger="repro_core"):
        load_model(model_args, config)
    assert [(record.name, record.levelname) for record in caplog.records
            if "ignoring model_init_kwargs ['attn_implementation']" in record.getMessage()] == [
        ("repro_core.train.model", "WARNING")]
    assert main(["demo", "--batch", "2", "--width", "4"]) == 0  # any command configures the logging
    logging.getLogger("repro_core.train.command").info("a library message")
    logging.getLogger("repro_core.assets").warning("a library warning")
    err = capsys.readouterr().err
    assert "repro: a library message\n" in err and "repro: warning: a library warning\n" in err


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The GPU recipe's file, brought down to one CPU step of the tiny model.
CPU_OVERRIDES = ["--bf16", "false", "--gradient_checkpointing", "false", "--gradient_accumulation_steps", "1",
                 "--per_device_train_batch_size", "8", "--max_steps", "1", "--max_completion_length", "16"]


def _problems(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    rows = [{"problem": f"What is {a} + {a}?", "answer": str(2 * a)} for a in range(1, 5)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.slow
def test_repro_train_reads_the_example_yaml(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["train", "--config", str(EXAMPLES / "grpo_math.yaml"), *CPU_OVERRIDES,
            "--model_name_or_path", str(tiny_checkpoint), "--dataset", str(_problems(tmp_path)),
            "--output_dir", str(out)]
    assert main(argv) == 0
    assert "8 completions" in capsys.readouterr().out  # num_generations from the YAML
    assert "repro/J_end" in next(r for r in _metrics(out) if "reward" in r)
    import torch

    config = torch.load(out / "training_args.bin", weights_only=False)
    assert (config.learning_rate, config.repro_k, config.repro_think_end, config.save_steps) == (1e-6, 20, "", 50)


@pytest.mark.slow
def test_example_script_runs_one_step(tiny_checkpoint, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "grpo_math.py"), "--config", str(EXAMPLES / "grpo_math.yaml"), *CPU_OVERRIDES,
         "--model_init_kwargs", '{"dtype": "float32"}', "--model_name_or_path", str(tiny_checkpoint),
         "--dataset", str(_problems(tmp_path)), "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "checkpoint-1" / "trainer_state.json").is_file()


@pytest.mark.slow
def test_ppo_from_the_command_line(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "ppo"
    assert main(_small_run(tiny_checkpoint, out, "--algorithm", "ppo", "--max-steps", "2", "--kl_coef", "0.1")) == 0
    printed = capsys.readouterr().out
    assert "repro train: ppo on" in printed and "value/loss" in printed
    assert (out / "critic" / "model.safetensors").is_file()
    assert (out / "checkpoint-2" / "critic" / "model.safetensors").is_file()
    for record in (r for r in _metrics(out) if "reward" in r):
        for key in (*REPRO_KEYS, "value/loss", "value/explained_variance", "policy/kl", "policy/clipfrac"):
            assert key in record, key


def test_repro_score_through_the_cli(tmp_path, capsys):
    traces = tmp_path / "traces.jsonl"
    traces.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "5",
                                  "completion": "2 + 3 = 5.\n\nWait, let me check: 5.\n\nSo \\boxed{5}."}) + "\n")
    assert main(["score", str(traces), "--output-dir", str(tmp_path / "scores")]) == 0
    record = json.loads((tmp_path / "scores" / "scores.jsonl").read_text())
    assert record["correct"] is True and record["num_paragraphs"] == 3 and record["backtracks"] == 1
    assert main(["score", str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err.count("repro: error:") == 1
