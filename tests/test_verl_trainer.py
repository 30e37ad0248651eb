"""The repro_sync trainer on the real verl 0.9 and TransferQueue (a local Ray on CPU): its advantage
step, with a real tiny model standing in for the actor workers (verl's compute_log_prob, and
ReproActorWorker's compute_repro_objective through the worker's own objective_of_shard), equals the
ReproScorer pipeline on the same rollouts, in both objective modes."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verl")

import ray  # noqa: E402
import transfer_queue as tq  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from transfer_queue import KVBatchMeta  # noqa: E402
from verl.trainer.ppo.v1 import get_trainer_cls  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

import tiny  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core.pipeline import ReproConfig, ReproScorer  # noqa: E402
from repro_core.verl import ESTIMATORS, ReproTrainerSync  # noqa: E402
from repro_core.verl.check import repro_config  # noqa: E402
from repro_core.verl.estimators import OUTSIDE_THE_BLOCK, REPRO_KEYS  # noqa: E402
from repro_core.verl.trainer import PROBE_PARTITION  # noqa: E402
from repro_core.verl.worker import ReproActorWorker, objective_of_shard  # noqa: E402

# verl warns that a non-gae estimator runs without a critic, as meant here.
pytestmark = pytest.mark.filterwarnings("ignore:Disabled critic:UserWarning")

TEMPERATURE = 0.7
GROUP = 3
MICRO_BATCH = 2
ANSWER = "17"


@pytest.fixture(scope="module")
def transfer_queue():
    """A local Ray (TransferQueue's controller and two storage units take one CPU each) and TQ."""
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init()
    yield
    tq.close()
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny tokenizer and model on disk: verl's trainer loads the tokenizer from the model path."""
    tok = tiny.tokenizer()
    path = tmp_path_factory.mktemp("tiny")
    tok.save_pretrained(path)
    tiny.model(len(tok)).save_pretrained(path)
    return path


class TinyActorWorkers:
    """Stands in for verl's actor worker group: ``compute_log_prob`` on TransferQueue rows with a
    real transformers model. Like verl's engine workers it writes ``log_probs`` (and ``entropy`` when
    asked) over the whole sequence, shifted left by one, at the batch's temperature; the batch must
    split evenly over ``dp_size`` data-parallel ranks and each rank's share into micro-batches of
    ``micro_batch`` rows (verl's fixed batch size). ``compute_repro_objective`` splits its batches as
    verl's dispatch does and runs ``ReproActorWorker``'s own ``objective_of_shard`` on each rank's
    share. ``tests/verl_engine.py`` checks these semantics against verl's own FSDP2 worker."""

    def __init__(self, model, dp_size: int, micro_batch: int) -> None:
        self.model = model
        self.dp_size = dp_size
        self.micro_batch = micro_batch
        self._dispatch_info: dict[str, list[int]] = {}
        self.batches: list[KVBatchMeta] = []

    def compute_repro_objective(self, probes: KVBatchMeta, rollouts: KVBatchMeta) -> KVBatchMeta:
        assert probes.keys == rollouts.keys and probes.partition_id == PROBE_PARTITION
        for probe_shard, rollout_shard in zip(probes.chunk(self.dp_size), rollouts.chunk(self.dp_size), strict=True):
            data = tq.kv_batch_get(keys=probe_shard.keys, partition_id=PROBE_PARTITION, select_fields=probes.fields)
            tu.assign_non_tensor(data, **probes.extra_info)
            rows = tq.kv_batch_get(keys=rollout_shard.keys, partition_id=rollouts.partition_id,
                                   select_fields=rollouts.fields)
            tq.kv_batch_put(keys=probe_shard.keys, partition_id=PROBE_PARTITION,
                            fields=objective_of_shard(self.model, data, rows))
        self.batches.append(probes)
        return probes

    def _query_dispatch_info(self, role: str) -> list[int]:
        return list(range(self.dp_size))

    @torch.no_grad()
    def compute_log_prob(self, meta: KVBatchMeta) -> KVBatchMeta:
        assert len(meta) % (self.dp_size * self.micro_batch) == 0, "ranks x micro-batches must split the batch"
        data = tq.kv_batch_get(keys=meta.keys, partition_id=meta.partition_id,
                               select_fields=["input_ids", "position_ids"])
        log_probs, entropies = [], []
        for ids, positions in zip(data["input_ids"].unbind(), data["position_ids"].unbind(), strict=True):
            logits = self.model(input_ids=ids[None], position_ids=positions[None]).logits[0].float()
            logp = torch.log_softmax(logits / meta.extra_info["temperature"], dim=-1)
            shifted = torch.zeros(len(ids))
            shifted[:-1] = logp[:-1].gather(1, ids[1:, None])[:, 0]
            log_probs.append(shifted)
            entropies.append(-(logp.exp() * logp).sum(-1))
        fields = {"log_probs": torch.nested.as_nested_tensor(log_probs, layout=torch.jagged)}
        if meta.extra_info.get("calculate_entropy"):
            fields["entropy"] = torch.nested.as_nested_tensor(entropies, layout=torch.jagged)
        tq.kv_batch_put(keys=meta.keys, partition_id=meta.partition_id,
                        fields=TensorDict(fields, batch_size=len(meta.keys)))
        self.batches.append(meta)
        return meta


def verl_config(model_dir, estimator: str = "repro_grpo", *overrides: str):
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer", overrides=[
            f"algorithm.adv_estimator={estimator}", "trainer.v1.trainer_mode=repro_sync",
            "+algorithm.repro.k=3", "+algorithm.repro.alpha=0.2", "+algorithm.repro.w=0.3",
            f"actor_rollout_ref.rollout.n={GROUP}", f"actor_rollout_ref.rollout.temperature={TEMPERATURE}",
            f"actor_rollout_ref.model.path={model_dir}", "trainer.critic_warmup=100", "trainer.device=cpu",
            f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={MICRO_BATCH}",
            "actor_rollout_ref.actor.strategy=fsdp2", *overrides,
        ])


