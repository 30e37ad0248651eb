"""The ``repro`` command: dispatches ``repro COMMAND ...`` to the command's module.

Each command parses its own flags (``repro train`` and ``repro score`` with the convention of
:mod:`repro_core.arguments`); the modules are imported only when their command runs, so
``repro --help`` and ``repro demo`` import neither torch nor TRL. A ``ReproError`` from any command
is one line on stderr, ``repro: error: ARGUMENT: MESSAGE``, and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .errors import ReproError

__all__ = ["COMMANDS", "main"]

#: Command name -> (the module whose ``main(argv)`` runs it, its line in ``repro --help``).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("repro_core.demo", "score synthetic rollouts end to end with every estimator; no model needed"),
    "train": ("repro_core.train", "RL post-training with RePro process rewards (GRPO or PPO)"),
    "score": ("repro_core.analysis", "RePro scores, plots and an HTML report of reasoning traces"),
}


def make_parser() -> argparse.ArgumentParser:
    """The parser of ``repro`` itself, for ``repro --help`` and unknown commands; the commands'
    flags are their own (``repro COMMAND --help``)."""
    parser = argparse.ArgumentParser(
        prog="repro",
        description="RePro process rewards for RL post-training.",
        epilog="`repro COMMAND --help` lists the flags of a command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, add_help=False, help=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``repro`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] and args[0] in COMMANDS:
            command = importlib.import_module(COMMANDS[args[0]][0])
            return command.main(args[1:])
        make_parser().parse_args(args)  # --help, or an error for a missing or unknown command (exit 2)
        return 2
    except ReproError as error:
        print(f"repro: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`repro demo | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
