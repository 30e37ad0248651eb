"""The command-line convention of ``repro train`` and ``repro score``, and the arguments they share.

Both commands parse dataclasses with transformers' ``HfArgumentParser`` plus this module's
``--config`` handling (so ``repro score`` needs neither TRL nor accelerate):

- every flag has both spellings, ``--max_steps`` and ``--max-steps``; ``none`` (or ``null``) unsets
  an optional number (``--repro_stability_ema none``);
- ``--config FILE.yaml`` reads the same names as keys (an ``env:`` mapping in it sets environment
  variables, as in TRL's scripts); the command line wins over the file, the file over a
  ``--repro_preset``, the preset over the command's defaults; a key that is no flag is an error
  (with the nearest flag names), and a value from the file is converted and checked exactly as the
  same value on the command line (``false`` is false for every boolean, choices are enforced);
  YAML aliases are refused (an alias bomb would expand without bound);
- flags are never abbreviated (``--max-step`` is an error that suggests ``--max-steps``), and a
  misspelt flag gets the nearest names; a number flag must be finite (``nan`` and ``inf`` are refused);
- the same thing has the same name in both: ``--model_name_or_path``, ``--dtype``, ``--dataset``,
  and RePro's settings as ``--repro_*`` (``repro_core.config.ReproArguments``), listed in ``--help``
  in a group of their own;
- bad input is a ``ReproError`` naming the flag, also for the dataclasses' own checks (``repro_k`` ->
  ``--repro_k``); the ``repro`` command prints it as one line, exit status 2.

Importing this module imports neither torch nor transformers; ``make_parser`` imports transformers.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import functools
import math
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from .config import PRESETS, preset_flags
from .errors import ReproError

__all__ = [
    "COMMAND_ERROR",
    "REPRO_GROUP",
    "ModelArguments",
    "PresetArguments",
    "make_parser",
    "parse",
    "read_config_key",
]

#: The argument name of usage errors that no single flag owns (unknown flags, a bad value's type).
COMMAND_ERROR = "arguments"
#: The ``--help`` group of every ``--repro_*`` flag, whichever dataclass declares it.
REPRO_GROUP = "RePro"
CONFIG_FLAG = "--config"


@dataclass
class ModelArguments:
    """Which model (the policy of ``repro train``, the scorer of ``repro score``)."""

    _argument_group_name = "model"

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Local checkpoint directory or Hugging Face Hub id of a causal LM with a chat template. "
            "Unset: the embedded SmolLM2-135M-Instruct (cached in $REPRO_CACHE, else ~/.cache/repro-core)."
        },
    )
    dtype: Literal["float32", "bfloat16", "float16", "auto"] | None = field(
        default=None,
        metadata={
            "help": "dtype of the weights. Unset: float32 (for repro train: the dtype in --model_init_kwargs if there "
            "is one), because AdamW steps at learning rates like 1e-6 are far below bfloat16's resolution and would "
            "be lost; on CUDA, --bf16 (on by default there) still runs the forward and backward passes in bfloat16. "
            "auto: the checkpoint's own dtype (its config.json), as in transformers. bfloat16 and float16 halve the "
            "memory of weights (and optimizer state)."
        },
    )

    def torch_dtype(self) -> Any:
        """``dtype`` as a torch dtype (``auto``: the checkpoint's, read from its config; float32 if it names
        none). Raises ReproError naming ``--model_name_or_path`` if the checkpoint's config cannot be read."""
        import torch

        if self.dtype is None:
            return torch.float32
        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        from transformers import AutoConfig

        from .assets import default_model_path

        try:
            config = AutoConfig.from_pretrained(self.model_name_or_path or default_model_path())
        except (OSError, ValueError) as exc:
            message = str(exc).strip().splitlines()[0]
            raise ReproError("--model_name_or_path", f"cannot read the config for --dtype auto: {message}") from exc
        dtype = getattr(config, "dtype", None)
        return getattr(torch, dtype) if isinstance(dtype, str) else dtype or torch.float32


