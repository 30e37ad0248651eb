"""``repro_sync``: verl's synchronous v1 trainer with RePro's process rewards in the advantage step.

Select it with ``trainer.v1.trainer_mode=repro_sync`` and a ``repro_*`` estimator. Everything but
the advantage step is verl's ``PPOTrainerSync``. The advantage step:

1. reads, from the TransferQueue, the prompts, responses, ground truths
   (``reward_model.ground_truth``) and the per-token entropies that verl's old-log-prob pass has
   just computed at the rollout temperature;
2. selects the cut points in Rust (``select_cuts``);
3. scores J through the actor workers at temperature 1 (the rollout temperature with
   ``j_at_rollout_temperature``), J averaging the answer's scored positions (``j_tokens``):
   - ``objective_mode=shared`` (the default): the controller writes only the cut points and the
     answer ids; each rank of ``ReproActorWorker`` reads its shard's rollouts and scores every cut
     point against one shared-prefix pass (``worker.py``), the shards balanced by their work;
   - ``objective_mode=fused``: steps 1 to 3 run inside verl's old-log-prob pass on the workers
     (``fused.py``), for which the trainer writes each row's answer ids and the cut settings
     before the pass (``_compute_old_log_prob``); the advantage step reads the cut points and J
     the pass wrote;
   - ``objective_mode=per_cut``: one probe row ``prompt + response[:p] + answer`` per cut point,
     through verl's own ``compute_log_prob``, padded to whole micro-batches per rank and balanced
     over the data-parallel ranks (the plain method, and the other paths' oracle);
4. turns J into process rewards (``score_steps``) and runs the parent's advantage step inside
   ``process_rewards(cuts, step_rewards, values)``, the cuts laid on verl's batch rows (padding rows
   empty), so the estimator sees them beside verl's scores.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import ray
import torch
import transfer_queue as tq
from omegaconf import DictConfig, open_dict
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.seqlen_balancing import calculate_workload, get_seqlen_balanced_partitions
from verl.utils.tensordict_utils import list_of_dict_to_tensordict
from verl.workers.utils.padding import response_from_nested

from .._api import Cuts, score_steps
from ..errors import ReproError
from ..objective import AnswerIds, AnswerTokens
from ..pipeline import cut_selector, step_metrics
from .check import STRATEGIES, repro_config, startup_problems
from .estimators import REPRO_KEYS, ProcessRewards, process_rewards
from .fused import CUTS_OUTPUT, J_OUTPUT, OUTPUT_FIELDS, REQUEST_KEY, TOKENS_OUTPUT, FusedRequest
from .worker import ANSWER_FIELD, ANSWER_SPAN_FIELD, CUTS_FIELD, J_FIELD, NUM_CUTS_FIELD, PROBE_FIELDS, ReproActorWorker

__all__ = ["PROBE_PARTITION", "ReproTrainerSync"]

#: TransferQueue partition of the probes (per_cut: probe rows; shared: cut points and answer ids
#: per batch row, and J); they live there for one advantage step.
PROBE_PARTITION = "repro_probe"

#: The actor roles whose worker class ``objective_mode=shared`` and ``fused`` replace with ``ReproActorWorker``.
_ACTOR_ROLES = (Role.Actor, Role.ActorRollout, Role.ActorRolloutRef)
#: What the advantage step reads of every batch row, beside each mode's own fields.
_CHECKED_FIELDS = ["response_mask", "position_ids", "reward_model"]

class _Rollouts(NamedTuple):
    """A batch's real rows (``real``: their batch indices, padding rows left out) as the advantage
    step reads them: token tensors, answer ids, cut points (one row per real row) and, for
    repro_gae, the critic's values (B, T) over every batch row."""

    real: list[int]
    prompts: list[torch.Tensor]
    completions: list[torch.Tensor]
    answers: list[AnswerIds]
    cuts: Cuts
    values: np.ndarray | None


