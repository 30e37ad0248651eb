"""ReproConfig is the one declaration of every setting: each layer that spells a setting its own way
(the repro_* flags, TRL's configs) derives default, help and choices from it, each check has one
home, and every ReproError names the setting the user set."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import repro_core as rc
from repro_core import _api, _core
from repro_core.config import ReproArguments, ReproConfig, check_setting

PACKAGE = Path(rc.__file__).parent
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(ReproConfig)}

#: One bad value per setting, and what the error must name.
BAD_VALUES = {
    "k": -1,
    "w": 1.5,
    "alpha": float("nan"),
    "gamma": 2.0,
    "lam": 0.5,  # only ppo uses it
    "stability_ema": 0.0,
    "estimator": "ppo2",
    "delimiters": "paragraphs",
    "think_end": 3.5,
    "answer_template": "\\boxed{}",
    "j_tokens": "answer_only",
    "answer_special_tokens": "yes",
    "j_at_rollout_temperature": 1,
    "objective_mode": "fast",
    "temperature": 0.0,
    "max_batch_tokens": 0,
    "stats_include_baseline": "yes",
    "drop_first_token_reward": 1,
    "critic_target": "advantages",  # only ppo has a critic (the default estimator is grpo)
}


def test_every_setting_has_a_bad_value_here():
    assert set(BAD_VALUES) == set(CONFIG_FIELDS)


def test_estimator_names_are_the_cores():
    assert _api.ESTIMATORS == _core.ESTIMATORS
    assert CONFIG_FIELDS["estimator"].metadata["choices"] == _core.ESTIMATORS


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_config_errors_name_the_field(name):
    with pytest.raises(rc.ReproError) as caught:
        ReproConfig(**{name: BAD_VALUES[name]})
    assert caught.value.argument == name
    assert str(caught.value).startswith(f"{name}: ")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(k=2.0), dict(k=True), dict(alpha=float("inf")), dict(gamma=-0.1), dict(stability_ema=2),
        dict(estimator="gae"), dict(max_batch_tokens=True), dict(delimiters=[1, "x"]), dict(answer_template=3),
    ],
)
def test_more_bad_values_name_the_field(kwargs):
    with pytest.raises(rc.ReproError) as caught:
        ReproConfig(**kwargs)
    assert caught.value.argument == next(iter(kwargs))


@pytest.mark.parametrize(
    ("template", "command"),
    [
        ("\\boxed{answer}", "\\boxed"), ("$\\frac12 \\fbox{answer}$", "\\fbox"),
        ("\\text{{x}}\\boxed{answer}.", "\\boxed"),
    ],
)
def test_answer_after_a_bare_latex_command_is_refused(template, command):
    """Single braces are str.format's: "\\boxed{answer}" renders "\\boxed5", the braces were meant literally."""
    with pytest.raises(rc.ReproError) as caught:
        ReproConfig(answer_template=template)
    assert caught.value.argument == "answer_template"
    message = caught.value.message
    assert f"right after {command} without braces" in message
    assert repr(template.format(answer=5)) in message and command + "{{{answer}}}" in message
    with pytest.raises(rc.ReproError, match="repro_answer_template: "):
        ReproArguments(repro_answer_template=template).repro_config()


@pytest.mark.parametrize(
    "template", ["\\boxed{{{answer}}}", "The answer is {answer}.", "\\boxed{{ {answer} }}", "\\(x = {answer}\\)"]
)
def test_answer_templates_with_braces_or_no_command_pass(template):
    assert ReproConfig(answer_template=template).answer_template == template


@pytest.mark.parametrize(
    ("name", "value"),
    [("think_end", ""), ("think_end", -1), ("delimiters", ["\n\n", ""]), ("delimiters", [3, -2])],
)
def test_empty_tokens_and_negative_ids_are_refused(name, value):
    with pytest.raises(rc.ReproError) as caught:
        ReproConfig(**{name: value})
    assert caught.value.argument == name


def test_delimiter_text_as_a_mode_gets_the_list_hint():
    with pytest.raises(rc.ReproError, match=r"pass a list: \['\\n\\n'\]"):
        ReproConfig(delimiters="\n\n")


def test_edges_and_numpy_integers_are_accepted():
    ReproConfig(gamma=0, stability_ema=1.0, k=0, w=1.0, alpha=0.0)
    ReproConfig(estimator="ppo", lam=0.9)
    ReproConfig(k=np.int64(5), max_batch_tokens=np.int64(4096), w=np.float32(0.5), think_end=np.int64(2))


