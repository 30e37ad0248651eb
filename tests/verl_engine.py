"""Run by test_verl_trainer.py in a process of its own: repro_sync's advantage step with verl's own
actor worker (``ActorRolloutRefWorker``, FSDP2 engine, fp32) doing ``compute_log_prob`` through
verl's own TransferQueue bridge, on CPU; the advantages must equal the ReproScorer pipeline.

verl 0.9 knows no CPU platform, so this process registers a minimal one (no memory statistics, a
world of one gloo process) and picks the CUDA engine class, which then runs on CPU tensors. It is
a process of its own because it sets verl's platform and torch.distributed for good.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types

os.environ.update(HF_HUB_OFFLINE="1", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                  MASTER_PORT="0", VERL_ENGINE_DEVICE="cuda", VERL_ENGINE_VENDOR="nvidia")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import transfer_queue as tq  # noqa: E402
from verl.plugin.platform.platform_base import PlatformBase  # noqa: E402
from verl.plugin.platform.platform_manager import set_platform  # noqa: E402

import test_verl_trainer as t  # noqa: E402
import tiny  # noqa: E402


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

    def compute_log_prob(self, meta):
        # verl's TransferQueue bridge (on the worker method) reads the rows and writes the outputs.
        self.probe_batches += meta.partition_id == t.PROBE_PARTITION
        return self.worker.compute_log_prob(meta)


def main(out: str) -> None:
    set_platform(CpuPlatform())
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"file://{out}/store")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init()
    try:
        tok = tiny.tokenizer()
        tok.save_pretrained(out)
        model = tiny.model(len(tok))
        model.save_pretrained(out)
        config = t.verl_config(
            out, "repro_reinforce_pp_baseline",
            "actor_rollout_ref.actor.strategy=fsdp2", "actor_rollout_ref.model.use_remove_padding=False",
            "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
            "+actor_rollout_ref.actor.fsdp_config.mixed_precision="
            "{param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
            f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={t.MICRO_BATCH}",
        )
        from verl.workers.engine_workers import ActorRolloutRefWorker

        worker = ActorRolloutRefWorker(config.actor_rollout_ref, role="actor")
        worker.init_model()
        trainer = t.ReproTrainerSync(config)
        trainer._init_tokenizer()
        trainer.global_steps = 1
        trainer.actor_rollout_wg = EngineWorkers(worker)

        rows = t.rollouts(trainer.tokenizer, seed=11)
        batch, metrics = t.advantage_step(trainer, t.put_batch(rows))
        assert trainer.actor_rollout_wg.probe_batches == 1
        expected = t.pipeline(model, trainer.tokenizer, rows, "reinforce_pp_baseline")
        advantages = t.padded(batch, "advantages", [row["key"] for row in rows])
        difference = np.abs(advantages - expected.advantages.advantages[:, : advantages.shape[1]]).max()
        print(f"repro/J_b {metrics['repro/J_b']:.6f} pipeline {expected.j_baseline.mean():.6f}")
        print(f"max abs difference {difference:.2e}")
        assert difference < 2e-5, difference
        # The process part is in: advantages vary along the rows.
        assert any(len(np.unique(row[: len(r["response"])])) > 1 for row, r in zip(advantages, rows, strict=True))
        assert abs(metrics["repro/J_b"] - expected.j_baseline.mean()) < 1e-4
    finally:
        tq.close()
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
