"""Shared-prefix J inside verl's actor workers: ``ReproActorWorker.compute_repro_objective``.

``repro_sync`` with ``algorithm.repro.objective_mode=shared`` runs its actor workers as
``ReproActorWorker``: verl's ``ActorRolloutRefWorker`` plus one registered method. The controller
writes, per batch row, only the cut points and the answer's token ids to the ``repro_probe``
partition of the TransferQueue (fields ``PROBE_FIELDS``). Each data-parallel rank then reads its
shard of those and of the rollouts' prompts and responses (verl's TransferQueue bridge does the
reading), scores J with ``ObjectiveScorer``'s shared-prefix pass on the actor's own module, and
writes J per cut point back (``J_FIELD``). The controller never builds or moves a probe row.

Under FSDP2 every decoder call gathers the layers' shards from all ranks, so the ranks make the
same number of calls: ``ObjectiveScorer.score`` pads the ranks with fewer (``idle`` on a rank
without a row to score).

Its actor is a ``ReproTrainingWorker`` (``fused.py``), which scores J inside verl's old-log-prob
pass when ``objective_mode=fused`` asks, and is verl's own ``TrainingWorker`` otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict
from verl.single_controller.base.decorator import make_nd_compute_dataproto_dispatch_fn, register
from verl.utils import tensordict_utils as tu
from verl.workers.engine.fsdp.transformer_impl import FSDPEngine
from verl.workers.engine_workers import ActorRolloutRefWorker

from ..errors import ReproError
from ..objective import ObjectiveScorer
from .fused import ANSWER_FIELD, ANSWER_SPAN_FIELD, ReproTrainingWorker, answer_of

__all__ = ["ANSWER_FIELD", "CUTS_FIELD", "J_FIELD", "PROBE_FIELDS", "ReproActorWorker", "objective_of_shard"]

#: Per row: the cut points (M,) int64, the first ``NUM_CUTS_FIELD`` of them real.
CUTS_FIELD = "repro_cuts"
#: Per row: how many cut points the row has (0 for a padding row or a row without one).
NUM_CUTS_FIELD = "repro_num_cuts"
#: What the controller writes; the workers read these and the rollouts' ``prompts`` and ``responses``.
PROBE_FIELDS = [CUTS_FIELD, NUM_CUTS_FIELD, ANSWER_FIELD, ANSWER_SPAN_FIELD]
#: What the workers write back: J (M,) float64 per row, at its first ``NUM_CUTS_FIELD`` entries.
J_FIELD = "repro_j"


def objective_of_shard(model: torch.nn.Module, probes: TensorDict, rollouts: TensorDict) -> TensorDict:
    """J at the cut points of one rank's rows (``probes``: ``PROBE_FIELDS`` and the batch keys
    ``temperature`` and ``max_batch_tokens``; ``rollouts``: ``prompts`` and ``responses``, the
    same rows in the same order), by ``ObjectiveScorer``'s shared-prefix pass on ``model``."""
    # The TransferQueue hands back per-row fields, dense or nested: read them row by row.
    counts = [int(count) for count in probes[NUM_CUTS_FIELD].unbind()]
    scorer = ObjectiveScorer(
        model, tokenizer=None, mode="shared", max_batch_tokens=int(tu.get(probes, "max_batch_tokens")),
        # The answers arrive tokenized; the controller sends J's temperature as the one to use.
        temperature=float(tu.get(probes, "temperature")), j_at_rollout_temperature=True,
    )
    positions = [row.numpy() for row in probes[CUTS_FIELD].unbind()]
    j = np.zeros((len(counts), max([1, *(len(row) for row in positions)])), dtype=np.float64)
    scored = [b for b, count in enumerate(counts) if count]
    if not scored:
        scorer.idle()
        return TensorDict({J_FIELD: torch.from_numpy(j)}, batch_size=len(counts))
    answers, spans = probes[ANSWER_FIELD].unbind(), probes[ANSWER_SPAN_FIELD].unbind()
    prompts, responses = rollouts["prompts"].unbind(), rollouts["responses"].unbind()
    offsets = np.cumsum([0, *(counts[b] for b in scored)])
    values = scorer.score(
        [prompts[b] for b in scored], [responses[b] for b in scored],
        [answer_of(answers[b], spans[b]) for b in scored],
        offsets, np.concatenate([positions[b][: counts[b]] for b in scored]),
    )
    for i, b in enumerate(scored):
        j[b, : counts[b]] = values[offsets[i] : offsets[i + 1]]
    return TensorDict({J_FIELD: torch.from_numpy(j)}, batch_size=len(counts))


class ReproActorWorker(ActorRolloutRefWorker):
    """verl's actor worker with ``compute_repro_objective`` (module docstring) and its actor as
    ``ReproTrainingWorker`` (J inside the old-log-prob pass, ``fused.py``); ``repro_sync`` selects it
    in ``objective_mode=shared`` and ``fused``."""

    actor_worker_cls = ReproTrainingWorker

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
    def compute_repro_objective(self, probes: TensorDict, rollouts: TensorDict) -> TensorDict:
        """J per cut point of this rank's rows (``objective_of_shard``), in the actor's eval mode
        (which brings offloaded parameters back for the call)."""
        engine = self.actor.engine if self.actor is not None else None
        if not isinstance(engine, FSDPEngine):  # the trainer's start-up check asks for fsdp2 already
            raise ReproError("actor_rollout_ref.actor.strategy", "compute_repro_objective runs on the actor of verl's "
                             f"FSDP engine, got {type(engine).__name__}")
        with engine.eval_mode():
            return objective_of_shard(engine.module, probes, rollouts).cpu()
