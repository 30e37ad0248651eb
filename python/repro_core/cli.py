"""The ``repro`` command: dispatches ``repro COMMAND ...`` to the command's module.

Each command parses its own flags (``repro train`` and ``repro score`` with the convention of
:mod:`repro_core.arguments`); the modules are imported only when their command runs, so
``repro --help`` and ``repro demo`` import neither torch nor TRL. A ``ReproError`` from any command
(and a usage error of ``repro`` itself) is one line on stderr, ``repro: error: ARGUMENT: MESSAGE``,
and exit status 2. The library's log messages (``logging`` under ``repro_core``, INFO and up) go to
stderr as ``repro: MESSAGE`` (``repro: warning: MESSAGE``); the commands' results go to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .errors import ReproError

__all__ = ["COMMANDS", "configure_logging", "main"]

#: Command name -> (the module whose ``main(argv)`` runs it, its line in ``repro --help``).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("repro_core.demo", "score synthetic rollouts end to end with every estimator; no model needed"),
    "train": ("repro_core.train", "RL post-training with RePro process rewards (GRPO or PPO)"),
    "score": ("repro_core.analysis", "RePro scores, plots and an HTML report of reasoning traces"),
    "cache": ("repro_core.assets.command", "check the embedded model's cache in full: repro cache verify"),
    "verl-check": ("repro_core.verl.check", "check a verl run's overrides as main_ppo would, before submitting it"),
}


class DispatchParser(argparse.ArgumentParser):
    # A missing or unknown command is a ReproError like every other usage error: one line, exit status 2.
    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required"):
            message = f"missing: one of {', '.join(COMMANDS)}"
        raise ReproError("COMMAND", f"{message.removeprefix('argument COMMAND: ')} (see `{self.prog} --help`)")


def make_parser() -> argparse.ArgumentParser:
    """The parser of ``repro`` itself, for ``repro --help`` and unknown commands; the commands'
    flags are their own (``repro COMMAND --help``)."""
    parser = DispatchParser(
        prog="repro",
        description="RePro process rewards for RL post-training.",
        epilog="`repro COMMAND --help` lists the flags of a command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, add_help=False, help=summary)
    return parser


class StderrHandler(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is at each message (tests and tools swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class CommandFormatter(logging.Formatter):
    """``repro: MESSAGE`` for information, ``repro: warning: MESSAGE`` (``error``, ...) above it."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        return f"repro: {level}{super().format(record)}"


def configure_logging() -> None:
    """Show the ``repro_core`` loggers' messages, INFO and up, on stderr; once per process."""
    logger = logging.getLogger("repro_core")
    if not any(isinstance(handler, StderrHandler) for handler in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(CommandFormatter("%(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``repro`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    try:
        if args[:1] and args[0] in COMMANDS:
            try:
                command = importlib.import_module(COMMANDS[args[0]][0])
            except ModuleNotFoundError as missing:  # an extra the command needs (verl for verl-check)
                raise ReproError(args[0], f"needs {missing.name}, which is not installed (docs/install.md)") from None
            return command.main(args[1:])
        make_parser().parse_args(args)  # --help (exit 0), or a ReproError for a missing or unknown command
        return 2
    except ReproError as error:
        print(f"repro: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`repro demo | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
