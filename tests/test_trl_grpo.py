"""ReproGRPOTrainer on TRL's real GRPOTrainer (CPU, tiny model): training, advantages against the
pipeline, every estimator, edge completions, checkpoints, and two processes."""

from __future__ import annotations

import logging
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset, IterableDataset  # noqa: E402

import repro_core as rc  # noqa: E402
import tiny  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core.pipeline import ReproScorer  # noqa: E402
from repro_core.trl import ReproGRPOConfig, ReproGRPOTrainer  # noqa: E402

HERE = Path(__file__).parent
METRICS = [
    "repro/J_b", "repro/J_end", "repro/num_cuts", "repro/magnitude", "repro/stability", "repro/process_reward_mean",
    "repro/process_reward_std", "repro/advantage_abs_mean", "repro/time_fraction",
]


def answer_in_completion(completions, answer, **kwargs):
    """A picklable outcome reward that varies within groups on random text."""
    return [float(a in c) + 0.05 * c.count(" ") for c, a in zip(completions, answer, strict=True)]


def newline_ids(tok) -> list[int]:
    return [i for i in range(len(tok)) if "\n" in tok.decode([i])]


def dataset() -> Dataset:
    prompts = ["What is 2 + 3?", "Compute 4 * 5.", "So the value of x is", "Check again the sum"]
    return Dataset.from_dict({"prompt": prompts * 4, "answer": ["5", "20", "7", "9"] * 4})


def make_trainer(
    tok, tmp_path, *, bias: float = 4.0, model=None, trainer: type = ReproGRPOTrainer, train_dataset=None,
    eval_dataset=None, **overrides
) -> ReproGRPOTrainer:
    """Generation is biased towards newline tokens so that completions have paragraphs."""
    settings = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4, max_completion_length=40,
        max_steps=2, logging_steps=1, report_to="none", bf16=False, use_cpu=True, repro_k=4, save_strategy="no",
        learning_rate=1e-3, seed=0, generation_kwargs={"sequence_bias": [[[i], bias] for i in newline_ids(tok)]},
    )
    settings.update(overrides)
    model = tiny.model(len(tok)) if model is None else model
    return trainer(model=model, reward_funcs=[answer_in_completion], args=trainer.config_class(**settings),
                   train_dataset=dataset() if train_dataset is None else train_dataset, eval_dataset=eval_dataset,
                   processing_class=tok)


def generation_batch(trainer: ReproGRPOTrainer, prompts: int = 2) -> list[dict]:
    """What TRL's sampler hands one process: every prompt repeated num_generations times."""
    rows = dataset()
    trainer.model.train()
    return [rows[i] for i in range(prompts) for _ in range(trainer.num_generations)]


def completions_of(output: dict) -> tuple[list[list[int]], list[list[int]]]:
    prompts = [ids[m.bool()].tolist() for ids, m in zip(output["prompt_ids"], output["prompt_mask"], strict=True)]
    lengths = output["completion_mask"].sum(1).tolist()
    return prompts, [ids[:n].tolist() for ids, n in zip(output["completion_ids"], lengths, strict=True)]


# ------------------------------------------------------------------------------ training


