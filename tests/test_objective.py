"""ObjectiveScorer (docs/method.md, "J, the surrogate objective" and "Shared-prefix J"): J and
entropies against direct computations, the shared-prefix path against the per-cut oracle, and bad
input."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import copy
import functools
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import repro_core as rc  # noqa: E402
import tiny  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core.config import ReproConfig  # noqa: E402
from repro_core.objective import AnswerIds, AnswerTokens, ObjectiveScorer  # noqa: E402

TEMPLATE = "\\boxed{{{answer}}}"


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def model(request, tok):
    return tiny.model(len(tok), arch=request.param)


def rollouts(tok, seed: int, rows: int = 4):
    """Prompts of different lengths, completions of different lengths (one empty), answers."""
    rng = random.Random(seed)
    prompts = [tok(tiny.reasoning_text(rng, 2))["input_ids"][: rng.randint(1, 20)] for _ in range(rows)]
    completions = [tok(tiny.reasoning_text(rng, 6))["input_ids"][: rng.randint(0, 80)] for _ in range(rows)]
    completions[rows // 2] = []
    answers = [str(rng.randint(0, 999)) for _ in range(rows)]
    return prompts, completions, answers


def random_cuts(completions, seed: int, per_row: int = 5):
    rng = np.random.default_rng(seed)
    rows = [np.unique(np.r_[0, rng.integers(0, len(c) + 1, per_row)]) for c in completions]
    offsets = np.r_[0, np.cumsum([len(r) for r in rows])]
    return offsets, np.concatenate(rows)


def direct_j(
    model, tok, prompt, completion, p, answer, *, j_tokens="template", special=False, temperature=1.0
) -> float:
    """One unpadded forward over prompt + completion[:p] + answer, full log-softmax.

    The answer is the template's whole text, tokenized as the model would write it. ``j_tokens=
    "answer"``: only the tokens whose characters overlap the answer's are averaged; ``special``: a
    BOS (the tokenizer's own) before them, never averaged in "answer" mode.
    """
    bos = [tok.bos_token_id] if special and tok.bos_token_id is not None else []
    text = TEMPLATE.format(answer=answer)
    whole = tok(text, add_special_tokens=False)["input_ids"]
    answer_ids = bos + whole
    if j_tokens == "template":
        averaged = range(len(answer_ids))
    else:
        start, stop = own_tokens(tok, text, len("\\boxed{"), len("\\boxed{") + len(answer))
        averaged = range(len(bos) + start, len(bos) + stop)
    ids = torch.tensor([prompt + completion[:p] + answer_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double() / temperature, -1)
    start = len(prompt) + p
    return float(np.mean([logp[start + i - 1, answer_ids[i]].item() for i in averaged]))


def own_tokens(tok, text, first, last) -> tuple[int, int]:
    """The tokens of ``text`` (tokenized whole) whose characters overlap ``text[first:last]``, by the
    tokenizer's offsets: (start, stop)."""
    spans = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    own = [i for i, (begin, end) in enumerate(spans) if begin < end and begin < last and end > first]
    return own[0], own[-1] + 1


def bos_tokenizer(tok):
    """``tok`` adding a BOS (<|endoftext|>) by default, as Llama's tokenizers do."""
    from tokenizers import processors

    with_bos = copy.deepcopy(tok)
    bos = with_bos.convert_tokens_to_ids("<|endoftext|>")
    with_bos.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)]
    )
    with_bos.bos_token = "<|endoftext|>"
    return with_bos


#: The options of J beyond the paper's (ObjectiveScorer keywords), each alone and all together.
J_OPTIONS = [
    dict(j_tokens="answer"),
    dict(answer_special_tokens=True),
    dict(j_at_rollout_temperature=True, temperature=0.6),
    dict(j_tokens="answer", answer_special_tokens=True, j_at_rollout_temperature=True, temperature=1.3),
]


