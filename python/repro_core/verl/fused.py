"""``objective_mode=fused``: J inside verl's old-log-prob pass, ``ReproTrainingWorker``.

Before the old-log-prob pass, the trainer writes each batch row's answer ids (``ANSWER_FIELD`` and
``ANSWER_SPAN_FIELD``, as for the shared path; a span of length 0 for verl's padding rows) into the
batch, and the cut settings (``FusedRequest``) into the call's batch info under ``REQUEST_KEY``.
``ReproActorWorker`` runs its actor as ``ReproTrainingWorker``: verl's ``TrainingWorker`` whose
``infer_batch``, when the request is there, wraps the engine's ``forward_step`` for that call:

1. verl's forward step runs unchanged, every attention layer's keys and values of the micro-batch
   kept (``objective.fused.keeping_keys_values``): the old log-probs and entropies are verl's, bit
   for bit;
2. ``FusedScorer`` selects each row's cut points in Rust from that step's own entropies and scores
   J at each against the kept keys and values, in one probe call through the engine's root module
   (FSDP1 or FSDP2; every rank makes one such call per micro-batch, so the ranks stay in step);
3. the cuts, J and the probe tokens join the step's model outputs as per-row fields
   (``OUTPUT_FIELDS``): verl itself undoes its micro-batching and dynamic batch sizes and writes
   them to the TransferQueue beside the log-probs and entropies, where the trainer reads them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from verl.single_controller.base.decorator import make_nd_compute_dataproto_dispatch_fn, register
from verl.utils import tensordict_utils as tu
from verl.utils.device import get_device_name
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead
from verl.workers.engine_workers import TrainingWorker

from .._api import select_cuts
from ..delimiters import Delimiters
from ..errors import ReproError
from ..objective import AnswerIds
from ..objective.fused import FusedScorer, KeptRows, keeping_keys_values

__all__ = [
    "ANSWER_FIELD", "ANSWER_SPAN_FIELD", "CUTS_OUTPUT", "J_OUTPUT", "OUTPUT_FIELDS", "REQUEST_KEY", "TOKENS_OUTPUT",
    "FusedRequest", "ReproTrainingWorker", "answer_of",
]

#: Per row: the answer's token ids (A,) int64, then (length, start, stop) in ``ANSWER_SPAN_FIELD``:
#: ``ids[:length]`` are teacher-forced and ``ids[start:stop]`` averaged (``AnswerIds``); length 0:
#: a row without one (verl's padding rows).
ANSWER_FIELD = "repro_answer"
ANSWER_SPAN_FIELD = "repro_answer_span"
#: The old-log-prob call's batch info key of the ``FusedRequest``.
REQUEST_KEY = "repro_fused"
#: Per row, written by the worker: the cut points (k + 2,) int64, -1 past the row's own ...
CUTS_OUTPUT = "repro_fused_cuts"
#: ... J at each (k + 2,) float64, and (1,) int64 the row's share of its micro-batch's probe tokens.
J_OUTPUT = "repro_fused_j"
TOKENS_OUTPUT = "repro_fused_tokens"
OUTPUT_FIELDS = [CUTS_OUTPUT, J_OUTPUT, TOKENS_OUTPUT]


@dataclass(frozen=True)
class FusedRequest:
    """What the workers need to select the cut points and score J: ``select_cuts``'s options
    resolved for the tokenizer, and J's temperature."""

    delimiters: Delimiters
    k: int
    think_end_id: int | None
    temperature: float

    @property
    def width(self) -> int:
        """The most cut points of a row: 0, the k breaks and the end of thinking."""
        return self.k + 2


def answer_of(ids: torch.Tensor, span: torch.Tensor) -> AnswerIds | None:
    """A row's ``AnswerIds`` from its ``ANSWER_FIELD`` and ``ANSWER_SPAN_FIELD`` (None: no answer)."""
    length, start, stop = span.tolist()
    return AnswerIds(ids[:length].tolist(), start, stop) if length else None


