"""No forward pass of J has a query row that sees nothing (objective/masks.py).

Some CUDA SDPA kernels return NaN for a fully masked query row (pytorch#110213); the CPU kernels
return 0, so the tests here register a stand-in SDPA through transformers' ``AttentionInterface``
that returns NaN for such rows, as those kernels do. Under it, J and the entropies stay finite and
independent of which rows share a padded batch, in both modes; a model whose layers J cannot mask
runs unpadded or is refused at construction; and J that is not finite names what computed it."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import transformers  # noqa: E402
from transformers import AttentionInterface  # noqa: E402
from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402

import tiny  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core.objective import ObjectiveScorer  # noqa: E402


def nan_on_dead_rows(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA, with NaN for every query row whose mask allows no key."""
    out, weights = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None:
        allowed = attention_mask if attention_mask.dtype == torch.bool else \
            attention_mask > torch.finfo(attention_mask.dtype).min
        dead = ~allowed.any(-1).all(1)  # (b, q): no key for any head
        out = out.masked_fill(dead[:, :, None, None], float("nan"))  # out is (b, q, heads, d)
    return out, weights


@pytest.fixture
def nan_sdpa(monkeypatch):
    """Every model's "sdpa" attention is the NaN-on-dead-rows stand-in for the test."""
    monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", nan_on_dead_rows)


def config_model(tok, config_name: str, **extra):
    config = getattr(transformers, config_name)(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2, attn_implementation="sdpa",
        **extra,
    )
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


MODELS = {
    "qwen2": lambda tok: tiny.model(len(tok)),
    "llama": lambda tok: tiny.model(len(tok), arch="llama"),
    # Full and sliding layers: a mask per layer type.
    "gemma2": lambda tok: config_model(tok, "Gemma2Config", head_dim=16, sliding_window=8),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request, tok):
    return MODELS[request.param](tok)


def short_and_long(tok):
    """A short prompt and a much longer one, so that the short row is left-padded when they share a call."""
    short = tok("Question: x?")["input_ids"]
    long = tok("A much longer question, with many more words in it, and then some more: what is x?")["input_ids"]
    completion = tok("First we add.\n\nThen we check the sum.\n\nSo the answer is 7.")["input_ids"]
    return short, long, completion


def test_the_stand_in_bites(tok, model, nan_sdpa):
    """The stand-in turns transformers' own padded SDPA mask into NaN in the real rows: the fault J avoids."""
    short, long, _ = short_and_long(tok)
    ids = torch.zeros((2, len(long)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    ids[0, -len(short):], mask[0, -len(short):] = torch.tensor(short), 1
    ids[1], mask[1] = torch.tensor(long), 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert torch.isnan(logits[0, -len(short):]).any()


def alone_and_beside(scorer: ObjectiveScorer, tok) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """J of the short-prompt row alone, of the long-prompt row alone, and of both in one call (the
    short one left-padded): the first row's points, then the second's."""
    short, long, completion = short_and_long(tok)
    cuts = [0, 4, 9, len(completion)]
    alone = scorer.score([short], [completion], ["7"], [0, len(cuts)], cuts)
    long_alone = scorer.score([long], [completion[:5]], ["7"], [0, 2], [0, 5])
    together = scorer.score([short, long], [completion, completion[:5]], ["7", "7"], [0, len(cuts), len(cuts) + 2],
                            [*cuts, 0, 5])
    return alone, long_alone, together


@pytest.mark.parametrize("mode", ["shared", "per_cut"])
def test_j_alone_equals_j_beside_a_longer_prompt(tok, model, nan_sdpa, mode):
    alone, long_alone, together = alone_and_beside(ObjectiveScorer(model, tok, mode=mode), tok)
    assert np.isfinite(together).all()
    np.testing.assert_allclose(together, np.concatenate([alone, long_alone]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["shared", "per_cut"])
def test_evaluate_and_entropies_stay_finite(tok, model, nan_sdpa, mode):
    import repro_core as rc

    short, long, completion = short_and_long(tok)
    scorer = ObjectiveScorer(model, tok, mode=mode)
    select = lambda ids, mask, entropies: rc.select_cuts(  # noqa: E731
        ids, mask, entropies, delimiters=rc.Delimiters.from_tokenizer(tok), k=2)
    result = scorer.evaluate([short, long], [completion, completion[:6]], ["7", "7"], select)
    assert np.isfinite(result.j).all() and np.isfinite(result.entropies).all()
    alone, _ = scorer.entropies([short], [completion])
    np.testing.assert_allclose(result.entropies[0], alone[0], atol=1e-5)


def always_nan(module, query, key, value, attention_mask, **kwargs):
    out, weights = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return torch.full_like(out, float("nan")), weights


@pytest.mark.parametrize("mode", ["shared", "per_cut"])
def test_non_finite_j_names_the_attention_and_dtype(tok, monkeypatch, mode):
    model = tiny.model(len(tok))
    monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", always_nan)
    with pytest.raises(ReproError, match=r"model: J is nan at row 0, cut point 0 \(3 of 3 points not finite\), "
                                         r"computed with attention implementation 'sdpa' in torch.float32"):
        ObjectiveScorer(model, tok, mode=mode).score([[1, 2, 3]], [[4, 5, 6]], ["7"], [0, 3], [0, 1, 3])


def linear_attention_model(tok):
    """A hybrid of linear-attention and full-attention layers (Qwen3-Next's layout), tiny."""
    return config_model(
        tok, "Qwen3NextConfig", head_dim=16, layer_types=["linear_attention", "full_attention"],
        linear_num_key_heads=2, linear_num_value_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_linear_attention_is_refused_by_shared_and_unpadded_in_per_cut(tok, nan_sdpa):
    model = linear_attention_model(tok)
    with pytest.raises(ReproError, match="mode: 'shared' cannot mask the model's linear_attention layers; "
                                         "use mode='per_cut'"):
        ObjectiveScorer(model, tok)
    short, long, completion = short_and_long(tok)
    scorer = ObjectiveScorer(model, tok, mode="per_cut")
    together = scorer.score([short, long], [completion, completion[:5]], ["7", "7"], [0, 2, 3], [0, 9, 5])
    alone = scorer.score([short], [completion], ["7"], [0, 2], [0, 9])
    assert np.isfinite(together).all()
    np.testing.assert_allclose(together[:2], alone, atol=1e-5, rtol=0)
    entropies, _ = scorer.entropies([short, long], [completion, completion[:5]])
    assert np.isfinite(entropies).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", ["shared", "per_cut"])
def test_cuda_kernels_give_finite_j_alone_as_beside_a_longer_prompt(tok, dtype, mode):
    """CUDA's own SDPA kernels on padded rows: J finite, and a row's J the same alone as beside a
    longer prompt (in bf16 within its noise: docs/semantics.md, "bf16")."""
    model = tiny.model(len(tok), dtype=dtype).cuda()
    alone, long_alone, together = alone_and_beside(ObjectiveScorer(model, tok, mode=mode), tok)
    assert np.isfinite(together).all()
    np.testing.assert_allclose(together, np.concatenate([alone, long_alone]),
                               atol=1e-4 if dtype == torch.float32 else 0.05, rtol=0)