@register_trainer("repro_sync")
class ReproTrainerSync(PPOTrainerSync):
    """verl's sync trainer; the advantage step adds RePro's process rewards (module docstring)."""

    def __init__(self, config: DictConfig) -> None:
        # The start-up checks (check.py), as verl-check and main_ppo's validation run them.
        problems = startup_problems(config)
        if problems:
            raise problems[0]
        # verl branches on trainer_mode == "sync" (replay buffer, refills, checkpoints), and this is
        # that trainer: it runs under that mode with its own copy of the config.
        config = copy.deepcopy(config)
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
        self.repro = repro_config(config)
        super().__init__(config)

    def _init_resource_pool_mgr(self) -> None:
        super()._init_resource_pool_mgr()
        if self.repro.objective_mode in STRATEGIES:  # the actor workers that score J (worker.py, fused.py)
            for role in _ACTOR_ROLES:
                if role in self.role_worker_mapping:
                    self.role_worker_mapping[role] = ray.remote(ReproActorWorker)

    def _init_tokenizer(self) -> None:
        super()._init_tokenizer()
        try:  # the settings resolved for the tokenizer (think_end, delimiters): named as verl keys
            self._select = cut_selector(self.tokenizer, self.repro)
            self._answer_ids = AnswerTokens(
                self.tokenizer, self.repro.answer_template, self.repro.j_tokens, self.repro.answer_special_tokens
            )
            self._fused_request = FusedRequest(temperature=self._j_temperature(), **self._select.keywords)
        except ReproError as error:
            if error.argument in REPRO_KEYS:
                raise error.renamed(f"algorithm.repro.{error.argument}") from None
            raise

    def _compute_old_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """verl's old-log-prob pass; with ``objective_mode=fused`` it also selects the cut points and
        scores J (``fused.py``): each row's answer ids go into the batch first, and the cut settings
        into this call's batch info only."""
        if self.repro.objective_mode != "fused":
            return super()._compute_old_log_prob(batch, metrics)
        _, real, answers = self._read(batch, [])
        ids = np.zeros((len(batch), max([1, *(len(answer.ids) for answer in answers)])), dtype=np.int64)
        spans = np.zeros((len(batch), 3), dtype=np.int64)  # a padding row: no answer (length 0)
        for b, answer in zip(real, answers, strict=True):
            ids[b, : len(answer.ids)] = answer.ids
            spans[b] = (len(answer.ids), answer.start, answer.stop)
        fields = {ANSWER_FIELD: torch.from_numpy(ids), ANSWER_SPAN_FIELD: torch.from_numpy(spans)}
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id,
                        fields=TensorDict(fields, batch_size=len(batch)))
        if batch.fields is not None:  # a batch that names its fields: the workers read these too
            batch.fields = [*batch.fields, *(name for name in fields if name not in batch.fields)]
        batch.extra_info[REQUEST_KEY] = self._fused_request
        try:
            return super()._compute_old_log_prob(batch, metrics)
        finally:  # the other calls of the actor (the reference's log-probs, the update) score no J
            batch.extra_info.pop(REQUEST_KEY, None)

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        process = self._process_rewards(batch, metrics)
        with process_rewards(process.cuts, process.step_rewards, process.values):
            return super()._compute_advantage(batch, metrics)

    # ------------------------------------------------------------------------------ RePro

    def _process_rewards(self, batch: KVBatchMeta, metrics: dict) -> ProcessRewards:
        """The batch's process rewards: its cut points (one row per batch row, padding rows empty)
        and the step reward at each, plus the critic's values (B, T) for repro_gae."""
        if self.repro.objective_mode == "fused":
            real, cuts, j, tokens, values = self._objective_fused(batch)
        else:
            rollouts = self._rollouts(batch)
            real, cuts, values = rollouts.real, rollouts.cuts, rollouts.values
            if self.repro.objective_mode == "shared":
                j, tokens = self._objective_shared(batch, real, rollouts.prompts, rollouts.answers, cuts)
            else:
                j, tokens = self._objective_per_cut(rollouts.prompts, rollouts.completions, rollouts.answers, cuts)
        steps = score_steps(j, cuts.offsets, w=self.repro.w, stability_ema=self.repro.stability_ema)
        if real:
            metrics.update(step_metrics(cuts, j, magnitude=steps.magnitude, stability=steps.stability,
                                        reward=steps.reward))
        # What J costs the workers: its tokens over those of the old-log-prob pass (every batch row).
        metrics["repro/objective_token_ratio"] = tokens / max(1, sum(tag["seq_len"] for tag in batch.tags))
        # The cuts onto the batch's rows, a padding row empty. The real rows keep their order, so the
        # points do too, and steps.reward stays aligned with them.
        rows = [np.empty(0, dtype=np.int64)] * len(batch)
        ends = np.zeros(len(batch), dtype=np.int64)
        for i, b in enumerate(real):
            rows[b], ends[b] = cuts.row(i), cuts.ends[i]
        return ProcessRewards(Cuts.from_rows(rows, ends), steps.reward, values)

    def _read(self, batch: KVBatchMeta, fields: Sequence[str]) -> tuple[TensorDict, list[int], list[AnswerIds]]:
        """``fields`` of the batch from the TransferQueue, with the ones every mode checks; the real
        rows (verl's padding rows left out), each checked, and their answer ids."""
        fields = [*fields, *(name for name in _CHECKED_FIELDS if name not in fields)]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        missing = [name for name in fields if name not in data.keys()]
        if missing:
            raise ReproError(
                "trainer.v1.trainer_mode",
                f"repro_sync reads {fields} from the TransferQueue; the batch has no {missing}",
            )
        if data["position_ids"].dim() != 2:
            raise ReproError(
                "trainer.v1.trainer_mode", "repro_sync scores text rows; multi-dimensional position_ids "
                "(multi-modal rows) are not supported"
            )
        real = [b for b, tag in enumerate(batch.tags) if not tag.get("is_padding", False)]
        masks = data["response_mask"].unbind()
        reward_models = list(data["reward_model"])  # each read of a non-tensor field rebuilds the list
        answers = []
        for b in real:
            if not bool(masks[b].bool().all()):
                raise ReproError(
                    "trainer.v1.trainer_mode", f"repro_sync scores single-turn responses; row {batch.keys[b]} "
                    "masks tokens inside its response (multi-turn tool output)"
                )
            ground_truth = (reward_models[b] or {}).get("ground_truth")
            if ground_truth is None:
                raise ReproError(
                    "reward_model.ground_truth", f"row {batch.keys[b]} has none; repro_sync scores J on the answer"
                )
            answers.append(self._answer_ids(ground_truth, b))
        return data, real, answers

    def _rollouts(self, batch: KVBatchMeta) -> _Rollouts:
        """The batch's real rows read from the TransferQueue and checked, and their cut points."""
        data, real, answers = self._read(batch, ["prompts", "responses", "entropy", *self._value_fields()])
        lengths = data["response_mask"].offsets().diff().tolist()
        width = max([1, *lengths])
        prompt_rows, responses = data["prompts"].unbind(), data["responses"].unbind()
        entropies = data["entropy"].unbind()
        token_ids = np.zeros((len(real), width), dtype=np.int64)
        entropy = np.zeros((len(real), width), dtype=np.float32)
        for i, b in enumerate(real):
            token_ids[i, : lengths[b]] = responses[b].numpy()
            entropy[i, : lengths[b]] = entropies[b].float().numpy()
        mask = np.arange(width) < np.asarray([lengths[b] for b in real], dtype=np.int64)[:, None]
        return _Rollouts(real, [prompt_rows[b] for b in real], [responses[b] for b in real], answers,
                         self._select(token_ids, mask, entropy), self._values(data))

    def _value_fields(self) -> list[str]:
        return ["values"] if self.repro.estimator == "ppo" else []

    def _values(self, data: TensorDict) -> np.ndarray | None:
        """repro_gae's critic values (B, T) over every batch row, right-padded; None otherwise."""
        if self.repro.estimator != "ppo":
            return None
        rows = data["values"].unbind()
        values = np.zeros((len(rows), max([1, *(len(row) for row in rows)])), dtype=np.float32)
        for b, row in enumerate(rows):
            values[b, : len(row)] = row.float().numpy()
        return values

    def _objective_fused(self, batch: KVBatchMeta) -> tuple[list[int], Cuts, np.ndarray, int, np.ndarray | None]:
        """The real rows, their cut points and J (N,) as the old-log-prob pass wrote them
        (``objective_mode=fused``), the tokens of its probe calls, and repro_gae's values."""
        data, real, _ = self._read(batch, [*OUTPUT_FIELDS, *self._value_fields()])
        points = [row[row >= 0].numpy() for row in data[CUTS_OUTPUT].unbind()]
        values = data[J_OUTPUT].unbind()
        unscored = [batch.keys[b] for b in real if not len(points[b])]
        if unscored:
            raise ReproError("algorithm.repro.objective_mode", f"objective_mode=fused: the old-log-prob pass scored "
                             f"no J for rows {unscored}; it runs on ReproActorWorker's actor (ReproTrainingWorker)")
        j = np.concatenate([np.zeros(0), *(values[b][: len(points[b])].numpy() for b in real)])
        tokens = int(sum(int(row.sum()) for row in data[TOKENS_OUTPUT].unbind()))
        return real, Cuts.from_rows([points[b] for b in real]), j.astype(np.float64, copy=False), tokens, \
            self._values(data)

    def _objective_per_cut(
        self,
        prompts: Sequence[torch.Tensor],
        completions: Sequence[torch.Tensor],
        answers: Sequence[AnswerIds],
        cuts: Cuts,
    ) -> tuple[np.ndarray, int]:
        """J (N,) at every cut point, and the tokens forwarded for it: the mean log-probability of
        the scored answer tokens (``answer.ids[start:stop]``) of a probe row ``prompt +
        completion[:p] + answer.ids`` through verl's ``compute_log_prob`` (module docstring)."""
        rows: list[dict[str, Any]] = []
        for prompt, completion, answer, points in zip(prompts, completions, answers, cuts.rows(), strict=True):
            answer_tensor = torch.tensor(answer.ids, dtype=torch.int64)
            for p in points.tolist():
                rows.append(_probe_row(prompt.long(), torch.cat([completion[:p].long(), answer_tensor])))
        if not rows:
            return np.zeros(0), 0
        dp_size = self._actor_dp_size()
        # The dispatch splits a batch evenly over the data-parallel ranks, and without dynamic batch
        # sizes each rank splits its share into whole micro-batches: pad with the shortest probe.
        rollout = self.config.actor_rollout_ref.rollout
        micro = 1 if rollout.log_prob_use_dynamic_bsz else rollout.log_prob_micro_batch_size_per_gpu or 1
        shortest = min(rows, key=lambda row: row["input_ids"].numel())
        padded = rows + [shortest] * (-len(rows) % (dp_size * micro))
        run = uuid.uuid4().hex
        keys = [f"repro{run}_{n}" for n in range(len(padded))]
        tags = [{"prompt_len": row["prompts"].numel(), "response_len": row["responses"].numel(),
                 "seq_len": row["input_ids"].numel(), "is_padding": n >= len(rows)} for n, row in enumerate(padded)]
        meta = tq.kv_batch_put(keys=keys, partition_id=PROBE_PARTITION, fields=list_of_dict_to_tensordict(padded),
                               tags=tags)
        try:
            workload = calculate_workload(torch.tensor([tag["seq_len"] for tag in tags], dtype=torch.int64))
            partitions = get_seqlen_balanced_partitions(workload.tolist(), k_partitions=dp_size, equal_size=True)
            meta.reorder([n for partition in partitions for n in partition])
            meta.extra_info = {"calculate_entropy": False, "compute_loss": False, "temperature": self._j_temperature()}
            self.actor_rollout_wg.compute_log_prob(meta)
            output = tq.kv_batch_get(keys=keys[: len(rows)], partition_id=PROBE_PARTITION,
                                     select_fields=["log_probs", "response_mask"])
        finally:
            tq.kv_clear(keys=keys, partition_id=PROBE_PARTITION)
        log_probs = response_from_nested(output["log_probs"], output["response_mask"]).unbind()
        per_point = [answers[b] for b in cuts.row_index().tolist()]
        j = np.asarray([
            row[len(row) - len(answer.ids) :][answer.start : answer.stop].double().mean().item()
            for row, answer in zip(log_probs, per_point, strict=True)
        ])
        return j, sum(tag["seq_len"] for tag in tags)

    def _objective_shared(
        self,
        batch: KVBatchMeta,
        real: Sequence[int],
        prompts: Sequence[torch.Tensor],
        answers: Sequence[AnswerIds],
        cuts: Cuts,
    ) -> tuple[np.ndarray, int]:
        """J (N,) at every cut point, and the tokens forwarded for it, by the actor workers'
        shared-prefix pass (``ReproActorWorker.compute_repro_objective``): the controller writes
        each batch row's cut points and answer ids (none for a padding row) and reads J back."""
        size = len(batch)
        counts = np.zeros(size, dtype=np.int64)
        counts[list(real)] = np.diff(cuts.offsets)
        positions = np.zeros((size, max(1, int(counts.max(initial=0)))), dtype=np.int64)
        answer_ids = np.zeros((size, max([1, *(len(answer.ids) for answer in answers)])), dtype=np.int64)
        spans = np.zeros((size, 3), dtype=np.int64)
        # Work per row: its prefix pass up to the last cut and one answer-long probe per cut point.
        work = np.zeros(size, dtype=np.int64)
        for i, b in enumerate(real):
            row, answer = cuts.row(i), answers[i]
            positions[b, : len(row)] = row
            answer_ids[b, : len(answer.ids)] = answer.ids
            spans[b] = (len(answer.ids), answer.start, answer.stop)
            if len(row):
                work[b] = len(prompts[i]) + int(row.max()) + len(row) * len(answer.ids)
        fields = TensorDict({CUTS_FIELD: torch.from_numpy(positions), NUM_CUTS_FIELD: torch.from_numpy(counts),
                             ANSWER_FIELD: torch.from_numpy(answer_ids), ANSWER_SPAN_FIELD: torch.from_numpy(spans)},
                            batch_size=size)
        tq.kv_batch_put(keys=batch.keys, partition_id=PROBE_PARTITION, fields=fields)
        try:
            dp_size = self._actor_dp_size()
            partitions = get_seqlen_balanced_partitions(
                calculate_workload(torch.from_numpy(work)).tolist(), k_partitions=dp_size,
                equal_size=size % dp_size == 0,
            )
            order = [n for partition in partitions for n in partition]
            keys = [batch.keys[n] for n in order]
            tags: list[dict[str, Any]] = [{} for _ in order]
            probes = KVBatchMeta(keys=keys, tags=tags, partition_id=PROBE_PARTITION, fields=PROBE_FIELDS, extra_info={
                "temperature": self._j_temperature(), "max_batch_tokens": self.repro.max_batch_tokens})
            rollouts = KVBatchMeta(keys=keys, tags=tags, partition_id=batch.partition_id,
                                   fields=["prompts", "responses"])
            self.actor_rollout_wg.compute_repro_objective(probes, rollouts)
            output = tq.kv_batch_get(keys=[batch.keys[b] for b in real], partition_id=PROBE_PARTITION,
                                     select_fields=[J_FIELD])
        finally:
            tq.kv_clear(keys=batch.keys, partition_id=PROBE_PARTITION)
        values = output[J_FIELD].unbind() if real else []
        j = np.concatenate([np.zeros(0), *(values[i][: counts[b]].numpy() for i, b in enumerate(real))])
        return j.astype(np.float64, copy=False), int(work.sum())

    def _j_temperature(self) -> float:
        """The temperature of J's log-probabilities: 1, or the rollout's with j_at_rollout_temperature."""
        return float(self.repro.temperature) if self.repro.j_at_rollout_temperature else 1.0

    def _actor_dp_size(self) -> int:
        """Data-parallel size of the actor mesh, as verl's own batch balancing reads it."""
        group = self.actor_rollout_wg
        if "actor" not in group._dispatch_info:
            group._dispatch_info["actor"] = group._query_dispatch_info("actor")
        return max(group._dispatch_info["actor"]) + 1


def _probe_row(prompt: torch.Tensor, response: torch.Tensor) -> dict[str, Any]:
    """One probe row in the agent loop's layout (text only: 1-D positions, no multi-modal inputs)."""
    input_ids = torch.cat([prompt, response])
    ones = torch.ones_like(response)
    return {
        "prompts": prompt,
        "responses": response,
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "position_ids": torch.arange(input_ids.numel(), dtype=torch.int64),
        "response_mask": ones,
        "loss_mask": ones,
        "multi_modal_inputs": {},
    }
