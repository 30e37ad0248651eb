"""Paragraph delimiters: which token boundaries are paragraph breaks (docs/method.md, "Cut points").

Built once per vocabulary, then passed as ``delimiters=`` to ``select_cuts`` and
``segment_paragraphs``. The exact semantics are in docs/semantics.md, "Paragraph breaks".
Only NumPy is imported here; tokenizer libraries are touched through the objects the caller
passes in.
"""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ReproError

if TYPE_CHECKING:
    from . import _core

__all__ = ["Delimiters", "think_end_id", "tokenizer_size"]

_TEXT_MODES = {"paper": 2, "line": 1}
_REFERENCE_STRINGS = (".\n", "?\n", "\n\n")
_MODES_HELP = "'paper', 'line', 'reference' or a list of strings"
_INT64_MAX = np.iinfo(np.int64).max


class Delimiters:
    """Which token boundaries are paragraph breaks, for one vocabulary (docs/method.md, "Cut points").

    Build it with a constructor, never directly:

    - ``from_tokenizer(tokenizer, mode)`` for a ``transformers`` tokenizer or a
      ``tokenizers.Tokenizer``;
    - ``from_token_texts(texts, mode)`` when ``texts[i]`` is the text of token id ``i``;
    - ``from_ids(ids)`` for a fixed set of delimiter ids.

    Two rules (docs/semantics.md):

    - text rule, modes ``"paper"`` (``min_newlines`` = 2) and ``"line"`` (1): there is a break
      before token p when token p is not whitespace-only and the newlines in the whitespace run
      around the boundary reach ``min_newlines``. Per-id arrays of length V (the vocabulary size):
      ``leading_newlines``, ``trailing_newlines`` (uint32) and ``whitespace_only`` (bool).
    - exact-token rule, modes ``"reference"``, ``"strings"`` and ``"ids"``: there is a break
      after every token whose id is in ``token_ids`` (int64, sorted, unique).

    Whitespace is Python's ``str.isspace``; a newline is ``"\\n"`` (``"\\r"`` is whitespace but
    not a newline, so ``"\\r\\n"`` counts once).

    A token whose text is empty (a special token that decodes to ``""``, an unused id) counts as
    whitespace-only with no newline: it is transparent, so it neither ends a whitespace run nor
    starts a paragraph (the break goes before the next token with visible text, as it would in
    the decoded text).

    Whitespace is judged token by token, so a non-ASCII whitespace character (U+00A0, U+3000)
    whose bytes are split over several byte-level tokens is not seen as whitespace. Newlines are
    ASCII and always seen.

    Instances are read-only and picklable; the compiled Rust table (``table()``) is built on
    first use and not pickled.
    """

    mode: str
    token_ids: np.ndarray | None
    leading_newlines: np.ndarray | None
    trailing_newlines: np.ndarray | None
    whitespace_only: np.ndarray | None
    min_newlines: int | None
    strings: tuple[str, ...] | None

    def __init__(
        self,
        *,
        mode: str,
        token_ids: np.ndarray | None = None,
        leading_newlines: np.ndarray | None = None,
        trailing_newlines: np.ndarray | None = None,
        whitespace_only: np.ndarray | None = None,
        min_newlines: int | None = None,
        strings: tuple[str, ...] | None = None,
    ) -> None:
        # Internal: the classmethods validate their inputs and call this.
        self.mode = mode
        self.token_ids = _frozen(token_ids)
        self.leading_newlines = _frozen(leading_newlines)
        self.trailing_newlines = _frozen(trailing_newlines)
        self.whitespace_only = _frozen(whitespace_only)
        self.min_newlines = min_newlines
        self.strings = strings
        self._table: _core.DelimiterTable | None = None

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_ids(cls, ids: Iterable[int]) -> Delimiters:
        """Exact-token rule: a break after every token whose id is in ``ids`` (ints >= 0)."""
        return cls(mode="ids", token_ids=_validate_ids(ids))

    @classmethod
    def from_token_texts(cls, texts: Sequence[str], mode: str | Sequence[str] = "paper") -> Delimiters:
        """Build from ``texts[i]``, the text of token id ``i`` decoded alone.

        ``mode``: ``"paper"`` or ``"line"`` (text rule), or a list of strings (exact-token rule on
        the ids whose text equals one of them; ``mode`` becomes ``"strings"``).
        """
        if isinstance(texts, str) or not isinstance(texts, (Sequence, np.ndarray)):
            raise ReproError("texts", f"expected a sequence of str (one per token id), got {type(texts).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ReproError("texts", f"expected str at index {i}, got {type(t).__name__}")
        if isinstance(mode, str):
            if mode in _TEXT_MODES:
                return cls._from_text_rule(texts, mode)
            if mode == "reference":
                raise ReproError(
                    "mode", "'reference' encodes strings with the tokenizer; use "
                    "Delimiters.from_tokenizer(tokenizer, mode='reference')"
                )
            raise _bad_mode(mode)
        strings = _validate_strings(mode)
        wanted = set(strings)
        ids = np.array([i for i, t in enumerate(texts) if t in wanted], dtype=np.int64)
        found = {texts[i] for i in ids.tolist()}
        missing = [s for s in strings if s not in found]
        if ids.size == 0:
            _warn_no_delimiter(f"no token's text equals one of {list(strings)!r}")
        elif missing:
            _warn(f"Delimiters: no token's text equals {missing!r}; those strings select nothing")
        return cls(mode="strings", token_ids=ids, strings=strings)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, mode: str | Sequence[str] = "paper") -> Delimiters:
        """Build for a ``transformers`` tokenizer or a raw ``tokenizers.Tokenizer``.

        ``mode``: ``"paper"`` (default), ``"line"``, ``"reference"`` (the authors' rule: the
        first token of ``".\\n"``, ``"?\\n"`` and ``"\\n\\n"`` encoded without special tokens)
        or a list of strings (see ``from_token_texts``).
        """
        if isinstance(mode, str) and mode == "reference":
            ids: list[int] = []
            for s in _REFERENCE_STRINGS:
                encoded = _encode(tokenizer, s)
                if encoded and encoded[0] not in ids:
                    ids.append(encoded[0])
            if not ids:
                _warn_no_delimiter("the tokenizer encodes none of the reference strings")
            return cls(mode="reference", token_ids=np.unique(np.array(ids, dtype=np.int64)))
        if isinstance(mode, str) and mode not in _TEXT_MODES:
            raise _bad_mode(mode)
        if not isinstance(mode, str):
            _validate_strings(mode)  # fail before the (comparatively slow) decode
        return cls.from_token_texts(_token_texts(tokenizer), mode)

    @classmethod
    def _from_text_rule(cls, texts: Sequence[str], mode: str) -> Delimiters:
        n = len(texts)
        leading = np.zeros(n, dtype=np.uint32)
        trailing = np.zeros(n, dtype=np.uint32)
        ws_only = np.zeros(n, dtype=bool)
        for i, t in enumerate(texts):
            if "\n" not in t:
                # Most tokens: only whitespace-only-ness matters (newline counts stay 0).
                ws_only[i] = not t or t.isspace()
                continue
            stripped = t.strip()  # strip() without arguments uses the str.isspace definition
            if not stripped:
                ws_only[i] = True
                leading[i] = trailing[i] = t.count("\n")
            else:
                leading[i] = t[: len(t) - len(t.lstrip())].count("\n")
                trailing[i] = t[len(t.rstrip()) :].count("\n")
        if not (leading.any() or trailing.any()):
            _warn_no_delimiter("no token of the vocabulary contains a newline")
        return cls(
            mode=mode,
            leading_newlines=leading,
            trailing_newlines=trailing,
            whitespace_only=ws_only,
            min_newlines=_TEXT_MODES[mode],
        )

    # ---------------------------------------------------------------- use

    @property
    def vocab_size(self) -> int | None:
        """Length of the text-rule table (ids it accepts are 0..vocab_size-1); None for exact-token."""
        return None if self.whitespace_only is None else int(self.whitespace_only.shape[0])

    def table(self) -> _core.DelimiterTable:
        """The compiled Rust table, built on first call and cached."""
        if self._table is None:
            from . import _core

            if self.token_ids is not None:
                self._table = _core.DelimiterTable.from_ids(self.token_ids)
            else:
                self._table = _core.DelimiterTable.from_text(*self._text_table())
        return self._table

    def _text_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        # Every constructor sets either token_ids or all four text-rule fields.
        leading, trailing, whitespace, min_newlines = (
            self.leading_newlines, self.trailing_newlines, self.whitespace_only, self.min_newlines
        )
        assert leading is not None and trailing is not None and whitespace is not None and min_newlines is not None
        return leading, trailing, whitespace, min_newlines

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_table"] = None  # a native object; rebuilt on demand after unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in ("token_ids", "leading_newlines", "trailing_newlines", "whitespace_only"):
            setattr(self, name, _frozen(getattr(self, name)))

    def __repr__(self) -> str:
        if self.token_ids is not None:
            ids = self.token_ids.tolist()
            shown = repr(ids) if len(ids) <= 8 else f"[{', '.join(map(str, ids[:8]))}, ...] (n={len(ids)})"
            extra = f", strings={list(self.strings)!r}" if self.strings is not None else ""
            return f"Delimiters(mode={self.mode!r}{extra}, ids={shown})"
        leading, trailing, _, _ = self._text_table()
        n_nl = int(np.count_nonzero((leading > 0) | (trailing > 0)))
        return (
            f"Delimiters(mode={self.mode!r}, min_newlines={self.min_newlines}, "
            f"vocab_size={self.vocab_size}, newline_tokens={n_nl})"
        )


