"""Run by test_sharded.py in a process of its own: J of a policy sharded with FSDP2 under a CPU
offload policy, on one process of DEVICE (``cpu`` or ``cuda``), equals the plain model's.

``python offload_fsdp.py OUT DEVICE``. Between calls the offloaded parameters rest on the CPU; on
CUDA the passes must run on the mesh's device, where FSDP2 gathers them, not on a parameter's (the
CPU): with the device of a parameter the rows land on the CPU and the first decoder call fails.
"""

from __future__ import annotations

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import copy  # noqa: E402
import functools  # noqa: E402

import numpy as np  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard  # noqa: E402

import repro_core as rc  # noqa: E402
import tiny  # noqa: E402
from repro_core.objective import ObjectiveScorer  # noqa: E402


def main(out: str, device: str) -> None:
    dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=0, world_size=1,
                            init_method=f"file://{out}/store")
    tok = tiny.tokenizer()
    reference = tiny.model(len(tok)).to(device)
    model = copy.deepcopy(reference)
    mesh = init_device_mesh(device, (1,))
    policy = CPUOffloadPolicy(pin_memory=device == "cuda")
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, offload_policy=policy)
    fully_shard(model, mesh=mesh, offload_policy=policy)
    assert {parameter.device.type for parameter in model.parameters()} == {"cpu"}
    prompts = [tok("Question: what is x?")["input_ids"], tok("Q: x?")["input_ids"]]
    completions = [tok("First we add.\n\nThen we check.\n\nSo x is 7.")["input_ids"], tok("x is 7.")["input_ids"]]
    args = (prompts, completions, ["7", "7"], [0, 3, 5], [0, 4, len(completions[0]), 0, 2])
    got, want = ObjectiveScorer(model, tok).score(*args), ObjectiveScorer(reference, tok).score(*args)
    difference = np.abs(got - want).max()
    select = functools.partial(rc.select_cuts, delimiters=rc.Delimiters.from_tokenizer(tok), k=2)
    evaluated = ObjectiveScorer(model, tok).evaluate(prompts, completions, ["7", "7"], select)
    expected = ObjectiveScorer(reference, tok).evaluate(prompts, completions, ["7", "7"], select)
    difference = max(difference, np.abs(evaluated.j - expected.j).max())
    print(f"offload on {device}: J max abs difference {difference:.2e}")
    assert difference < 1e-4, difference
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
