"""The fastest vectorised NumPy version of the RePro pipeline we could write, and the bench input.

This is the baseline the Rust pipeline is measured against (``benches/bench_pipeline.py``), not
the oracle: ``tests/reference.py`` is written row by row for clarity, this file for speed. It
computes exactly what ``repro_core`` computes for

- ``select_cuts`` with the exact-token delimiter rule (a list of delimiter ids) and an optional
  think-end id,
- ``score_steps`` (magnitude, Kendall tau-a stability, composite, reward; optional EMA),
- ``compute_advantages("grpo")`` with gamma = 1 (``norm_by_std`` True or False),

with no Python loop over rows or tokens (only over the k + 2 cut slots, for the EMA). It does not
validate its inputs (right-padded mask, finite entropies, J <= 0, ...): the Rust core does, so the
comparison is, if anything, generous to NumPy.

How it stays fast: every (B, T) array is read as few times as possible and only where needed.

- Cuts: one pass over ``token_ids`` builds a uint8 code per token (1 = delimiter, 2 = think-end)
  through a lookup table (``np.take`` on a table of max-id + 2 entries; ids outside it clip to a
  0 entry). Everything after that is sparse: the ~B*T/40 delimiter positions (``np.flatnonzero``),
  their entropies (a gather, the (B, T) entropies are never read in full), and a top-k done as one
  sort of packed uint64 keys ``row | ~order(H) | p`` (ties in H go to the smaller p), ranks within
  each row, and a second small sort of the kept (row, p) keys.
- Scores: the ragged cut points are scattered into a padded (B, K) layout (K = max points per
  row <= k + 2); Kendall's tau-a is a (B, K, K) sign tensor, upper-triangular, summed and
  cumulated.
- Advantages: with gamma = 1 the discounted sum of placed rewards is constant on every span
  [p_{j-1}, p_j), so each row is a run of at most k + 3 constant segments: the (B, T) float32
  output is written once with ``np.repeat`` over all segments of all rows (the dense
  ``np.cumsum`` on a reversed (B, T) float64 array gives the same values about 30 times slower:
  ``compute_advantages_grpo_dense`` below, kept for reference and tests).
- Completion lengths: ``mask.argmin(axis=1)`` (the first 0 of a right-padded row), not a sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS_MAGNITUDE = 1e-6
EPS_STD = 1e-6

# The bench input (issue text): 256 completions x 16,384 tokens, vocabulary 32k, k = 20, one
# paragraph break per ~40 tokens, think-end near the end of half of the rows, 8 per group.
BATCH = 256
WIDTH = 16_384
VOCAB = 32_000
K = 20
GROUP_SIZE = 8
DELIMITER_IDS = (271, 382, 1406)  # e.g. ".\n\n", "\n\n", "?\n" in a Qwen-like vocabulary
THINK_END_ID = 31_999
BREAK_EVERY = 40


@dataclass(frozen=True)
class Batch:
    token_ids: np.ndarray  # (B, T) int64
    response_mask: np.ndarray  # (B, T) bool, right-padded
    entropies: np.ndarray  # (B, T) float32
    outcome_rewards: np.ndarray  # (B,) float64
    group_index: np.ndarray  # (B,) int64
    delimiters: tuple[int, ...]
    think_end_id: int | None
    k: int


def make_batch(
    batch: int = BATCH,
    width: int = WIDTH,
    *,
    seed: int = 0,
    vocab: int = VOCAB,
    k: int = K,
    group_size: int = GROUP_SIZE,
    delimiters: tuple[int, ...] = DELIMITER_IDS,
    think_end_id: int = THINK_END_ID,
    break_every: int = BREAK_EVERY,
    edge_cases: bool = False,
) -> Batch:
    """Synthetic rollouts: ids from a 32k vocabulary with a delimiter id about once per
    ``break_every`` tokens, a think-end id near the end of half of the rows, varied completion
    lengths (most rows long), float32 entropies, 0/1 outcome rewards, groups of ``group_size``.

    ``edge_cases`` adds what the small correctness batch must exercise: an empty row, rows of
    length 1 and 2, think-end at position 0, a row with fewer than k breaks, heavily quantised
    entropies (many ties), NaN and junk in the padding.
    """
    rng = np.random.default_rng(seed)
    specials = np.array([*delimiters, think_end_id])
    ids = rng.integers(0, vocab, size=(batch, width), dtype=np.int64)
    ids[np.isin(ids, specials)] = 0  # specials only where placed below
    breaks = rng.random((batch, width)) < 1.0 / break_every
    ids[breaks] = rng.choice(np.array(delimiters), size=int(breaks.sum()))
    long_rows = rng.random(batch) < 0.75
    lengths = np.where(long_rows, rng.integers(width - width // 8, width + 1, size=batch),
                       rng.integers(width // 16, width, size=batch))
    has_think_end = rng.random(batch) < 0.5
    think_end_at = lengths - 1 - rng.integers(0, max(2, width // 64), size=batch)
    rows = np.flatnonzero(has_think_end & (think_end_at >= 0))
    ids[rows, think_end_at[rows]] = think_end_id
    entropies = rng.gamma(2.0, 0.6, size=(batch, width)).astype(np.float32)
    if edge_cases:
        lengths[:6] = [0, 1, 2, width, width // 3, width // 2]
        ids[3, 0] = think_end_id  # think-end first: e = 1, no candidate
        ids[4, : width // 3] = np.where(np.arange(width // 3) % 97 == 5, delimiters[0], 11)  # few breaks
        ids[6, :] = delimiters[-1]  # every position is a break
        entropies = np.round(entropies * 2) / 2  # many ties
        entropies[7, :] = 1.0  # all tied: the smallest positions win
        entropies[8, 10:20] = -0.0
        entropies[8, 20:30] = 0.0
    mask = np.arange(width)[None, :] < lengths[:, None]
    ids[~mask] = 0
    entropies[~mask] = 0.0
    if edge_cases:
        entropies[~mask] = np.nan  # padding may hold anything
        ids[~mask] = rng.integers(-5, vocab + 5, size=int((~mask).sum()))
    outcome = (rng.random(batch) < 0.4).astype(np.float64)
    groups = np.arange(batch, dtype=np.int64) // group_size
    if edge_cases:
        groups[-1] = groups.max() + 7  # a singleton group with an unusual label
    return Batch(ids, mask, entropies, outcome, groups, tuple(delimiters), think_end_id, k)


def random_j(n: int, seed: int = 1) -> np.ndarray:
    """J at n cut points (non-positive); the model computes them outside the benchmark."""
    rng = np.random.default_rng(seed)
    j = -rng.gamma(2.0, 1.0, size=n)
    j[rng.random(n) < 0.01] = 0.0
    return j


# --------------------------------------------------------------------------------------------
# select_cuts


def _codes(token_ids: np.ndarray, delimiters, think_end_id) -> np.ndarray:
    """uint8 per token: 1 delimiter, 2 think-end, 0 other (one pass over the ids)."""
    specials = [int(d) for d in delimiters] + ([] if think_end_id is None else [int(think_end_id)])
    if specials and min(specials) >= 0:
        table = np.zeros(max(specials) + 2, dtype=np.uint8)  # last entry 0: ids above clip to it
        table[np.asarray(delimiters, dtype=np.int64)] = 1
        if think_end_id is not None:
            table[think_end_id] = 2  # a think-end id that is also a delimiter: both (see below)
        codes = table.take(token_ids, mode="clip")
        if table[0]:  # negative ids clip to entry 0: harmless unless id 0 is special
            codes[token_ids < 0] = 0
        if think_end_id is not None and int(think_end_id) in set(int(d) for d in delimiters):
            codes[codes == 2] = 3
        return codes
    codes = np.isin(token_ids, np.asarray(delimiters, dtype=np.int64)).astype(np.uint8)
    if think_end_id is not None:
        codes[token_ids == think_end_id] |= 2
    return codes


def _order_keys_f32(values: np.ndarray) -> np.ndarray:
    """uint64 keys with the order of float32 ``values`` (-0.0 == 0.0), in the low 32 bits."""
    bits = (values.astype(np.float32) + np.float32(0.0)).view(np.uint32).astype(np.uint64)
    negative = (bits >> np.uint64(31)) == 1
    return np.where(negative, bits ^ np.uint64(0xFFFFFFFF), bits | np.uint64(0x80000000))


def _lengths(response_mask: np.ndarray) -> np.ndarray:
    """L_b of a right-padded mask: the first 0 (argmin stops early), or T when the last is 1."""
    mask = response_mask if response_mask.dtype == np.bool_ else response_mask != 0
    return np.where(mask[:, -1], mask.shape[1], mask.argmin(axis=1)).astype(np.int64)


def _bits(n: int) -> int:
    return max(1, int(n - 1).bit_length())


def select_cuts(token_ids, response_mask, entropies, *, delimiters, k=20, think_end_id=None):
    """(offsets (B+1,), positions (N,), ends (B,)) int64, as ``repro_core.select_cuts``."""
    batch, width = token_ids.shape
    lengths = _lengths(response_mask)
    codes = _codes(token_ids, delimiters, think_end_id)
    # Think-end: the first one in the row (if it lies in the padding, none is inside the mask).
    if think_end_id is not None:
        # Think-end tokens carry the largest codes, so the row's argmax is its first think-end.
        first = codes.argmax(axis=1)
        has_end = (codes[np.arange(batch), first] >= 2) & (first < lengths)
        limit = np.where(has_end, first, lengths)
        ends = np.where(has_end, first + 1, lengths)
    else:
        limit = ends = lengths
    # Candidates: p = t + 1 where token t is a delimiter and p < limit (<= T, so no wrap-around).
    flat = np.flatnonzero((codes & 1).view(np.bool_))  # nonzero is 3x faster on bool
    rows = flat // width
    p = flat - rows * width + 1
    keep = p < limit[rows]
    rows, p = rows[keep], p[keep]
    counts = np.bincount(rows, minlength=batch)
    if k > 0 and p.size:
        h = entropies.reshape(-1)[flat[keep] + 1] if entropies.flags.c_contiguous else entropies[rows, p]
        if entropies.dtype == np.float32 and _bits(batch) + 32 + _bits(width) <= 64:
            pb, hb = _bits(width), 32
            descending = _order_keys_f32(h) ^ np.uint64(0xFFFFFFFF)
            key = (rows.astype(np.uint64) << np.uint64(hb + pb)) | (descending << np.uint64(pb)) | p.astype(np.uint64)
            key.sort()
            srt_rows = (key >> np.uint64(hb + pb)).astype(np.int64)
            srt_p = (key & np.uint64((1 << pb) - 1)).astype(np.int64)
        else:
            order = np.lexsort((p, -h.astype(np.float64) + 0.0, rows))
            srt_rows, srt_p = rows[order], p[order]
        starts = np.zeros(batch + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        rank = np.arange(srt_p.size) - starts[srt_rows]
        top = rank < k
        sel_rows, sel_p = srt_rows[top], srt_p[top]
        # Back to position order within each row (rows are already grouped).
        sel_key = sel_rows * (width + 1) + sel_p
        sel_key.sort()
        sel_rows = sel_key // (width + 1)
        sel_p = sel_key - sel_rows * (width + 1)
    else:
        sel_rows = sel_p = np.zeros(0, dtype=np.int64)
    n_sel = np.minimum(counts, k) if k > 0 else np.zeros(batch, dtype=np.int64)
    n_points = 1 + n_sel + (ends > 0)
    offsets = np.zeros(batch + 1, dtype=np.int64)
    np.cumsum(n_points, out=offsets[1:])
    positions = np.empty(offsets[-1], dtype=np.int64)
    positions[offsets[:-1]] = 0
    sel_start = np.zeros(batch + 1, dtype=np.int64)
    np.cumsum(n_sel, out=sel_start[1:])
    positions[offsets[sel_rows] + 1 + np.arange(sel_p.size) - sel_start[sel_rows]] = sel_p
    nonempty = ends > 0
    positions[offsets[1:][nonempty] - 1] = ends[nonempty]
    return offsets, positions, ends.astype(np.int64)


# --------------------------------------------------------------------------------------------
# score_steps


def _padded(values: np.ndarray, offsets: np.ndarray):
    """Ragged (offsets, values) -> (B, K) padded with 0, the validity mask, row and slot per value."""
    counts = np.diff(offsets)
    batch = counts.size
    slots = int(counts.max(initial=0))
    rows = np.repeat(np.arange(batch), counts)
    slot = np.arange(values.size) - offsets[rows]
    padded = np.zeros((batch, max(slots, 1)), dtype=np.float64)
    padded[rows, slot] = values
    valid = np.arange(max(slots, 1))[None, :] < counts[:, None]
    return padded, valid, rows, slot


def score_steps(j_values, offsets, *, w=0.1, stability_ema=None):
    """(magnitude, stability, score, reward) float64 (N,), as ``repro_core.score_steps``."""
    j = np.asarray(j_values, dtype=np.float64)
    jp, valid, rows, slot = _padded(j, offsets)
    slots = jp.shape[1]
    v = -jp
    v0 = v[:, :1]
    magnitude = np.tanh((v0 - v) / (v0 + EPS_MAGNITUDE) - 1.0) + 1.0
    magnitude[:, 0] = 0.0
    smoothed = jp
    if stability_ema is not None:
        smoothed = jp.copy()
        for i in range(1, slots):  # a loop over the k + 2 cut slots
            smoothed[:, i] = stability_ema * jp[:, i] + (1.0 - stability_ema) * smoothed[:, i - 1]
    # sign(J_c - J_a) for a < c, summed over a, cumulated over c: the concordance up to j.
    signs = np.sign(smoothed[:, None, :] - smoothed[:, :, None])  # [b, a, c]
    signs *= np.triu(np.ones((slots, slots)), 1)[None]
    concordance = np.cumsum(signs.sum(axis=1), axis=1)
    idx = np.arange(slots, dtype=np.float64)
    pairs = np.maximum(idx * (idx + 1) / 2, 1.0)
    stability = (concordance / pairs + 1.0) / 2.0
    stability[:, 0] = 0.0
    score = (1.0 - w) * magnitude + w * stability
    score[:, 0] = 0.0
    reward = np.diff(score, axis=1, prepend=0.0)
    take = (rows, slot)
    return magnitude[take], stability[take], score[take], reward[take]


# --------------------------------------------------------------------------------------------
# compute_advantages ("grpo", gamma = 1)


def _group_stats(values, groups, n_groups):
    """Per-group (count, mean, unbiased std) of ``values`` labelled by ``groups``."""
    count = np.bincount(groups, minlength=n_groups)
    total = np.bincount(groups, weights=values, minlength=n_groups)
    mean = total / np.maximum(count, 1)
    squared = np.bincount(groups, weights=(values - mean[groups]) ** 2, minlength=n_groups)
    std = np.sqrt(squared / np.maximum(count - 1, 1))
    return count, mean, std


def _grpo_parts(outcome_rewards, step_rewards, offsets, positions, group_index, norm_by_std):
    """GRPO's outcome advantage per row, and the placed process rewards r_j (j >= 1) normalised
    over their group: (a_out (B,), counts (B,), rows (N,), placed (N,) bool, r_hat (placed,))."""
    _, group = np.unique(group_index, return_inverse=True)
    group = group.reshape(-1)
    n_groups = int(group.max()) + 1
    outcome = np.asarray(outcome_rewards, dtype=np.float64)
    members, mean, std = _group_stats(outcome, group, n_groups)
    single = members < 2
    mean[single], std[single] = 0.0, 1.0
    a_out = outcome - mean[group]
    if norm_by_std:
        a_out /= std[group] + EPS_STD
    counts = np.diff(offsets)
    rows = np.repeat(np.arange(len(counts)), counts)
    placed = np.ones(positions.size, dtype=bool)
    placed[offsets[:-1][counts > 0]] = False
    r = np.asarray(step_rewards, dtype=np.float64)[placed]
    r_group = group[rows[placed]]
    n_placed, mu, sigma = _group_stats(r, r_group, n_groups)
    degenerate = single | (n_placed < 2)
    mu[degenerate], sigma[degenerate] = 0.0, 1.0
    r_hat = r - mu[r_group]
    if norm_by_std:
        r_hat /= sigma[r_group] + EPS_STD
    return a_out, counts, rows, placed, r_hat


def compute_advantages_grpo(outcome_rewards, step_rewards, offsets, positions, response_mask, group_index, *,
                            alpha=0.1, norm_by_std=True):
    """Advantages (B, T) float32, as ``repro_core.compute_advantages("grpo", ..., gamma=1)``."""
    batch, width = response_mask.shape
    lengths = _lengths(response_mask)
    a_out, counts, rows, placed, r_hat = _grpo_parts(outcome_rewards, step_rewards, offsets, positions, group_index,
                                                     norm_by_std)
    # Suffix sums of the placed rewards at each cut point (gamma = 1), in a padded (B, K) layout.
    pslot = np.arange(positions.size) - offsets[rows]
    prow = rows
    rp = np.zeros((batch, int(counts.max(initial=0)) + 1), dtype=np.float64)
    rp[prow[placed], pslot[placed]] = r_hat
    suffix = np.cumsum(rp[:, ::-1], axis=1)[:, ::-1]  # suffix[b, j] = sum_{i >= j} r_hat[b, i]
    # Token t in [p_{j-1}, p_j) (j >= 1) gets A_b + alpha * suffix[b, j]; [e, L) gets A_b; [L, T) 0.
    # One segment per cut point (the span ending there; the baseline's span is empty) plus
    # [e, L) and [L, T) per row, all in row order: the output is their concatenation.
    span = np.diff(positions, prepend=0)
    span[offsets[:-1][counts > 0]] = 0
    seg_value = a_out[rows] + alpha * suffix[prow, pslot]
    seg_len = span
    last = offsets[1:] - 1  # index of each row's last cut point (its e), for rows with points
    ends = np.zeros(batch, dtype=np.int64)
    ends[counts > 0] = positions[last[counts > 0]]
    tail_value = np.stack([a_out, np.zeros(batch)], axis=1)
    tail_len = np.stack([lengths - ends, width - lengths], axis=1)
    # Interleave: row b's cut segments, then its two tail segments.
    n_seg = counts + 2
    seg_off = np.zeros(batch + 1, dtype=np.int64)
    np.cumsum(n_seg, out=seg_off[1:])
    values = np.empty(seg_off[-1], dtype=np.float64)
    lens = np.empty(seg_off[-1], dtype=np.int64)
    idx = seg_off[rows] + pslot
    values[idx], lens[idx] = seg_value, seg_len
    values[seg_off[1:] - 2], lens[seg_off[1:] - 2] = tail_value[:, 0], tail_len[:, 0]
    values[seg_off[1:] - 1], lens[seg_off[1:] - 1] = tail_value[:, 1], tail_len[:, 1]
    return np.repeat(values.astype(np.float32), lens).reshape(batch, width)


def revcumsum_dense(placed_rewards: np.ndarray) -> np.ndarray:
    """revcumsum with gamma = 1 of a dense (B, T) array: the textbook NumPy way (slower)."""
    return np.cumsum(placed_rewards[:, ::-1], axis=1)[:, ::-1]


def compute_advantages_grpo_dense(outcome_rewards, step_rewards, offsets, positions, response_mask, group_index, *,
                                  alpha=0.1, norm_by_std=True):
    """Same as ``compute_advantages_grpo`` through a dense (B, T) float64 reverse cumsum."""
    batch, width = response_mask.shape
    a_out, _, rows, placed, r_hat = _grpo_parts(outcome_rewards, step_rewards, offsets, positions, group_index,
                                                norm_by_std)
    dense = np.zeros((batch, width), dtype=np.float64)
    dense[rows[placed], positions[placed] - 1] = r_hat
    out = revcumsum_dense(dense)
    out *= alpha
    out += a_out[:, None]
    out *= response_mask
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------
# the pipeline


def check_inputs(batch: Batch, j_values: np.ndarray) -> None:
    """The input checks the Rust core always makes and ``pipeline`` skips (docs/semantics.md):
    a right-padded 0/1 mask, finite entropies inside it, finite J <= 0, finite outcome rewards."""
    mask = batch.response_mask
    lengths = _lengths(mask)
    if not np.array_equal(np.count_nonzero(mask, axis=1), lengths):
        raise ValueError("response_mask is not right-padded")
    finite = np.isfinite(batch.entropies)
    finite |= ~mask
    if not finite.all():
        raise ValueError("entropies: non-finite value inside the mask")
    if not (np.isfinite(j_values).all() and (j_values <= 0).all() and np.isfinite(batch.outcome_rewards).all()):
        raise ValueError("j_values or outcome_rewards: bad values")


def pipeline(batch: Batch, j_values: np.ndarray, *, w=0.1, alpha=0.1):
    """select_cuts -> score_steps (J given) -> compute_advantages("grpo"): (offsets, positions, advantages)."""
    offsets, positions, _ = select_cuts(batch.token_ids, batch.response_mask, batch.entropies,
                                        delimiters=batch.delimiters, k=batch.k, think_end_id=batch.think_end_id)
    _, _, _, reward = score_steps(j_values, offsets, w=w)
    advantages = compute_advantages_grpo(batch.outcome_rewards, reward, offsets, positions, batch.response_mask,
                                         batch.group_index, alpha=alpha)
    return offsets, positions, advantages
