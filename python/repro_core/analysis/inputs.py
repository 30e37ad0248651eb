"""What ``repro score`` reads: rows (prompt, gold answer, completion) of a dataset, and the traces to score.

Loading and gold-answer parsing are ``repro_core.data``'s (``load_table``, ``final_answer``); this module adds
what traces need: prompts as text or chat messages, completions as text or assistant messages, and rows with
the same prompt grouped as samples of one problem.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..data import DEFAULT_SYSTEM_PROMPT, REASONING_GYM_PREFIX, final_answer, load_table
from ..errors import ReproError

__all__ = ["DEFAULT_INPUT", "DEFAULT_PROBLEMS", "Row", "Trace", "given_traces", "load_rows"]

#: What ``repro score`` analyses when no dataset is named: sampled answers to procedural arithmetic problems.
DEFAULT_INPUT = "reasoning-gym:basic_arithmetic"
#: Problems generated for a reasoning-gym dataset unless ``dataset_size`` says.
DEFAULT_PROBLEMS = 4


@dataclass(frozen=True)
class Row:
    """One input row: the prompt as given (text or chat messages), the gold answer, the completion if any."""

    prompt: str | list[dict[str, Any]]
    answer: str
    completion: str | None


@dataclass(frozen=True)
class Trace:
    """One completion to score: its problem (row) and sample index, the prompt used, token ids and texts."""

    problem: int
    sample: int
    prompt: str | list[dict[str, Any]]
    prompt_ids: list[int]
    completion_ids: list[int]
    completion: str
    answer: str


def load_rows(
    dataset: str,
    *,
    split: str = "train",
    dataset_config: str | None = None,
    dataset_size: int | None = None,
    dataset_seed: int = 0,
    task_config: str | dict[str, Any] | None = None,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    prompt_column: str | None = None,
    completion_column: str | None = "completion",
    answer_column: str = "answer",
) -> list[Row]:
    """Rows of a JSONL/JSON file, a Hugging Face dataset (id or local directory) or ``reasoning-gym:TASK``
    (``dataset_size`` problems, default ``DEFAULT_PROBLEMS``), read by ``repro_core.data.load_table``.

    ``prompt_column`` None takes ``prompt``, else ``question``. ``completion_column`` None reads no completions
    (they are to be generated). The answer is read by ``repro_core.data.final_answer`` (GSM8K's ``#### 42``, the
    last ``\\boxed{}``). Raises ReproError naming the parameter at fault (``dataset``, ``answer_column``, ...).
    """
    table = load_table(dataset, dataset_size=dataset_size or _procedural_size(dataset), dataset_config=dataset_config,
                       dataset_seed=dataset_seed, task_config=task_config, split=split, system_prompt=system_prompt)
    first = table[0]
    if prompt_column is None:
        prompt_column = next((c for c in ("prompt", "question") if c in first), None)
        if prompt_column is None:
            raise ReproError("prompt_column", f"{dataset} has neither a 'prompt' nor a 'question' column "
                             f"(columns: {_columns(first)}); name the prompt column")
    wanted = {"prompt_column": prompt_column, "answer_column": answer_column}
    if completion_column is not None:
        wanted["completion_column"] = completion_column
    rows = []
    for index, item in enumerate(table):
        for argument, column in wanted.items():
            if column not in item:
                where = dataset if index == 0 else f"row {index} of {dataset}"
                raise ReproError(argument, f"{where} has no column {column!r} (columns: {_columns(item)})")
        completion = None if completion_column is None else _completion(item[completion_column], index)
        rows.append(Row(_prompt(item[prompt_column], index), _gold(item[answer_column], index), completion))
    return rows


def _procedural_size(dataset: str) -> int | None:
    return DEFAULT_PROBLEMS if dataset.startswith(REASONING_GYM_PREFIX) else None


def given_traces(rows: Sequence[Row], prompt_ids: Sequence[list[int]], tokenizer: Any) -> list[Trace]:
    """Traces of the completions read with the rows (tokenized without special tokens); rows with the same
    prompt are samples of one problem, numbered by its first row."""
    problems: dict[str, int] = {}
    samples: dict[int, int] = {}
    traces = []
    for index, (row, ids) in enumerate(zip(rows, prompt_ids, strict=True)):
        problem = problems.setdefault(json.dumps(row.prompt, sort_keys=True), index)
        sample = samples[problem] = samples.get(problem, -1) + 1
        completion = row.completion or ""
        completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
        traces.append(Trace(problem, sample, row.prompt, ids, completion_ids, completion, row.answer))
    return traces


def _columns(item: dict[str, Any]) -> str:
    return ", ".join(map(str, item)) or "none"


def _prompt(value: Any, index: int) -> str | list[dict[str, Any]]:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return value
    raise ReproError("prompt_column", f"row {index}: prompt is {_describe(value)}, expected text or a list of "
                     "chat messages")


def _completion(value: Any, index: int) -> str:
    """A completion: text, or the assistant messages of a conversational completion joined by newlines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n".join(str(m.get("content", "")) for m in value if m.get("role", "assistant") == "assistant")
    raise ReproError("completion_column", f"row {index}: completion is {_describe(value)}, expected text or a list "
                     "of chat messages")


def _gold(value: Any, index: int) -> str:
    text = final_answer(value)
    if not text:
        raise ReproError("answer_column", f"row {index}: answer is {_describe(value)}, expected the gold answer as "
                         "text or a number")
    return text


def _describe(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "empty"
    return type(value).__name__