def direct_entropies(model, prompt, completion, temperature: float) -> np.ndarray:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(ids).logits[0].double() / temperature
    logp = torch.log_softmax(logits, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    return entropy[len(prompt) - 1 : len(prompt) + len(completion) - 1].numpy()


# ------------------------------------------------------------------------------ correctness


@pytest.mark.parametrize("mode", ["shared", "per_cut"])
def test_j_equals_direct_forward(model, tok, mode):
    prompts, completions, answers = rollouts(tok, seed=1)
    offsets, positions = random_cuts(completions, seed=1)
    j = ObjectiveScorer(model, tok, mode=mode).score(prompts, completions, answers, offsets, positions)
    assert j.dtype == np.float64 and j.shape == positions.shape
    expected = [
        direct_j(model, tok, prompts[b], completions[b], int(p), answers[b])
        for b in range(len(prompts))
        for p in positions[offsets[b] : offsets[b + 1]]
    ]
    np.testing.assert_allclose(j, expected, atol=1e-5, rtol=0)
    assert np.all(j <= 0)


@pytest.mark.parametrize("mode", ["shared", "per_cut"])
@pytest.mark.parametrize("options", J_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_j_options_equal_direct_forward(model, tok, mode, options):
    """j_tokens, answer_special_tokens and j_at_rollout_temperature against one plain forward each."""
    tok = bos_tokenizer(tok) if options.get("answer_special_tokens") else tok
    prompts, completions, answers = rollouts(tok, seed=1)
    answers = [f"{a} + x" for a in answers]  # answers of several tokens
    offsets, positions = random_cuts(completions, seed=1)
    j = ObjectiveScorer(model, tok, mode=mode, **options).score(prompts, completions, answers, offsets, positions)
    direct = dict(
        j_tokens=options.get("j_tokens", "template"), special=options.get("answer_special_tokens", False),
        temperature=options.get("temperature", 1.0) if options.get("j_at_rollout_temperature") else 1.0,
    )
    expected = [
        direct_j(model, tok, prompts[b], completions[b], int(p), answers[b], **direct)
        for b in range(len(prompts))
        for p in positions[offsets[b] : offsets[b + 1]]
    ]
    np.testing.assert_allclose(j, expected, atol=1e-5, rtol=0)
    paper = ObjectiveScorer(model, tok, mode=mode).score(prompts, completions, answers, offsets, positions)
    assert np.abs(j - paper).max() > 1e-3  # the option changes J


def test_answer_tokens_tokenize_the_whole_text(tok):
    """j_tokens="answer": the template's whole text tokenized as the model would write it, the
    answer's own tokens (by their characters) averaged and the template's around them teacher-forced;
    special tokens are teacher-forced, and averaged only under "template". tests/test_answer_tokens.py
    holds the cases where tokenizing the pieces apart would differ."""
    text = TEMPLATE.format(answer="180")
    whole = tok(text, add_special_tokens=False)["input_ids"]
    start, stop = own_tokens(tok, text, len("\\boxed{"), len("\\boxed{180"))
    answer = AnswerTokens(tok, TEMPLATE, "answer")("180", 0)
    assert answer == AnswerIds(whole, start, stop) and tok.decode(whole[start:stop]) == "180"
    assert answer.scored == stop - start
    assert AnswerTokens(tok, TEMPLATE)("180", 0) == AnswerIds(whole, 0, len(whole))
    with_bos = bos_tokenizer(tok)
    bos = with_bos.bos_token_id
    special = AnswerTokens(with_bos, TEMPLATE, "answer", special_tokens=True)("180", 0)
    assert special == AnswerIds([bos] + whole, 1 + start, 1 + stop)
    template = AnswerTokens(with_bos, TEMPLATE, special_tokens=True)("180", 0)
    assert template == AnswerIds([bos] + whole, 0, 1 + len(whole))
    assert AnswerTokens(with_bos, TEMPLATE)("180", 0) == AnswerIds(whole, 0, len(whole))  # off: no BOS


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_entropies_equal_full_softmax(model, tok, temperature):
    prompts, completions, _ = rollouts(tok, seed=2)
    entropies, mask = ObjectiveScorer(model, tok, temperature=temperature, max_batch_tokens=64).entropies(
        prompts, completions
    )
    width = max(map(len, completions))
    assert entropies.shape == mask.shape == (len(prompts), width)
    assert entropies.dtype == np.float32 and mask.dtype == np.bool_
    for b, completion in enumerate(completions):
        assert mask[b].sum() == len(completion) and mask[b, : len(completion)].all()
        np.testing.assert_allclose(
            entropies[b, : len(completion)], direct_entropies(model, prompts[b], completion, temperature), atol=1e-5
        )
        assert np.all(entropies[b, len(completion) :] == 0)


@pytest.mark.parametrize("options", [{}, *J_OPTIONS], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("budget", [1, 50, 300, 100_000])
def test_shared_equals_per_cut_for_any_budget(model, tok, budget, options):
    """Tiny budgets force one row per chunk and one probe per call; each J option, both modes."""
    tok = bos_tokenizer(tok) if options.get("answer_special_tokens") else tok
    prompts, completions, answers = rollouts(tok, seed=3, rows=6)
    offsets, positions = random_cuts(completions, seed=3, per_row=8)
    shared = ObjectiveScorer(model, tok, max_batch_tokens=budget, **options).score(
        prompts, completions, answers, offsets, positions
    )
    per_cut = ObjectiveScorer(model, tok, mode="per_cut", max_batch_tokens=budget, **options).score(
        prompts, completions, answers, offsets, positions
    )
    np.testing.assert_allclose(shared, per_cut, atol=1e-4, rtol=0)


@settings(max_examples=15)
@given(
    prompt_lengths=st.lists(st.integers(1, 12), min_size=1, max_size=5),
    data=st.data(),
)
def test_shared_equals_per_cut_property(tok, prompt_lengths, data):
    model = tiny.model(len(tok))
    rows = len(prompt_lengths)
    completion_lengths = data.draw(st.lists(st.integers(0, 40), min_size=rows, max_size=rows))
    rng = random.Random(data.draw(st.integers(0, 2**16)))
    prompts = [[rng.randrange(len(tok)) for _ in range(n)] for n in prompt_lengths]
    completions = [[rng.randrange(len(tok)) for _ in range(n)] for n in completion_lengths]
    j_tokens = data.draw(st.sampled_from(["template", "answer"]))
    texts = ["1", "42", "x + y", "-3.5"] + ([""] if j_tokens == "template" else [])  # "answer" needs answer tokens
    answers = data.draw(st.lists(st.sampled_from(texts), min_size=rows, max_size=rows))
    cuts = [sorted(data.draw(st.sets(st.integers(0, n), max_size=6))) for n in completion_lengths]
    offsets = np.r_[0, np.cumsum([len(c) for c in cuts])]
    positions = np.array([p for c in cuts for p in c], dtype=np.int64)
    budget = data.draw(st.integers(1, 200))
    options = dict(j_tokens=j_tokens, j_at_rollout_temperature=data.draw(st.booleans()), temperature=0.8)
    shared = ObjectiveScorer(model, tok, max_batch_tokens=budget, **options).score(
        prompts, completions, answers, offsets, positions
    )
    per_cut = ObjectiveScorer(model, tok, mode="per_cut", **options).score(
        prompts, completions, answers, offsets, positions
    )
    assert shared.shape == positions.shape
    np.testing.assert_allclose(shared, per_cut, atol=1e-4, rtol=0)


def test_batch_composition_changes_nothing(model, tok):
    prompts, completions, answers = rollouts(tok, seed=4, rows=5)
    offsets, positions = random_cuts(completions, seed=4)
    scorer = ObjectiveScorer(model, tok)
    together = scorer.score(prompts, completions, answers, offsets, positions)
    entropies, _ = scorer.entropies(prompts, completions)
    order = [3, 0, 4, 1, 2]
    for b in range(len(prompts)):
        alone = scorer.score([prompts[b]], [completions[b]], [answers[b]], [0, offsets[b + 1] - offsets[b]],
                             positions[offsets[b] : offsets[b + 1]])
        np.testing.assert_allclose(alone, together[offsets[b] : offsets[b + 1]], atol=1e-5, rtol=0)
        alone_entropies, _ = scorer.entropies([prompts[b]], [completions[b]])
        n = len(completions[b])
        np.testing.assert_allclose(alone_entropies[0, :n], entropies[b, :n], atol=1e-5)
    shuffled_offsets = np.r_[0, np.cumsum([offsets[b + 1] - offsets[b] for b in order])]
    shuffled_positions = np.concatenate([positions[offsets[b] : offsets[b + 1]] for b in order])
    shuffled = scorer.score([prompts[b] for b in order], [completions[b] for b in order], [answers[b] for b in order],
                            shuffled_offsets, shuffled_positions)
    np.testing.assert_allclose(shuffled, np.concatenate([together[offsets[b] : offsets[b + 1]] for b in order]),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("options", [{}, J_OPTIONS[-1]], ids=["paper", "options"])
@pytest.mark.parametrize("mode", ["shared", "per_cut"])
def test_evaluate_equals_the_separate_calls(model, tok, mode, options):
    prompts, completions, answers = rollouts(tok, seed=5, rows=5)
    completions[0] = tok(".\n\n".join(["So x is two"] * 6) + "</think> done")["input_ids"]
    select = functools.partial(rc.select_cuts, delimiters=rc.Delimiters.from_tokenizer(tok), k=3,
                               think_end_id=rc.think_end_id(tok))
    tok = bos_tokenizer(tok) if options.get("answer_special_tokens") else tok
    scorer = ObjectiveScorer(model, tok, mode=mode, max_batch_tokens=120, **options)
    result = scorer.evaluate(prompts, completions, answers, select)
    entropies, mask = scorer.entropies(prompts, completions)
    np.testing.assert_allclose(result.entropies, entropies, atol=1e-6)
    np.testing.assert_array_equal(result.mask, mask)
    ids = np.zeros(mask.shape, dtype=np.int64)
    for b, c in enumerate(completions):
        ids[b, : len(c)] = c
    cuts = select(ids, mask, entropies)
    np.testing.assert_array_equal(result.cuts.offsets, cuts.offsets)
    np.testing.assert_array_equal(result.cuts.positions, cuts.positions)
    np.testing.assert_array_equal(result.cuts.ends, cuts.ends)
    assert len(result.cuts.positions) > 2 * len(prompts)  # the paragraphs produced real cut points
    j = ObjectiveScorer(model, tok, mode="per_cut", **options).score(
        prompts, completions, answers, cuts.offsets, cuts.positions
    )
    np.testing.assert_allclose(result.j, j, atol=1e-4, rtol=0)


def test_model_mode_and_grad_are_restored(tok):
    model = tiny.model(len(tok)).train()
    model.model.layers[0].eval()  # a mixed state must come back as it was
    prompts, completions, answers = rollouts(tok, seed=6)
    offsets, positions = random_cuts(completions, seed=6)
    before = {name: m.training for name, m in model.named_modules()}
    scorer = ObjectiveScorer(model, tok)
    j = scorer.score(prompts, completions, answers, offsets, positions)
    entropies, _ = scorer.entropies(prompts, completions)
    assert {name: m.training for name, m in model.named_modules()} == before
    assert all(p.grad is None for p in model.parameters())
    model.eval()  # dropout is off during scoring, so eval mode gives the same numbers
    np.testing.assert_allclose(scorer.score(prompts, completions, answers, offsets, positions), j, atol=1e-6)
    np.testing.assert_allclose(scorer.entropies(prompts, completions)[0], entropies, atol=1e-6)


def test_dropout_is_off(tok):
    model = tiny.model(len(tok), attention_dropout=0.5).train()
    prompts, completions, answers = rollouts(tok, seed=7)
    offsets, positions = random_cuts(completions, seed=7)
    scorer = ObjectiveScorer(model, tok)
    first = scorer.score(prompts, completions, answers, offsets, positions)
    np.testing.assert_array_equal(first, scorer.score(prompts, completions, answers, offsets, positions))


def test_eager_attention(tok):
    model = tiny.model(len(tok), attn_implementation="eager")
    prompts, completions, answers = rollouts(tok, seed=8)
    offsets, positions = random_cuts(completions, seed=8)
    shared = ObjectiveScorer(model, tok).score(prompts, completions, answers, offsets, positions)
    per_cut = ObjectiveScorer(model, tok, mode="per_cut").score(prompts, completions, answers, offsets, positions)
    np.testing.assert_allclose(shared, per_cut, atol=1e-4, rtol=0)


def test_bfloat16(tok):
    model32 = tiny.model(len(tok))
    model16 = tiny.model(len(tok), dtype=torch.bfloat16)
    prompts, completions, answers = rollouts(tok, seed=9)
    offsets, positions = random_cuts(completions, seed=9)
    shared = ObjectiveScorer(model16, tok).score(prompts, completions, answers, offsets, positions)
    per_cut = ObjectiveScorer(model16, tok, mode="per_cut").score(prompts, completions, answers, offsets, positions)
    exact = ObjectiveScorer(model32, tok, mode="per_cut").score(prompts, completions, answers, offsets, positions)
    assert shared.dtype == np.float64
    np.testing.assert_allclose(shared, per_cut, atol=0.1, rtol=0)
    np.testing.assert_allclose(shared, exact, atol=0.2, rtol=0)
    entropies, mask = ObjectiveScorer(model16, tok).entropies(prompts, completions)
    assert entropies.dtype == np.float32 and np.isfinite(entropies).all()


def test_peft_model(tok):
    peft = pytest.importorskip("peft")
    base = tiny.model(len(tok))
    lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = peft.get_peft_model(base, lora)
    prompts, completions, answers = rollouts(tok, seed=10)
    offsets, positions = random_cuts(completions, seed=10)
    shared = ObjectiveScorer(model, tok).score(prompts, completions, answers, offsets, positions)
    per_cut = ObjectiveScorer(model, tok, mode="per_cut").score(prompts, completions, answers, offsets, positions)
    np.testing.assert_allclose(shared, per_cut, atol=1e-4, rtol=0)
    plain = ObjectiveScorer(tiny.model(len(tok)), tok).score(prompts, completions, answers, offsets, positions)
    assert np.abs(shared - plain).max() > 1e-3  # the adapters are in the computation
    merged = ObjectiveScorer(model.merge_and_unload(), tok).score(prompts, completions, answers, offsets, positions)
    np.testing.assert_allclose(shared, merged, atol=1e-4, rtol=0)


def test_non_finite_entropies_name_row_and_position(tok):
    model = tiny.model(len(tok))
    with torch.no_grad():
        model.lm_head.weight[5] = float("nan")
    with pytest.raises(ReproError, match=r"model: non-finite entropy nan at row 0, position 0"):
        ObjectiveScorer(model, tok).entropies([[1, 2]], [[3, 4]])


# ------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def scorer(tok, tiny_model):
    return ObjectiveScorer(tiny_model, tok)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(mode="fast"), "mode: expected one of shared, per_cut, fused, got 'fast'"),
        (dict(temperature=0), "temperature: expected a finite number > 0"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature="1"), "temperature: expected a finite number > 0, got '1'"),
        (dict(max_batch_tokens=0), "max_batch_tokens: expected an int >= 1"),
        (dict(max_batch_tokens=2.5), "max_batch_tokens: expected an int >= 1"),
        (dict(answer_template="{solution}"), "answer_template"),
        (dict(answer_template="\\boxed{{x}}"), "answer_template: expected a str.format template"),
        (dict(answer_template=None), "answer_template"),
        (dict(j_tokens="answer_only"), "j_tokens: expected one of template, answer, got 'answer_only'"),
        (dict(answer_special_tokens="yes"), "answer_special_tokens: expected a bool, got 'yes'"),
        (dict(j_at_rollout_temperature=1), "j_at_rollout_temperature: expected a bool, got 1"),
    ],
)
def test_bad_options(tok, tiny_model, kwargs, message):
    with pytest.raises(ReproError, match=message) as raised:
        ObjectiveScorer(tiny_model, tok, **kwargs)
    assert raised.value.argument == next(iter(kwargs))  # the keyword the caller set


