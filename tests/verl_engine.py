"""Run by test_verl_trainer.py in processes of their own: RePro's J through verl's own actor worker
(``ReproActorWorker``: verl's ``ActorRolloutRefWorker``, FSDP2 engine, fp32) on CPU.

- ``verl_engine.py OUT``: repro_sync's advantage step, one rank, through verl's own TransferQueue
  bridge, on a batch with verl's padding rows: the old log-probs, J in both objective modes
  (``compute_repro_objective`` and the per-cut probe rows through ``compute_log_prob``), which
  agree within 1e-4, and advantages equal to the ReproScorer pipeline.
- ``verl_engine.py OUT --ranks 2``: two ranks sharding one policy (FSDP2 over gloo), one holding
  many long rows and a small token budget (many decoder calls), the other one short row, then
  none: ``compute_repro_objective`` returns on both (the ranks' decoder calls are padded to the
  same number) with J equal to the per-cut oracle on the unsharded model; so does
  ``ObjectiveScorer.evaluate`` (entropies, cuts and J), which TRL's trainers call.

- ``verl_engine.py OUT --ranks 2 --setting NAME``: the same two ranks under one setting of
  verl's that J must survive, each rank scoring its own rows through
  ``compute_repro_objective``: ``lora`` (``model.lora_rank``, the adapters' weights made non-zero;
  J equals the per-cut oracle on the merged model) and ``bf16`` (verl's default mixed precision,
  bf16 parameters in compute: J is finite and within bf16's noise of the float32 oracle). verl's
  ``offload_policy`` pins memory, which needs CUDA: ``offload_fsdp.py`` holds FSDP2's offload.

verl 0.9 knows no CPU platform, so each process registers a minimal one (no memory statistics,
gloo) and picks the CUDA engine class, which then runs on CPU tensors. They are processes of their
own because they set verl's platform and torch.distributed for good.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Sequence

os.environ.update(HF_HUB_OFFLINE="1", VERL_ENGINE_DEVICE="cuda", VERL_ENGINE_VENDOR="nvidia")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import transfer_queue as tq  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from verl.plugin.platform.platform_base import PlatformBase  # noqa: E402
from verl.plugin.platform.platform_manager import set_platform  # noqa: E402
from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size  # noqa: E402
from verl.utils.tensordict_utils import assign_non_tensor, list_of_dict_to_tensordict  # noqa: E402

import test_verl_trainer as t  # noqa: E402
import tiny  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core.config import ReproConfig  # noqa: E402
from repro_core.objective import AnswerTokens, ObjectiveScorer  # noqa: E402
from repro_core.pipeline import cut_selector  # noqa: E402
from repro_core.verl.worker import ReproActorWorker  # noqa: E402


class _CpuDeviceModule(types.ModuleType):
    """``torch.cpu`` plus the memory queries verl makes of a device module (all zero)."""

    def __getattr__(self, name):
        if name == "mem_get_info":
            return lambda *args, **kwargs: (1 << 34, 1 << 34)
        if hasattr(torch.cpu, name):
            return getattr(torch.cpu, name)
        return lambda *args, **kwargs: 0


class CpuPlatform(PlatformBase):
    device_name = property(lambda self: "cpu")
    vendor_name = property(lambda self: "cpu")
    device_module = property(lambda self: _CpuDeviceModule("cpu_device"))

    def is_available(self): return True
    def current_device(self): return torch.device("cpu")
    def device_count(self): return 1
    def set_device(self, device_index): pass
    def synchronize(self, device_index=None): pass
    def manual_seed(self, seed): torch.manual_seed(seed)
    def manual_seed_all(self, seed): torch.manual_seed(seed)
    def set_allocator_settings(self, settings): pass
    def empty_cache(self): pass
    def get_device_capability(self, device_index=0): return (None, None)
    def communication_backend_name(self): return "gloo"
    def visible_devices_envvar(self): return "CPU_VISIBLE_DEVICES"
    @contextlib.contextmanager
    def nvtx_range(self, msg): yield
    def profiler_start(self): pass
    def profiler_stop(self): pass
    def ray_resource_name(self): return "CPU"
    def ray_noset_envvars(self): return []
    def is_ipc_supported(self): return False
    def cudart(self): return None


class EngineWorkers:
    """One in-process verl actor worker as the trainer's worker group (one data-parallel rank)."""

    def __init__(self, worker) -> None:
        self.worker = worker
        self._dispatch_info = {"actor": [0]}
        self.probe_batches = 0
        self.objective_batches = 0

    def compute_log_prob(self, meta):
        # verl's TransferQueue bridge (on the worker method) reads the rows and writes the outputs.
        self.probe_batches += meta.partition_id == t.PROBE_PARTITION
        return self.worker.compute_log_prob(meta)

    def compute_repro_objective(self, probes, rollouts):
        self.objective_batches += 1
        return self.worker.compute_repro_objective(probes, rollouts)


