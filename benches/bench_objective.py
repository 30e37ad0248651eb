"""pytest-benchmark suite for J on CPU: shared-prefix vs per-cut vs one plain forward.

Run from the repository root: ``.venv/bin/python -m pytest benches/bench_objective.py
--benchmark-enable -s`` (without --benchmark-enable every method runs once as a smoke test).

Two models: the tiny random-weight Qwen2 of the test suite (4 rollouts) and the embedded
SmolLM2-135M-Instruct (4 rollouts); completions of 512, 1,024, 1,536 and 2,048 tokens, prompts of
40 to 120, k = 20, reasoning text in paragraphs tokenized by each model's own tokenizer. The
methods are described in ``objective_workload.py``; the conftest prints the ratios at the end.
The per-cut method runs one round on SmolLM2 (about 1.5 min on 2 cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import objective_workload as ow  # noqa: E402

LENGTHS = [512, 1024, 1536, 2048]
ROUNDS = {"tiny": 5, "smollm2": 2}


@pytest.fixture(scope="module", params=["tiny", "smollm2"])
def workload(request):
    if request.param == "tiny":
        tokenizer = ow.tiny.tokenizer()
        model = ow.tiny.model(len(tokenizer))
    else:
        from repro_core.assets import load_default_model

        model, tokenizer = load_default_model()
    workload = ow.build(model, tokenizer, LENGTHS)
    workload.name = request.param
    return workload


def test_shared_equals_per_cut(workload):
    shared = workload.run("shared")
    per_cut = workload.run("per_cut")
    np.testing.assert_allclose(shared, per_cut, atol=1e-4, rtol=0)
    assert np.diff(workload.cuts.offsets).max() == 22  # 0, k = 20 breaks, the end


@pytest.mark.parametrize("method", ow.METHODS)
def test_objective(benchmark, workload, method, objective_report):
    benchmark.group = f"objective {workload.name}"
    slow = method == "per_cut" and workload.name == "smollm2"
    rounds, warmup = (1, 0) if slow else (ROUNDS[workload.name], 1)
    benchmark.pedantic(workload.run, args=(method,), rounds=rounds, iterations=1, warmup_rounds=warmup)
    if not benchmark.disabled:
        objective_report[workload.name][method] = benchmark.stats.stats.min
