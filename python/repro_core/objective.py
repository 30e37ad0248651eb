"""The surrogate objective J and per-token entropies on ``transformers`` causal LMs.

REPRO.md sections 1, 2 and 6. Rows are ``prompt + completion`` with the prompt left-padded and the
completion right-padded, so completion position t sits at column ``P + t`` of a chunk whose
prompts are padded to width P; position ids come from the attention mask, which makes every value
independent of padding and of which rows share a chunk.

Two ways to get J (the answer's mean log-probability after ``prompt + completion[:p]``):

- ``"per_cut"``: one sequence ``prompt + completion[:p] + answer`` per cut point through the
  model's own forward. The plain method, kept as the oracle.
- ``"shared"``: REPRO.md section 6. One pass over ``prompt + completion`` keeps the KV cache (the
  entropy pass, when both are wanted); then every probe of a row goes into one call against that
  cache. A probe is ``[last prefix token] + answer[:-1]`` with positions continuing the prefix, and
  a 4-D mask lets it see the cache up to its cut and its own earlier tokens, nothing else.
  Re-feeding the last prefix token (instead of keeping its hidden state) costs one token per probe
  and keeps the probe pass independent of the entropy pass.

Neither path materialises (B, T, vocab) logits: hidden states are gathered at the scored positions
and ``lm_head`` plus the softmax run on chunks of at most ``LOGIT_CHUNK_ELEMENTS`` logits.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformers import DynamicCache

from ._api import Cuts
from .errors import ReproError

__all__ = ["LOGIT_CHUNK_ELEMENTS", "AnswerTokens", "Evaluation", "ObjectiveMode", "ObjectiveScorer"]

ObjectiveMode = Literal["shared", "per_cut"]

#: Most logits (tokens x vocab) materialised at once, in float32: 256 MiB per buffer.
LOGIT_CHUNK_ELEMENTS = 1 << 26

# The 4-D probe mask is passed to the model as is; these attention kernels accept it.
_MASKABLE_ATTENTION = ("sdpa", "eager")


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


class AnswerTokens:
    """The scored answer of each row: ``answer_template.format(answer=gt)`` tokenized on its own,
    without special tokens (REPRO.md section 2); cached per text.

    Calling it with ``(gt, row)`` names the row in its errors: no answer, or a text with no tokens.
    """

    def __init__(self, tokenizer: Any, answer_template: str) -> None:
        try:
            has_answer = "\0" in answer_template.format(answer="\0")
        except (AttributeError, IndexError, KeyError, ValueError):
            has_answer = False
        if not has_answer:
            raise ReproError(
                "answer_template", f"expected a str.format template with an {{answer}} field (literal braces "
                f"doubled), got {answer_template!r}"
            )
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


class ObjectiveScorer:
    """J at cut points and per-token entropies for any ``transformers`` causal LM.

    Args:
        model: a causal LM (``AutoModelForCausalLM``), optionally PEFT- or DDP-wrapped, on any
            device and dtype. It is switched to eval mode without gradients during each call and
            restored afterwards.
        tokenizer: its tokenizer; used only to tokenize the answer text.
        answer_template: ``answer_template.format(answer=gt)`` is the scored text (REPRO.md
            section 2), tokenized on its own without special tokens.
        mode: ``"shared"`` (fast, REPRO.md section 6) or ``"per_cut"`` (one sequence per cut).
        temperature: the sampling temperature, applied to the entropies only; J always uses the
            raw logits (temperature 1).
        max_batch_tokens: the token budget of one forward call (rows x padded width), which
            bounds activation and KV-cache memory.
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
    ) -> None:
        if mode not in ("shared", "per_cut"):
            raise ReproError("mode", f"expected 'shared' or 'per_cut', got {mode!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise ReproError("temperature", f"expected a positive number, got {temperature!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ReproError("temperature", f"expected a finite number > 0, got {temperature!r}")
        try:
            max_batch_tokens = operator.index(max_batch_tokens)
        except TypeError:
            raise ReproError("max_batch_tokens", f"expected a positive int, got {max_batch_tokens!r}") from None
        if max_batch_tokens < 1:
            raise ReproError("max_batch_tokens", f"expected a positive int, got {max_batch_tokens}")
        self.answer_ids = AnswerTokens(tokenizer, answer_template)
        self.model = model
        self.tokenizer = tokenizer
        self.mode = mode
        self.temperature = float(temperature)
        self.max_batch_tokens = max_batch_tokens

    # ------------------------------------------------------------------------------ public

    def entropies(self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]]) -> tuple[
        np.ndarray, np.ndarray
    ]:
        """Per-token entropies (B, T) float32 of the completions and their mask (B, T) bool.

        H[b, t] is the entropy of the next-token distribution (at ``temperature``) that produced
        completion token t; T is the longest completion; 0 where the mask is False.
        """
        with self._inference() as lm:
            rows = _Rows.build(self, lm, prompt_ids, completion_ids)
            entropies = np.zeros((rows.count, rows.width), dtype=np.float32)
            for chunk in rows.chunks(self.max_batch_tokens):
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
        after ``prompt + completion[:p]``.
        """
        with self._inference() as lm:
            rows = _Rows.build(self, lm, prompt_ids, completion_ids, answers)
            cuts = _row_cuts(offsets, positions, rows)
            j_by_row: list[np.ndarray] = [np.empty(0)] * rows.count
            if self.mode == "per_cut":
                return lm.per_cut(rows, cuts, self.max_batch_tokens)
            for chunk in rows.chunks(self.max_batch_tokens, prefix_lengths=[int(c.max(initial=0)) for c in cuts]):
                _, cache = lm.prefix_with_cache(chunk)
                for row, j in zip(chunk.rows, lm.probes(chunk, cache, [cuts[r] for r in chunk.rows], self.max_batch_tokens)):
                    j_by_row[row] = j
        return _concat(j_by_row, np.float64)

    def evaluate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        answers: Sequence[Any],
        select: CutSelector,
    ) -> Evaluation:
        """Entropies, cut points and J for one batch, with one pass over the rollouts.

        ``select`` chooses the cut points of a chunk of rows from their entropies (e.g.
        ``functools.partial(repro_core.select_cuts, delimiters=..., k=20)``). In ``"shared"`` mode
        the probes run against the KV cache of the entropy pass, chunk by chunk, so at most one
        chunk's cache is alive at a time.
        """
        with self._inference() as lm:
            rows = _Rows.build(self, lm, prompt_ids, completion_ids, answers)
            token_ids = rows.completion_matrix()
            entropies = np.zeros(token_ids.shape, dtype=np.float32)
            mask = rows.mask()
            cuts: list[np.ndarray] = [np.empty(0, np.int64)] * rows.count
            ends = np.zeros(rows.count, dtype=np.int64)
            j_by_row: list[np.ndarray] = [np.empty(0)] * rows.count
            for chunk in rows.chunks(self.max_batch_tokens):
                hidden, cache = lm.prefix_with_cache(chunk) if self.mode == "shared" else (lm.prefix(chunk), None)
                entropies[chunk.rows, : chunk.completion_width] = lm.entropies(chunk, hidden, self.temperature)
                del hidden
                chosen = select(token_ids[chunk.rows], mask[chunk.rows], entropies[chunk.rows])
                chunk_cuts = [chosen.positions[chosen.offsets[i] : chosen.offsets[i + 1]] for i in range(len(chunk.rows))]
                ends[chunk.rows] = chosen.ends
                if cache is None:
                    chunk_j: Sequence[np.ndarray] = []
                else:
                    chunk_j = lm.probes(chunk, cache, chunk_cuts, self.max_batch_tokens)
                for i, row in enumerate(chunk.rows):
                    cuts[row] = chunk_cuts[i]
                    if chunk_j:
                        j_by_row[row] = chunk_j[i]
            if self.mode == "per_cut":
                j = lm.per_cut(rows, cuts, self.max_batch_tokens)
            else:
                j = _concat(j_by_row, np.float64)
        offsets = np.zeros(rows.count + 1, dtype=np.int64)
        np.cumsum([len(c) for c in cuts], out=offsets[1:])
        return Evaluation(token_ids, entropies, mask, Cuts(offsets, _concat(cuts, np.int64), ends), j)

    # ------------------------------------------------------------------------------ internals

    @contextmanager
    def _inference(self) -> Iterator[_Model]:
        """Eval mode and no grad for the call; every module's own training flag is restored."""
        modes = [(module, module.training) for module in self.model.modules()]
        lm = _Model(self.model)
        restore_attention = None
        unsupported = lm.layer_types - {"full_attention", "sliding_attention"}
        if self.mode == "shared" and unsupported:
            raise ReproError(
                "mode", f"'shared' cannot mask the model's {', '.join(sorted(unsupported))} layers; use mode='per_cut'"
            )
        if self.mode == "shared" and lm.attention not in _MASKABLE_ATTENTION:
            # Flash-attention kernels take no arbitrary 4-D mask: SDPA for the call, then back.
            restore_attention = lm.attention
            lm.causal_lm.set_attn_implementation("sdpa")
        self.model.eval()
        try:
            with torch.no_grad():
                yield lm
        finally:
            if restore_attention is not None:
                lm.causal_lm.set_attn_implementation(restore_attention)
            for module, training in modes:
                module.training = training