def make_trainer(model_dir, estimator: str = "repro_grpo", *overrides: str, dp_size: int = 4):
    trainer = get_trainer_cls("repro_sync")(verl_config(model_dir, estimator, *overrides))
    trainer._init_tokenizer()
    trainer.global_steps = 1
    trainer.actor_rollout_wg = TinyActorWorkers(tiny.model(len(trainer.tokenizer)), dp_size, MICRO_BATCH)
    return trainer


def rollouts(tok, prompts: int = 2, seed: int = 0) -> list[dict]:
    """Single-turn rollouts as verl's agent loop writes them, scored by a rule reward on the last token."""
    rng = random.Random(seed)
    think_end = tok.convert_tokens_to_ids("</think>")
    rows = []
    for prompt_index in range(prompts):
        prompt = tok(f"Problem {prompt_index}: what is x?", add_special_tokens=False)["input_ids"]
        for session in range(GROUP):
            kind = (prompt_index * GROUP + session) % 4
            text = tiny.reasoning_text(rng, 1 if kind == 2 else rng.randint(3, 6))  # kind 2: no break
            response = tok(text, add_special_tokens=False)["input_ids"]
            if kind == 1:  # a think-end tag, then an answer
                response = response + [think_end] + tok(" \\boxed{17}", add_special_tokens=False)["input_ids"]
            score = float(rng.random() < 0.5)
            rows.append(dict(prompt=prompt, response=response, score=score, uid=f"prompt{prompt_index}",
                             key=f"prompt{prompt_index}_{session}_0"))
    return rows


def put_batch(rows: list[dict], partition: str = "train", ground_truth: bool = True) -> KVBatchMeta:
    fields, tags = [], []
    for row in rows:
        prompts = torch.tensor(row["prompt"], dtype=torch.int64)
        responses = torch.tensor(row["response"], dtype=torch.int64)
        input_ids = torch.cat([prompts, responses])
        rm_scores = torch.zeros(len(responses))
        rm_scores[-1] = row["score"]
        fields.append(dict(
            prompts=prompts, responses=responses, input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
            position_ids=torch.arange(len(input_ids)), response_mask=torch.ones_like(responses),
            loss_mask=torch.ones_like(responses), rm_scores=rm_scores, rollout_log_probs=-rm_scores.abs() - 1.0,
            multi_modal_inputs={}, uid=row["uid"],
            reward_model={"ground_truth": ANSWER if ground_truth else None, "style": "rule"},
        ))
        tags.append(dict(status="success", prompt_len=len(prompts), response_len=len(responses),
                         seq_len=len(input_ids), global_steps=1))
    return tq.kv_batch_put(keys=[row["key"] for row in rows], partition_id=partition,
                           fields=list_of_dict_to_tensordict(fields), tags=tags)