class ReproTrainingWorker(TrainingWorker):
    """verl's ``TrainingWorker``; ``infer_batch`` scores J inside the pass when the call asks
    (module docstring), and is verl's own otherwise."""

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="train"), blocking=False)
    def infer_batch(self, data: TensorDict) -> TensorDict:
        request = tu.get(data, REQUEST_KEY)
        if request is None:
            return super().infer_batch(data)
        with fused_forward_step(self.engine, request):
            return super().infer_batch(data)


@contextmanager
def fused_forward_step(engine: Any, request: FusedRequest) -> Iterator[None]:
    """The engine's ``forward_step`` for one ``infer_batch``: verl's, then J (module docstring)."""
    if not isinstance(engine, FSDPEngineWithLMHead):
        raise ReproError("actor_rollout_ref.actor.strategy", "objective_mode=fused scores J inside the forward step "
                         f"of verl's FSDP engine (fsdp or fsdp2), got {type(engine).__name__}")
    select = functools.partial(select_cuts, delimiters=request.delimiters, k=request.k,
                               think_end_id=request.think_end_id)
    scorer = FusedScorer(engine.module, select, temperature=request.temperature)
    verls = engine.forward_step

    def forward_step(micro_batch: TensorDict, loss_function: Any, forward_only: bool) -> Any:
        with keeping_keys_values(engine.module) as kept:
            loss, output = verls(micro_batch, loss_function=loss_function, forward_only=forward_only)
        # J's probe call under the autocast of verl's own forward step (none in float32).
        dtype = getattr(engine, "_autocast_dtype", torch.bfloat16)
        with torch.autocast(get_device_name(), dtype=dtype, enabled=dtype != torch.float32):
            output["model_output"].update(_objective(scorer, micro_batch, output["model_output"], kept, request))
        return loss, output

    engine.forward_step = forward_step  # type: ignore[method-assign]
    try:
        yield
    finally:
        del engine.forward_step  # verl's own method again


def _objective(
    scorer: FusedScorer, micro_batch: TensorDict, model_output: dict, kept: Any, request: FusedRequest
) -> dict[str, torch.Tensor]:
    """The micro-batch's ``OUTPUT_FIELDS`` from its pass (``kept`` keys and values, entropies)."""
    if "entropy" not in model_output:
        raise ReproError("trainer.v1.trainer_mode", "objective_mode=fused selects the cut points from the entropies "
                         "of verl's old-log-prob pass, and this call computed none (calculate_entropy)")
    input_ids = [row.reshape(-1) for row in micro_batch["input_ids"].unbind()]
    response_lengths = [row.numel() for row in micro_batch["response_mask"].unbind()]
    # A row's response entropies, as verl's response_from_nested takes them (shifted left by one).
    pass_entropies = model_output["entropy"].unbind()
    entropies = [row[len(ids) - length - 1 : len(ids) - 1]
                 for row, ids, length in zip(pass_entropies, input_ids, response_lengths, strict=True)]
    answers = [answer_of(ids, span) for ids, span in
               zip(micro_batch[ANSWER_FIELD].unbind(), micro_batch[ANSWER_SPAN_FIELD].unbind(), strict=True)]
    rows = KeptRows(input_ids, [row.reshape(-1) for row in micro_batch["position_ids"].unbind()], response_lengths,
                    packed=tu.get_non_tensor_data(micro_batch, "use_remove_padding", default=True))
    result = scorer.score(kept, rows, entropies, answers)
    count = len(input_ids)
    cuts = torch.full((count, request.width), -1, dtype=torch.int64)
    j = torch.zeros((count, request.width), dtype=torch.float64)
    for b, (points, values) in enumerate(zip(result.cuts.rows(), result.cuts.split(result.j), strict=True)):
        cuts[b, : len(points)] = torch.from_numpy(points)
        j[b, : len(points)] = torch.from_numpy(values)
    scored = np.flatnonzero(np.diff(result.cuts.offsets))
    tokens = torch.zeros((count, 1), dtype=torch.int64)
    if len(scored):  # each scored row's share of the probe grid, the remainder on the first
        tokens[scored, 0] = result.tokens // len(scored)
        tokens[scored[0], 0] += result.tokens % len(scored)
    else:
        tokens[0, 0] = result.tokens
    return {CUTS_OUTPUT: cuts, J_OUTPUT: j, TOKENS_OUTPUT: tokens}
