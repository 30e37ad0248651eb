"""``repro score``: see where a model's reasoning helps and where it wanders (docs/score.md).

For every reasoning trace (a prompt, a completion and the gold answer) this computes, with the RePro pipeline on
a causal LM, J (the answer's mean log-probability) at every paragraph boundary of the thinking part, the
magnitude, stability and composite scores and the process reward of every paragraph (REPRO.md sections 1-3),
and counts the paragraphs that open with a backtracking cue ("Wait", "Alternatively", ...). Traces come from a
JSONL/JSON file, a Hugging Face dataset, or are sampled from the model (``--generate N``) on the prompts of
either or on procedurally generated reasoning-gym problems (the default).

Outputs, in ``--output-dir``: ``scores.jsonl`` (one object per trace), ``j_curves.png``, ``rewards.png`` and a
self-contained ``report.html`` (``repro_core.report``); a summary table is printed on the terminal.

``main(argv)`` is the command (``repro score ...`` or ``python -m repro_core.analysis ...``); bad input ends it
with one ``repro: error: ...`` line on stderr and exit status 2. ``score_traces`` is the same analysis as a
function. Importing this module imports nothing heavy: torch, transformers, datasets and matplotlib are imported
when they are needed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import ReproError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from .pipeline import ReproScorer

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
    "print_table",
    "prompt_ids",
    "run",
    "score_traces",
]

#: What ``repro score`` analyses when no input is named: sampled answers to procedural arithmetic problems.
DEFAULT_INPUT = "reasoning-gym:basic_arithmetic"
#: The input prefix that selects a procedurally generated reasoning-gym task (as in ``repro train``).
REASONING_GYM_PREFIX = "reasoning-gym:"
#: Problems generated for a reasoning-gym input, and samples drawn per problem, unless --limit / --generate say.
DEFAULT_PROBLEMS = 4
DEFAULT_SAMPLES = 2
#: Paragraph openings counted as backtracking (case-insensitive, as a whole word, after any markdown markers).
DEFAULT_CUES = (
    "Wait",
    "But wait",
    "Alternatively",
    "Hmm",
    "Hold on",
    "Actually",
    "On second thought",
    "Let me re-check",
    "Let me recheck",
    "Let me double-check",
    "Let me check again",
    "Let me reconsider",
)
OUTPUT_FILES = ("scores.jsonl", "j_curves.png", "rewards.png", "report.html")
# k larger than any number of paragraph breaks: select_cuts then keeps every candidate, so the cut points are
# exactly the paragraph boundaries.
_ALL_PARAGRAPHS = 10**9
_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Row:
    """One input row: the prompt as given (text or chat messages), the gold answer, the completion if any."""

    prompt: str | list[dict[str, Any]]
    answer: str
    completion: str | None


@dataclass(frozen=True)
class Trace:
    """One completion to score: its problem (row) and sample index, the prompt used, token ids and texts."""

    problem: int
    sample: int
    prompt: str | list[dict[str, Any]]
    prompt_ids: list[int]
    completion_ids: list[int]
    completion: str
    answer: str


# ------------------------------------------------------------------------------------------------ input


def load_rows(
    source: str,
    *,
    split: str = "train",
    subset: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    prompt_column: str | None = None,
    completion_column: str | None = "completion",
    answer_column: str = "answer",
) -> list[Row]:
    """Rows of a JSONL/JSON file, a Hugging Face dataset (id or local directory) or ``reasoning-gym:TASK``.

    ``prompt_column`` None takes ``prompt``, else ``question``. ``completion_column`` None reads no completions
    (they are to be generated). The answer keeps what follows a final ``####`` (GSM8K) or the content of its last
    ``\\boxed{}``. Raises ReproError naming the file, row or column at fault.
    """
    table = _read_table(source, split=split, subset=subset, limit=limit, seed=seed)
    if not table:
        raise ReproError("input", f"{source} has no rows")
    first = table[0]
    if prompt_column is None:
        prompt_column = next((c for c in ("prompt", "question") if c in first), None)
        if prompt_column is None:
            raise ReproError("--prompt-column", f"{source} has neither a 'prompt' nor a 'question' column "
                             f"(columns: {_columns(first)}); name the prompt column with --prompt-column")
    wanted = [("--prompt-column", prompt_column), ("--answer-column", answer_column)]
    if completion_column is not None:
        wanted.append(("--completion-column", completion_column))
    for flag, column in wanted:
        if column not in first:
            hint = "; pass --generate N to sample completions with the model" if flag == "--completion-column" else ""
            raise ReproError(flag, f"{source} has no column {column!r} (columns: {_columns(first)}){hint}")
    rows = []
    for index, item in enumerate(table):
        for flag, column in wanted:
            if column not in item:
                raise ReproError(flag, f"row {index} of {source} has no column {column!r}")
        completion = None if completion_column is None else _text(item[completion_column], f"row {index}: completion")
        rows.append(Row(_prompt(item[prompt_column], index), _gold(item[answer_column], index), completion))
    return rows


def _read_table(source: str, *, split: str, subset: str | None, limit: int | None, seed: int) -> list[dict[str, Any]]:
    if source.startswith(REASONING_GYM_PREFIX):
        from .data import reasoning_gym_dataset

        task = source[len(REASONING_GYM_PREFIX) :]
        return list(reasoning_gym_dataset(task, size=limit or DEFAULT_PROBLEMS, seed=seed).to_list())
    if os.path.isfile(source):
        return _read_json(Path(source))[:limit]
    if source.endswith((".jsonl", ".json")):
        raise ReproError("input", f"no such file: {source}")
    return _read_hub(source, split=split, subset=subset, limit=limit)


def _read_json(path: Path) -> list[dict[str, Any]]:
    """A JSON list of objects, or one JSON object per line (blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReproError("input", f"cannot read {path}: {error}") from None
    if not text.strip():
        raise ReproError("input", f"{path} is empty")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise ReproError("input", f"{path} is not valid JSON: {error}") from None
        numbered = list(enumerate(items, start=1))
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    numbered.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    raise ReproError("input", f"{path} line {number} is not valid JSON: {error}") from None
    for number, item in numbered:
        if not isinstance(item, dict):
            raise ReproError("input", f"{path} item {number} is {type(item).__name__}, expected a JSON object")
    return [item for _, item in numbered]


def _read_hub(name: str, *, split: str, subset: str | None, limit: int | None) -> list[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_dataset(name, subset, split=split)
    except Exception as error:  # datasets raises many types: not found, offline, bad split, bad files
        raise ReproError("input", f"cannot load dataset {name!r} (split {split!r}): {type(error).__name__}: "
                         f"{error}") from None
    if not isinstance(loaded, datasets.Dataset):
        raise ReproError("input", f"{name!r} did not load as one split; name it with --split")
    if limit is not None:
        loaded = loaded.select(range(min(limit, len(loaded))))
    return list(loaded.to_list())


def _columns(item: dict[str, Any]) -> str:
    return ", ".join(map(str, item)) or "none"


def _prompt(value: Any, index: int) -> str | list[dict[str, Any]]:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return value
    raise ReproError(f"row {index}: prompt is {_describe(value)}, expected text or a list of chat messages")


def _text(value: Any, what: str) -> str:
    """A completion: text, or the assistant messages of a conversational completion joined by newlines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n".join(str(m.get("content", "")) for m in value if m.get("role", "assistant") == "assistant")
    raise ReproError(f"{what} is {_describe(value)}, expected text or a list of chat messages")


def _gold(value: Any, index: int) -> str:
    from .rewards import last_boxed

    text = "" if value is None or isinstance(value, (list, dict)) else str(value).strip()
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    text = last_boxed(text) or text
    if not text:
        raise ReproError(f"row {index}: answer is {_describe(value)}, expected the gold answer as text or a number")
    return text


def _describe(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "empty"
    return type(value).__name__


# ------------------------------------------------------------------------------------------------ model side


def prompt_ids(tokenizer: Any, prompt: str | list[dict[str, Any]], index: int = 0) -> list[int]:
    """Token ids of a prompt: through the chat template (with the generation prompt) when the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        try:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as error:  # jinja2 template errors (unsupported roles, ...)
            raise ReproError(f"row {index}: the chat template rejects the prompt: {error}") from None
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        text = prompt if isinstance(prompt, str) else "\n\n".join(str(m["content"]) for m in prompt)
        ids = tokenizer(text)["input_ids"]
    if not ids:
        raise ReproError(f"row {index}: the prompt tokenizes to no tokens")
    return list(ids)


def _instruct(prompt: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A plain question as ``repro train`` asks it (system prompt, step-by-step and \\boxed{} instruction)."""
    if not isinstance(prompt, str):
        return prompt
    from .data import DEFAULT_SYSTEM_PROMPT, INSTRUCTION

    return [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": f"{prompt.strip()}\n\n{INSTRUCTION}"}]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    samples: int,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    progress: Progress | None = None,
) -> list[list[int]]:
    """``samples`` completions per prompt (prompt-major order), sampled without top-k, stopped at end of sequence.

    Prompts are left-padded; the returned ids stop before the first eos or pad token.
    """
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = model.generation_config.eos_token_id
    stops = {pad, tokenizer.eos_token_id} | set(eos if isinstance(eos, list) else [eos])
    stops.discard(None)
    task = progress.add_task("generating", total=len(prompts) * samples) if progress is not None else None
    completions = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        output = model.generate(
            input_ids=ids.to(model.device), attention_mask=mask.to(model.device), do_sample=True,
            temperature=temperature, top_p=top_p, top_k=0, max_new_tokens=max_new_tokens,
            num_return_sequences=samples, pad_token_id=pad,
        )
        for new in output[:, width:].tolist():
            end = next((i for i, token in enumerate(new) if token in stops), len(new))
            completions.append(new[:end])
        if progress is not None and task is not None:
            progress.advance(task, len(batch) * samples)
    return completions


def backtrack_pattern(cues: Sequence[str]) -> re.Pattern[str] | None:
    """A regex matching a paragraph that opens with one of ``cues``; None for no cues.

    Case-insensitive; the cue must end at a word boundary ("Wait," and "wait" count, "Waiting" does not); leading
    whitespace and markdown markers (``*``, ``_``, ``#``, ``>``, ``-``) are skipped.
    """
    if not cues:
        return None
    alternatives = "|".join(re.escape(cue) for cue in sorted(cues, key=len, reverse=True))
    return re.compile(rf"^[\s*_#>\-]*({alternatives})(?![\w])", re.IGNORECASE)


def score_traces(
    scorer: ReproScorer,
    traces: Sequence[Trace],
    *,
    cues: Sequence[str] = DEFAULT_CUES,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Score every trace with ``scorer`` (build it with ``ReproConfig(k=...)`` as large as the paragraphs for J at
    every paragraph boundary) and return one record per trace: the objects of ``scores.jsonl`` (docs/score.md).
    """
    import numpy as np

    from . import segment_paragraphs
    from .rewards import boxed_accuracy, last_boxed

    tokenizer = scorer.objective.tokenizer
    pattern = backtrack_pattern(cues)
    task = progress.add_task("scoring", total=len(traces)) if progress is not None else None
    records: list[dict[str, Any]] = []
    for start in range(0, len(traces), batch_size):
        batch = traces[start : start + batch_size]
        evaluation, steps = scorer.evaluate([t.prompt_ids for t in batch], [t.completion_ids for t in batch],
                                            [t.answer for t in batch])
        cuts = evaluation.cuts
        segments = segment_paragraphs(evaluation.token_ids, evaluation.mask, delimiters=scorer.delimiters,
                                      think_end_id=scorer.think_end_id)
        for row, trace in enumerate(batch):
            points = slice(int(cuts.offsets[row]), int(cuts.offsets[row + 1]))
            positions = cuts.positions[points].tolist()
            ids = trace.completion_ids
            end = int(cuts.ends[row])
            paragraphs = []
            for i in range(int(segments.offsets[row]), int(segments.offsets[row + 1])):
                first, last = int(segments.starts[i]), int(segments.ends[i])
                text = tokenizer.decode(ids[first:last])
                match = pattern.match(text) if pattern is not None else None
                paragraphs.append({
                    "start": first,
                    "end": last,
                    "text": text,
                    "cue": match.group(1) if match else None,
                    # The step whose span [p_{j-1}, p_j) holds the paragraph: j = its index when every break is cut.
                    "step": int(np.searchsorted(positions, first, side="right")),
                })
            j = evaluation.j[points].tolist()
            rewards = steps.reward[points].tolist()
            records.append({
                "id": start + row,
                "problem": trace.problem,
                "sample": trace.sample,
                "prompt": trace.prompt,
                "answer": trace.answer,
                "completion": trace.completion,
                "predicted": last_boxed(trace.completion),
                "correct": None,  # graded below, in one call for all traces
                "tokens": len(ids),
                "thinking_tokens": end,
                "num_paragraphs": len(paragraphs),
                "backtracks": sum(p["cue"] is not None for p in paragraphs),
                "j_baseline": j[0],
                "j_end": j[-1],
                "mean_reward": float(np.mean(rewards[1:])) if len(rewards) > 1 else None,
                "cut_points": positions,
                "j": j,
                "magnitude": steps.magnitude[points].tolist(),
                "stability": steps.stability[points].tolist(),
                "score": steps.score[points].tolist(),
                "reward": rewards,
                "paragraphs": paragraphs,
                "tail": tokenizer.decode(ids[end:]),
            })
        if progress is not None and task is not None:
            progress.advance(task, len(batch))
    graded = boxed_accuracy([t.completion for t in traces], [t.answer for t in traces])
    for record, grade in zip(records, graded, strict=True):
        record["correct"] = None if grade is None else grade == 1.0
    return records


# ------------------------------------------------------------------------------------------------ command


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are ReproErrors, so they end as one ``repro: error:`` line like the rest."""

    def error(self, message: str) -> NoReturn:
        raise ReproError(message)


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def make_parser(prog: str = "repro score") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Score reasoning traces with RePro: J at every paragraph boundary, magnitude, stability, "
        "process rewards and backtracking, with plots and an HTML report (docs/score.md).",
    )
    source = parser.add_argument_group("input")
    source.add_argument("input", nargs="?", default=DEFAULT_INPUT, metavar="INPUT",
                        help="a JSONL/JSON file, a Hugging Face dataset id or directory, or reasoning-gym:TASK "
                        f"(default {DEFAULT_INPUT}, which implies --generate {DEFAULT_SAMPLES})")
    source.add_argument("--split", default="train", help="dataset split (default train)")
    source.add_argument("--subset", help="dataset configuration (e.g. main for openai/gsm8k)")
    source.add_argument("--limit", type=_count(1), metavar="N",
                        help=f"use the first N rows (reasoning-gym: generate N problems, default {DEFAULT_PROBLEMS})")
    source.add_argument("--prompt-column", metavar="NAME",
                        help="prompt column: text or chat messages (default prompt, else question)")
    source.add_argument("--completion-column", default="completion", metavar="NAME",
                        help="completion column: text or chat messages (default completion)")
    source.add_argument("--answer-column", default="answer", metavar="NAME",
                        help="gold answer column (default answer)")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--generate", type=_count(0), metavar="N",
                     help="sample N completions per prompt with the model instead of reading completions "
                     f"(default: {DEFAULT_SAMPLES} for reasoning-gym inputs, else 0)")
    gen.add_argument("--max-new-tokens", type=_count(1), default=256, metavar="N",
                     help="tokens per sample (default 256)")
    gen.add_argument("--temperature", type=float, default=1.0,
                     help="sampling temperature, also used for the entropies (default 1.0)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (default 1.0: off)")
    gen.add_argument("--seed", type=int, default=0, help="seed of sampling and of reasoning-gym problems (default 0)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="NAME_OR_PATH",
                       help="local checkpoint or Hub id (default: the embedded SmolLM2-135M-Instruct)")
    model.add_argument("--dtype", choices=_DTYPES, default="float32", help="weights dtype (default float32)")
    model.add_argument("--device", help="torch device (default cuda when available, else cpu)")
    model.add_argument("--batch-size", type=_count(1), default=8, metavar="N",
                       help="prompts per generate call and traces per scoring call (default 8)")
    model.add_argument("--max-batch-tokens", type=_count(1), default=16384, metavar="N",
                       help="token budget of one forward pass while scoring (default 16384)")
    repro = parser.add_argument_group("RePro")
    cuts = repro.add_mutually_exclusive_group()
    cuts.add_argument("--all-paragraphs", action="store_true",
                      help="every paragraph boundary is a cut point (the default; excludes --k)")
    cuts.add_argument("--k", type=_count(0),
                      help="only the k highest-entropy paragraph breaks are cut points, as in training")
    repro.add_argument("--w", type=float, default=0.1, help="weight of stability in the score (default 0.1)")
    repro.add_argument("--stability-ema", type=float, metavar="BETA",
                       help="EMA factor smoothing J for the stability score (default: none)")
    repro.add_argument("--delimiters", choices=("paper", "line", "reference"), default="paper",
                       help="paragraph breaks: paper (a blank line, default), line (every newline), reference")
    repro.add_argument("--think-end", default="</think>", metavar="TOKEN",
                       help="end-of-thinking token; text after it is not scored (default </think>, if one token)")
    repro.add_argument("--answer-template", default="\\boxed{{{answer}}}", metavar="TEMPLATE",
                       help="str.format template of the scored answer text (default \\boxed{{{answer}}})")
    repro.add_argument("--backtrack-cues", default=",".join(DEFAULT_CUES), metavar="CUES",
                       help="comma-separated paragraph openings counted as backtracking (default: %(default)s)")
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", "-o", default="repro-score", metavar="DIR",
                     help="where the outputs go (default repro-score)")
    out.add_argument("--table-rows", type=_count(0), default=30, metavar="N",
                     help="traces listed in the terminal table before the group means (default 30)")
    return parser


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Loading weights" progress bar from transformers while the model loads: ours is the only one."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def run(args: argparse.Namespace) -> int:
    """The command behind ``main`` once the arguments are parsed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .assets import DEFAULT_MODEL
    from .pipeline import ReproConfig, ReproScorer
    from .report import plot_j_curves, plot_rewards, write_html

    started = time.monotonic()
    procedural = args.input.startswith(REASONING_GYM_PREFIX)  # no completions to read: sample some
    samples = (DEFAULT_SAMPLES if procedural else 0) if args.generate is None else args.generate
    if not 0 < args.temperature < float("inf"):
        raise ReproError("--temperature", f"expected a number > 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ReproError("--top-p", f"expected a number in (0, 1], got {args.top_p}")
    config = ReproConfig(
        k=_ALL_PARAGRAPHS if args.k is None else args.k, w=args.w, stability_ema=args.stability_ema,
        delimiters=args.delimiters, think_end=args.think_end, answer_template=args.answer_template,
        temperature=args.temperature, max_batch_tokens=args.max_batch_tokens,
    )
    cues = [cue.strip() for cue in args.backtrack_cues.split(",") if cue.strip()]
    output = Path(args.output_dir)
    if output.exists() and not output.is_dir():
        raise ReproError("--output-dir", f"{output} exists and is not a directory")

    rows = load_rows(args.input, split=args.split, subset=args.subset, limit=args.limit, seed=args.seed,
                     prompt_column=args.prompt_column, answer_column=args.answer_column,
                     completion_column=None if samples else args.completion_column)
    model, tokenizer, device = _load_model(args)
    scorer = ReproScorer(model, tokenizer, config)
    prompts = [_instruct(row.prompt) if samples else row.prompt for row in rows]
    ids = [prompt_ids(tokenizer, prompt, index) for index, prompt in enumerate(prompts)]
    errors = Console(stderr=True)
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=errors) as progress:
        if samples:
            import torch

            torch.manual_seed(args.seed)
            completions = generate(model, tokenizer, ids, samples, max_new_tokens=args.max_new_tokens,
                                   temperature=args.temperature, top_p=args.top_p, batch_size=args.batch_size,
                                   progress=progress)
            traces = [Trace(i // samples, i % samples, prompts[i // samples], ids[i // samples], completion,
                            tokenizer.decode(completion), rows[i // samples].answer)
                      for i, completion in enumerate(completions)]
        else:
            traces = _given_traces(rows, ids, tokenizer)
        records = score_traces(scorer, traces, cues=cues, batch_size=args.batch_size, progress=progress)

    try:
        output.mkdir(parents=True, exist_ok=True)
        with open(output / "scores.jsonl", "w", encoding="utf-8") as file:
            for record in records:
                file.write(json.dumps(record, ensure_ascii=False) + "\n")
        plot_j_curves(records, output / "j_curves.png")
        plot_rewards(records, output / "rewards.png")
        settings: dict[str, Any] = {
            "model": args.model or f"{DEFAULT_MODEL} (embedded)",
            "input": args.input,
            "traces": len(records),
            "cut points": "every paragraph boundary" if args.k is None else f"top-{args.k} breaks",
            "w": args.w,
            "delimiters": args.delimiters,
        }
        if samples:
            settings |= {"samples": samples, "temperature": args.temperature, "max new tokens": args.max_new_tokens}
        write_html(records, output / "report.html", images=[output / "j_curves.png", output / "rewards.png"],
                   settings=settings)
    except OSError as error:
        raise ReproError("--output-dir", f"cannot write to {output}: {error}") from None
    console = Console()
    print_table(records, console, max_rows=args.table_rows)
    console.print(f"{len(records)} traces scored on {device} in {time.monotonic() - started:.0f} s; wrote "
                  f"{', '.join(OUTPUT_FILES)} to {output}/", highlight=False)
    return 0


def _load_model(args: argparse.Namespace) -> tuple[Any, Any, str]:
    import torch

    from .assets import load_default_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(device)
    except RuntimeError as error:
        raise ReproError("--device", f"{error}") from None
    with _quiet_transformers():
        model, tokenizer = load_default_model(args.model, dtype=getattr(torch, args.dtype), device=device)
    return model, tokenizer, device


def _given_traces(rows: Sequence[Row], ids: Sequence[list[int]], tokenizer: Any) -> list[Trace]:
    """Traces of the completions read from the input; rows with the same prompt are samples of one problem."""
    problems: dict[str, int] = {}
    samples: dict[int, int] = {}
    traces = []
    for index, (row, prompt) in enumerate(zip(rows, ids, strict=True)):
        problem = problems.setdefault(json.dumps(row.prompt, sort_keys=True), index)
        sample = samples[problem] = samples.get(problem, -1) + 1
        completion = row.completion or ""
        traces.append(Trace(problem, sample, row.prompt, prompt,
                            list(tokenizer(completion, add_special_tokens=False)["input_ids"]), completion,
                            row.answer))
    return traces


def print_table(records: Sequence[dict[str, Any]], console: Console, *, max_rows: int = 30) -> None:
    """The terminal summary: one row per trace (the first ``max_rows``), then the means by outcome."""
    from rich import box
    from rich.table import Table

    from .report import summarize

    def number(value: float | None, digits: int = 3, sign: bool = False) -> str:
        if value is None or math.isnan(value):
            return "–"
        return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"

    table = Table(title="RePro scores", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in ("trace", "correct", "tokens", "paras", "backtracks", "J_b", "J_end", "mean r"):
        table.add_column(name, justify="left" if name in ("trace", "correct") else "right", no_wrap=True)
    marks = {True: "[green]yes[/]", False: "[red]no[/]", None: "–"}
    for record in records[:max_rows]:
        table.add_row(str(record["id"]), marks[record["correct"]], str(record["tokens"]),
                      str(record["num_paragraphs"]), str(record["backtracks"]), number(record["j_baseline"]),
                      number(record["j_end"]), number(record["mean_reward"], 3, True))
    if len(records) > max_rows:
        table.add_row(f"… {len(records) - max_rows} more", *[""] * 7)
    table.add_section()
    for summary in summarize(records):
        accuracy = "–" if summary.accuracy is None else f"{summary.correct}/{summary.graded}"
        table.add_row(f"{summary.label} ({summary.count})", accuracy, number(summary.tokens, 1),
                      number(summary.paragraphs, 1), number(summary.backtracks, 2), number(summary.j_baseline),
                      number(summary.j_end), number(summary.mean_reward, 3, True), style="bold")
    table.caption = "bold rows: means over the correct, incorrect and all traces"
    table.caption_justify = "left"
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """``repro score``: returns the exit status; bad input prints one ``repro: error:`` line and returns 2."""
    try:
        args = make_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        return run(args)
    except ReproError as error:
        message = " ".join(str(error).split())  # one line, whatever the message held
        print(f"repro: error: {message}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print("repro: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
