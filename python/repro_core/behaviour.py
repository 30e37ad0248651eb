"""What a batch of completions looks like as reasoning: paragraphs, backtracking, and J's gain.

One home of the paragraphs and their backtracking cues: ``repro score`` lists them per trace, and
the TRL trainers' evaluation counts them, so a training run and a score report count the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._api import Cuts
    from .pipeline import ReproScorer

__all__ = ["DEFAULT_CUES", "backtrack_pattern", "j_gain", "paragraphs"]

#: Paragraph openings counted as backtracking (case-insensitive, as a whole word, after any markdown markers).
DEFAULT_CUES = (
    "Wait",
    "But wait",
    "Alternatively",
    "Hmm",
    "Hold on",
    "Actually",
    "On second thought",
    "Let me re-check",
    "Let me recheck",
    "Let me double-check",
    "Let me check again",
    "Let me reconsider",
)


def backtrack_pattern(cues: Sequence[str]) -> re.Pattern[str] | None:
    """A regex matching a paragraph that opens with one of ``cues``; None for no cues.

    Case-insensitive; the cue must end at a word boundary ("Wait," and "wait" count, "Waiting" does not); leading
    whitespace and markdown markers (``*``, ``_``, ``#``, ``>``, ``-``) are skipped.
    """
    if not cues:
        return None
    alternatives = "|".join(re.escape(cue) for cue in sorted(cues, key=len, reverse=True))
    return re.compile(rf"^[\s*_#>\-]*({alternatives})(?![\w])", re.IGNORECASE)


def paragraphs(
    scorer: ReproScorer, token_ids: np.ndarray, mask: np.ndarray, cues: Sequence[str] = DEFAULT_CUES
) -> list[list[tuple[int, int, str, str | None]]]:
    """Each completion's paragraphs of its thinking part, as ``segment_paragraphs`` splits them with
    ``scorer``'s delimiters and think-end token: (start, end, decoded text, the backtracking cue it
    opens with or None). ``token_ids`` (B, T) and ``mask`` (B, T) as ``Evaluation`` holds them."""
    from . import segment_paragraphs

    segments = segment_paragraphs(token_ids, mask, delimiters=scorer.delimiters, think_end_id=scorer.think_end_id)
    pattern = backtrack_pattern(cues)
    tokenizer = scorer.objective.tokenizer
    out: list[list[tuple[int, int, str, str | None]]] = []
    for row in range(len(token_ids)):
        found = []
        for i in range(int(segments.offsets[row]), int(segments.offsets[row + 1])):
            first, last = int(segments.starts[i]), int(segments.ends[i])
            text = tokenizer.decode(token_ids[row, first:last].tolist())
            match = pattern.match(text) if pattern is not None else None
            found.append((first, last, text, match.group(1) if match else None))
        out.append(found)
    return out


def j_gain(cuts: Cuts, j: np.ndarray) -> np.ndarray:
    """Per row, J at its last cut point minus J at its first (0 for a row without cut points)."""
    return np.asarray([values[-1] - values[0] if len(values) else 0.0 for values in cuts.split(j)])