@dataclass
class PresetArguments:
    """A named set of RePro settings; ``parse`` applies it before the file and the flags are read."""

    _argument_group_name = REPRO_GROUP

    repro_preset: str | None = field(
        default=None,
        metadata={
            "help": "Named RePro settings applied under the --config file and the other flags, which win: authors "
            "(the reference code's arithmetic and run script, docs/semantics.md). Unset: the paper's.",
            "choices": list(PRESETS),
        },
    )


def make_parser(
    prog: str,
    dataclass_types: Sequence[type],
    *,
    description: str,
    defaults: dict[str, Any],
    group_titles: Mapping[type, str] | None = None,
    field_groups: Mapping[str, str] | None = None,
) -> Any:
    """A parser over ``dataclass_types`` (and ``PresetArguments``) whose usage errors are ReproErrors,
    with ``defaults`` applied over the dataclasses' own (a ``--config`` file and the command line
    override both). In ``--help`` each dataclass is a group titled ``group_titles[type]``, else its
    ``_argument_group_name``, else its name; every ``repro_*`` flag is in the ``RePro`` group and the
    fields named in ``field_groups`` in the group it names, both listed before the dataclass's own."""
    parser = _command_parser_class()(
        [*dataclass_types, PresetArguments],
        group_titles=group_titles or {},
        field_groups=field_groups or {},
        prog=prog,
        allow_abbrev=False,  # an abbreviation silently means the flag it happens to prefix
        usage=f"{prog} [--config FILE.yaml] [--FLAG VALUE ...]",
        description=description + " Flags can also come from a YAML file (--config FILE.yaml, keys as the flag names "
        "with underscores); flags on the command line win.",
    )
    _set_defaults(parser, defaults, source="the command's defaults")
    return parser


@functools.cache
def _command_parser_class() -> type:
    """``CommandParser``, defined on first use so that importing this module does not import transformers."""
    from transformers import HfArgumentParser

    class CommandParser(HfArgumentParser):
        """``HfArgumentParser`` with one-line usage errors, RePro's flags in their own group and ``none``
        for unset optional numbers (as TRL's parser reads them)."""

        def __init__(self, dataclass_types: list[Any], *, group_titles: Mapping[type, str],
                     field_groups: Mapping[str, str], **kwargs: Any) -> None:
            self.group_titles = dict(group_titles)
            self.field_groups = dict(field_groups)
            self.groups: dict[str, Any] = {}
            super().__init__(dataclass_types, **kwargs)

        # The usage line of ~250 flags is a screenful; errors say one line and go through ReproError.
        def error(self, message: str) -> NoReturn:
            raise ReproError(COMMAND_ERROR, f"{message} (see `{self.prog} --help`)")

        def group(self, title: str) -> Any:
            if title not in self.groups:
                self.groups[title] = self.add_argument_group(title)
            return self.groups[title]

        def _add_dataclass_arguments(self, dtype: type) -> None:
            title = self.group_titles.get(dtype) or str(getattr(dtype, "_argument_group_name", dtype.__name__))
            type_hints = typing.get_type_hints(dtype)
            fields = [f for f in dataclasses.fields(dtype) if f.init]
            titles: dict[str, str] = {
                f.name: REPRO_GROUP if f.name.startswith("repro_") else self.field_groups.get(f.name, title)
                for f in fields
            }
            for group_title in sorted(dict.fromkeys(titles.values()), key=lambda name: name == title):
                self.group(group_title)  # the special groups first: listed before the rest of the dataclass's flags
            for source in fields:
                dataclass_field = copy.copy(source)  # HfArgumentParser rewrites the field's type
                dataclass_field.type = type_hints[source.name]
                group = self.group(titles[source.name])
                self._parse_dataclass_field(group, dataclass_field)
                union = typing.get_args(type_hints[source.name])
                action = next(action for action in group._group_actions if action.dest == source.name)
                if action.type is float:
                    action.type = _finite_float
                if (type(None) in union and bool not in union and action.type not in (None, str)
                        and action.choices is None and action.nargs is None):
                    action.type = _accept_none(action.type)

    return CommandParser