@pytest.mark.slow
def test_training_changes_parameters_and_logs_repro_metrics(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2
    for entry in logged:
        for name in METRICS:
            assert name in entry and np.isfinite(entry[name]), name
        assert entry["repro/J_b"] < 0 and 0 < entry["repro/time_fraction"] < 1
        assert entry["repro/num_cuts"] > 2  # paragraph breaks were found and scored


# ------------------------------------------------------------------------------ advantages


@pytest.mark.parametrize("estimator", ["dr_grpo", "reinforce_pp", "reinforce_pp_baseline"])
def test_advantages_equal_the_pipeline(tok, tmp_path, estimator):
    trainer = make_trainer(tok, tmp_path, repro_estimator=estimator, repro_alpha=0.5)
    inputs = generation_batch(trainer)
    output = trainer._generate_and_score_completions(inputs)
    advantages, mask = output["advantages"], output["completion_mask"]
    assert advantages.shape == mask.shape and advantages.dtype == torch.float32
    assert torch.all(advantages[mask == 0] == 0)
    prompts, completions = completions_of(output)
    rewards = trainer._rewards_per_func.sum(1).numpy()
    groups = np.arange(len(inputs)) // trainer.num_generations
    expected = ReproScorer(trainer.model, tok, trainer.args.repro_settings()).score(
        prompts, completions, [x["answer"] for x in inputs], rewards, groups
    )
    width = expected.advantages.advantages.shape[1]
    np.testing.assert_allclose(advantages[:, :width].numpy(), expected.advantages.advantages, atol=1e-5)
    assert np.any(np.diff(expected.cuts.offsets) > 2)


def test_grpo_adds_the_process_part_to_trls_advantage(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, repro_alpha=0.5)
    output = trainer._generate_and_score_completions(generation_batch(trainer))
    advantages, mask = output["advantages"], output["completion_mask"].bool()
    trl_advantages = torch.tensor(list(trainer._logs["advantages"]))
    prompts, completions = completions_of(output)
    config = trainer.args.repro_settings()
    process = ReproScorer(trainer.model, tok, config).score(
        prompts, completions, [x["answer"] for x in generation_batch(trainer)], np.zeros(len(prompts)),
        np.arange(len(prompts)) // trainer.num_generations,
    ).advantages.advantages
    width = process.shape[1]
    expected = (trl_advantages[:, None] + torch.from_numpy(process)) * mask[:, :width]
    np.testing.assert_allclose(advantages[:, :width].numpy(), expected.numpy(), atol=1e-5)
    lengths = mask.sum(1)
    varying = [advantages[b, : lengths[b]].unique().numel() > 1 for b in range(len(lengths)) if lengths[b] > 0]
    assert any(varying), "process rewards make advantages vary along a row"


@pytest.mark.parametrize(("scale_rewards", "process_std"), [("batch", "batch"), ("none", "none"), (False, "none")])
def test_the_process_part_follows_scale_rewards(tok, tmp_path, scale_rewards, process_std):
    """grpo's process part is divided by the std TRL's scale_rewards names: the group's, the batch's, or none."""
    trainer = make_trainer(tok, tmp_path, repro_alpha=0.5, scale_rewards=scale_rewards)
    inputs = generation_batch(trainer)
    output = trainer._generate_and_score_completions(inputs)
    advantages, mask = output["advantages"], output["completion_mask"].bool()
    trl_advantages = torch.tensor(list(trainer._logs["advantages"]))
    prompts, completions = completions_of(output)
    groups = np.arange(len(prompts)) // trainer.num_generations
    config = trainer.args.repro_settings()
    scored = ReproScorer(trainer.model, tok, config).score(
        prompts, completions, [x["answer"] for x in inputs], np.zeros(len(prompts)), groups
    )
    process = {
        scope: rc.compute_advantages(
            "grpo", np.zeros(len(prompts)), scored.steps.reward, scored.cuts.offsets, scored.cuts.positions,
            scored.mask, groups, alpha=0.5, process_std=scope,
        ).advantages
        for scope in ("group", process_std)
    }
    width = process[process_std].shape[1]
    expected = (trl_advantages[:, None] + torch.from_numpy(process[process_std])) * mask[:, :width]
    np.testing.assert_allclose(advantages[:, :width].numpy(), expected.numpy(), atol=1e-5)
    assert not np.allclose(process[process_std], process["group"]), "the scope changes the process part"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [(dict(off_policy_mask_threshold=0.5), "off_policy_mask_threshold"), (dict(loss_type="vespo"), "loss_type")],
)
def test_sequence_level_options_are_refused(tmp_path, overrides, field):
    """Options that read one advantage per sequence would silently turn per-token with RePro's (B, T) ones."""
    with pytest.raises(ReproError) as caught:
        ReproGRPOConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, **overrides)
    assert caught.value.argument == field and "per token" in caught.value.message
    ReproGRPOConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, repro_enabled=False, **overrides)


def test_alpha_zero_is_trls_own_advantage(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, repro_alpha=0.0)
    output = trainer._generate_and_score_completions(generation_batch(trainer))
    trl_advantages = torch.tensor(list(trainer._logs["advantages"]))
    expected = trl_advantages[:, None] * output["completion_mask"]
    torch.testing.assert_close(output["advantages"], expected, atol=1e-6, rtol=0)


def test_disabled_leaves_the_parent_alone(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, repro_enabled=False)
    output = trainer._generate_and_score_completions(generation_batch(trainer))
    assert output["advantages"].shape == (8,)
    assert not any(name.startswith("repro/") for name in trainer._metrics["train"])


@pytest.mark.parametrize(
    ("overrides", "what"),
    [
        (dict(mask_truncated_completions=True, max_completion_length=8, bias=-10.0), "truncated rows masked: empty"),
        (dict(bias=-100.0), "no paragraph break"),
        (dict(repro_objective_mode="per_cut", repro_think_end=None), "per-cut J, no think-end"),
    ],
)
def test_edge_completions(tok, tmp_path, overrides, what):
    trainer = make_trainer(tok, tmp_path, **overrides)
    output = trainer._generate_and_score_completions(generation_batch(trainer))
    advantages, mask = output["advantages"], output["completion_mask"]
    assert torch.isfinite(advantages).all() and torch.all(advantages[mask == 0] == 0), what
    cuts = trainer._metrics["train"]["repro/num_cuts"][-1]
    if "empty" in what:
        assert mask.sum() == 0 and cuts == 1  # only p = 0
    if "no paragraph" in what:
        assert cuts == 2  # 0 and the end


