r"""Letter counting with detours: the task, its data files and its metrics.

A problem is a word spelt with hyphens and a letter: "How many times does the letter c appear in
b-c-a-c?". A worked solution has one progress line per letter: its position, the letter and the
running count (``1 b 0``, ``2 c 1``, ...), then ``</think>`` and ``\boxed{n}``. After any progress line
a detour may follow, with probability ``detour_rate``: a line that restates the count ("Let me
recount: so far 1.") and adds tokens but no progress. Whether a line is a detour is read off its text
(:func:`is_detour`), so any completion of a trained model is scored exactly for detours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from trl.rewards import get_soft_overlong_punishment

THINK_END = "</think>"
DETOURS = ("Let me recount: so far {count}.", "Wait, so far {count}.", "So far {count}, let me check again.")
_PROGRESS = re.compile(r"^\d+ [a-z] \d+$")
_DETOUR = re.compile(r"^(Let me recount: so far \d+\.|Wait, so far \d+\.|So far \d+, let me check again\.)$")
_NUMBER = re.compile(r"\d+")
#: The runs' --max_completion_length (replicate.py passes it): room for a 7-letter solution with four detours.
MAX_COMPLETION_LENGTH = 96
#: The length-penalty arm's reward: TRL's soft overlong punishment, 0 up to 36 tokens (a 7-letter solution
#: without detours), falling linearly to -1 at the limit.
length_penalty = get_soft_overlong_punishment(max_completion_len=MAX_COMPLETION_LENGTH,
                                              soft_punish_cache=MAX_COMPLETION_LENGTH - 36)


@dataclass(frozen=True)
class TaskSettings:
    """What the generated problems look like; part of the SFT cache key."""

    alphabet: str = "abcdefgh"
    min_letters: int = 4
    max_letters: int = 7
    max_count: int = 3
    detour_rate: float = 0.25


def question(word: str, letter: str) -> str:
    return f"How many times does the letter {letter} appear in {'-'.join(word)}?"


def solution(word: str, letter: str, rng: np.random.Generator, detour_rate: float) -> str:
    """The worked solution: a progress line per letter, a detour after each with probability ``detour_rate``."""
    lines, count = [], 0
    for position, char in enumerate(word, start=1):
        count += char == letter
        lines.append(f"{position} {char} {count}")
        if rng.random() < detour_rate:
            lines.append(DETOURS[rng.integers(len(DETOURS))].format(count=count))
    return "\n".join(lines) + f"\n{THINK_END}\n\\boxed{{{count}}}"


def problems(settings: TaskSettings, size: int, seed: int, exclude: set[tuple[str, str]] = frozenset()
             ) -> list[tuple[str, str]]:
    """``size`` distinct (word, letter) problems from ``seed``, none of ``exclude``. The count is drawn first,
    uniformly from 0 to ``max_count``, so that no constant answer is right more than about one time in
    ``max_count + 1``: a policy cannot score by guessing the commonest count instead of counting."""
    rng = np.random.default_rng(seed)
    found: dict[tuple[str, str], None] = {}
    while len(found) < size:
        length = int(rng.integers(settings.min_letters, settings.max_letters + 1))
        letter = str(rng.choice(list(settings.alphabet)))
        others = [char for char in settings.alphabet if char != letter]
        word = [str(char) for char in rng.choice(others, size=length)]
        for position in rng.choice(length, size=int(rng.integers(0, settings.max_count + 1)), replace=False):
            word[position] = letter
        if ("".join(word), letter) not in exclude:
            found[("".join(word), letter)] = None
    return list(found)


def write_prompts(path: Path, rows: Sequence[tuple[str, str]]) -> Path:
    """A ``repro train --dataset`` JSONL file: question and gold answer per problem."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"question": question(w, c), "answer": str(w.count(c))}) + "\n"
                            for w, c in rows))
    return path


def thinking_lines(text: str) -> list[str]:
    """The lines of a completion's thinking part (before ``</think>``), blank lines dropped."""
    return [line.strip() for line in text.split(THINK_END)[0].splitlines() if line.strip()]


def is_detour(line: str) -> bool:
    return bool(_DETOUR.match(line.strip()))


def is_progress(line: str) -> bool:
    return bool(_PROGRESS.match(line.strip()))


def count_detours(text: str) -> int:
    return sum(map(is_detour, thinking_lines(text)))


def completion_text(completion: Any) -> str:
    """A TRL completion's text: a string, or the content of its conversational messages."""
    return completion if isinstance(completion, str) else "".join(message["content"] for message in completion)


# Reward functions in TRL's signature, module-level so that they pickle. The evaluation logs each
# (eval_rewards/NAME/mean); with weight 0 they do not change the training reward.
def detours(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """Detour lines per completion."""
    return [float(count_detours(completion_text(c))) for c in completions]


def lenient_accuracy(completions: Sequence[Any], answer: Sequence[str], **kwargs: Any) -> list[float]:
    """1.0 where the last number anywhere in the completion is the gold count (boxed or not)."""
    rewards = []
    for completion, gold in zip(completions, answer, strict=True):
        numbers = _NUMBER.findall(completion_text(completion))
        rewards.append(float(bool(numbers) and numbers[-1] == str(gold)))
    return rewards


def settings_dict(settings: TaskSettings) -> dict[str, Any]:
    return asdict(settings)
