"""Run by test_trl_grpo.py under ``torch.distributed.run --nproc_per_node=2`` (gloo, CPU).

Each process generates and scores its 4 rows of one group of 8; rank 0 gathers the completions,
rewards and advantages and checks them against the one-process pipeline on the whole batch, and
so the trainer's stitched batch: its cuts (``Cuts.concat`` of the processes' parts) and the
per-point arrays in their layout.
"""

from __future__ import annotations

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from accelerate.utils import gather_object  # noqa: E402

import test_trl_grpo as t  # noqa: E402
import tiny  # noqa: E402
from repro_core.pipeline import ReproScorer  # noqa: E402


def main(out: str) -> None:
    tok = tiny.tokenizer()
    trainer = t.make_trainer(tok, __import__("pathlib").Path(out), per_device_train_batch_size=4, num_generations=8,
                             repro_estimator="reinforce_pp_baseline", repro_alpha=0.5)
    rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
    assert world == 2, world
    rows = t.dataset()
    trainer.model.train()
    local = [rows[0]] * 4  # one prompt, 8 completions: 4 here, 4 on the other process
    stitched: dict = {}
    batch_advantages = trainer._batch_advantages

    def keep_batch(batch: dict) -> dict:
        stitched.update(batch)
        return batch_advantages(batch)

    trainer._batch_advantages = keep_batch
    output = trainer._generate_and_score_completions(local)
    prompts, completions = t.completions_of(output)
    gathered = gather_object([(prompts, completions, output["advantages"].numpy())])
    if rank != 0:
        return
    prompts = [p for g in gathered for p in g[0]]
    completions = [c for g in gathered for c in g[1]]
    advantages = [a for g in gathered for a in g[2]]
    rewards = trainer._rewards_per_func.sum(1).numpy()  # already over both processes
    assert len(completions) == len(rewards) == 8
    assert completions[:4] != completions[4:], "the processes sampled different completions"
    result = ReproScorer(trainer.model, tok, trainer.args.repro_settings()).score(
        prompts, completions, [rows[0]["answer"]] * 8, rewards, np.zeros(8, dtype=np.int64)
    )
    cuts = stitched["cuts"]
    assert len(cuts) == 8 and np.diff(cuts.offsets)[:4].sum() < len(cuts.positions), "both processes' cut points"
    for name in ("offsets", "positions", "ends"):
        np.testing.assert_array_equal(getattr(cuts, name), getattr(result.cuts, name), err_msg=name)
    np.testing.assert_allclose(stitched["j"], result.j, atol=1e-4, rtol=0)
    np.testing.assert_allclose(stitched["step_rewards"], result.steps.reward, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(stitched["lengths"], [len(c) for c in completions])
    np.testing.assert_allclose(stitched["outcome_rewards"], rewards, atol=1e-6)
    expected = result.advantages.advantages
    width = expected.shape[1]
    difference = max(float(np.abs(a[:width] - e).max()) for a, e in zip(advantages, expected, strict=True))
    print(f"max abs difference {difference:.2e}")
    assert difference < 1e-5, difference


if __name__ == "__main__":
    main(sys.argv[1])