def padded(batch: KVBatchMeta, name: str, keys: list[str]) -> np.ndarray:
    """A nested per-token field of the given rows, right-padded with zeros."""
    data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=[name])
    values = [row.float().numpy() for row in data[name].unbind()]
    out = np.zeros((len(values), max(len(v) for v in values)), dtype=np.float32)
    for b, row in enumerate(values):
        out[b, : len(row)] = row
    return out


def advantage_step(trainer, batch: KVBatchMeta) -> tuple[KVBatchMeta, dict]:
    """verl's steps 3, 4 and 7 (balance, old log-probs with entropies, advantages)."""
    metrics: dict = {}
    batch = trainer._balance_batch(batch, metrics=metrics)
    batch.extra_info["temperature"] = TEMPERATURE
    batch = trainer._compute_old_log_prob(batch, metrics=metrics)
    batch = trainer._compute_advantage(batch, metrics=metrics)
    return batch, metrics


def pipeline(model, tokenizer, rows: list[dict], estimator: str, values=None, **kwargs):
    """ReproScorer on the same rollouts, with the knobs of ``verl_config``."""
    config = ReproConfig(k=3, alpha=0.2, w=0.3, estimator=estimator, temperature=TEMPERATURE,
                         objective_mode="per_cut", **kwargs)
    scorer = ReproScorer(model, tokenizer, config)
    per_token = estimator in ("reinforce_pp", "ppo")
    lengths = [len(row["response"]) for row in rows]
    scores = np.zeros((len(rows), max(lengths)))
    scores[np.arange(len(rows)), np.asarray(lengths) - 1] = [row["score"] for row in rows]
    return scorer.score(
        [row["prompt"] for row in rows], [row["response"] for row in rows], [ANSWER] * len(rows),
        np.zeros(len(rows)) if per_token else scores.sum(1), np.arange(len(rows)) // GROUP,
        values=values, token_rewards=scores if per_token else None,
    )


@pytest.mark.slow
@pytest.mark.parametrize(("estimator", "mode"), [
    ("repro_grpo", "shared"), ("repro_dr_grpo", "shared"), ("repro_reinforce_pp", "shared"),
    ("repro_reinforce_pp_baseline", "shared"), ("repro_grpo", "per_cut"), ("repro_reinforce_pp", "per_cut"),
])
def test_advantage_step_equals_the_pipeline(transfer_queue, model_dir, estimator, mode):
    trainer = make_trainer(model_dir, estimator, f"+algorithm.repro.objective_mode={mode}")
    rows = rollouts(trainer.tokenizer, seed=len(estimator))
    batch, metrics = advantage_step(trainer, put_batch(rows))
    assert len(batch) == 8 and sum(tag.get("is_padding", False) for tag in batch.tags) == 2  # 6 rows, 4 ranks

    expected = pipeline(trainer.actor_rollout_wg.model, trainer.tokenizer, rows, ESTIMATORS[estimator])
    keys = [row["key"] for row in rows]
    advantages = padded(batch, "advantages", keys)
    np.testing.assert_allclose(advantages, expected.advantages.advantages[:, : advantages.shape[1]], atol=2e-5)
    # The process part is in: the advantages vary along the rows, and the metrics describe the cuts.
    assert any(len(np.unique(row[: len(r["response"])])) > 1 for row, r in zip(advantages, rows, strict=True))
    assert metrics["repro/num_cuts"] == pytest.approx(np.diff(expected.cuts.offsets).mean())
    assert metrics["repro/J_b"] == pytest.approx(expected.j_baseline.mean(), abs=1e-4)
    assert metrics["repro/J_end"] == pytest.approx(expected.j_end.mean(), abs=1e-4)
    probes = trainer.actor_rollout_wg.batches[-1]
    assert probes.partition_id == PROBE_PARTITION and probes.extra_info["temperature"] == 1.0
    if mode == "per_cut":  # one probe row per cut point of the real rows, padded to the ranks
        assert len(expected.j) <= len(probes) < len(expected.j) + 4 * MICRO_BATCH
        assert len(probes) % (4 * MICRO_BATCH) == 0
    else:  # one entry per batch row: its cut points and answer ids, not a probe row
        assert sorted(probes.keys) == sorted(batch.keys)
    sequence_tokens = sum(tag["seq_len"] for tag in batch.tags)
    if mode == "shared":  # each row's prefix up to its last cut once, and one answer per cut point
        answer = len(trainer._answer_ids(ANSWER, 0).ids)
        tokens = sum(len(row["prompt"]) + int(points.max()) + len(points) * answer
                     for row, points in zip(rows, expected.cuts.rows(), strict=True))
        assert metrics["repro/objective_token_ratio"] == pytest.approx(tokens / sequence_tokens)
    else:
        assert metrics["repro/objective_token_ratio"] > 1  # a prefix per cut point
    assert not tq.kv_list(PROBE_PARTITION).get(PROBE_PARTITION)  # cleared
    tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)