def init(out: str, rank: int, world: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT="0")
    set_platform(CpuPlatform())
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"file://{out}/store")


FP32 = "+actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}"
#: The settings of ``--setting``: verl overrides in place of float32 compute.
SETTINGS = {
    "lora": [FP32, "actor_rollout_ref.model.lora_rank=4"],
    "bf16": [],  # verl's default mixed precision: bf16 parameters in compute, float32 reductions
}


def engine_config(out: str, settings: Sequence[str] = (FP32,)):
    return t.verl_config(
        out, "repro_reinforce_pp_baseline", "actor_rollout_ref.model.use_remove_padding=False",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={t.MICRO_BATCH}", *settings,
    )


def save_model(out: str):
    tok = tiny.tokenizer()
    tok.save_pretrained(out)
    model = tiny.model(len(tok))
    model.save_pretrained(out)
    return tok, model


def main(out: str) -> None:
    init(out, 0, 1)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init()
    try:
        _, model = save_model(out)
        config = engine_config(out)
        worker = ReproActorWorker(config.actor_rollout_ref, role="actor")
        worker.init_model()
        trainer = t.ReproTrainerSync(config)
        trainer._init_tokenizer()
        trainer.global_steps = 1
        trainer.actor_rollout_wg = EngineWorkers(worker)

        rows = t.rollouts(trainer.tokenizer, seed=11)
        rows[0]["response"] = rows[0]["response"] * 3  # uneven lengths
        # verl's own padding rows, as it adds them for a batch multiple: two here (6 rows -> 8).
        padded = upsample_batch_to_divisible_size(t.put_batch(rows), 8, trainer.tokenizer.eos_token_id)
        assert sum(tag.get("is_padding", False) for tag in padded.tags) == 2
        batch, metrics = t.advantage_step(trainer, padded)
        assert trainer.actor_rollout_wg.objective_batches == 1 and trainer.actor_rollout_wg.probe_batches == 0
        expected = t.pipeline(model, trainer.tokenizer, rows, "reinforce_pp_baseline")
        advantages = t.padded(batch, "advantages", [row["key"] for row in rows])
        difference = np.abs(advantages - expected.advantages.advantages[:, : advantages.shape[1]]).max()
        print(f"repro/J_b {metrics['repro/J_b']:.6f} pipeline {expected.j_baseline.mean():.6f}")
        print(f"max abs difference {difference:.2e}")
        assert difference < 2e-5, difference
        # The process part is in: advantages vary along the rows.
        assert any(len(np.unique(row[: len(r["response"])])) > 1 for row, r in zip(advantages, rows, strict=True))
        assert abs(metrics["repro/J_b"] - expected.j_baseline.mean()) < 1e-4

        # Both paths on the same rollouts, through verl's worker: J agrees point by point.
        read = trainer._rollouts(batch)
        shared, _ = trainer._objective_shared(batch, read.real, read.prompts, read.answers, read.cuts)
        per_cut, _ = trainer._objective_per_cut(read.prompts, read.completions, read.answers, read.cuts)
        assert trainer.actor_rollout_wg.probe_batches == 1
        j_difference = np.abs(shared - per_cut).max()
        print(f"J points {len(shared)} shared - per_cut max abs {j_difference:.2e}")
        assert len(shared) == len(read.cuts.positions) and j_difference < 1e-4, j_difference
    finally:
        tq.close()
        ray.shutdown()