def think_end_id(tokenizer: Any, token: str = "</think>") -> int | None:
    """The id of ``token`` when it is exactly one token of the vocabulary (added and special
    tokens included), else None."""
    if not isinstance(token, str) or not token:
        raise ReproError("token", f"expected a non-empty str, got {token!r}")
    lookup = getattr(tokenizer, "token_to_id", None)  # tokenizers.Tokenizer
    if lookup is None:
        lookup = getattr(tokenizer, "convert_tokens_to_ids", None)  # transformers
    candidates: list[int] = []
    if lookup is not None:
        found = lookup(token)
        if isinstance(found, (int, np.integer)) and not isinstance(found, bool) and found >= 0:
            candidates.append(int(found))
    # Vocabulary spellings can differ from the text (byte-level "Ġ", SentencePiece "▁"), so a
    # one-token encoding also counts.
    encoded = _encode(tokenizer, token)
    if len(encoded) == 1:
        candidates.append(encoded[0])
    for i in candidates:
        # transformers returns unk_token_id for an unknown token: require the id to decode back.
        if _decode_one(tokenizer, i) == token:
            return i
    return None


def tokenizer_size(tokenizer: Any) -> int:
    """The number of token ids of ``tokenizer`` (added and special tokens included): ids are 0..size-1."""
    return _vocab_size(tokenizer)


