"""The verl plugin (real verl 0.9 on CPU tensors): `import verl` registers the repro_* estimators
through the entry point, and verl's own advantage dispatch gives repro_core.compute_advantages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verl")

from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.trainer.ppo.core_algos import get_adv_estimator_fn  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402

import repro_core as rc  # noqa: E402
import repro_core.verl  # noqa: E402
from repro_core import ReproError  # noqa: E402
from repro_core._api import ESTIMATORS as CORE_ESTIMATORS  # noqa: E402
from repro_core.verl import ESTIMATORS, ReproEstimator, process_rewards  # noqa: E402
from repro_core.verl.estimators import ALIASES  # noqa: E402


def test_importing_verl_registers_the_estimators_and_the_trainer():
    """In a fresh interpreter: the entry point alone (no import of repro_core) does it."""
    code = (
        "import verl\n"
        "from verl.trainer.ppo.core_algos import get_adv_estimator_fn\n"
        "from verl.trainer.ppo.v1 import get_trainer_cls\n"
        f"print(*[type(get_adv_estimator_fn(n)).__name__ for n in {tuple(ESTIMATORS)!r}])\n"
        "print(get_trainer_cls('repro_sync').__name__)\n"
        "import sys; print('repro_core.verl' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["ReproEstimator"] * len(CORE_ESTIMATORS) + ["ReproTrainerSync", "True"]
    for name in ESTIMATORS:
        assert get_adv_estimator_fn(name) == ReproEstimator(name)
    for alias, name in ALIASES.items():  # the authors' fork's names: the very same estimators
        assert get_adv_estimator_fn(alias) is get_adv_estimator_fn(name)


def test_one_verl_name_per_estimator():
    """repro_<name> for every repro_core estimator; verl calls PPO's GAE "gae"."""
    assert sorted(ESTIMATORS.values()) == sorted(CORE_ESTIMATORS)
    assert ESTIMATORS["repro_gae"] == "ppo"
    assert all(verl == f"repro_{name}" for verl, name in ESTIMATORS.items() if name != "ppo")


def test_the_package_imports_its_modules_in_order_without_back_edges():
    """estimators, then the TRL fix, the worker, the trainer; no module imports from the package itself."""
    package = Path(repro_core.verl.__file__).parent
    imports = [line.split()[1] for line in (package / "__init__.py").read_text().splitlines()
               if line.startswith("from .")]
    assert imports == [".estimators", ".compat", ".worker", ".trainer"]
    for module in ("estimators.py", "compat.py", "worker.py", "trainer.py"):
        text = (package / module).read_text()
        assert "from . import" not in text and "from .__init__" not in text, module
    assert "from .estimators import" in (package / "trainer.py").read_text()


