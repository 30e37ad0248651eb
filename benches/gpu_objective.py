"""J on CUDA: shared-prefix vs per-cut vs one plain forward, with peak memory.

The method: docs/method.md, "Shared-prefix J".

A random-weight model of Qwen2-1.5B's shape (no download), bf16, SDPA; 8 rollouts of 4,096
completion tokens after prompts of 40 to 120; k = 20; reasoning text in paragraphs tokenized by the
test suite's byte-level BPE (its ids are valid in the larger vocabulary). Every method gets the
whole batch in one forward call (``max_batch_tokens`` = the batch's tokens), so "peak memory at the
same batch" compares like with like. The methods are described in ``objective_workload.py``.

    python benches/gpu_objective.py                     # the issue's setting, on cuda
    python benches/gpu_objective.py --json out.json     # also write the figures
    python benches/gpu_objective.py --device cpu --small  # a smoke run of the script itself

Targets: pipeline (entropies + cuts + J) <= 1.3x the forward with entropies; per-cut >= 8x the
shared J; peak memory of the pipeline <= 1.5x the forward with entropies; J shared alone <= 1.3x
the forward with entropies (what verl's ``ReproActorWorker`` runs for J, against its old-log-prob
pass: docs/verl.md, "Two paths for J").
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import transformers

import objective_workload as ow

QWEN2_1_5B = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1e6,
    tie_word_embeddings=True,
)
SMALL = dict(QWEN2_1_5B, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
             vocab_size=4096)


def workload_parser(description: str) -> argparse.ArgumentParser:
    """The flags of the GPU case, shared with ``gpu_verl_worker.py``: device, batch, k, timing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--length", type=int, default=4096, help="completion tokens per rollout")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each method (per-cut: 1)")
    parser.add_argument("--json", help="write the figures to this file")
    return parser


def main() -> None:
    parser = workload_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--small", action="store_true", help="a 2-layer model, 4 x 512 tokens: smoke test")
    args = parser.parse_args()
    if args.small:
        args.rows, args.length = min(args.rows, 4), min(args.length, 512)

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    tokenizer = ow.tiny.tokenizer()
    config = transformers.Qwen2Config(**(SMALL if args.small else QWEN2_1_5B), attn_implementation="sdpa")
    torch.manual_seed(0)
    with device:
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    lengths = [args.length] * args.rows
    budget = args.rows * (args.length + 120)
    workload = ow.build(model, tokenizer, lengths, k=args.k, max_batch_tokens=budget)
    print(f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}: "
          f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters, {args.dtype}, "
          f"{args.rows} x {args.length} tokens, {len(workload.cuts.positions)} cut points", flush=True)

    times: dict[str, float] = {}
    peaks: dict[str, float] = {}
    for method in ow.METHODS:
        runs = 1 if method == "per_cut" else args.repeats
        workload.run(method)  # warm-up: kernels, allocator
        best = float("inf")
        for _ in range(runs):
            reset_peak(device)
            synchronize(device)
            start = time.perf_counter()
            workload.run(method)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
        times[method] = best
        peaks[method] = peak_gib(device)
        print(f"  {ow.LABELS[method]:<42s} {best * 1e3:9.1f} ms   peak {peaks[method]:6.2f} GiB", flush=True)

    shared = workload.run("shared")
    per_cut = workload.run("per_cut")
    delta = float(np.abs(shared - per_cut).max())
    for line in ow.ratio_lines(times):
        print(line)
    memory = peaks["evaluate"] / peaks["forward_entropies"] if peaks["forward_entropies"] else float("nan")
    print(f"    {'peak memory pipeline / yardstick':<42s} {memory:11.2f}x   target <= 1.5")
    print(f"    {'max |J shared - J per cut|':<42s} {delta:11.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), times_s=times, ratios=ow.ratios(times), peak_gib=peaks,
                           peak_memory_pipeline_over_yardstick=memory if peaks["forward_entropies"] else None,
                           max_abs_delta_j=delta), f, indent=2)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0


if __name__ == "__main__":
    main()
