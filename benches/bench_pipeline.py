"""pytest-benchmark suite: the Rust pipeline against the fastest vectorised NumPy version.

Run from the repository root: ``.venv/bin/python -m pytest benches/ --benchmark-enable -s``
(the project's addopts disable benchmarks: without --benchmark-enable each bench runs once, and
the correctness tests still run).

Input (``numpy_pipeline.make_batch``): 256 completions x 16,384 tokens, int64 ids from a 32k
vocabulary with one of 3 delimiter ids about once per 40 tokens, a think-end id near the end of
half of the rows, right-padded bool mask with varied lengths (most rows long), float32 entropies,
k = 20, 8 completions per group. J at the cut points is the model's job: it is drawn once, outside
every timed region, for the cut layout of this fixed input (cuts are deterministic).

Groups:
- "pipeline": select_cuts + score_steps + compute_advantages("grpo") in Rust (default threads,
  and REPRO_NUM_THREADS=1), the NumPy pipeline (alone, and with the input checks the Rust core
  always makes), and the yardstick (one ``.sum()`` over each input buffer: token_ids,
  response_mask, entropies);
- "rust stages": each Rust stage alone (default threads and 1 thread);
- "estimators": compute_advantages for each estimator (grpo vs ppo, and the others);
- "numpy stages": each NumPy stage alone.
``test_ratios`` times the four "pipeline" callables itself, interleaved, and the conftest prints
the ratios numpy/rust and rust/yardstick at the end of the session.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

import numpy_pipeline as npp
import repro_core as rc

THREADS = "REPRO_NUM_THREADS"


# --------------------------------------------------------------------------------------------
# input, built once


@pytest.fixture(scope="session")
def data():
    batch = npp.make_batch()
    delimiters = rc.Delimiters.from_ids(list(batch.delimiters))  # built once per tokenizer
    cuts = rc.select_cuts(batch.token_ids, batch.response_mask, batch.entropies, delimiters=delimiters, k=batch.k,
                          think_end_id=batch.think_end_id)
    j_values = npp.random_j(cuts.positions.size)
    steps = rc.score_steps(j_values, cuts.offsets)
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(batch.response_mask.shape, dtype=np.float32)
    values = np.where(batch.response_mask, noise, 0).astype(np.float32)
    return SimpleNamespace(batch=batch, delimiters=delimiters, cuts=cuts, j=j_values, steps=steps, values=values)


def rust_pipeline(d):
    b = d.batch
    cuts = rc.select_cuts(b.token_ids, b.response_mask, b.entropies, delimiters=d.delimiters, k=b.k,
                          think_end_id=b.think_end_id)
    steps = rc.score_steps(d.j, cuts.offsets)
    return rc.compute_advantages("grpo", b.outcome_rewards, steps.reward, cuts.offsets, cuts.positions,
                                 b.response_mask, b.group_index)


def numpy_pipeline(d):
    return npp.pipeline(d.batch, d.j)


def numpy_pipeline_checked(d):
    npp.check_inputs(d.batch, d.j)
    return npp.pipeline(d.batch, d.j)


def yardstick(d):
    b = d.batch
    return b.token_ids.sum(), b.response_mask.sum(), b.entropies.sum()


@pytest.fixture
def threads(monkeypatch):
    """Sets REPRO_NUM_THREADS (None: unset, every core) for the test; read by Rust at each call."""

    def set_threads(n):
        if n is None:
            monkeypatch.delenv(THREADS, raising=False)
        else:
            monkeypatch.setenv(THREADS, str(n))

    set_threads(None)
    return set_threads


def record(report, benchmark, key):
    """Keeps the pytest-benchmark minimum for the ratio table (nothing when benchmarks are off)."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not benchmark.disabled:
        report.results["pytest-benchmark"][key] = stats.stats.min


# --------------------------------------------------------------------------------------------
# correctness of the NumPy baseline (plain tests, run once)


