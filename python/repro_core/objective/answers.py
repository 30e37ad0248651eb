"""The scored answer of each row, tokenized (docs/method.md, "J, the surrogate objective")."""

from __future__ import annotations

from typing import Any

from ..config import check_setting
from ..errors import ReproError

__all__ = ["AnswerTokens"]


class AnswerTokens:
    """The scored answer of each row: ``answer_template.format(answer=gt)`` tokenized on its own,
    without special tokens; cached per text.

    Calling it with ``(gt, row)`` names the row in its errors: no answer, or a text with no tokens.
    """

    def __init__(self, tokenizer: Any, answer_template: str) -> None:
        check_setting("answer_template", answer_template)
        self.tokenizer = tokenizer
        self.template = answer_template
        self._cache: dict[str, list[int]] = {}

    def __call__(self, answer: Any, row: int) -> list[int]:
        if answer is None:
            raise ReproError(f"answers[{row}]", "expected an answer, got None")
        text = self.template.format(answer=answer)
        ids = self._cache.get(text)
        if ids is None:
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if not ids:
                raise ReproError(f"answers[{row}]", f"{text!r} tokenizes to no tokens")
            self._cache[text] = ids
        return ids