def _finite_float(text: str) -> float:
    """``float(text)``, refusing NaN and infinities: no setting of a training run means them, and a NaN
    weight decay or learning rate trains a model of NaN weights without a word."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


_finite_float.__name__ = "float"  # argparse names the type in its errors


def _accept_none(convert: Any) -> Any:
    """``convert`` that also reads ``none`` / ``null`` (any case) as None, for ``X | None`` flags."""

    def parse_value(text: str) -> Any:
        return None if text.lower() in ("none", "null") else convert(text)

    parse_value.__name__ = getattr(convert, "__name__", "value")  # argparse names the type in its errors
    return parse_value


def parse(parser: Any, argv: Sequence[str]) -> tuple[Any, ...]:
    """The dataclasses of ``argv`` (and of the ``--config`` YAML file it names), those ``make_parser``
    was given. Raises ReproError on bad input; ``--help`` exits (SystemExit 0) after printing the flags."""
    args, config_path = _split_config_flag(argv)
    config = _read_config(config_path) if config_path is not None else {}
    preset = _command_line_value(args, "repro_preset")
    preset = config.get("repro_preset") if preset is None else preset
    if preset is not None:
        # As defaults: the --config file and the command line, read after, override them. Settings a
        # command does not have (repro score has no alpha) are left out.
        known = _flag_names(parser)
        _set_defaults(parser, {name: value for name, value in preset_flags(str(preset), "--repro_preset").items()
                               if name in known}, source=f"--repro_preset {preset}")
    environment = config.pop("env", {})
    if not isinstance(environment, dict):
        raise ReproError(CONFIG_FLAG, f"env in {config_path} must be a mapping of environment variables")
    _set_defaults(parser, config, source="the file")
    os.environ.update({str(key): str(value) for key, value in environment.items()})
    try:
        *outputs, unknown_args = parser.parse_args_into_dataclasses(args, return_remaining_strings=True)
    except ReproError as error:  # a dataclass's own check names its field: the flag that set it
        dests = {action.dest for action in parser._actions}
        raise (error.renamed(f"--{error.argument}") if error.argument in dests else error) from error
    except (ValueError, TypeError) as exc:  # the dataclasses' own validation
        raise ReproError(COMMAND_ERROR, str(exc).strip().replace("\n", " ")) from exc
    if unknown_args:
        unrecognized = " ".join(unknown_args)
        flags = [arg.split("=", 1)[0] for arg in unknown_args if arg.startswith("-")]
        hint = _nearest(flags, list(_flag_names(parser)))
        raise ReproError(COMMAND_ERROR, f"unrecognized arguments: {unrecognized}{hint} (see `{parser.prog} --help`)")
    return tuple(output for output in outputs if not isinstance(output, PresetArguments))


def read_config_key(argv: Sequence[str], key: str) -> Any:
    """The value of ``--key`` on the command line, else in the ``--config`` file, else None: for
    flags that decide which dataclasses the parser is built over (``repro train --algorithm``)."""
    args, config_path = _split_config_flag(argv)
    value = _command_line_value(args, key)
    if value is None and config_path is not None:
        value = _read_config(config_path).get(key)
    return value


def _split_config_flag(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """``argv`` without ``--config FILE`` (or ``--config=FILE``), and FILE (the last one given)."""
    args: list[str] = []
    path = None
    remaining = iter(argv)
    for arg in remaining:
        if arg == CONFIG_FLAG:
            path = next(remaining, None)
            if path is None or path.startswith("--"):
                raise ReproError(CONFIG_FLAG, "needs a YAML file path")
        elif arg.startswith(CONFIG_FLAG + "="):
            path = arg.split("=", 1)[1]
        else:
            args.append(arg)
    return args, path


def _command_line_value(args: Sequence[str], key: str) -> str | None:
    """The value given to ``--key`` (either spelling, ``--key VALUE`` or ``--key=VALUE``) in ``args``, else None."""
    spellings = {f"--{key}", f"--{key.replace('_', '-')}"}
    for i, arg in enumerate(args):
        if arg in spellings and i + 1 < len(args):
            return args[i + 1]
        name, equals, value = arg.partition("=")
        if equals and name in spellings:
            return value
    return None


def _read_config(path: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path``; a ReproError naming ``--config`` if it cannot be read."""
    import yaml

    try:
        with open(path, encoding="utf-8") as file:
            config = yaml.load(file, Loader=_loader_without_aliases())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ReproError(CONFIG_FLAG, f"cannot read the file: {exc}".replace("\n", " ")) from exc
    if not isinstance(config, dict):
        raise ReproError(CONFIG_FLAG, f"the file {path} must hold a YAML mapping")
    return config


