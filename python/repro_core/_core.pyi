# Hand-written stubs of the extension module built from rust/repro-py.
from typing import Final, TypedDict, final

import numpy as np
import numpy.typing as npt

from repro_core.errors import ReproError as ReproError

__all__ = [
    "ESTIMATORS",
    "PARALLEL_MIN_ELEMENTS",
    "DelimiterTable",
    "ReproError",
    "check_options",
    "compute_advantages",
    "score_steps",
    "segment_paragraphs",
    "select_cuts",
]

PARALLEL_MIN_ELEMENTS: Final[int]
ESTIMATORS: Final[tuple[str, ...]]

class _AdvantageOptions(TypedDict):
    """The options of ``compute_advantages``, a mapping (the extension reads it by key)."""

    alpha: float
    gamma: float
    lam: float
    norm_by_std: bool
    process_std: str
    stats_include_baseline: bool
    drop_first_token_reward: bool
    critic_target: str

def check_options(
    estimator: str, k: int, w: float, stability_ema: float | None, options: _AdvantageOptions
) -> None: ...

@final
class DelimiterTable:
    """A compiled paragraph-break rule for one vocabulary (build it through ``Delimiters``)."""

    @staticmethod
    def from_ids(ids: npt.NDArray[np.int64] | npt.NDArray[np.int32]) -> DelimiterTable: ...
    @staticmethod
    def from_text(
        leading_newlines: npt.NDArray[np.uint32],
        trailing_newlines: npt.NDArray[np.uint32],
        whitespace_only: npt.NDArray[np.bool_],
        min_newlines: int,
    ) -> DelimiterTable: ...

_Ids2 = npt.NDArray[np.int64] | npt.NDArray[np.int32]
_Floats1 = npt.NDArray[np.float64] | npt.NDArray[np.float32]
_Floats2 = npt.NDArray[np.float64] | npt.NDArray[np.float32]
_Ints1 = npt.NDArray[np.int64] | npt.NDArray[np.int32]
_Mask2 = npt.NDArray[np.bool_ | np.integer | np.floating]
_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]
_F32 = npt.NDArray[np.float32]

def select_cuts(
    token_ids: _Ids2,
    response_mask: _Mask2,
    entropies: _Floats2,
    delimiters: DelimiterTable,
    k: int,
    think_end_id: int | None,
) -> tuple[_I64, _I64, _I64]:
    """-> (offsets (B+1,), positions (N,), ends (B,))."""

def segment_paragraphs(
    token_ids: _Ids2,
    response_mask: _Mask2,
    delimiters: DelimiterTable,
    think_end_id: int | None,
) -> tuple[_I64, _I64, _I64]:
    """-> (offsets (B+1,), starts (S,), ends (S,))."""

def score_steps(
    j_values: _Floats1, offsets: _Ints1, w: float, stability_ema: float | None
) -> tuple[_F64, _F64, _F64, _F64]:
    """-> (magnitude, stability, score, reward), each (N,)."""

def compute_advantages(
    estimator: str,
    outcome_rewards: _Floats1,
    step_rewards: _Floats1,
    offsets: _Ints1,
    positions: _Ints1,
    response_mask: _Mask2,
    group_index: _Ints1,
    values: _Floats2 | None,
    token_rewards: _Floats2 | None,
    options: _AdvantageOptions,
) -> tuple[_F32, _F32 | None]:
    """-> (advantages (B, T), returns (B, T) for "ppo" and "reinforce_pp" else None)."""
