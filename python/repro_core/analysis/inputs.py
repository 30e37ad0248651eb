"""What ``repro score`` reads: rows (prompt, gold answer, completion) of a dataset, and the traces to score.

Loading and gold-answer parsing are ``repro_core.data``'s (``load_table``, ``final_answer``); this module adds
what traces need: prompts as text or chat messages, completions as text or assistant messages (either may be
OpenAI-style content parts, read as their text), gold answers as text or numbers, the row's ``truncated`` marker,
and rows with the same prompt grouped as samples of one problem. A field of the wrong type is a ReproError naming
the row and the column, raised while the rows are read (before any model is loaded).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..data import DEFAULT_SYSTEM_PROMPT, REASONING_GYM_PREFIX, final_answer, load_table
from ..errors import ReproError

__all__ = ["DEFAULT_INPUT", "DEFAULT_PROBLEMS", "Row", "Trace", "check_text", "load_rows", "problem_numbers"]

#: What ``repro score`` analyses when no dataset is named: sampled answers to procedural arithmetic problems.
DEFAULT_INPUT = "reasoning-gym:basic_arithmetic"
#: Problems generated for a reasoning-gym dataset unless ``dataset_size`` says.
DEFAULT_PROBLEMS = 4


@dataclass(frozen=True)
class Row:
    """One input row: the prompt as given (text or chat messages), the gold answer, the completion if any, and
    whether the row says that completion hit its token limit."""

    prompt: str | list[dict[str, Any]]
    answer: str
    completion: str | None
    truncated: bool = False


@dataclass(frozen=True)
class Trace:
    """One completion to score: its problem (row) and sample index, the prompt used, token ids and texts.

    ``truncated``: the completion stopped at a token limit (``--max_new_tokens``, the row's own ``truncated``
    marker, or a cut to fit the model's context). ``id``: the trace's number in the whole input (its record's
    ``id``); None numbers traces by their position in the list scored.
    """

    problem: int
    sample: int
    prompt: str | list[dict[str, Any]]
    prompt_ids: list[int]
    completion_ids: list[int]
    completion: str
    answer: str
    truncated: bool = False
    id: int | None = None


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
    last ``\\boxed{}``); an integer or finite float answer is its decimal text, a bool, NaN, list or mapping is
    refused. A row's ``truncated`` (true/false) or ``finish_reason`` (``"length"``: truncated) marks a completion
    that hit its token limit; rows without either are not marked. Raises ReproError naming the parameter at fault
    (``dataset``, ``answer_column``, ...) and the row.
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
        truncated = completion_column is not None and _truncated(item, index)
        rows.append(Row(_prompt(item[prompt_column], index), _gold(item[answer_column], index), completion,
                        truncated))
    return rows


def _procedural_size(dataset: str) -> int | None:
    return DEFAULT_PROBLEMS if dataset.startswith(REASONING_GYM_PREFIX) else None


def problem_numbers(rows: Sequence[Row]) -> list[tuple[int, int]]:
    """(problem, sample) of each row: rows with the same prompt are samples of one problem, numbered by its first
    row."""
    problems: dict[str, int] = {}
    samples: dict[int, int] = {}
    numbers = []
    for index, row in enumerate(rows):
        problem = problems.setdefault(json.dumps(row.prompt, sort_keys=True), index)
        samples[problem] = samples.get(problem, -1) + 1
        numbers.append((problem, samples[problem]))
    return numbers


def check_text(argument: str, index: int, text: str | list[dict[str, Any]]) -> None:
    """A ReproError (``argument``, naming row ``index``) for text that cannot be encoded as UTF-8, such as a lone
    surrogate ("\\ud800", which JSON allows and tokenizers reject)."""
    texts = [text] if isinstance(text, str) else [str(m.get("content", "")) for m in text]
    for value in texts:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            character = value[error.start]
            raise ReproError(argument, f"row {index}: holds U+{ord(character):04X} at character {error.start}, "
                             "a lone surrogate that is not text (it cannot be encoded as UTF-8)") from None


def _columns(item: dict[str, Any]) -> str:
    return ", ".join(map(str, item)) or "none"


def _prompt(value: Any, index: int) -> str | list[dict[str, Any]]:
    """A prompt: text, content parts (read as their text), or chat messages (their content parts read as text)."""
    if _is_content_parts(value):
        value = _parts_text(value, index, "prompt_column", "prompt")
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return [{**m, "content": _message_text(m["content"], index, "prompt_column", "prompt")} for m in value]
    raise ReproError("prompt_column", f"row {index}: prompt is {_describe(value)}, expected text, content parts or "
                     "a list of chat messages")


def _completion(value: Any, index: int) -> str:
    """A completion: text, content parts, or the assistant messages of a conversational completion joined by
    newlines."""
    if isinstance(value, str):
        return value
    if _is_content_parts(value):
        return _parts_text(value, index, "completion_column", "completion")
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n".join(_message_text(m.get("content", ""), index, "completion_column", "completion")
                         for m in value if m.get("role", "assistant") == "assistant")
    raise ReproError("completion_column", f"row {index}: completion is {_describe(value)}, expected text, content "
                     "parts or a list of chat messages")


def _is_content_parts(value: Any) -> bool:
    """OpenAI-style content parts: [{"type": "text", "text": ...}, ...] (no message roles)."""
    return (isinstance(value, list) and bool(value)
            and all(isinstance(p, dict) and "type" in p and "role" not in p for p in value))


def _parts_text(parts: list[dict[str, Any]], index: int, argument: str, what: str) -> str:
    texts = []
    for part in parts:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ReproError(argument, f"row {index}: {what} has a content part of type {part.get('type')!r}, "
                             "expected only text parts ({\"type\": \"text\", \"text\": ...})")
        texts.append(part["text"])
    return "".join(texts)


def _message_text(content: Any, index: int, argument: str, what: str) -> str:
    if isinstance(content, str):
        return content
    if _is_content_parts(content):
        return _parts_text(content, index, argument, what)
    raise ReproError(argument, f"row {index}: a message of the {what} has content {_describe(content)}, expected "
                     "text or content parts")


def _gold(value: Any, index: int) -> str:
    """The gold answer: text (``final_answer``), or an integer or finite float as its decimal text."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(value, str) or (number and math.isfinite(value)):
        text = final_answer(value)
        if text:
            return text
        if isinstance(value, str) and value.strip():  # "####", "\boxed{}": text, but no answer in it
            raise ReproError("answer_column", f"row {index}: answer {value[-80:]!r} holds no answer: nothing after "
                             "its last '####' or inside its last \\boxed{}; write the gold answer there "
                             "('... #### 42', '\\boxed{42}') or on its own ('42')")
    raise ReproError("answer_column", f"row {index}: answer is {_describe(value)}, expected the gold answer as "
                     "text or a number")


def _truncated(item: dict[str, Any], index: int) -> bool:
    """The row's own marker of a completion cut at its token limit: ``truncated`` (a bool), else
    ``finish_reason`` (OpenAI's and vLLM's: "length" when the limit was hit)."""
    value = item.get("truncated")
    if value is None:
        return item.get("finish_reason") == "length"
    if not isinstance(value, bool):
        raise ReproError("truncated", f"row {index}: truncated is {_describe(value)}, expected true or false")
    return value


def _describe(value: Any) -> str:
    if value is None or (isinstance(value, (str, list)) and not value):
        return "empty"
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        return f"{value!r} ({type(value).__name__})"
    return type(value).__name__
