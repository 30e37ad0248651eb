r"""Datasets for ``repro train`` and ``repro score``: the one home of loading rows and parsing gold answers.

A ``--dataset`` is ``reasoning-gym:TASK`` (problems generated offline), a local ``.json``/``.jsonl`` file, or a
Hugging Face dataset id or directory. ``load_table`` reads any of them as plain rows (dicts);
``load_dataset_prompts`` (``repro train``) and ``load_prompts`` / ``reasoning_gym_dataset`` build a
``datasets.Dataset`` with the columns ``prompt`` (chat messages that ask for step-by-step reasoning and a final
``\boxed{}``, ``chat_prompt``), ``answer`` (the gold answer as text, ``final_answer``: what
``repro_core.rewards.boxed_accuracy`` checks) and ``task`` (where the row came from).

Errors are ``ReproError`` naming the function's parameter; the parameters of ``load_table`` and
``load_dataset_prompts`` are spelled as the commands' flags (``dataset``, ``dataset_size``, ...), so a command
names the flag by prefixing ``--``. Importing this module imports neither ``datasets`` nor ``reasoning_gym``.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .errors import ReproError

if TYPE_CHECKING:
    import datasets

__all__ = [
    "DEFAULT_REASONING_GYM_SIZE",
    "DEFAULT_SYSTEM_PROMPT",
    "INSTRUCTION",
    "REASONING_GYM_PREFIX",
    "RECOMMENDED_TASKS",
    "chat_prompt",
    "final_answer",
    "load_dataset_prompts",
    "load_prompts",
    "load_table",
    "parse_task_config",
    "read_json_rows",
    "reasoning_gym_dataset",
]

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant that solves math problems carefully."
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
#: The ``--dataset`` prefix that selects a procedurally generated reasoning-gym task.
REASONING_GYM_PREFIX = "reasoning-gym:"
#: Problems generated for ``reasoning-gym:TASK`` when no size is given.
DEFAULT_REASONING_GYM_SIZE = 512

# reasoning-gym tasks whose answers are numbers or fractions that math-verify compares reliably. Others generate
# too, but e.g. bitwise_arithmetic's hex answers all parse as 0 and power_function's "1e-22" answers as 1*e*(-22).
RECOMMENDED_TASKS = (
    "basic_arithmetic",
    "chain_sum",
    "products",
    "gsm_symbolic",
    "simple_equations",
    "lcm",
    "gcd",
    "leg_counting",
    "fraction_simplification",
    "decimal_chain_sum",
)

# Defaults sized for a ~135M model (2-3 terms of up to 2 digits); task_config fields override them. basic_arithmetic
# leaves out "/" because reasoning-gym labels it with floor division, which rarely but silently differs from "/".
_SMALL_CONFIGS: dict[str, dict[str, Any]] = {
    "basic_arithmetic": {
        "min_terms": 2,
        "max_terms": 3,
        "max_digits": 2,
        "operators": ("+", "-", "*"),
        "allow_negation": False,
    },
    "chain_sum": {"max_terms": 3, "max_digits": 2},
    "products": {"max_digits": 2},
}



def chat_prompt(question: str, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The chat messages that ask ``question`` the way ``repro train`` asks it: an optional system message, then
    the question followed by ``INSTRUCTION`` (reason step by step, answer in ``\\boxed{}``)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": f"{question.strip()}\n\n{INSTRUCTION}"})
    return messages


def final_answer(value: Any) -> str:
    """The gold answer as text: what follows the last ``####`` of a GSM8K-style solution ("... #### 42"), then
    the content of the last ``\\boxed{}`` if there is one; "" for None, a list or a mapping (not gradable), and
    for text that holds no answer (nothing after ``####``, an empty ``\\boxed{}``)."""
    from .rewards import last_boxed

    if value is None or isinstance(value, (list, dict)):
        return ""  # boxed_accuracy scores an empty gold answer as None (not applicable)
    text = str(value).strip()
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    boxed = last_boxed(text)
    return text if boxed is None else boxed  # an empty \boxed{} is no answer


def _dataset(questions: list[str], answers: list[str], task: str, system_prompt: str | None) -> datasets.Dataset:
    import datasets

    return datasets.Dataset.from_dict(
        {
            "prompt": [chat_prompt(question, system_prompt) for question in questions],
            "answer": answers,
            "task": [task] * len(questions),
        }
    )


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ReproError(name, f"expected a positive integer, got {value!r}")


def reasoning_gym_dataset(
    task: str = "basic_arithmetic",
    size: int = DEFAULT_REASONING_GYM_SIZE,
    seed: int = 0,
    *,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    task_config: dict[str, Any] | None = None,
) -> datasets.Dataset:
    """``size`` problems of reasoning-gym's ``task``, generated offline; the same ``seed`` gives the same rows.

    Args:
        task: A reasoning-gym dataset name; ``RECOMMENDED_TASKS`` lists those that ``boxed_accuracy`` grades well.
        size: Number of problems.
        seed: Generator seed.
        system_prompt: Content of a leading system message; None or "" for none (the chat template may then add its
            own default).
        task_config: Fields of the task's reasoning-gym config class (``BasicArithmeticDatasetConfig`` and so on),
            applied over this module's small-model defaults for basic_arithmetic, chain_sum and products.

    Raises:
        ReproError: unknown task, ``size`` below 1, a bad ``task_config``, or a task without reference answers.
    """
    import reasoning_gym  # ~1 s to import: only here, so the rest of the package does not pay it
    from reasoning_gym.factory import DATASETS

    if task not in DATASETS:
        close = difflib.get_close_matches(task, DATASETS, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ReproError(
            "task", f"unknown reasoning-gym task {task!r}; {hint}"
            f"math tasks include {', '.join(RECOMMENDED_TASKS[:6])} ({len(DATASETS)} tasks in all)"
        )
    _check_count("size", size)
    overrides = dict(task_config or {})
    for reserved in ("size", "seed"):
        if reserved in overrides:
            raise ReproError("task_config", f"pass {reserved} as the {reserved} argument, not inside task_config")
    config = {**_SMALL_CONFIGS.get(task, {}), **overrides}
    # reasoning-gym 0.1.25's parenthesis-free generator evaluates "*" and "/" left to right (2 + 3 * 4 -> 20).
    if task == "basic_arithmetic" and not config.get("allow_parentheses", True):
        if set(config.get("operators", "+-*/")) - {"+", "-"}:
            raise ReproError(
                "task_config", "basic_arithmetic with allow_parentheses=False mislabels '*' and '/' "
                "(reasoning-gym computes them left to right); use operators ('+', '-') or allow_parentheses=True"
            )
    try:
        generator = reasoning_gym.create_dataset(task, size=size, seed=seed, **config)
    except (TypeError, AssertionError) as error:  # unknown config field / the config's validate() failing
        raise ReproError("task_config", f"invalid for {task!r}: {error}") from None
    items = list(generator)
    missing = [item["question"] for item in items if item["answer"] is None]
    if missing:
        raise ReproError("task", f"{task!r} has no reference answers to grade against (e.g. for {missing[0][:80]!r})")
    return _dataset([item["question"] for item in items], [str(item["answer"]) for item in items], task, system_prompt)


def parse_task_config(raw: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``task_config`` as given on a command line (a JSON object) or in a YAML file (a mapping); None stays None."""
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ReproError("task_config", f"is not valid JSON ({error}): {raw!r}") from None
    if not isinstance(value, dict):
        raise ReproError("task_config", f"expected a JSON object, got {raw!r}")
    return value


def read_json_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The objects of a JSON file holding a list of them, or of a JSONL file (one per line, blank lines skipped).

    Lines are split on "\\n" only: a JSON string may hold U+2028 and other characters that ``str.splitlines``
    also breaks on. Raises ReproError("path", ...) naming the file and the line or item at fault.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark, as some editors write, is skipped
    except (OSError, UnicodeDecodeError) as error:
        raise ReproError("path", f"cannot read {path}: {error}") from None
    if not text.strip():
        raise ReproError("path", f"{path} is empty")
    if text.lstrip().startswith("["):
        numbered = list(enumerate(_parse_json(text, path, ""), start=1))
    else:
        numbered = [(number, _parse_json(line, path, f" line {number}"))
                    for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    for number, item in numbered:
        if not isinstance(item, dict):
            raise ReproError("path", f"{path} item {number} is {type(item).__name__}, expected a JSON object")
    return [item for _, item in numbered]


def _parse_json(text: str, path: Path, where: str) -> Any:
    """``text`` (``where`` in the file ``path``: "" for all of it, else " line N") parsed as JSON, or a ReproError
    naming both: invalid JSON, nesting deeper than the parser's recursion allows, or an integer longer than Python
    converts (4300 digits)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ReproError("path", f"{path}{where} is not valid JSON: {error}") from None
    except RecursionError:
        raise ReproError("path", f"{path}{where}: nested too deeply to read (arrays or objects more than "
                         f"{sys.getrecursionlimit()} levels deep); flatten it") from None
    except ValueError as error:  # int(): "Exceeds the limit (4300 digits) for integer string conversion: ..."
        reason = str(error).split("; use sys.")[0]
        raise ReproError("path", f"{path}{where}: {reason}; write such a number as a string") from None


def load_table(
    dataset: str,
    *,
    dataset_size: int | None = None,
    dataset_config: str | None = None,
    dataset_seed: int = 0,
    task_config: str | Mapping[str, Any] | None = None,
    split: str = "train",
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    cache_dir: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of ``dataset`` as dicts, as many as ``dataset_size`` says (None: all of a file or dataset).

    Args:
        dataset: ``reasoning-gym:TASK`` (``dataset_size`` problems, default ``DEFAULT_REASONING_GYM_SIZE``, seeded
            by ``dataset_seed``, options ``task_config``; rows of ``reasoning_gym_dataset``: prompt, answer, task),
            a ``.json``/``.jsonl`` file (``read_json_rows``), or a Hugging Face dataset id or directory (its
            ``split``, configuration ``dataset_config``).
        system_prompt: The system message of reasoning-gym prompts (the rows of files and datasets are as stored).
        cache_dir: Where ``datasets`` caches what it downloads (its default when None).

    Raises:
        ReproError naming the parameter: no such file or dataset, a bad row, no rows, a bad size or task.
    """
    if dataset_size is not None:
        _check_count("dataset_size", dataset_size)
    if dataset.startswith(REASONING_GYM_PREFIX):
        generated = _generate(dataset, dataset_size, dataset_seed, task_config, system_prompt)
        return list(generated.to_list())
    if task_config is not None:
        raise ReproError("task_config", f"applies to {REASONING_GYM_PREFIX}TASK datasets only")
    if os.path.isfile(dataset):
        try:
            rows = read_json_rows(dataset)[:dataset_size]
        except ReproError as error:
            raise error.renamed("dataset") from None
    elif dataset.endswith((".jsonl", ".json")):
        raise ReproError("dataset", f"no such file: {dataset}")
    else:
        rows = _read_hub(dataset, split=split, subset=dataset_config, limit=dataset_size, cache_dir=cache_dir)
    if not rows:
        raise ReproError("dataset", f"{dataset} has no rows")
    return rows


def _generate(dataset: str, size: int | None, seed: int, task_config: str | Mapping[str, Any] | None,
              system_prompt: str | None) -> datasets.Dataset:
    """``reasoning_gym_dataset`` of ``reasoning-gym:TASK``, its errors named as ``load_table``'s parameters."""
    task = dataset[len(REASONING_GYM_PREFIX) :].strip()
    if not task:
        raise ReproError("dataset", f"names no task: use {REASONING_GYM_PREFIX}TASK, e.g. "
                         f"{REASONING_GYM_PREFIX}basic_arithmetic")
    try:
        return reasoning_gym_dataset(task, size or DEFAULT_REASONING_GYM_SIZE, seed, system_prompt=system_prompt,
                                     task_config=parse_task_config(task_config))
    except ReproError as error:
        raise error.renamed({"task": "dataset", "size": "dataset_size"}.get(error.argument, error.argument)) from None


def _read_hub(name: str, *, split: str, subset: str | None, limit: int | None, cache_dir: str | None
              ) -> list[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_dataset(name, subset, split=split, cache_dir=cache_dir)
    except Exception as error:  # datasets raises many types: not found, offline, bad split, bad files
        raise ReproError("dataset", f"cannot load {name!r} (split {split!r}): {type(error).__name__}: "
                         f"{error}") from None
    if not isinstance(loaded, datasets.Dataset):
        raise ReproError("split", f"{name!r} did not load as one split; name one")
    if limit is not None:
        loaded = loaded.select(range(min(limit, len(loaded))))
    return list(loaded.to_list())


def load_dataset_prompts(
    dataset: str,
    *,
    dataset_size: int | None = None,
    dataset_config: str | None = None,
    dataset_seed: int = 0,
    task_config: str | Mapping[str, Any] | None = None,
    split: str = "train",
    question_column: str = "question",
    answer_column: str = "answer",
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """The prompts of ``repro train``'s ``--dataset``: ``reasoning_gym_dataset`` for ``reasoning-gym:TASK``, else
    the ``question_column`` and ``answer_column`` (read by ``final_answer``) of the rows of ``load_table``.

    The parameters are ``load_table``'s plus the two columns; a ReproError names the one at fault.
    """
    if dataset_size is not None:
        _check_count("dataset_size", dataset_size)
    if dataset.startswith(REASONING_GYM_PREFIX):
        return _generate(dataset, dataset_size, dataset_seed, task_config, system_prompt)
    rows = load_table(dataset, dataset_size=dataset_size, dataset_config=dataset_config, task_config=task_config,
                      split=split, cache_dir=cache_dir)
    for argument, column in (("question_column", question_column), ("answer_column", answer_column)):
        for row, item in enumerate(rows):
            if column not in item:
                where = f"{dataset!r}" if row == 0 else f"row {row} of {dataset!r}"
                raise ReproError(argument, f"no column {column!r} in {where}; columns: {', '.join(map(str, item))}")
    questions = [item[question_column] for item in rows]
    for row, question in enumerate(questions):
        if not isinstance(question, str):
            kind = type(question).__name__
            raise ReproError("question_column", f"row {row} of {question_column!r} is {kind}, expected text")
    answers = [final_answer(item[answer_column]) for item in rows]
    # A row without a gold answer would train against an empty \boxed{} (its reward is never defined): left out.
    empty = [row for row, answer in enumerate(answers) if not answer]
    if len(empty) == len(rows):
        raise ReproError("answer_column", f"no row of {dataset!r} has a gold answer in {answer_column!r} (the first "
                         f"holds {rows[0][answer_column]!r}); name the column that has them")
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        logger.warning("skipping %d of the %d rows of %s: no gold answer in %r (empty, null, or nothing after '####' "
                       "or in \\boxed{}): rows %s", len(empty), len(rows), dataset, answer_column, shown)
        kept = [row for row, answer in enumerate(answers) if answer]
        questions, answers = [questions[row] for row in kept], [answers[row] for row in kept]
    return _dataset(cast(list[str], questions), answers, dataset, system_prompt)


def load_prompts(
    name: str,
    split: str = "train",
    *,
    subset: str | None = None,
    question_column: str = "question",
    answer_column: str = "answer",
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    limit: int | None = None,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """Prompts from a Hugging Face dataset (``"openai/gsm8k"`` with ``subset="main"``) or a local JSON/JSONL file:
    ``load_dataset_prompts`` under the names of ``datasets.load_dataset``.

    Args:
        name: A Hub dataset id or local dataset directory, or the path of a ``.json``/``.jsonl`` file (one object
            per row, ``read_json_rows``).
        split: The split to read; a local JSON file is read whole.
        subset: The dataset configuration, for datasets that have several (GSM8K's ``"main"``).
        question_column: Column holding the problem text.
        answer_column: Column holding the gold answer, read by ``final_answer`` (GSM8K's ``#### 42`` gives 42).
        system_prompt: Content of a leading system message; None or "" for none.
        limit: Keep only the first ``limit`` rows.
        cache_dir: Where ``datasets`` caches what it downloads (its default when None).

    Raises:
        ReproError: the dataset cannot be loaded, a column is missing, or a question is not text.
    """
    try:
        return load_dataset_prompts(name, dataset_size=limit, dataset_config=subset, split=split,
                                    question_column=question_column, answer_column=answer_column,
                                    system_prompt=system_prompt, cache_dir=cache_dir)
    except ReproError as error:
        renamed = {"dataset": "name", "dataset_config": "subset", "dataset_size": "limit"}
        raise error.renamed(renamed.get(error.argument, error.argument)) from None
