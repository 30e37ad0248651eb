"""ReproScorer (docs/method.md, "Cut points" to "Advantages"): the model passes composed with the
Rust core, against the NumPy oracle on the same entropies and J, and ReproConfig's checks."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import logging
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import reference as ref  # noqa: E402
import repro_core as rc  # noqa: E402
import tiny  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core.objective import ObjectiveScorer  # noqa: E402
from repro_core.pipeline import ReproConfig, ReproScorer, cut_selector  # noqa: E402


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model  # conftest's: no test here changes weights


def batch(tok, groups: int = 3, group_size: int = 3, seed: int = 0):
    """Groups of completions of one prompt: paragraphs, a think-end tag, truncation, an empty one."""
    rng = random.Random(seed)
    prompts, completions, answers, group_index = [], [], [], []
    for g in range(groups):
        prompt = tok(f"Question {g}: " + tiny.reasoning_text(rng, 1))["input_ids"]
        for i in range(group_size):
            text = tiny.reasoning_text(rng, rng.randint(1, 7))
            if i == 0:
                text += "</think>So the answer is \\boxed{42}."
            completions.append(tok(text)["input_ids"][: rng.choice([200, 200, 30])])
            prompts.append(prompt)
            answers.append(str(40 + g))
            group_index.append(g)
    completions[-1] = []
    rewards = np.array([rng.choice([0.0, 1.0]) for _ in completions])
    return prompts, completions, answers, rewards, np.array(group_index)


@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline"])
def test_pipeline_matches_the_oracle(model, tok, estimator):
    prompts, completions, answers, rewards, groups = batch(tok)
    config = ReproConfig(k=3, w=0.2, alpha=0.5, estimator=estimator, lam=0.95 if estimator == "ppo" else 1.0)
    scorer = ReproScorer(model, tok, config)
    width = max(map(len, completions))
    values = np.random.default_rng(0).normal(size=(len(prompts), width)) if estimator == "ppo" else None
    result = scorer.score(prompts, completions, answers, rewards, groups, values=values)

    objective = ObjectiveScorer(model, tok, mode="per_cut")
    entropies, mask = objective.entropies(prompts, completions)
    np.testing.assert_allclose(result.entropies, entropies, atol=1e-5)
    np.testing.assert_array_equal(result.mask, mask)
    think_end = rc.think_end_id(tok)
    assert think_end is not None and scorer.think_end_id == think_end
    delimiters = ref.text_table(tok.batch_decode([[i] for i in range(len(tok))]))
    cuts = ref.select_cuts(result.token_ids, mask, result.entropies, delimiters, k=3, think_end_id=think_end)
    for name in ("offsets", "positions", "ends"):
        np.testing.assert_array_equal(getattr(result.cuts, name), cuts[name])
    assert np.any(np.diff(cuts["offsets"]) > 2), "some completion should have paragraph cut points"
    j = objective.score(prompts, completions, answers, cuts["offsets"], cuts["positions"])
    np.testing.assert_allclose(result.j, j, atol=1e-4, rtol=0)

    steps = ref.score_steps(result.j, cuts["offsets"], w=0.2)
    for name in ("magnitude", "stability", "score", "reward"):
        np.testing.assert_allclose(getattr(result.steps, name), steps[name], atol=1e-9)
    expected = ref.compute_advantages(
        estimator, rewards, steps["reward"], cuts["offsets"], cuts["positions"], mask, groups,
        alpha=0.5, lam=config.lam, values=values,
    )
    np.testing.assert_allclose(result.advantages.advantages, expected["advantages"], atol=1e-5)
    if expected["returns"] is not None:  # the estimators with returns of their own (the oracle knows which)
        np.testing.assert_allclose(result.advantages.returns, expected["returns"], atol=1e-5)
    else:
        assert result.advantages.returns is None
    assert np.all(result.advantages.advantages[~mask] == 0)

    np.testing.assert_array_equal(result.j_baseline, result.j[cuts["offsets"][:-1]])
    np.testing.assert_array_equal(result.j_end, result.j[cuts["offsets"][1:] - 1])
    segments = ref.segment_paragraphs(result.token_ids, mask, delimiters, think_end_id=think_end)
    np.testing.assert_array_equal(result.num_paragraphs, np.diff(segments["offsets"]))
    assert result.num_paragraphs[-1] == 0 and result.num_paragraphs.max() > 1


def test_process_rewards_make_advantages_vary_along_a_row(model, tok):
    prompts, completions, answers, rewards, groups = batch(tok, seed=1)
    result = ReproScorer(model, tok, ReproConfig(k=4)).score(prompts, completions, answers, rewards, groups)
    lengths = result.mask.sum(1)
    varying = [np.ptp(result.advantages.advantages[b, : lengths[b]]) > 0 for b in range(len(prompts)) if lengths[b]]
    assert any(varying)
    flat = ReproScorer(model, tok, ReproConfig(k=4, alpha=0.0)).score(prompts, completions, answers, rewards, groups)
    for b in range(len(prompts)):
        row = flat.advantages.advantages[b, : lengths[b]]
        assert np.all(row == row[:1])


def test_shared_and_per_cut_configs_agree(model, tok):
    prompts, completions, answers, rewards, groups = batch(tok, seed=2)
    shared = ReproScorer(model, tok, ReproConfig(max_batch_tokens=64)).score(
        prompts, completions, answers, rewards, groups
    )
    per_cut = ReproScorer(model, tok, ReproConfig(objective_mode="per_cut")).score(
        prompts, completions, answers, rewards, groups
    )
    np.testing.assert_array_equal(shared.cuts.positions, per_cut.cuts.positions)
    np.testing.assert_allclose(shared.j, per_cut.j, atol=1e-4, rtol=0)
    np.testing.assert_allclose(shared.advantages.advantages, per_cut.advantages.advantages, atol=1e-3)


@pytest.mark.parametrize("objective_mode", ["shared", "per_cut"])
def test_j_options_reach_the_objective(model, tok, objective_mode):
    """j_tokens and j_at_rollout_temperature from the config: J as ObjectiveScorer computes it with them."""
    prompts, completions, answers, rewards, groups = batch(tok, seed=3)
    options = dict(j_tokens="answer", j_at_rollout_temperature=True, temperature=0.7)
    config = ReproConfig(objective_mode=objective_mode, **options)
    result = ReproScorer(model, tok, config).score(prompts, completions, answers, rewards, groups)
    expected = ObjectiveScorer(model, tok, mode="per_cut", **options).score(
        prompts, completions, answers, result.cuts.offsets, result.cuts.positions
    )
    np.testing.assert_allclose(result.j, expected, atol=1e-4, rtol=0)
    paper = ObjectiveScorer(model, tok, mode="per_cut").score(
        prompts, completions, answers, result.cuts.offsets, result.cuts.positions
    )
    assert np.abs(result.j - paper).max() > 1e-3
    special = ReproScorer(model, tok, ReproConfig(answer_special_tokens=True))
    assert special.objective.answer_ids.special_tokens
    assert not ReproScorer(model, tok).objective.answer_ids.special_tokens


def test_delimiter_and_think_end_options(model, tok):
    prompts, completions, answers, rewards, groups = batch(tok, seed=3)
    newline = tok.convert_tokens_to_ids(tok.tokenize("\n"))
    by_ids = ReproScorer(model, tok, ReproConfig(delimiters=newline, think_end=None))
    assert by_ids.think_end_id is None
    result = by_ids.score(prompts, completions, answers, rewards, groups)
    lengths = result.mask.sum(1)
    np.testing.assert_array_equal(result.cuts.ends, lengths)  # no think-end: e is the length
    by_id = ReproScorer(model, tok, ReproConfig(think_end=rc.think_end_id(tok)))
    assert by_id.think_end_id == rc.think_end_id(tok)
    line = ReproScorer(model, tok, ReproConfig(delimiters="line", k=100)).score(
        prompts, completions, answers, rewards, groups
    )
    paper = ReproScorer(model, tok, ReproConfig(delimiters="paper", k=100)).score(
        prompts, completions, answers, rewards, groups
    )
    assert np.all(line.num_paragraphs >= paper.num_paragraphs)


def tokenizer_without_think_end():
    """A byte-level BPE tokenizer in which "</think>" is several tokens."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator([tiny.reasoning_text(random.Random(i), 3) for i in range(50)], trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")