@pytest.mark.slow
def test_shared_j_equals_per_cut(transfer_queue, model_dir):
    """The two paths' J on one batch: uneven lengths, rows with and without a think-end tag or a
    paragraph break, verl's padding rows (no cut points), shards of very unequal work."""
    trainer = make_trainer(model_dir, "repro_grpo")
    rows = rollouts(trainer.tokenizer, seed=3)
    rows[0]["response"] = rows[0]["response"] * 4  # one long response
    rows[1]["response"] = rows[1]["response"][:1]  # one of a single token
    metrics: dict = {}
    batch = trainer._balance_batch(put_batch(rows), metrics=metrics)
    assert any(tag.get("is_padding", False) for tag in batch.tags)  # 6 rows on 4 ranks: padded to 8
    batch.extra_info["temperature"] = TEMPERATURE
    batch = trainer._compute_old_log_prob(batch, metrics=metrics)
    read = trainer._rollouts(batch)
    shared, shared_tokens = trainer._objective_shared(batch, read.real, read.prompts, read.answers, read.cuts)
    per_cut, per_cut_tokens = trainer._objective_per_cut(read.prompts, read.completions, read.answers, read.cuts)
    assert len(shared) == len(read.cuts.positions) > len(rows)
    np.testing.assert_allclose(shared, per_cut, atol=1e-4)
    assert shared_tokens < per_cut_tokens / 2
    tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)


@pytest.mark.slow
def test_j_options_reach_the_probes(transfer_queue, model_dir):
    """j_tokens=answer averages only the answer's positions of each probe row; j_at_rollout_temperature
    runs the probes at the rollout temperature; answer_special_tokens encodes the answer as the pipeline does."""
    options = dict(j_tokens="answer", j_at_rollout_temperature=True, answer_special_tokens=True)
    trainer = make_trainer(model_dir, "repro_grpo", *(f"+algorithm.repro.{k}={v}" for k, v in options.items()))
    rows = rollouts(trainer.tokenizer, seed=7)
    batch, metrics = advantage_step(trainer, put_batch(rows))
    model = trainer.actor_rollout_wg.model
    expected = pipeline(model, trainer.tokenizer, rows, "grpo", **options)
    keys = [row["key"] for row in rows]
    advantages = padded(batch, "advantages", keys)
    np.testing.assert_allclose(advantages, expected.advantages.advantages[:, : advantages.shape[1]], atol=2e-5)
    assert metrics["repro/J_b"] == pytest.approx(expected.j_baseline.mean(), abs=1e-4)
    assert trainer.actor_rollout_wg.batches[-1].extra_info["temperature"] == TEMPERATURE
    paper = pipeline(model, trainer.tokenizer, rows, "grpo")
    assert abs(metrics["repro/J_b"] - paper.j_baseline.mean()) > 1e-3  # the options changed J
    tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)


