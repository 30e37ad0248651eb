"""The command-line convention (repro_core.arguments) holds for every flag, not for a few examples: each
boolean reaches the parsed arguments both ways from the command line and from a YAML file, a value from a
file is checked as the same value on the command line, numbers are finite, flags are never abbreviated and a
misspelt one gets the nearest names."""

from __future__ import annotations

import argparse

import pytest
from transformers.hf_argparser import string_to_bool

from repro_core.analysis.arguments import make_parser as make_score_parser
from repro_core.arguments import parse
from repro_core.errors import ReproError
from repro_core.train.arguments import make_parser as make_train_parser
from repro_core.train.arguments import parse_args

PARSERS = {
    "train grpo": lambda: make_train_parser("grpo", cuda=False),
    "train ppo": lambda: make_train_parser("ppo", cuda=False),
    "score": make_score_parser,
}


def booleans(parser: argparse.ArgumentParser) -> list[str]:
    """The destination of every boolean flag (its ``--X`` action; ``--no_X`` twins share it)."""
    return sorted({action.dest for action in parser._actions if action.type is string_to_bool})


def namespace(parser: argparse.ArgumentParser, argv: list[str], tmp_path, config: str | None = None):
    """What the parser hands the dataclasses for ``argv`` (and the YAML text ``config``), as ``parse`` reads it."""
    if config is not None:
        path = tmp_path / "run.yaml"
        path.write_text(config)
        argv = ["--config", str(path), *argv]
    captured = {}

    def capture(args, return_remaining_strings=False):
        captured.update(vars(parser.parse_known_args(args)[0]))
        raise _Parsed

    parser.parse_args_into_dataclasses = capture
    with pytest.raises(_Parsed):
        parse(parser, argv)
    return captured


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("command", PARSERS)
def test_every_boolean_reaches_the_arguments_both_ways_from_the_file_and_the_command_line(command, tmp_path):
    names = booleans(PARSERS[command]())
    assert len(names) >= (2 if command == "score" else 40), names  # train: TRL's and transformers' own too
    wrong = []
    for name in names:
        for value in (True, False):
            text = "true" if value else "false"
            for source, argv, config in (("file", [], f"{name}: {text}\n"), ("flag", [f"--{name}", text], None),
                                         ("dashes", [f"--{name.replace('_', '-')}={text}"], None)):
                got = namespace(PARSERS[command](), argv, tmp_path, config).get(name)
                if got is not value:
                    wrong.append(f"{name} from the {source}: {text} gave {got!r}")
    assert not wrong, wrong


def test_a_yaml_false_turns_repro_and_trls_defaults_off_in_the_config(tmp_path):
    """The bug that flipped the A/B switch: repro_enabled: false (default true) was ignored."""
    (tmp_path / "run.yaml").write_text("repro_enabled: false\ndisable_dropout: false\nbf16: false\n"
                                       "gradient_checkpointing: true\n")
    _, _, _, config = parse_args(["--config", str(tmp_path / "run.yaml")])
    assert (config.repro_enabled, config.disable_dropout, config.gradient_checkpointing) == (False, False, True)
    _, _, _, config = parse_args(["--config", str(tmp_path / "run.yaml"), "--repro_enabled", "true",
                                  "--no_gradient_checkpointing"])
    assert (config.repro_enabled, config.gradient_checkpointing) == (True, False)


