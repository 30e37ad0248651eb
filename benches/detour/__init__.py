"""A reasoning task with a known detour, and a language model trained from scratch to solve it: the
experiment of ``benches/replicate.py`` (does RePro cut reasoning that makes no progress?).

- ``task``: letter counting ("How many times does the letter r appear in s-t-r-a-w?"), solved one line per
  letter with the running count, with a tunable share of detour lines that restate the count and add
  nothing; the detours are recognisable from their text, so every completion is scored exactly for them.
  Also the evaluation's reward functions (strict and lenient accuracy, detours: weight 0, logged only) and
  the length-penalty arm's reward (TRL's ``get_soft_overlong_punishment``).
- ``lm``: a tokenizer built with ``tokenizers``, a ``LlamaForCausalLM`` from ``LlamaConfig`` and its warm
  start with TRL's ``SFTTrainer``, cached by its settings.
- ``mechanism``: before any RL, RePro's process rewards and J on the SFT model's own completions, detour
  paragraphs against progress paragraphs.
"""
