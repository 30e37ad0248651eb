"""Two builds of the extension module side by side in one process: the pipeline of bench_pipeline.py
(select_cuts, score_steps, compute_advantages "grpo") on its input, interleaved, minimum over rounds.

For a change to the Rust core, build the commit before it and the change, then compare them::

    git worktree add /tmp/before <commit>
    (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo build --release -p repro-py)
    CARGO_TARGET_DIR=/tmp/after-target cargo build --release -p repro-py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benches/compare_builds.py \\
        /tmp/before-target/release/lib_core.so /tmp/after-target/release/lib_core.so

The outputs must be identical; the ratios are after / before, with 2 threads and with 1.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import inspect
import os
import time
from types import ModuleType

import numpy as np

import repro_core  # noqa: F401  (the package the bindings raise their errors from)
from numpy_pipeline import make_batch, random_j


def load(path: str) -> ModuleType:
    """An extension module built from the repro-py crate, loaded from ``path`` under its own name."""
    loader = importlib.machinery.ExtensionFileLoader("repro_core._core", path)
    spec = importlib.util.spec_from_file_location("repro_core._core", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def pipeline(core: ModuleType, batch, j: np.ndarray):
    """The pipeline through one build, with grpo's default options in the build's own convention:
    one ``options`` mapping, or (builds before it) alpha, gamma, lam and norm_by_std in line."""
    table = core.DelimiterTable.from_ids(np.asarray(batch.delimiters, dtype=np.int64))
    defaults = {"alpha": 0.1, "gamma": 1.0, "lam": 1.0, "norm_by_std": True, "process_std": "group",
                "stats_include_baseline": False, "drop_first_token_reward": False, "critic_target": "gae"}
    in_one_mapping = "options" in inspect.signature(core.compute_advantages).parameters

    def run() -> np.ndarray:
        offsets, positions, _ = core.select_cuts(batch.token_ids, batch.response_mask, batch.entropies, table,
                                                 batch.k, batch.think_end_id)
        rewards = core.score_steps(j, offsets, 0.1, None)[3]
        inputs = ("grpo", batch.outcome_rewards, rewards, offsets, positions, batch.response_mask, batch.group_index)
        if in_one_mapping:
            return core.compute_advantages(*inputs, None, None, defaults)[0]
        return core.compute_advantages(*inputs, 0.1, 1.0, 1.0, True, None, None)[0]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="the extension module built before the change (lib_core.so)")
    parser.add_argument("after", help="the extension module built with the change")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    batch = make_batch()
    cores = {"before": load(args.before), "after": load(args.after)}
    offsets = cores["after"].select_cuts(
        batch.token_ids, batch.response_mask, batch.entropies,
        cores["after"].DelimiterTable.from_ids(np.asarray(batch.delimiters, dtype=np.int64)), batch.k,
        batch.think_end_id)[0]
    j = random_j(int(offsets[-1]))
    runs = {name: pipeline(core, batch, j) for name, core in cores.items()}
    assert np.array_equal(runs["before"](), runs["after"]()), "the two builds give different advantages"
    print(f"{args.before} vs {args.after}: identical advantages")
    for threads in ("2", "1"):
        os.environ["REPRO_NUM_THREADS"] = threads  # read on every call
        best = dict.fromkeys(runs, float("inf"))
        for round_ in range(args.rounds):
            for name in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                start = time.perf_counter()
                runs[name]()
                best[name] = min(best[name], time.perf_counter() - start)
        print(f"{threads} thread(s): before {best['before'] * 1e3:.2f} ms, after {best['after'] * 1e3:.2f} ms, "
              f"after / before {best['after'] / best['before']:.3f}")


if __name__ == "__main__":
    main()