@pytest.mark.slow
def test_repro_gae_uses_the_critics_values(transfer_queue, model_dir):
    trainer = make_trainer(model_dir, "repro_gae", "critic.enable=True", "algorithm.lam=0.9",
                           "algorithm.gamma=0.95", dp_size=3)
    rows = rollouts(trainer.tokenizer, seed=5)
    batch = put_batch(rows)
    rng = np.random.default_rng(0)
    values = [torch.tensor(rng.normal(size=len(row["response"])), dtype=torch.float32) for row in rows]
    tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=TensorDict(
        {"values": torch.nested.as_nested_tensor(values, layout=torch.jagged)}, batch_size=len(rows)))
    metrics: dict = {}
    batch.extra_info["temperature"] = TEMPERATURE
    batch = trainer._compute_old_log_prob(batch, metrics=metrics)
    batch = trainer._compute_advantage(batch, metrics=metrics)

    width = max(len(v) for v in values)
    dense = np.zeros((len(rows), width), dtype=np.float32)
    for b, v in enumerate(values):
        dense[b, : len(v)] = v.numpy()
    expected = pipeline(trainer.actor_rollout_wg.model, trainer.tokenizer, rows, "ppo", gamma=0.95, lam=0.9,
                        values=dense)
    keys = [row["key"] for row in rows]
    np.testing.assert_allclose(padded(batch, "advantages", keys), expected.advantages.advantages, atol=2e-5)
    np.testing.assert_allclose(padded(batch, "returns", keys), expected.advantages.returns, atol=2e-5)
    tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)


def test_config_block(model_dir):
    config = repro_config(verl_config(model_dir, "repro_dr_grpo", "+algorithm.repro.delimiters=line",
                                      "+algorithm.repro.answer_template='The answer is {answer}.'"))
    assert (config.k, config.alpha, config.w, config.estimator) == (3, 0.2, 0.3, "dr_grpo")
    assert (config.delimiters, config.answer_template, config.temperature) == ("line", "The answer is {answer}.", 0.7)
    assert config.j_tokens == "template" and not config.j_at_rollout_temperature
    config = repro_config(verl_config(model_dir, "repro_grpo", "+algorithm.repro.j_tokens=answer",
                                      "+algorithm.repro.j_at_rollout_temperature=true"))
    assert config.j_tokens == "answer" and config.j_at_rollout_temperature
    assert (config.objective_mode, config.max_batch_tokens) == ("shared", 16384)  # the defaults
    config = repro_config(verl_config(model_dir, "repro_grpo", "+algorithm.repro.objective_mode=per_cut",
                                      "+algorithm.repro.max_batch_tokens=4096"))
    assert (config.objective_mode, config.max_batch_tokens) == ("per_cut", 4096)
    trainer = ReproTrainerSync(verl_config(model_dir))
    assert trainer.trainer_mode == "sync"  # verl's sync replay buffer and refills


@pytest.mark.parametrize(("estimator", "overrides", "match"), [
    ("grpo", [], "algorithm.adv_estimator: repro_sync needs one of repro_grpo"),
    ("repro_grpo", ["+algorithm.repro.kk=2"], r"algorithm.repro: unknown keys \['kk'\]"),
    ("repro_grpo", ["+algorithm.repro.delimiters=[1,2]", "+algorithm.repro.think_end=2.5"],
     "algorithm.repro.think_end: expected"),
    ("repro_grpo", ["+algorithm.repro.objective_mode=both"], "algorithm.repro.objective_mode: expected"),
    ("repro_grpo", ["+algorithm.repro.max_batch_tokens=0"], "algorithm.repro.max_batch_tokens: expected"),
    # What the shared path cannot honour: refused at start-up, naming the setting and the fallback.
    ("repro_grpo", ["actor_rollout_ref.actor.strategy=fsdp"],
     "actor_rollout_ref.actor.strategy: objective_mode=shared .*got 'fsdp'.*objective_mode=per_cut"),
    ("repro_grpo", ["actor_rollout_ref.actor.ulysses_sequence_parallel_size=2"],
     "actor_rollout_ref.actor.ulysses_sequence_parallel_size: .*2 sequence-parallel ranks.*objective_mode=per_cut"),
    ("repro_grpo", ["+algorithm.repro.gamma=0.9"], "algorithm.repro.gamma: not a key .*set algorithm.gamma instead"),
    ("repro_grpo", ["algorithm.repro.k=-1"], r"algorithm.repro.k: expected an int(eger)? >= 0, got -1"),
    ("repro_grpo", ["+algorithm.repro.stability_ema=2"], "algorithm.repro.stability_ema: expected .*got 2"),
    ("repro_grpo", ["algorithm.gamma=1.5"], "algorithm.gamma: expected"),
    ("repro_grpo", ["actor_rollout_ref.rollout.temperature=0"], "actor_rollout_ref.rollout.temperature: expected"),
    ("repro_gae", ["critic.enable=False"], "critic.enable: .*repro_gae needs the critic: set critic.enable=True"),
    ("repro_grpo", ["algorithm.rollout_correction.bypass_mode=True"], "bypass_mode: repro_sync reads the entropies"),
    # The authors' fork's keys: refused, naming ours, rather than run on the defaults.
    ("repro_grpo", ["+algorithm.repro_alpha=0.05"], "algorithm.repro_alpha: .*set algorithm.repro.alpha instead"),
    ("repro_ppo", ["+algorithm.num_forking_token=10"], "algorithm.num_forking_token: .*set algorithm.repro.k instead"),
    ("repro_ppo", ["critic.enable=False"], "critic.enable: .*repro_ppo needs the critic"),
    # main_ppo runs the legacy trainer without use_v1, which never reads trainer.v1.trainer_mode.
    ("repro_grpo", ["trainer.use_v1=False"], "trainer.use_v1: repro_sync is a v1 trainer"),
])
def test_bad_config(model_dir, estimator, overrides, match):
    with pytest.raises(ReproError, match=match):
        ReproTrainerSync(verl_config(model_dir, estimator, *overrides))


