"""The surrogate objective J and per-token entropies on ``transformers`` causal LMs.

docs/method.md, "J, the surrogate objective" and "Shared-prefix J". Rows are ``prompt +
completion`` with the prompt left-padded and the completion right-padded, so completion position t
sits at column ``P + t`` of a chunk whose prompts are padded to width P; position ids come from the
attention mask, which makes every value independent of padding and of which rows share a chunk.

Two ways to get J (the answer's mean log-probability after ``prompt + completion[:p]``):

- ``"per_cut"``: one sequence ``prompt + completion[:p] + answer`` per cut point through the
  model's decoder and output head. The plain method, kept as the oracle.
- ``"shared"``: one pass over ``prompt + completion`` keeps the KV cache (the entropy pass, when
  both are wanted); then every probe of a row goes into one call against that cache. A probe is
  ``[last prefix token] + answer[:-1]`` with positions continuing the prefix, and a 4-D mask lets
  it see the cache up to its cut and its own earlier tokens, nothing else. Re-feeding the last
  prefix token (instead of keeping its hidden state) costs one token per probe and keeps the probe
  pass independent of the entropy pass.

Neither path materialises (B, T, vocab) logits: hidden states are gathered at the scored positions
and ``lm_head`` plus the softmax run on chunks of at most ``LOGIT_CHUNK_ELEMENTS`` logits. For J the
head's product is taken in float32 whatever the model's dtype (docs/semantics.md, "bf16"). No pass
has a query row that sees nothing, so that kernels which return NaN for such rows give J as others
do (``masks``).

Modules, each importing only those listed before it:

- ``answers``: ``AnswerTokens``, the scored answer text of each row, tokenized (``AnswerIds``: the
  teacher-forced tokens and the averaged ones);
- ``rows``: the rollouts as padded chunks of one forward call each, and the checks of token lists
  and cut points;
- ``masks``: the attention masks of the passes (a padding row sees its own column);
- ``model``: the adapter around a causal LM (decoder, output head, logits, the prefix pass, the
  probes, the per-cut oracle);
- ``scorer``: ``ObjectiveScorer``, the public calls, and ``Evaluation``;
- ``fused``: J from the keys and values of a pass the host runs anyway (verl's
  ``objective_mode=fused``), through ``model``'s probes; not imported here (it imports
  transformers' attention registry).
"""

from ..config import ObjectiveMode
from .answers import AnswerIds, AnswerTokens
from .model import LOGIT_CHUNK_ELEMENTS
from .scorer import CutSelector, Evaluation, ObjectiveScorer

__all__ = [
    "LOGIT_CHUNK_ELEMENTS", "AnswerIds", "AnswerTokens", "CutSelector", "Evaluation", "ObjectiveMode",
    "ObjectiveScorer",
]
