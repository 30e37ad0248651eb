"""j_tokens="answer": the scored text is tokenized as the model would write it, the answer glued to
the template's text around it, and J averages only the answer's own tokens (those whose characters
overlap the answer's). Tokenized apart, ' is ' + 'Paris' gives ' is', ' ', 'Paris', a split the
model never writes."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tiny  # noqa: E402
from repro_core.objective import AnswerIds, AnswerTokens, ObjectiveScorer  # noqa: E402

#: (template, answer, the answer's own tokens as text): a space before {answer} goes with the
#: answer's first token, as the model writes it.
CASES = [
    ("So the value of x is {answer}.", "three", [" three"]),
    ("So the answer is {answer}", "42", [" 42"]),
    ("\\boxed{{{answer}}}", "180", ["1", "8", "0"]),
    ("{answer} = {answer}.", "7", ["7"]),  # a second {answer} is text after the first
]


@pytest.mark.parametrize(("template", "answer", "own"), CASES)
def test_the_answer_is_tokenized_glued_to_the_template(tok, template, answer, own):
    text = template.format(answer=answer)
    ids = AnswerTokens(tok, template, "answer")(answer, 0)
    assert ids.ids == tok(text, add_special_tokens=False)["input_ids"]  # what the model would write
    assert [tok.decode([i]) for i in ids.ids[ids.start : ids.stop]] == own
    # The whole text is what "template" scores; only the averaged span differs.
    assert AnswerTokens(tok, template)(answer, 0) == AnswerIds(ids.ids, 0, len(ids.ids))


def test_a_split_the_model_never_writes_is_not_scored(tok):
    """Tokenized apart, the text before the answer ends in a lone ' ' and 'three' splits in two."""
    apart = [tok.decode([i]) for text in ("So the value of x is ", "three") for i in tok(text)["input_ids"]]
    assert apart[-3:] == [" ", "t", "hree"]
    ids = AnswerTokens(tok, "So the value of x is {answer}.", "answer")("three", 0)
    assert [tok.decode([i]) for i in ids.ids] == ["So", " the", " value", " of", " x", " is", " three", "."]


def test_special_tokens_are_teacher_forced_not_averaged(tok):
    from tokenizers import processors

    with_bos = tiny.tokenizer()
    bos = with_bos.convert_tokens_to_ids("<|endoftext|>")
    with_bos.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)]
    )
    whole = tok("So the answer is 42", add_special_tokens=False)["input_ids"]
    ids = AnswerTokens(with_bos, "So the answer is {answer}", "answer", special_tokens=True)("42", 0)
    assert ids == AnswerIds([bos] + whole, len(whole), len(whole) + 1)


def test_a_tokenizer_without_offsets_aligns_by_decoding():
    """ByT5's is a Python tokenizer (no offsets): one token per byte, its </s> after the text."""
    from transformers.models.byt5.tokenization_byt5 import ByT5Tokenizer

    byt5 = ByT5Tokenizer()
    assert not byt5.is_fast
    ids = AnswerTokens(byt5, "So it is {answer}.", "answer", special_tokens=True)("42", 0)
    assert ids.ids == byt5("So it is 42.")["input_ids"] and ids.ids[-1] == byt5.eos_token_id
    assert (ids.start, ids.stop) == (9, 11) and byt5.decode(ids.ids[ids.start : ids.stop]) == "42"


@pytest.mark.parametrize("mode", ["shared", "per_cut"])
def test_j_averages_the_answers_own_tokens_of_the_glued_text(tok, tiny_model, mode):
    """J in both modes against one plain forward over prompt + completion[:p] + the glued text."""
    template = "So the value of x is {answer}."
    prompt = tok("Compute the value of x.")["input_ids"]
    completion = tok("So the sum is five.\n\nCheck again the total.")["input_ids"]
    positions = np.array([0, 3, len(completion)])
    j = ObjectiveScorer(tiny_model, tok, mode=mode, answer_template=template, j_tokens="answer").score(
        [prompt], [completion], ["three"], np.array([0, 3]), positions
    )
    text = tok(template.format(answer="three"))["input_ids"]
    scored = text.index(tok(" three")["input_ids"][0])
    expected = []
    for p in positions:
        ids = torch.tensor([prompt + completion[:p] + text])
        with torch.no_grad():
            logp = torch.log_softmax(tiny_model(ids).logits[0].double(), -1)
        expected.append(logp[len(prompt) + p + scored - 1, text[scored]].item())
    np.testing.assert_allclose(j, expected, atol=1e-5, rtol=0)
