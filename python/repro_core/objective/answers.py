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
    averaged. ``j_tokens="answer"``: the same tokens, the text as the model would write it (the
    answer glued to the template's text around it, so ``' is Paris'`` stays ``' is', ' Paris'``);
    all are teacher-forced, only the answer's own are averaged: those whose characters overlap the
    answer's (a token that joins the template's space to the answer, ``' Paris'``, is the answer's).
    ``special_tokens`` (the authors' code): the tokenizer's default special tokens (a BOS, for
    tokenizers that add one) around the text, teacher-forced, averaged only under ``"template"``.

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
        # The answer's characters: after the rendered text before the first {answer} (a second
        # {answer} is text after it).
        first = len(self.template.format(answer="\0").split("\0", 1)[0])
        last = first + len(answer)
        tokens, spans = self._encode_with_spans(text)
        own = [i for i, (begin, end) in enumerate(spans) if begin < end and begin < last and end > first]
        if not own:
            raise ReproError(f"answers[{row}]", f"the answer {answer!r} tokenizes to no tokens")
        return AnswerIds(tokens, own[0], own[-1] + 1)

    def _encode(self, text: str, special_tokens: bool) -> list[int]:
        if not text and not special_tokens:
            return []
        return list(self.tokenizer(text, add_special_tokens=special_tokens)["input_ids"])

    def _encode_with_spans(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """``text``'s tokens (special tokens as ``special_tokens`` says) and each one's characters
        in it: the tokenizer's offsets, or for a tokenizer without them, the decoded prefixes."""
        if getattr(self.tokenizer, "is_fast", False):
            encoded = self.tokenizer(text, add_special_tokens=self.special_tokens, return_offsets_mapping=True)
            return list(encoded["input_ids"]), [(int(b), int(e)) for b, e in encoded["offset_mapping"]]
        tokens = self._encode(text, self.special_tokens)
        # A special token decodes to nothing: an empty span, never the answer's.
        ends = [len(self.tokenizer.decode(tokens[:i], skip_special_tokens=True)) for i in range(len(tokens) + 1)]
        if self.tokenizer.decode(tokens, skip_special_tokens=True) != text:
            raise ReproError(
                "j_tokens", f"'answer' needs the answer's own tokens, but this tokenizer has no offsets and decodes "
                f"{text!r} to other text; use a fast tokenizer or j_tokens='template'"
            )
        return tokens, list(zip(ends[:-1], ends[1:], strict=True))
