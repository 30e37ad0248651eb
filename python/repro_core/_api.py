"""The NumPy API: input normalisation around the Rust core in ``_core``.

Each function turns its arguments into arrays the extension reads without copying (int32/int64,
float32/float64, bool or 0/1 masks, any memory order), and wraps the results in frozen
dataclasses. Every check on values lives in Rust; this layer only checks types and ndim, so the
messages name the argument before the extension sees it.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal, get_args

import numpy as np

from . import _core
from .delimiters import Delimiters
from .errors import ReproError

__all__ = [
    "CRITIC_TARGETS",
    "ESTIMATORS",
    "PROCESS_STDS",
    "Advantages",
    "CriticTarget",
    "Cuts",
    "Estimator",
    "ProcessStd",
    "Segments",
    "Steps",
    "check_options",
    "compute_advantages",
    "score_steps",
    "segment_paragraphs",
    "select_cuts",
]

# The Rust core's estimator names (``_core.ESTIMATORS``, checked equal in the tests), for type checkers.
Estimator = Literal["grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)
#: grpo's process std: the group's, the whole batch's, or none (``compute_advantages``).
ProcessStd = Literal["group", "batch", "none"]
PROCESS_STDS: tuple[str, ...] = get_args(ProcessStd)
#: ppo's returns: the GAE return + V (verl's gae) or the combined advantage + V (the authors' code).
CriticTarget = Literal["gae", "advantages"]
CRITIC_TARGETS: tuple[str, ...] = get_args(CriticTarget)


@dataclass(frozen=True)
class Cuts:
    """Cut points of B rows, ragged: row b is ``positions[offsets[b]:offsets[b + 1]]``, sorted, first 0
    and (from ``select_cuts``) last ``ends[b]``, the end of thinking. Per-point arrays (J, ``Steps``)
    follow the same layout; ``split`` cuts them into rows.
    """

    offsets: np.ndarray
    positions: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.ends)

    def row(self, b: int) -> np.ndarray:
        """Row ``b``'s cut points; negative ``b`` counts from the end, as Python's indexing does."""
        b = self._index(b, "b")
        return self.positions[self.offsets[b] : self.offsets[b + 1]]

    def _index(self, b: Any, name: str) -> int:
        """``b`` as a row number in [0, B): negative counts from the end; anything else is a ReproError."""
        index = _integer(b, name)
        if not -len(self) <= index < len(self):
            raise ReproError(name, f"row {index} does not exist: there are {len(self)} rows")
        return index % len(self)

    def rows(self) -> list[np.ndarray]:
        """Every row's cut points."""
        return self.split(self.positions)

    def split(self, values: np.ndarray) -> list[np.ndarray]:
        """A per-point array (N,) in this layout, cut into rows."""
        return np.split(np.asarray(values), self.offsets[1:-1])

    def row_index(self) -> np.ndarray:
        """(N,) the row of every cut point."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.offsets))

    def take(self, rows: Sequence[int] | np.ndarray) -> Cuts:
        """The cuts of ``rows`` (indices, in the order given; negative ones count from the end)."""
        given = rows.reshape(-1).tolist() if isinstance(rows, np.ndarray) else list(rows)
        indices = [self._index(b, "rows") for b in given]
        return Cuts.from_rows([self.row(b) for b in indices], self.ends[np.asarray(indices, dtype=np.int64)])

    @classmethod
    def from_rows(cls, rows: Sequence[Any], ends: Any = None) -> Cuts:
        """Cuts of per-row position lists; ``ends`` default to each row's last point (0 for an empty row)."""
        arrays = [np.asarray(row, dtype=np.int64).reshape(-1) for row in rows]
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([len(row) for row in arrays], out=offsets[1:])
        positions = np.concatenate(arrays) if arrays else np.empty(0, np.int64)
        if ends is None:
            ends = [row[-1] if len(row) else 0 for row in arrays]
        return cls(offsets, positions, np.asarray(ends, dtype=np.int64).reshape(len(arrays)))

    @classmethod
    def concat(cls, parts: Sequence[Cuts]) -> Cuts:
        """The rows of ``parts``, one after another."""
        return cls.from_rows([row for part in parts for row in part.rows()],
                             np.concatenate([part.ends for part in parts]) if parts else None)


