"""The ``repro`` command."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import Delimiters, ReproError, compute_advantages, score_steps, select_cuts
from ._api import Estimator

ESTIMATORS: tuple[Estimator, ...] = ("grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline")

# A toy vocabulary: words, punctuation and the whitespace tokens that make paragraph breaks.
_VOCAB = ["<pad>", "</think>", ".", ".\n\n", "\n", "\n\n", " ", "Wait", "Then", "So", "the", "answer", "is", "x", "=", "2"]


def _synthetic_rollouts(batch: int, width: int, group_size: int, rng: np.random.Generator):
    """Rollouts with paragraphs, a think-end tag in most rows, and a J curve per row that climbs
    with reasoning and dips where a paragraph opens with "Wait"."""
    words = np.arange(6, len(_VOCAB))
    ids = rng.choice(words, size=(batch, width))
    breaks = rng.random((batch, width)) < 1 / 40
    ids[breaks] = 3  # ".\n\n"
    lengths = rng.integers(width // 2, width + 1, size=batch)
    lengths[0] = 0  # one empty completion, as truncation or a failed sample can produce
    for b in np.flatnonzero(rng.random(batch) < 0.8):
        if lengths[b] > 2:
            ids[b, lengths[b] - 2] = 1  # "</think>", then one answer token
    mask = np.arange(width) < lengths[:, None]
    ids[~mask] = 0
    entropies = rng.gamma(2.0, 0.5, size=(batch, width)).astype(np.float32)
    outcome = (rng.random(batch) < 0.5).astype(np.float64)
    group_index = np.arange(batch) // group_size
    return ids, mask, entropies, outcome, group_index


def _j_curve(positions: np.ndarray, offsets: np.ndarray, ends: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """J at every cut point: -3 at no reasoning, rising towards -0.2, with noise and setbacks."""
    rows = np.repeat(np.arange(len(ends)), np.diff(offsets))
    progress = positions / np.maximum(ends[rows], 1)
    j = -3.0 + 2.8 * progress + rng.normal(0.0, 0.25, size=len(positions)) * (positions > 0)
    return np.minimum(j, 0.0)


def demo(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    delimiters = Delimiters.from_token_texts(_VOCAB, mode="paper")
    ids, mask, entropies, outcome, group_index = _synthetic_rollouts(args.batch, args.width, args.group_size, rng)
    start = time.perf_counter()
    cuts = select_cuts(ids, mask, entropies, delimiters=delimiters, k=args.k, think_end_id=1)
    j_values = _j_curve(cuts.positions, cuts.offsets, cuts.ends, rng)
    steps = score_steps(j_values, cuts.offsets, w=args.w)
    values = rng.normal(0.0, 0.1, size=mask.shape).astype(np.float32)
    results = {
        name: compute_advantages(
            name, outcome, steps.reward, cuts.offsets, cuts.positions, mask, group_index,
            alpha=args.alpha, values=values if name == "ppo" else None,
        )
        for name in ESTIMATORS
    }
    elapsed = time.perf_counter() - start

    tokens = int(mask.sum())
    print(f"RePro scoring demo: {args.batch} synthetic completions x {args.width} tokens ({tokens:,} real tokens), "
          f"k = {args.k}, w = {args.w}, alpha = {args.alpha}")
    print(f"cut points: {len(cuts.positions):,} ({np.diff(cuts.offsets).mean():.1f} per completion, "
          f"k + 2 at most); process rewards: mean {steps.reward[steps.reward != 0].mean():+.4f}")
    print(f"{'estimator':<24}{'mean |A|':>10}{'std A':>10}{'row var of A':>14}")
    for name, result in results.items():
        adv = result.advantages[mask]
        row_spread = np.mean([result.advantages[b, : mask[b].sum()].std() for b in range(args.batch) if mask[b].any()])
        print(f"{name:<24}{np.abs(adv).mean():>10.4f}{adv.std():>10.4f}{row_spread:>14.4f}")
    row = int(np.argmax(np.diff(cuts.offsets)))
    points = slice(cuts.offsets[row], cuts.offsets[row + 1])
    print(f"row {row}: cut points {cuts.positions[points].tolist()}")
    print(f"         J          {np.round(j_values[points], 3).tolist()}")
    print(f"         reward     {np.round(steps.reward[points], 3).tolist()}")
    print(f"all of the above (cuts, scores, 5 estimators) took {elapsed * 1e3:.1f} ms")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repro", description="RePro process rewards for RL post-training.")
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("demo", help="score synthetic rollouts end to end with every estimator")
    sub.add_argument("--batch", type=int, default=64, help="completions (default 64)")
    sub.add_argument("--width", type=int, default=4096, help="tokens per completion slot (default 4096)")
    sub.add_argument("--group-size", type=int, default=8, help="completions per prompt (default 8)")
    sub.add_argument("--k", type=int, default=20, help="highest-entropy paragraph breaks kept (default 20)")
    sub.add_argument("--w", type=float, default=0.1, help="weight of stability in the score (default 0.1)")
    sub.add_argument("--alpha", type=float, default=0.1, help="scale of the process advantage (default 0.1)")
    sub.add_argument("--seed", type=int, default=0)
    sub.set_defaults(run=demo)
    # Listed here for `repro --help`; main() hands `repro train ...` to repro_core.train before
    # argparse sees it, because that command's ~250 flags come from TRL's dataclass parser.
    commands.add_parser("train", add_help=False,
                        help="RL post-training with RePro process rewards (GRPO or PPO); `repro train --help` lists "
                        "the flags")
    commands.add_parser("score", add_help=False,
                        help="RePro scores, plots and an HTML report of reasoning traces; `repro score --help`")
    return parser


def _train(argv: Sequence[str]) -> int:
    from . import train as train_module  # its main() imports torch, transformers and TRL: only on this path

    return train_module.main(argv)


def _score(argv: Sequence[str]) -> int:
    from . import analysis  # imports torch and transformers when it runs: only on this path

    return analysis.main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["train"]:
            return _train(argv[1:])
        if argv[:1] == ["score"]:
            return _score(argv[1:])
        args = _parser().parse_args(argv)
        return args.run(args)
    except ReproError as error:
        print(f"repro: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`repro demo | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