def test_the_fallback_runs_on_any_engine(model_dir):
    """per_cut goes through verl's compute_log_prob: the settings the shared path refuses are fine."""
    config = verl_config(model_dir, "repro_grpo", "+algorithm.repro.objective_mode=per_cut",
                         "actor_rollout_ref.actor.strategy=fsdp",
                         "actor_rollout_ref.actor.ulysses_sequence_parallel_size=2")
    assert ReproTrainerSync(config).repro.objective_mode == "per_cut"


@pytest.mark.parametrize(("mode", "worker"), [("shared", "ReproActorWorker"), ("per_cut", "ActorRolloutRefWorker")])
def test_the_actor_workers_of_each_mode(model_dir, mode, worker):
    """shared runs the actor role as ReproActorWorker (verl's worker plus compute_repro_objective)."""
    trainer = ReproTrainerSync(verl_config(model_dir, "repro_grpo", f"+algorithm.repro.objective_mode={mode}"))
    trainer._init_resource_pool_mgr()
    actor = [cls for role, cls in trainer.role_worker_mapping.items() if "Actor" in role.name]
    assert len(actor) == 1 and actor[0].__ray_metadata__.class_name == worker
    assert hasattr(ReproActorWorker, "compute_repro_objective")


@pytest.mark.parametrize(("alias", "estimator"), [
    ("repro_ppo", "ppo"), ("repro_reinforce_plus_plus", "reinforce_pp"),
    ("repro_reinforce_plus_plus_baseline", "reinforce_pp_baseline"),
])
def test_the_authors_estimator_names_are_accepted(model_dir, alias, estimator):
    assert repro_config(verl_config(model_dir, alias, "critic.enable=True")).estimator == estimator


def test_the_block_keys_are_reproconfigs_fields():
    """Every ReproConfig field is a key of algorithm.repro or comes from elsewhere, not both."""
    names = [field.name for field in dataclasses.fields(ReproConfig)]
    assert sorted(REPRO_KEYS + tuple(OUTSIDE_THE_BLOCK)) == sorted(names)
    assert not set(REPRO_KEYS) & set(OUTSIDE_THE_BLOCK)


def test_without_a_repro_block_the_defaults_are_the_papers(model_dir):
    config = verl_config(model_dir)
    with open_dict(config):
        del config.algorithm["repro"]
    repro = repro_config(config)
    default = ReproConfig()
    for name in REPRO_KEYS:
        assert getattr(repro, name) == getattr(default, name)


def test_repro_block_must_be_a_mapping(model_dir):
    config = verl_config(model_dir)
    config.algorithm.repro = 3
    with pytest.raises(ReproError, match="algorithm.repro: expected a mapping, got 3"):
        repro_config(config)


