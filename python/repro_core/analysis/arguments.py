"""The flags of ``repro score``: its argument dataclasses, one ``--help`` group each, and its parser.

The parser follows the package's command-line convention (``repro_core.arguments``): flags have both spellings
(``--repro_k``, ``--repro-k``) and can come from a YAML file (``--config FILE.yaml``); the model is
``--model_name_or_path`` / ``--dtype`` (``ModelArguments``, shared with ``repro train``), the data flags are
``repro train``'s (``--dataset``, ``--dataset_size``, ...) and RePro's settings its ``--repro_*`` flags
(``repro_core.config.ReproArguments``), limited to those scoring uses. An argument that is neither a flag nor a
flag's value is the dataset, before the flags or among them (``repro score traces.jsonl``, ``repro score
--model_name_or_path M traces.jsonl``). Bad input is a ReproError naming the flag (``flag_of``).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..arguments import ModelArguments
from ..behaviour import DEFAULT_CUES
from ..config import ReproArguments
from ..errors import ReproError
from ..report import DEFAULT_COLOR_MAX, check_color_max
from .inputs import DEFAULT_INPUT, DEFAULT_PROBLEMS

__all__ = [
    "OUTPUT_FILES",
    "SCORING_SETTINGS",
    "CommandArguments",
    "DataArguments",
    "DeviceArguments",
    "GenerationArguments",
    "ReportArguments",
    "ReproScoreArguments",
    "flag_of",
    "make_parser",
    "parse_arguments",
]

PROG = "repro score"
OUTPUT_FILES = ("scores.jsonl", "j_curves.png", "rewards.png", "report.html")
#: Completions sampled per problem of a reasoning-gym dataset (which has none to read) unless --generate says.
DEFAULT_SAMPLES = 2


def _at_least(flag: str, value: int | None, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ReproError(flag, f"expected an integer >= {minimum}, got {value!r}")


@dataclass
class DataArguments:
    """The traces, or the prompts to sample them for; the names are ``repro train``'s."""

    _argument_group_name = "data"

    dataset: str = field(
        default=DEFAULT_INPUT,
        metadata={"help": "A JSONL/JSON file, a Hugging Face dataset id or directory, or reasoning-gym:TASK "
                  f"(which implies --generate {DEFAULT_SAMPLES}). Also INPUT, an argument that is no flag: "
                  "repro score FILE."},
    )
    dataset_size: int | None = field(
        default=None,
        metadata={"help": f"Use the first N rows (reasoning-gym: generate N problems, unset: {DEFAULT_PROBLEMS})."},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration (subset) of a Hugging Face dataset, e.g. main for openai/gsm8k."}
    )
    dataset_seed: int = field(default=0, metadata={"help": "Seed of the reasoning-gym generator."})
    task_config: str | None = field(
        default=None,
        metadata={"help": "reasoning-gym task options as a JSON object (a mapping in the YAML file), e.g. "
                  "'{\"min_terms\": 2, \"max_terms\": 3}'."},
    )
    split: str = field(default="train", metadata={"help": "Split of a Hugging Face dataset."})
    prompt_column: str | None = field(
        default=None, metadata={"help": "Prompt column: text or chat messages. Unset: prompt, else question."}
    )
    completion_column: str = field(
        default="completion", metadata={"help": "Completion column: text or chat messages (read unless --generate)."}
    )
    answer_column: str = field(
        default="answer",
        metadata={"help": "Gold answer column; GSM8K's '... #### 42' gives 42, a solution its last \\boxed{}."},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "System message of text prompts when sampling (--generate). Unset: repro_core.data's "
                  "default, as in repro train; '' for none."},
    )
    on_error: Literal["skip", "stop"] = field(
        default="skip",
        metadata={"help": "A row that cannot be scored (text the tokenizer rejects, a trace longer than the model's "
                  "context under --long_traces refuse, a failing model pass): skip reports it and goes on; stop "
                  "ends the run with exit status 2. Either way the traces scored are kept."},
    )
    long_traces: Literal["refuse", "truncate"] = field(
        default="refuse",
        metadata={"help": "A trace (prompt, completion and answer) longer than the model's context "
                  "(max_position_embeddings): refuse makes the row an error (--on_error); truncate scores the "
                  "completion's first tokens that fit, with a warning, and marks it truncated."},
    )

    def __post_init__(self) -> None:
        _at_least("--dataset_size", self.dataset_size, 1)


@dataclass
class GenerationArguments:
    """Sampling completions with the model (``--generate N``) instead of reading them."""

    _argument_group_name = "generation"

    generate: int | None = field(
        default=None,
        metadata={"help": "Sample N completions per prompt instead of reading completions "
                  f"(unset: {DEFAULT_SAMPLES} for reasoning-gym datasets, else 0)."},
    )
    max_new_tokens: int = field(default=256, metadata={"help": "Tokens per sample."})
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature; also that of the entropies, which only --repro_k uses."}
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (1.0: off)."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampling."})

    def __post_init__(self) -> None:
        _at_least("--generate", self.generate, 0)
        _at_least("--max_new_tokens", self.max_new_tokens, 1)
        if not 0 < self.top_p <= 1:
            raise ReproError("--top_p", f"expected a number in (0, 1], got {self.top_p}")