def test_options_are_checked_as_the_config_checks_them(tok, tiny_model):
    """One check per setting: the scorer's message is ReproConfig's, under the scorer's keyword."""
    for keyword, field, value in [("mode", "objective_mode", "fast"), ("temperature", "temperature", -1.0),
                                  ("max_batch_tokens", "max_batch_tokens", 0),
                                  ("answer_template", "answer_template", "{x}")]:
        with pytest.raises(ReproError) as from_config:
            ReproConfig(**{field: value})
        with pytest.raises(ReproError) as from_scorer:
            ObjectiveScorer(tiny_model, tok, **{keyword: value})
        assert (from_config.value.argument, from_scorer.value.argument) == (field, keyword)
        assert from_scorer.value.message == from_config.value.message


def test_bad_rollouts(scorer, tok):
    vocab = len(tok)
    cases = [
        (([], []), "prompt_ids: expected at least one row"),
        (([[1]], [[2], [3]]), r"completion_ids: expected 1 rows \(as prompt_ids\), got 2"),
        (([[]], [[2]]), r"prompt_ids\[0\]: is empty"),
        (([[1], [vocab]], [[2], [3]]), rf"prompt_ids\[1\]: token id {vocab} is outside"),
        (([[1]], [[2, -1]]), r"completion_ids\[0\]: token id -1 is outside"),
        (([[1]], [[2.5]]), r"completion_ids\[0\]: expected a 1-D sequence of ints"),
        (([[1]], "abc"), "completion_ids: expected a sequence of token-id sequences"),
    ]
    for (prompts, completions), message in cases:
        with pytest.raises(ReproError, match=message):
            scorer.entropies(prompts, completions)