@dataclass(frozen=True)
class Steps:
    """Per cut point (cuts order): magnitude M, stability S, composite score C and reward r; 0 at each p_0."""

    magnitude: np.ndarray
    stability: np.ndarray
    score: np.ndarray
    reward: np.ndarray


@dataclass(frozen=True)
class Advantages:
    """Per-token advantages (B, T) float32; returns (B, T) as verl's estimators give them for
    ``"ppo"`` (the critic's target: the raw GAE of the token rewards plus V) and ``"reinforce_pp"``
    (the discounted token rewards, unwhitened), else None (the advantages serve)."""

    advantages: np.ndarray
    returns: np.ndarray | None


@dataclass(frozen=True)
class Segments:
    """Paragraph spans ``[starts[i], ends[i])`` of the thinking part; row b is ``offsets[b]:offsets[b + 1]``."""

    offsets: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


_NATIVE = {
    "ids": (np.dtype(np.int64), np.dtype(np.int32)),
    "floats": (np.dtype(np.float64), np.dtype(np.float32)),
    "mask": tuple(np.dtype(t) for t in (np.bool_, np.int64, np.int32, np.int8, np.uint8, np.float64, np.float32)),
}
# The dtype an array that is not native is converted to, by kind of the source dtype.
_WIDEN: dict[str, dict[str, type[np.generic]]] = {
    "ids": {"i": np.int64, "u": np.int64},
    "floats": {"f": np.float64, "i": np.float64, "u": np.float64, "b": np.float64},
    "mask": {"i": np.int64, "u": np.int64, "f": np.float64},
}
_INT64 = np.iinfo(np.int64)
_EXPECTED = {"ids": "integers", "floats": "real numbers", "mask": "a bool or 0/1 mask"}


