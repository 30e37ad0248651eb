"""RePro for verl: advantage estimators and the ``repro_sync`` trainer, in verl's own registries.

verl 0.9 imports this module in every process through the ``verl.plugins`` entry point, on every
node where repro-core is installed with its ``verl`` extra (docs/install.md). Importing it, in this order:

1. ``estimators`` registers ``repro_<name>`` for every repro_core estimator (``repro_gae`` for
   ``ppo``) with verl's ``register_adv_est``; their process rewards come from
   ``process_rewards(...)``;
2. ``compat`` lets verl's engines build models next to TRL >= 1.13. It comes before the trainer:
   verl swallows a plugin's import errors, so a failing trainer import must not cost the fix;
3. ``worker`` defines ``ReproActorWorker``, verl's actor worker with the shared-prefix J, whose
   actor is ``fused``'s ``ReproTrainingWorker`` (J inside verl's old-log-prob pass);
4. ``trainer`` registers ``repro_sync`` with verl's v1 trainer registry
   (``trainer.v1.trainer_mode=repro_sync``), which computes the process rewards and runs verl's
   advantage step inside ``process_rewards(...)``; with ``objective_mode=shared`` or ``fused`` it
   runs the actor workers as ``ReproActorWorker``. It imports ``check``, the home of repro_sync's start-up checks
   (``repro verl-check``), which adds them to verl's own ``validate_config``: ``main_ppo`` runs
   them before Ray starts.

Each module imports from its siblings, never from this package. docs/verl.md describes the whole.
"""

from __future__ import annotations

# In this order (module docstring): the estimators, the TRL fix, the worker, the trainer (and its checks).
# isort: off
from .estimators import ESTIMATORS, ProcessRewards, ReproEstimator, process_rewards
from .compat import narrow_verl_trl_check
from .worker import ReproActorWorker
from .trainer import ReproTrainerSync
# isort: on

__all__ = [
    "ESTIMATORS",
    "ProcessRewards",
    "ReproActorWorker",
    "ReproEstimator",
    "ReproTrainerSync",
    "narrow_verl_trl_check",
    "process_rewards",
]