def batch(seed: int, rows: int = 8, width: int = 24, group: int = 4):
    """Rollouts as verl holds them, and the RePro cut points they came from (the last row a padding
    row: a response but no cut points)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, width + 1, rows)
    lengths[0] = width  # one completion fills the width
    mask = np.arange(width) < lengths[:, None]
    # Cut points: 0, a few breaks, and the end (the last one closes on the last token).
    points = [np.unique(np.r_[0, rng.integers(1, n + 1, rng.integers(0, 4)), n]) if n else np.r_[0] for n in lengths]
    points[-1] = np.empty(0, dtype=np.int64)
    cuts = rc.Cuts.from_rows(points)
    steps = rc.score_steps(-rng.random(len(cuts.positions)) * 3, cuts.offsets)
    outcome = rng.choice([0.0, 1.0], rows)
    token_level = -0.01 * rng.random((rows, width)) * mask  # an in-reward KL
    token_level[np.arange(rows), lengths - 1] += outcome  # where verl's reward managers put it
    uid = np.array([f"prompt-{b // group}" for b in range(rows)], dtype=object)
    values = (rng.normal(size=(rows, width)) * mask).astype(np.float32)
    return dict(mask=mask, cuts=cuts, steps=steps, token_level=token_level, uid=uid, values=values,
                groups=np.arange(rows) // group)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_verls_dispatch_equals_compute_advantages(name, seed):
    b = batch(seed)
    data = DataProto.from_dict(
        tensors={"token_level_rewards": torch.tensor(b["token_level"], dtype=torch.float32),
                 "response_mask": torch.tensor(b["mask"], dtype=torch.float32)},
        non_tensors={"uid": b["uid"]},
    )
    config = OmegaConf.create({"adv_estimator": name, "gamma": 0.97, "lam": 0.9, "repro": {"alpha": 0.3}})
    with process_rewards(b["cuts"], torch.tensor(b["steps"].reward), torch.tensor(b["values"])):
        data = compute_advantage(data, adv_estimator=name, gamma=0.97, lam=0.9, config=config)

    estimator = ESTIMATORS[name]
    scores = b["token_level"].astype(np.float32).astype(np.float64)
    per_token = estimator in ("reinforce_pp", "ppo")

    def direct(alpha: float) -> rc.Advantages:
        return rc.compute_advantages(
            estimator, np.zeros(len(scores)) if per_token else scores.sum(1), b["steps"].reward,
            b["cuts"].offsets, b["cuts"].positions, b["mask"], b["groups"],
            alpha=alpha, gamma=0.97, lam=0.9 if estimator == "ppo" else 1.0,
            values=b["values"] if estimator == "ppo" else None, token_rewards=scores if per_token else None,
        )

    expected = direct(0.3)
    np.testing.assert_allclose(data.batch["advantages"].numpy(), expected.advantages, atol=1e-6)
    returns = expected.advantages if expected.returns is None else expected.returns
    np.testing.assert_allclose(data.batch["returns"].numpy(), returns, atol=1e-6)
    # The process part is in: without it (alpha = 0) the advantages differ.
    plain = direct(0.0)
    assert np.abs(plain.advantages - expected.advantages).max() > 1e-3


def parity_batch(seed: int, width: int = 20):
    """verl's tensors for alpha = 0 parity: groups of 4 and 3, two singleton groups, an empty
    response with a score of 1 (verl's reward managers put it on column -1, outside the mask), an
    in-reward KL on every token besides the score on the last, values everywhere (padding included:
    verl's gae must not read them), and RePro cuts with nonzero step rewards."""
    rng = np.random.default_rng(seed)
    sizes = [4, 1, 3, 1]
    rows = sum(sizes)
    lengths = rng.integers(1, width + 1, rows)
    lengths[0], lengths[2] = width, 0  # a full row; an empty response inside the first group
    mask = np.arange(width) < lengths[:, None]
    points = [np.unique(np.r_[0, rng.integers(1, n + 1, rng.integers(0, 4)), n]) if n else np.r_[0] for n in lengths]
    cuts = rc.Cuts.from_rows(points)
    steps = rc.score_steps(-rng.random(len(cuts.positions)) * 3, cuts.offsets).reward
    token_level = -0.02 * rng.random((rows, width)) * mask
    outcome = rng.choice([0.0, 1.0], rows)
    outcome[2] = 1.0  # the empty response's score counts in its group's statistics, as in verl's grpo
    token_level[np.arange(rows), lengths - 1] += outcome
    uid = np.array([f"p{g}" for g, n in enumerate(sizes) for _ in range(n)], dtype=object)
    rng.shuffle(uid)  # groups need not be contiguous
    values = rng.normal(size=(rows, width))

    def f32(x):
        return torch.tensor(x, dtype=torch.float32)

    return dict(token_level=f32(token_level), mask=f32(mask), uid=uid, cuts=cuts, steps=steps, values=f32(values))


def verls_own(name: str, b: dict, config) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's counterpart of a repro_* estimator, called as verl's compute_advantage calls it. verl
    has no dr_grpo estimator: Dr. GRPO is its grpo with norm_adv_by_std_in_grpo=False."""
    rewards, mask = b["token_level"].clone(), b["mask"]
    estimator = ESTIMATORS[ALIASES.get(name, name)]
    if estimator in ("grpo", "dr_grpo"):
        divide = estimator == "grpo" and config.get("norm_adv_by_std_in_grpo", True)
        return core_algos.compute_grpo_outcome_advantage(rewards, mask, b["uid"], norm_adv_by_std_in_grpo=divide)
    if estimator == "ppo":
        return core_algos.compute_gae_advantage_return(rewards, b["values"], mask, config.gamma, config.lam)
    if estimator == "reinforce_pp":
        return core_algos.compute_reinforce_plus_plus_outcome_advantage(rewards, mask, config=config)
    return core_algos.compute_reinforce_plus_plus_baseline_outcome_advantage(rewards, mask, b["uid"], config=config)


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("name", sorted([*ESTIMATORS, *ALIASES]))
@pytest.mark.parametrize("seed", range(4))
def test_alpha_zero_is_verls_own_estimator_returns_included(name, norm, seed):
    """With alpha = 0 the process part vanishes and each repro_* estimator is its verl counterpart,
    advantages and returns, on the response mask (verl's gae returns A + V on the padding too)."""
    b = parity_batch(seed)
    config = OmegaConf.create({"adv_estimator": name, "gamma": 0.9, "lam": 0.8, "norm_adv_by_std_in_grpo": norm,
                               "repro": {"alpha": 0.0}})
    with process_rewards(b["cuts"], b["steps"], values=b["values"]):
        ours = get_adv_estimator_fn(name)(token_level_rewards=b["token_level"].clone(), response_mask=b["mask"],
                                          index=b["uid"], config=config)
    theirs = verls_own(name, b, config)
    mask = b["mask"].numpy()
    for what, mine, verls in zip(("advantages", "returns"), ours, theirs, strict=True):
        np.testing.assert_allclose(mine.numpy() * mask, verls.numpy() * mask, atol=1e-5, err_msg=what)
    assert np.abs(ours[0].numpy()).max() > 0.1  # not trivially zero


@pytest.mark.parametrize("name", ["repro_grpo", "repro_dr_grpo", "repro_reinforce_pp_baseline"])
def test_group_ids_of_mixed_types_group_as_in_verl(name):
    """verl groups rows by their uid as dict keys: strings, integers (NumPy's among them) and None
    may share one batch, and 1 and np.int64(1) are one group. Rows 1, 4 and 6 (1) are a group."""
    b = parity_batch(7)
    b["uid"] = np.array(["p0", 1, None, "p0", np.int64(1), None, 1, "p7", 2.5], dtype=object)
    config = OmegaConf.create({"gamma": 1.0, "lam": 1.0, "repro": {"alpha": 0.0}})
    with process_rewards(b["cuts"], b["steps"]):
        ours = get_adv_estimator_fn(name)(token_level_rewards=b["token_level"].clone(), response_mask=b["mask"],
                                          index=b["uid"], config=config)
    theirs = verls_own(name, b, config)
    np.testing.assert_allclose(ours[0].numpy(), theirs[0].numpy() * b["mask"].numpy(), atol=1e-5)
    unhashable = np.array([2] * 9, dtype=object)
    unhashable[0] = [1]
    with process_rewards(b["cuts"], b["steps"]), pytest.raises(ReproError) as caught:
        get_adv_estimator_fn(name)(token_level_rewards=b["token_level"], response_mask=b["mask"], index=unhashable,
                                   config=config)
    assert caught.value.argument == "index" and "row 0" in caught.value.message


@pytest.mark.parametrize("inside", [False, True])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_non_finite_rewards_are_refused_naming_row_and_column(name, inside):
    """verl's own estimators turn a NaN in token_level_rewards, even in a padding column, into NaN
    advantages (the whole row's sum, the whitening); repro's refuse it, saying where it is."""
    b = parity_batch(8)
    lengths = b["mask"].sum(1).long().numpy()
    row = int(np.flatnonzero((lengths > 0) & (lengths < b["mask"].shape[1]))[0])
    length = int(lengths[row])
    column = length - 1 if inside else length
    b["token_level"][row, column] = float("nan")
    config = OmegaConf.create({"gamma": 0.9, "lam": 0.8, "repro": {"alpha": 0.0}})
    assert torch.isnan(verls_own(name, b, config)[0]).any()
    with process_rewards(b["cuts"], b["steps"], values=b["values"]), pytest.raises(ReproError) as caught:
        get_adv_estimator_fn(name)(token_level_rewards=b["token_level"], response_mask=b["mask"], index=b["uid"],
                                   config=config)
    assert caught.value.argument == "token_level_rewards"
    where = "inside" if inside else "outside"
    assert f"row {row}, column {column} ({where} the response mask) holds nan" in caught.value.message
    assert "finite" in caught.value.message.split(";")[-1]


def test_norm_adv_by_std_in_grpo_reaches_the_process_part():
    """repro_grpo with norm_adv_by_std_in_grpo=False is repro_dr_grpo, process part included."""
    b = parity_batch(5)
    config = OmegaConf.create({"norm_adv_by_std_in_grpo": False, "repro": {"alpha": 0.5}})
    args = dict(response_mask=b["mask"], index=b["uid"], config=config)
    with process_rewards(b["cuts"], b["steps"]):
        grpo = get_adv_estimator_fn("repro_grpo")(token_level_rewards=b["token_level"], **args)
        dr_grpo = get_adv_estimator_fn("repro_dr_grpo")(token_level_rewards=b["token_level"], **args)
        divided = get_adv_estimator_fn("repro_grpo")(token_level_rewards=b["token_level"],
                                                     **{**args, "config": OmegaConf.create({"repro": {"alpha": 0.5}})})
    np.testing.assert_array_equal(grpo[0].numpy(), dr_grpo[0].numpy())
    assert np.abs(grpo[0].numpy() - divided[0].numpy()).max() > 1e-2


@pytest.mark.parametrize("name", ["repro_grpo", "repro_gae"])
def test_the_authors_options_are_read_from_algorithm_repro(name):
    """stats_include_baseline, drop_first_token_reward and critic_target (ppo) reach the core like alpha."""
    b = parity_batch(6)
    options = {"stats_include_baseline": True, "drop_first_token_reward": True}
    if name == "repro_gae":
        options["critic_target"] = "advantages"
    config = OmegaConf.create({"gamma": 0.9, "lam": 0.8, "repro": {"alpha": 0.5, **options}})
    with process_rewards(b["cuts"], b["steps"], values=b["values"]):
        ours = get_adv_estimator_fn(name)(token_level_rewards=b["token_level"].clone(), response_mask=b["mask"],
                                          index=b["uid"], config=config)
    estimator = ESTIMATORS[name]
    mask = b["mask"].numpy().astype(bool)
    scores = b["token_level"].numpy().astype(np.float64)
    groups = np.unique(b["uid"], return_inverse=True)[1]
    per_token = estimator == "ppo"
    expected = rc.compute_advantages(
        estimator, np.zeros(len(mask)) if per_token else scores.sum(1), b["steps"], b["cuts"].offsets,
        b["cuts"].positions, mask, groups, alpha=0.5, gamma=0.9, lam=0.8 if per_token else 1.0,
        values=b["values"].numpy() if per_token else None, token_rewards=scores if per_token else None, **options,
    )
    np.testing.assert_allclose(ours[0].numpy(), expected.advantages, atol=1e-6)
    if per_token:
        np.testing.assert_allclose(ours[1].numpy(), expected.returns, atol=1e-6)
    with pytest.raises(ReproError, match="algorithm.repro.critic_target"):
        with process_rewards(b["cuts"], b["steps"], values=b["values"]):
            get_adv_estimator_fn("repro_grpo")(
                token_level_rewards=b["token_level"], response_mask=b["mask"], index=b["uid"],
                config=OmegaConf.create({"repro": {"critic_target": "advantages"}}),
            )


def test_errors_are_clear():
    b = batch(4)
    cuts, rewards = b["cuts"], b["steps"].reward
    estimator = get_adv_estimator_fn("repro_grpo")
    args = dict(token_level_rewards=torch.tensor(b["token_level"]), response_mask=torch.tensor(b["mask"]),
                index=b["uid"], config=None)
    with pytest.raises(ReproError, match="algorithm.adv_estimator: repro_grpo found no process rewards"):
        estimator(**args)
    with process_rewards(cuts.take([0, 1, 2]), rewards[: cuts.offsets[3]]):
        with pytest.raises(ReproError, match=r"process_rewards: the cuts have 3 rows, expected one per batch row "
                                             r"\(B = 8\)"):
            estimator(**args)
    with process_rewards(cuts, rewards[:-1]):
        with pytest.raises(ReproError, match=r"process_rewards: step_rewards has \d+ entries, expected one per cut"):
            estimator(**args)
    short = int(np.argmin(b["mask"].sum(1)[:-1]))  # a real row shorter than the width
    length = int(b["mask"][short].sum())
    beyond = rc.Cuts.from_rows([np.r_[0, length + 1] if row == short else cuts.row(row) for row in range(len(cuts))])
    with process_rewards(beyond, np.zeros(len(beyond.positions))):
        with pytest.raises(ReproError, match=f"process_rewards: batch row {short}: cut point {length + 1} lies "
                                             f"outside its response of {length} tokens"):
            estimator(**args)
    unsorted = rc.Cuts.from_rows([np.r_[0, 2, 1] if row == 0 else cuts.row(row) for row in range(len(cuts))])
    with process_rewards(unsorted, np.zeros(len(unsorted.positions))):
        with pytest.raises(ReproError, match="process_rewards: positions: row 0: expected strictly increasing"):
            estimator(**args)
    with process_rewards(cuts, rewards):
        with pytest.raises(ReproError, match="process_rewards: repro_gae needs the critic's values"):
            get_adv_estimator_fn("repro_gae")(**args)
        with pytest.raises(ReproError, match="algorithm.repro.alpha: expected a finite number"):
            estimator(**{**args, "config": OmegaConf.create({"repro": {"alpha": float("nan")}})})
        with pytest.raises(ReproError, match="algorithm.norm_adv_by_std_in_grpo: expected True or False"):
            estimator(**{**args, "config": OmegaConf.create({"norm_adv_by_std_in_grpo": "yes"})})
        # The authors' fork's keys are refused, naming ours, even by a plain verl run (no repro_sync).
        for key, ours in (("repro_alpha", "algorithm.repro.alpha"), ("num_forking_token", "algorithm.repro.k")):
            config = OmegaConf.create({"adv_estimator": "repro_grpo", key: 3, "repro": {"alpha": 0.0}})
            data = DataProto.from_dict(tensors={"token_level_rewards": args["token_level_rewards"],
                                                "response_mask": args["response_mask"]}, non_tensors={"uid": b["uid"]})
            with pytest.raises(ReproError, match=f"algorithm.{key}: .*set {ours} instead"):
                compute_advantage(data, adv_estimator="repro_grpo", config=config)
    with pytest.raises(ReproError, match="process_rewards: expected the cut points as a repro_core.Cuts"):
        with process_rewards(b["mask"], rewards):
            pass


def test_verls_engines_build_models_next_to_trl():
    """verl patches TRL's value-head model on every model build; TRL >= 1.13 has none (compat.py)."""
    code = (
        "import transformers, trl, verl\n"
        "from verl.models.transformers import monkey_patch\n"
        "config = transformers.Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,"
        " num_attention_heads=2, num_key_value_heads=1)\n"
        "monkey_patch.apply_monkey_patch(transformers.AutoModelForCausalLM.from_config(config),"
        " use_remove_padding=False)\n"
        "print(hasattr(trl, 'AutoModelForCausalLMWithValueHead'), monkey_patch.is_trl_available())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["False", "False"]