def _array(value: Any, name: str, kind: str, ndim: int) -> np.ndarray:
    """``value`` as an array the extension reads in place, or a ReproError naming ``name``."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        expected = f"expected a {ndim}-D array of {_EXPECTED[kind]}"
        raise ReproError(name, f"{expected}, got {type(value).__name__} ({error})") from None
    if array.ndim != ndim:
        raise ReproError(name, f"expected a {ndim}-D array, got shape {array.shape}")
    dtype = array.dtype
    if array.size == 0 and dtype == np.float64 and kind == "ids":
        dtype = np.dtype(np.int64)  # np.asarray([]) is float64; an empty list of ids is fine
        array = array.astype(dtype)
    if dtype in _NATIVE[kind] and array.flags.aligned:
        return array
    target = _WIDEN[kind].get(dtype.kind)
    if target is None:
        raise ReproError(name, f"expected {_EXPECTED[kind]}, got dtype {dtype}")
    if dtype.kind == "u" and target is np.int64 and array.size and array.max() > _INT64.max:
        raise ReproError(name, f"values above {_INT64.max} do not fit int64")
    return array.astype(target)


def _integer(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise ReproError(name, f"expected an integer, got {value!r}")
    try:
        integer = operator.index(value)
    except TypeError:
        raise ReproError(name, f"expected an integer, got {value!r}") from None
    if not _INT64.min <= integer <= _INT64.max:
        raise ReproError(name, f"expected an integer that fits int64, got {integer}")
    return integer


def _number(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise ReproError(name, f"expected a real number, got {value!r}")
    return float(value)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ReproError(name, f"expected True or False, got {value!r}")
    return bool(value)


def _table(delimiters: Delimiters | Sequence[int]) -> _core.DelimiterTable:
    if isinstance(delimiters, Delimiters):
        return delimiters.table()
    if isinstance(delimiters, (str, bytes)):
        raise ReproError(
            "delimiters", f"expected a Delimiters or a sequence of token ids, got {delimiters!r}; "
            "build text rules with Delimiters.from_tokenizer(tokenizer, mode=...)"
        )
    if isinstance(delimiters, (list, tuple)):
        # NumPy reads [True, 7] as [1, 7]; a bool is no token id (Delimiters.from_ids agrees).
        flags = [v for v in delimiters if isinstance(v, (bool, np.bool_))]
        if flags:
            raise ReproError("delimiters", f"expected token ids, got the bool {flags[0]!r}")
    return _core.DelimiterTable.from_ids(_array(delimiters, "delimiters", "ids", 1))


def _think_end(think_end_id: int | None) -> int | None:
    return None if think_end_id is None else _integer(think_end_id, "think_end_id")


def check_options(
    *,
    estimator: str = "grpo",
    k: int = 20,
    w: float = 0.1,
    alpha: float = 0.1,
    gamma: float = 1.0,
    lam: float = 1.0,
    stability_ema: float | None = None,
    norm_by_std: bool = True,
    process_std: ProcessStd = "group",
    stats_include_baseline: bool = False,
    drop_first_token_reward: bool = False,
    critic_target: CriticTarget = "gae",
) -> None:
    """Check the options of ``select_cuts``, ``score_steps`` and ``compute_advantages`` without data.

    The Rust core runs the same checks as those calls do; a ReproError names the option.
    """
    _core.check_options(
        _estimator(estimator),
        _integer(k, "k"),
        _number(w, "w"),
        None if stability_ema is None else _number(stability_ema, "stability_ema"),
        _advantage_options(alpha, gamma, lam, norm_by_std, process_std, stats_include_baseline,
                           drop_first_token_reward, critic_target),
    )


def _advantage_options(
    alpha: Any,
    gamma: Any,
    lam: Any,
    norm_by_std: Any,
    process_std: Any,
    stats_include_baseline: Any,
    drop_first_token_reward: Any,
    critic_target: Any,
) -> _core._AdvantageOptions:
    """The options of ``compute_advantages`` as the extension reads them, each type checked."""
    return {
        "alpha": _number(alpha, "alpha"),
        "gamma": _number(gamma, "gamma"),
        "lam": _number(lam, "lam"),
        "norm_by_std": _flag(norm_by_std, "norm_by_std"),
        "process_std": _name(process_std, "process_std"),
        "stats_include_baseline": _flag(stats_include_baseline, "stats_include_baseline"),
        "drop_first_token_reward": _flag(drop_first_token_reward, "drop_first_token_reward"),
        "critic_target": _name(critic_target, "critic_target"),
    }


def _name(value: Any, argument: str) -> str:
    if not isinstance(value, str):
        raise ReproError(argument, f"expected a name, got {value!r}")
    return value


def _estimator(estimator: Any) -> str:
    if not isinstance(estimator, str):
        raise ReproError("estimator", f"expected a name such as 'grpo', got {estimator!r}")
    return estimator


def select_cuts(
    token_ids: Any,
    response_mask: Any,
    entropies: Any,
    *,
    delimiters: Delimiters | Sequence[int],
    k: int = 20,
    think_end_id: int | None = None,
) -> Cuts:
    """Cut points of every completion: 0, the k highest-entropy paragraph breaks, the end of thinking.

    token_ids, response_mask, entropies: (B, T); the mask is right-padded. docs/method.md, "Cut
    points": candidates are breaks inside the thinking part, ties in entropy go to the
    smaller position.
    """
    offsets, positions, ends = _core.select_cuts(
        _array(token_ids, "token_ids", "ids", 2),
        _array(response_mask, "response_mask", "mask", 2),
        _array(entropies, "entropies", "floats", 2),
        _table(delimiters),
        _integer(k, "k"),
        _think_end(think_end_id),
    )
    return Cuts(offsets, positions, ends)


def segment_paragraphs(
    token_ids: Any,
    response_mask: Any,
    *,
    delimiters: Delimiters | Sequence[int],
    think_end_id: int | None = None,
) -> Segments:
    """Every paragraph span of the thinking part (not only the top-k), for analysis and plots."""
    offsets, starts, ends = _core.segment_paragraphs(
        _array(token_ids, "token_ids", "ids", 2),
        _array(response_mask, "response_mask", "mask", 2),
        _table(delimiters),
        _think_end(think_end_id),
    )
    return Segments(offsets, starts, ends)


def score_steps(j_values: Any, offsets: Any, *, w: float = 0.1, stability_ema: float | None = None) -> Steps:
    """Magnitude, stability, composite score and process reward at every cut point (docs/method.md).

    j_values: (N,) J at each cut point in cuts order (mean answer log-probabilities, <= 0);
    offsets: (B + 1,) from ``select_cuts``. w weighs stability; stability_ema smooths J for the
    stability term only.
    """
    magnitude, stability, score, reward = _core.score_steps(
        _array(j_values, "j_values", "floats", 1),
        _array(offsets, "offsets", "ids", 1),
        _number(w, "w"),
        None if stability_ema is None else _number(stability_ema, "stability_ema"),
    )
    return Steps(magnitude, stability, score, reward)


def compute_advantages(
    estimator: Estimator,
    outcome_rewards: Any,
    step_rewards: Any,
    offsets: Any,
    positions: Any,
    response_mask: Any,
    group_index: Any,
    *,
    alpha: float = 0.1,
    gamma: float = 1.0,
    lam: float = 1.0,
    norm_by_std: bool = True,
    values: Any = None,
    token_rewards: Any = None,
    process_std: ProcessStd = "group",
    stats_include_baseline: bool = False,
    drop_first_token_reward: bool = False,
    critic_target: CriticTarget = "gae",
) -> Advantages:
    """Per-token advantages: the estimator's outcome advantage plus alpha times the normalised,
    discounted sum of process rewards to the end of the completion (docs/method.md, "Advantages").

    outcome_rewards (B,), step_rewards (N,) (``Steps.reward``), offsets (B + 1,) and positions
    (N,) (``Cuts``), response_mask (B, T), group_index (B,) (completions of one prompt share a
    label). ``values`` (B, T) is the critic for ``"ppo"``; ``token_rewards`` (B, T) adds
    per-token rewards (e.g. -beta * KL) for ``"ppo"`` and ``"reinforce_pp"``.

    ``process_std`` ("grpo" only): the std the process rewards are divided by, the group's
    ("group"), the whole batch's ("batch", the mean stays the group's) or none ("none").
    The authors' code, each quirk on its own: ``stats_include_baseline`` adds one 0 per completion
    to the process-reward statistics (written on the batch's last column, so a completion with a
    reward there adds none), ``drop_first_token_reward`` drops a process reward placed on
    token 0 (a cut at p = 1), ``critic_target="advantages"`` ("ppo" only) returns the combined
    advantage + V instead of the GAE return + V (docs/semantics.md, "Departures from the
    reference code").
    """
    advantages, returns = _core.compute_advantages(
        _estimator(estimator),
        _array(outcome_rewards, "outcome_rewards", "floats", 1),
        _array(step_rewards, "step_rewards", "floats", 1),
        _array(offsets, "offsets", "ids", 1),
        _array(positions, "positions", "ids", 1),
        _array(response_mask, "response_mask", "mask", 2),
        _array(group_index, "group_index", "ids", 1),
        None if values is None else _array(values, "values", "floats", 2),
        None if token_rewards is None else _array(token_rewards, "token_rewards", "floats", 2),
        _advantage_options(alpha, gamma, lam, norm_by_std, process_std, stats_include_baseline,
                           drop_first_token_reward, critic_target),
    )
    return Advantages(advantages, returns)