@pytest.mark.parametrize(
    ("command", "key", "value", "message"),
    [
        ("train grpo", "dtype", "float64", "dtype in the file: invalid choice: 'float64'"),
        ("train grpo", "repro_delimiters", "paragraphs", "invalid choice"),
        ("train grpo", "algorithm", "dpo", "'dpo' is not supported"),
        ("train grpo", "max_steps", "many", "max_steps in the file: invalid int value: 'many'"),
        ("train grpo", "repro_enabled", "maybe", "repro_enabled in the file"),
        ("train grpo", "weight_decay", ".nan", "expected a finite number"),
        ("train grpo", "learning_rate", ".inf", "expected a finite number"),
        ("score", "long_traces", "Refuse", "long_traces in the file: invalid choice: 'Refuse'"),
        ("score", "repro_k", "2.5", "repro_k in the file: invalid int value: '2.5'"),
    ],
)
def test_a_value_from_the_file_is_checked_as_on_the_command_line(command, key, value, message, tmp_path):
    (tmp_path / "run.yaml").write_text(f"{key}: {value}\n")
    with pytest.raises(ReproError, match=message) as caught:
        parse(PARSERS[command](), ["--config", str(tmp_path / "run.yaml")]) if command != "train grpo" else parse_args(
            ["--config", str(tmp_path / "run.yaml")])
    assert caught.value.argument in ("--config", "--algorithm")


