"""Threads: the rayon pool, its environment switch, and fork safety."""

import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

import repro_core as rc


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
    return rc.compute_advantages("grpo", np.arange(len(ids)) % 2, steps.reward, cuts.offsets, cuts.positions, mask, groups).advantages


def test_batch_is_large_enough_to_run_in_parallel():
    ids, _, _ = _batch()
    assert ids.size >= rc._core.PARALLEL_MIN_ELEMENTS


def test_single_thread_switch_gives_identical_results(monkeypatch):
    batch = _batch()
    parallel = _advantages(*batch)
    monkeypatch.setenv("REPRO_NUM_THREADS", "1")
    assert np.array_equal(_advantages(*batch), parallel)


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_thread_count_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("REPRO_NUM_THREADS", value)
    with pytest.raises(rc.ReproError, match="REPRO_NUM_THREADS"):
        _advantages(*_batch())


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


def test_import_does_not_import_torch():
    code = "import sys, repro_core; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
