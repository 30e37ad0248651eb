"""verl 0.9 next to TRL >= 1.13 in one environment (the trl and verl extras).

verl's FSDP engine, building any model, patches TRL's ``AutoModelForCausalLMWithValueHead``
whenever TRL is importable (``verl.models.transformers.monkey_patch.apply_monkey_patch``). TRL
removed that class (huggingface/trl#7020), so the import fails and no actor or critic can be built.
The patch concerns only that class: with it gone there is nothing to patch, and verl's check is
narrowed to "TRL still has the class" (unchanged where it does, or where TRL is absent).

Importing this module applies the fix (``narrow_verl_trl_check``; calling it again is harmless).
The package imports it before the trainer: verl swallows a plugin's import errors, and the fix
must not depend on the trainer importing.
"""

from __future__ import annotations

import functools
import importlib

__all__ = ["has_value_head_model", "narrow_verl_trl_check"]


@functools.cache
def has_value_head_model() -> bool:
    """Whether the installed TRL still ships ``AutoModelForCausalLMWithValueHead`` (where verl looks)."""
    for module in ("trl.experimental.ppo", "trl"):
        try:
            if hasattr(importlib.import_module(module), "AutoModelForCausalLMWithValueHead"):
                return True
        except ImportError:
            continue
    return False


def narrow_verl_trl_check() -> None:
    """Point verl's "is TRL available" check of its model patch at ``has_value_head_model``."""
    from verl.models.transformers import monkey_patch

    monkey_patch.is_trl_available = has_value_head_model


narrow_verl_trl_check()