@pytest.mark.parametrize("flag", ["--weight_decay", "--beta", "--temperature", "--top_p", "--repro_alpha",
                                  "--max_grad_norm", "--adam_epsilon"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_at_parse_time(flag, value):
    with pytest.raises(ReproError, match=f"{flag}.*expected a finite number, got '{value}'"):
        parse_args([f"{flag}={value}"])


def test_every_float_flag_refuses_nan():
    parser = make_train_parser("ppo", cuda=False)
    floats = sorted({action.dest for action in parser._actions
                     if getattr(action.type, "__name__", "") == "float" and action.nargs is None})
    assert len(floats) >= 30, floats
    accepted = []
    for name in floats:
        try:
            make_train_parser("ppo", cuda=False).parse_known_args([f"--{name}", "nan"])
        except ReproError:
            continue
        accepted.append(name)
    assert not accepted


def test_absurd_learning_rates_are_refused():
    with pytest.raises(ReproError, match=r"--learning_rate: expected a number in \[0, 1\], got 1e\+30"):
        parse_args(["--learning_rate", "1e30"])


@pytest.mark.parametrize(("argv", "suggestion"), [
    (["--max-step", "3"], "did you mean --max-steps?"),
    (["--max_step", "3"], "did you mean --max_steps?"),
    (["--repro_enabld", "false"], "did you mean --repro_enabled?"),
    (["--learning-rat=1e-5"], "did you mean --learning-rate?"),
])
def test_no_abbreviations_and_the_nearest_flag_for_a_misspelt_one(argv, suggestion):
    with pytest.raises(ReproError, match="unrecognized arguments") as caught:
        parse_args(argv)
    assert suggestion in str(caught.value)


def test_a_misspelt_key_in_the_file_gets_the_nearest_names(tmp_path):
    (tmp_path / "run.yaml").write_text("max_stepz: 3\nrepro_alpah: 0.2\n")
    with pytest.raises(ReproError, match=r"unknown keys in the file: max_stepz, repro_alpah "
                                         r"\(did you mean max_steps, repro_alpha\?\)"):
        parse_args(["--config", str(tmp_path / "run.yaml")])


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    (tmp_path / "bomb.yaml").write_text(bomb)
    with pytest.raises(ReproError, match="YAML aliases .* are not supported, found one at line 2") as caught:
        parse_args(["--config", str(tmp_path / "bomb.yaml")])
    assert caught.value.argument == "--config"


def test_lists_and_mappings_from_the_file(tmp_path):
    (tmp_path / "run.yaml").write_text("reward_weights: [1]\ntask_config:\n  max_terms: 3\nreport_to: none\n")
    _, data_args, _, config = parse_args(["--config", str(tmp_path / "run.yaml")])
    assert config.reward_weights == [1.0] and data_args.task_config == {"max_terms": 3}


def test_trl_script_names_for_the_dataset_and_its_split(tmp_path):
    (tmp_path / "run.yaml").write_text("dataset_name: openai/gsm8k\ndataset_train_split: test\ndataset_config: main\n")
    _, data_args, _, _ = parse_args(["--config", str(tmp_path / "run.yaml")])
    assert (data_args.dataset, data_args.split, data_args.dataset_config) == ("openai/gsm8k", "test", "main")
    _, data_args, _, _ = parse_args(["--dataset-name", "x.jsonl", "--dataset_train_split", "train[:10]"])
    assert (data_args.dataset, data_args.split) == ("x.jsonl", "train[:10]")


@pytest.mark.parametrize(("argv", "argument", "message"), [
    (["--reward_funcs", "accuracy_reward"], "--reward_funcs", "'boxed_accuracy' checks the same way"),
    (["--reward_funcs", "lenght_penalty"], "--reward_funcs", "unknown reward function 'lenght_penalty'"),
    (["--reward_funcs", "no_such_module.reward"], "--reward_funcs", "cannot import 'no_such_module.reward'"),
    (["--reward_funcs", "repro_core.rewards.INSTRUCTION"], "--reward_funcs", "cannot import"),
    (["--reward_funcs", "repro_core.data.INSTRUCTION"], "--reward_funcs", "is a str, not a function"),
    (["--reward_funcs", "boxed_accuracy", "think_format_reward", "--reward_weights", "1"], "--reward_weights",
     "expected one weight per reward function (2: boxed_accuracy think_format_reward), got 1"),
])
def test_reward_functions_are_resolved_at_parse_time(argv, argument, message):
    with pytest.raises(ReproError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        parse_args(argv)
    assert caught.value.argument == argument


def test_reward_functions_by_name_and_import_path(tmp_path, monkeypatch):
    from trl.rewards import think_format_reward

    from repro_core.rewards import boxed_accuracy
    from repro_core.train.rewards import resolve_reward_funcs

    (tmp_path / "my_rewards.py").write_text("def shorter(completion_ids, **kwargs):\n"
                                            "    return [-len(ids) / 100 for ids in completion_ids]\n")
    monkeypatch.chdir(tmp_path)  # TRL's script imports dotted paths with the working directory on sys.path
    funcs = resolve_reward_funcs(["boxed_accuracy", "think_format_reward", "my_rewards.shorter"], [1, 0.5, 1])
    assert funcs[:2] == [boxed_accuracy, think_format_reward] and funcs[2](completion_ids=[[1, 2]]) == [-0.02]


def test_trls_peft_flags_and_dtypes():
    from repro_core.train.model import PEFT_FIELDS, peft_config

    model_args, _, _, _ = parse_args(["--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj",
                                      "--dtype", "float16"])
    lora = peft_config(model_args)
    assert (lora.r, sorted(lora.target_modules), model_args.dtype) == (4, ["q_proj", "v_proj"], "float16")
    model_args, _, _, _ = parse_args([])
    assert peft_config(model_args) is None and model_args.dtype is None
    help_text = " ".join(PARSERS["train grpo"]().format_help().split())
    assert all(f"--{name}" in help_text for name in PEFT_FIELDS)


def test_dtype_auto_is_the_checkpoints_own(tmp_path):
    import torch
    import transformers

    transformers.LlamaConfig(hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                             vocab_size=16, dtype="bfloat16").save_pretrained(tmp_path)
    model_args, _, _, _ = parse_args(["--model_name_or_path", str(tmp_path), "--dtype", "auto"])
    assert model_args.torch_dtype() == torch.bfloat16
    model_args, _, _, _ = parse_args(["--model_name_or_path", str(tmp_path)])
    assert model_args.torch_dtype() == torch.float32  # unset: float32, whatever the checkpoint says
    model_args, _, _, _ = parse_args(["--model_name_or_path", str(tmp_path / "missing"), "--dtype", "auto"])
    with pytest.raises(ReproError, match="cannot read the config for --dtype auto") as caught:
        model_args.torch_dtype()
    assert caught.value.argument == "--model_name_or_path"
