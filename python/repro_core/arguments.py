"""The command-line convention of ``repro train`` and ``repro score``, and the arguments they share.

Both commands parse dataclasses with TRL's ``TrlParser`` (an ``HfArgumentParser``):

- every flag has both spellings, ``--max_steps`` and ``--max-steps``;
- ``--config FILE.yaml`` reads the same names as keys; the command line wins over the file;
- the same thing has the same name in both: ``--model_name_or_path``, ``--dtype``, ``--dataset``,
  and RePro's settings as ``--repro_*`` (``repro_core.config.ReproArguments``);
- bad input is a ``ReproError`` naming the flag, also for the dataclasses' own checks (``repro_k`` ->
  ``--repro_k``); the ``repro`` command prints it as one line, exit status 2.

Importing this module imports neither torch nor TRL; ``CommandParser`` imports TRL when built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from .config import PRESETS, preset_flags
from .errors import ReproError

__all__ = ["COMMAND_ERROR", "ModelArguments", "PresetArguments", "make_parser", "parse", "read_config_key"]

#: The argument name of usage errors that no single flag owns (unknown flags, a bad --config file).
COMMAND_ERROR = "arguments"


@dataclass
class ModelArguments:
    """Which model (the policy of ``repro train``, the scorer of ``repro score``)."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Local checkpoint directory or Hugging Face Hub id of a causal LM with a chat template. "
            "Unset: the embedded SmolLM2-135M-Instruct (cached in $REPRO_CACHE, else ~/.cache/repro-core)."
        },
    )
    dtype: Literal["auto", "float32", "bfloat16"] = field(
        default="auto",
        metadata={
            "help": "dtype of the weights. auto = float32 (for repro train: the dtype in --model_init_kwargs if there "
            "is one): AdamW steps at learning rates like 1e-6 are far below bfloat16's resolution and would be lost; "
            "on CUDA, --bf16 (on by default there) still runs the forward and backward passes in bfloat16. "
            "bfloat16 halves the memory of weights (and optimizer state)."
        },
    )


@dataclass
class PresetArguments:
    """A named set of RePro settings; ``parse`` applies it before the file and the flags are read."""

    repro_preset: str | None = field(
        default=None,
        metadata={
            "help": "Named RePro settings applied under the --config file and the other flags, which win: authors "
            "(the reference code's arithmetic and run script, docs/semantics.md). Unset: the paper's.",
            "choices": list(PRESETS),
        },
    )


def make_parser(prog: str, dataclass_types: Sequence[type], *, description: str, defaults: dict[str, Any]) -> Any:
    """A ``TrlParser`` over ``dataclass_types`` whose usage errors are ReproErrors, with ``defaults``
    applied over the dataclasses' own (a ``--config`` file and the command line override both)."""
    try:
        from trl import TrlParser
    except ImportError as exc:
        raise ReproError(COMMAND_ERROR, f"{prog} needs the trl extra (pip install 'repro-core[trl]'): {exc}") from exc

    class CommandParser(TrlParser):
        # The usage line of ~250 flags is a screenful; errors say one line and go through ReproError.
        def error(self, message: str) -> NoReturn:
            raise ReproError(COMMAND_ERROR, f"{message} (see `{prog} --help`)")

    parsed_types: list[Any] = [*dataclass_types, PresetArguments]
    parser = CommandParser(
        parsed_types,
        prog=prog,
        usage=f"{prog} [--config FILE.yaml] [--FLAG VALUE ...]",
        description=description + " Flags can also come from a YAML file (--config FILE.yaml, keys as the flag names "
        "with underscores); flags on the command line win.",
    )
    parser.set_defaults_with_config(**defaults)
    return parser


def parse(parser: Any, argv: Sequence[str]) -> tuple[Any, ...]:
    """The dataclasses of ``argv`` (and of the ``--config`` YAML file it names), those ``make_parser``
    was given. Raises ReproError on bad input; ``--help`` exits (SystemExit 0) after printing the flags."""
    import yaml

    args = list(argv)
    prog = parser.prog
    if "--config" in args and args.index("--config") == len(args) - 1:
        raise ReproError("--config", "needs a YAML file path")
    preset = read_config_key(args, "repro_preset")
    if preset is not None:
        # As defaults: the --config file and the command line, read after, override them. Settings a
        # command does not have (repro score has no alpha) are left out.
        parser.set_defaults_with_config(**preset_flags(str(preset), "--repro_preset"))
    try:
        *outputs, unknown_keys, unknown_args = parser.parse_args_and_config(
            args, return_remaining_strings=True, separate_remaining_strings=True
        )
    except ReproError as error:  # a dataclass's own check names its field: the flag that set it
        dests = {action.dest for action in parser._actions}
        raise (error.renamed(f"--{error.argument}") if error.argument in dests else error) from error
    except (OSError, yaml.YAMLError) as exc:
        raise ReproError("--config", f"cannot read the file: {exc}") from exc
    except (ValueError, TypeError) as exc:  # the dataclasses' own validation, a YAML mapping expected
        raise ReproError(COMMAND_ERROR, str(exc).strip().replace("\n", " ")) from exc
    if unknown_args:
        raise ReproError(COMMAND_ERROR, f"unrecognized arguments: {' '.join(unknown_args)} (see `{prog} --help`)")
    if unknown_keys:
        keys = ", ".join(key[2:] for key in unknown_keys[::2])
        raise ReproError("--config", f"unknown keys in the file: {keys} (see `{prog} --help`)")
    return tuple(output for output in outputs if not isinstance(output, PresetArguments))


def read_config_key(argv: Sequence[str], key: str) -> Any:
    """The value of ``--key`` on the command line, else in the ``--config`` file, else None: for
    flags that decide which dataclasses the parser is built over (``repro train --algorithm``)."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg in (f"--{key}", f"--{key.replace('_', '-')}") and i + 1 < len(args):
            return args[i + 1]
        for spelling in (key, key.replace("_", "-")):
            if arg.startswith(f"--{spelling}="):
                return arg.split("=", 1)[1]
    if "--config" in args and args.index("--config") + 1 < len(args):
        import yaml

        path = args[args.index("--config") + 1]
        try:
            with open(path) as file:
                config = yaml.safe_load(file)
        except (OSError, yaml.YAMLError) as exc:
            raise ReproError("--config", f"cannot read the file: {exc}") from exc
        if not isinstance(config, dict):
            raise ReproError("--config", f"the file {path} must hold a YAML mapping")
        if key in config:
            return config[key]
    return None
