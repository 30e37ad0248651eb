"""What repro_sync's advantage step costs the verl controller and the actor workers, in the ways of
computing J (``objective_mode=per_cut``, ``shared`` and ``fused``), against verl's own advantage step
and old-log-prob pass.

Run from the repository root (about a minute on the 2-vCPU VM of benches/README.md)::

    .venv/bin/python -m pytest benches/bench_verl.py --benchmark-enable -s --json verl.json

Without --benchmark-enable each step runs once as a smoke test; ``--json FILE`` (an option of
benches/conftest.py) writes, for each path, ``worker_tokens_ratio``, ``controller_ratio`` and
``j_max_abs_diff``, with the times behind them.

A local Ray with a real TransferQueue, on CPU. The batch: 16 prompts x 8 responses of 1,024 to
4,096 tokens after 256-token prompts, a paragraph break about every 40 tokens, k = 20. The actor
workers' forward passes are not timed: a stand-in (``ZeroWorkers``) writes zero log-probs (and
random entropies for the old-log-prob pass), or for the shared path reads each rank's probe fields,
prompts and responses and writes zero J; its own time is subtracted. What remains is what the
controller process spends: reading the rollouts, selecting cuts, moving the probes (per_cut: one
probe row per cut point; shared: cut points and answer ids per batch row) through the TransferQueue
and J back, the scores, and verl's own advantage step. The baseline is verl's own advantage step
with its ``grpo`` estimator on the same batch.

- ``worker_tokens_ratio``: the trainer's ``repro/objective_token_ratio``, the tokens the workers
  forward for J over the tokens of the old-log-prob pass (per_cut: the probe rows as padded to the
  ranks; shared: each row's prompt and prefix up to its last cut, and one answer per cut point).
- ``controller_ratio``: the controller's advantage step over verl's grpo step (minima of 10 rounds,
  3 for per_cut).
- ``j_max_abs_diff``: max |J shared - J per_cut| over the cut points, both paths through the
  trainer's own ``_objective_shared`` and ``_objective_per_cut`` with a real model (``tiny.model``,
  tests/test_verl_trainer.py's ``TinyActorWorkers`` on 4 ranks) on a subset of the batch: the first
  prompt's 8 responses, the same generator and lengths (1,024 to 4,096 tokens, 176 cut points),
  with the model's own entropies from an old-log-prob pass.

The workers' time: ``benches/gpu_verl_worker.py`` on CPU, in a process of its own, runs verl's own
actor worker (``ReproActorWorker``, FSDP2, float32, one rank, one thread) with the embedded
SmolLM2-135M on 4 rollouts of 1,024 response tokens (k = 20): verl's ``compute_log_prob`` with
entropies, the same call with J inside (``fused``), and the shared path's ``compute_repro_objective``,
in turns, best of 3 rounds of process CPU time. It gives ``worker_time_ratio`` (fused: the fused
call over the plain one; shared: the plain call plus J's call over the plain one), ``fused``'s
``worker_tokens_ratio`` (the probe calls' tokens, padding counted, over the pass's) and its
``j_max_abs_diff`` (against the per-cut oracle on the first rollout's 22 cut points). Without
--benchmark-enable it runs on a 2-layer random model (a smoke test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verl")

import ray  # noqa: E402
import transfer_queue as tq  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from transfer_queue import KVBatchMeta  # noqa: E402
from verl.trainer.ppo.v1 import get_trainer_cls  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import tiny  # noqa: E402
from repro_core.verl.worker import CUTS_FIELD, J_FIELD  # noqa: E402
from test_verl_trainer import TinyActorWorkers  # noqa: E402

PROMPTS, GROUP, PROMPT_LENGTH, K = 16, 8, 256, 20
DP_SIZE = 4
#: Rounds of each step under --benchmark-enable (minimum taken): per_cut's step is some 30 times the others'.
ROUNDS = {"sync": 10, "per_cut": 3, "shared": 10}
#: The rows of the J check: the first prompt's responses.
J_ROWS = GROUP

pytestmark = pytest.mark.filterwarnings("ignore:Disabled critic:UserWarning")


class ZeroWorkers:
    """The actor worker group with no model, on ``DP_SIZE`` ranks: zero log-probs and random
    entropies, or zero J per cut point, written to the TransferQueue as verl's workers write them
    (after the reads they make); ``seconds`` is its own time, subtracted."""

    def __init__(self) -> None:
        self._dispatch_info = {"actor": list(range(DP_SIZE))}
        self.seconds = 0.0
        self.rng = torch.Generator().manual_seed(0)

    def compute_log_prob(self, meta: KVBatchMeta) -> KVBatchMeta:
        start = time.perf_counter()
        lengths = [tag["seq_len"] for tag in meta.tags]
        fields = {"log_probs": torch.nested.as_nested_tensor([torch.zeros(n) for n in lengths], layout=torch.jagged)}
        if meta.extra_info.get("calculate_entropy"):
            fields["entropy"] = torch.nested.as_nested_tensor(
                [torch.rand(n, generator=self.rng) * 3 for n in lengths], layout=torch.jagged
            )
        tq.kv_batch_put(keys=meta.keys, partition_id=meta.partition_id,
                        fields=TensorDict(fields, batch_size=len(meta.keys)))
        self.seconds += time.perf_counter() - start
        return meta

    def compute_repro_objective(self, probes: KVBatchMeta, rollouts: KVBatchMeta) -> KVBatchMeta:
        """What each rank of ``ReproActorWorker`` reads and writes, without the model: its shard's
        probe fields, prompts and responses in; J of the cut points' shape, zeros, out."""
        start = time.perf_counter()
        for probe_shard, rollout_shard in zip(probes.chunk(DP_SIZE), rollouts.chunk(DP_SIZE), strict=True):
            data = tq.kv_batch_get(keys=probe_shard.keys, partition_id=probe_shard.partition_id,
                                   select_fields=probes.fields)
            tq.kv_batch_get(keys=rollout_shard.keys, partition_id=rollout_shard.partition_id,
                            select_fields=rollouts.fields)
            width = max([1, *(len(row) for row in data[CUTS_FIELD].unbind())])
            j = torch.zeros(len(probe_shard.keys), width, dtype=torch.float64)
            tq.kv_batch_put(keys=probe_shard.keys, partition_id=probe_shard.partition_id,
                            fields=TensorDict({J_FIELD: j}, batch_size=len(probe_shard.keys)))
        self.seconds += time.perf_counter() - start
        return probes