@functools.cache
def _loader_without_aliases() -> type:
    """PyYAML's safe loader refusing aliases: a few lines of nested aliases (a "billion laughs") expand
    to more values than memory holds, and a file of flags has no use for them."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"YAML aliases (*name) are not supported, found one at line {mark.line + 1}")
            return super().compose_node(parent, index)

    return Loader


def _set_defaults(parser: Any, values: Mapping[str, Any], *, source: str) -> None:
    """Make ``values`` (from ``source``: a file, a preset) the defaults of the flags of those names, no
    longer required. Each value goes through its flag's own conversion and checks, as on the command
    line; every action of a flag gets it, so that a boolean's ``--no_X`` twin cannot keep the old default.
    A key that is no flag, or a value its flag refuses, is a ReproError naming ``--config``."""
    actions: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        actions.setdefault(action.dest, []).append(action)
    by_option = _flag_names(parser)
    unknown = [str(name) for name in values if str(name) not in by_option]
    if unknown:
        hint = _nearest(unknown, list(by_option))
        raise ReproError(CONFIG_FLAG, f"unknown keys in {source}: {', '.join(unknown)}{hint} "
                         f"(see `{parser.prog} --help`)")
    for name, value in values.items():
        dest = by_option[str(name)]
        primary = actions[dest][0]
        value = _converted(parser, primary, value, f"{name} in {source}")
        for action in actions[dest]:
            action.default = value
            action.required = False


def _flag_names(parser: Any) -> dict[str, str]:
    """Each flag's name as a file key (``max_steps`` for ``--max-steps``, aliases included) -> its
    destination. A boolean's ``--no_X`` twin is left out: ``X: false`` says it."""
    first: dict[str, argparse.Action] = {}
    for action in parser._actions:
        first.setdefault(action.dest, action)
    return {option[2:].replace("-", "_"): dest for dest, action in first.items() if dest != "help"
            for option in action.option_strings if option.startswith("--")}


def _converted(parser: argparse.ArgumentParser, action: argparse.Action, value: Any, where: str) -> Any:
    """``value`` as the parser would read it from the command line for ``action``: a boolean ``false``
    is ``--flag false``, a number is its text, a list gives one value per item (for list flags). None
    (YAML ``null``) unsets the flag. A mapping or a list for a one-value flag is kept as it is (as JSON
    on the command line): the dataclass reads it."""
    if value is None:
        return None
    if isinstance(value, bool):
        texts = ["true" if value else "false"]
    elif isinstance(value, (list, tuple)) and action.nargs in ("+", "*"):
        texts = ["true" if item is True else "false" if item is False else str(item) for item in value]
    elif isinstance(value, (str, int, float)):
        texts = [str(value)]
    else:
        if action.choices is not None and value not in action.choices:
            raise ReproError(CONFIG_FLAG, f"{where}: invalid choice: {value!r}")
        return value
    try:
        return parser._get_values(action, texts)
    except argparse.ArgumentError as exc:
        raise ReproError(CONFIG_FLAG, f"{where}: {exc.message}") from exc


def _nearest(flags: Sequence[str], known: Sequence[str]) -> str:
    """" (did you mean --a, --b?)" for the flag names in ``known`` (as file keys) nearest to the misspelt
    ``flags`` (``--x-y``, ``--x_y`` or ``x_y``), spelt as the user spelt them; else ""."""
    suggestions: dict[str, None] = {}
    for flag in flags:
        name = flag.lstrip("-")
        dashes = "-" in name
        for match in difflib.get_close_matches(name.replace("-", "_"), known, n=3, cutoff=0.75):
            suggestions["--" * flag.startswith("--") + (match.replace("_", "-") if dashes else match)] = None
    return f" (did you mean {', '.join(suggestions)}?)" if suggestions else ""
