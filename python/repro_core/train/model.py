"""The policy and tokenizer of ``repro train``: ``--model_name_or_path`` in ``--dtype``."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from ..arguments import ModelArguments
from ..errors import ReproError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ..trl import ReproGRPOConfig, ReproPPOConfig

__all__ = ["load_model"]

logger = logging.getLogger(__name__)

#: repro_core.assets' argument names -> the ``repro train`` flags that set them.
MODEL_FLAGS = {"name_or_path": "--model_name_or_path", "model": "--model_name_or_path", "dtype": "--dtype"}


def load_model(
    args: ModelArguments, config: ReproGRPOConfig | ReproPPOConfig
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The policy and its tokenizer, in ``--dtype`` (or ``--model_init_kwargs``' dtype when ``--dtype``
    is auto). Raises ReproError for a model that cannot be loaded or has no chat template."""
    import torch

    from ..assets import load_default_model

    dtypes = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16}
    dtype = dtypes[args.dtype]
    # This command loads the model itself; of GRPOConfig's model_init_kwargs (a YAML written for TRL-style
    # scripts may have them) only a dtype is honoured, and only when --dtype is left at auto.
    init_kwargs_setting = config.model_init_kwargs or {}
    init_kwargs = dict(json.loads(init_kwargs_setting) if isinstance(init_kwargs_setting, str)
                       else init_kwargs_setting)  # GRPOConfig parses JSON; be sure
    config.model_init_kwargs = None  # else TRL warns that they are ignored
    init_dtype = init_kwargs.pop("dtype", None)
    if args.dtype == "auto" and init_dtype is not None:
        dtype_name = str(init_dtype).removeprefix("torch.")
        if dtype_name not in ("float32", "bfloat16"):
            raise ReproError("--model_init_kwargs", f"dtype {init_dtype!r}: use float32 or bfloat16 (or set --dtype)")
        dtype = dtypes[dtype_name]
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
