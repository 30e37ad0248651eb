"""Presets: a named set of settings applied under what the user sets, the same in Python, on the
command line (``--repro_preset``), in TRL configs and in verl's ``algorithm.repro`` block."""

from __future__ import annotations

import dataclasses

import pytest

import repro_core as rc
from repro_core.config import PRESETS, ReproConfig, preset_config, preset_flags

AUTHORS = PRESETS["authors"]


def test_every_preset_key_is_a_setting():
    fields = {f.name for f in dataclasses.fields(ReproConfig)}
    for name, settings in PRESETS.items():
        assert set(settings) <= fields, name
    assert preset_config("paper") == ReproConfig()


def test_authors_preset_is_the_reference_code():
    config = preset_config("authors")
    assert (config.w, config.alpha, config.delimiters) == (0.0, 0.05, "reference")
    assert config.stats_include_baseline and config.drop_first_token_reward and config.critic_target == "gae"
    assert config.answer_special_tokens and config.j_at_rollout_temperature
    # Each quirk is its own field: the preset under an override keeps the rest.
    assert preset_config("authors", alpha=0.1, answer_special_tokens=False) == dataclasses.replace(
        config, alpha=0.1, answer_special_tokens=False
    )


def test_unknown_preset_names_the_argument():
    with pytest.raises(rc.ReproError) as caught:
        preset_config("fast")
    assert caught.value.argument == "preset"
    with pytest.raises(rc.ReproError) as caught:
        preset_flags("fast")
    assert caught.value.argument == "repro_preset"


def test_repro_train_applies_the_preset_under_the_file_and_the_flags(tmp_path):
    pytest.importorskip("trl")
    from repro_core.train import parse_args

    out = ["--output_dir", str(tmp_path / "out")]
    *_, config = parse_args(["--repro_preset", "authors", "--repro_alpha", "0.1", *out])
    assert (config.repro_alpha, config.repro_w, config.repro_delimiters) == (0.1, 0.0, "reference")
    assert config.repro_settings() == preset_config("authors", alpha=0.1, temperature=config.temperature)
    yaml = tmp_path / "run.yaml"
    yaml.write_text("repro_preset: authors\nrepro_w: 0.2\n")
    *_, config = parse_args(["--config", str(yaml), *out])
    assert (config.repro_w, config.repro_alpha, config.repro_stats_include_baseline) == (0.2, 0.05, True)
    *_, config = parse_args(out)
    assert config.repro_settings() == ReproConfig(temperature=config.temperature)
    with pytest.raises(rc.ReproError) as caught:
        parse_args(["--repro-preset", "fast", *out])
    assert caught.value.argument == "--repro_preset"


def test_repro_score_takes_the_settings_it_has():
    pytest.importorskip("trl")
    from repro_core.analysis.arguments import parse_arguments

    repro = parse_arguments(["traces.jsonl", "--repro_preset", "authors", "--repro_w", "0.3"]).repro
    assert (repro.repro_w, repro.repro_delimiters, repro.repro_answer_special_tokens) == (0.3, "reference", True)
    assert not hasattr(repro, "repro_alpha")  # scoring has no advantages: the preset's alpha is left out


def test_trl_configs_take_the_preset_as_keywords():
    pytest.importorskip("trl")
    from repro_core.trl import ReproGRPOConfig, ReproPPOConfig

    config = ReproGRPOConfig(output_dir="/tmp/unused", report_to="none", use_cpu=True, **preset_flags("authors"))
    assert config.repro_settings() == preset_config("authors", temperature=config.temperature)
    # The authors' PPO also regresses the critic on the advantage plus V: a setting of its own.
    ppo = ReproPPOConfig(output_dir="/tmp/unused", report_to="none", use_cpu=True, repro_critic_target="advantages",
                         **preset_flags("authors"))
    assert ppo.repro_settings().critic_target == "advantages" and ppo.repro_settings().w == 0.0


def test_verl_block_applies_the_preset_under_its_keys():
    pytest.importorskip("verl")
    from omegaconf import OmegaConf

    from repro_core.verl.estimators import repro_block

    algorithm = OmegaConf.create({"repro": {"preset": "authors", "alpha": 0.1}})
    assert repro_block(algorithm) == {**AUTHORS, "alpha": 0.1}
    assert repro_block(OmegaConf.create({})) == {}
    with pytest.raises(rc.ReproError) as caught:
        repro_block(OmegaConf.create({"repro": {"preset": "fast"}}))
    assert caught.value.argument == "algorithm.repro.preset"


def test_verl_repro_config_reads_the_preset(tmp_path):
    pytest.importorskip("verl")
    from repro_core.verl.trainer import repro_config
    from test_verl_trainer import verl_config

    config = repro_config(verl_config(tmp_path, "repro_grpo", "+algorithm.repro.preset=authors"))
    # verl_config sets alpha, w and k in the block: those win over the preset.
    assert (config.alpha, config.w, config.k) == (0.2, 0.3, 3)
    assert config.delimiters == "reference" and config.stats_include_baseline and config.answer_special_tokens
    with pytest.raises(rc.ReproError) as caught:
        repro_config(verl_config(tmp_path, "repro_grpo", "+algorithm.repro.preset=fast"))
    assert caught.value.argument == "algorithm.repro.preset"