def test_bad_answer_template(model_dir):
    with pytest.raises(ReproError, match="algorithm.repro.answer_template: expected a str.format template"):
        make_trainer(model_dir, "repro_grpo", "+algorithm.repro.answer_template=boxed")


def test_settings_resolved_for_the_tokenizer_name_the_verl_key(model_dir):
    """An explicit think-end that is not one token is found when the tokenizer is known: named as the key."""
    with pytest.raises(ReproError) as caught:
        make_trainer(model_dir, "repro_grpo", "+algorithm.repro.think_end='<answer>'")
    assert caught.value.argument == "algorithm.repro.think_end"


@pytest.mark.slow
def test_bad_batches(transfer_queue, model_dir):
    trainer = make_trainer(model_dir, dp_size=1)
    rows = rollouts(trainer.tokenizer, seed=7)
    batch = put_batch(rows, partition="bad")
    with pytest.raises(ReproError, match=r"trainer.v1.trainer_mode: repro_sync reads .* has no \['entropy'\]"):
        trainer._compute_advantage(batch, metrics={})
    tq.kv_clear(keys=batch.keys, partition_id="bad")
    batch = put_batch(rows, partition="bad", ground_truth=False)
    batch.extra_info["temperature"] = TEMPERATURE
    batch = trainer._compute_old_log_prob(batch, metrics={})
    with pytest.raises(ReproError, match=f"reward_model.ground_truth: row {rows[0]['key']} has none"):
        trainer._compute_advantage(batch, metrics={})
    tq.kv_clear(keys=batch.keys, partition_id="bad")


@pytest.mark.slow
def test_with_verls_own_actor_worker(tmp_path):
    """verl's actor worker (ReproActorWorker: FSDP2, fp32, on CPU) computes the old log-probs and J
    through verl's own TransferQueue bridge: J of the two paths agrees and the advantages equal the
    pipeline (tests/verl_engine.py)."""
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("verl_engine.py")), str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "max abs difference" in result.stdout and "shared - per_cut" in result.stdout, result.stdout[-2000:]


@pytest.mark.slow
def test_two_ranks_with_very_unequal_work(tmp_path):
    """Two ranks shard one policy (FSDP2 over gloo); one scores six rows in dozens of decoder calls,
    the other one row, then none: neither waits forever, and J equals the per-cut oracle."""
    script = Path(__file__).with_name("verl_engine.py")
    result = subprocess.run([sys.executable, str(script), str(tmp_path), "--ranks", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "rank 0 done" in result.stdout and "rank 1 done" in result.stdout, result.stdout[-2000:]
    assert "rank 1: no points" in result.stdout


def test_a_model_the_shared_path_cannot_mask_is_refused_at_start_up(tmp_path):
    """A model with linear-attention layers: refused when the trainer is built (its config read
    from the model path), naming the fallback, instead of at the first J; per_cut takes it."""
    import transformers

    tok = tiny.tokenizer()
    tok.save_pretrained(tmp_path)
    transformers.Qwen3NextConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                                 layer_types=["linear_attention", "full_attention"]).save_pretrained(tmp_path)
    with pytest.raises(ReproError, match="algorithm.repro.objective_mode: objective_mode=shared cannot mask the "
                                         "model's linear_attention layers; set algorithm.repro.objective_mode=per_cut"):
        ReproTrainerSync(verl_config(tmp_path))
    assert ReproTrainerSync(verl_config(tmp_path, "repro_grpo", "+algorithm.repro.objective_mode=per_cut"))


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["lora", "bf16"])
def test_verls_worker_under_lora_and_mixed_precision(tmp_path, setting):
    """verl's own worker on two ranks: with LoRA adapters (model.lora_rank, their weights made
    non-zero) J equals the per-cut oracle on the merged model; at verl's default mixed precision
    (bf16 compute) J is finite and within bf16's noise of the float32 oracle (tests/verl_engine.py)."""
    script = Path(__file__).with_name("verl_engine.py")
    result = subprocess.run([sys.executable, str(script), str(tmp_path), "--ranks", "2", "--setting", setting],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "rank 0 done" in result.stdout and "rank 1 done" in result.stdout, result.stdout[-2000:]