def test_bad_cuts_and_answers(scorer):
    prompts, completions = [[1, 2], [3]], [[4, 5, 6], []]
    cases = [
        ((["1"], [0, 1, 2], [0, 0]), r"answers: expected 2 answers \(one per row\), got 1"),
        (("12", [0, 1, 2], [0, 0]), "answers: expected 2 answers .* got a string"),
        ((["1", None], [0, 1, 2], [0, 0]), r"answers\[1\]: expected an answer, got None"),
        ((["1", "2"], [0, 2], [0, 0]), r"offsets: expected \(3,\) ints"),
        ((["1", "2"], [0, 1, 3], [0, 0]), "offsets: expected non-decreasing values from 0 to len"),
        ((["1", "2"], [0, 2, 1], [0, 0]), "offsets: expected non-decreasing"),
        ((["1", "2"], [0, 1, 2], [4, 0]), r"positions: row 0 has cut point 4 outside \[0, 3\]"),
        ((["1", "2"], [0, 1, 2], [0, 1]), r"positions: row 1 has cut point 1 outside \[0, 0\]"),
        ((["1", "2"], [0, 1, 2], [0.0, 0.0]), "positions: expected"),
    ]
    for (answers, offsets, positions), message in cases:
        with pytest.raises(ReproError, match=message):
            scorer.score(prompts, completions, answers, np.array(offsets), np.array(positions))