# ---------------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class _Chunk:
    """Rows of one forward call, laid out as [left-padded prompt | right-padded completion]."""

    rows: list[int]
    input_ids: torch.Tensor  # (b, P + T) int64
    attention_mask: torch.Tensor  # (b, P + T) int64
    position_ids: torch.Tensor  # (b, P + T) int64
    prompt_width: int  # P
    completion_lengths: torch.Tensor  # (b,) int64, as passed (not truncated)
    answers: list[list[int]]

    @property
    def completion_width(self) -> int:
        return self.input_ids.shape[1] - self.prompt_width


@dataclass
class _Rows:
    prompts: list[list[int]]
    completions: list[list[int]]
    answers: list[list[int]]
    device: torch.device

    @classmethod
    def build(
        cls,
        scorer: ObjectiveScorer,
        lm: _Model,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        answers: Sequence[Any] | None = None,
    ) -> _Rows:
        prompts = _token_lists("prompt_ids", prompt_ids, lm.vocab_size)
        completions = _token_lists("completion_ids", completion_ids, lm.vocab_size)
        if not prompts:
            raise ReproError("prompt_ids", "expected at least one row, got 0")
        if len(completions) != len(prompts):
            raise ReproError("completion_ids", f"expected {len(prompts)} rows (as prompt_ids), got {len(completions)}")
        for b, prompt in enumerate(prompts):
            if not prompt:
                raise ReproError(f"prompt_ids[{b}]", "is empty; the first completion token needs a context")
        answer_ids: list[list[int]] = []
        if answers is not None:
            if isinstance(answers, (str, bytes)) or len(answers) != len(prompts):
                got = "a string" if isinstance(answers, (str, bytes)) else f"{len(answers)}"
                raise ReproError("answers", f"expected {len(prompts)} answers (one per row), got {got}")
            answer_ids = [scorer.answer_ids(answer, b) for b, answer in enumerate(answers)]
        device = next(lm.model.parameters()).device
        return cls(prompts, completions, answer_ids, device)

    @property
    def count(self) -> int:
        return len(self.prompts)

    @property
    def width(self) -> int:
        """T: the longest completion, and at least 1 so that (B, T) arrays are never empty."""
        return max(1, *(len(c) for c in self.completions))

    def mask(self) -> np.ndarray:
        lengths = np.array([len(c) for c in self.completions])
        return np.arange(self.width) < lengths[:, None]

    def completion_matrix(self) -> np.ndarray:
        ids = np.zeros((self.count, self.width), dtype=np.int64)
        for row, completion in enumerate(self.completions):
            ids[row, : len(completion)] = completion
        return ids

    def chunks(self, budget: int, prefix_lengths: Sequence[int] | None = None) -> Iterator[_Chunk]:
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

    def _chunk(self, rows: list[int], prompt_width: int, completion_width: int, kept: list[int]) -> _Chunk:
        input_ids = torch.zeros((len(rows), prompt_width + completion_width), dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, b in enumerate(rows):
            prompt, completion = self.prompts[b], self.completions[b][: kept[b]]
            input_ids[i, prompt_width - len(prompt) : prompt_width] = torch.tensor(prompt)
            input_ids[i, prompt_width : prompt_width + len(completion)] = torch.tensor(completion, dtype=torch.long)
            attention_mask[i, prompt_width - len(prompt) : prompt_width + len(completion)] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return _Chunk(
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
            raise ReproError(f"{name}[{b}]", f"expected a 1-D sequence of ints, got shape {ids.shape} dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            bad = int(ids.min() if ids.min() < 0 else ids.max())
            raise ReproError(f"{name}[{b}]", f"token id {bad} is outside the model's vocabulary [0, {vocab})")
        out.append([int(i) for i in ids.reshape(-1)])
    return out


def _row_cuts(offsets: Any, positions: Any, rows: _Rows) -> list[np.ndarray]:
    offsets = np.asarray(offsets)
    positions = np.asarray(positions)
    if offsets.shape != (rows.count + 1,) or offsets.dtype.kind not in "iu":
        raise ReproError("offsets", f"expected ({rows.count + 1},) ints, got shape {offsets.shape} dtype {offsets.dtype}")
    if positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
        raise ReproError("positions", f"expected (N,) ints, got shape {positions.shape} dtype {positions.dtype}")
    if offsets[0] != 0 or offsets[-1] != len(positions) or np.any(np.diff(offsets) < 0):
        raise ReproError(
            "offsets", f"expected non-decreasing values from 0 to len(positions) = {len(positions)}, got {offsets.tolist()}"
        )
    cuts = []
    for b in range(rows.count):
        row = positions[offsets[b] : offsets[b + 1]].astype(np.int64)
        length = len(rows.completions[b])
        if row.size and (row.min() < 0 or row.max() > length):
            bad = int(row.min() if row.min() < 0 else row.max())
            raise ReproError("positions", f"row {b} has cut point {bad} outside [0, {length}] (its completion length)")
        cuts.append(row)
    return cuts


def _concat(parts: Sequence[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)


# ---------------------------------------------------------------------------------- model


class _Model:
    """The pieces of a causal LM that J needs: its decoder, its output head, its logit transform."""

    def __init__(self, model: Any) -> None:
        self.model = model
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        # PEFT keeps the transformers model (adapters injected in place) behind get_base_model().
        self.causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.decoder = self.causal_lm.base_model
        self.head = self.causal_lm.get_output_embeddings()
        config = self.causal_lm.config.get_text_config()
        # What some architectures' forwards do to the lm_head output (Gemma 2/3, Cohere, Granite).
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.scale = getattr(config, "logit_scale", None) or 1.0
        self.scale /= getattr(config, "logits_scaling", None) or 1.0
        self.attention = self.causal_lm.config._attn_implementation
        # Sliding-window layers see only the last `window` positions; Mistral-style configs slide
        # in every layer without naming layer types.
        self.window: int = getattr(config, "sliding_window", None) or 0
        kinds = getattr(config, "layer_types", None) or ["sliding_attention" if self.window else "full_attention"]
        self.layer_types = frozenset(kinds)
        self.vocab_size = self.causal_lm.get_input_embeddings().num_embeddings

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits of a (n, d) slice of hidden states, as the model's own forward makes them."""
        logits = self.head(hidden).float()
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def token_chunks(self, count: int) -> Iterator[slice]:
        step = max(1, LOGIT_CHUNK_ELEMENTS // self.head.weight.shape[0])
        for start in range(0, count, step):
            yield slice(start, min(start + step, count))

    def prefix(self, chunk: _Chunk) -> torch.Tensor:
        """Final hidden states (b, P + T, d) of the chunk's rows."""
        return self._decode(chunk, use_cache=False).last_hidden_state

    def prefix_with_cache(self, chunk: _Chunk) -> tuple[torch.Tensor, DynamicCache]:
        """Final hidden states (b, P + T, d) and the KV cache the probes run against."""
        # A cache of full layers: sliding-window layers would drop the keys that early probes see.
        out = self._decode(chunk, use_cache=True, cache=DynamicCache())
        return out.last_hidden_state, out.past_key_values

    def _decode(self, chunk: _Chunk, *, use_cache: bool, cache: DynamicCache | None = None) -> Any:
        return self.decoder(
            input_ids=chunk.input_ids,
            attention_mask=chunk.attention_mask,
            position_ids=chunk.position_ids,
            past_key_values=cache,
            use_cache=use_cache,
        )

    def entropies(self, chunk: _Chunk, hidden: torch.Tensor, temperature: float) -> np.ndarray:
        """(b, T) float32 entropies of the completion tokens (0 past each completion's end)."""
        width, start = chunk.completion_width, chunk.prompt_width
        # Completion token t is predicted from column P + t - 1.
        valid = torch.arange(width, device=hidden.device) < chunk.completion_lengths[:, None]
        gathered = hidden[:, start - 1 : start - 1 + width][valid]
        values = torch.empty(gathered.shape[0], dtype=torch.float32, device=hidden.device)
        for part in self.token_chunks(gathered.shape[0]):
            logp = torch.log_softmax(self.logits(gathered[part]) / temperature, dim=-1)
            values[part] = -(logp.exp() * logp).sum(-1)
        out = torch.zeros(valid.shape, dtype=torch.float32, device=hidden.device)
        out[valid] = values
        result = out.cpu().numpy()
        bad = np.argwhere(~np.isfinite(result))
        if bad.size:
            row, position = bad[0]
            raise ReproError(
                "entropies", f"non-finite value {result[row, position]} at row {chunk.rows[row]}, position {position} "
                "(the model's logits overflow or are NaN)"
            )
        return result

    def probes(
        self, chunk: _Chunk, cache: DynamicCache, cuts: Sequence[np.ndarray], budget: int
    ) -> list[np.ndarray]:
        """J at each row's cut points, every probe of the chunk scored against the prefix cache."""
        device = chunk.input_ids.device
        rows, cache_width = len(chunk.rows), chunk.input_ids.shape[1]
        answer_len = torch.tensor([len(a) for a in chunk.answers], device=device)
        width = int(answer_len.max())
        answers = torch.zeros((rows, width), dtype=torch.long, device=device)
        for i, a in enumerate(chunk.answers):
            answers[i, : len(a)] = torch.tensor(a, device=device)
        most = max((len(c) for c in cuts), default=0)
        cut_pos = torch.zeros((rows, most), dtype=torch.long, device=device)
        has_cut = torch.zeros((rows, most), dtype=torch.bool, device=device)
        for i, c in enumerate(cuts):
            cut_pos[i, : len(c)] = torch.from_numpy(c).to(device)
            has_cut[i, : len(c)] = True
        # The last prefix token of the probe at cut p: column P + p - 1 (the last prompt token at p = 0).
        last = chunk.prompt_width - 1 + cut_pos
        offsets_in_probe = torch.arange(width, device=device)
        totals = torch.zeros((rows, most), dtype=torch.float64, device=device)
        per_call = max(1, budget // (rows * width))
        for first in range(0, most, per_call):
            probes = slice(first, min(first + per_call, most))
            count = probes.stop - probes.start
            last_col = last[:, probes]  # (b, n)
            first_token = chunk.input_ids.gather(1, last_col)
            input_ids = torch.cat([first_token[:, :, None], answers[:, None, :-1].expand(-1, count, -1)], dim=2)
            position_ids = chunk.position_ids.gather(1, last_col)[:, :, None] + offsets_in_probe
            # Query (j, i) sees cache columns < its last prefix column (real tokens only) ...
            sees_cache = (torch.arange(cache_width, device=device) < last_col[:, :, None]) & chunk.attention_mask[
                :, None, :
            ].bool()
            sees_cache = sees_cache[:, :, None, :].expand(-1, -1, width, -1)
            # ... and the tokens of its own probe up to itself.
            same_probe = torch.eye(count, dtype=torch.bool, device=device)[:, None, :, None]
            causal = offsets_in_probe[None, :] <= offsets_in_probe[:, None]
            sees_probe = (same_probe & causal[None, :, None, :]).reshape(count * width, count * width)
            allowed = torch.cat(
                [sees_cache.reshape(rows, count * width, cache_width), sees_probe.expand(rows, -1, -1)], dim=2
            )
            position_ids = position_ids.reshape(rows, -1)
            key_positions = torch.cat([chunk.position_ids, position_ids], dim=1)
            out = self.decoder(
                input_ids=input_ids.reshape(rows, -1),
                attention_mask=self.probe_masks(allowed, position_ids, key_positions),
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            cache.crop(cache_width)
            scored = has_cut[:, probes, None] & (offsets_in_probe < answer_len[:, None])[:, None, :]
            hidden = out.last_hidden_state.reshape(rows, count, width, -1)[scored]
            targets = answers[:, None, :].expand(-1, count, -1)[scored]
            logp = torch.empty(hidden.shape[0], dtype=torch.float64, device=device)
            for part in self.token_chunks(hidden.shape[0]):
                logits = self.logits(hidden[part])
                logp[part] = (logits.gather(1, targets[part, None])[:, 0] - logits.logsumexp(-1)).double()
            placed = torch.zeros(scored.shape, dtype=torch.float64, device=device)
            placed[scored] = logp
            totals[:, probes] = placed.sum(-1)
        j = (totals / answer_len[:, None]).cpu().numpy()
        return [j[i, : len(c)] for i, c in enumerate(cuts)]

    def probe_masks(
        self, allowed: torch.Tensor, query_positions: torch.Tensor, key_positions: torch.Tensor
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Additive 4-D masks from ``allowed`` (b, q, k): one tensor, or one per layer type."""
        dtype = self.decoder.get_input_embeddings().weight.dtype
        masks = {}
        for kind in self.layer_types:
            if kind == "sliding_attention":
                kind_allowed = allowed & (key_positions[:, None, :] > query_positions[:, :, None] - self.window)
            else:
                kind_allowed = allowed
            mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
            masks[kind] = mask.masked_fill_(~kind_allowed, torch.finfo(dtype).min)[:, None]
        # Models with several layer types take a mapping; the others one tensor.
        return masks if len(masks) > 1 else next(iter(masks.values()))

    def per_cut(self, rows: _Rows, cuts: Sequence[np.ndarray], budget: int) -> np.ndarray:
        """J with one sequence ``prompt + completion[:p] + answer`` per cut point (the oracle)."""
        sequences = [
            (rows.prompts[b] + rows.completions[b][:p], rows.answers[b]) for b, row in enumerate(cuts) for p in row.tolist()
        ]
        j = np.empty(len(sequences), dtype=np.float64)
        order = sorted(range(len(sequences)), key=lambda n: -sum(map(len, sequences[n])))
        vocab = self.head.weight.shape[0]
        start = 0
        while start < len(order):
            longest = sum(map(len, sequences[order[start]]))
            answer_width = max(len(sequences[n][1]) for n in order[start:])
            by_tokens = budget // longest
            by_logits = LOGIT_CHUNK_ELEMENTS // ((answer_width + 1) * vocab)
            batch = order[start : start + max(1, min(by_tokens, by_logits))]
            j[batch] = self._per_cut_batch([sequences[n] for n in batch], rows.device)
            start += len(batch)
        return j

    def _per_cut_batch(self, sequences: list[tuple[list[int], list[int]]], device: torch.device) -> np.ndarray:
        width = max(len(prefix) + len(answer) for prefix, answer in sequences)
        answer_width = max(len(answer) for _, answer in sequences)
        input_ids = torch.zeros((len(sequences), width), dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        targets = torch.zeros((len(sequences), answer_width), dtype=torch.long)
        scored = torch.zeros((len(sequences), answer_width), dtype=torch.bool)
        for i, (prefix, answer) in enumerate(sequences):
            tokens = prefix + answer
            input_ids[i, width - len(tokens) :] = torch.tensor(tokens)
            attention_mask[i, width - len(tokens) :] = 1
            # Left padding puts every answer at the end; right-align them in the target block too.
            targets[i, answer_width - len(answer) :] = torch.tensor(answer)
            scored[i, answer_width - len(answer) :] = True
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            logits_to_keep=answer_width + 1,
        ).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(2, targets.to(device)[:, :, None])[:, :, 0].double().cpu()
        return ((logp * scored).sum(-1) / scored.sum(-1)).numpy()
