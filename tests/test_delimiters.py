"""Delimiters (docs/method.md "Cut points", docs/semantics.md "Paragraph breaks") against a text-level
oracle, on byte-level BPE tokenizers trained here (no network, no files)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pickle
import random
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
import repro_core as rc
from repro_core import Delimiters, ReproError, think_end_id
from repro_core.delimiters import tokenizer_size

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

# ---------------------------------------------------------------------------- corpus

WORDS = (
    "the value of x is then we get so and sum total equals number answer check again compute "
    "square root both sides divide by two three five seven case first second term product"
).split()
STARTS = ["Wait,", "Then", "So", "First,", "Next,", "Hmm,", "Therefore", "Let", "Now", "But", "Alternatively,"]
ENDS = [".", ".", ".", "?", ":", " = 42", " = 7", "$$"]
# Whitespace between sentences/lines/paragraphs: spaces, tabs and \r inside newline runs.
SEPARATORS = ["\n\n"] * 8 + ["\n"] * 4 + [" "] * 6 + ["\n\n\n", " \n\n", "\r\n\r\n", "\n \n", "\t\n\n", "\n\n  "]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(2, 8))]
    if rng.random() < 0.1:  # words the tokenizer never saw
        words.append("".join(rng.choice("qxzjkvw") for _ in range(rng.randint(1, 6))))
    return rng.choice(STARTS) + " " + " ".join(words) + rng.choice(ENDS)


def document(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(3, 12)):
        parts.append(sentence(rng))
        parts.append(rng.choice(SEPARATORS))
    return "".join(parts[:-1])


def train(pre_tokenizer, special_tokens: list[str], vocab_size: int = 1000) -> Tokenizer:
    rng = random.Random(1234)
    corpus = [document(rng) for _ in range(1500)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return tok


def texts_of(tok: Tokenizer) -> list[str]:
    return tok.decode_batch([[i] for i in range(tok.get_vocab_size(with_added_tokens=True))], skip_special_tokens=False)


@pytest.fixture(scope="module")
def merged_tok() -> Tokenizer:
    """Merges run across whitespace: the vocabulary has ".\\n\\n", "\\n\\n", ".\\n\\nThen", ..."""
    tok = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False), ["<|endoftext|>"])
    texts = texts_of(tok)
    assert ".\n\n" in texts and "\n\n" in texts and "?\n\n" in texts
    assert any(t.startswith(".\n\n") and t[3:].strip().isalpha() for t in texts)  # e.g. ".\n\nThen "
    return tok


@pytest.fixture(scope="module")
def split_tok() -> Tokenizer:
    """Every "\\n" is its own token (like SmolLM2); "</think>" is a special token."""
    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok = train(pre, ["<|endoftext|>", "</think>"])
    assert len(tok.encode("\n\n", add_special_tokens=False).ids) == 2
    assert tok.decode_batch([[i] for i in tok.encode(".\n\nThen", add_special_tokens=False).ids]) == [
        ".",
        "\n",
        "\n",
        "Then",
    ]
    assert "\n\n" not in texts_of(tok)
    return tok


class Tok:
    """One tokenizer under test, raw `tokenizers.Tokenizer` or wrapped by transformers."""

    def __init__(self, name: str, tokenizer, raw: Tokenizer):
        self.name, self.tokenizer, self.raw = name, tokenizer, raw
        self.hf = not isinstance(tokenizer, Tokenizer)

    def encode(self, text: str) -> list[int]:
        if self.hf:
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode_many(self, seqs: list[list[int]]) -> list[str]:
        if self.hf:
            return self.tokenizer.batch_decode(seqs, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return self.tokenizer.decode_batch(seqs, skip_special_tokens=False)

    def __repr__(self) -> str:
        return self.name


@pytest.fixture(scope="module", params=["merged-raw", "split-raw", "merged-hf", "split-hf"])
def tok(request, merged_tok, split_tok) -> Tok:
    variant, kind = request.param.split("-")
    raw = merged_tok if variant == "merged" else split_tok
    if kind == "raw":
        return Tok(request.param, raw, raw)
    transformers = pytest.importorskip("transformers")
    # A copy: the wrapper may change padding/truncation settings of the object it is given.
    wrapped = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(raw.to_str()))
    return Tok(request.param, wrapped, raw)


# ---------------------------------------------------------------------------- oracle


def trailing_whitespace(s: str) -> str:
    i = len(s)
    while i > 0 and s[i - 1].isspace():
        i -= 1
    return s[i:]


def leading_whitespace(s: str) -> str:
    i = 0
    while i < len(s) and s[i].isspace():
        i += 1
    return s[:i]


def text_breaks(prefixes: list[str], token_texts: list[str], min_newlines: int) -> list[int]:
    """Breaks of one completion from its text: prefixes[p] = decode(ids[:p]), token_texts[p] =
    decode([ids[p]]). p is a break iff token p shows non-whitespace text and the whitespace run
    at the boundary holds >= min_newlines newlines."""
    out = []
    for p in range(1, len(token_texts)):
        t = token_texts[p]
        if all(c.isspace() for c in t):  # whitespace-only, or empty text
            continue
        run = trailing_whitespace(prefixes[p]) + leading_whitespace(t)
        if run.count("\n") >= min_newlines:
            out.append(p)
    return out


def oracle_breaks(tok: Tok, ids: list[int], min_newlines: int) -> list[int]:
    if len(ids) < 2:
        return []
    decoded = tok.decode_many([ids[:p] for p in range(len(ids))] + [[i] for i in ids])
    return text_breaks(decoded[: len(ids)], decoded[len(ids) :], min_newlines)


def expected_points(length: int, breaks: list[int], think_end: int | None) -> list[int]:
    if length == 0:
        return [0]
    limit = think_end if think_end is not None else length
    e = think_end + 1 if think_end is not None else length
    return sorted({0, e, *(p for p in breaks if p < limit)})


def make_batch(rows: list[list[int]], seed: int = 0):
    """Right-padded batch; the padding holds junk (only positions < L are read)."""
    rng = np.random.default_rng(seed)
    width = max(1, max(len(r) for r in rows))
    ids = np.full((len(rows), width), -1, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    entropies = np.full((len(rows), width), np.nan, dtype=np.float32)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = r
        mask[b, : len(r)] = True
        entropies[b, : len(r)] = rng.random(len(r), dtype=np.float32) * 5
    return ids, mask, entropies


def check_against(rows, expected_rows, delimiters, think_end_id=None):
    """select_cuts (k covering every candidate) and segment_paragraphs give expected_rows."""
    ids, mask, entropies = make_batch(rows)
    cuts = rc.select_cuts(ids, mask, entropies, delimiters=delimiters, k=ids.shape[1] + 1, think_end_id=think_end_id)
    segs = rc.segment_paragraphs(ids, mask, delimiters=delimiters, think_end_id=think_end_id)
    for b, (row, want) in enumerate(zip(rows, expected_rows, strict=True)):
        got = cuts.positions[cuts.offsets[b] : cuts.offsets[b + 1]].tolist()
        assert got == want, (b, row, got, want)
        assert cuts.ends[b] == want[-1]
        starts = segs.starts[segs.offsets[b] : segs.offsets[b + 1]].tolist()
        ends = segs.ends[segs.offsets[b] : segs.offsets[b + 1]].tolist()
        assert starts == want[:-1] and ends == want[1:], (b, row, starts, ends, want)
    return cuts


# ---------------------------------------------------------------------------- random completions


def random_text(rng: random.Random, think: bool) -> str:
    chunks = []
    if rng.random() < 0.2:  # text starting with newlines
        chunks.append(rng.choice(["\n", "\n\n", " \n\n", "\n\n\n"]))
    for _ in range(rng.randint(1, 8)):
        chunks.append(sentence(rng))
        if rng.random() < 0.3:  # a run built from several pieces
            sep = "".join(rng.choice(["\n", " ", "\t", "\r", "\r\n", "\n\n"]) for _ in range(rng.randint(1, 4)))
        else:
            sep = rng.choice(SEPARATORS)
        chunks.append(sep)
    if rng.random() < 0.5:  # no trailing whitespace
        chunks.pop()
    if think:
        at = rng.randrange(len(chunks) + 1)
        chunks.insert(at, "</think>")
        if rng.random() < 0.3:
            chunks.insert(rng.randrange(len(chunks) + 1), "</think>")  # only the first one counts
    return "".join(chunks)


def ascii_token_ids(tok: Tok) -> tuple[list[int], list[int]]:
    """Ids whose text is ASCII (byte-level tokens that are a whole character): all, and those
    whose text holds whitespace."""
    texts = texts_of(tok.raw)
    ok = [i for i, t in enumerate(texts) if t and t.isascii()]
    return ok, [i for i in ok if any(c.isspace() for c in texts[i])]


@pytest.mark.parametrize("mode,min_newlines", [("paper", 2), ("line", 1)])
def test_text_rule_matches_oracle_on_encoded_text(tok, mode, min_newlines):
    delims = Delimiters.from_tokenizer(tok.tokenizer, mode=mode)
    assert delims.mode == mode and delims.min_newlines == min_newlines
    assert delims.vocab_size == tok.raw.get_vocab_size(with_added_tokens=True)
    tend = think_end_id(tok.tokenizer)
    rng = random.Random(f"{tok.name}-{mode}-text")
    rows, want = [], []
    for n in range(160):
        ids = tok.encode(random_text(rng, think=n % 2 == 1))
        if n % 40 == 0:
            ids = ids[:1]  # one-token completions too
        rows.append(ids)
        first_end = ids.index(tend) if tend is not None and tend in ids else None
        want.append(expected_points(len(ids), oracle_breaks(tok, ids, min_newlines), first_end))
    rows.append([])  # an empty completion
    want.append([0])
    assert sum(len(w) - 2 for w in want if len(w) > 2) > 150  # the texts do have breaks
    for start in range(0, len(rows), 16):
        check_against(rows[start : start + 16], want[start : start + 16], delims, think_end_id=tend)


@pytest.mark.parametrize("mode,min_newlines", [("paper", 2), ("line", 1)])
def test_text_rule_matches_oracle_on_random_ids(tok, mode, min_newlines):
    """Arbitrary token sequences: runs spread over many whitespace-only tokens, special tokens."""
    delims = Delimiters.from_tokenizer(tok.tokenizer, mode=mode)
    ascii_ids, ws_ids = ascii_token_ids(tok)
    special = [tok.raw.token_to_id("<|endoftext|>")]
    rng = random.Random(f"{tok.name}-{mode}-ids")
    rows, want = [], []
    for _ in range(120):
        ids = []
        for _ in range(rng.randint(0, 60)):
            r = rng.random()
            ids.append(rng.choice(ws_ids) if r < 0.45 else rng.choice(special) if r < 0.5 else rng.choice(ascii_ids))
        rows.append(ids)
        want.append(expected_points(len(ids), oracle_breaks(tok, ids, min_newlines), None))
    for start in range(0, len(rows), 16):
        check_against(rows[start : start + 16], want[start : start + 16], delims)


# ---------------------------------------------------------------------------- text rule, synthetic vocabulary

# Token texts chosen to hit every case of the rule; "" is transparent (see Delimiters docstring).
SYNTH = [
    "Then", ".", "\n", "\n\n", " ", "\t", "\r", "\r\n", ".\n\n", "\n\nThen", " \n ", "x\n", "\ny",
    "", "a b", "\n \n", "?\n", "\u00a0", "\u2028", "\n\u3000", "<|endoftext|>", "\n\n\n", "z\n\nz",
]  # fmt: skip


def test_from_token_texts_tables():
    d = Delimiters.from_token_texts(SYNTH)
    lead = [0, 0, 1, 2, 0, 0, 0, 1, 0, 2, 1, 0, 1, 0, 0, 2, 0, 0, 0, 1, 0, 3, 0]
    trail = [0, 0, 1, 2, 0, 0, 0, 1, 2, 0, 1, 1, 0, 0, 0, 2, 1, 0, 0, 1, 0, 3, 0]
    ws = [t == "" or t.isspace() for t in SYNTH]
    assert d.leading_newlines.dtype == np.uint32 and d.leading_newlines.tolist() == lead
    assert d.trailing_newlines.dtype == np.uint32 and d.trailing_newlines.tolist() == trail
    assert d.whitespace_only.dtype == np.bool_ and d.whitespace_only.tolist() == ws
    assert d.whitespace_only[SYNTH.index("")]  # empty text: whitespace-only with no newline
    assert d.token_ids is None and d.min_newlines == 2 and d.vocab_size == len(SYNTH)
    assert Delimiters.from_token_texts(SYNTH, mode="line").min_newlines == 1
    with pytest.raises(ValueError):
        d.leading_newlines[0] = 5  # read-only: the compiled table must not go stale


# The examples of the text rule (docs/semantics.md "Paragraph breaks", docs/method.md "Cut points"), the one
# home of them: (token texts of one completion, paper cuts, line cuts), the cuts without 0 and the end.
TEXT_RULE_EXAMPLES = [
    ((".\n\n", "Then"), [1], [1]),
    (("Then", ".\n\n", "Then"), [2], [2]),
    ((".", "\n", "\n", "Then"), [3], [3]),
    (("Then", ".", "\n", "\n", "Then"), [4], [4]),
    ((".", "\n\nThen"), [1], [1]),
    (("Then", ".", "\n\nThen"), [2], [2]),  # all three tokenizations cut before "Then"
    (("a", "\n", " ", "\n", " ", "Then"), [5], [5]),  # a run over several whitespace-only tokens cuts once
    (("a", "\n", "\t", "\r", "\n", "Then"), [5], [5]),  # tabs and \r inside the run
    ((".", "\n", " ", "\r\n", "\t", "\n", "Then", "."), [6], [6]),
    (("a", "\n", "Then"), [], [2]),  # one newline: a line break, not a paragraph
    (("a", ".\n", "Then"), [], [2]),
    ((".", "\n", "Then"), [], [2]),
    (("x\n", "Then"), [], [1]),
    (("a", "\n\n", "\n\n", "Then"), [3], [3]),  # two runs back to back: one cut
    ((".\n\n", "\n", "a", "\n\n"), [2], [2]),  # trailing whitespace at the end: no cut after it
    (("\n\n", "Then"), [1], [1]),  # a leading run (run(-1) = 0) + 2 newlines
    ((".", "\n\n"), [], []),  # a trailing run: nothing after it
    (("Then", ".\n\n"), [], []),  # a break at the very end (p = L) is not a candidate
    ((".", "\n", "", "\n", "Then"), [4], [4]),  # empty text does not end the run ...
    ((".", "\n\n", "", "Then"), [3], [3]),  # ... and there is no break before it
    ((".", "\n", "\u00a0", "\n", "Then"), [4], [4]),  # non-ASCII whitespace inside the run
    ((".", "\u2028", "\u2028", "Then"), [], []),  # a line separator is not "\n"
    ((".", "\r", "\r", "Then"), [], []),  # neither is "\r"
    ((".", "\r", "Then"), [], []),
    ((".", "\n", "x\n", "Then"), [], [2, 3]),  # non-whitespace resets the run
]  # fmt: skip


@pytest.mark.parametrize("mode", ["paper", "line"])
@pytest.mark.parametrize("impl", ["real", "oracle"])
def test_text_rule_examples(mode, impl):
    """The examples through select_cuts and segment_paragraphs, and through the oracle of tests/reference.py."""
    vocab = sorted({t for texts, _, _ in TEXT_RULE_EXAMPLES for t in texts})
    rows = [[vocab.index(t) for t in texts] for texts, _, _ in TEXT_RULE_EXAMPLES]
    want = [[0, *(paper if mode == "paper" else line), len(texts)] for texts, paper, line in TEXT_RULE_EXAMPLES]
    if impl == "real":
        check_against(rows, want, Delimiters.from_token_texts(vocab, mode=mode))
        return
    ids, mask, entropies = make_batch(rows)
    table = ref.text_table(vocab, mode)
    cuts = ref.select_cuts(ids, mask, entropies, table, k=ids.shape[1] + 1)
    segs = ref.segment_paragraphs(ids, mask, table)
    for b, (texts, expected) in enumerate(zip([e[0] for e in TEXT_RULE_EXAMPLES], want, strict=True)):
        assert cuts["positions"][cuts["offsets"][b] : cuts["offsets"][b + 1]].tolist() == expected, texts
        assert cuts["ends"][b] == expected[-1], texts
        starts = segs["starts"][segs["offsets"][b] : segs["offsets"][b + 1]].tolist()
        ends = segs["ends"][segs["offsets"][b] : segs["offsets"][b + 1]].tolist()
        assert starts == expected[:-1] and ends == expected[1:], texts


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(0, len(SYNTH) - 1), max_size=30), min_size=1, max_size=4),
    mode=st.sampled_from(["paper", "line"]),
)
def test_text_rule_synthetic(rows, mode):
    d = Delimiters.from_token_texts(SYNTH, mode=mode)
    want = []
    for ids in rows:
        texts = [SYNTH[i] for i in ids]
        prefixes = ["".join(texts[:p]) for p in range(len(ids))]
        want.append(expected_points(len(ids), text_breaks(prefixes, texts, d.min_newlines), None))
    check_against(rows, want, d)


def test_text_rule_rejects_ids_outside_the_table():
    d = Delimiters.from_token_texts(SYNTH)
    for bad in (len(SYNTH), -1):
        ids, mask, entropies = make_batch([[0, 1, bad, 2]])
        with pytest.raises(ReproError):
            rc.select_cuts(ids, mask, entropies, delimiters=d)
        with pytest.raises(ReproError):
            rc.segment_paragraphs(ids, mask, delimiters=d)


def test_text_mode_without_newlines_warns():
    with pytest.warns(UserWarning, match="no paragraph break"):
        d = Delimiters.from_token_texts(["a", "b", " "])
    check_against([[0, 2, 1, 0]], [[0, 4]], d)


# ---------------------------------------------------------------------------- exact-token rule


def exact_points(rows, delimiter_ids):
    s = set(delimiter_ids)
    return [expected_points(len(r), [p for p in range(1, len(r)) if r[p - 1] in s], None) for r in rows]


def encoded_rows(tok: Tok, n: int = 40) -> list[list[int]]:
    rng = random.Random(7)
    return [tok.encode(random_text(rng, think=False)) for _ in range(n)]


def test_reference_mode(tok):
    d = Delimiters.from_tokenizer(tok.tokenizer, mode="reference")
    assert d.mode == "reference" and d.token_ids.dtype == np.int64
    first = {tok.encode(s)[0] for s in (".\n", "?\n", "\n\n")}
    assert sorted(first) == d.token_ids.tolist()
    vocab = tok.raw.get_vocab()
    if tok.name.startswith("split"):  # the first tokens are ".", "?" and "\n"
        assert d.token_ids.tolist() == sorted({vocab["."], vocab["?"], vocab["Ċ"]})
    else:  # ".\n", "?\n" and "\n\n" are tokens themselves
        assert d.token_ids.tolist() == sorted({vocab[".Ċ"], vocab["?Ċ"], vocab["ĊĊ"]})
    rows = encoded_rows(tok)
    check_against(rows, exact_points(rows, d.token_ids.tolist()), d)


def test_strings_mode(tok):
    texts = texts_of(tok.raw)
    strings = [".\n\n", "\n\n", "\n"]
    present = [s for s in strings if s in texts]
    d = Delimiters.from_tokenizer(tok.tokenizer, mode=strings if present == strings else present)
    assert d.mode == "strings"
    assert d.token_ids.tolist() == sorted(i for i, t in enumerate(texts) if t in strings)
    assert d.token_ids.size >= (3 if tok.name.startswith("merged") else 1)
    rows = encoded_rows(tok)
    check_against(rows, exact_points(rows, d.token_ids.tolist()), d)
    assert Delimiters.from_tokenizer(tok.tokenizer, mode=("\n",)).token_ids.tolist() == [texts.index("\n")]


def test_strings_mode_warnings(split_tok):
    with pytest.warns(UserWarning, match="no paragraph break"):
        d = Delimiters.from_tokenizer(split_tok, mode=[".\n\n", "\n\n"])  # no such single token
    assert d.token_ids.size == 0
    row = split_tok.encode("So.\n\nThen x").ids
    check_against([row], [[0, len(row)]], d)
    with pytest.warns(UserWarning, match=r"'\\n\\n'"):
        d = Delimiters.from_tokenizer(split_tok, mode=["\n", "\n\n"])  # one matches, one does not
    assert d.token_ids.size == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Delimiters.from_tokenizer(split_tok, mode=["\n"])
        Delimiters.from_tokenizer(split_tok)


def test_bad_modes(split_tok):
    for bad in ("papers", "Paper", "\n\n", 3, None, [".\n", 7], [""], b"paper"):
        with pytest.raises(ReproError, match="mode"):
            Delimiters.from_tokenizer(split_tok, mode=bad)
        with pytest.raises(ReproError, match="mode"):
            Delimiters.from_token_texts(SYNTH, mode=bad)
    with pytest.raises(ReproError, match=r"'paper', 'line', 'reference'") as info:
        Delimiters.from_tokenizer(split_tok, mode="papers")
    assert "papers" in str(info.value)
    with pytest.raises(ReproError, match="reference"):
        Delimiters.from_token_texts(SYNTH, mode="reference")
    with pytest.raises(ReproError, match="tokenizer"):
        Delimiters.from_tokenizer(object())
    with pytest.raises(ReproError, match="texts"):
        Delimiters.from_token_texts(["a", 3])
    with pytest.raises(ReproError, match="texts"):
        Delimiters.from_token_texts("abc")


def test_from_ids():
    d = Delimiters.from_ids(np.array([12, 3, 12], dtype=np.int32))
    assert d.mode == "ids" and d.token_ids.dtype == np.int64 and d.token_ids.tolist() == [3, 12]
    assert Delimiters.from_ids(x for x in [5, np.int64(2)]).token_ids.tolist() == [2, 5]
    assert Delimiters.from_ids([2**40]).token_ids.tolist() == [2**40]
    rows = [[1, 3, 4, 12, 12, 7], [3, 3], [9], []]
    want = exact_points(rows, [3, 12])
    check_against(rows, want, d)
    check_against(rows, want, [12, 3])  # the plain-list form gives the same cuts
    # The exact rule reads any id (no vocabulary table).
    check_against([[10**9, 3, 10**9]], [[0, 2, 3]], d)


def test_from_ids_huge_id():
    """Any int64 id >= 0 is a valid delimiter (the exact rule has no vocabulary bound): the
    compiled table must not be sized by the largest id. Run in a child process with a 4 GiB
    address-space cap, since a failure here is an abort, not an exception."""
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "import numpy as np, repro_core as rc\n"
        "for big in (2**40, 2**63 - 1):\n"
        "    d = rc.Delimiters.from_ids([5, big])\n"
        "    ids = np.array([[1, 5, 2, big, 3]]); mask = np.ones_like(ids, dtype=bool)\n"
        "    cuts = rc.select_cuts(ids, mask, np.ones(ids.shape), delimiters=d, k=10)\n"
        "    assert cuts.positions.tolist() == [0, 2, 4, 5], cuts\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[:300]


@pytest.mark.parametrize(
    "bad",
    [[-1], [1, -5], ["3"], [1.0], [True], [None], "12", 7, None, np.array([1.0, 2.0]), np.array([[1, 2]]),
     np.array([True]), [2**63]],
)  # fmt: skip
def test_from_ids_validation(bad):
    with pytest.raises(ReproError, match="ids"):
        Delimiters.from_ids(bad)


def test_from_ids_empty_warns():
    with pytest.warns(UserWarning, match="no paragraph break"):
        d = Delimiters.from_ids([])
    assert d.token_ids.dtype == np.int64 and d.token_ids.size == 0
    check_against([[1, 2, 3], []], [[0, 3], [0]], d)


# ---------------------------------------------------------------------------- think-end


def test_think_end_id(tok, merged_tok):
    if tok.name.startswith("split"):
        tid = think_end_id(tok.tokenizer)
        assert tid is not None and tid == tok.raw.token_to_id("</think>")
        assert tok.encode("a</think>b")[1] == tid
    else:
        assert len(tok.encode("</think>")) > 1
        assert think_end_id(tok.tokenizer) is None
    assert think_end_id(tok.tokenizer, "<|endoftext|>") == tok.raw.token_to_id("<|endoftext|>")
    then = tok.encode("Then")
    assert len(then) == 1 and think_end_id(tok.tokenizer, "Then") == then[0]  # a plain vocabulary token
    assert think_end_id(tok.tokenizer, "Then x qz") is None
    assert think_end_id(tok.tokenizer, "<answer>") is None
    assert think_end_id(tok.tokenizer, token="\n") == tok.encode("\n")[0]  # vocabulary spells it "Ċ"
    with pytest.raises(ReproError):
        think_end_id(tok.tokenizer, "")


def test_tokenizer_size(tok, split_tok):
    assert tokenizer_size(tok.tokenizer) == tok.raw.get_vocab_size(with_added_tokens=True)
    added = Tokenizer.from_str(split_tok.to_str())
    added.add_tokens(["<step>"])
    assert tokenizer_size(added) == split_tok.get_vocab_size(with_added_tokens=True) + 1
    with pytest.raises(ReproError, match="tokenizer: "):
        tokenizer_size(object())


def test_think_end_added_token(split_tok):
    tok = Tokenizer.from_str(split_tok.to_str())
    tok.add_tokens(["<step>"])  # added, not special
    assert think_end_id(tok, "<step>") == tok.get_vocab_size(with_added_tokens=True) - 1
    d = Delimiters.from_tokenizer(tok)
    assert d.vocab_size == tok.get_vocab_size(with_added_tokens=True)
    assert not d.whitespace_only[-1]


# ---------------------------------------------------------------------------- object behaviour


def test_table_is_cached_and_pickling_drops_it(split_tok):
    d = Delimiters.from_tokenizer(split_tok)
    table = d.table()
    assert isinstance(table, rc._core.DelimiterTable) and d.table() is table
    rows = encoded_rows(Tok("split-raw", split_tok, split_tok), 20)
    ids, mask, entropies = make_batch(rows)
    before = rc.select_cuts(ids, mask, entropies, delimiters=d, k=3)
    blob = pickle.dumps(d)
    assert len(blob) < 20 * d.vocab_size + 10_000  # the tables, not the native object
    d2 = pickle.loads(blob)
    assert d2.mode == d.mode and d2.min_newlines == d.min_newlines
    for name in ("leading_newlines", "trailing_newlines", "whitespace_only"):
        assert np.array_equal(getattr(d2, name), getattr(d, name))
        assert not getattr(d2, name).flags.writeable
    after = rc.select_cuts(ids, mask, entropies, delimiters=d2, k=3)
    for name in ("offsets", "positions", "ends"):
        assert np.array_equal(getattr(before, name), getattr(after, name))
    assert isinstance(d2.table(), rc._core.DelimiterTable)
    e = pickle.loads(pickle.dumps(Delimiters.from_ids([4, 2])))
    assert e.token_ids.tolist() == [2, 4] and e.mode == "ids"


def test_repr(split_tok):
    r = repr(Delimiters.from_tokenizer(split_tok, mode="line"))
    assert "line" in r and str(split_tok.get_vocab_size(with_added_tokens=True)) in r
    assert repr(Delimiters.from_ids([7, 3])) == "Delimiters(mode='ids', ids=[3, 7])"
    assert "n=100" in repr(Delimiters.from_ids(range(100)))
    assert "strings" in repr(Delimiters.from_token_texts(SYNTH, mode=["\n"]))


def test_large_vocabulary():
    """A 60k-token byte-level BPE (built directly, not trained) decodes in one batched call."""
    rng = random.Random(5)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(alphabet))}
    pieces = list(vocab)
    merges = []
    nl, sp = "Ċ", "Ġ"
    while len(vocab) < 60_000:
        a = rng.choice(pieces[-3000:] if rng.random() < 0.5 else pieces)
        b = rng.choice([nl, sp, ".", *pieces[:300]]) if rng.random() < 0.3 else rng.choice(pieces)
        if a + b not in vocab and len(a + b) < 16:
            vocab[a + b] = len(vocab)
            pieces.append(a + b)
            merges.append((a, b))
    raw = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(["<|endoftext|>", "</think>"])
    texts = texts_of(raw)
    candidates = [raw]
    try:
        import transformers

        candidates.append(transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(raw.to_str())))
    except ImportError:
        pass
    for tokenizer in candidates:
        t0 = time.perf_counter()
        d = Delimiters.from_tokenizer(tokenizer)
        elapsed = time.perf_counter() - t0
        print(f"from_tokenizer({type(tokenizer).__name__}, V={d.vocab_size}): {elapsed:.3f}s")
        assert d.vocab_size == len(vocab) + 2
        lead = [t.count("\n") if not t.strip() else leading_whitespace(t).count("\n") for t in texts]
        trail = [t.count("\n") if not t.strip() else trailing_whitespace(t).count("\n") for t in texts]
        assert d.leading_newlines.tolist() == lead and d.trailing_newlines.tolist() == trail
        assert int(np.count_nonzero(d.leading_newlines)) > 30 and int(np.count_nonzero(d.trailing_newlines)) > 300
        assert think_end_id(tokenizer) == len(vocab) + 1
    rng2 = random.Random(6)
    rows = [raw.encode(random_text(rng2, think=False), add_special_tokens=False).ids for _ in range(30)]
    tk = Tok("big-raw", raw, raw)
    check_against(rows, [expected_points(len(r), oracle_breaks(tk, r, 2), None) for r in rows], d)
