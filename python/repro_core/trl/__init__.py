"""RePro inside TRL (needs the ``trl`` extra): ``ReproGRPOTrainer`` / ``ReproGRPOConfig`` on TRL's
GRPO, and ``ReproPPOTrainer`` / ``ReproPPOConfig``, PPO with a critic on the same machinery."""

from .config import ReproArguments, ReproGRPOConfig, ReproPPOConfig
from .grpo import ReproGRPOTrainer
from .ppo import ReproPPOTrainer

__all__ = ["ReproArguments", "ReproGRPOConfig", "ReproGRPOTrainer", "ReproPPOConfig", "ReproPPOTrainer"]
