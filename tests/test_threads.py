"""Threads: the rayon pool, its environment switch REPRO_NUM_THREADS, and fork safety. The one home of
these checks; tests/test_parity.py checks the parallel path against the oracle on big batches."""

import multiprocessing
import os

import numpy as np
import pytest

import repro_core as rc
from test_parity import ESTIMATORS, _big_batch


def _batch(rows: int = 64, width: int = 4096, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 100, size=(rows, width))
    mask = np.arange(width) < rng.integers(0, width + 1, size=(rows, 1))
    entropies = rng.random((rows, width)).astype(np.float32)
    return ids, mask, entropies


def _advantages(ids, mask, entropies) -> np.ndarray:
    cuts = rc.select_cuts(ids, mask, entropies, delimiters=[3, 7], k=20, think_end_id=99)
    j = -np.abs(np.sin(np.arange(len(cuts.positions), dtype=np.float64)))
    steps = rc.score_steps(j, cuts.offsets)
    groups = np.arange(len(ids)) // 8
    return rc.compute_advantages(
        "grpo", np.arange(len(ids)) % 2, steps.reward, cuts.offsets, cuts.positions, mask, groups
    ).advantages


def _run_everything(ids, mask, ent, texts):
    """Every function of the core, both delimiter rules and every estimator, on one big batch."""
    out = {}
    text_d = rc.Delimiters.from_token_texts(texts, mode="paper")
    for name, d in [("ids", [3, 7, 11]), ("text", text_d)]:
        cuts = rc.select_cuts(ids, mask, ent, delimiters=d, k=20, think_end_id=49)
        segs = rc.segment_paragraphs(ids, mask, delimiters=d, think_end_id=49)
        out[f"{name}.cuts"] = (cuts.offsets, cuts.positions, cuts.ends)
        out[f"{name}.segs"] = (segs.offsets, segs.starts, segs.ends)
    rng = np.random.default_rng(1)
    N = len(cuts.positions)
    J = -rng.exponential(1.0, N)
    steps = rc.score_steps(J, cuts.offsets, w=0.3, stability_ema=0.7)
    out["steps"] = (steps.magnitude, steps.stability, steps.score, steps.reward)
    # a score_steps call large enough (N >= 2**16) to run in parallel on its own
    sizes = rng.integers(0, 60, 3000)
    big_offsets = np.concatenate([[0], np.cumsum(sizes)])
    big = rc.score_steps(-rng.exponential(1.0, big_offsets[-1]), big_offsets, w=0.2, stability_ema=0.5)
    out["steps.big"] = (big.magnitude, big.stability, big.score, big.reward)
    B, T = ids.shape
    R = rng.integers(0, 2, B).astype(float)
    groups = np.repeat(np.arange(B // 8), 8)
    values = rng.normal(size=(B, T))
    for est in ESTIMATORS:
        kw = dict(gamma=0.99)
        if est == "ppo":
            kw.update(values=values, lam=0.95)
        adv = rc.compute_advantages(est, R, steps.reward, cuts.offsets, cuts.positions, mask, groups, **kw)
        out[f"adv.{est}"] = (adv.advantages,) if adv.returns is None else (adv.advantages, adv.returns)
    return out


def test_batches_are_large_enough_to_run_in_parallel():
    assert _batch()[0].size >= rc._core.PARALLEL_MIN_ELEMENTS
    assert _big_batch()[0].size >= rc._core.PARALLEL_MIN_ELEMENTS


def test_thread_count_does_not_change_results(monkeypatch):
    ids, mask, ent, _ = _big_batch()
    texts = [["a", "b", ".\n\n", "\n", " ", "x.\n", "\n\nSo"][i % 7] for i in range(50)]
    monkeypatch.delenv("REPRO_NUM_THREADS", raising=False)
    default = _run_everything(ids, mask, ent, texts)
    for n in ("1", "3"):
        monkeypatch.setenv("REPRO_NUM_THREADS", n)
        other = _run_everything(ids, mask, ent, texts)
        assert default.keys() == other.keys()
        for key in default:
            for a, b in zip(default[key], other[key], strict=True):
                assert a.dtype == b.dtype and a.shape == b.shape, key
                assert np.array_equal(a, b), f"{key} differs with REPRO_NUM_THREADS={n}"


@pytest.mark.parametrize("value", ["0", "-1", "-2", "two", "1.5"])
def test_bad_thread_count_is_a_clear_error(monkeypatch, value):
    """Every entry point reads the variable, however small its input, and names it in the error."""
    ids = np.array([[1, 7, 2, 7, 3]])
    mask = np.ones(ids.shape, dtype=bool)
    j, offsets = np.array([-2.0, -1.0, -0.5]), np.array([0, 3])
    calls = {
        "select_cuts": lambda: rc.select_cuts(ids, mask, np.ones(ids.shape), delimiters=[7], k=2),
        "segment_paragraphs": lambda: rc.segment_paragraphs(ids, mask, delimiters=[7]),
        "score_steps": lambda: rc.score_steps(j, offsets),
        "compute_advantages": lambda: rc.compute_advantages(
            "grpo", np.ones(1), np.zeros(3), offsets, np.array([0, 2, 5]), mask, np.zeros(1, np.int64)
        ),
    }
    monkeypatch.setenv("REPRO_NUM_THREADS", value)
    for name, call in calls.items():
        with pytest.raises(rc.ReproError) as info:
            call()
        assert isinstance(info.value, ValueError), name
        assert info.value.argument == "REPRO_NUM_THREADS", (name, str(info.value))
        assert str(info.value).startswith("REPRO_NUM_THREADS: ") and value in str(info.value), name


def _child(queue, batch):
    queue.put(_advantages(*batch))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_uses_its_own_pool():
    batch = _batch()
    expected = _advantages(*batch)  # the parent's pool now exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue, batch))
    child.start()
    result = queue.get(timeout=60)  # a child stuck on the parent's dead pool would hang here
    child.join(timeout=60)
    assert child.exitcode == 0
    assert np.array_equal(result, expected)
