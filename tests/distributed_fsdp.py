"""Run by test_sharded.py under ``torch.distributed.run --nproc_per_node=2`` (gloo, CPU): the TRL
trainers on a policy sharded with FSDP2 through accelerate (``fsdp_config={"version": 2}``).

``python distributed_fsdp.py OUT KIND...`` (KIND: grpo, ppo; each in OUT/KIND, one after the other in the same
processes, which start once): the trainer trains two steps; then each process
generates and scores 4 rows of one group of 8 (its own prompt) with the sharded policy (and, for PPO, the sharded
critic). Rank 0 checks the gathered per-token advantages against the one-process result on the
same rollouts, computed with unsharded copies of the same weights (and J's points with them).

accelerate turns FSDP on only for accelerator devices (CUDA, XPU, ...): on CPU it runs a
``fsdp_plugin`` as plain data parallelism. ``fsdp_on_cpu`` lets its FSDP2 path run over gloo, the
way it runs over NCCL; everything else is accelerate's, TRL's and repro_core's own code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate.state import AcceleratorState, PartialState  # noqa: E402
from accelerate.utils import DistributedType, gather_object  # noqa: E402
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict  # noqa: E402
from torch.distributed.fsdp import FSDPModule  # noqa: E402
from transformers import AutoModelForTokenClassification  # noqa: E402


def fsdp_on_cpu() -> None:
    """accelerate's FSDP state for an FSDP plugin on gloo processes (module docstring)."""
    init = AcceleratorState.__init__

    def with_fsdp(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = with_fsdp


fsdp_on_cpu()

import repro_core as rc  # noqa: E402
import test_trl_grpo as t  # noqa: E402
import tiny  # noqa: E402
from repro_core.pipeline import ReproScorer  # noqa: E402
from repro_core.trl import ReproPPOTrainer  # noqa: E402


def unsharded(model: torch.nn.Module, fresh: torch.nn.Module) -> torch.nn.Module:
    """``fresh`` (a model of the same architecture) with the sharded ``model``'s full weights
    (every rank takes part in the gather)."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    fresh.load_state_dict(state)
    return fresh.eval()


def main(out: str, kind: str) -> None:
    tok = tiny.tokenizer()
    ppo = kind == "ppo"
    trainer = t.make_trainer(
        tok, Path(out), trainer=ReproPPOTrainer if ppo else t.ReproGRPOTrainer, per_device_train_batch_size=4,
        num_generations=8, fsdp=True, fsdp_config={"version": 2}, repro_alpha=0.5,
        **({"lam": 0.9} if ppo else {"repro_estimator": "reinforce_pp_baseline"}),
    )
    rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
    assert world == 2 and trainer.accelerator.distributed_type == DistributedType.FSDP, trainer.accelerator.state
    trainer.train()
    assert trainer.state.global_step == 2
    assert any(isinstance(m, FSDPModule) for m in trainer.model.modules()), "the policy is sharded"
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all(np.isfinite(entry["repro/J_b"]) for entry in logged)

    policy = unsharded(trainer.model, tiny.model(len(tok)))
    critic = None
    if ppo:
        critic = unsharded(trainer.critic, AutoModelForTokenClassification.from_config(trainer.critic.config))
    if ppo:
        trainer.args.kl_coef = 0.0  # the check's token rewards: the outcome only, so the critic decides
    trainer.model.train()
    rows = t.dataset()
    local = [rows[rank]] * 4  # a prompt per process (unequal work), one group of 8 over both
    output = trainer._generate_and_score_completions(local)
    prompts, completions = t.completions_of(output)
    lengths = [len(c) for c in completions]
    advantages = [row[:n] for row, n in zip(output["advantages"].numpy(), lengths, strict=True)]
    values = [row[:n] for row, n in zip(output["old_values"].numpy(), lengths, strict=True)] if ppo else []
    gathered = gather_object([(prompts, completions, advantages, values, [x["answer"] for x in local])])
    if rank != 0:
        return
    prompts = [p for g in gathered for p in g[0]]
    completions = [c for g in gathered for c in g[1]]
    advantages = [a for g in gathered for a in g[2]]
    answers = [a for g in gathered for a in g[4]]
    rewards = trainer._rewards_per_func.sum(1).numpy()  # already over both processes
    assert len(completions) == len(rewards) == 8 and prompts[0] != prompts[4]
    scorer = ReproScorer(policy, tok, trainer.args.repro_settings())
    if ppo:
        evaluation, steps = scorer.evaluate(prompts, completions, answers)
        expected_values = np.zeros(evaluation.mask.shape, dtype=np.float32)
        with torch.no_grad():
            for b, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
                ids = torch.tensor([prompt + completion])
                expected_values[b, : len(completion)] = critic(input_ids=ids).logits[0, len(prompt) - 1 : -1, 0]
        got_values = [v for g in gathered for v in g[3]]
        value_difference = max(float(np.abs(v - e[: len(v)]).max()) for v, e in zip(got_values, expected_values,
                                                                                      strict=True))
        assert value_difference < 1e-5, value_difference
        expected = rc.compute_advantages(
            "ppo", rewards, steps.reward, evaluation.cuts.offsets, evaluation.cuts.positions, evaluation.mask,
            np.zeros(8, dtype=np.int64), alpha=0.5, lam=0.9, values=expected_values,
        ).advantages
    else:
        groups = np.zeros(8, dtype=np.int64)
        expected = scorer.score(prompts, completions, answers, rewards, groups).advantages.advantages
    difference = max(float(np.abs(a - e[: len(a)]).max()) for a, e in zip(advantages, expected, strict=True))
    print(f"{kind}: 2 steps on FSDP2, fixed batch max abs difference {difference:.2e}")
    assert difference < 1e-5, difference


if __name__ == "__main__":
    for kind in sys.argv[2:]:
        main(str(Path(sys.argv[1]) / kind), kind)
