"""``repro demo``: RePro's scoring pipeline end to end on synthetic rollouts, no model needed.

Cut points, step scores and the advantages of every estimator, on a batch of made-up completions
whose J curve climbs with reasoning. Needs only numpy and the Rust core.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import NoReturn, cast

import numpy as np

from ._api import ESTIMATORS, Estimator, compute_advantages, score_steps, select_cuts
from .arguments import COMMAND_ERROR
from .config import ReproConfig
from .delimiters import Delimiters
from .errors import ReproError

__all__ = ["main", "make_parser"]

PROG = "repro demo"

# A toy vocabulary: words, punctuation and the whitespace tokens that make paragraph breaks.
VOCAB = ["<pad>", "</think>", ".", ".\n\n", "\n", "\n\n", " ",
         "Wait", "Then", "So", "the", "answer", "is", "x", "=", "2"]
PAD_ID, THINK_END_ID, PARAGRAPH_BREAK_ID = 0, 1, 3
FIRST_WORD_ID = 6
#: The most token slots (--batch x --width) the demo makes: its arrays take ~60 bytes a slot, ~1 GB here.
MAX_SLOTS = 2**24


def synthetic_rollouts(batch: int, width: int, group_size: int, rng: np.random.Generator):
    """Token ids, mask, entropies, outcome rewards and group indices of ``batch`` rollouts with
    paragraphs and a think-end tag in most rows; row 0 is empty (as truncation or a failed sample
    can make one)."""
    ids = rng.choice(np.arange(FIRST_WORD_ID, len(VOCAB)), size=(batch, width))
    ids[rng.random((batch, width)) < 1 / 40] = PARAGRAPH_BREAK_ID
    lengths = rng.integers(width // 2, width + 1, size=batch)
    lengths[0] = 0
    for row in np.flatnonzero(rng.random(batch) < 0.8):
        if lengths[row] > 2:
            ids[row, lengths[row] - 2] = THINK_END_ID  # then one answer token
    mask = np.arange(width) < lengths[:, None]
    ids[~mask] = PAD_ID
    entropies = rng.gamma(2.0, 0.5, size=(batch, width)).astype(np.float32)
    outcome = (rng.random(batch) < 0.5).astype(np.float64)
    group_index = np.arange(batch) // group_size
    return ids, mask, entropies, outcome, group_index


def synthetic_j(positions: np.ndarray, offsets: np.ndarray, ends: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """J at every cut point: -3 at no reasoning, rising towards -0.2, with noise and setbacks."""
    rows = np.repeat(np.arange(len(ends)), np.diff(offsets))
    progress = positions / np.maximum(ends[rows], 1)
    j_values = -3.0 + 2.8 * progress + rng.normal(0.0, 0.25, size=len(positions)) * (positions > 0)
    return np.minimum(j_values, 0.0)


class DemoParser(argparse.ArgumentParser):
    # Usage errors are ReproErrors, one line through `repro`, as in every repro command.
    def error(self, message: str) -> NoReturn:
        raise ReproError(COMMAND_ERROR, f"{message} (see `{PROG} --help`)")


def make_parser() -> argparse.ArgumentParser:
    """The flags of ``repro demo``; each has both spellings (``--group-size``, ``--group_size``)."""
    parser = DemoParser(prog=PROG, description="Score synthetic rollouts end to end (cut points, step scores, "
                        "the advantages of every estimator) and time it. No model needed.")

    def flag(name: str, **kwargs) -> None:
        spellings = dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}"))
        parser.add_argument(*spellings, dest=name, **kwargs)

    flag("batch", type=int, default=64, help="completions (default 64)")
    flag("width", type=int, default=4096, help=f"tokens per completion slot (default 4096; --batch x --width at most "
         f"{MAX_SLOTS:,})")
    flag("group_size", type=int, default=8, help="completions per prompt (default 8)")
    repro = ReproConfig()  # RePro's settings default to ReproConfig's
    flag("k", type=int, default=repro.k, help=f"highest-entropy paragraph breaks kept (default {repro.k})")
    flag("w", type=float, default=repro.w, help=f"weight of stability in the score (default {repro.w})")
    flag("alpha", type=float, default=repro.alpha, help=f"scale of the process advantage (default {repro.alpha})")
    flag("seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``repro demo`` with ``argv`` (default ``sys.argv[1:]``). Raises ReproError naming the flag."""
    args = make_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    for name, least in (("batch", 2), ("width", 4), ("group_size", 1), ("seed", 0)):
        if getattr(args, name) < least:
            raise ReproError(f"--{name}", f"expected an integer >= {least}, got {getattr(args, name)}")
    if args.batch * args.width > MAX_SLOTS:
        raise ReproError("--batch, --width", f"{args.batch} x {args.width} = {args.batch * args.width:,} token slots; "
                         f"the demo makes at most {MAX_SLOTS:,} (about 1 GB of arrays)")
    try:
        return run(args)
    except ReproError as error:  # the core names its own arguments (k, w, alpha): this command's flags
        raise (error.renamed(f"--{error.argument}") if error.argument in vars(args) else error) from None


def run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    delimiters = Delimiters.from_token_texts(VOCAB, mode="paper")
    ids, mask, entropies, outcome, group_index = synthetic_rollouts(args.batch, args.width, args.group_size, rng)
    start = time.perf_counter()
    cuts = select_cuts(ids, mask, entropies, delimiters=delimiters, k=args.k, think_end_id=THINK_END_ID)
    j_values = synthetic_j(cuts.positions, cuts.offsets, cuts.ends, rng)
    steps = score_steps(j_values, cuts.offsets, w=args.w)
    values = rng.normal(0.0, 0.1, size=mask.shape).astype(np.float32)
    results = {
        name: compute_advantages(
            cast(Estimator, name), outcome, steps.reward, cuts.offsets, cuts.positions, mask, group_index,
            alpha=args.alpha, values=values if name == "ppo" else None,
        )
        for name in ESTIMATORS
    }
    elapsed = time.perf_counter() - start

    tokens = int(mask.sum())
    rewards = steps.reward[steps.reward != 0]
    print(f"RePro scoring demo: {args.batch} synthetic completions x {args.width} tokens ({tokens:,} real tokens), "
          f"k = {args.k}, w = {args.w}, alpha = {args.alpha}")
    print(f"cut points: {len(cuts.positions):,} ({np.diff(cuts.offsets).mean():.1f} per completion, "
          f"k + 2 at most); process rewards: mean {rewards.mean() if len(rewards) else 0.0:+.4f}")
    print(f"{'estimator':<24}{'mean |A|':>10}{'std A':>10}{'row var of A':>14}")
    for name, result in results.items():
        token_advantages = result.advantages[mask]
        row_spread = np.mean([result.advantages[row, : mask[row].sum()].std()
                              for row in range(args.batch) if mask[row].any()])
        print(f"{name:<24}{np.abs(token_advantages).mean():>10.4f}{token_advantages.std():>10.4f}{row_spread:>14.4f}")
    row = int(np.argmax(np.diff(cuts.offsets)))
    points = slice(cuts.offsets[row], cuts.offsets[row + 1])
    print(f"row {row}: cut points {cuts.positions[points].tolist()}")
    print(f"         J          {np.round(j_values[points], 3).tolist()}")
    print(f"         reward     {np.round(steps.reward[points], 3).tolist()}")
    print(f"all of the above (cuts, scores, {len(ESTIMATORS)} estimators) took {elapsed * 1e3:.1f} ms")
    return 0

