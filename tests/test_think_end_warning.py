"""The warning that a tokenizer has no "</think>" (the default think_end), so that completions are
scored to their end: said once per tokenizer, and not at all for the embedded default model, which
does not think (every default run printed it before)."""

from __future__ import annotations

import logging
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

pytest.importorskip("torch")

import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

import repro_core as rc  # noqa: E402
from repro_core.assets import DEFAULT_MODEL  # noqa: E402
from repro_core.config import ReproConfig  # noqa: E402
from repro_core.pipeline import cut_selector  # noqa: E402


def _save_tokenizer_without_think_end(directory) -> None:
    """A byte-level BPE tokenizer in which "</think>" is several tokens, saved as a checkpoint's."""
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(["So the value of x is five.\n\nCheck again the sum."] * 20, trainer)
    transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>").save_pretrained(directory)


def _warnings(caplog, tokenizer) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="repro_core.pipeline"):
        assert cut_selector(tokenizer, ReproConfig()).keywords["think_end_id"] is None
    return [r.getMessage() for r in caplog.records if r.name == "repro_core.pipeline"]


def test_said_once_per_tokenizer(tmp_path, caplog):
    _save_tokenizer_without_think_end(tmp_path / "model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "model")
    assert rc.think_end_id(tokenizer) is None
    first = _warnings(caplog, tokenizer)
    assert len(first) == 1 and "no single '</think>' token" in first[0] and "scored to their end" in first[0]
    # A second scorer of the run (evaluation, a second trainer), or the tokenizer loaded again: no repeat.
    assert _warnings(caplog, tokenizer) == []
    assert _warnings(caplog, transformers.AutoTokenizer.from_pretrained(tmp_path / "model")) == []


def test_not_said_for_the_embedded_default_model(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path / "cache"))
    _save_tokenizer_without_think_end(tmp_path / "cache" / DEFAULT_MODEL)
    embedded = transformers.AutoTokenizer.from_pretrained(tmp_path / "cache" / DEFAULT_MODEL)
    assert rc.think_end_id(embedded) is None
    assert _warnings(caplog, embedded) == []
    # The same tokenizer anywhere else is another model, and is told.
    _save_tokenizer_without_think_end(tmp_path / "elsewhere")
    assert len(_warnings(caplog, transformers.AutoTokenizer.from_pretrained(tmp_path / "elsewhere"))) == 1
