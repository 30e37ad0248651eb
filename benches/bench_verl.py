"""What repro_sync's advantage step costs the verl controller, against verl's own advantage step.

Run from the repository root: ``.venv/bin/python -m pytest benches/bench_verl.py --benchmark-enable -s``
(without --benchmark-enable each step runs once as a smoke test).

A local Ray with a real TransferQueue, on CPU. The batch: 16 prompts x 8 responses of 1,024 to
4,096 tokens after 256-token prompts, a paragraph break about every 40 tokens, k = 20. The actor
workers' forward passes are not timed: a stand-in writes zero log-probs (and random entropies for
the old-log-prob pass) and its own time is subtracted. What remains is what the controller process
spends: reading the rollouts, selecting cuts, building one probe row per cut point, moving them
through the TransferQueue and back, J, the scores, and verl's own advantage step. The baseline is
verl's own advantage step with its ``grpo`` estimator on the same batch.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verl")

import ray  # noqa: E402
import transfer_queue as tq  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from transfer_queue import KVBatchMeta  # noqa: E402
from verl.trainer.ppo.v1 import get_trainer_cls  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import tiny  # noqa: E402

PROMPTS, GROUP, PROMPT_LENGTH, K = 16, 8, 256, 20
ROUNDS = 3


class ZeroWorkers:
    """The actor worker group with no model: zero log-probs and random entropies, written to the
    TransferQueue as verl's workers write them; ``seconds`` is its own time, subtracted."""

    def __init__(self) -> None:
        self._dispatch_info = {"actor": [0, 1, 2, 3]}
        self.seconds = 0.0
        self.probe_tokens = 0
        self.rng = torch.Generator().manual_seed(0)

    def compute_log_prob(self, meta: KVBatchMeta) -> KVBatchMeta:
        start = time.perf_counter()
        lengths = [tag["seq_len"] for tag in meta.tags]
        fields = {"log_probs": torch.nested.as_nested_tensor([torch.zeros(n) for n in lengths], layout=torch.jagged)}
        if not meta.extra_info.get("calculate_entropy"):
            self.probe_tokens = sum(lengths)
        else:
            fields["entropy"] = torch.nested.as_nested_tensor(
                [torch.rand(n, generator=self.rng) * 3 for n in lengths], layout=torch.jagged
            )
        tq.kv_batch_put(keys=meta.keys, partition_id=meta.partition_id,
                        fields=TensorDict(fields, batch_size=len(meta.keys)))
        self.seconds += time.perf_counter() - start
        return meta


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init()
    tok = tiny.tokenizer()
    path = tmp_path_factory.mktemp("tiny")
    tok.save_pretrained(path)
    tiny.model(len(tok)).save_pretrained(path)
    delimiter = tok("\n\n", add_special_tokens=False)["input_ids"][0]

    def trainer(mode: str, estimator: str):
        with initialize_config_module(config_module="verl.trainer.config", version_base=None):
            config = compose(config_name="ppo_trainer", overrides=[
                f"trainer.v1.trainer_mode={mode}", f"algorithm.adv_estimator={estimator}",
                f"+algorithm.repro.k={K}", f"+algorithm.repro.delimiters=[{delimiter}]",
                f"actor_rollout_ref.rollout.n={GROUP}", f"actor_rollout_ref.model.path={path}",
                "actor_rollout_ref.rollout.calculate_log_probs=False", "trainer.device=cpu",
            ])
        made = get_trainer_cls(mode)(config)
        made._init_tokenizer()
        made.actor_rollout_wg = ZeroWorkers()
        return made

    rng = np.random.default_rng(0)
    rows, keys, tags = [], [], []
    for prompt in range(PROMPTS):
        prompt_ids = torch.from_numpy(rng.integers(10, len(tok), PROMPT_LENGTH))
        for session in range(GROUP):
            length = int(rng.integers(1024, 4097))
            response = rng.integers(10, len(tok), length)
            response[rng.random(length) < 1 / 40] = delimiter
            response = torch.from_numpy(response)
            input_ids = torch.cat([prompt_ids, response])
            scores = torch.zeros(length)
            scores[-1] = float(rng.random() < 0.5)
            rows.append(dict(
                prompts=prompt_ids, responses=response, input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                position_ids=torch.arange(len(input_ids)), response_mask=torch.ones_like(response),
                loss_mask=torch.ones_like(response), rm_scores=scores, multi_modal_inputs={}, uid=f"p{prompt}",
                reward_model={"ground_truth": str(prompt)},
            ))
            keys.append(f"p{prompt}_{session}_0")
            tags.append(dict(prompt_len=PROMPT_LENGTH, response_len=length, seq_len=len(input_ids)))
    batch = tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(rows), tags=tags)
    repro = trainer("repro_sync", "repro_grpo")
    batch.extra_info["temperature"] = 1.0
    batch = repro._compute_old_log_prob(batch, metrics={})
    yield {"repro_sync": repro, "sync": trainer("sync", "grpo"), "batch": batch,
           "tokens": sum(tag["response_len"] for tag in tags)}
    tq.close()
    ray.shutdown()


@pytest.mark.parametrize("mode", ["sync", "repro_sync"])
def test_advantage_step(benchmark, setting, mode, verl_report):
    trainer, batch = setting[mode], setting["batch"]
    benchmark.group = "verl advantage step"
    seconds: list[float] = []

    def step() -> None:
        trainer.actor_rollout_wg.seconds = 0.0
        metrics: dict = {}
        start = time.perf_counter()
        trainer._compute_advantage(batch, metrics=metrics)
        seconds.append(time.perf_counter() - start - trainer.actor_rollout_wg.seconds)
        if mode == "repro_sync":
            verl_report["num_cuts"] = metrics["repro/num_cuts"]
            verl_report["probe_tokens"] = trainer.actor_rollout_wg.probe_tokens

    benchmark.pedantic(step, rounds=ROUNDS if not benchmark.disabled else 1, iterations=1)
    verl_report[mode] = min(seconds)
    verl_report["rows"] = len(batch)
    verl_report["tokens"] = setting["tokens"]
    verl_report["sequence_tokens"] = setting["tokens"] + len(batch) * PROMPT_LENGTH
