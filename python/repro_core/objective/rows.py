"""Rollouts as chunks of one forward call each, and the checks of token lists and cut points.

A chunk's rows are laid out as ``[left-padded prompt | right-padded completion]``; chunks take the
rows longest first, so a chunk's order is not the caller's. ``in_row_order`` puts per-point values
computed chunk by chunk back into the caller's row order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._api import Cuts
from ..errors import ReproError
from .answers import AnswerIds, AnswerTokens

__all__ = ["Chunk", "Rows", "checked_cuts", "in_row_order"]


@dataclass(frozen=True)
class Chunk:
    """Rows of one forward call, laid out as [left-padded prompt | right-padded completion]."""

    rows: list[int]
    input_ids: torch.Tensor  # (b, P + T) int64
    attention_mask: torch.Tensor  # (b, P + T) int64
    position_ids: torch.Tensor  # (b, P + T) int64
    prompt_width: int  # P
    completion_lengths: torch.Tensor  # (b,) int64, as passed (not truncated)
    answers: list[AnswerIds]

    @property
    def completion_width(self) -> int:
        return self.input_ids.shape[1] - self.prompt_width


@dataclass
class Rows:
    """The checked rollouts of one call: token lists, answer tokens, and the model's device."""

    prompts: list[list[int]]
    completions: list[list[int]]
    answers: list[AnswerIds]
    device: torch.device

    @classmethod
    def build(
        cls,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        answers: Sequence[Any] | None = None,
        *,
        answer_tokens: AnswerTokens,
        vocab_size: int,
        device: torch.device,
    ) -> Rows:
        prompts = _token_lists("prompt_ids", prompt_ids, vocab_size)
        completions = _token_lists("completion_ids", completion_ids, vocab_size)
        if not prompts:
            raise ReproError("prompt_ids", "expected at least one row, got 0")
        if len(completions) != len(prompts):
            raise ReproError("completion_ids", f"expected {len(prompts)} rows (as prompt_ids), got {len(completions)}")
        for b, prompt in enumerate(prompts):
            if not prompt:
                raise ReproError(f"prompt_ids[{b}]", "is empty; the first completion token needs a context")
        answer_ids: list[AnswerIds] = []
        if answers is not None:
            if isinstance(answers, (str, bytes)) or len(answers) != len(prompts):
                got = "a string" if isinstance(answers, (str, bytes)) else f"{len(answers)}"
                raise ReproError("answers", f"expected {len(prompts)} answers (one per row), got {got}")
            answer_ids = [answer_tokens(answer, b) for b, answer in enumerate(answers)]
        return cls(prompts, completions, answer_ids, device)

    @property
    def count(self) -> int:
        return len(self.prompts)

    @property
    def width(self) -> int:
        """T: the longest completion, and at least 1 so that (B, T) arrays are never empty."""
        return max(1, *(len(c) for c in self.completions))

    def lengths(self) -> np.ndarray:
        """(B,) int64 completion lengths."""
        return np.array([len(c) for c in self.completions], dtype=np.int64)

    def mask(self) -> np.ndarray:
        return np.arange(self.width) < self.lengths()[:, None]

    def completion_matrix(self) -> np.ndarray:
        ids = np.zeros((self.count, self.width), dtype=np.int64)
        for row, completion in enumerate(self.completions):
            ids[row, : len(completion)] = completion
        return ids

    def chunks(self, budget: int, prefix_lengths: Sequence[int] | None = None) -> Iterator[Chunk]:
        """Rows grouped, longest first, so that rows x padded width stays within ``budget``.

        ``prefix_lengths[b]`` keeps only ``completion[:n]`` of row b (a prefix pass for J needs no
        more than the last cut). A row longer than the budget goes alone.
        """
        kept = [len(c) for c in self.completions] if prefix_lengths is None else list(prefix_lengths)
        order = sorted(range(self.count), key=lambda b: -(len(self.prompts[b]) + kept[b]))
        group: list[int] = []
        prompt_width = completion_width = 0
        for b in order:
            p, c = max(prompt_width, len(self.prompts[b])), max(completion_width, kept[b])
            if group and (len(group) + 1) * (p + c) > budget:
                yield self._chunk(group, prompt_width, completion_width, kept)
                group, p, c = [], len(self.prompts[b]), kept[b]
            group.append(b)
            prompt_width, completion_width = p, c
        yield self._chunk(group, prompt_width, completion_width, kept)

    def _chunk(self, rows: list[int], prompt_width: int, completion_width: int, kept: list[int]) -> Chunk:
        input_ids = torch.zeros((len(rows), prompt_width + completion_width), dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, b in enumerate(rows):
            prompt, completion = self.prompts[b], self.completions[b][: kept[b]]
            input_ids[i, prompt_width - len(prompt) : prompt_width] = torch.tensor(prompt)
            input_ids[i, prompt_width : prompt_width + len(completion)] = torch.tensor(completion, dtype=torch.long)
            attention_mask[i, prompt_width - len(prompt) : prompt_width + len(completion)] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return Chunk(
            rows=rows,
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            position_ids=position_ids.to(self.device),
            prompt_width=prompt_width,
            completion_lengths=torch.tensor([len(self.completions[b]) for b in rows], device=self.device),
            answers=[self.answers[b] for b in rows] if self.answers else [],
        )


def _token_lists(name: str, rows: Sequence[Sequence[int]], vocab: int) -> list[list[int]]:
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__len__"):
        raise ReproError(name, f"expected a sequence of token-id sequences, got {type(rows).__name__}")
    out = []
    for b, row in enumerate(rows):
        try:
            ids = np.asarray(row.tolist() if isinstance(row, torch.Tensor) else row)
        except (TypeError, ValueError) as exc:
            raise ReproError(f"{name}[{b}]", f"expected a sequence of token ids ({exc})") from None
        if ids.size and (ids.ndim != 1 or ids.dtype.kind not in "iu"):
            raise ReproError(
                f"{name}[{b}]", f"expected a 1-D sequence of ints, got shape {ids.shape} dtype {ids.dtype}"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            bad = int(ids.min() if ids.min() < 0 else ids.max())
            raise ReproError(f"{name}[{b}]", f"token id {bad} is outside the model's vocabulary [0, {vocab})")
        out.append([int(i) for i in ids.reshape(-1)])
    return out


def checked_cuts(offsets: Any, positions: Any, rows: Rows) -> Cuts:
    """``offsets`` and ``positions`` (``Cuts`` layout) as ``Cuts`` of ``rows``, every point in
    ``[0, len(completion)]`` of its row; ``ends`` are each row's last point."""
    offsets = np.asarray(offsets)
    positions = np.asarray(positions)
    if offsets.shape != (rows.count + 1,) or offsets.dtype.kind not in "iu":
        raise ReproError(
            "offsets", f"expected ({rows.count + 1},) ints, got shape {offsets.shape} dtype {offsets.dtype}"
        )
    if positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
        raise ReproError("positions", f"expected (N,) ints, got shape {positions.shape} dtype {positions.dtype}")
    if offsets[0] != 0 or offsets[-1] != len(positions) or np.any(np.diff(offsets) < 0):
        raise ReproError(
            "offsets",
            f"expected non-decreasing values from 0 to len(positions) = {len(positions)}, got {offsets.tolist()}",
        )
    offsets, positions = offsets.astype(np.int64), positions.astype(np.int64)
    ends = np.array([positions[offsets[b + 1] - 1] if offsets[b + 1] > offsets[b] else 0 for b in range(rows.count)])
    cuts = Cuts(offsets, positions, ends.astype(np.int64))
    lengths = rows.lengths()
    outside = np.flatnonzero((positions < 0) | (positions > lengths[cuts.row_index()]))
    if outside.size:
        b = int(cuts.row_index()[outside[0]])
        row = cuts.row(b)
        bad = int(row.min() if row.min() < 0 else row.max())
        raise ReproError("positions", f"row {b} has cut point {bad} outside [0, {lengths[b]}] (its completion length)")
    return cuts


def in_row_order(chunk_rows: Sequence[int], chunked: Cuts, values: np.ndarray) -> np.ndarray:
    """Per-point ``values`` in the layout of ``chunked``, whose rows are ``chunk_rows`` (rows in the
    order the chunks took them), rearranged into the layout of rows 0, 1, ..., B - 1."""
    by_row = np.argsort(np.asarray(chunk_rows, dtype=np.int64), kind="stable")
    pieces = chunked.split(values)
    return np.concatenate([pieces[i] for i in by_row]) if len(pieces) else np.asarray(values)