def shard(rows: list[dict], answer, budget: int):
    """One rank's probes and rollouts as verl's TransferQueue bridge hands them to the worker."""
    most = max([1, *(len(row["cuts"]) for row in rows)])
    probes = list_of_dict_to_tensordict([{
        "repro_cuts": torch.tensor(row["cuts"] + [0] * (most - len(row["cuts"]))),
        "repro_num_cuts": torch.tensor(len(row["cuts"])),
        "repro_answer": torch.tensor(answer.ids),
        "repro_answer_span": torch.tensor([len(answer.ids), answer.start, answer.stop]),
    } for row in rows])
    assign_non_tensor(probes, temperature=1.0, max_batch_tokens=budget)
    rollouts = list_of_dict_to_tensordict([
        {"prompts": torch.tensor(row["prompt"]), "responses": torch.tensor(row["response"])} for row in rows
    ])
    return probes, rollouts


def rank_main(rank: int, out: str) -> None:
    init(out, rank, 2)
    tok = tiny.tokenizer()
    worker = ReproActorWorker(engine_config(out).actor_rollout_ref, role="actor")
    worker.init_model()
    oracle = ObjectiveScorer(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32), tok, mode="per_cut")
    answer = AnswerTokens(tok, ReproConfig().answer_template)(t.ANSWER, 0)
    rows = t.rollouts(tok, prompts=2, seed=5)
    for row in rows:
        row["cuts"] = list(range(0, len(row["response"]) + 1, 3))
    # Rank 0: six rows and a budget of 64 tokens (dozens of decoder calls); rank 1: one short row
    # with one cut point, then only a row without cut points (no call of its own).
    rounds = [rows, rows] if rank == 0 else [[dict(rows[1], cuts=[2])], [dict(rows[1], cuts=[])]]
    for mine in rounds:
        probes, rollouts = shard(mine, answer, budget=64)
        j = worker.compute_repro_objective(probes, rollouts)["repro_j"]
        scored = [i for i, row in enumerate(mine) if row["cuts"]]
        if scored:
            expected = oracle.score(
                [mine[i]["prompt"] for i in scored], [mine[i]["response"] for i in scored], [t.ANSWER] * len(scored),
                np.cumsum([0, *(len(mine[i]["cuts"]) for i in scored)]),
                np.concatenate([mine[i]["cuts"] for i in scored]),
            )
            got = np.concatenate([j[i, : len(mine[i]["cuts"])].numpy() for i in scored])
            print(f"rank {rank}: {len(got)} points, max abs difference {np.abs(got - expected).max():.2e}")
            assert np.abs(got - expected).max() < 1e-4
        else:
            assert not j.any()
            print(f"rank {rank}: no points")
    # evaluate() (entropies, cut points and J in one pass) keeps the ranks in step chunk by chunk,
    # rank 1 with one chunk against rank 0's many; per_cut, which cannot, refuses a sharded policy.
    mine = rows if rank == 0 else rows[:1]
    prompts, responses = [row["prompt"] for row in mine], [row["response"] for row in mine]
    select = cut_selector(tok, ReproConfig(k=3))
    sharded = ObjectiveScorer(worker.actor.engine.module, tok, max_batch_tokens=64)
    got = sharded.evaluate(prompts, responses, [t.ANSWER] * len(mine), select)
    want = ObjectiveScorer(oracle.model, tok, max_batch_tokens=64).evaluate(prompts, responses, [t.ANSWER] * len(mine),
                                                                           select)
    assert np.abs(got.entropies - want.entropies).max() < 1e-5
    assert np.array_equal(got.cuts.positions, want.cuts.positions) and np.abs(got.j - want.j).max() < 1e-4
    print(f"rank {rank}: evaluate on {len(mine)} rows equals the unsharded model's")
    try:
        ObjectiveScorer(worker.actor.engine.module, tok, mode="per_cut").entropies(prompts, responses)
    except ReproError as error:
        assert error.argument == "mode" and "FSDP2" in error.message
    else:
        raise AssertionError("per_cut ran on a sharded policy")
    dist.barrier()
    print(f"rank {rank} done")


