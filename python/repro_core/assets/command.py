"""``repro cache verify``: the full check of the cached default model, every file's sha256 against its manifest.

A load checks sizes, the small files' sha256 and the weights' header (milliseconds); this reads all 540 MB, so a
flipped bit among the weights is found too. Status 0: every file matches; 1: some file differs (listed, with the
way to repair: delete the entry, and the next use converts it again); 2: nothing to verify.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..arguments import COMMAND_ERROR
from ..errors import ReproError
from .cache import MANIFEST, cache_dir, verify
from .fetch import DEFAULT_MODEL

__all__ = ["main", "make_parser"]

PROG = "repro cache"


class CacheParser(argparse.ArgumentParser):
    # Usage errors are ReproErrors, one line through `repro`, as in every repro command.
    def error(self, message: str) -> NoReturn:
        raise ReproError(COMMAND_ERROR, f"{message} (see `{PROG} --help`)")


def make_parser() -> argparse.ArgumentParser:
    """The parser of ``repro cache``: one subcommand, ``verify``."""
    parser = CacheParser(prog=PROG, description=f"The cache of the embedded default model ({DEFAULT_MODEL}), in "
                         "$REPRO_CACHE (else $XDG_CACHE_HOME/repro-core, else ~/.cache/repro-core).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=CacheParser)
    actions.add_parser("verify", help=f"hash every file of the cached {DEFAULT_MODEL} against its {MANIFEST} "
                       "(reads all of it; a load checks only sizes, the small files and the weights' header)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``repro cache`` with ``argv``; returns 0 when every file matches, 1 when some differ."""
    make_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    target = cache_dir() / DEFAULT_MODEL
    try:
        problems = verify(target)
    except FileNotFoundError:
        raise ReproError("REPRO_CACHE", f"no converted {DEFAULT_MODEL} with a {MANIFEST} at {target}: nothing to "
                         "verify (the first use converts it)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ReproError("REPRO_CACHE", f"{target / MANIFEST} is unreadable ({type(error).__name__}: {error}); "
                         f"delete {target} and the next use converts it again") from None
    if problems:
        for line in problems:
            print(f"repro cache: {target}: {line}", file=sys.stderr)
        print(f"repro cache: {target} is damaged: delete it, and the next use converts it again", file=sys.stderr)
        return 1
    print(f"repro cache: {target}: every file matches {MANIFEST} (sha256)")
    return 0