@pytest.mark.parametrize(
    ("think_end", "message"),
    [
        ("<answer>", "'<answer>' is not one token of the tokenizer"),
        ("So the value", "'So the value' is not one token of the tokenizer"),
        (10**6, "token id 1000000 is outside the tokenizer's vocabulary"),
    ],
)
def test_an_explicit_think_end_must_be_one_token(model, tok, think_end, message):
    assert len(tok("<answer>")["input_ids"]) > 1
    config = ReproConfig(think_end=think_end)
    with pytest.raises(ReproError) as caught:
        cut_selector(tok, config)
    assert caught.value.argument == "think_end" and message in caught.value.message
    with pytest.raises(ReproError, match="think_end: "):
        ReproScorer(model, tok, config)  # at construction, before any batch


def test_think_end_of_the_tokenizer(tok):
    special = rc.think_end_id(tok)
    assert special is not None
    assert cut_selector(tok, ReproConfig()).keywords["think_end_id"] == special
    assert cut_selector(tok, ReproConfig(think_end="</think>")).keywords["think_end_id"] == special
    assert cut_selector(tok, ReproConfig(think_end=np.int64(len(tok) - 1))).keywords["think_end_id"] == len(tok) - 1
    assert cut_selector(tok, ReproConfig(think_end=None)).keywords["think_end_id"] is None