@pytest.mark.parametrize("name", sorted(set(BAD_VALUES) - set(ReproArguments.HOST_SETTINGS)))
def test_flag_errors_name_the_flag(name):
    arguments = ReproArguments(**{f"repro_{name}": BAD_VALUES[name]})
    with pytest.raises(rc.ReproError) as caught:
        arguments.repro_config()
    assert caught.value.argument == f"repro_{name}"


def test_every_setting_is_a_flag_or_the_hosts():
    flags = {f.name: f for f in dataclasses.fields(ReproArguments)}
    for name, source in CONFIG_FIELDS.items():
        if name in ReproArguments.HOST_SETTINGS:
            assert f"repro_{name}" not in flags
            continue
        flag = flags[f"repro_{name}"]
        assert flag.default == source.default, name
        assert flag.metadata["help"] == source.metadata["help"], name
        assert "choices" not in source.metadata or list(source.metadata["choices"]) == flag.metadata["choices"]
    assert set(flags) == {f"repro_{name}" for name in CONFIG_FIELDS} - {
        f"repro_{name}" for name in ReproArguments.HOST_SETTINGS
    }


def test_flags_with_their_defaults_give_the_default_config():
    assert ReproArguments().repro_config() == ReproConfig()
    assert ReproArguments(repro_think_end="None").repro_config().think_end is None
    assert ReproArguments().repro_config(temperature=0.7, lam=1.0) == ReproConfig(temperature=0.7)


def test_trl_configs_derive_their_fields():
    pytest.importorskip("trl")
    from repro_core import trl

    for config_class in (trl.ReproGRPOConfig, trl.ReproPPOConfig):
        fields = {f.name: f for f in dataclasses.fields(config_class)}
        for flag in dataclasses.fields(ReproArguments):
            assert flag.name in fields, (config_class.__name__, flag.name)
            if flag.name != "repro_estimator":
                assert fields[flag.name].default == flag.default


def test_trl_estimator_choices_are_enforced():
    pytest.importorskip("trl")
    from repro_core import trl

    with pytest.raises(rc.ReproError) as caught:
        trl.ReproGRPOConfig(output_dir="/tmp/unused", repro_estimator="ppo", report_to="none", use_cpu=True)
    assert caught.value.argument == "repro_estimator"


@pytest.mark.parametrize(
    ("option", "value", "call"),
    [
        ("k", -1, lambda k: rc.select_cuts(np.zeros((1, 2), int), np.ones((1, 2), bool), np.zeros((1, 2)),
                                           delimiters=[1], k=k)),
        ("w", 2.0, lambda w: rc.score_steps([-1.0], [0, 1], w=w)),
        ("gamma", 2.0, lambda gamma: rc.compute_advantages("grpo", [0.0], [0.0], [0, 1], [0], np.ones((1, 2), bool),
                                                           [0], gamma=gamma)),
    ],
)
def test_check_options_is_the_computing_calls_check(option, value, call):
    """check_options runs the Rust core's own option checks: the same message as the call with data."""
    with pytest.raises(rc.ReproError) as without_data:
        _api.check_options(**{option: value})
    with pytest.raises(rc.ReproError) as with_data:
        call(value)
    assert str(without_data.value) == str(with_data.value)
    assert without_data.value.argument == option


def test_check_setting_knows_only_model_side_settings():
    with pytest.raises(KeyError):
        check_setting("k", 3)


def test_errors_pickle_and_rename():
    import pickle

    error = rc.ReproError("k", "expected an int >= 0, got -1")
    again = pickle.loads(pickle.dumps(error))
    assert (again.argument, again.message, str(again)) == ("k", error.message, "k: expected an int >= 0, got -1")
    assert str(error.renamed("repro_k")) == "repro_k: expected an int >= 0, got -1"
    assert isinstance(error, ValueError) and rc.ReproError is _core.ReproError


def _repro_error_calls():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ReproError":
                yield path.relative_to(PACKAGE.parent), node


def test_every_raise_names_an_argument():
    """ReproError(argument, message) everywhere in the package: never a message alone."""
    calls = list(_repro_error_calls())
    assert len(calls) > 50
    bad = [f"{path}:{node.lineno}" for path, node in calls if len(node.args) != 2 or node.keywords]
    assert not bad, bad


def test_score_flags_derive_from_the_repro_arguments():
    from repro_core.analysis.arguments import SCORING_SETTINGS, ReproScoreArguments

    flags = {f.name: f for f in dataclasses.fields(ReproArguments)}
    for name in SCORING_SETTINGS:
        flag = next(f for f in dataclasses.fields(ReproScoreArguments) if f.name == f"repro_{name}")
        if name != "k":  # unset: every paragraph boundary is a cut point
            assert (flag.default, flag.metadata) == (flags[flag.name].default, flags[flag.name].metadata), name

