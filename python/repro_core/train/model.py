"""The policy of ``repro train``: ``--model_name_or_path`` in ``--dtype``, its tokenizer, and TRL's PEFT flags."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import typing
from typing import TYPE_CHECKING, Any

from ..arguments import ModelArguments
from ..errors import ReproError

if TYPE_CHECKING:
    from peft import PeftConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ..trl import ReproGRPOConfig, ReproPPOConfig

__all__ = ["PEFT_FIELDS", "load_model", "peft_config", "train_model_arguments"]

logger = logging.getLogger(__name__)

#: The fields of TRL's ``ModelConfig`` that ``repro train`` offers as they are (``--use_peft``, ``--lora_r``, ...).
PEFT_FIELDS = ("use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_parameters",
               "lora_modules_to_save", "lora_task_type", "use_rslora", "use_dora")
#: repro_core.assets' argument names -> the ``repro train`` flags that set them.
MODEL_FLAGS = {"name_or_path": "--model_name_or_path", "model": "--model_name_or_path", "dtype": "--dtype"}


def load_model(
    args: ModelArguments, config: ReproGRPOConfig | ReproPPOConfig
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The policy and its tokenizer, in ``--dtype`` (or ``--model_init_kwargs``' dtype when ``--dtype``
    is unset). Raises ReproError for a model that cannot be loaded or has no chat template."""
    import torch

    from ..assets import load_default_model

    dtype = args.torch_dtype()
    # This command loads the model itself; of GRPOConfig's model_init_kwargs (a YAML written for TRL-style
    # scripts may have them) only a dtype is honoured, and only when --dtype is unset.
    init_kwargs_setting = config.model_init_kwargs or {}
    init_kwargs = dict(json.loads(init_kwargs_setting) if isinstance(init_kwargs_setting, str)
                       else init_kwargs_setting)  # GRPOConfig parses JSON; be sure
    config.model_init_kwargs = None  # else TRL warns that they are ignored
    init_dtype = init_kwargs.pop("dtype", None)
    if args.dtype is None and init_dtype is not None:
        dtype_name = str(init_dtype).removeprefix("torch.")
        if dtype_name not in ("float32", "bfloat16", "float16"):
            raise ReproError("--model_init_kwargs", f"dtype {init_dtype!r}: use float32, bfloat16 or float16 (or set "
                             "--dtype)")
        dtype = getattr(torch, dtype_name)
    if init_kwargs:
        logger.warning("ignoring model_init_kwargs %s (only dtype applies here)", sorted(init_kwargs))
    try:
        model, tokenizer = load_default_model(args.model_name_or_path, dtype=dtype)
    except ReproError as error:
        raise error.renamed(MODEL_FLAGS.get(error.argument, error.argument)) from error
    if not getattr(tokenizer, "chat_template", None):
        name = args.model_name_or_path or "the default model"
        raise ReproError("--model_name_or_path",
                         f"the tokenizer of {name} has no chat template, which the conversational prompts need; "
                         "use an instruct/chat checkpoint or add a chat_template to its tokenizer_config.json")
    return model, tokenizer


@functools.cache
def train_model_arguments() -> type:
    """``ModelArguments`` plus the PEFT fields of TRL's own ``ModelConfig`` (:data:`PEFT_FIELDS`: their
    defaults and help are TRL's), built on first use so that importing this module does not import TRL."""
    from trl import ModelConfig

    from ..arguments import ModelArguments

    hints = typing.get_type_hints(ModelConfig)
    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    declared = [
        (name, hints[name], dataclasses.field(default=fields[name].default,
                                              default_factory=fields[name].default_factory,
                                              metadata=fields[name].metadata))
        for name in PEFT_FIELDS
    ]
    return dataclasses.make_dataclass("TrainModelArguments", declared, bases=(ModelArguments,))


def peft_config(args: Any) -> PeftConfig | None:
    """The LoRA config of ``--use_peft`` and the ``--lora_*`` flags, through TRL's ``get_peft_config``; None
    without ``--use_peft``. Raises ReproError naming ``--use_peft`` when peft is not installed."""
    from trl import ModelConfig, get_peft_config

    try:
        return get_peft_config(ModelConfig(**{name: getattr(args, name) for name in PEFT_FIELDS}))
    except ValueError as exc:
        raise ReproError("--use_peft", str(exc).strip().splitlines()[0]) from exc
