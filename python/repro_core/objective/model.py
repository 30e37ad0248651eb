"""The adapter around a ``transformers`` causal LM: what J and the entropies need of the model.

Its decoder and output head (with the logit transforms some architectures apply), the prefix pass
over padded chunks, the probes of the shared-prefix path against that pass's KV cache
(docs/method.md, "Shared-prefix J"), and the per-cut oracle.

A policy sharded with FSDP2 (``fully_shard``, as verl's fsdp2 engine and accelerate build it) is
scored rank by rank: the root's own parameters and the output head are gathered once per call, and
each decoder call gathers its layers, so every rank must make the same number of decoder calls
(``pad_decoder_calls``). Its passes run on its mesh's device, wherever its parameters rest (a CPU
offload policy keeps them on the CPU between calls).

No pass has a query row that sees nothing (``masks.py``), and J's output head and log-softmax run
in float32 whatever the model's dtype (docs/semantics.md, "bf16").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor
from transformers import DynamicCache

from .._api import Cuts
from ..errors import ReproError
from .answers import AnswerIds
from .masks import MASKABLE_ATTENTION, Masks
from .rows import Chunk, Rows

__all__ = ["LOGIT_CHUNK_ELEMENTS", "ModelAdapter"]

#: Most logits (tokens x vocab) materialised at once, in float32: 256 MiB per buffer.
LOGIT_CHUNK_ELEMENTS = 1 << 26


class ModelAdapter:
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
        self.masks = Masks.of(config, self.attention)
        #: The dtype the last pass computed in (its hidden states), for the finiteness errors.
        self.compute_dtype: torch.dtype | None = None
        self.vocab_size = self.causal_lm.get_input_embeddings().num_embeddings
        # The logits' width from the head's declaration, never a parameter's shape: ZeRO-3 leaves
        # its parameters empty outside their modules' forward.
        self.logit_width: int = getattr(self.head, "out_features", None) or config.vocab_size
        #: FSDP2 shards (``fully_shard``): each rank scores its own rows, the decoder calls in step.
        self.sharded = any(isinstance(module, FSDPModule) for module in self.causal_lm.modules())
        self._head_weights: tuple[torch.Tensor, torch.Tensor | None] | None = None

    @property
    def device(self) -> torch.device:
        """Where the passes run: a sharded policy's mesh device, else its parameters' device."""
        parameter = next(self.model.parameters())
        if not isinstance(parameter, DTensor):
            return parameter.device
        # As fully_shard places the unsharded parameters: the mesh's type, this rank's device.
        kind = parameter.device_mesh.device_type
        if kind == "cpu":
            return torch.device("cpu")
        return torch.device(kind, torch.get_device_module(kind).current_device())

    def refuse_shared(self) -> None:
        """The shared path masks every attention layer of the probes; refuse a model it cannot."""
        if self.masks.unmaskable_layers:
            raise ReproError("mode", f"'shared' cannot mask the model's {', '.join(self.masks.unmaskable_layers)} "
                             "layers; use mode='per_cut'")

    @contextmanager
    def inference(self, *, shared: bool) -> Iterator[ModelAdapter]:
        """Eval mode and no grad for the call; every module's own training flag is restored.

        ``shared``: the probes' 4-D masks will be used, so the model must take them (a flash
        attention kernel is swapped for SDPA during the call).
        """
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            with torch.no_grad(), self.masking_kernel() if shared else nullcontext(), self._gathered():
                yield self
        finally:
            for module, training in modes:
                module.training = training

    @contextmanager
    def masking_kernel(self) -> Iterator[None]:
        """An attention kernel that takes the probes' 4-D masks for the call: a flash-attention
        model runs SDPA, then goes back (flash kernels take no arbitrary 4-D mask)."""
        self.refuse_shared()
        if self.attention in MASKABLE_ATTENTION:
            yield
            return
        restore_attention = self.attention
        self.causal_lm.set_attn_implementation("sdpa")
        self.attention = "sdpa"
        self.masks = Masks(self.attention, self.masks.layer_types, self.masks.window)
        try:
            yield
        finally:
            self.causal_lm.set_attn_implementation(restore_attention)
            self.attention = restore_attention
            self.masks = Masks(self.attention, self.masks.layer_types, self.masks.window)

    @contextmanager
    def _gathered(self) -> Iterator[None]:
        """For an FSDP2 policy: the root's own parameters (final norm, tied embeddings) and the
        output head unsharded for the call. The decoder calls bypass the root's forward, which
        would gather them, and the head then runs without its hooks, so that the number of
        logit chunks (data-dependent) costs no collective: only decoder calls do."""
        if not self.sharded:
            yield
            return
        # The root is the outermost wrapper: a PEFT model (verl's lora_rank) holds the final norm.
        outer = self.model.module if isinstance(self.model, torch.nn.parallel.DistributedDataParallel) else self.model
        peft = outer.base_model if hasattr(outer, "get_base_model") else None
        chain = dict.fromkeys(module for module in (outer, peft, self.causal_lm, self.head) if module is not None)
        gathered = [module for module in chain if isinstance(module, FSDPModule)]
        for module in gathered:
            module.unshard()
        self._head_weights = (self.head.weight, self.head.bias)
        try:
            yield
        finally:
            self._head_weights = None
            for module in gathered:
                module.reshard()

    def most_over_ranks(self, count: int) -> int:
        """The largest ``count`` over the ranks of a sharded policy (``count`` itself otherwise)."""
        if not self.sharded or not dist.is_initialized():
            return count
        most = torch.tensor([count], dtype=torch.int64, device=self.device)
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        return int(most.item())

    def pad_decoder_calls(self, planned: int) -> None:
        """Make this rank's next decoder calls as many as the rank with the most (``planned`` its
        own): the difference runs first, as one-token calls. Every rank of a sharded policy calls
        this at the same points, since each decoder call gathers the layers' shards from all ranks."""
        token = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        for _ in range(self.most_over_ranks(planned) - planned):
            self.decoder(input_ids=token, use_cache=False)

    def logits(self, hidden: torch.Tensor, *, float32_head: bool = False) -> torch.Tensor:
        """float32 logits of a (n, d) slice of hidden states, as the model's own forward makes them.

        ``float32_head``: the head's product in float32 from the model-dtype hidden states and
        weights, instead of rounded to the model's dtype (J's; docs/semantics.md, "bf16")."""
        weight, bias = self._head_weights or (self.head.weight, self.head.bias)
        if float32_head and hidden.dtype != torch.float32:
            logits = torch.nn.functional.linear(hidden.float(), weight.float(), None if bias is None else bias.float())
        elif self._head_weights is None:
            logits = self.head(hidden)
        else:  # the gathered head of a sharded policy, without its FSDP hooks (_gathered)
            logits = torch.nn.functional.linear(hidden, *self._head_weights)
        logits = logits.float()
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def token_chunks(self, count: int) -> Iterator[slice]:
        step = max(1, LOGIT_CHUNK_ELEMENTS // self.logit_width)
        for start in range(0, count, step):
            yield slice(start, min(start + step, count))

    def prefix(self, chunk: Chunk) -> torch.Tensor:
        """Final hidden states (b, P + T, d) of the chunk's rows."""
        return self._decode(chunk, use_cache=False).last_hidden_state

    def prefix_with_cache(self, chunk: Chunk) -> tuple[torch.Tensor, DynamicCache]:
        """Final hidden states (b, P + T, d) and the KV cache the probes run against."""
        # A cache of full layers: sliding-window layers would drop the keys that early probes see.
        out = self._decode(chunk, use_cache=True, cache=DynamicCache())
        return out.last_hidden_state, out.past_key_values

    def _decode(self, chunk: Chunk, *, use_cache: bool, cache: DynamicCache | None = None) -> Any:
        return self._forward(chunk.input_ids, chunk.attention_mask, chunk.position_ids, use_cache=use_cache,
                             cache=cache)

    def _forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, *,
        use_cache: bool = False, cache: DynamicCache | None = None,
    ) -> Any:
        """The decoder over left-padded rows, with a mask that leaves no query row fully masked."""
        out = self.decoder(
            input_ids=input_ids,
            attention_mask=self.masks.padded(attention_mask, position_ids, self.embedding_dtype),
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=use_cache,
        )
        self.compute_dtype = out.last_hidden_state.dtype
        return out

    @property
    def embedding_dtype(self) -> torch.dtype:
        """The dtype of an eager pass's additive masks (the embeddings'; added to the scores)."""
        return self.decoder.get_input_embeddings().weight.dtype

    def entropies(self, chunk: Chunk, hidden: torch.Tensor, temperature: float) -> np.ndarray:
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
                "model", f"non-finite entropy {result[row, position]} at row {chunk.rows[row]}, position {position} "
                "(its logits overflow or are NaN)"
            )
        return result

    def probes(
        self, chunk: Chunk, cache: DynamicCache, cuts: Cuts, budget: int, temperature: float = 1.0
    ) -> np.ndarray:
        """J (n,) at the cut points of the chunk's rows (``cuts``, one row per ``chunk.rows``, in
        its layout), every probe of the chunk scored against the prefix cache; log-probabilities of
        ``logits / temperature``."""
        device = chunk.input_ids.device
        rows, cache_width = len(chunk.rows), chunk.input_ids.shape[1]
        answer_len = torch.tensor([len(a.ids) for a in chunk.answers], device=device)
        # The averaged tokens of row i's probe: offsets [averaged_from[i], averaged_to[i]).
        averaged_from = torch.tensor([a.start for a in chunk.answers], device=device)
        averaged_to = torch.tensor([a.stop for a in chunk.answers], device=device)
        width = int(answer_len.max())
        answers = torch.zeros((rows, width), dtype=torch.long, device=device)
        for i, a in enumerate(chunk.answers):
            answers[i, : len(a.ids)] = torch.tensor(a.ids, device=device)
        per_row = np.diff(cuts.offsets)
        most = int(per_row.max(initial=0))
        cut_pos = torch.zeros((rows, most), dtype=torch.long, device=device)
        has_cut = torch.from_numpy(np.arange(most) < per_row[:, None]).to(device)
        cut_pos[has_cut] = torch.tensor(cuts.positions, dtype=torch.long, device=device)
        # The last prefix token of the probe at cut p: column P + p - 1 (the last prompt token at p = 0).
        last = chunk.prompt_width - 1 + cut_pos
        offsets_in_probe = torch.arange(width, device=device)
        totals = torch.zeros((rows, most), dtype=torch.float64, device=device)
        for probes in self.probe_calls(chunk, cuts, budget):
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
            # An eager kernel adds the mask to scores in the cache's (the hidden states') dtype.
            masks = self.masks.build(allowed, position_ids, key_positions, cast(Any, cache.layers[0]).keys.dtype)
            averaged = (offsets_in_probe >= averaged_from[:, None]) & (offsets_in_probe < averaged_to[:, None])
            scored = has_cut[:, probes, None] & averaged[:, None, :]
            targets = answers[:, None, :].expand(-1, count, -1)[scored]
            placed = torch.zeros(scored.shape, dtype=torch.float64, device=device)
            placed[scored] = self.probe_log_probs(
                input_ids.reshape(rows, -1), masks, position_ids, cache, scored.reshape(rows, -1), targets, temperature
            )
            cache.crop(cache_width)
            totals[:, probes] = placed.sum(-1)
        # Row-major order of the (row, probe) grid is the ``cuts`` layout.
        return (totals / (averaged_to - averaged_from)[:, None])[has_cut].cpu().numpy()

    def probe_log_probs(
        self, input_ids: torch.Tensor, masks: Any, position_ids: torch.Tensor, cache: DynamicCache,
        scored: torch.Tensor, targets: torch.Tensor, temperature: float,
    ) -> torch.Tensor:
        """One decoder call of probes (b, L) against ``cache``: the log-probabilities (n,) of
        ``targets`` after the ``scored`` (b, L) positions, in row-major order."""
        out = self.decoder(
            input_ids=input_ids, attention_mask=masks, position_ids=position_ids, past_key_values=cache, use_cache=True
        )
        return self.log_probs(out.last_hidden_state[scored], targets, temperature)

    @staticmethod
    def probe_calls(chunk: Chunk, cuts: Cuts, budget: int) -> list[slice]:
        """The probes of each decoder call of ``probes``: slices of the chunk's per-row cut
        points, as many per call as keep rows x probes x answer width within ``budget``."""
        most = int(np.diff(cuts.offsets).max(initial=0))
        width = max(len(a.ids) for a in chunk.answers)
        per_call = max(1, budget // (len(chunk.rows) * width))
        return [slice(first, min(first + per_call, most)) for first in range(0, most, per_call)]

    def log_probs(self, hidden: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
        """float64 log-probabilities (n,) of ``targets`` (n,) after hidden states (n, d), of
        ``logits / temperature``; J's, so with the head in float32."""
        logp = torch.empty(hidden.shape[0], dtype=torch.float64, device=hidden.device)
        for part in self.token_chunks(hidden.shape[0]):
            logits = self.logits(hidden[part], float32_head=True) / temperature
            logp[part] = (logits.gather(1, targets[part, None])[:, 0] - logits.logsumexp(-1)).double()
        return logp

    def per_cut(self, rows: Rows, cuts: Cuts, budget: int, temperature: float = 1.0) -> np.ndarray:
        """J (N,) in the ``cuts`` layout, with one sequence ``prompt + completion[:p] + answer`` per
        cut point (the oracle); log-probabilities of ``logits / temperature``. A model that cannot
        pad safely (``Masks.pads_safely``) gets one sequence per call."""
        sequences = [
            (rows.prompts[b] + rows.completions[b][:p], rows.answers[b])
            for b, p in zip(cuts.row_index().tolist(), cuts.positions.tolist(), strict=True)
        ]
        j = np.empty(len(sequences), dtype=np.float64)
        lengths = [len(prefix) + len(answer.ids) for prefix, answer in sequences]
        order = sorted(range(len(sequences)), key=lambda n: -lengths[n])
        start = 0
        while start < len(order):
            per_call = budget // lengths[order[start]] if self.masks.pads_safely else 1
            batch = order[start : start + max(1, per_call)]
            j[batch] = self._per_cut_batch([sequences[n] for n in batch], rows.device, temperature)
            start += len(batch)
        return j

    def _per_cut_batch(
        self, sequences: list[tuple[list[int], AnswerIds]], device: torch.device, temperature: float
    ) -> np.ndarray:
        width = max(len(prefix) + len(answer.ids) for prefix, answer in sequences)
        input_ids = torch.zeros((len(sequences), width), dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        # Left padding puts every answer at the end: (i, width - len(answer) + t) holds answer token t.
        scored = torch.zeros((len(sequences), width), dtype=torch.bool)
        for i, (prefix, answer) in enumerate(sequences):
            tokens = prefix + answer.ids
            input_ids[i, width - len(tokens) :] = torch.tensor(tokens)
            attention_mask[i, width - len(tokens) :] = 1
            begin = width - len(answer.ids)
            scored[i, begin + answer.start : begin + answer.stop] = True
        input_ids, attention_mask, scored = input_ids.to(device), attention_mask.to(device), scored.to(device)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        hidden = self._forward(input_ids, attention_mask, position_ids).last_hidden_state
        # Token t is predicted from column t - 1.
        logp = self.log_probs(hidden[:, :-1][scored[:, 1:]], input_ids[scored], temperature)
        placed = torch.zeros(scored.shape, dtype=torch.float64, device=device)
        placed[scored] = logp
        return (placed.sum(-1) / scored.sum(-1)).cpu().numpy()