def test_empty_answer_text_is_an_error(tok):
    scorer = ObjectiveScorer(tiny.model(len(tok)), tok, answer_template="{answer}")
    with pytest.raises(ReproError, match=r"answers\[0\]: '' tokenizes to no tokens"):
        scorer.score([[1]], [[2]], [""], [0, 1], [0])
    scorer = ObjectiveScorer(tiny.model(len(tok)), tok, j_tokens="answer")
    with pytest.raises(ReproError, match=r"answers\[0\]: the answer '' tokenizes to no tokens"):
        scorer.score([[1]], [[2]], [""], [0, 1], [0])


def test_accepts_arrays_and_tensors(scorer):
    prompts = [np.array([1, 2], dtype=np.int32), torch.tensor([3])]
    completions = [torch.tensor([4, 5, 6]), np.array([], dtype=np.int64)]
    j = scorer.score(prompts, completions, [7, 8.5], np.array([0, 2, 3]), np.array([0, 3, 0]))
    expected = scorer.score([[1, 2], [3]], [[4, 5, 6], []], ["7", "8.5"], [0, 2, 3], [0, 3, 0])
    np.testing.assert_array_equal(j, expected)


def test_answers_given_tokenized(scorer, tok):
    """An AnswerIds (tokenized elsewhere, as verl's controller sends it) is scored as the text it encodes."""
    prompts, completions = [[1, 2], [3]], [[4, 5, 6], [7, 8]]
    answers = [AnswerTokens(tok, TEMPLATE)(text, 0) for text in ("7", "8.5")]
    j = scorer.score(prompts, completions, answers, [0, 2, 3], [0, 3, 1])
    np.testing.assert_array_equal(j, scorer.score(prompts, completions, ["7", "8.5"], [0, 2, 3], [0, 3, 1]))
    scorer.idle()  # an unsharded model has no ranks to keep in step: nothing to do


