"""The README's example and commands stay true."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_numpy_example_runs_and_gives_per_token_advantages():
    example = re.search(r"```python\n(import numpy.*?)```", README, re.S).group(1)
    assert len(example.strip().splitlines()) == 8
    namespace: dict = {}
    exec(example, namespace)
    advantages, mask = namespace["adv"].advantages, namespace["mask"]
    assert advantages.shape == (2, 12) and advantages.dtype == np.float32
    assert np.all(advantages[~mask] == 0)
    assert len(np.unique(advantages[0, : mask[0].sum()])) > 1  # RePro varies along the row


def test_ci_runs_exactly_the_readme_test_command():
    quick_start = re.search(r"## Quick start.*?```bash\n(.*?)```", README, re.S).group(1)
    test_command = quick_start.strip().splitlines()[1].split("#")[0].strip()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == test_command


def test_quick_start_runs_the_main_job_on_the_embedded_default():
    quick_start = re.search(r"## Quick start.*?```bash\n(.*?)```", README, re.S).group(1)
    setup = quick_start.strip().splitlines()[0].split("#")[0].strip()
    # The job itself runs in tests/test_train_cli.py (on a tiny model, to keep the suite fast).
    assert setup.endswith("&& .venv/bin/repro train --max-steps 3")


def test_demo_command_scores_every_estimator():
    result = subprocess.run(
        [sys.executable, "-m", "repro_core.cli", "demo", "--batch", "16", "--width", "512"],
        capture_output=True, text=True, check=True,
    )
    for estimator in ("grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline"):
        assert re.search(rf"^{estimator}\s+\d", result.stdout, re.M), result.stdout


def test_demo_reports_bad_arguments_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "repro_core.cli", "demo", "--k", "-1"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "repro: error: --k: expected an integer >= 0, got -1"


def test_verl_switch_composes_into_a_repro_sync_run():
    """The README's verl command: its overrides compose on verl's own config into repro_sync."""
    import pytest

    pytest.importorskip("verl")
    from hydra import compose, initialize_config_module

    from repro_core.verl.trainer import check_shared_objective, repro_config

    block = re.search(r"## verl.*?```bash\n(.*?)```", README, re.S).group(1)
    command = block.split("verl.trainer.main_ppo", 1)[1].replace("\\\n", " ").replace("$HOME", "/home/user")
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        config = compose(config_name="ppo_trainer", overrides=command.split())
    assert (config.trainer.v1.trainer_mode, config.algorithm.adv_estimator) == ("repro_sync", "repro_grpo")
    repro = repro_config(config)
    assert (repro.estimator, repro.alpha, repro.k, repro.w, repro.delimiters) == ("grpo", 0.1, 20, 0.1, "paper")
    assert repro.objective_mode == "shared"
    check_shared_objective(config)  # the engine the shared path needs


def test_authors_recipe_snippet_runs(tmp_path, monkeypatch):
    snippet = re.search(r"```python\n(from repro_core.config import preset_config.*?)```", README, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(snippet, namespace)
    assert namespace["config"].w == 0.0 and namespace["config"].k == 30
    assert namespace["args"].repro_settings().alpha == 0.05
