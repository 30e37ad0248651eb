"""verl's actor worker on one rank: the time of J against the time of verl's old-log-prob pass.

``ReproActorWorker`` (verl's ``ActorRolloutRefWorker``, FSDP2 engine, verl's default mixed
precision: bf16 compute, or float32 with ``--float32``) runs, on the same batch and through verl's
own TransferQueue bridge, in turns (best of ``--repeats`` rounds after a warm-up; on a CPU the
process's CPU time, on CUDA the wall time):

- ``compute_log_prob`` with entropies, as verl's trainer calls it for the old log-probs (the pass
  RePro reads its entropies from, and the yardstick);
- the same call with J inside, as ``repro_sync``'s ``objective_mode=fused`` makes it
  (``repro_core/verl/fused.py``): cut points from the pass's own entropies, J from its keys and
  values;
- ``compute_repro_objective``, J at the cut points chosen from those entropies (k highest-entropy
  paragraph breaks), as ``repro_sync``'s shared path calls it after the pass.

It reports the seconds of each and the ratios (time, not tokens): the fused call over the plain
one, and the plain call plus the shared path's over the plain one; and each path's extra tokens
over the pass's. It asserts that the fused call leaves verl's log-probs and entropies bit for bit
as they were and picks the same cut points, that J is finite and that the row with the shortest
prompt gets the same J alone as in the padded batch (within bf16's noise). It reports J of the
worker against J of the same weights in float32 (``ObjectiveScorer``, unsharded: the bf16 noise on
these rollouts), fused J against shared J, and fused J against the per-cut oracle on the first
``--per-cut-rows`` rows.

The model is a random-weight Qwen2-1.5B shape (no download; ``--small``: 2 layers) or, with
``--model embedded``, the embedded SmolLM2-135M (``repro_core.assets``); SDPA, rows of reasoning
text in paragraphs (``objective_workload.py``).

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
    parser.add_argument("--model", choices=["random", "embedded"], default="random",
                        help="random: Qwen2-1.5B-shaped random weights; embedded: SmolLM2-135M")
    parser.add_argument("--float32", action="store_true", help="verl's mixed precision in float32 (default bf16)")
    parser.add_argument("--per-cut-rows", type=int, default=1, help="rows checked against the per-cut oracle")
    args = parser.parse_args()
    if args.small:
        args.rows, args.length = min(args.rows, 2), min(args.length, 256)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.device == "cpu":
        import verl_engine  # noqa: F401  (verl's CPU stand-in platform, registered below)
    with tempfile.TemporaryDirectory() as scratch:
        report = run(args, Path(scratch))
    print(f"  verl compute_log_prob (old log-probs + entropies) {report['compute_log_prob_s'] * 1e3:10.1f} ms")
    print(f"  the same call with J inside (objective_mode=fused) {report['fused_compute_log_prob_s'] * 1e3:10.1f} ms")
    print(f"  ReproActorWorker compute_repro_objective (J)      {report['compute_repro_objective_s'] * 1e3:10.1f} ms")
    print(f"  old-log-prob call with J / without: fused {report['fused_over_log_prob']:.2f}x, shared "
          f"{report['shared_over_log_prob']:.2f}x; extra tokens: fused {report['fused_tokens_ratio']:.3f}, shared "
          f"{report['shared_tokens_ratio']:.3f} of the pass")
    print(f"  J fused - shared: max {report['fused_vs_shared_max']:.2e}; fused - per_cut: max "
          f"{report['fused_vs_per_cut_max']:.2e} ({report['per_cut_points']} points); J - float32: max "
          f"{report['bf16_vs_float32']['max']:.4f}, mean {report['bf16_vs_float32']['mean']:.4f}; "
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
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    import gpu_objective
    import objective_workload as ow
    import repro_core as rc
    from repro_core.assets import default_model_path
    from repro_core.objective import AnswerTokens, ObjectiveScorer
    from repro_core.verl.check import compose
    from repro_core.verl.fused import CUTS_OUTPUT, J_OUTPUT, REQUEST_KEY, TOKENS_OUTPUT, FusedRequest
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
    if args.model == "embedded":
        path = default_model_path()
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    else:
        path, tokenizer = scratch / "model", ow.tiny.tokenizer()
        shape = gpu_objective.SMALL if args.small else gpu_objective.QWEN2_1_5B
        torch.manual_seed(0)
        transformers.AutoModelForCausalLM.from_config(transformers.Qwen2Config(**shape)).save_pretrained(path)
        tokenizer.save_pretrained(path)
    float32 = ["+actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,"
               "buffer_dtype:fp32}"] if args.float32 else []
    config = compose([
        f"actor_rollout_ref.model.path={path}", "actor_rollout_ref.model.use_remove_padding=False",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa", "actor_rollout_ref.actor.strategy=fsdp2",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={args.rows}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={args.rows}",
        f"trainer.device={args.device}", "algorithm.adv_estimator=repro_grpo", "trainer.v1.trainer_mode=repro_sync",
        *float32,
    ])
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init()
    try:
        worker = ReproActorWorker(config.actor_rollout_ref, role="actor")
        worker.init_model()
        rng = random.Random(0)
        prompts = [ow.reasoning_ids(tokenizer, rng.randint(40, 120), rng) for _ in range(args.rows)]
        completions = [ow.reasoning_ids(tokenizer, args.length, rng) for _ in range(args.rows)]
        answer = AnswerTokens(tokenizer, "\\boxed{{{answer}}}")("17", 0)
        keys = [f"row{b}" for b in range(args.rows)]
        fields, tags = [], []
        for prompt, completion in zip(prompts, completions, strict=True):
            prompt_ids, response = torch.tensor(prompt), torch.tensor(completion)
            input_ids = torch.cat([prompt_ids, response])
            fields.append(dict(prompts=prompt_ids, responses=response, input_ids=input_ids,
                               attention_mask=torch.ones_like(input_ids), position_ids=torch.arange(len(input_ids)),
                               response_mask=torch.ones_like(response), loss_mask=torch.ones_like(response),
                               multi_modal_inputs={}, repro_answer=torch.tensor(answer.ids),
                               repro_answer_span=torch.tensor([len(answer.ids), answer.start, answer.stop])))
            tags.append(dict(prompt_len=len(prompt), response_len=len(completion), seq_len=len(input_ids)))
        batch = tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
        batch.extra_info = {"calculate_entropy": True, "compute_loss": False, "temperature": 1.0}
        delimiters = rc.Delimiters.from_tokenizer(tokenizer)
        # The same call with J inside, as repro_sync's objective_mode=fused makes it (verl/fused.py).
        fused = KVBatchMeta(keys=keys, tags=tags, partition_id="train", fields=batch.fields, extra_info={
            **batch.extra_info, REQUEST_KEY: FusedRequest(delimiters, args.k, None, 1.0)})

        def pass_outputs() -> list[torch.Tensor]:
            data = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["log_probs", "entropy"])
            return [row.clone() for name in ("log_probs", "entropy") for row in data[name].unbind()]

        worker.compute_log_prob(batch)  # the warm-up (kernels, allocator, the entropy's compilation)
        plain_outputs = pass_outputs()
        data = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["entropy"])
        # verl's entropy row covers prompt and response, shifted: response token t is at P + t - 1.
        entropies = np.zeros((args.rows, args.length), dtype=np.float32)
        for b, row in enumerate(data["entropy"].unbind()):
            entropies[b] = row.float().numpy()[len(prompts[b]) - 1 : len(prompts[b]) - 1 + args.length]
        select = functools.partial(rc.select_cuts, delimiters=delimiters, k=args.k)
        cuts = select(np.asarray(completions), np.ones((args.rows, args.length), dtype=bool), entropies)
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
        calls = {"compute_log_prob": lambda: worker.compute_log_prob(batch),
                 "fused": lambda: worker.compute_log_prob(fused),
                 "compute_repro_objective": lambda: worker.compute_repro_objective(probes, rollouts)}
        seconds = best_times(calls, args)
        # The fused call wrote last: verl's own outputs unchanged, and its cut points and J.
        identical = all(torch.equal(a, b) for a, b in zip(plain_outputs, pass_outputs(), strict=True))
        assert identical, "the fused pass changed verl's old log-probs or entropies"
        out = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=[CUTS_OUTPUT, J_OUTPUT, TOKENS_OUTPUT])
        fused_points = [row[row >= 0].numpy() for row in out[CUTS_OUTPUT].unbind()]
        assert all(np.array_equal(points, cuts.row(b)) for b, points in enumerate(fused_points)), "other cut points"
        fused_j = np.concatenate([row[: counts[b]].numpy() for b, row in enumerate(out[J_OUTPUT].unbind())])
        fused_tokens = int(sum(int(row.sum()) for row in out[TOKENS_OUTPUT].unbind()))
        j_rows = tq.kv_batch_get(keys=keys, partition_id=PROBE_PARTITION, select_fields=[J_FIELD])[J_FIELD].unbind()
        j = np.concatenate([j_rows[b][: counts[b]].numpy() for b in range(args.rows)])
        assert np.isfinite(j).all() and np.isfinite(fused_j).all(), "J not finite"
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
        reference = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(args.device)
        reference_j = ObjectiveScorer(reference, tokenizer).score(
            prompts, completions, [answer] * args.rows, cuts.offsets, cuts.positions)
        checked = cuts.take(range(args.per_cut_rows))  # the per-cut oracle on the first rows (its cost)
        per_cut = ObjectiveScorer(reference, tokenizer, mode="per_cut").score(
            prompts[: args.per_cut_rows], completions[: args.per_cut_rows], [answer] * args.per_cut_rows,
            checked.offsets, checked.positions)
    finally:
        tq.close()
        ray.shutdown()
        dist.destroy_process_group()
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    error = np.abs(j - reference_j)
    pass_tokens = sum(tag["seq_len"] for tag in tags)
    # The shared path's work per row: its prefix pass up to the last cut, one answer per cut point.
    shared_tokens = sum(len(prompts[b]) + int(cuts.row(b).max()) + int(counts[b]) * len(answer.ids)
                        for b in range(args.rows))
    plain = seconds["compute_log_prob"]
    return dict(
        device=device, args=vars(args), model=str(args.model), cut_points=int(len(j)), pass_tokens=pass_tokens,
        compute_log_prob_s=plain, compute_repro_objective_s=seconds["compute_repro_objective"],
        fused_compute_log_prob_s=seconds["fused"],
        j_over_log_prob=seconds["compute_repro_objective"] / plain,
        # The old-log-prob pass with J against it alone: fused in one call, shared in two.
        fused_over_log_prob=seconds["fused"] / plain,
        shared_over_log_prob=(plain + seconds["compute_repro_objective"]) / plain,
        fused_tokens_ratio=fused_tokens / pass_tokens, shared_tokens_ratio=shared_tokens / pass_tokens,
        fused_vs_shared_max=float(np.abs(fused_j - j).max()),
        fused_vs_per_cut_max=float(np.abs(fused_j[: len(per_cut)] - per_cut).max()),
        per_cut_points=int(len(per_cut)), log_probs_identical=identical, j_alone_vs_in_batch_max=alone_difference,
        bf16_vs_float32={"max": float(error.max()), "mean": float(error.mean())},
    )


def best_times(calls: dict, args: argparse.Namespace) -> dict[str, float]:
    """The fastest of ``args.repeats`` timed rounds of each call, the calls taking turns in each
    round, after one warm-up of each. On CUDA the wall time, synchronized; on a CPU the process's
    CPU time, which other work on a shared machine does not inflate as it does the wall time."""
    import torch

    clock = time.perf_counter if args.device == "cuda" else time.process_time
    best = dict.fromkeys(calls, float("inf"))
    for round_ in range(args.repeats + 1):
        for name, call in calls.items():
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = clock()
            call()
            if args.device == "cuda":
                torch.cuda.synchronize()
            if round_:  # round 0 warms up
                best[name] = min(best[name], clock() - start)
    return best


if __name__ == "__main__":
    main()
