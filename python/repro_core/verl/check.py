"""The checks of a verl run with RePro, before anything starts: ``repro verl-check OVERRIDES...``.

``repro verl-check`` (or ``python -m repro_core.verl.check``) takes the overrides of a
``python3 -m verl.trainer.main_ppo`` command, composes verl's ``ppo_trainer`` config from them as
``main_ppo`` does, and runs what ``main_ppo`` runs before Ray starts: verl's own
``validate_config``, then ``repro_sync``'s start-up checks (``startup_problems``). It prints one
line per problem, naming the override that fixes it, and exits with status 2; or an ``ok`` line
and status 0.

``repro_sync``'s start-up checks have their home here: the trainer runs them when it is built, and
importing this module (the plugin does, in every process verl starts) makes verl's own
``validate_config`` run them too, so that ``main_ppo`` stops at start-up. A ``repro_*`` estimator
without ``trainer.v1.trainer_mode=repro_sync`` is refused there, instead of at the first advantage
step.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import verl.utils
import verl.utils.config as verl_config
from omegaconf import DictConfig, OmegaConf
from verl.trainer.ppo.utils import need_critic, need_reference_policy

from ..config import ReproConfig
from ..errors import ReproError
from ..objective.masks import Masks
from .estimators import (
    ALIASES,
    ESTIMATORS,
    OUTSIDE_THE_BLOCK,
    REPRO_KEYS,
    check_algorithm_keys,
    estimator_of,
    repro_block,
)

__all__ = ["STRATEGIES", "compose", "engine_problems", "main", "problems", "repro_config", "startup_problems",
           "validate_config"]

#: What the shared path cannot honour falls back to this (the plain method, on any engine).
_FALLBACK = "or set algorithm.repro.objective_mode=per_cut (one probe row per cut point through verl's " \
    "compute_log_prob, on any engine)"


def repro_config(config: DictConfig) -> ReproConfig:
    """The ``ReproConfig`` of a verl run: ``algorithm.repro.*`` (``REPRO_KEYS``), the estimator (a
    ``repro_*`` name or the authors' alias of one), ``algorithm.gamma`` (and ``lam`` for repro_gae)
    and the rollout temperature; every value checked here, a ReproError naming the verl key (the
    authors' ``algorithm.repro_alpha`` and ``algorithm.num_forking_token`` are refused)."""
    algorithm = config.algorithm
    name = algorithm.adv_estimator
    estimator = estimator_of(name)
    if estimator is None:
        raise ReproError(
            "algorithm.adv_estimator", f"repro_sync needs one of {', '.join([*ESTIMATORS, *ALIASES])}, got {name!r}"
        )
    check_algorithm_keys(algorithm)
    repro = repro_block(algorithm)
    for key in repro:
        if key in OUTSIDE_THE_BLOCK:
            source = OUTSIDE_THE_BLOCK[key]
            hint = source if source.startswith("not used") else f"set {source} instead"
            raise ReproError(f"algorithm.repro.{key}", f"not a key of algorithm.repro ({hint})")
    unknown = sorted(set(repro) - set(REPRO_KEYS))
    if unknown:
        raise ReproError("algorithm.repro", f"unknown keys {unknown}; expected some of {list(REPRO_KEYS)}")
    host = {
        "estimator": estimator,
        "gamma": algorithm.gamma,
        "lam": algorithm.lam if estimator == "ppo" else 1.0,
        "temperature": config.actor_rollout_ref.rollout.temperature,
    }
    try:
        return ReproConfig(**repro, **host)
    except ReproError as error:
        if error.argument in repro:
            raise error.renamed(f"algorithm.repro.{error.argument}") from None
        if error.argument in host:
            raise error.renamed(OUTSIDE_THE_BLOCK[error.argument]) from None
        raise


#: The engines (``actor_rollout_ref.actor.strategy``) each objective mode runs J on; per_cut, through
#: verl's own compute_log_prob, runs on any.
STRATEGIES = {"shared": ("fsdp2",), "fused": ("fsdp", "fsdp2")}


def engine_problems(config: DictConfig, mode: str) -> list[ReproError]:
    """The settings ``objective_mode=shared`` or ``fused`` cannot honour: J runs on each rank's
    whole rows in verl's FSDP engine (``worker.py``, ``fused.py``), on a model whose attention layers
    it can mask; fused's probe call goes through the model's own forward."""
    found = []
    actor = config.actor_rollout_ref.actor
    if actor.strategy not in STRATEGIES[mode]:
        engines = " or ".join(STRATEGIES[mode])
        fused = " algorithm.repro.objective_mode=fused (fsdp or fsdp2)," if mode == "shared" else ""
        found.append(ReproError("actor_rollout_ref.actor.strategy", f"objective_mode={mode} scores J inside verl's "
                                f"{engines} actor engine, got {actor.strategy!r}; set actor_rollout_ref.actor.strategy="
                                f"{STRATEGIES[mode][-1]},{fused} {_FALLBACK}"))
    for key in ("ulysses_sequence_parallel_size", "fsdp_config.ulysses_sequence_parallel_size"):
        size = OmegaConf.select(actor, key, default=1) or 1
        if size > 1:
            found.append(ReproError(f"actor_rollout_ref.actor.{key}", f"objective_mode={mode} scores whole rows on "
                                    f"each rank and cannot split them over {size} sequence-parallel ranks; set it to 1 "
                                    f"{_FALLBACK}"))
    if mode == "fused" and config.actor_rollout_ref.model.get("use_fused_kernels", False):
        found.append(ReproError("actor_rollout_ref.model.use_fused_kernels", "objective_mode=fused runs its probe "
                                "call through the model's own forward, which verl's fused kernels replace; set it to "
                                f"False, or algorithm.repro.objective_mode=shared (fsdp2), {_FALLBACK}"))
    layers = _unmaskable_layers(config.actor_rollout_ref.model.path)
    if layers:
        found.append(ReproError("algorithm.repro.objective_mode", f"objective_mode={mode} cannot mask the model's "
                                f"{', '.join(layers)} layers; set algorithm.repro.objective_mode=per_cut"))
    return found


def startup_problems(config: DictConfig) -> list[ReproError]:
    """Every reason ``repro_sync`` would refuse this config at start-up, each naming the override
    that fixes it; none for a run without RePro (neither a ``repro_*`` estimator nor repro_sync).

    The trainer mode (a ``repro_*`` estimator computes its process rewards only in repro_sync,
    which only verl's v1 trainers run), the ``algorithm.repro`` block and the estimator, the critic
    of repro_gae, bypass mode, and for ``objective_mode=shared`` the engine (fsdp2), Ulysses and the
    model's layers. LoRA (``model.lora_rank``) and FSDP2's ``offload_policy`` run on both paths.
    """
    mode = config.trainer.v1.trainer_mode
    if estimator_of(config.algorithm.adv_estimator) is None and mode != "repro_sync":
        return []
    found: list[ReproError] = []
    if mode != "repro_sync":
        found.append(ReproError("trainer.v1.trainer_mode", f"algorithm.adv_estimator={config.algorithm.adv_estimator} "
                                "gets its process rewards in the repro_sync trainer's advantage step; set "
                                f"trainer.v1.trainer_mode=repro_sync (got {mode!r})"))
    elif not config.trainer.use_v1:
        found.append(ReproError("trainer.use_v1", "repro_sync is a v1 trainer, and main_ppo runs the legacy one "
                                "(which ignores trainer.v1.trainer_mode) without it; set trainer.use_v1=True"))
    try:
        repro = repro_config(config)
    except ReproError as error:
        return [*found, error]
    if repro.estimator == "ppo" and not config.critic.get("enable"):
        found.append(ReproError("critic.enable", f"algorithm.adv_estimator={config.algorithm.adv_estimator} needs "
                                "the critic: set critic.enable=True"))
    if (config.algorithm.get("rollout_correction") or {}).get("bypass_mode", False):
        found.append(ReproError("algorithm.rollout_correction.bypass_mode", "repro_sync reads the entropies of "
                                "verl's old-log-prob pass, which bypass mode skips; set it to False"))
    if repro.objective_mode in STRATEGIES:
        found += engine_problems(config, repro.objective_mode)
    return found


@functools.cache
def _unmaskable_layers(path: str) -> tuple[str, ...]:
    """The layer types of the model at ``path`` that J's masks do not describe (linear attention);
    none where its config cannot be read here (verl reads it on the workers)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path).get_text_config()
    except (OSError, ValueError):
        return ()
    return tuple(Masks.of(config, "sdpa").unmaskable_layers)


def verl_problems(config: DictConfig) -> list[ReproError]:
    """verl's own ``validate_config`` as ``main_ppo`` calls it: its first problem, if any, named
    by the config block verl names."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # verl's notes on the critic and the like
            _verl_validate_config(config=config, use_reference_policy=need_reference_policy(config),
                                  use_critic=need_critic(config))
    except Exception as error:  # verl raises assertions, ValueErrors and Hydra's instantiation errors
        return [_named(error)]
    return []


def _named(error: Exception) -> ReproError:
    """A verl validation error as one ``ReproError`` line: the block it names (Hydra's ``full_key``,
    or verl's ``[block]`` prefix) and verl's own message."""
    text = str(error)
    inner = re.search(r"\w+Error\((['\"])(.*)\1\)", text, re.S)
    message = " ".join((inner.group(2) if inner else text).split())
    key = re.search(r"full_key: (\S+)", text) or re.match(r"\[([\w.]+\.[\w.]+)\]", message)
    return ReproError(key.group(1) if key else "verl", f"verl's validate_config: {message}")


def problems(config: DictConfig) -> list[ReproError]:
    """What ``main_ppo`` would refuse at start-up: verl's validation, then repro_sync's checks."""
    return [*verl_problems(config), *startup_problems(config)]


def compose(overrides: Sequence[str]) -> DictConfig:
    """verl's ``ppo_trainer`` config with ``overrides``, as ``main_ppo`` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module(config_module="verl.trainer.config", version_base=None):
            return hydra_compose(config_name="ppo_trainer", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        message = " ".join(str(error).split())
        key = re.search(r"'([\w+~.]+)'", message)
        raise ReproError(key.group(1) if key else "OVERRIDES", message) from None


# verl's own function, also where this module is imported twice (``python -m``).
_verl_validate_config: Any = getattr(verl_config.validate_config, "__wrapped__", verl_config.validate_config)


@functools.wraps(_verl_validate_config)
def validate_config(config: DictConfig, use_reference_policy: bool, use_critic: bool) -> None:
    """verl's ``validate_config``, then repro_sync's start-up checks: a RePro run that cannot start
    stops where ``main_ppo`` validates its config, before Ray starts."""
    _verl_validate_config(config=config, use_reference_policy=use_reference_policy, use_critic=use_critic)
    found = startup_problems(config)
    if found:
        more = f" (and {len(found) - 1} more problems: `repro verl-check` lists them all)" if len(found) > 1 else ""
        raise ReproError(found[0].argument, found[0].message + more)


verl_config.validate_config = verl.utils.validate_config = validate_config


def main(argv: Sequence[str] | None = None) -> int:
    """``repro verl-check OVERRIDES...``: one line per problem on stderr and status 2, or ``ok``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print("usage: repro verl-check OVERRIDE [OVERRIDE ...]\n\n" + __doc__.split("\n\n")[1])
        return 0
    if not args:
        raise ReproError("OVERRIDES", "expected the overrides of a verl.trainer.main_ppo command, got none")
    config = compose(args)
    found = problems(config)
    for problem in found:
        print(f"repro: error: {problem}", file=sys.stderr)
    if found:
        return 2
    ours = config.trainer.v1.trainer_mode == "repro_sync"
    print("ok: verl's validate_config" + (" and repro_sync's start-up checks pass" if ours else " passes (no RePro)"))
    return 0


if __name__ == "__main__":
    from ..cli import main as repro

    sys.exit(repro(["verl-check", *sys.argv[1:]]))
