"""The worked example and the score check values of docs/method.md ("Worked example", "Scores and process
rewards"), through the real API and through the oracle (tests/reference.py). The oracle tests do not import
repro_core, so they run before the extension is built."""

import math

import numpy as np
import pytest

import reference as ref
from reference import WORKED as W

TOL = 1e-6

# docs/method.md, "Scores and process rewards": (J_b, J_j) -> M_j
MAGNITUDE_VECTORS = [
    (-2.0, -1.0, 0.537883),
    (-2.0, -2.0, 0.238406),
    (-2.0, 0.0, 1.0),
    (-2.0, -4.0, 0.035972),
    (-0.5, -0.1, 0.802623),
]
STABILITY_J = [-2.0, -1.5, -1.8, -1.0]
STABILITY_TAU = 2.0 / 3.0
STABILITY_S = 0.833333


def _rc():
    import repro_core

    return repro_core


def _close(actual, expected, tol=TOL):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64), rtol=0, atol=tol)


# ------------------------------------------------------------------------------------ oracle


def test_oracle_worked_cuts():
    cuts = ref.select_cuts(W.token_ids, ref.worked_mask(), W.entropies, W.delimiters, k=W.k,
                           think_end_id=W.think_end_id)
    assert cuts["ends"].tolist() == W.ends
    assert cuts["offsets"].tolist() == W.offsets
    assert cuts["positions"].tolist() == W.positions


def test_oracle_worked_scores():
    steps = ref.score_steps(np.array(W.J), np.array(W.offsets), w=W.w)
    _close(steps["magnitude"], W.magnitude)
    _close(steps["stability"], W.stability)
    _close(steps["score"], W.score)
    _close(steps["reward"], W.reward)


def test_oracle_worked_advantages():
    steps = ref.score_steps(np.array(W.J), np.array(W.offsets), w=W.w)
    adv = ref.compute_advantages("grpo", W.outcome_rewards, steps["reward"], W.offsets,
                                 W.positions, ref.worked_mask(), W.group_index, alpha=W.alpha,
                                 gamma=W.gamma)
    _close(adv["advantages"], W.advantages)
    assert adv["returns"] is None


def test_oracle_worked_paragraphs():
    segs = ref.segment_paragraphs(W.token_ids, ref.worked_mask(), W.delimiters,
                                  think_end_id=W.think_end_id)
    assert segs["offsets"].tolist() == [0, 4, 6]
    assert segs["starts"].tolist() == [0, 2, 5, 7, 0, 3]
    assert segs["ends"].tolist() == [2, 5, 7, 9, 3, 5]


@pytest.mark.parametrize("jb,jj,expected", MAGNITUDE_VECTORS)
def test_oracle_magnitude_vectors(jb, jj, expected):
    steps = ref.score_steps(np.array([jb, jj]), np.array([0, 2]), w=0.0)
    _close(steps["magnitude"], [0.0, expected])
    _close(steps["score"], [0.0, expected])  # w = 0: score is the magnitude
    assert abs(ref.magnitude(jb, jj) - expected) <= TOL


def test_oracle_magnitude_approximation():
    # M_j ~ 1 - tanh(J_j / J_b)
    for jb, jj, _ in MAGNITUDE_VECTORS:
        assert abs(ref.magnitude(jb, jj) - (1 - math.tanh(jj / jb))) < 1e-5


def test_oracle_stability_example():
    s = ref.kendall_stability(STABILITY_J)
    assert abs((2 * s - 1) - STABILITY_TAU) < 1e-12
    steps = ref.score_steps(np.array(STABILITY_J), np.array([0, 4]), w=0.1)
    _close(steps["stability"][3], STABILITY_S)


# ------------------------------------------------------------------------------------ real API


@pytest.mark.parametrize("delims", ["list", "from_ids"])
def test_worked_cuts(delims):
    rc = _rc()
    d = W.delimiters if delims == "list" else rc.Delimiters.from_ids(W.delimiters)
    cuts = rc.select_cuts(W.token_ids, ref.worked_mask(), W.entropies, delimiters=d, k=W.k,
                          think_end_id=W.think_end_id)
    for name in ("offsets", "positions", "ends"):
        arr = getattr(cuts, name)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.int64, name
    assert cuts.ends.tolist() == W.ends
    assert cuts.offsets.tolist() == W.offsets
    assert cuts.positions.tolist() == W.positions