def make_rows(tok, delimiter: int) -> tuple[list[dict], list[str], list[dict]]:
    rng = np.random.default_rng(0)
    rows, keys, tags = [], [], []
    for prompt in range(PROMPTS):
        prompt_ids = torch.from_numpy(rng.integers(10, len(tok), PROMPT_LENGTH))
        for session in range(GROUP):
            length = int(rng.integers(1024, 4097))
            response = rng.integers(10, len(tok), length)
            response[rng.random(length) < 1 / 40] = delimiter
            response = torch.from_numpy(response)
            input_ids = torch.cat([prompt_ids, response])
            scores = torch.zeros(length)
            scores[-1] = float(rng.random() < 0.5)
            rows.append(dict(
                prompts=prompt_ids, responses=response, input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                position_ids=torch.arange(len(input_ids)), response_mask=torch.ones_like(response),
                loss_mask=torch.ones_like(response), rm_scores=scores, multi_modal_inputs={}, uid=f"p{prompt}",
                reward_model={"ground_truth": str(prompt)},
            ))
            keys.append(f"p{prompt}_{session}_0")
            tags.append(dict(prompt_len=PROMPT_LENGTH, response_len=length, seq_len=len(input_ids)))
    return rows, keys, tags


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init()
    tok = tiny.tokenizer()
    path = tmp_path_factory.mktemp("tiny")
    model = tiny.model(len(tok))
    tok.save_pretrained(path)
    model.save_pretrained(path)
    delimiter = tok("\n\n", add_special_tokens=False)["input_ids"][0]

    def trainer(mode: str, estimator: str, objective_mode: str | None = None):
        repro = [] if objective_mode is None else [
            f"+algorithm.repro.objective_mode={objective_mode}", "actor_rollout_ref.actor.strategy=fsdp2"]
        with initialize_config_module(config_module="verl.trainer.config", version_base=None):
            config = compose(config_name="ppo_trainer", overrides=[
                f"trainer.v1.trainer_mode={mode}", f"algorithm.adv_estimator={estimator}",
                f"+algorithm.repro.k={K}", f"+algorithm.repro.delimiters=[{delimiter}]",
                f"actor_rollout_ref.rollout.n={GROUP}", f"actor_rollout_ref.model.path={path}",
                "actor_rollout_ref.rollout.calculate_log_probs=False", "trainer.device=cpu", *repro,
            ])
        made = get_trainer_cls(mode)(config)
        made._init_tokenizer()
        made.actor_rollout_wg = ZeroWorkers()
        return made

    rows, keys, tags = make_rows(tok, delimiter)
    trainers = {"sync": trainer("sync", "grpo"), "per_cut": trainer("repro_sync", "repro_grpo", "per_cut"),
                "shared": trainer("repro_sync", "repro_grpo", "shared")}
    batch = tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(rows), tags=tags)
    batch.extra_info["temperature"] = 1.0
    batch = trainers["per_cut"]._compute_old_log_prob(batch, metrics={})
    # The J check's subset, in its own partition, with the real model as the actor workers.
    real = trainer("repro_sync", "repro_grpo", "shared")
    real.actor_rollout_wg = TinyActorWorkers(model, dp_size=DP_SIZE, micro_batch=1)
    subset = tq.kv_batch_put(keys=keys[:J_ROWS], partition_id="j_check",
                             fields=list_of_dict_to_tensordict(rows[:J_ROWS]), tags=tags[:J_ROWS])
    subset.extra_info["temperature"] = 1.0
    subset = real._compute_old_log_prob(subset, metrics={})
    yield {**trainers, "real": real, "batch": batch, "subset": subset,
           "tokens": sum(tag["response_len"] for tag in tags)}
    tq.close()
    ray.shutdown()


