"""verl's actor worker on one rank: the time of J against the time of verl's old-log-prob pass.

``ReproActorWorker`` (verl's ``ActorRolloutRefWorker``, FSDP2 engine, verl's default mixed
precision: bf16 compute) runs, on the same batch and through verl's own TransferQueue bridge:

- ``compute_log_prob`` with entropies, as verl's trainer calls it for the old log-probs (the pass
  RePro reads its entropies from, and the yardstick);
- ``compute_repro_objective``, J at the cut points chosen from those entropies (k highest-entropy
  paragraph breaks), as ``repro_sync``'s shared path calls it.

It reports the seconds of each (best of ``--repeats`` after a warm-up) and their ratio: time, not
tokens. It asserts that J is finite and that the row with the shortest prompt gets the same J
alone as in the padded batch (within bf16's noise), and reports J of the bf16 worker against J of
the same weights in float32 (``ObjectiveScorer``, unsharded): the bf16 noise on these rollouts.

The model is a random-weight Qwen2-1.5B shape (no download; ``--small``: 2 layers), SDPA, rows of
reasoning text in paragraphs (``objective_workload.py``).

    python benches/gpu_verl_worker.py --json worker.json                    # on CUDA: 8 x 4,096, k = 20
    python benches/gpu_verl_worker.py --device cpu --small --json w.json    # a smoke run on CPU
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def main() -> None:
    from gpu_objective import workload_parser

    parser = workload_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a 2-layer model, 2 x 256 tokens: smoke test")
    args = parser.parse_args()
    if args.small:
        args.rows, args.length = min(args.rows, 2), min(args.length, 256)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.device == "cpu":
        import verl_engine  # noqa: F401  (verl's CPU stand-in platform, registered below)
    with tempfile.TemporaryDirectory() as scratch:
        report = run(args, Path(scratch))
    print(f"  verl compute_log_prob (old log-probs + entropies) {report['compute_log_prob_s'] * 1e3:10.1f} ms")
    print(f"  ReproActorWorker compute_repro_objective (J)      {report['compute_repro_objective_s'] * 1e3:10.1f} ms")
    print(f"  J / old-log-prob pass {report['j_over_log_prob']:.2f}x (target <= 1.3 on the GPU); J bf16 - float32: "
          f"max {report['bf16_vs_float32']['max']:.4f}, mean {report['bf16_vs_float32']['mean']:.4f}; "
          f"J alone - in batch: max {report['j_alone_vs_in_batch_max']:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def run(args: argparse.Namespace, scratch: Path) -> dict:
    import numpy as np
    import ray
    import torch
    import torch.distributed as dist
    import transfer_queue as tq
    import transformers
    from tensordict import TensorDict
    from transfer_queue import KVBatchMeta

    import gpu_objective
    import objective_workload as ow
    import repro_core as rc
    from repro_core.objective import AnswerTokens, ObjectiveScorer
    from repro_core.verl.check import compose
    from repro_core.verl.trainer import PROBE_PARTITION
    from repro_core.verl.worker import (
        ANSWER_FIELD,
        ANSWER_SPAN_FIELD,
        CUTS_FIELD,
        J_FIELD,
        NUM_CUTS_FIELD,
        PROBE_FIELDS,
        ReproActorWorker,
    )

    if args.device == "cpu":
        from verl.plugin.platform.platform_manager import set_platform

        from verl_engine import CpuPlatform

        set_platform(CpuPlatform())
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="0")
    dist.init_process_group("gloo" if args.device == "cpu" else "nccl", rank=0, world_size=1,
                            init_method=f"file://{scratch}/store")
    tokenizer = ow.tiny.tokenizer()
    shape = gpu_objective.SMALL if args.small else gpu_objective.QWEN2_1_5B
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.Qwen2Config(**shape))
    model.save_pretrained(scratch / "model")
    tokenizer.save_pretrained(scratch / "model")
    config = compose([
        f"actor_rollout_ref.model.path={scratch / 'model'}", "actor_rollout_ref.model.use_remove_padding=False",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa", "actor_rollout_ref.actor.strategy=fsdp2",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={args.rows}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={args.rows}",
        f"trainer.device={args.device}", "algorithm.adv_estimator=repro_grpo", "trainer.v1.trainer_mode=repro_sync",
    ])
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init()
    try:
        worker = ReproActorWorker(config.actor_rollout_ref, role="actor")
        worker.init_model()
        rng = random.Random(0)
        prompts = [ow.reasoning_ids(tokenizer, rng.randint(40, 120), rng) for _ in range(args.rows)]
        completions = [ow.reasoning_ids(tokenizer, args.length, rng) for _ in range(args.rows)]
        keys = [f"row{b}" for b in range(args.rows)]
        fields, tags = [], []
        for prompt, completion in zip(prompts, completions, strict=True):
            prompt_ids, response = torch.tensor(prompt), torch.tensor(completion)
            input_ids = torch.cat([prompt_ids, response])
            fields.append(dict(prompts=prompt_ids, responses=response, input_ids=input_ids,
                               attention_mask=torch.ones_like(input_ids), position_ids=torch.arange(len(input_ids)),
                               response_mask=torch.ones_like(response), loss_mask=torch.ones_like(response),
                               multi_modal_inputs={}))
            tags.append(dict(prompt_len=len(prompt), response_len=len(completion), seq_len=len(input_ids)))
        from verl.utils.tensordict_utils import list_of_dict_to_tensordict

        batch = tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
        batch.extra_info = {"calculate_entropy": True, "compute_loss": False, "temperature": 1.0}
        log_prob_s = best_time(lambda: worker.compute_log_prob(batch), args)
        data = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["entropy"])
        # verl's entropy row covers prompt and response, shifted: response token t is at P + t - 1.
        entropies = np.zeros((args.rows, args.length), dtype=np.float32)
        for b, row in enumerate(data["entropy"].unbind()):
            entropies[b] = row.float().numpy()[len(prompts[b]) - 1 : len(prompts[b]) - 1 + args.length]
        select = functools.partial(rc.select_cuts, delimiters=rc.Delimiters.from_tokenizer(tokenizer), k=args.k)
        cuts = select(np.asarray(completions), np.ones((args.rows, args.length), dtype=bool), entropies)
        answer = AnswerTokens(tokenizer, "\\boxed{{{answer}}}")("17", 0)
        counts = np.diff(cuts.offsets)
        positions = np.zeros((args.rows, int(counts.max())), dtype=np.int64)
        for b in range(args.rows):
            positions[b, : counts[b]] = cuts.row(b)
        tq.kv_batch_put(keys=keys, partition_id=PROBE_PARTITION, fields=TensorDict({
            CUTS_FIELD: torch.from_numpy(positions), NUM_CUTS_FIELD: torch.from_numpy(counts),
            ANSWER_FIELD: torch.tensor([answer.ids] * args.rows),
            ANSWER_SPAN_FIELD: torch.tensor([[len(answer.ids), answer.start, answer.stop]] * args.rows),
        }, batch_size=args.rows))
        probes = KVBatchMeta(keys=keys, tags=[{}] * args.rows, partition_id=PROBE_PARTITION, fields=PROBE_FIELDS,
                             extra_info={"temperature": 1.0, "max_batch_tokens": 16384})
        rollouts = KVBatchMeta(keys=keys, tags=[{}] * args.rows, partition_id="train", fields=["prompts", "responses"])
        objective_s = best_time(lambda: worker.compute_repro_objective(probes, rollouts), args)
        j_rows = tq.kv_batch_get(keys=keys, partition_id=PROBE_PARTITION, select_fields=[J_FIELD])[J_FIELD].unbind()
        j = np.concatenate([j_rows[b][: counts[b]].numpy() for b in range(args.rows)])
        assert np.isfinite(j).all(), f"J not finite at {np.flatnonzero(~np.isfinite(j))[:5]}"
        # The shortest prompt's row alone, through the same worker: no padding beside longer prompts.
        alone_row = int(np.argmin([len(prompt) for prompt in prompts]))
        worker.compute_repro_objective(*(KVBatchMeta(keys=[keys[alone_row]], tags=[{}], partition_id=meta.partition_id,
                                                     fields=meta.fields, extra_info=meta.extra_info)
                                         for meta in (probes, rollouts)))
        alone = tq.kv_batch_get(keys=[keys[alone_row]], partition_id=PROBE_PARTITION,
                                select_fields=[J_FIELD])[J_FIELD].unbind()[0][: counts[alone_row]].numpy()
        alone_difference = float(np.abs(alone - j_rows[alone_row][: counts[alone_row]].numpy()).max())
        # Beside longer prompts the row is padded: in bf16 the sums run in another order, nothing more.
        assert alone_difference < 0.1, alone_difference
        reference = transformers.AutoModelForCausalLM.from_pretrained(scratch / "model", dtype=torch.float32)
        float32 = ObjectiveScorer(reference.to(args.device), tokenizer).score(
            prompts, completions, [answer] * args.rows, cuts.offsets, cuts.positions)
    finally:
        tq.close()
        ray.shutdown()
        dist.destroy_process_group()
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    error = np.abs(j - float32)
    return dict(device=device, args=vars(args), cut_points=int(len(j)), compute_log_prob_s=log_prob_s,
                compute_repro_objective_s=objective_s, j_over_log_prob=objective_s / log_prob_s,
                j_alone_vs_in_batch_max=alone_difference,
                bf16_vs_float32={"max": float(error.max()), "mean": float(error.mean())})


def best_time(call, args: argparse.Namespace) -> float:
    """The fastest of ``args.repeats`` timed calls, after one warm-up (kernels, allocator)."""
    import torch

    call()
    best = float("inf")
    for _ in range(args.repeats):
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if args.device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


if __name__ == "__main__":
    main()
