"""``objective_mode=fused`` in verl: J inside verl's old-log-prob pass (repro_core/verl/fused.py).

Its settings are checked at start-up (the engines it runs on, Ulysses, verl's fused kernels), it
runs the actor as ``ReproActorWorker`` with a ``ReproTrainingWorker`` inside, and, through verl's own
worker on CPU (``tests/verl_fused.py``, processes of their own), it leaves verl's old log-probs and
entropies bit for bit, picks the controller's cut points, gives the per-cut oracle's J and the
pipeline's advantages, on FSDP1 and FSDP2, with remove-padding and dynamic batch sizes on and off,
on one rank and two."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

pytest.importorskip("torch")
pytest.importorskip("verl")

from repro_core import ReproError  # noqa: E402
from repro_core.verl import ReproActorWorker, ReproTrainerSync  # noqa: E402
from repro_core.verl.check import STRATEGIES, compose, problems  # noqa: E402
from repro_core.verl.fused import ReproTrainingWorker  # noqa: E402
from test_verl_trainer import model_dir, verl_config  # noqa: E402, F401  (model_dir is a fixture)

pytestmark = pytest.mark.filterwarnings("ignore:Disabled critic:UserWarning")
SCRIPT = Path(__file__).with_name("verl_fused.py")
FUSED = "+algorithm.repro.objective_mode=fused"


@pytest.mark.parametrize("strategy", ["fsdp", "fsdp2"])
def test_fused_runs_on_fsdp1_and_fsdp2(model_dir, strategy):  # noqa: F811
    strategy = f"actor_rollout_ref.actor.strategy={strategy}"
    trainer = ReproTrainerSync(verl_config(model_dir, "repro_grpo", FUSED, strategy))
    assert trainer.repro.objective_mode == "fused" and STRATEGIES["fused"] == ("fsdp", "fsdp2")
    trainer._init_resource_pool_mgr()
    actor = [cls for role, cls in trainer.role_worker_mapping.items() if "Actor" in role.name]
    assert len(actor) == 1 and actor[0].__ray_metadata__.class_name == "ReproActorWorker"
    assert ReproActorWorker.actor_worker_cls is ReproTrainingWorker


@pytest.mark.parametrize(("overrides", "match"), [
    (["actor_rollout_ref.actor.strategy=megatron"],
     "actor_rollout_ref.actor.strategy: objective_mode=fused scores J inside verl's fsdp or fsdp2 actor engine, got "
     "'megatron'.*objective_mode=per_cut"),
    (["actor_rollout_ref.actor.ulysses_sequence_parallel_size=2"],
     "actor_rollout_ref.actor.ulysses_sequence_parallel_size: objective_mode=fused .*2 sequence-parallel ranks.*"
     "objective_mode=per_cut"),
    (["actor_rollout_ref.model.use_fused_kernels=True"],
     "actor_rollout_ref.model.use_fused_kernels: objective_mode=fused runs its probe call through the model's own "
     "forward.*objective_mode=shared .*objective_mode=per_cut"),
])
def test_what_fused_cannot_honour_is_refused_at_start_up(model_dir, overrides, match):  # noqa: F811
    with pytest.raises(ReproError, match=match):
        ReproTrainerSync(verl_config(model_dir, "repro_grpo", FUSED, *overrides))


def test_verl_check_knows_each_modes_engines(model_dir):  # noqa: F811
    """repro verl-check: fsdp is fine for fused and per_cut, refused for shared naming fused."""
    base = [f"actor_rollout_ref.model.path={model_dir}", "algorithm.adv_estimator=repro_grpo",
            "trainer.v1.trainer_mode=repro_sync", "actor_rollout_ref.actor.strategy=fsdp",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2"]
    assert not problems(compose([*base, FUSED]))
    assert not problems(compose([*base, "+algorithm.repro.objective_mode=per_cut"]))
    (found,) = problems(compose(base))
    assert found.argument == "actor_rollout_ref.actor.strategy"
    assert "algorithm.repro.objective_mode=fused (fsdp or fsdp2)" in found.message


def run_script(tmp_path, *args: str, timeout: int) -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), *args], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


@pytest.mark.slow
def test_fused_through_verls_own_worker(tmp_path):
    """One rank, seven settings (FSDP1 and FSDP2, remove-padding on and off, dynamic batch size on
    and off, micro-batches that split the groups, LoRA, bf16): verl's outputs unchanged, J =
    per_cut (the merged model's with LoRA, within bf16's noise in bf16)."""
    names = ["fsdp2-rmpad-micro2", "fsdp2-padded-dynamic", "fsdp2-rmpad-dynamic", "fsdp-rmpad-dynamic",
             "fsdp-padded-micro2", "fsdp2-lora", "fsdp2-bf16"]
    out = run_script(tmp_path, *names, timeout=1200)
    for name in names:
        assert f"{name} done" in out and "bit-identical" in out, out[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["fsdp-padded-micro2", "fsdp2-rmpad-dynamic"])
def test_fused_on_two_ranks(tmp_path, setting):
    """Two ranks shard one policy (FSDP1 or FSDP2 over gloo); rank 1 has nothing to score in one
    micro-batch, and makes its one-token call there: both return, J = per_cut."""
    out = run_script(tmp_path, "--ranks", "2", setting, timeout=600)
    assert "rank 0 done" in out and "rank 1 done" in out, out[-2000:]
