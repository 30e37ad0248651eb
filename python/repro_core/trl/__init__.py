"""RePro inside TRL: ``ReproGRPOTrainer`` / ``ReproGRPOConfig`` (needs the ``trl`` extra)."""

from .config import ReproArguments, ReproGRPOConfig
from .grpo import ReproGRPOTrainer

__all__ = ["ReproArguments", "ReproGRPOConfig", "ReproGRPOTrainer"]