def test_a_missing_default_think_end_is_logged_once(caplog):
    plain = tokenizer_without_think_end()
    assert rc.think_end_id(plain) is None
    with caplog.at_level(logging.INFO, logger="repro_core.pipeline"):
        assert cut_selector(plain, ReproConfig()).keywords["think_end_id"] is None
    records = [r for r in caplog.records if r.name == "repro_core.pipeline"]
    assert len(records) == 1 and records[0].levelno >= logging.INFO
    assert "no single '</think>' token" in records[0].getMessage()
    assert "scored to their end" in records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="repro_core.pipeline"):
        assert cut_selector(plain, ReproConfig(think_end=None)).keywords["think_end_id"] is None
    assert not [r for r in caplog.records if r.name == "repro_core.pipeline"]


@pytest.mark.parametrize("delimiters", ["paragraphs", ["\n\n", ""], [-1]])
def test_delimiter_errors_of_the_tokenizer_name_the_field(tok, delimiters):
    """Delimiters names its argument ``mode`` (or ``ids``); the config's field is ``delimiters``."""
    config = ReproConfig()
    config.delimiters = delimiters  # past the config's own check, as a config edited in place would be
    with pytest.raises(ReproError) as caught:
        cut_selector(tok, config)
    assert caught.value.argument == "delimiters"


def test_bad_batch_inputs_are_named(model, tok):
    prompts, completions, answers, rewards, groups = batch(tok, seed=4)
    scorer = ReproScorer(model, tok)
    with pytest.raises(ReproError, match="outcome_rewards"):
        scorer.score(prompts, completions, answers, rewards[:-1], groups)
    with pytest.raises(ReproError, match="values"):
        scorer.score(prompts, completions, answers, rewards, groups, values=np.zeros((len(prompts), 3)))
    with pytest.raises(ReproError, match="answers"):
        scorer.score(prompts, completions, answers[:-1], rewards, groups)