@pytest.mark.parametrize("mode", ["sync", "per_cut", "shared"])
def test_advantage_step(benchmark, setting, mode, verl_report):
    trainer, batch = setting[mode], setting["batch"]
    benchmark.group = "verl advantage step"
    seconds: list[float] = []
    metrics: dict = {}

    def step() -> None:
        trainer.actor_rollout_wg.seconds = 0.0
        metrics.clear()
        start = time.perf_counter()
        trainer._compute_advantage(batch, metrics=metrics)
        seconds.append(time.perf_counter() - start - trainer.actor_rollout_wg.seconds)

    benchmark.pedantic(step, rounds=ROUNDS[mode] if not benchmark.disabled else 1, iterations=1)
    verl_report["rows"] = len(batch)
    verl_report["tokens"] = setting["tokens"]
    verl_report["sequence_tokens"] = sum(tag["seq_len"] for tag in batch.tags)
    if mode == "sync":
        verl_report["sync"] = min(seconds)
        return
    verl_report["num_cuts"] = metrics["repro/num_cuts"]
    verl_report.setdefault(mode, {}).update(
        seconds=min(seconds), worker_tokens_ratio=metrics["repro/objective_token_ratio"])


def test_shared_j_equals_per_cut(setting, verl_report):
    """Both paths' J with the real model on the subset (module docstring): max |shared - per_cut|."""
    trainer, subset = setting["real"], setting["subset"]
    read = trainer._rollouts(subset)
    shared, _ = trainer._objective_shared(subset, read.real, read.prompts, read.answers, read.cuts)
    per_cut, _ = trainer._objective_per_cut(read.prompts, read.completions, read.answers, read.cuts)
    assert len(shared) == len(per_cut) == len(read.cuts.positions) > J_ROWS
    diff = float(np.abs(shared - per_cut).max())
    verl_report.setdefault("per_cut", {})["j_max_abs_diff"] = 0.0
    verl_report.setdefault("shared", {})["j_max_abs_diff"] = diff
    verl_report["j_cut_points"] = len(shared)
    verl_report["j_rows"] = len(read.real)
    assert diff <= 1e-4


#: gpu_verl_worker.py's workload for the workers' time (module docstring); --small without --benchmark-enable.
WORKER_RUN = ["--device", "cpu", "--model", "embedded", "--float32", "--rows", "4", "--length", "1024", "--k", str(K),
              "--repeats", "3", "--per-cut-rows", "1"]


def test_worker_time(benchmark, verl_report, tmp_path):
    """The workers' time with J against the old-log-prob pass alone, fused and shared (module docstring)."""
    written = tmp_path / "worker.json"
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_verl_worker.py")
    run = ["--device", "cpu", "--small", "--float32"] if benchmark.disabled else WORKER_RUN
    # One thread: process CPU time then counts the work, not OpenMP threads spinning beside other load.
    result = subprocess.run([sys.executable, script, *run, "--json", str(written)], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}, timeout=3600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    worker = json.loads(written.read_text())
    assert worker["log_probs_identical"] and worker["fused_vs_per_cut_max"] <= 1e-4
    verl_report["worker_time"] = {key: worker[key] for key in (
        "model", "pass_tokens", "cut_points", "compute_log_prob_s", "fused_compute_log_prob_s",
        "compute_repro_objective_s")}
    verl_report.setdefault("fused", {}).update(
        worker_tokens_ratio=worker["fused_tokens_ratio"], worker_time_ratio=worker["fused_over_log_prob"],
        j_max_abs_diff=worker["fused_vs_per_cut_max"])
    verl_report.setdefault("shared", {}).update(worker_time_ratio=worker["shared_over_log_prob"])
