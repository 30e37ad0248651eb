"""The pre-flight check of a verl run (repro_core/verl/check.py): ``repro verl-check OVERRIDES...``
runs verl's own validate_config and repro_sync's start-up checks on the composed config, one line
per problem naming the override; main_ppo's own validation runs the same checks at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

pytest.importorskip("verl")

from repro_core import ReproError  # noqa: E402
from repro_core.verl.check import compose  # noqa: E402
from test_docs import run_in_process  # noqa: E402

# verl warns that a non-gae estimator runs without a critic, as meant here.
pytestmark = pytest.mark.filterwarnings("ignore:Disabled critic:UserWarning")

#: A repro_sync run that verl's validation and repro_sync's checks both accept.
CLEAN = [
    "data.train_batch_size=16", "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.actor.ppo_mini_batch_size=8",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2", "actor_rollout_ref.actor.strategy=fsdp2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4", "trainer.n_gpus_per_node=8",
    "algorithm.adv_estimator=repro_grpo", "trainer.v1.trainer_mode=repro_sync",
]


def without(*prefixes: str) -> list[str]:
    return [override for override in CLEAN if not override.startswith(prefixes)]


def lines(printed: str) -> list[str]:
    return [line for line in printed.splitlines() if line.startswith(("repro: error: ", "ok: "))]


def test_a_clean_run_is_ok():
    code, printed = run_in_process(["verl-check", *CLEAN])
    assert code == 0 and lines(printed) == ["ok: verl's validate_config and repro_sync's start-up checks pass"]


def test_a_repro_estimator_without_the_trainer_mode_is_caught():
    code, printed = run_in_process(["verl-check", *without("trainer.v1.trainer_mode")])
    assert code == 2
    assert lines(printed) == ["repro: error: trainer.v1.trainer_mode: algorithm.adv_estimator=repro_grpo gets its "
                              "process rewards in the repro_sync trainer's advantage step; set "
                              "trainer.v1.trainer_mode=repro_sync (got 'sync')"]


def test_every_problem_gets_a_line_naming_its_override():
    """verl's own validation (a micro-batch size left out), the engine and the repro block at once."""
    overrides = [*without("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", "actor_rollout_ref.actor.strategy"),
                 "actor_rollout_ref.actor.strategy=fsdp", "+algorithm.repro.k=-1"]
    code, printed = run_in_process(["verl-check", *overrides])
    found = lines(printed)
    assert code == 2 and len(found) == 2, printed
    assert found[0].startswith("repro: error: actor_rollout_ref.actor: verl's validate_config: [actor] Please set at "
                               "least one of 'actor.ppo_micro_batch_size' or 'actor.ppo_micro_batch_size_per_gpu'")
    assert found[1].startswith("repro: error: algorithm.repro.k: expected")
    overrides = [*without("actor_rollout_ref.actor.strategy"), "actor_rollout_ref.actor.strategy=fsdp",
                 "actor_rollout_ref.actor.ulysses_sequence_parallel_size=2"]
    code, printed = run_in_process(["verl-check", *overrides])
    assert code == 2 and [line.split(": ")[2] for line in lines(printed)] == [
        "actor_rollout_ref.actor.strategy", "actor_rollout_ref.actor.ulysses_sequence_parallel_size"]


def test_a_run_without_repro_gets_only_verls_validation():
    code, printed = run_in_process(["verl-check", *without("algorithm.adv_estimator", "trainer.v1"),
                                    "algorithm.adv_estimator=grpo"])
    assert code == 0 and lines(printed) == ["ok: verl's validate_config passes (no RePro)"]


def test_bad_overrides_are_one_line():
    code, printed = run_in_process(["verl-check", *CLEAN, "algorithm.repro.k=20"])  # a new key needs its +
    assert code == 2 and len(lines(printed)) == 1 and "algorithm.repro.k" in lines(printed)[0]
    code, printed = run_in_process(["verl-check"])
    assert code == 2 and lines(printed) == ["repro: error: OVERRIDES: expected the overrides of a "
                                            "verl.trainer.main_ppo command, got none"]
    code, printed = run_in_process(["verl-check", "--help"])
    assert code == 0 and printed.startswith("usage: repro verl-check OVERRIDE")


def test_main_ppo_runs_the_checks_at_start_up():
    """verl's own entry point validates its config before Ray starts; with the plugin loaded, that
    validation refuses a RePro run that repro_sync would refuse, and passes a clean one."""
    from verl.trainer import main_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy

    config = compose(without("trainer.v1.trainer_mode"))
    with pytest.raises(ReproError, match="trainer.v1.trainer_mode: algorithm.adv_estimator=repro_grpo"):
        main_ppo.validate_config(config=config, use_reference_policy=need_reference_policy(config),
                                 use_critic=need_critic(config))
    config = compose(CLEAN)
    main_ppo.validate_config(config=config, use_reference_policy=False, use_critic=False)


def test_python_m_runs_the_same_check():
    result = subprocess.run([sys.executable, "-m", "repro_core.verl.check", *without("trainer.v1.trainer_mode")],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent)
    assert result.returncode == 2, result.stderr[-2000:]
    assert lines(result.stderr) == [line for line in lines(result.stderr) if "trainer.v1.trainer_mode" in line] != []
