r"""Math prompts for GRPO: procedural problems from reasoning-gym (offline), or question/answer columns of a dataset.

Both builders return a ``datasets.Dataset`` with the columns ``prompt`` (chat messages that ask for step-by-step
reasoning and a final ``\boxed{}``), ``answer`` (the gold answer as text, what ``repro_core.rewards.boxed_accuracy``
checks) and ``task`` (where the row came from).
"""

import difflib
import os
from typing import Any, cast

import datasets

from .errors import ReproError

__all__ = ["DEFAULT_SYSTEM_PROMPT", "INSTRUCTION", "RECOMMENDED_TASKS", "load_prompts", "reasoning_gym_dataset"]

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant that solves math problems carefully."
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

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


def _prompt(question: str, system_prompt: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": f"{question.strip()}\n\n{INSTRUCTION}"})
    return messages


def _dataset(questions: list[str], answers: list[str], task: str, system_prompt: str | None) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "prompt": [_prompt(question, system_prompt) for question in questions],
            "answer": answers,
            "task": [task] * len(questions),
        }
    )


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ReproError(name, f"expected a positive integer, got {value!r}")


def reasoning_gym_dataset(
    task: str = "basic_arithmetic",
    size: int = 512,
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
    import reasoning_gym  # ~1 s to import: only here, so load_prompts and the rest of the package do not pay it
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


def _final_answer(value: Any) -> str:
    """The gold answer as text; GSM8K-style solutions ("... #### 42") give what follows the last "####"."""
    if value is None:
        return ""  # boxed_accuracy scores an empty gold answer as None (not applicable)
    text = str(value)
    return text.rsplit("####", 1)[1].strip() if "####" in text else text.strip()


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
    """Prompts from a Hugging Face dataset (``"openai/gsm8k"`` with ``subset="main"``) or a local JSON/JSONL file.

    Args:
        name: A Hub dataset id or local dataset directory, or the path of a ``.json``/``.jsonl`` file (one object
            per row).
        split: The split to read; a local JSON file is read whole, as this split.
        subset: The dataset configuration, for datasets that have several (GSM8K's ``"main"``).
        question_column: Column holding the problem text.
        answer_column: Column holding the gold answer; text after a final ``####`` is kept, as in GSM8K.
        system_prompt: Content of a leading system message; None or "" for none.
        limit: Keep only the first ``limit`` rows.
        cache_dir: Where ``datasets`` caches what it downloads or converts (its default when None).

    Raises:
        ReproError: the dataset cannot be loaded, a column is missing, or a question is not text.
    """
    if limit is not None:
        _check_count("limit", limit)
    try:
        if os.path.isfile(name):
            loaded = datasets.load_dataset("json", data_files={split: name}, split=split, cache_dir=cache_dir)
        else:
            loaded = datasets.load_dataset(name, subset, split=split, cache_dir=cache_dir)
    except Exception as error:  # datasets raises many types (not found, offline, bad split, bad JSON)
        raise ReproError("name", f"cannot load {name!r} (split {split!r}): {type(error).__name__}: {error}") from None
    loaded = cast(datasets.Dataset, loaded)  # one split of a non-streaming load
    for argument, column in (("question_column", question_column), ("answer_column", answer_column)):
        if column not in loaded.column_names:
            raise ReproError(argument, f"no column {column!r} in {name!r}; columns: {', '.join(loaded.column_names)}")
    if limit is not None:
        loaded = loaded.select(range(min(limit, len(loaded))))
    questions = loaded[question_column]
    for row, question in enumerate(questions):
        if not isinstance(question, str):
            kind = type(question).__name__
            raise ReproError("question_column", f"row {row} of {question_column!r} is {kind}, expected text")
    answers = [_final_answer(value) for value in loaded[answer_column]]
    return _dataset(questions, answers, name, system_prompt)