# ------------------------------------------------------------------------------ GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_cpu(tok, dtype):
    cpu = tiny.model(len(tok))
    gpu = tiny.model(len(tok), dtype=dtype).cuda()
    prompts, completions, answers = rollouts(tok, seed=11, rows=8)
    offsets, positions = random_cuts(completions, seed=11)
    expected = ObjectiveScorer(cpu, tok, mode="per_cut").score(prompts, completions, answers, offsets, positions)
    tolerance = 1e-4 if dtype == torch.float32 else 0.1
    for mode in ("shared", "per_cut"):
        j = ObjectiveScorer(gpu, tok, mode=mode).score(prompts, completions, answers, offsets, positions)
        np.testing.assert_allclose(j, expected, atol=tolerance, rtol=0)


# ------------------------------------------------------------------------------ the real embedded model

SOLUTIONS = [
    "Each box holds 12 apples.\n\nThere are 4 boxes, so 4 * 12 = 48 apples.\n\nWait, 3 apples are rotten.\n\n"
    "48 - 3 = 45.",
    "Let x be the number.\n\nThen 2x + 6 = 20, so 2x = 14.\n\nHmm, let me re-check: 2 * 7 + 6 = 20. Yes.\n\nx = 7.",
    "We add the numbers step by step.\n\n17 + 25 = 42.",
    "",
]
QUESTIONS = ["How many good apples are there?", "Solve 2x + 6 = 20.", "What is 17 + 25?", "What is 1 + 1?"]