def setting_main(rank: int, out: str, setting: str) -> None:
    """One rank of two under ``SETTINGS[setting]``: J of its rows through compute_repro_objective
    against the per-cut oracle on the unsharded (for lora: merged) model."""
    init(out, rank, 2)
    tok = tiny.tokenizer()
    worker = ReproActorWorker(engine_config(out, SETTINGS[setting]).actor_rollout_ref, role="actor")
    worker.init_model()
    module = worker.actor.engine.module
    oracle = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    if setting == "lora":
        oracle = merged_lora_oracle(module, oracle)
    rows = t.rollouts(tok, prompts=2, seed=9)[rank * 3 : rank * 3 + 3 - rank]  # 3 rows, 2 rows
    for row in rows:
        row["cuts"] = list(range(0, len(row["response"]) + 1, 4))
    answer = AnswerTokens(tok, ReproConfig().answer_template)(t.ANSWER, 0)
    probes, rollouts = shard(rows, answer, budget=128)
    j = worker.compute_repro_objective(probes, rollouts)["repro_j"]
    got = np.concatenate([j[i, : len(row["cuts"])].numpy() for i, row in enumerate(rows)])
    expected = ObjectiveScorer(oracle, tok, mode="per_cut").score(
        [row["prompt"] for row in rows], [row["response"] for row in rows], [t.ANSWER] * len(rows),
        np.cumsum([0, *(len(row["cuts"]) for row in rows)]), np.concatenate([row["cuts"] for row in rows]),
    )
    difference = np.abs(got - expected).max()
    print(f"rank {rank} {setting}: {len(got)} points, finite {np.isfinite(got).all()}, "
          f"max abs difference {difference:.2e}")
    assert np.isfinite(got).all() and difference < (0.1 if setting == "bf16" else 1e-4), difference
    dist.barrier()
    print(f"rank {rank} done")


def merged_lora_oracle(module, base):
    """The policy's LoRA adapters given non-zero weights (the same on every rank), and a plain
    model with those adapters merged into its weights."""
    import peft
    from torch.distributed.tensor import DTensor, distribute_tensor

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if "lora_B" in name:
                full = torch.randn(parameter.shape, generator=generator) * 0.5
                parameter.to_local().copy_(distribute_tensor(full, parameter.device_mesh,
                                                             parameter.placements).to_local())
    state = {name: value.full_tensor() if isinstance(value, DTensor) else value
             for name, value in module.state_dict().items()}
    merged = peft.get_peft_model(base, module.peft_config["default"])
    missing, unexpected = merged.load_state_dict(state, strict=False)
    assert not unexpected and not [name for name in missing if "lora" in name], (missing, unexpected)
    return merged.merge_and_unload()


if __name__ == "__main__":
    if "--setting" in sys.argv:
        save_model(sys.argv[1])
        setting = sys.argv[sys.argv.index("--setting") + 1]
        torch.multiprocessing.spawn(setting_main, args=(sys.argv[1], setting), nprocs=2)
    elif "--ranks" in sys.argv:
        save_model(sys.argv[1])
        torch.multiprocessing.spawn(rank_main, args=(sys.argv[1],), nprocs=2)
    else:
        main(sys.argv[1])
