"""What a batch of completions looks like as reasoning: paragraphs, backtracking, and J's gain.

One home of the backtracking cues: ``repro score`` marks the paragraphs that open with one, and the
TRL trainers' evaluation counts them (``behaviour_metrics``), so a training run and a score report
count the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .pipeline import ReproScorer

__all__ = ["DEFAULT_CUES", "backtrack_pattern", "behaviour_metrics"]

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


def behaviour_metrics(
    scorer: ReproScorer, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
    answers: Sequence[Any], cues: Sequence[str] = DEFAULT_CUES,
) -> dict[str, np.ndarray]:
    """Per completion (B,): ``paragraphs`` (of the thinking part, as ``segment_paragraphs`` splits
    it), ``backtracks`` (those opening with one of ``cues``) and ``j_gain`` (J at the last cut
    point minus J at the baseline, with ``scorer``'s model and settings)."""
    from . import segment_paragraphs

    evaluation, _ = scorer.evaluate(prompt_ids, completion_ids, answers)
    segments = segment_paragraphs(evaluation.token_ids, evaluation.mask, delimiters=scorer.delimiters,
                                  think_end_id=scorer.think_end_id)
    pattern = backtrack_pattern(cues)
    tokenizer = scorer.objective.tokenizer
    backtracks = np.zeros(len(completion_ids), dtype=np.int64)
    for row, ids in enumerate(completion_ids):
        for i in range(int(segments.offsets[row]), int(segments.offsets[row + 1])):
            text = tokenizer.decode(list(ids[int(segments.starts[i]) : int(segments.ends[i])]))
            backtracks[row] += bool(pattern is not None and pattern.match(text))
    j_gain = [values[-1] - values[0] if len(values) else 0.0 for values in evaluation.cuts.split(evaluation.j)]
    return {"paragraphs": np.diff(segments.offsets), "backtracks": backtracks, "j_gain": np.asarray(j_gain)}