# -------------------------------------------------------------------- helpers


def _frozen(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None:
        a = np.ascontiguousarray(a)
        a.flags.writeable = False
    return a


def _bad_mode(mode: object) -> ReproError:
    hint = ""
    if isinstance(mode, str) and not mode.isalpha():  # looks like token text, not a mode name
        hint = f" (to select tokens by text, pass a list: mode=[{mode!r}])"
    return ReproError("mode", f"expected {_MODES_HELP}, got {mode!r}{hint}")


def _warn(message: str) -> None:
    # Point the warning at the caller's line, however deep inside this module it was raised.
    frame: types.FrameType | None = sys._getframe(0)
    level = 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _warn_no_delimiter(why: str) -> None:
    _warn(f"Delimiters: {why}, so there is no paragraph break: every completion keeps only the cut points 0 and e")


def _validate_strings(mode: object) -> tuple[str, ...]:
    if isinstance(mode, (bytes, bytearray)) or not isinstance(mode, (Sequence, np.ndarray)):
        raise _bad_mode(mode)
    strings = tuple(mode)
    for s in strings:
        if not isinstance(s, str):
            raise ReproError("mode", f"expected a list of str, found {type(s).__name__} {s!r}")
        if not s:
            raise ReproError("mode", "the empty string cannot be a delimiter")
    return tuple(dict.fromkeys(strings))


def _validate_ids(ids: Any) -> np.ndarray:
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ReproError("ids", f"expected a 1-D array of integers, got shape {ids.shape} dtype {ids.dtype}")
        values = ids.tolist()
    else:
        if isinstance(ids, (str, bytes, bytearray)) or not isinstance(ids, Iterable):
            raise ReproError("ids", f"expected an iterable of ints, got {type(ids).__name__}")
        values = list(ids)
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ReproError("ids", f"expected ints, found {type(v).__name__} {v!r}")
        v = int(v)
        if v < 0:
            raise ReproError("ids", f"token ids must be >= 0, found {v}")
        if v > _INT64_MAX:
            raise ReproError("ids", f"token id {v} does not fit in int64")
        out.append(v)
    if not out:
        _warn_no_delimiter("the list of delimiter ids is empty")
    return np.unique(np.array(out, dtype=np.int64))


def _is_raw_tokenizer(tokenizer: Any) -> bool:
    return hasattr(tokenizer, "decode_batch") and hasattr(tokenizer, "get_vocab_size")


def _vocab_size(tokenizer: Any) -> int:
    if _is_raw_tokenizer(tokenizer):
        n = int(tokenizer.get_vocab_size(with_added_tokens=True))
        added = tokenizer.get_added_tokens_decoder() if hasattr(tokenizer, "get_added_tokens_decoder") else {}
    elif hasattr(tokenizer, "batch_decode") and hasattr(tokenizer, "__len__"):
        n = len(tokenizer)  # includes added tokens, unlike .vocab_size
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    else:
        raise ReproError(
            "tokenizer", "expected a transformers tokenizer or a tokenizers.Tokenizer, "
            f"got {type(tokenizer).__name__}"
        )
    # Added tokens can sit above the counted range; the table must cover every id.
    return max([n, *(int(i) + 1 for i in added)])


def _token_texts(tokenizer: Any) -> list[str]:
    """Text of every id decoded alone, in one batched call (the Rust side of the tokenizer does
    the work; a Python loop over 150k ids would not)."""
    n = _vocab_size(tokenizer)
    single = [[i] for i in range(n)]
    if _is_raw_tokenizer(tokenizer):
        return list(tokenizer.decode_batch(single, skip_special_tokens=False))
    return list(tokenizer.batch_decode(single, skip_special_tokens=False, clean_up_tokenization_spaces=False))


def _decode_one(tokenizer: Any, i: int) -> str:
    if _is_raw_tokenizer(tokenizer):
        return tokenizer.decode([i], skip_special_tokens=False)
    return tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _encode(tokenizer: Any, text: str) -> list[int]:
    if _is_raw_tokenizer(tokenizer):
        return list(tokenizer.encode(text, add_special_tokens=False).ids)
    if hasattr(tokenizer, "encode"):
        return [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]
    raise ReproError(
        "tokenizer", f"expected a transformers tokenizer or a tokenizers.Tokenizer, got {type(tokenizer).__name__}"
    )
