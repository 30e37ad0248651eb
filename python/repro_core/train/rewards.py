"""The outcome rewards of ``repro train`` (``--reward_funcs``), named as in TRL's GRPO script."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ReproError

__all__ = ["DEFAULT_REWARD", "REWARD_FUNCS", "resolve_reward_funcs"]

DEFAULT_REWARD = "boxed_accuracy"
#: ``--reward_funcs`` names -> (module, attribute). TRL's script offers its accuracy rewards too, but they read a
#: ``solution`` column, where this command's datasets hold ``answer``: ``boxed_accuracy`` is their equivalent.
REWARD_FUNCS = {
    DEFAULT_REWARD: ("repro_core.rewards", "boxed_accuracy"),
    "think_format_reward": ("trl.rewards", "think_format_reward"),
}
_EQUIVALENTS = {"accuracy_reward": DEFAULT_REWARD, "reasoning_accuracy_reward": DEFAULT_REWARD}


def resolve_reward_funcs(names: Sequence[str], weights: Sequence[float] | None = None) -> list[Callable[..., Any]]:
    """The reward functions ``names`` select: a name of :data:`REWARD_FUNCS` or the dotted import path of a
    callable (imported with the working directory on ``sys.path``, as TRL's script does). Raises ReproError
    naming ``--reward_funcs`` (or ``--reward_weights`` when their counts differ)."""
    if not names:
        raise ReproError("--reward_funcs", "expected at least one reward function")
    if weights is not None and len(weights) != len(names):
        raise ReproError("--reward_weights", f"expected one weight per reward function ({len(names)}: "
                         f"{' '.join(names)}), got {len(weights)}")
    return [_resolve(name) for name in names]


def _resolve(name: str) -> Callable[..., Any]:
    if name in _EQUIVALENTS:
        raise ReproError("--reward_funcs", f"{name!r} reads a 'solution' column; this command's datasets hold the "
                         f"gold answer in 'answer', which {_EQUIVALENTS[name]!r} checks the same way (math-verify)")
    module_name, _, attribute = name.rpartition(".")
    if name in REWARD_FUNCS:
        module_name, attribute = REWARD_FUNCS[name]
    elif not module_name:
        raise ReproError("--reward_funcs", f"unknown reward function {name!r}: expected one of "
                         f"{', '.join(REWARD_FUNCS)} or a dotted import path (module.function)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ReproError("--reward_funcs", f"cannot import {name!r}: {exc}") from exc
    if not callable(function):
        raise ReproError("--reward_funcs", f"{name!r} is a {type(function).__name__}, not a function")
    return function
