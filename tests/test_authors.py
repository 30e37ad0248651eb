"""repro_core with the authors' code's three quirks on (stats_include_baseline,
drop_first_token_reward, critic_target="advantages") against tests/authors_reference.py, an
implementation of the authors' arithmetic written on its own."""

import numpy as np
import pytest

import repro_core as rc
from authors_reference import authors_advantages

AUTHORS = dict(stats_include_baseline=True, drop_first_token_reward=True)


def _batch(seed, estimator):
    """Random groups (singletons among them), ragged lengths, and a cut at p = 1 in some rows."""
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.choice([1, 2, 3, 4], size=rng.integers(1, 5))]
    group_index = np.repeat(rng.permutation(100)[: len(sizes)], sizes)
    B, T = len(group_index), int(rng.integers(2, 14))
    lengths = rng.integers(1, T + 1, size=B)
    mask = np.arange(T)[None, :] < lengths[:, None]
    rows = []
    for b, L in enumerate(lengths):
        points = sorted(p for p in range(2, L + 1) if rng.random() < 0.4)
        if L >= 1 and (b == 0 or rng.random() < 0.5):
            points = [1] + points  # a cut at p = 1: its reward sits on token 0
        rows.append([0] + points)
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    positions = np.array([p for r in rows for p in r], dtype=np.int64)
    step_rewards = rng.normal(size=len(positions))
    step_rewards[offsets[:-1]] = 0.0
    outcome = rng.integers(0, 2, size=B).astype(np.float64)
    values = rng.normal(size=(B, T)) if estimator == "ppo" else None
    return dict(
        outcome_rewards=outcome, step_rewards=step_rewards, offsets=offsets, positions=positions,
        response_mask=mask, group_index=group_index, values=values,
    )


@pytest.mark.parametrize("estimator", ["grpo", "ppo"])
@pytest.mark.parametrize("seed", range(40))
def test_core_with_the_authors_options_matches_their_arithmetic(estimator, seed):
    x = _batch(seed, estimator)
    alpha, gamma = 0.7, (1.0 if seed % 2 else 0.9)
    lam = 0.95 if estimator == "ppo" else 1.0
    options = dict(AUTHORS, critic_target="advantages") if estimator == "ppo" else AUTHORS
    real = rc.compute_advantages(
        estimator, x["outcome_rewards"], x["step_rewards"], x["offsets"], x["positions"], x["response_mask"],
        x["group_index"], alpha=alpha, gamma=gamma, lam=lam, values=x["values"], **options,
    )
    advantages, returns = authors_advantages(
        estimator, x["outcome_rewards"], x["step_rewards"], x["offsets"], x["positions"], x["response_mask"],
        x["group_index"], alpha=alpha, gamma=gamma, lam=lam, values=x["values"],
    )
    np.testing.assert_allclose(real.advantages, advantages, rtol=1e-5, atol=1e-5)
    if estimator == "ppo":
        assert real.returns is not None
        np.testing.assert_allclose(real.returns, returns, rtol=1e-5, atol=1e-5)
    else:
        assert real.returns is None


def test_each_quirk_changes_the_result():
    """One group of two with a cut at p = 1: every option on its own moves the advantages (or returns)."""
    mask = np.ones((2, 5), dtype=bool)
    args = (
        "ppo", np.array([1.0, 0.0]), np.array([0.0, 0.8, -0.3, 0.0, 0.5, 0.4]), np.array([0, 3, 6]),
        np.array([0, 1, 4, 0, 2, 5]), mask, np.array([7, 7]),
    )
    base = dict(alpha=1.0, gamma=1.0, lam=0.95, values=np.linspace(-1, 1, 10).reshape(2, 5))
    clean = rc.compute_advantages(*args, **base)
    for option in ({"stats_include_baseline": True}, {"drop_first_token_reward": True}):
        assert not np.allclose(rc.compute_advantages(*args, **base, **option).advantages, clean.advantages)
    target = rc.compute_advantages(*args, **base, critic_target="advantages")
    np.testing.assert_array_equal(target.advantages, clean.advantages)
    assert not np.allclose(target.returns, clean.returns)


def test_a_response_as_wide_as_the_batch_counts_no_baseline_zero():
    """The authors' code writes the baseline's 0 on token -1, the last column; a response that fills
    the width has its end reward there, so that row adds no 0 to the statistics (a shorter one does)."""
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=bool)
    args = (np.array([1.0, 0.0, 1.0]), np.array([0.0, 0.9, -0.4, 0.0, 0.2, 0.0, 0.5]), np.array([0, 3, 5, 7]),
            np.array([0, 2, 4, 0, 4, 0, 2]), mask, np.array([3, 3, 3]))
    real = rc.compute_advantages("grpo", *args, alpha=1.0, **AUTHORS).advantages
    np.testing.assert_allclose(real, authors_advantages("grpo", *args, alpha=1.0)[0], rtol=1e-6, atol=1e-6)
    # By hand: the process rewards {0.9, -0.4, 0.2, 0.5} and one 0 (row 2's), not three.
    counted = np.array([0.9, -0.4, 0.2, 0.5, 0.0])
    mean, std = counted.mean(), counted.std(ddof=1)
    outcome = (np.array([1.0, 0.0, 1.0]) - 2 / 3) / (np.std([1.0, 0.0, 1.0], ddof=1) + 1e-6)
    process = (np.array([0.9, -0.4, 0.2, 0.5]) - mean) / (std + 1e-6)
    expected = outcome[:, None] * mask
    expected[0, :2] += process[0] + process[1]
    expected[0, 2:] += process[1]
    expected[1] += process[2]
    expected[2, :2] += process[3]
    np.testing.assert_allclose(real, expected, rtol=1e-6, atol=1e-6)
