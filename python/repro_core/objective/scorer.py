"""``ObjectiveScorer``: J at cut points and per-token entropies, the public calls of ``objective``.

docs/method.md, "J, the surrogate objective" and "Shared-prefix J"; the package docstring
describes the two modes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._api import Cuts
from ..config import JTokens, ObjectiveMode, check_setting
from ..errors import ReproError
from .answers import AnswerTokens
from .model import ModelAdapter
from .rows import Rows, checked_cuts, in_row_order

__all__ = ["CutSelector", "Evaluation", "ObjectiveScorer"]


@dataclass(frozen=True)
class Evaluation:
    """Entropy pass and J in one go (``ObjectiveScorer.evaluate``).

    ``token_ids`` (B, T) int64 are the right-padded completions (0 past the end); ``entropies``
    (B, T) float32 and ``mask`` (B, T) bool as from ``entropies()``; ``cuts`` as
    returned by the selection callback, stitched over chunks in row order; ``j`` (N,) float64 in
    ``cuts.positions`` order.
    """

    token_ids: np.ndarray
    entropies: np.ndarray
    mask: np.ndarray
    cuts: Cuts
    j: np.ndarray


#: ``select(token_ids (b, t) int64, mask (b, t) bool, entropies (b, t) float32) -> Cuts`` for a
#: chunk of rows; ``repro_core.select_cuts`` with its options bound.
CutSelector = Callable[[np.ndarray, np.ndarray, np.ndarray], Cuts]


class ObjectiveScorer:
    """J at cut points and per-token entropies for any ``transformers`` causal LM.

    Args:
        model: a causal LM (``AutoModelForCausalLM``), optionally PEFT- or DDP-wrapped, on any
            device and dtype. It is switched to eval mode without gradients during each call and
            restored afterwards.
        tokenizer: its tokenizer; used only to tokenize the answer text.
        answer_template: ``answer_template.format(answer=gt)`` is the scored text, tokenized on its
            own without special tokens.
        mode: ``"shared"`` (fast: one pass plus cached probes) or ``"per_cut"`` (one sequence per
            cut); ``ReproConfig.objective_mode`` (whose ``"fused"`` is verl's alone: refused here).
        temperature: the sampling temperature, applied to the entropies; J uses the raw logits
            (temperature 1) unless ``j_at_rollout_temperature``.
        j_tokens: ``"template"`` (J averages every token of the answer text) or ``"answer"`` (only
            the answer's own tokens; the template's text around them is teacher-forced);
            ``ReproConfig.j_tokens``.
        answer_special_tokens: the answer text is encoded with the tokenizer's default special
            tokens (the authors' code); ``ReproConfig.answer_special_tokens``.
        j_at_rollout_temperature: J's log-probabilities are those of ``logits / temperature`` (the
            authors' code); ``ReproConfig.j_at_rollout_temperature``.
        max_batch_tokens: the token budget of one forward call (rows x padded width), which
            bounds activation and KV-cache memory.

    The settings are checked as ``ReproConfig`` checks them (``repro_core.config.check_setting``),
    and in ``"shared"`` mode a model whose layers the probes cannot mask (linear attention) is
    refused here. J that comes out NaN or infinite raises ``ReproError`` naming the attention
    kernel and the dtype that produced it.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        answer_template: str = "\\boxed{{{answer}}}",
        mode: ObjectiveMode = "shared",
        temperature: float = 1.0,
        max_batch_tokens: int = 16384,
        j_tokens: JTokens = "template",
        answer_special_tokens: bool = False,
        j_at_rollout_temperature: bool = False,
    ) -> None:
        try:
            check_setting("objective_mode", mode)
        except ReproError as error:
            raise error.renamed("mode") from None
        if mode == "fused":
            raise ReproError("mode", "'fused' computes J inside verl's old-log-prob pass (algorithm.repro."
                             "objective_mode=fused); here 'shared' scores J against the entropy pass's own keys and "
                             "values already: use mode='shared'")
        check_setting("temperature", temperature)
        check_setting("max_batch_tokens", max_batch_tokens)
        check_setting("j_at_rollout_temperature", j_at_rollout_temperature)
        self.answer_ids = AnswerTokens(tokenizer, answer_template, j_tokens, answer_special_tokens)
        if mode == "shared":
            ModelAdapter(model).refuse_shared()
        self.model = model
        self.tokenizer = tokenizer
        self.mode = mode
        self.temperature = float(temperature)
        self.max_batch_tokens = int(max_batch_tokens)
        #: The temperature of J's log-probabilities.
        self.j_temperature = self.temperature if j_at_rollout_temperature else 1.0

    def entropies(self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]]) -> tuple[
        np.ndarray, np.ndarray
    ]:
        """Per-token entropies (B, T) float32 of the completions and their mask (B, T) bool.

        H[b, t] is the entropy of the next-token distribution (at ``temperature``) that produced
        completion token t; T is the longest completion; 0 where the mask is False.
        """
        with self._inference() as lm:
            rows = self._rows(lm, prompt_ids, completion_ids)
            entropies = np.zeros((rows.count, rows.width), dtype=np.float32)
            chunks = list(rows.chunks(self._budget(lm)))
            lm.pad_decoder_calls(len(chunks))
            for chunk in chunks:
                hidden = lm.prefix(chunk)
                entropies[chunk.rows, : chunk.completion_width] = lm.entropies(chunk, hidden, self.temperature)
        return entropies, rows.mask()

    def score(
        self,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        answers: Sequence[Any],
        offsets: Any,
        positions: Any,
    ) -> np.ndarray:
        """J (N,) float64 at every cut point, in ``positions`` order.

        Row b's cut points are ``positions[offsets[b]:offsets[b + 1]]`` (``Cuts`` layout), each in
        ``[0, len(completion_ids[b])]``; J at p is the mean log-probability of the answer tokens
        (``j_tokens``) after ``prompt + completion[:p]``. An answer may come tokenized
        (``AnswerIds``). On an FSDP2-sharded model (``"shared"`` mode only) every rank calls this
        with its own rows, or ``idle()`` without any, and the ranks' decoder calls are kept equal.
        """
        with self._inference() as lm:
            rows = self._rows(lm, prompt_ids, completion_ids, answers)
            cuts = checked_cuts(offsets, positions, rows)
            if self.mode == "per_cut":
                return _finite(lm, lm.per_cut(rows, cuts, self.max_batch_tokens, self.j_temperature), cuts)
            # The prefix pass needs each completion only up to its last cut.
            last_cut = [int(row.max(initial=0)) for row in cuts.rows()]
            chunks = [(chunk, cuts.take(chunk.rows))
                      for chunk in rows.chunks(self.max_batch_tokens, prefix_lengths=last_cut)]
            lm.pad_decoder_calls(sum(1 + len(lm.probe_calls(chunk, chunk_cuts, self.max_batch_tokens))
                                     for chunk, chunk_cuts in chunks))
            chunk_rows: list[int] = []
            chunk_j: list[np.ndarray] = []
            for chunk, chunk_cuts in chunks:
                _, cache = lm.prefix_with_cache(chunk)
                chunk_j.append(lm.probes(chunk, cache, chunk_cuts, self.max_batch_tokens, self.j_temperature))
                chunk_rows += chunk.rows
            j = in_row_order(chunk_rows, cuts.take(chunk_rows), _concat(chunk_j)).astype(np.float64, copy=False)
            return _finite(lm, j, cuts)

    def idle(self) -> None:
        """A rank of a sharded policy with no rows to score: its part of the other ranks' decoder
        calls (``score`` on the ranks that have rows)."""
        with self._inference() as lm:
            lm.pad_decoder_calls(0)

    def evaluate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        answers: Sequence[Any],
        select: CutSelector,
        entropies: Any = None,
    ) -> Evaluation:
        """Entropies, cut points and J for one batch, with one pass over the rollouts.

        ``select`` chooses the cut points of a chunk of rows from their entropies (e.g.
        ``functools.partial(repro_core.select_cuts, delimiters=..., k=20)``). In ``"shared"`` mode
        the probes run against the KV cache of the entropy pass, chunk by chunk, so at most one
        chunk's cache is alive at a time.

        ``entropies`` (B, >= T), from a pass the host made anyway at ``temperature`` (TRL's own
        old-log-prob pass): the cut points come from them, and J from ``score``, whose prefix pass
        needs no output head and stops at each row's last cut.
        """
        if entropies is not None:
            return self._evaluate_given(prompt_ids, completion_ids, answers, select, entropies)
        with self._inference() as lm:
            rows = self._rows(lm, prompt_ids, completion_ids, answers)
            token_ids = rows.completion_matrix()
            entropies = np.zeros(token_ids.shape, dtype=np.float32)
            mask = rows.mask()
            chunk_rows: list[int] = []
            chunk_cuts: list[Cuts] = []
            chunk_j: list[np.ndarray] = []
            chunks = list(rows.chunks(self._budget(lm)))
            # A sharded policy: the ranks go chunk by chunk together, each step's decoder calls
            # made equal (a rank out of chunks makes only the others' number of calls).
            for step in range(lm.most_over_ranks(len(chunks))):
                if step >= len(chunks):
                    lm.pad_decoder_calls(0)  # the others' prefix pass
                    lm.pad_decoder_calls(0)  # and their probes
                    continue
                chunk = chunks[step]
                lm.pad_decoder_calls(1)
                hidden, cache = lm.prefix_with_cache(chunk) if self.mode == "shared" else (lm.prefix(chunk), None)
                entropies[chunk.rows, : chunk.completion_width] = lm.entropies(chunk, hidden, self.temperature)
                del hidden
                chosen = select(token_ids[chunk.rows], mask[chunk.rows], entropies[chunk.rows])
                if cache is not None:
                    lm.pad_decoder_calls(len(lm.probe_calls(chunk, chosen, self.max_batch_tokens)))
                    chunk_j.append(lm.probes(chunk, cache, chosen, self.max_batch_tokens, self.j_temperature))
                chunk_rows += chunk.rows
                chunk_cuts.append(chosen)
            chunked = Cuts.concat(chunk_cuts)  # rows in chunk_rows order
            cuts = chunked.take(np.argsort(chunk_rows, kind="stable"))
            if self.mode == "per_cut":
                j = lm.per_cut(rows, cuts, self.max_batch_tokens, self.j_temperature)
            else:
                j = in_row_order(chunk_rows, chunked, _concat(chunk_j)).astype(np.float64, copy=False)
            _finite(lm, j, cuts)
        return Evaluation(token_ids, entropies, mask, cuts, j)

    def _evaluate_given(
        self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], answers: Sequence[Any],
        select: CutSelector, entropies: Any,
    ) -> Evaluation:
        """``evaluate`` with the host's entropies: cut points from them, then ``score``."""
        rows = self._rows(ModelAdapter(self.model), prompt_ids, completion_ids)
        token_ids, mask = rows.completion_matrix(), rows.mask()
        given = np.asarray(entropies.float().cpu() if hasattr(entropies, "cpu") else entropies, dtype=np.float32)
        longest = int(rows.lengths().max(initial=0))
        if given.ndim != 2 or given.shape[0] != rows.count or given.shape[1] < longest:
            raise ReproError("entropies", f"expected ({rows.count}, >= {longest}): one row per completion and one "
                             f"entropy per completion token, got shape {given.shape}")
        placed = np.zeros(token_ids.shape, dtype=np.float32)
        placed[mask] = given[:, : token_ids.shape[1]][mask[:, : given.shape[1]]]
        cuts = select(token_ids, mask, placed)
        j = self.score(prompt_ids, completion_ids, answers, cuts.offsets, cuts.positions)
        return Evaluation(token_ids, placed, mask, cuts, j)

    def _inference(self) -> AbstractContextManager[ModelAdapter]:
        """The model adapter, in eval mode without gradients for the call."""
        adapter = ModelAdapter(self.model)
        if adapter.sharded and self.mode == "per_cut":
            # Its decoder calls (one per batch of sequences, data-dependent) are not matched across ranks.
            raise ReproError(
                "mode", "'per_cut' cannot keep the ranks of an FSDP2-sharded model in step; use mode='shared'"
            )
        return adapter.inference(shared=self.mode == "shared")

    def _budget(self, lm: ModelAdapter) -> int:
        """The token budget of a prefix pass: a model that cannot pad safely passes one row at a time."""
        return self.max_batch_tokens if lm.masks.pads_safely else 1

    def _rows(
        self,
        lm: ModelAdapter,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        answers: Sequence[Any] | None = None,
    ) -> Rows:
        return Rows.build(
            prompt_ids, completion_ids, answers, answer_tokens=self.answer_ids, vocab_size=lm.vocab_size,
            device=lm.device,
        )


def _concat(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, np.float64)


def _finite(lm: ModelAdapter, j: np.ndarray, cuts: Cuts) -> np.ndarray:
    """``j`` itself, or a ReproError naming the first point that is not finite and what computed it."""
    bad = np.flatnonzero(~np.isfinite(j))
    if bad.size:
        first = int(bad[0])
        raise ReproError(
            "model", f"J is {j[first]} at row {int(cuts.row_index()[first])}, cut point {int(cuts.positions[first])} "
            f"({bad.size} of {j.size} points not finite), computed with attention implementation {lm.attention!r} "
            f"in {lm.compute_dtype}; try attn_implementation='eager' or float32 to tell a kernel fault from the "
            "model's own overflow"
        )
    return j
