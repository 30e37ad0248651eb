"""repro-core: RePro process rewards for RL post-training (arXiv 2512.01925).

The NumPy API, in pipeline order::

    delims = repro_core.Delimiters.from_tokenizer(tokenizer)      # once per vocabulary
    cuts = repro_core.select_cuts(ids, mask, entropies, delimiters=delims, k=20)
    steps = repro_core.score_steps(j_values, cuts.offsets)       # J from your model
    adv = repro_core.compute_advantages("grpo", rewards, steps.reward, cuts.offsets,
                                        cuts.positions, mask, group_index)

Importing this package never imports torch.
"""

from importlib.metadata import PackageNotFoundError, version

from ._api import (
    Advantages,
    Cuts,
    Estimator,
    Segments,
    Steps,
    compute_advantages,
    score_steps,
    segment_paragraphs,
    select_cuts,
)
from .delimiters import Delimiters, think_end_id
from .errors import ReproError

try:
    __version__ = version("repro-core")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = [
    "Advantages",
    "Cuts",
    "Delimiters",
    "Estimator",
    "ReproError",
    "Segments",
    "Steps",
    "__version__",
    "compute_advantages",
    "score_steps",
    "segment_paragraphs",
    "select_cuts",
    "think_end_id",
]
