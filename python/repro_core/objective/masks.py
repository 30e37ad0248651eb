"""The attention masks of J's forward passes, none with a query row that sees nothing.

J's passes lay rows out left-padded (``rows.py``), and under a causal mask with padding a padding
position attends to no key at all. transformers leaves such rows fully masked in its own SDPA
masks on torch >= 2.5, and some CUDA SDPA kernels return NaN for them (pytorch#110213). The NaN
keys and values of those positions then reach every real row of the next layer through its zero
attention weights (0 x NaN is NaN), and J comes out NaN. Every mask built here lets each query see
at least its own column: a padding position computes finite values that no real row attends to.

The masks take the form the model's attention kernel takes: booleans for SDPA (as transformers'
own), additive float masks for eager attention. Flash-attention kernels take no 4-D mask; they get
the 2-D padding mask and drop the padding rows themselves (varlen).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["MASKABLE_ATTENTION", "MASKABLE_LAYERS", "Masks"]

#: Attention kernels that take the 4-D masks built here.
MASKABLE_ATTENTION = ("sdpa", "eager")
#: Layer types these masks describe; others (linear attention, state-space layers) take none.
MASKABLE_LAYERS = frozenset({"full_attention", "sliding_attention"})


@dataclass(frozen=True)
class Masks:
    """How one model takes J's masks: its attention kernel, its layer types, its sliding window."""

    attention: str
    layer_types: frozenset[str]
    window: int

    @classmethod
    def of(cls, config: Any, attention: str) -> Masks:
        """The masking of a text config; ``attention`` is the kernel in use."""
        # Sliding-window layers see only the last `window` positions; Mistral-style configs slide
        # in every layer without naming layer types.
        window = getattr(config, "sliding_window", None) or 0
        kinds = getattr(config, "layer_types", None) or ["sliding_attention" if window else "full_attention"]
        return cls(attention, frozenset(kinds), window)

    @property
    def unmaskable_layers(self) -> list[str]:
        return sorted(self.layer_types - MASKABLE_LAYERS)

    @property
    def takes_masks(self) -> bool:
        """Whether the model takes the 4-D masks built here."""
        return self.attention in MASKABLE_ATTENTION and not self.unmaskable_layers

    @property
    def pads_safely(self) -> bool:
        """Whether padded rows can share a forward without a fully masked query row: the masks
        here, or a flash kernel that drops padding rows. Any other model runs one row per call."""
        return self.takes_masks or (self.attention.startswith("flash_attention") and not self.unmaskable_layers)

    def padded(
        self, attention_mask: torch.Tensor, position_ids: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The ``attention_mask`` argument of a causal pass over left-padded rows (b, L): causal
        over the real keys, and each query sees its own column (module docstring). A kernel that
        takes no 4-D mask, or rows without padding, get the 2-D one as it is (the model's causal
        mask then has no empty row, and SDPA keeps its causal kernels)."""
        if not self.takes_masks or bool(attention_mask.all()):
            return attention_mask
        columns = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        causal = columns[None, :] <= columns[:, None]
        allowed = (causal & attention_mask.bool()[:, None, :]) | (columns[None, :] == columns[:, None])
        return self.build(allowed, position_ids, position_ids, dtype)

    def build(
        self, allowed: torch.Tensor, query_positions: torch.Tensor, key_positions: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """4-D masks from ``allowed`` (b, q, k), sliding windows applied by position: one tensor,
        or one per layer type (a model with several takes a mapping)."""
        masks = {}
        for kind in self.layer_types:
            kind_allowed = allowed
            if kind == "sliding_attention":
                kind_allowed = allowed & (key_positions[:, None, :] > query_positions[:, :, None] - self.window)
            masks[kind] = self._form(kind_allowed, dtype)
        return masks if len(masks) > 1 else next(iter(masks.values()))

    def _form(self, allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.attention == "sdpa":
            return allowed[:, None]
        # Eager attention adds its mask to the scores: 0 where allowed, the dtype's minimum elsewhere.
        mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]
