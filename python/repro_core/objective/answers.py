"""The scored answer of each row, tokenized (docs/method.md, "J, the surrogate objective")."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..config import JTokens, check_setting
from ..errors import ReproError

__all__ = ["AnswerIds", "AnswerTokens"]


class AnswerIds(NamedTuple):
    """The tokens teacher-forced after a cut (``ids``) and the ones J averages, ``ids[start:stop]``."""

    ids: list[int]
    start: int
    stop: int

    @property
    def scored(self) -> int:
        return self.stop - self.start


class AnswerTokens:
    """The scored answer of each row, from ``answer_template.format(answer=gt)``; cached per text.

    ``j_tokens="template"`` (the paper's): the whole text, tokenized on its own, every token
    averaged. ``j_tokens="answer"``: the text before ``{answer}``, the answer and the text after it
    are tokenized separately, so the answer's own tokens are known exactly; all are teacher-forced,
    only the answer's are averaged. ``special_tokens`` (the authors' code): the tokenizer's default
    special tokens (a BOS, for tokenizers that add one) around the text, teacher-forced, averaged
    only under ``"template"``.

    Calling it with ``(gt, row)`` names the row in its errors: no answer, or no scored tokens. An
    ``AnswerIds`` (an answer tokenized elsewhere) is returned as it is.
    """

    def __init__(
        self, tokenizer: Any, answer_template: str, j_tokens: JTokens = "template", special_tokens: bool = False
    ) -> None:
        check_setting("answer_template", answer_template)
        check_setting("j_tokens", j_tokens)
        check_setting("answer_special_tokens", special_tokens)
        self.tokenizer = tokenizer
        self.template = answer_template
        self.j_tokens = j_tokens
        self.special_tokens = bool(special_tokens)
        self._cache: dict[str, AnswerIds] = {}

    def __call__(self, answer: Any, row: int) -> AnswerIds:
        if isinstance(answer, AnswerIds):  # tokenized already, e.g. by verl's controller
            return answer
        if answer is None:
            raise ReproError(f"answers[{row}]", "expected an answer, got None")
        text = self.template.format(answer=answer)
        ids = self._cache.get(text)
        if ids is None:
            ids = self._tokenize(text, str(answer), row)
            self._cache[text] = ids
        return ids

    def _tokenize(self, text: str, answer: str, row: int) -> AnswerIds:
        if self.j_tokens == "template":
            tokens = self._encode(text, self.special_tokens)
            if not tokens:
                raise ReproError(f"answers[{row}]", f"{text!r} tokenizes to no tokens")
            return AnswerIds(tokens, 0, len(tokens))
        # The rendered text around the first {answer}; a second one stays text after it.
        before, after = self.template.format(answer="\0").split("\0", 1)
        after = after.replace("\0", answer)
        head = self._encode(before, False)
        own = self._encode(answer, False)
        tail = self._encode(after, False)
        if not own:
            raise ReproError(f"answers[{row}]", f"the answer {answer!r} tokenizes to no tokens")
        lead: list[int] = []
        trail: list[int] = []
        if self.special_tokens:
            lead, trail = self._special_around(text)
        start = len(lead) + len(head)
        return AnswerIds(lead + head + own + tail + trail, start, start + len(own))

    def _encode(self, text: str, special_tokens: bool) -> list[int]:
        if not text and not special_tokens:
            return []
        return list(self.tokenizer(text, add_special_tokens=special_tokens)["input_ids"])

    def _special_around(self, text: str) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after ``text`` by default."""
        plain = self._encode(text, False)
        full = self._encode(text, True)
        for lead in range(len(full) - len(plain) + 1):
            if full[lead : lead + len(plain)] == plain:
                return full[:lead], full[lead + len(plain) :]
        raise ReproError(
            "answer_special_tokens", f"the tokenizer's special tokens do not surround {text!r} ({full} against {plain})"
        )
