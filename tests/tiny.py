"""A tiny random-weight causal LM and a byte-level BPE tokenizer trained on the spot (no files, no
network), shared by the objective, pipeline and benchmark suites."""

from __future__ import annotations

import random

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<|endoftext|>", "<think>", "</think>"]
WORDS = "so the value of x is then we get sum total answer check again wait compute two three five".split()


def reasoning_text(rng: random.Random, paragraphs: int) -> str:
    """Sentences in paragraphs separated by blank lines (the tokenizer splits them variously)."""
    out = []
    for _ in range(paragraphs):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        out.append(" ".join(words).capitalize() + rng.choice([".", "?", " = 42.", ":"]))
    return rng.choice(["\n\n", "\n\n\n", ".\n\n"]).join(out)


def tokenizer() -> transformers.PreTrainedTokenizerFast:
    rng = random.Random(0)
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator([reasoning_text(rng, 6) + " \\boxed{17}" for _ in range(400)], trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def model(
    vocab_size: int, *, arch: str = "qwen2", dtype: torch.dtype = torch.float32, seed: int = 0, **overrides
) -> transformers.PreTrainedModel:
    """Random weights, scaled up so that next-token distributions are far from uniform."""
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=0.2,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    common.update(overrides)
    config = (transformers.Qwen2Config if arch == "qwen2" else transformers.LlamaConfig)(**common)
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
