"""J from the keys and values of a forward pass that the host runs anyway (verl's old-log-prob pass).

docs/method.md, "Shared-prefix J": a probe ``[last prefix token] + answer[:-1]`` at cut p sees the
row's keys and values before its last prefix token and its own earlier tokens. The shared path
makes those keys and values in a prefix pass of its own; here they come from a pass the host makes
for its own reasons, with entropies, over the same rows:

- ``keeping_keys_values(model)``: while open, every attention layer's post-RoPE keys and values
  are kept, by a wrapper registered in transformers' ``AttentionInterface`` under the kernel the
  model runs. The wrapper calls that kernel with the same arguments, so the pass's outputs are
  bit-identical to the pass without it.
- ``FusedScorer.score``: each row's cut points, selected in Rust from that pass's entropies, and
  J at each, in one probe call against the kept keys and values. The rows' keys and values are
  gathered into the [left-padded prompt | completion] layout of ``ModelAdapter.probes``, whose
  probes and masks this reuses, and the call goes through the model's root module, so that a
  sharded policy (FSDP1's root, FSDP2's) gathers what it needs as in its own forward.

Under FSDP every forward gathers the layers' shards from all ranks, so every rank makes exactly one
root call per ``score``: the probes, or a one-token step where it has nothing to score.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, cast

import numpy as np
import torch
from torch.distributed.fsdp import FullyShardedDataParallel
from transformers import AttentionInterface, DynamicCache
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .._api import Cuts
from ..errors import ReproError
from .answers import AnswerIds
from .model import ModelAdapter
from .rows import Chunk

__all__ = ["FusedResult", "FusedScorer", "KeptRows", "keeping_keys_values"]

#: Per attention layer (its ``layer_idx``): the keys and values (batch, kv heads, L, head dim) of the pass.
KeptKeysValues = dict[int, tuple[torch.Tensor, torch.Tensor]]


@contextmanager
def keeping_keys_values(model: Any) -> Iterator[KeptKeysValues]:
    """The keys and values every attention layer of ``model`` computes while the context is open
    (the last pass's, per layer), kept by a wrapper around the model's attention kernel."""
    implementation = ModelAdapter(model).attention
    registry = AttentionInterface._global_mapping
    original = cast(Optional[Callable[..., Any]], registry.get(implementation))
    kept: KeptKeysValues = {}

    def keep(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any,
             **kwargs: Any) -> Any:
        layer = getattr(module, "layer_idx", None)
        if layer is None:
            raise ReproError("model", f"its attention module {type(module).__name__} has no layer_idx, so the fused "
                             "path cannot tell its layers' keys and values apart; use objective_mode=shared")
        kept[layer] = (key, value)
        # "eager" is no registered kernel: each modeling file has its own eager_attention_forward.
        kernel: Callable[..., Any] = original or sys.modules[type(module).__module__].eager_attention_forward
        return kernel(module, query, key, value, *args, **kwargs)

    if implementation in ALL_ATTENTION_FUNCTIONS._local_mapping:
        raise ReproError("model", f"its attention kernel {implementation!r} is overridden locally; the fused path "
                         "keeps keys and values through transformers' registered kernels")
    AttentionInterface.register(implementation, keep)
    try:
        yield kept
    finally:
        if original is None:
            del registry[implementation]
        else:
            AttentionInterface.register(implementation, original)


@dataclass(frozen=True)
class KeptRows:
    """The rows of the pass whose keys and values were kept, as that pass laid them out.

    ``input_ids`` and ``position_ids``: each row's whole sequence (prompt + response, 1-D) and the
    positions the pass gave it (RoPE's); ``response_lengths``: its last tokens that are the
    response. ``packed``: the pass ran the rows one after another in one sequence (keys (1, heads,
    total, d), verl's remove-padding); otherwise one right-padded row each (keys (rows, heads, L, d)).
    """

    input_ids: Sequence[torch.Tensor]
    position_ids: Sequence[torch.Tensor]
    response_lengths: Sequence[int]
    packed: bool


class FusedResult(NamedTuple):
    """``cuts`` of every row (none for a row without an answer), ``j`` (N,) float64 in their
    layout, and the tokens of the probe call (its (rows, probes, answer) grid, padding counted)."""

    cuts: Cuts
    j: np.ndarray
    tokens: int


class FusedScorer:
    """J from kept keys and values (module docstring).

    Args:
        model: the causal LM of the pass, as the host holds it (plain, PEFT, FSDP1 or FSDP2).
        select: the cut selection (``CutSelector``: ``repro_core.select_cuts`` with its options bound).
        temperature: J's log-probabilities are those of ``logits / temperature``.
    """

    def __init__(self, model: Any, select: Any, *, temperature: float = 1.0) -> None:
        self.adapter = RootAdapter(model)
        self.select = select
        self.temperature = float(temperature)

    def score(
        self, kept: KeptKeysValues, rows: KeptRows, entropies: Sequence[torch.Tensor],
        answers: Sequence[AnswerIds | None],
    ) -> FusedResult:
        """Cut points and J of the rows with an answer; ``entropies[b]`` are row b's response
        entropies from the pass (one per response token, at the rollout temperature)."""
        lm = self.adapter
        scored = [b for b, answer in enumerate(answers) if answer is not None]
        for b in scored:
            if len(rows.input_ids[b]) <= int(rows.response_lengths[b]):
                raise ReproError("prompts", f"row {b} has no prompt token; J's first probe token is the last token "
                                 "before the response")
        chosen = self._cuts(rows, entropies, scored)
        everyone = [np.empty(0, np.int64)] * len(answers)
        for i, b in enumerate(scored):
            everyone[b] = chosen.row(i)
        cuts = Cuts.from_rows(everyone)
        if not scored:
            lm.step()
            return FusedResult(cuts, np.empty(0, np.float64), 1 if lm.sharded else 0)
        with lm.masking_kernel():
            chunk, cache = self._chunk(kept, rows, scored, chosen, [a for a in answers if a is not None])
            grid = len(scored) * int(np.diff(chosen.offsets).max()) * max(len(a.ids) for a in chunk.answers)
            # One call for every probe of the pass's rows: the budget is the whole grid.
            j = lm.probes(chunk, cache, chosen, grid, self.temperature)
        bad = np.flatnonzero(~np.isfinite(j))
        if bad.size:
            dtype = next(iter(kept.values()))[0].dtype
            raise ReproError("model", f"J is {j[bad[0]]} at {bad.size} of {j.size} cut points of the fused pass "
                             f"(attention implementation {lm.attention!r}, keys in {dtype})")
        return FusedResult(cuts, j.astype(np.float64, copy=False), grid)

    def _cuts(self, rows: KeptRows, entropies: Sequence[torch.Tensor], scored: list[int]) -> Cuts:
        """The cut points of the ``scored`` rows from their response tokens and entropies."""
        lengths = [int(rows.response_lengths[b]) for b in scored]
        width = max([1, *lengths])
        token_ids = np.zeros((len(scored), width), dtype=np.int64)
        entropy = np.zeros((len(scored), width), dtype=np.float32)
        for i, (b, length) in enumerate(zip(scored, lengths, strict=True)):
            if length:
                token_ids[i, :length] = rows.input_ids[b][-length:].cpu().numpy()
                entropy[i, :length] = entropies[b].float().cpu().numpy()
        mask = np.arange(width) < np.asarray(lengths, dtype=np.int64)[:, None]
        return self.select(token_ids, mask, entropy) if scored else Cuts.from_rows([])

    def _chunk(
        self, kept: KeptKeysValues, rows: KeptRows, scored: list[int], cuts: Cuts, answers: list[AnswerIds]
    ) -> tuple[Chunk, DynamicCache]:
        """The scored rows' tokens, positions and kept keys and values in the [left-padded prompt |
        completion] layout, each completion up to its last cut point."""
        if not kept:
            raise ReproError("model", "no attention layer ran through transformers' AttentionInterface during the "
                             "pass, so there are no keys and values to score J against")
        device = next(iter(kept.values()))[0].device
        prompts = [len(rows.input_ids[b]) - int(rows.response_lengths[b]) for b in scored]
        kept_completion = [int(row.max(initial=0)) for row in cuts.rows()]
        prompt_width, width = max(prompts), max(prompts) + max(kept_completion)
        column = torch.arange(width)
        # Row i's token t sits at column prompt_width - prompt_i + t, for t < prompt_i + kept_i.
        shift = torch.tensor([prompt_width - p for p in prompts])
        token = column[None, :] - shift[:, None]
        valid = (token >= 0) & (token < torch.tensor(prompts)[:, None] + torch.tensor(kept_completion)[:, None])
        token = token.clamp(min=0) * valid
        input_ids = torch.stack([_gather(rows.input_ids[b].cpu(), token[i]) for i, b in enumerate(scored)])
        position_ids = torch.stack([_gather(rows.position_ids[b].cpu(), token[i]) for i, b in enumerate(scored)])
        if rows.packed:  # where each row starts in the pass's one sequence
            starts = np.cumsum([0, *(len(ids) for ids in rows.input_ids)])[:-1]
            source = (torch.tensor([int(starts[b]) for b in scored])[:, None] + token).to(device)
        else:
            source = token.to(device)
        batch = torch.tensor([0 if rows.packed else b for b in scored], device=device)[:, None]
        cache = DynamicCache()
        for layer in sorted(kept):
            keys, values = kept[layer]
            # (rows, width, heads, d) by advanced indexing, then the cache's (rows, heads, width, d).
            cache.update(keys[batch, :, source].transpose(1, 2), values[batch, :, source].transpose(1, 2), layer)
        chunk = Chunk(
            rows=list(range(len(scored))),
            input_ids=(input_ids * valid).to(device),
            attention_mask=valid.long().to(device),
            position_ids=(position_ids * valid).to(device),
            prompt_width=prompt_width,
            completion_lengths=torch.tensor([int(rows.response_lengths[b]) for b in scored], device=device),
            answers=answers,
        )
        return chunk, cache


def _gather(row: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return row.reshape(-1)[index] if row.numel() else torch.zeros_like(index)


class RootAdapter(ModelAdapter):
    """``ModelAdapter`` whose probe calls go through the model's root module, head included, so
    that an FSDP1 or FSDP2 policy gathers its root's parameters (embeddings, final norm, head) as
    in its own forward; J's head runs in float32 on the scored positions only."""

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        # FSDP1 too: each forward of its units gathers their shards from every rank.
        self.sharded = self.sharded or any(isinstance(module, FullyShardedDataParallel)
                                           for module in self.model.modules())

    def probe_log_probs(
        self, input_ids: torch.Tensor, masks: Any, position_ids: torch.Tensor, cache: DynamicCache,
        scored: torch.Tensor, targets: torch.Tensor, temperature: float,
    ) -> torch.Tensor:
        columns = scored.any(0).nonzero()[:, 0]
        found: list[torch.Tensor] = []

        def score(head: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            # Inside the root's forward the head's weights are gathered: J's log-probabilities here,
            # in float32 (autocast off), and the head's own product over nothing.
            hidden = args[0]
            self._head_weights = (cast(torch.Tensor, head.weight), cast(Optional[torch.Tensor], head.bias))
            try:
                with torch.autocast(hidden.device.type, enabled=False):
                    found.append(self.log_probs(hidden[scored[:, columns]], targets, temperature))
            finally:
                self._head_weights = None
            return (hidden[:, :0], *args[1:])

        handle = self.head.register_forward_pre_hook(score)
        try:
            self.model(input_ids=input_ids, attention_mask=masks, position_ids=position_ids, past_key_values=cache,
                       use_cache=True, logits_to_keep=columns)
        finally:
            handle.remove()
        return found[0]

    def step(self) -> None:
        """A sharded policy's one root call where there is nothing to score (module docstring)."""
        if self.sharded:
            token = torch.zeros((1, 1), dtype=torch.long, device=self.device)
            self.model(input_ids=token, use_cache=False, logits_to_keep=1)
