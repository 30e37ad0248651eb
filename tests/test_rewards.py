"""The boxed-answer outcome reward: extraction, math-verify equivalence, TRL's calling convention, threads, pickle."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pickle
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import repro_core
from repro_core import rewards
from repro_core.rewards import boxed_accuracy, last_boxed


def _chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{42}.", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{1} then \boxed{ 2 }", "2"),
        (r"\boxed {7}", "7"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{3} and a cut-off \boxed{\frac{1}{", "3"),
        ("no box here", None),
        (r"\boxed{", None),
        (r"\boxed{}", ""),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_correct_incorrect_missing():
    completions = [r"The answer is \boxed{42}.", r"The answer is \boxed{41}.", "The answer is 42.", r"\boxed{}"]
    assert boxed_accuracy(completions, ["42"] * 4) == [1.0, 0.0, 0.0, 0.0]


def test_last_boxed_wins():
    assert boxed_accuracy([r"First \boxed{41}, corrected: \boxed{42}"], ["42"]) == [1.0]
    assert boxed_accuracy([r"First \boxed{42}, then \boxed{41}"], ["42"]) == [0.0]


@pytest.mark.parametrize(
    ("boxed", "gold"),
    [
        ("0.5", "1/2"),
        ("42.0", "42"),
        (r"\frac{1}{2}", "0.5"),
        (r"\frac{1}{2}", "1/2"),
        ("-3.5", "-3.5"),
        ("-7/2", "-3.5"),
        ("1,000", "1000"),
        (r"\text{42}", "42"),
        (r"\dfrac{79}{173}", r"$\dfrac{79}{173}$"),  # reasoning-gym's fraction_simplification style
    ],
)
def test_equivalent_forms(boxed, gold):
    assert boxed_accuracy([rf"\boxed{{{boxed}}}"], [gold]) == [1.0]


@pytest.mark.parametrize(("boxed", "gold"), [("0.5", "1/3"), ("-42", "42"), ("4.2", "42"), ("x", "1")])
def test_different_values(boxed, gold):
    assert boxed_accuracy([rf"\boxed{{{boxed}}}"], [gold]) == [0.0]


def test_gold_forms():
    assert boxed_accuracy([r"\boxed{42}"] * 3, [42, r"So the total is \boxed{42}.", "  42 "]) == [1.0, 1.0, 1.0]


def test_unusable_gold_is_not_applicable():
    # None, not 0.0: TRL turns it into NaN and leaves the row out instead of punishing a correct completion.
    assert boxed_accuracy([r"\boxed{42}"] * 3, [None, "", "   "]) == [None, None, None]


def test_conversational_completions():
    completions = [
        _chat(r"\boxed{12}"),
        _chat("no answer"),
        [{"role": "assistant", "content": [{"type": "text", "text": r"\boxed{12}"}]}],
        # a tool result is not the model's answer
        [{"role": "assistant", "content": "calling"}, {"role": "tool", "content": r"\boxed{12}"}],
        [{"role": "assistant", "content": r"\boxed{11}"}, {"role": "assistant", "content": r"\boxed{12}"}],
    ]
    assert boxed_accuracy(completions, ["12"] * 5) == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_called_like_trl():
    # GRPOTrainer._calculate_rewards (TRL 1.16): every keyword, dataset columns repeated per completion.
    logged: dict[str, list] = {}
    metrics: dict[str, float] = {}
    prompts = [[{"role": "user", "content": "Calculate 6 * 7."}]] * 2
    result = boxed_accuracy(
        prompts=prompts,
        completions=[_chat(r"\boxed{42}"), _chat("42")],
        completion_ids=[[1, 2], [3]],
        answer=["42", "42"],
        task=["basic_arithmetic"] * 2,
        trainer_state=object(),
        log_extra=logged.__setitem__,
        log_metric=metrics.__setitem__,
    )
    assert result == [1.0, 0.0]
    assert logged == {"boxed": ["42", ""]}
    assert metrics == {"boxed_fraction": 0.5}


def test_name_and_pickle():
    assert boxed_accuracy.__name__ == "boxed_accuracy"  # TRL's column and metric names come from __name__
    assert pickle.loads(pickle.dumps(boxed_accuracy)) is boxed_accuracy


def test_runs_in_threads():
    # math-verify's signal-based timeout raises outside the main thread unless it is switched off.
    golds = ["1/2", "42", "-3"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda g: boxed_accuracy([rf"\boxed{{{g}}}", r"\boxed{0}"], [g, g]), golds))
    assert results == [[1.0, 0.0]] * 3


def test_main_thread_timeout_bounds_pathological_answers(monkeypatch):
    monkeypatch.setattr(rewards, "_VERIFY_TIMEOUT", 1)
    start = time.perf_counter()
    assert boxed_accuracy([r"\boxed{9^{9^{9}}}"], ["42"]) == [0.0]
    assert time.perf_counter() - start < 10


def test_errors():
    with pytest.raises(repro_core.ReproError, match="answer: expected one per completion"):
        boxed_accuracy([r"\boxed{1}"], ["1", "2"])
    with pytest.raises(repro_core.ReproError, match=r"completions\[0\]"):
        boxed_accuracy([42], ["42"])