@dataclass
class DeviceArguments:
    """Where and in what batches the model runs."""

    _argument_group_name = "device"

    device: str | None = field(default=None, metadata={"help": "Torch device. Unset: cuda when available, else cpu."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call and traces per scoring call."})

    def __post_init__(self) -> None:
        _at_least("--batch_size", self.batch_size, 1)


@dataclass
class ReportArguments:
    """The outputs and the backtracking count."""

    _argument_group_name = "report"

    output_dir: str = field(
        default="repro-score",
        metadata={"help": f"Where {', '.join(OUTPUT_FILES)} go (created; files in it are overwritten).",
                  "aliases": ["-o"]},
    )
    table_rows: int = field(default=30, metadata={"help": "Traces listed in the terminal table before the means."})
    backtrack_cues: str = field(
        default=",".join(DEFAULT_CUES),
        metadata={"help": "Comma-separated paragraph openings counted as backtracking."},
    )
    color_max: float = field(
        default=DEFAULT_COLOR_MAX,
        metadata={"help": "The |process reward| that gets the full colour in report.html: one fixed scale, the same "
                  "in every report so that two reports compare (stronger rewards are clipped)."},
    )

    def __post_init__(self) -> None:
        _at_least("--table_rows", self.table_rows, 0)
        try:
            self.color_max = check_color_max(self.color_max)
        except ReproError as error:
            raise error.renamed("--color_max") from None

    def cues(self) -> list[str]:
        return [cue.strip() for cue in self.backtrack_cues.split(",") if cue.strip()]


#: The RePro settings scoring uses; the others (alpha, gamma, estimator) shape advantages, which it has none of.
SCORING_SETTINGS = ("k", "w", "stability_ema", "delimiters", "think_end", "answer_template", "j_tokens",
                    "answer_special_tokens", "j_at_rollout_temperature", "objective_mode", "max_batch_tokens")


def _repro_score_fields() -> list[tuple[str, Any, Any]]:
    types = typing.get_type_hints(ReproArguments)
    wanted = {f"repro_{name}" for name in SCORING_SETTINGS}
    specs: list[tuple[str, Any, Any]] = []
    for source in dataclasses.fields(ReproArguments):
        if source.name not in wanted:
            continue
        if source.name == "repro_k":
            help_ = ("Cut points: only the k highest-entropy paragraph breaks, as in training. Unset: every "
                     "paragraph boundary, so J is measured after each paragraph; repro train's unset k is "
                     f"{source.default}, so --repro_k {source.default} scores where training cuts. 0 keeps no break "
                     "(J at the start and the end only), not every boundary.")
            specs.append(("repro_k", int | None, field(default=None, metadata={"help": help_})))
        else:
            specs.append((source.name, types[source.name],
                          field(default=source.default, metadata=dict(source.metadata))))
    return specs


#: ``ReproArguments`` restricted to ``SCORING_SETTINGS`` (the same defaults and help), ``repro_k`` unset meaning
#: every paragraph boundary.
ReproScoreArguments = dataclasses.make_dataclass(
    "ReproScoreArguments",
    _repro_score_fields(),
    namespace={"_argument_group_name": "RePro", "repro_config": ReproArguments.repro_config,
               "__doc__": "RePro's settings that scoring uses, as repro train's --repro_* flags."},
)
ReproScoreArguments.__module__ = __name__


@dataclass(frozen=True)
class CommandArguments:
    """The parsed arguments of ``repro score``, one dataclass per group."""

    model: ModelArguments
    data: DataArguments
    generation: GenerationArguments
    device: DeviceArguments
    repro: Any  # a ReproScoreArguments
    report: ReportArguments


_GROUPS = (ModelArguments, DataArguments, GenerationArguments, DeviceArguments, ReproScoreArguments, ReportArguments)
_FLAGS = {f.name for group in _GROUPS for f in dataclasses.fields(group)}
# The parser's name of the positional INPUT, which sets --dataset.
_INPUT = "input"
# What errors from the layers below call a setting -> the flag that sets it.
_ALIASES = {"name_or_path": "model_name_or_path", "prompt": "prompt_column",
            **{name: f"repro_{name}" for name in SCORING_SETTINGS}}


def flag_of(argument: str) -> str:
    """The ``--flag`` of a ReproError's argument when a flag sets it (``repro_k``, ``k`` -> ``--repro_k``)."""
    name = _ALIASES.get(argument, argument)
    return f"--{name}" if name in _FLAGS else argument


def make_parser(prog: str = PROG) -> Any:
    """The command's ``TrlParser`` (``repro_core.arguments.make_parser``) over its argument dataclasses."""
    from ..arguments import make_parser as make_command_parser

    parser = make_command_parser(
        prog, _GROUPS, defaults={},
        description="Score reasoning traces with RePro: J at every paragraph boundary, magnitude, stability, process "
        "rewards and backtracking, with plots and an HTML report (docs/score.md).",
    )
    parser.usage = f"{prog} [INPUT] [--config FILE.yaml] [--FLAG VALUE ...]"
    # argparse places a positional among the flags as its users expect: after --model_name_or_path M as well.
    parser.add_argument(_INPUT, nargs="?", default=argparse.SUPPRESS, metavar="INPUT",
                        help="The dataset, as --dataset; before the flags or among them.")
    return parser


def parse_arguments(argv: Sequence[str], prog: str = PROG) -> CommandArguments:
    """The arguments of ``argv``; an argument that is neither a flag nor a flag's value is the dataset
    (``--dataset``), wherever it stands."""
    from ..arguments import parse

    parsed = parse(make_parser(prog), argv)
    rest = [group for group in parsed if isinstance(group, argparse.Namespace)]  # HfArgumentParser's: INPUT
    given = getattr(rest[0], _INPUT) if rest else None
    arguments = CommandArguments(*(group for group in parsed if not isinstance(group, argparse.Namespace)))
    if given is None:
        return arguments
    if any(arg == "--dataset" or arg.startswith("--dataset=") for arg in argv):
        raise ReproError("--dataset", f"given twice: as the input argument ({given}) and as --dataset")
    return dataclasses.replace(arguments, data=dataclasses.replace(arguments.data, dataset=given))