def test_worked_paragraphs():
    rc = _rc()
    segs = rc.segment_paragraphs(W.token_ids, ref.worked_mask(), delimiters=W.delimiters,
                                 think_end_id=W.think_end_id)
    assert segs.offsets.tolist() == [0, 4, 6]
    assert segs.starts.tolist() == [0, 2, 5, 7, 0, 3]
    assert segs.ends.tolist() == [2, 5, 7, 9, 3, 5]


def test_worked_scores():
    rc = _rc()
    steps = rc.score_steps(np.array(W.J), np.array(W.offsets, dtype=np.int64), w=W.w)
    for name in ("magnitude", "stability", "score", "reward"):
        arr = getattr(steps, name)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64 and arr.shape == (7,), name
    _close(steps.magnitude, W.magnitude)
    _close(steps.stability, W.stability)
    _close(steps.score, W.score)
    _close(steps.reward, W.reward)
    # w defaults to 0.1
    default = rc.score_steps(np.array(W.J), np.array(W.offsets, dtype=np.int64))
    _close(default.score, W.score)


def test_worked_advantages():
    rc = _rc()
    steps = rc.score_steps(np.array(W.J), np.array(W.offsets, dtype=np.int64), w=W.w)
    adv = rc.compute_advantages("grpo", W.outcome_rewards, steps.reward,
                                np.array(W.offsets), np.array(W.positions), ref.worked_mask(),
                                W.group_index, alpha=W.alpha, gamma=W.gamma)
    assert adv.advantages.dtype == np.float32 and adv.advantages.shape == (2, 12)
    assert adv.returns is None
    _close(adv.advantages, W.advantages)
    # defaults: grpo's alpha = 0.1, gamma = 1
    adv2 = rc.compute_advantages("grpo", W.outcome_rewards, steps.reward, np.array(W.offsets),
                                 np.array(W.positions), ref.worked_mask(), W.group_index)
    _close(adv2.advantages, W.advantages)


def test_worked_end_to_end():
    """The whole chain with the real API only (cuts -> given J -> scores -> advantages)."""
    rc = _rc()
    mask = ref.worked_mask()
    cuts = rc.select_cuts(W.token_ids, mask, W.entropies, delimiters=W.delimiters, k=W.k,
                          think_end_id=W.think_end_id)
    steps = rc.score_steps(np.array(W.J), cuts.offsets, w=W.w)
    adv = rc.compute_advantages("grpo", W.outcome_rewards, steps.reward, cuts.offsets,
                                cuts.positions, mask, W.group_index, alpha=W.alpha)
    _close(adv.advantages, W.advantages)


@pytest.mark.parametrize("jb,jj,expected", MAGNITUDE_VECTORS)
def test_magnitude_vectors(jb, jj, expected):
    rc = _rc()
    steps = rc.score_steps(np.array([jb, jj]), np.array([0, 2], dtype=np.int64), w=0.0)
    _close(steps.magnitude, [0.0, expected])
    _close(steps.score, [0.0, expected])
    _close(steps.reward, [0.0, expected])


def test_magnitude_vectors_batched():
    rc = _rc()
    J = np.array([x for jb, jj, _ in MAGNITUDE_VECTORS for x in (jb, jj)])
    offsets = np.arange(0, len(J) + 1, 2, dtype=np.int64)
    steps = rc.score_steps(J, offsets, w=0.1)
    expected = [x for _, _, m in MAGNITUDE_VECTORS for x in (0.0, m)]
    _close(steps.magnitude, expected)


def test_stability_example():
    rc = _rc()
    steps = rc.score_steps(np.array(STABILITY_J), np.array([0, 4], dtype=np.int64), w=0.1)
    _close(steps.stability[3], STABILITY_S)
    assert abs((2 * steps.stability[3] - 1) - STABILITY_TAU) < 1e-12
