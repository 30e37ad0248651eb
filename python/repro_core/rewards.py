r"""Outcome rewards for GRPO on math: the last ``\boxed{}`` of a completion checked against a gold answer.

``boxed_accuracy`` is a TRL reward function: pass it in ``GRPOTrainer(reward_funcs=[boxed_accuracy])`` with a
dataset that has an ``answer`` column. It is a plain module-level function, so it pickles by reference (TRL's async
rollout worker sends reward functions to a spawned process).

Both sides are compared by math-verify, so ``\boxed{0.5}`` matches ``1/2`` and ``\boxed{42.0}`` matches ``42``.
math-verify bounds each parse and comparison with ``signal.alarm``, which only works in the main thread; elsewhere
the timeouts are switched off (as TRL's own ``accuracy_reward`` does), so a pathological answer such as a power tower
``\boxed{9^{9^{9^{9}}}}`` can take unbounded time there. TRL calls synchronous reward functions from the main thread.
"""

import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from math_verify import parse, verify

from .errors import ReproError

__all__ = ["boxed_accuracy", "last_boxed"]

# Seconds math-verify may spend per parse / per comparison, when the signal-based timeout is usable.
_PARSE_TIMEOUT = 5
_VERIFY_TIMEOUT = 5

_BOXED = re.compile(r"\\boxed\s*\{")


class _DropTimeoutDisabled(logging.Filter):
    """Drops math-verify's one-time "Timeout is disabled" warning, which is expected off the main thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabled())


def last_boxed(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` in ``text`` whose braces close, stripped; None if there is none.

    Braces nest (``\boxed{\frac{1}{2}}`` gives ``\frac{1}{2}``) and escaped braces ``\{ \}`` are content. An
    unclosed ``\boxed{`` (a completion cut off at the length limit) is skipped in favour of an earlier one.
    """
    for match in reversed(list(_BOXED.finditer(text))):
        depth = 1
        i = match.end()
        while i < len(text):
            char = text[i]
            if char == "\\":
                i += 2  # skip the escaped character, so "\{" and "\}" do not count as braces
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[match.end() : i].strip()
            i += 1
    return None


def _completion_text(completion: Any, index: int) -> str:
    """The text of one completion: a string, or the assistant messages of a conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for message in completion:
            if not isinstance(message, dict):
                raise ReproError(f"completions[{index}]", f"expected messages as dicts, got {type(message).__name__}")
            if message.get("role", "assistant") != "assistant":
                continue  # tool results are not the model's answer
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):  # multimodal content blocks
                parts.extend(block["text"] for block in content if block.get("type") == "text")
        return "\n".join(parts)
    raise ReproError(
        f"completions[{index}]", f"expected a string or a list of messages, got {type(completion).__name__}"
    )


def _parse_boxed(latex: str, timeout: int | None) -> list[Any]:
    # Re-boxing makes math-verify read the text as LaTeX ("0.5" and "1/2" both become Rational(1, 2)); its default
    # plain-expression reading keeps only the last number of "(1, 2)" or "1e3".
    parsed: list[Any] = parse(f"\\boxed{{{latex}}}", parsing_timeout=timeout)
    return parsed


def boxed_accuracy(
    completions: Sequence[str] | Sequence[list[dict[str, Any]]],
    answer: Sequence[Any],
    log_extra: Callable[[str, list[Any]], None] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    r"""1.0 where the last ``\boxed{}`` of a completion equals its gold ``answer`` under math-verify, else 0.0.

    Args:
        completions: One completion per row: a string (standard prompts) or a list of messages
            ``[{"role": "assistant", "content": ...}]`` (conversational prompts).
        answer: The gold answers, one per completion: a plain value such as ``"42"``, ``"-3.5"``, ``"1/2"`` or
            ``"\frac{1}{2}"``, or a solution text whose last ``\boxed{}`` holds it. Numbers are accepted too.
        log_extra: Supplied by TRL: logs the extracted answers as a ``boxed`` column of the completions table.
        log_metric: Supplied by TRL: logs ``boxed_fraction``, the share of completions with a ``\boxed{}``.
        **kwargs: The other arguments TRL passes (``prompts``, ``completion_ids``, other dataset columns, ...).

    Returns:
        One reward per completion: 0.0 without a ``\boxed{}``, and None (TRL's "not applicable", so the row does not
        count) where the gold answer is None, empty or not parseable by math-verify.
    """
    if len(completions) != len(answer):
        raise ReproError("answer", f"expected one per completion ({len(completions)}), got {len(answer)}")
    timeout = _PARSE_TIMEOUT if threading.current_thread() is threading.main_thread() else None
    verify_timeout = _VERIFY_TIMEOUT if timeout is not None else None
    rewards: list[float | None] = []
    extracted: list[str] = []
    found = 0
    for index, (completion, gold) in enumerate(zip(completions, answer, strict=True)):
        boxed = last_boxed(_completion_text(completion, index))
        extracted.append("" if boxed is None else boxed)
        found += boxed is not None
        gold_text = "" if gold is None else str(gold)
        gold_parsed = _parse_boxed(last_boxed(gold_text) or gold_text, timeout) if gold_text.strip() else []
        if not gold_parsed:
            rewards.append(None)
        elif boxed is None:
            rewards.append(0.0)
        else:
            predicted = _parse_boxed(boxed, timeout)
            rewards.append(float(verify(gold_parsed, predicted, timeout_seconds=verify_timeout)))
    if log_extra is not None:
        log_extra("boxed", extracted)
    if log_metric is not None and extracted:
        log_metric("boxed_fraction", found / len(extracted))
    return rewards
