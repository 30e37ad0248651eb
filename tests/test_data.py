"""Datasets: reasoning-gym problems, question/answer datasets in the prompt/answer/task schema, plain rows of
JSON/JSONL files, gold-answer parsing."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json

import pytest
import reasoning_gym

import repro_core
from repro_core.data import (
    DEFAULT_SYSTEM_PROMPT,
    RECOMMENDED_TASKS,
    chat_prompt,
    final_answer,
    load_dataset_prompts,
    load_prompts,
    load_table,
    parse_task_config,
    read_json_rows,
    reasoning_gym_dataset,
)
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
    assert [generator.score_answer(a, e) for a, e in zip(answers, entries, strict=True)] == [1.0] * 4
    assert boxed_accuracy([rf"\boxed{{{a}}}" for a in answers], answers) == [1.0] * 4
    assert all(generator.score_answer(w, e) < 1.0 for w, e in zip(wrong, entries, strict=True))
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


def test_read_json_rows_splits_lines_on_newline_only(tmp_path):
    # U+2028 / U+2029 / U+0085 are valid inside JSON strings (json.dumps keeps them with ensure_ascii=False), and
    # str.splitlines() would break the line there.
    rows = [{"question": "a\u2028b", "answer": "1"}, {"question": "c\u2029d\x85e\x1cf", "answer": "2"}]
    path = tmp_path / "odd.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows) + "\n", encoding="utf-8")
    assert read_json_rows(path) == rows
    assert load_prompts(str(path))["answer"] == ["1", "2"]
    (tmp_path / "list.json").write_text(json.dumps(rows), encoding="utf-8")
    assert read_json_rows(tmp_path / "list.json") == rows


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ('{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
        ("[1]", "item 1 is int, expected a JSON object"),
    ],
)
def test_read_json_rows_errors(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(repro_core.ReproError, match=f"path: {path}.*{message}"):
        read_json_rows(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3 + 4 = 7\n#### 7", "7"), (" 42 ", "42"), (0.5, "0.5"), (None, ""), (["7"], ""),
     (r"so the answer is $\boxed{\frac{1}{2}}$", r"\frac{1}{2}"), ("#### \\boxed{9}", "9")],
)
def test_final_answer(value, expected):
    assert final_answer(value) == expected


def test_chat_prompt():
    assert chat_prompt(" What is 1 + 1? ", None) == [
        {"role": "user", "content": "What is 1 + 1?\n\nPlease reason step by step, and put your final answer "
         "within \\boxed{}."}
    ]
    assert chat_prompt("q")[0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}


def test_load_table(tmp_path):
    rows = [{"prompt": "q", "completion": "c", "answer": "#### 1"}, {"prompt": "r", "extra": [1]}]
    path = _write_jsonl(tmp_path / "rows.jsonl", rows)
    assert load_table(path) == rows  # as stored: columns may differ between rows
    assert load_table(path, dataset_size=1) == rows[:1]
    generated = load_table("reasoning-gym:basic_arithmetic", dataset_size=3, dataset_seed=5)
    assert [set(row) for row in generated] == [{"prompt", "answer", "task"}] * 3
    assert generated == reasoning_gym_dataset(size=3, seed=5).to_list()


@pytest.mark.parametrize(
    ("dataset", "kwargs", "message"),
    [
        ("missing.jsonl", {}, "dataset: no such file: missing.jsonl"),
        ("reasoning-gym:", {}, "dataset: names no task"),
        ("reasoning-gym:nope", {}, "dataset: unknown reasoning-gym task 'nope'"),
        ("reasoning-gym:basic_arithmetic", {"dataset_size": 0}, "dataset_size: expected a positive integer"),
        ("reasoning-gym:basic_arithmetic", {"task_config": "[1]"}, "task_config: expected a JSON object"),
        ("reasoning-gym:basic_arithmetic", {"task_config": "{"}, "task_config: is not valid JSON"),
        ("openai/gsm8k", {"task_config": {"min_terms": 2}}, "task_config: applies to reasoning-gym:TASK"),
        ("no-such-owner/no-such-dataset", {}, "dataset: cannot load 'no-such-owner/no-such-dataset'"),
    ],
)
def test_load_table_errors_name_the_parameter(tmp_path, dataset, kwargs, message):
    with pytest.raises(repro_core.ReproError, match=message):
        load_table(dataset, cache_dir=str(tmp_path / "cache"), **kwargs)


def test_load_dataset_prompts(tmp_path):
    generated = load_dataset_prompts("reasoning-gym:chain_sum", dataset_size=2, task_config='{"max_terms": 2}')
    assert len(generated) == 2 and set(generated["task"]) == {"chain_sum"}
    path = _write_jsonl(tmp_path / "data.jsonl", [{"problem": "What is 1 + 1?", "solution": "#### 2"}])
    ds = load_dataset_prompts(path, question_column="problem", answer_column="solution", system_prompt="")
    assert ds["answer"] == ["2"] and [m["role"] for m in ds[0]["prompt"]] == ["user"]
    with pytest.raises(repro_core.ReproError, match="question_column: no column 'question'"):
        load_dataset_prompts(path)
    with pytest.raises(repro_core.ReproError, match="dataset_size: expected a positive integer"):
        load_dataset_prompts(path, dataset_size=0)
    assert parse_task_config(None) is None and parse_task_config({"a": 1}) == {"a": 1}


# Hostile files (issue 25): one ReproError naming the file and the line, never a traceback.


def test_a_byte_order_mark_is_skipped(tmp_path):
    """Before: "line 1 is not valid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig)", which no flag changes."""
    row = {"question": "1 + 1?", "answer": "2"}
    for name, text in (("bom.jsonl", json.dumps(row) + "\n"), ("bom.json", json.dumps([row]))):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert read_json_rows(path) == [row]


@pytest.mark.parametrize(
    ("line", "message"),
    [("[" * 100_000 + "]" * 100_000, "line 2: nested too deeply to read (arrays or objects more than"),
     ('{"question": "q", "answer": ' + "9" * 5000 + "}",
      "line 2: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; write such a "
      "number as a string")],
    ids=["deep", "long-integer"])
def test_deep_nesting_and_long_integers_name_the_line(tmp_path, line, message):
    """Before: a RecursionError or a ValueError traceback out of json.loads."""
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n" + line + "\n")
    with pytest.raises(repro_core.ReproError) as error:
        read_json_rows(path)
    assert error.value.argument == "path" and error.value.message.startswith(f"{path} {message}")
    with pytest.raises(repro_core.ReproError) as error:  # and as a --dataset, the flag named
        load_dataset_prompts(str(path))
    assert error.value.argument == "dataset" and f"{path} {message}" in error.value.message
    path.write_text("[" + json.dumps({"question": "q", "answer": "1"}) + ", " + line + "]")
    with pytest.raises(repro_core.ReproError, match="nested too deeply|Exceeds the limit") as error:
        read_json_rows(path)
    assert error.value.message.startswith(f"{path}: ")


def test_rows_without_a_gold_answer_are_skipped_with_a_count(tmp_path, caplog):
    """Before: trained against an empty \\boxed{} (the reward of such a row is None), and the end-of-run summary
    crashed. Empty, null, '####' with nothing after it and an empty \\boxed{} are no answer."""
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(6)]
    for index, answer in ((1, ""), (2, None), (4, "so #### "), (5, "\\boxed{}")):
        rows[index]["answer"] = answer
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with caplog.at_level("WARNING", logger="repro_core.data"):
        dataset = load_dataset_prompts(str(path))
    assert dataset["answer"] == ["0", "3"]
    assert [prompt[-1]["content"].split("\n")[0] for prompt in dataset["prompt"]] == ["q0", "q3"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"skipping 4 of the 6 rows of {path}: no gold answer in 'answer'")
    assert warning.endswith("rows 1, 2, 4, 5")
    path.write_text(json.dumps({"question": "q", "answer": "####"}) + "\n")
    with pytest.raises(repro_core.ReproError, match="no row of .* has a gold answer in 'answer'") as error:
        load_dataset_prompts(str(path))
    assert error.value.argument == "answer_column"
