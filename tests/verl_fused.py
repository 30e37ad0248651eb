"""Run by test_verl_fused.py in processes of their own: ``objective_mode=fused`` through verl's own
actor worker (``ReproActorWorker``, its actor a ``ReproTrainingWorker``) on CPU, fp32.

- ``verl_fused.py OUT NAME [NAME ...]``: one rank, repro_sync's old-log-prob pass and advantage
  step through verl's own TransferQueue bridge, once per setting of ``SETTINGS`` (engine, remove
  padding, dynamic batch size, micro-batch size), on 6 rows in groups of 3 and two of verl's padding
  rows. The old log-probs and entropies equal, bit for bit, those of the same call without RePro;
  the cut points are those the controller selects from verl's entropies; J equals the per-cut
  oracle on the unsharded model within 1e-4; the advantages equal the ReproScorer pipeline.
- ``verl_fused.py OUT --ranks 2 NAME``: two ranks sharding one policy over gloo, each calling its
  worker's ``compute_log_prob`` with its own rows: rank 0 many rows in several micro-batches, rank 1
  the same number of micro-batches with nothing to score in one of them. Both return (each rank
  makes one probe call per micro-batch), with J equal to the per-cut oracle.

verl_engine.py's CPU platform and helpers (tests/verl_engine.py) make verl run here. verl builds
FSDP1 with ``sync_module_states=True``, which torch refuses for CPU parameters (NCCL broadcasts
device memory only); gloo broadcasts CPU tensors, so that check is lifted in these processes.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import verl_engine as e  # noqa: E402, I001  (first: it sets verl's device before verl is imported)

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import transfer_queue as tq  # noqa: E402
from torch.distributed.fsdp import _init_utils as _fsdp_init  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size  # noqa: E402
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync  # noqa: E402
from verl.utils.tensordict_utils import assign_non_tensor, list_of_dict_to_tensordict  # noqa: E402

import test_verl_trainer as t  # noqa: E402
import tiny  # noqa: E402
from repro_core.config import ReproConfig  # noqa: E402
from repro_core.objective import AnswerTokens, ObjectiveScorer  # noqa: E402
from repro_core.pipeline import cut_selector  # noqa: E402
from repro_core.verl.check import repro_config  # noqa: E402
from repro_core.verl.fused import CUTS_OUTPUT, J_OUTPUT, REQUEST_KEY, FusedRequest  # noqa: E402
from repro_core.verl.worker import ReproActorWorker  # noqa: E402

# FSDP1's sync_module_states on CPU: gloo broadcasts CPU tensors (module docstring).
_fsdp_init._check_module_states_for_sync_module_states = lambda module_states: None

#: verl's default mixed precision, in place of the fp32 of the other settings.
BF16 = "+actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:bf16,reduce_dtype:fp32,buffer_dtype:fp32}"
FSDP1, FSDP2 = "actor_rollout_ref.actor.strategy=fsdp", "actor_rollout_ref.actor.strategy=fsdp2"
PACKED, PADDED = "actor_rollout_ref.model.use_remove_padding=True", "actor_rollout_ref.model.use_remove_padding=False"
#: A token budget that splits the batch in several micro-batches.
DYNAMIC = ["actor_rollout_ref.actor.use_dynamic_bsz=True", "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=400"]
#: Each setting's verl overrides beside fp32 and SDPA: the engine, remove padding, and dynamic
#: batch sizes or micro-batches of 2 rows (which split the groups of 3); LoRA adapters (made
#: non-zero: J is the merged model's); verl's default mixed precision (J within bf16's noise).
SETTINGS = {
    "fsdp2-rmpad-micro2": [FSDP2, PACKED],
    "fsdp2-padded-dynamic": [FSDP2, PADDED, *DYNAMIC],
    "fsdp2-rmpad-dynamic": [FSDP2, PACKED, *DYNAMIC],
    "fsdp-rmpad-dynamic": [FSDP1, PACKED, *DYNAMIC],
    "fsdp-padded-micro2": [FSDP1, PADDED],
    "fsdp2-lora": [FSDP2, "actor_rollout_ref.model.lora_rank=4"],
    "fsdp2-bf16": [FSDP2, BF16],
}


def fused_config(out: str, setting: list[str]):
    precision = [] if BF16 in setting else [e.FP32]
    return t.verl_config(
        out, "repro_reinforce_pp_baseline", "+algorithm.repro.objective_mode=fused",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={t.MICRO_BATCH}", *precision, *setting,
    )


def per_row(batch, name: str, keys: list[str]) -> list[torch.Tensor]:
    data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=[name])
    return [row.clone() for row in data[name].unbind()]


def one_rank(out: str, names: list[str]) -> None:
    e.init(out, 0, 1)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init()
    try:
        e.save_model(out)
        for name in names:
            check_setting(out, name)
    finally:
        tq.close()
        ray.shutdown()


def check_setting(out: str, name: str) -> None:
    config = fused_config(out, SETTINGS[name])
    worker = ReproActorWorker(config.actor_rollout_ref, role="actor")
    worker.init_model()
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    if "lora" in name:
        model = e.merged_lora_oracle(worker.actor.engine.module, model)
    oracle = ObjectiveScorer(model, None, mode="per_cut")
    tolerance = 0.1 if "bf16" in name else 1e-4
    trainer = t.ReproTrainerSync(config)
    trainer._init_tokenizer()
    trainer.global_steps = 1
    trainer.actor_rollout_wg = e.EngineWorkers(worker)
    rows = t.rollouts(trainer.tokenizer, seed=11)
    rows[0]["response"] = rows[0]["response"] * 3  # uneven lengths
    keys = [row["key"] for row in rows]
    batch = upsample_batch_to_divisible_size(t.put_batch(rows, partition=name), 8, trainer.tokenizer.eos_token_id)
    metrics: dict = {}
    batch = trainer._balance_batch(batch, metrics=metrics)
    batch.extra_info["temperature"] = t.TEMPERATURE
    start = time.perf_counter()
    batch = trainer._compute_old_log_prob(batch, metrics=metrics)
    fused_seconds = time.perf_counter() - start
    assert REQUEST_KEY not in batch.extra_info
    log_probs, entropies = per_row(batch, "old_log_probs", batch.keys), per_row(batch, "entropy", batch.keys)
    # verl's pass without RePro on the same batch and worker: the same values, bit for bit.
    start = time.perf_counter()
    PPOTrainerSync._compute_old_log_prob(trainer, batch, metrics={})
    plain_seconds = time.perf_counter() - start
    same = all(torch.equal(a, b) for a, b in zip(log_probs, per_row(batch, "old_log_probs", batch.keys), strict=True))
    same &= all(torch.equal(a, b) for a, b in zip(entropies, per_row(batch, "entropy", batch.keys), strict=True))
    assert same, "the fused pass changed verl's old log-probs or entropies"
    # The cut points are the controller's selection from verl's entropies; J is the per-cut oracle's.
    real, cuts, j, tokens, _ = trainer._objective_fused(batch)
    read = trainer._rollouts(batch)
    assert real == read.real and np.array_equal(cuts.offsets, read.cuts.offsets)
    assert np.array_equal(cuts.positions, read.cuts.positions)
    # The answers as the trainer tokenized them (its tokenizer is the one saved with the model).
    expected = oracle.score([p.tolist() for p in read.prompts], [c.tolist() for c in read.completions], read.answers,
                            cuts.offsets, cuts.positions)
    difference = float(np.abs(j - expected).max())
    sequence_tokens = sum(tag["seq_len"] for tag in batch.tags)
    print(f"{name}: {len(j)} points, J fused - per_cut max abs {difference:.2e}, probe tokens {tokens} "
          f"({tokens / sequence_tokens:.3f} of the pass), old-log-prob call {fused_seconds:.2f} s "
          f"(without RePro {plain_seconds:.2f} s), log-probs and entropies bit-identical")
    assert np.isfinite(j).all() and difference < tolerance, difference
    # The whole advantage step: the pipeline's advantages (in bf16 J's noise moves them).
    batch = trainer._compute_advantage(batch, metrics=metrics)
    assert metrics["repro/objective_token_ratio"] == tokens / sequence_tokens
    if "bf16" not in name:
        expected_advantages = t.pipeline(model, trainer.tokenizer, rows, "reinforce_pp_baseline")
        advantages = t.padded(batch, "advantages", keys)
        gap = np.abs(advantages - expected_advantages.advantages.advantages[:, : advantages.shape[1]]).max()
        assert gap < 2e-5, gap
        print(f"{name}: advantages max abs difference {gap:.2e}")
    print(f"{name} done")


def rank_main(rank: int, out: str, name: str) -> None:
    """One of two ranks (module docstring)."""
    e.init(out, rank, 2)
    tok = tiny.tokenizer()
    config = fused_config(out, SETTINGS[name])
    worker = ReproActorWorker(config.actor_rollout_ref, role="actor")
    worker.init_model()
    oracle = ObjectiveScorer(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32), tok, mode="per_cut")
    answer = AnswerTokens(tok, ReproConfig().answer_template)(t.ANSWER, 0)
    rows = t.rollouts(tok, prompts=2, seed=5)[:4]
    if rank == 0:
        rows[0]["response"] = rows[0]["response"] * 4
    else:  # the second micro-batch: two rows without an answer (as verl's padding rows)
        rows[2]["answer"] = rows[3]["answer"] = False
    data = list_of_dict_to_tensordict([{
        "input_ids": torch.tensor(row["prompt"] + row["response"]),
        "position_ids": torch.arange(len(row["prompt"]) + len(row["response"])),
        "response_mask": torch.ones(len(row["response"]), dtype=torch.int64),
        "loss_mask": torch.ones(len(row["response"]), dtype=torch.int64),
        "repro_answer": torch.tensor(answer.ids),
        "repro_answer_span": torch.tensor([len(answer.ids) if row.get("answer", True) else 0, answer.start,
                                           answer.stop]),
    } for row in rows])
    assign_non_tensor(data, calculate_entropy=True, compute_loss=False, temperature=t.TEMPERATURE,
                      **{REQUEST_KEY: request_of(config, tok)})
    output = worker.compute_log_prob(data)
    scored = [i for i, row in enumerate(rows) if row.get("answer", True)]
    cuts = [output[CUTS_OUTPUT][i] for i in scored]
    points = [row[row >= 0] for row in cuts]
    got = np.concatenate([output[J_OUTPUT][i][: len(p)].numpy() for i, p in zip(scored, points, strict=True)])
    expected = oracle.score([rows[i]["prompt"] for i in scored], [rows[i]["response"] for i in scored],
                            [t.ANSWER] * len(scored), np.cumsum([0, *(len(p) for p in points)]),
                            np.concatenate([p.numpy() for p in points]))
    assert all(not (output[CUTS_OUTPUT][i] >= 0).any() for i in range(len(rows)) if i not in scored)
    difference = float(np.abs(got - expected).max())
    print(f"rank {rank} {name}: {len(got)} points, max abs difference {difference:.2e}")
    assert difference < 1e-4, difference
    dist.barrier()
    print(f"rank {rank} done")


def request_of(config, tok) -> FusedRequest:
    """The ``FusedRequest`` that repro_sync's trainer sends for ``config`` and ``tok``."""
    return FusedRequest(temperature=1.0, **cut_selector(tok, repro_config(config)).keywords)


if __name__ == "__main__":
    if "--ranks" in sys.argv:
        e.save_model(sys.argv[1])
        torch.multiprocessing.spawn(rank_main, args=(sys.argv[1], sys.argv[-1]), nprocs=2)
    else:
        one_rank(sys.argv[1], sys.argv[2:])