@pytest.fixture(scope="module")
def smollm2():
    from repro_core.assets import load_default_model

    return load_default_model()


def test_smollm2_shared_equals_per_cut_and_direct(smollm2):
    model, tokenizer = smollm2
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True,
                                      return_dict=True)["input_ids"]
        for q in QUESTIONS
    ]
    assert len({len(p) for p in prompts}) > 1  # prompts of different lengths share a batch
    completions = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in SOLUTIONS]
    answers = ["45", "7", "42", "2"]
    offsets, positions = random_cuts(completions, seed=12, per_row=6)
    shared = ObjectiveScorer(model, tokenizer).score(prompts, completions, answers, offsets, positions)
    per_cut = ObjectiveScorer(model, tokenizer, mode="per_cut").score(prompts, completions, answers, offsets, positions)
    np.testing.assert_allclose(shared, per_cut, atol=1e-4, rtol=0)
    for n in (0, offsets[1] - 1, offsets[2]):  # the baseline and the end of row 0, the baseline of row 1
        b = int(np.searchsorted(offsets, n, side="right") - 1)
        expected = direct_j(model, tokenizer, prompts[b], completions[b], int(positions[n]), answers[b])
        assert abs(shared[n] - expected) < 1e-4


def test_smollm2_entropies_equal_full_softmax(smollm2):
    model, tokenizer = smollm2
    prompts = [tokenizer(q)["input_ids"] for q in QUESTIONS[:3]]
    completions = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in SOLUTIONS[:3]]
    entropies, mask = ObjectiveScorer(model, tokenizer).entropies(prompts, completions)
    for b in range(3):
        n = len(completions[b])
        np.testing.assert_allclose(entropies[b, :n], direct_entropies(model, prompts[b], completions[b], 1.0),
                                   atol=1e-4)


@pytest.mark.parametrize(
    ("config_name", "extra"),
    [
        ("Gemma2Config", dict(final_logit_softcapping=3.0, head_dim=16, sliding_window=16)),
        ("CohereConfig", dict(logit_scale=0.5)),
        ("GraniteConfig", dict(logits_scaling=4.0)),
        ("MistralConfig", dict(sliding_window=16)),
    ],
)
def test_architectures_with_their_own_logits_and_attention(tok, config_name, extra):
    import transformers

    config = getattr(transformers, config_name)(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2, attn_implementation="sdpa",
        **extra,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    prompts, completions, answers = rollouts(tok, seed=13)
    offsets, positions = random_cuts(completions, seed=13)
    shared = ObjectiveScorer(model, tok).score(prompts, completions, answers, offsets, positions)
    per_cut = ObjectiveScorer(model, tok, mode="per_cut").score(prompts, completions, answers, offsets, positions)
    np.testing.assert_allclose(shared, per_cut, atol=1e-4, rtol=0)
    entropies, _ = ObjectiveScorer(model, tok).entropies(prompts, completions)
    b = int(np.argmax([len(c) for c in completions]))
    np.testing.assert_allclose(entropies[b, : len(completions[b])],
                               direct_entropies(model, prompts[b], completions[b], 1.0), atol=1e-4)