def test_bad_config_and_columns(tok, tmp_path):
    with pytest.raises(ReproError, match="repro_estimator: ReproGRPOConfig takes one of grpo, dr_grpo,"):
        ReproGRPOConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, repro_estimator="ppo")
    with pytest.raises(ReproError, match="repro_k: expected an integer >= 0"):
        ReproGRPOConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, repro_k=-1)
    with pytest.raises(ReproError, match="repro_w"):
        ReproGRPOConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, repro_w=2.0)
    for delimiters in ("paragraphs", ["\n\n", 3], ["\n\n", ""]):
        with pytest.raises(ReproError) as caught:
            ReproGRPOConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, repro_delimiters=delimiters)
        assert caught.value.argument == "repro_delimiters"


def test_missing_answer_column_is_caught_at_construction(tok, tmp_path):
    with pytest.raises(ReproError) as caught:
        make_trainer(tok, tmp_path, repro_answer_column="solution")
    assert caught.value.argument == "repro_answer_column"
    assert caught.value.message == "'solution' is not a column of the train_dataset (columns: ['answer', 'prompt'])"
    no_answers = Dataset.from_dict({"prompt": ["What is 2 + 3?"] * 4})
    with pytest.raises(ReproError, match=r"repro_answer_column: 'answer' is not a column of the eval_dataset "):
        make_trainer(tok, tmp_path, eval_dataset=no_answers)
    with pytest.raises(ReproError, match=r"repro_answer_column: 'answer' is not a column of the eval_dataset\['x'\]"):
        make_trainer(tok, tmp_path, eval_dataset={"x": no_answers})
    make_trainer(tok, tmp_path, train_dataset=no_answers, repro_enabled=False)  # RePro off: no answers needed


def test_the_first_scored_answer_is_logged(tok, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="repro_core.trl.grpo"):
        make_trainer(tok, tmp_path, repro_answer_template="The answer is {answer}.")
    logged = [r.getMessage() for r in caplog.records if r.name == "repro_core.trl.grpo"]
    assert logged == ["RePro scores J on the answer text 'The answer is 5.' (first row of the train_dataset)"]


def test_think_end_is_resolved_at_construction(tok, tmp_path):
    with pytest.raises(ReproError) as caught:
        make_trainer(tok, tmp_path, repro_think_end="<answer>")
    assert caught.value.argument == "repro_think_end"
    assert "'<answer>' is not one token of the tokenizer" in caught.value.message


def test_answer_column_of_a_dataset_without_column_names_is_checked_at_run_time(tok, tmp_path):
    def rows():
        yield from dataset()

    streamed = IterableDataset.from_generator(rows)
    assert streamed.column_names is None
    trainer = make_trainer(tok, tmp_path, train_dataset=streamed, repro_answer_column="solution")
    with pytest.raises(ReproError, match="repro_answer_column: 'solution' is not a dataset column"):
        trainer._generate_and_score_completions(generation_batch(trainer))


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.slow
def test_checkpoint_and_resume(tok, tmp_path):
    trainer = make_trainer(tok, tmp_path, save_strategy="steps", save_steps=1, max_steps=2)
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert (checkpoint / "model.safetensors").exists() and (checkpoint / "optimizer.pt").exists()
    resumed = make_trainer(tok, tmp_path, save_strategy="no", max_steps=3)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 3
    assert [e["step"] for e in resumed.state.log_history if "repro/J_b" in e][-1] == 3


# ------------------------------------------------------------------------------ two processes


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    """Groups of 8 straddle 2 gloo processes (4 rows each); the advantages equal the one-process
    pipeline on the gathered batch."""
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
         str(HERE / "distributed_grpo.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "max abs difference" in result.stdout, result.stdout[-2000:]


def sometimes_unscorable(completions, answer, **kwargs):
    """None (not applicable) for every other completion."""
    return [
        None if i % 2 else float(a in c) + 0.05 * c.count(" ")
        for i, (c, a) in enumerate(zip(completions, answer, strict=True))
    ]


@pytest.mark.parametrize("estimator", ["grpo", "reinforce_pp"])
def test_unscorable_rows_get_no_advantage(tok, tmp_path, estimator):
    trainer = make_trainer(tok, tmp_path, repro_estimator=estimator)
    trainer.reward_funcs = [sometimes_unscorable]
    output = trainer._generate_and_score_completions(generation_batch(trainer))
    advantages = output["advantages"]
    assert torch.all(advantages[1::2] == 0)
    assert torch.any(advantages[0::2] != 0)


# ------------------------------------------------------------------------------ GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_two_steps_on_cuda_in_bfloat16(tok, tmp_path):
    """TRL's bf16 training on CUDA: RePro's passes run on the GPU in the policy's dtype."""
    trainer = make_trainer(tok, tmp_path, use_cpu=False, bf16=True, model=tiny.model(len(tok), dtype=torch.bfloat16))
    assert trainer.accelerator.device.type == "cuda"
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all(np.isfinite(entry["repro/J_b"]) for entry in logged)
    assert all(entry["repro/num_cuts"] > 1 for entry in logged)  # paragraphs were cut and scored
