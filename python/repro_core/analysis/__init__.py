"""``repro score``: see where a model's reasoning helps and where it wanders (docs/score.md).

For every reasoning trace (a prompt, a completion and the gold answer) this computes, with the RePro pipeline on
a causal LM, J (the answer's mean log-probability) at every paragraph boundary of the thinking part, the
magnitude, stability and composite scores and the process reward of every paragraph (docs/method.md, "J, the
surrogate objective" and "Scores and process rewards"), and counts the paragraphs that open with a backtracking
cue ("Wait", "Alternatively", ...). Traces come from a JSONL/JSON file or a Hugging Face dataset
(``repro_core.data``), or are sampled from the model (``--generate N``) on the prompts of either or on
procedurally generated reasoning-gym problems (the default).

Outputs, in ``--output_dir``: ``scores.jsonl`` (one object per trace, appended as each is scored),
``j_curves.png``, ``rewards.png`` and a self-contained ``report.html`` (``repro_core.report``, drawn from the traces
scored however the run ends); a summary table is printed on the terminal. A row that cannot be scored is skipped
or stops the run (``--on_error``); docs/score.md, "What survives an interrupt or an error".

One concern per module: ``inputs`` (rows and traces), ``generation`` (prompt ids, sampling), ``records`` (the
scored records, backtracking cues), ``table`` (the terminal table), ``arguments`` (the flags and their parser),
``scoring`` (the scoring loop, ``scores.jsonl`` and the other outputs), ``command`` (``run``, ``main``).
``main(argv)`` is the command (``repro score ...`` or ``python -m repro_core.analysis ...``); ``score_traces``
is the same analysis as a function. Importing this package imports nothing heavy: torch, transformers,
datasets, TRL and matplotlib are imported when they are needed.
"""

from __future__ import annotations

from ..behaviour import DEFAULT_CUES, backtrack_pattern
from .arguments import OUTPUT_FILES, make_parser, parse_arguments
from .command import main, run
from .generation import generate, prompt_ids
from .inputs import DEFAULT_INPUT, Row, Trace, load_rows
from .records import score_traces
from .table import print_table

__all__ = [
    "DEFAULT_CUES",
    "DEFAULT_INPUT",
    "OUTPUT_FILES",
    "Row",
    "Trace",
    "backtrack_pattern",
    "generate",
    "load_rows",
    "main",
    "make_parser",
    "parse_arguments",
    "print_table",
    "prompt_ids",
    "run",
    "score_traces",
]
