"""J from the keys and values of a pass the host runs anyway (repro_core/objective/fused.py): the
pass's outputs stay bit for bit, and J equals the per-cut oracle, for rows run one after another in
one sequence (verl's remove-padding) or right-padded, with SDPA or eager attention."""

from __future__ import annotations

import os
import random

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from transformers import AttentionInterface  # noqa: E402

import tiny  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core.config import ReproConfig  # noqa: E402
from repro_core.objective import AnswerTokens, ObjectiveScorer  # noqa: E402
from repro_core.objective.fused import FusedScorer, KeptRows, keeping_keys_values  # noqa: E402
from repro_core.pipeline import ReproScorer, cut_selector  # noqa: E402


def rows_of(tok, count: int = 5, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    rows = []
    for b in range(count):
        prompt = tok(f"Problem {b}: what is x?", add_special_tokens=False)["input_ids"]
        response = tok(tiny.reasoning_text(rng, rng.randint(2, 6)), add_special_tokens=False)["input_ids"]
        rows.append((prompt, response))
    rows[1] = (rows[1][0], rows[1][1][:1])  # a one-token response
    return rows


def run_pass(model, rows, packed: bool):
    """The host's pass (as verl lays its rows out) with and without the keys and values kept: the
    logits of both, what was kept, the rows' layout and each row's response entropies."""
    sequences = [torch.tensor(prompt + response) for prompt, response in rows]
    if packed:
        inputs = dict(input_ids=torch.cat(sequences)[None],
                      position_ids=torch.cat([torch.arange(len(s)) for s in sequences])[None])
    else:
        width = max(len(s) for s in sequences)
        input_ids = torch.zeros((len(sequences), width), dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for b, sequence in enumerate(sequences):
            input_ids[b, : len(sequence)], attention_mask[b, : len(sequence)] = sequence, 1
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask,
                      position_ids=torch.arange(width).expand(len(sequences), -1))
    with torch.no_grad():
        plain = model(**inputs, use_cache=False).logits
        with keeping_keys_values(model) as kept:
            logits = model(**inputs, use_cache=False).logits
    logp = torch.log_softmax(logits.float() / 0.7, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    starts = np.cumsum([0, *(len(s) for s in sequences)])
    entropies = []
    for b, (sequence, (_, response)) in enumerate(zip(sequences, rows, strict=True)):
        row = entropy[0, starts[b] : starts[b + 1]] if packed else entropy[b, : len(sequence)]
        entropies.append(row[len(sequence) - len(response) - 1 : len(sequence) - 1])
    layout = KeptRows(sequences, [torch.arange(len(s)) for s in sequences], [len(r) for _, r in rows], packed)
    return plain, logits, kept, layout, entropies


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_fused_j_equals_per_cut_and_the_pass_is_unchanged(tok, attention, packed):
    model = tiny.model(len(tok), attn_implementation=attention)
    rows = rows_of(tok)
    plain, logits, kept, layout, entropies = run_pass(model, rows, packed)
    assert torch.equal(plain, logits)  # the wrapper calls the kernel as the model would
    assert sorted(kept) == list(range(model.config.num_hidden_layers))
    assert AttentionInterface._global_mapping.get(attention) is not None or attention == "eager"
    answer = AnswerTokens(tok, ReproConfig().answer_template)("17", 0)
    answers = [answer, answer, None, answer, answer]  # row 2 has none (verl's padding rows)
    select = cut_selector(tok, ReproConfig(k=3))
    with torch.no_grad():
        result = FusedScorer(model, select).score(kept, layout, entropies, answers)
    scored = [0, 1, 3, 4]
    assert not len(result.cuts.row(2)) and all(len(result.cuts.row(b)) for b in scored)
    # The cut points are select_cuts' on the pass's own entropies.
    width = max(len(r) for _, r in rows)
    ids, mask, entropy = (np.zeros((4, width), dtype) for dtype in (np.int64, bool, np.float32))
    for i, b in enumerate(scored):
        n = len(rows[b][1])
        ids[i, :n], mask[i, :n], entropy[i, :n] = rows[b][1], True, entropies[b].numpy()
    expected_cuts = select(ids, mask, entropy)
    chosen = result.cuts.take(scored)
    assert np.array_equal(chosen.positions, expected_cuts.positions)
    oracle = ObjectiveScorer(model, tok, mode="per_cut").score(
        [rows[b][0] for b in scored], [rows[b][1] for b in scored], [answer] * 4, chosen.offsets, chosen.positions)
    np.testing.assert_allclose(result.j, oracle, atol=1e-5, rtol=0)
    most = int(np.diff(chosen.offsets).max())
    assert result.tokens == 4 * most * len(answer.ids)  # the probe grid: rows x probes x answer


def test_the_kernel_is_restored_after_an_error(tok):
    model = tiny.model(len(tok))
    before = AttentionInterface._global_mapping["sdpa"]
    with pytest.raises(RuntimeError, match="inside"), keeping_keys_values(model):
        assert AttentionInterface._global_mapping["sdpa"] is not before
        raise RuntimeError("inside")
    assert AttentionInterface._global_mapping["sdpa"] is before
    with keeping_keys_values(tiny.model(len(tok), attn_implementation="eager")):
        assert "eager" in AttentionInterface._global_mapping
    assert "eager" not in AttentionInterface._global_mapping


def test_an_attention_module_without_its_layer_index_is_refused(tok):
    model = tiny.model(len(tok))
    del model.model.layers[1].self_attn.layer_idx
    with pytest.raises(ReproError, match="model: its attention module Qwen2Attention has no layer_idx"):
        run_pass(model, rows_of(tok, count=2), packed=True)


def test_a_row_without_a_prompt_is_refused(tok, tiny_model):
    rows = [([], tok("So the value is 3.", add_special_tokens=False)["input_ids"])]
    _, _, kept, layout, entropies = run_pass(tiny_model, rows, packed=True)
    answer = AnswerTokens(tok, ReproConfig().answer_template)("17", 0)
    with pytest.raises(ReproError, match="prompts: row 0 has no prompt token"):
        FusedScorer(tiny_model, cut_selector(tok, ReproConfig(k=3))).score(kept, layout, entropies, [answer])


def test_nothing_to_score_makes_no_call_on_one_process(tok, tiny_model):
    rows = rows_of(tok, count=2)
    _, _, kept, layout, entropies = run_pass(tiny_model, rows, packed=True)
    result = FusedScorer(tiny_model, cut_selector(tok, ReproConfig(k=3))).score(kept, layout, entropies,
                                                                                 [None, None])
    assert result.tokens == 0 and not len(result.j) and not len(result.cuts.positions)


def test_fused_is_verls_alone(tok, tiny_model):
    """objective_mode=fused computes J inside verl's old-log-prob pass; ObjectiveScorer and the
    ReproScorer of TRL and repro score refuse it, naming their own argument."""
    with pytest.raises(ReproError, match="mode: 'fused' computes J inside verl's old-log-prob pass"):
        ObjectiveScorer(tiny_model, tok, mode="fused")
    with pytest.raises(ReproError, match="objective_mode: 'fused' computes J inside verl's") as caught:
        ReproScorer(tiny_model, tok, ReproConfig(objective_mode="fused"))
    assert caught.value.argument == "objective_mode"
