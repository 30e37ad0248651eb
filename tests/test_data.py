"""Math prompts: reasoning-gym problems and question/answer datasets in the prompt/answer/task schema."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json

import pytest
import reasoning_gym

import repro_core
from repro_core.data import DEFAULT_SYSTEM_PROMPT, RECOMMENDED_TASKS, load_prompts, reasoning_gym_dataset
from repro_core.rewards import boxed_accuracy


def test_schema_and_prompt():
    ds = reasoning_gym_dataset(size=8)
    assert ds.column_names == ["prompt", "answer", "task"]
    assert len(ds) == 8
    for row in ds:
        system, user = row["prompt"]
        assert system == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
        assert user["role"] == "user"
        assert user["content"].startswith("Calculate ")
        assert user["content"].endswith(r"put your final answer within \boxed{}.")
        assert row["answer"].strip()
        assert row["task"] == "basic_arithmetic"


def test_without_system_prompt():
    for system_prompt in (None, ""):
        prompt = reasoning_gym_dataset(size=1, system_prompt=system_prompt)[0]["prompt"]
        assert [message["role"] for message in prompt] == ["user"]


def test_deterministic_by_seed():
    first = reasoning_gym_dataset(size=16, seed=3)
    assert first.to_list() == reasoning_gym_dataset(size=16, seed=3).to_list()
    assert first["prompt"] != reasoning_gym_dataset(size=16, seed=4)["prompt"]


def test_default_arithmetic_is_small_and_correctly_labelled():
    for row in reasoning_gym_dataset(size=64, seed=1):
        content = row["prompt"][-1]["content"]
        expression = content.removeprefix("Calculate ").split(".\n", 1)[0]
        assert "/" not in expression
        assert len(expression.replace("(", " ").replace(")", " ").split()) <= 5  # at most 3 terms
        assert all(len(term.lstrip("-")) <= 2 for term in expression.split() if term.lstrip("-").isdigit())
        assert eval(expression) == int(row["answer"])  # noqa: S307 (digits and + - * only)


@pytest.mark.parametrize("task", ["chain_sum", "products", "gsm_symbolic", "simple_equations"])
def test_other_tasks(task):
    ds = reasoning_gym_dataset(task, size=4, seed=0)
    assert len(ds) == 4 and set(ds["task"]) == {task}
    assert boxed_accuracy([rf"\boxed{{{a}}}" for a in ds["answer"]], ds["answer"]) == [1.0] * 4


def test_task_config_overrides_defaults():
    ds = reasoning_gym_dataset(size=4, task_config={"min_terms": 4, "max_terms": 4, "format_style": "natural"})
    assert not any(row["prompt"][-1]["content"].startswith("Calculate ") for row in ds)


@pytest.mark.parametrize("task", ["basic_arithmetic", "chain_sum", "products", "gsm_symbolic", "lcm"])
def test_reasoning_gym_scorer_agrees(task):
    generator = reasoning_gym.create_dataset(task, size=4, seed=0)
    entries = list(generator)
    answers = [entry["answer"] for entry in entries]
    wrong = [str(int(float(answer)) + 1) for answer in answers]
    assert [generator.score_answer(a, e) for a, e in zip(answers, entries)] == [1.0] * 4
    assert boxed_accuracy([rf"\boxed{{{a}}}" for a in answers], answers) == [1.0] * 4
    assert all(generator.score_answer(w, e) < 1.0 for w, e in zip(wrong, entries))
    assert boxed_accuracy([rf"\boxed{{{w}}}" for w in wrong], answers) == [0.0] * 4


def test_recommended_tasks_exist():
    from reasoning_gym.factory import DATASETS

    assert set(RECOMMENDED_TASKS) <= set(DATASETS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "basic_arithmetc"}, "unknown reasoning-gym task 'basic_arithmetc'; did you mean basic_arithmetic"),
        ({"task": "nope"}, "task: unknown reasoning-gym task 'nope'; math tasks include basic_arithmetic"),
        ({"size": 0}, "size: expected a positive integer, got 0"),
        ({"size": 2.0}, "size: expected a positive integer"),
        ({"task_config": {"foo": 1}}, "task_config: invalid for 'basic_arithmetic'.*foo"),
        ({"task_config": {"min_terms": 0}}, "task_config: invalid for 'basic_arithmetic'.*min_terms"),
        ({"task_config": {"size": 3}}, "task_config: pass size as the size argument"),
        ({"task_config": {"allow_parentheses": False}}, "task_config: basic_arithmetic with allow_parentheses=False"),
    ],
)
def test_reasoning_gym_errors(kwargs, message):
    with pytest.raises(repro_core.ReproError, match=message):
        reasoning_gym_dataset(**kwargs)


def test_addition_only_without_parentheses_is_allowed():
    config = {"allow_parentheses": False, "operators": ("+", "-")}
    ds = reasoning_gym_dataset(size=8, task_config=config)
    for row in ds:
        expression = row["prompt"][-1]["content"].removeprefix("Calculate ").split(".\n", 1)[0]
        assert eval(expression) == int(row["answer"])  # noqa: S307 (digits and + - only)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_load_prompts_jsonl(tmp_path):
    rows = [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7", "id": 0},
        {"question": "What is 2 * 21?", "answer": "42", "id": 1},
        {"question": "Half of 1?", "answer": 0.5, "id": 2},
    ]
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    ds = load_prompts(path, cache_dir=str(tmp_path / "cache"))
    assert ds.column_names == ["prompt", "answer", "task"]
    assert ds["answer"] == ["7", "42", "0.5"]
    assert ds["task"] == [path] * 3
    assert ds[0]["prompt"][-1]["content"].startswith("Tom has 3 apples")
    assert r"\boxed{}" in ds[0]["prompt"][-1]["content"]
    assert boxed_accuracy([r"\boxed{7}", r"\boxed{42}", r"\boxed{\frac{1}{2}}"], ds["answer"]) == [1.0] * 3


def test_load_prompts_columns_and_limit(tmp_path):
    rows = [{"problem": f"What is {i} + 1?", "solution": str(i + 1)} for i in range(5)]
    path = _write_jsonl(tmp_path / "data.jsonl", rows)
    columns = {"question_column": "problem", "answer_column": "solution"}
    ds = load_prompts(path, **columns, system_prompt=None, limit=2, cache_dir=str(tmp_path / "cache"))
    assert ds["answer"] == ["1", "2"]
    assert [m["role"] for m in ds[0]["prompt"]] == ["user"]
    with pytest.raises(repro_core.ReproError, match="no column 'question' .*columns: problem, solution"):
        load_prompts(path, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(repro_core.ReproError, match="limit: expected a positive integer"):
        load_prompts(path, **columns, limit=0)


def test_load_prompts_errors(tmp_path):
    with pytest.raises(repro_core.ReproError, match="name: cannot load 'no-such-owner/no-such-dataset'"):
        load_prompts("no-such-owner/no-such-dataset", cache_dir=str(tmp_path / "cache"))
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"question": 3, "answer": "3"}])
    with pytest.raises(repro_core.ReproError, match="question_column: row 0 of 'question' is int"):
        load_prompts(path, cache_dir=str(tmp_path / "cache"))
