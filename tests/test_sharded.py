"""Sharded policies: the TRL trainers under FSDP2 (two gloo processes, tests/distributed_fsdp.py),
and the objective on a policy whose parameters ZeRO-3 has partitioned (their shapes hidden)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

import tiny  # noqa: E402
from repro_core.objective import ObjectiveScorer  # noqa: E402

HERE = Path(__file__).parent


KINDS = ("grpo", "ppo")


@pytest.fixture(scope="module")
def fsdp2_runs(tmp_path_factory) -> subprocess.CompletedProcess[str]:
    """Both trainers, one after the other, in one launch of 2 processes (each start imports torch, TRL and
    accelerate: half the time of a run)."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29535",
         str(HERE / "distributed_fsdp.py"), str(tmp_path_factory.mktemp("fsdp2")), *KINDS],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_fsdp2_trains_and_equals_one_process(fsdp2_runs, kind):
    """Two steps on a policy sharded over 2 processes, then one group of 8 rows (4 per process, each
    its own prompt): the per-token advantages equal the one-process result within 1e-5."""
    assert f"{kind}: 2 steps on FSDP2, fixed batch max abs difference" in fsdp2_runs.stdout, \
        (fsdp2_runs.stdout[-2000:], fsdp2_runs.stderr[-3000:])
    assert fsdp2_runs.returncode == 0, fsdp2_runs.stderr[-3000:]


def partition_like_zero3(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What ZeRO-3 leaves of a module outside its forward: every parameter's data empty, its shape
    kept only in ``ds_shape``; returns the data, for the gather."""
    full = {}
    for name, parameter in model.named_parameters():
        full[name] = parameter.data
        parameter.ds_shape = parameter.shape
        parameter.data = torch.empty(0, dtype=parameter.dtype)
    return full


def gather_like_zero3(model: torch.nn.Module, full: dict[str, torch.Tensor]) -> None:
    """ZeRO-3's ``GatheredParameters`` as TRL's ``unwrap_model_for_generation`` enters it."""
    for name, parameter in model.named_parameters():
        parameter.data = full[name]


@pytest.mark.parametrize("tied", [False, True])
def test_sizes_come_from_the_model_not_its_partitioned_parameters(tok, tied):
    """DeepSpeed cannot run here (it needs an accelerator), so its partitioning is stood in for:
    the objective sizes its logit chunks from the head's declared width, not a parameter's shape
    (which is empty under ZeRO-3: once a division by zero), and scores as the plain model once the
    parameters are gathered, the way TRL's generation gathers them."""
    from repro_core.objective.model import LOGIT_CHUNK_ELEMENTS, ModelAdapter

    model = tiny.model(len(tok), tie_word_embeddings=tied)
    reference = tiny.model(len(tok), tie_word_embeddings=tied)
    full = partition_like_zero3(model)
    assert model.lm_head.weight.shape == (0,)
    adapter = ModelAdapter(model)
    assert adapter.logit_width == len(tok) and adapter.vocab_size == len(tok)
    step = LOGIT_CHUNK_ELEMENTS // len(tok)
    assert [part.stop - part.start for part in adapter.token_chunks(step + 1)] == [step, 1]
    gather_like_zero3(model, full)
    prompts, completions = [[1, 2, 3], [4]], [[5, 6, 7, 8], [9, 10]]
    args = (prompts, completions, ["17", "3"], [0, 2, 4], [0, 4, 0, 2])
    for mode in ("shared", "per_cut"):
        np.testing.assert_array_equal(ObjectiveScorer(model, tok, mode=mode).score(*args),
                                      ObjectiveScorer(reference, tok, mode=mode).score(*args))


@pytest.mark.slow
@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                             reason="needs CUDA")]),
])
def test_fsdp2_cpu_offload(tmp_path, device):
    """J of an FSDP2 policy whose parameters rest on the CPU between calls (CPUOffloadPolicy, as
    verl's offload_policy) equals the plain model's; on CUDA the passes run on the mesh's device
    (tests/offload_fsdp.py)."""
    result = subprocess.run([sys.executable, str(HERE / "offload_fsdp.py"), str(tmp_path), device],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert f"offload on {device}: J max abs difference" in result.stdout