def check_same(batch, j_values=None, *, w=0.1, alpha=0.1, norm_by_std=True, stability_ema=None):
    cuts = rc.select_cuts(batch.token_ids, batch.response_mask, batch.entropies, delimiters=list(batch.delimiters),
                          k=batch.k, think_end_id=batch.think_end_id)
    offsets, positions, ends = npp.select_cuts(batch.token_ids, batch.response_mask, batch.entropies,
                                               delimiters=batch.delimiters, k=batch.k, think_end_id=batch.think_end_id)
    np.testing.assert_array_equal(offsets, cuts.offsets)
    np.testing.assert_array_equal(positions, cuts.positions)
    np.testing.assert_array_equal(ends, cuts.ends)
    j_values = npp.random_j(positions.size) if j_values is None else j_values
    steps = rc.score_steps(j_values, cuts.offsets, w=w, stability_ema=stability_ema)
    ours = npp.score_steps(j_values, offsets, w=w, stability_ema=stability_ema)
    for name, value in zip(("magnitude", "stability", "score", "reward"), ours, strict=True):
        np.testing.assert_allclose(value, getattr(steps, name), rtol=0, atol=1e-12, err_msg=name)
    expected = rc.compute_advantages("grpo", batch.outcome_rewards, steps.reward, cuts.offsets, cuts.positions,
                                     batch.response_mask, batch.group_index, alpha=alpha,
                                     norm_by_std=norm_by_std).advantages
    for fn in (npp.compute_advantages_grpo, npp.compute_advantages_grpo_dense):
        advantages = fn(batch.outcome_rewards, ours[3], offsets, positions, batch.response_mask, batch.group_index,
                        alpha=alpha, norm_by_std=norm_by_std)
        assert advantages.dtype == np.float32 and advantages.shape == batch.response_mask.shape
        np.testing.assert_allclose(advantages, expected, rtol=0, atol=1e-5, err_msg=fn.__name__)
    if w == 0.1 and alpha == 0.1 and norm_by_std and stability_ema is None:
        got_offsets, got_positions, got_advantages = npp.pipeline(batch, j_values)
        np.testing.assert_array_equal(got_positions, cuts.positions)
        np.testing.assert_allclose(got_advantages, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_pipeline_matches_rust(seed):
    """Small batches with the edge cases (empty and tiny rows, ties, think-end first, NaN padding)."""
    batch = npp.make_batch(48, 1024, seed=seed, edge_cases=True)
    check_same(batch)
    check_same(batch, w=0.0, alpha=-0.5, norm_by_std=False, stability_ema=0.3)
    for k in (0, 1, 3, 100):
        check_same(npp.Batch(**{**batch.__dict__, "k": k}))
    check_same(npp.Batch(**{**batch.__dict__, "think_end_id": None}))
    both = (*batch.delimiters, batch.think_end_id)  # think-end also a delimiter
    check_same(npp.Batch(**{**batch.__dict__, "delimiters": both}))


def test_numpy_pipeline_matches_rust_full_batch(data):
    """The bench input itself, once."""
    check_same(data.batch, data.j)
    npp.check_inputs(data.batch, data.j)


def test_numpy_input_checks():
    batch = npp.make_batch(16, 256, edge_cases=True)  # NaN in the padding is fine
    npp.check_inputs(batch, np.array([-1.0, 0.0]))
    batch.entropies[9, 3] = np.inf
    with pytest.raises(ValueError, match="entropies"):
        npp.check_inputs(batch, np.array([-1.0]))
    batch.entropies[9, 3] = 0.5
    batch.response_mask[4, -1] = True  # row 4 has length T // 3
    with pytest.raises(ValueError, match="right-padded"):
        npp.check_inputs(batch, np.array([-1.0]))
    batch.response_mask[4, -1] = False
    with pytest.raises(ValueError, match="j_values"):
        npp.check_inputs(batch, np.array([0.5]))


def test_numpy_worked_example():
    """docs/method.md, "Worked example", through the NumPy pipeline."""
    pad = 0
    ids = np.array([[5, 7, 3, 4, 7, 6, 7, 8, 9, 2, 2, pad], [3, 3, 7, 5, 9, 4, pad, pad, pad, pad, pad, pad]])
    mask = np.arange(12)[None, :] < np.array([[11], [6]])
    ent = np.array([[0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.1, 0.8, 0.2, 0.1, 0.1, 0],
                    [0.3, 0.2, 0.1, 0.7, 0.5, 0.1, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    batch = npp.Batch(ids, mask, ent, np.array([1.0, 0.0]), np.array([0, 0]), (7,), 9, 2)
    offsets, positions, advantages = npp.pipeline(batch, np.array([-2.0, -1.5, -1.8, -1.0, -2.5, -2.6, -2.0]))
    np.testing.assert_array_equal(positions, [0, 2, 7, 9, 0, 3, 5])
    a, b, c, d = 0.709989, 0.584755, 0.737307, 0.707106
    e, f, g = -0.709989, -0.716539, -0.707106
    expected = [[a, a, b, b, b, b, b, c, c, d, d, 0], [e, e, e, f, f, g, 0, 0, 0, 0, 0, 0]]
    np.testing.assert_allclose(advantages, expected, atol=1e-6)


# --------------------------------------------------------------------------------------------
# group "pipeline"


@pytest.mark.benchmark(group="pipeline")
def test_rust_pipeline(benchmark, data, threads, report):
    benchmark(rust_pipeline, data)
    record(report, benchmark, "rust")


@pytest.mark.benchmark(group="pipeline")
def test_rust_pipeline_1_thread(benchmark, data, threads, report):
    threads(1)
    benchmark(rust_pipeline, data)
    record(report, benchmark, "rust_1")


@pytest.mark.benchmark(group="pipeline")
def test_numpy_pipeline(benchmark, data, report):
    benchmark(numpy_pipeline, data)
    record(report, benchmark, "numpy")


@pytest.mark.benchmark(group="pipeline")
def test_numpy_pipeline_with_input_checks(benchmark, data, report):
    """The NumPy pipeline plus the input checks the Rust core makes (mask, finiteness, J <= 0)."""
    benchmark(numpy_pipeline_checked, data)
    record(report, benchmark, "numpy_checked")


@pytest.mark.benchmark(group="pipeline")
def test_yardstick_sum(benchmark, data, report):
    benchmark(yardstick, data)
    record(report, benchmark, "yardstick")


def test_ratios(data, threads, request, report):
    """The four "pipeline" callables timed here, interleaved round by round (minimum of each)."""
    if request.config.getoption("benchmark_disable", False):
        rounds = 3
    else:
        rounds = 30
    callables = {
        "rust": (rust_pipeline, None),
        "rust_1": (rust_pipeline, 1),
        "numpy": (numpy_pipeline, None),
        "numpy_checked": (numpy_pipeline_checked, None),
        "yardstick": (yardstick, None),
    }
    best = dict.fromkeys(callables, float("inf"))
    for fn, n in callables.values():  # warm-up
        threads(n)
        fn(data)
    for _ in range(rounds):
        for key, (fn, n) in callables.items():
            threads(n)
            start = time.perf_counter()
            fn(data)
            best[key] = min(best[key], time.perf_counter() - start)
    threads(None)
    report.results["interleaved"].update(best)
    print()
    print("\n".join(report.table(best)))


# --------------------------------------------------------------------------------------------
# each stage alone


@pytest.mark.benchmark(group="rust stages")
@pytest.mark.parametrize("n_threads", [None, 1], ids=["default threads", "1 thread"])
@pytest.mark.parametrize("stage", ["select_cuts", "score_steps", "compute_advantages"])
def test_rust_stage(benchmark, data, threads, stage, n_threads):
    threads(n_threads)
    b = data.batch
    if stage == "select_cuts":
        benchmark(rc.select_cuts, b.token_ids, b.response_mask, b.entropies, delimiters=data.delimiters, k=b.k,
                  think_end_id=b.think_end_id)
    elif stage == "score_steps":
        benchmark(rc.score_steps, data.j, data.cuts.offsets)
    else:
        benchmark(rc.compute_advantages, "grpo", b.outcome_rewards, data.steps.reward, data.cuts.offsets,
                  data.cuts.positions, b.response_mask, b.group_index)


@pytest.mark.benchmark(group="estimators")
@pytest.mark.parametrize("estimator", ["grpo", "ppo", "dr_grpo", "reinforce_pp", "reinforce_pp_baseline"])
def test_rust_estimator(benchmark, data, threads, estimator):
    b = data.batch
    extra = {"values": data.values} if estimator == "ppo" else {}
    benchmark(rc.compute_advantages, estimator, b.outcome_rewards, data.steps.reward, data.cuts.offsets,
              data.cuts.positions, b.response_mask, b.group_index, **extra)


@pytest.mark.benchmark(group="numpy stages")
@pytest.mark.parametrize("stage", ["select_cuts", "score_steps", "compute_advantages", "compute_advantages_dense"])
def test_numpy_stage(benchmark, data, stage):
    b = data.batch
    if stage == "select_cuts":
        benchmark(npp.select_cuts, b.token_ids, b.response_mask, b.entropies, delimiters=b.delimiters, k=b.k,
                  think_end_id=b.think_end_id)
    elif stage == "score_steps":
        benchmark(npp.score_steps, data.j, data.cuts.offsets)
    else:
        fn = npp.compute_advantages_grpo if stage == "compute_advantages" else npp.compute_advantages_grpo_dense
        benchmark(fn, b.outcome_rewards, data.steps.reward, data.cuts.offsets, data.cuts.positions, b.response_mask,
                  b.group_index)
