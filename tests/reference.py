"""Slow, plain NumPy/Python oracle of docs/method.md (cut points, scores, advantages) and docs/semantics.md.

Everything here is written straight from the formulas, row by row, with Python loops and
float64 arithmetic. It does no validation (the real API validates); feed it valid inputs only.

Results are plain dicts of NumPy arrays with the same keys and meaning as the fields of the real
API's result dataclasses:

- ``select_cuts``        -> {"offsets", "positions", "ends"}            (int64)
- ``segment_paragraphs`` -> {"offsets", "starts", "ends"}               (int64)
- ``score_steps``        -> {"magnitude", "stability", "score", "reward"} (float64)
- ``compute_advantages`` -> {"advantages", "returns", "advantages64", "returns64"}
  ("advantages"/"returns" are float32 like the real API; the "...64" keys hold the float64 values
  before the cast; "returns"/"returns64" are None unless the estimator is "ppo" (the raw GAE of the
  token rewards plus V, as verl's gae; the combined advantage plus V with critic_target="advantages")
  or "reinforce_pp" (the discounted token rewards, unwhitened)). ``process_std`` ("group", "batch",
  "none") is grpo's process std; ``stats_include_baseline`` and ``drop_first_token_reward`` are the
  authors' code's quirks (docs/semantics.md, "Departures from the reference code").

``delimiters`` is either a sequence of token ids (exact-token rule) or a Delimiters-like object:
if it has a non-None ``leading_newlines`` attribute the text rule is used with its
``leading_newlines``, ``trailing_newlines``, ``whitespace_only`` and ``min_newlines``; otherwise its
``token_ids`` are used with the exact-token rule. ``text_table`` builds such an object from token
texts, independently of ``repro_core.Delimiters``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

EPS_MAGNITUDE = 1e-6  # v_0 + eps in the magnitude
EPS_STD = 1e-6  # std + eps in grpo
EPS_VAR = 1e-8  # sqrt(var + eps) in masked_whiten / reinforce_pp
ESTIMATORS = ("grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline")


# --------------------------------------------------------------------------------------------
# small helpers


def _mask_rows(response_mask):
    """Row lengths L_b (number of leading ones) of a right-padded 0/1 mask."""
    m = np.asarray(response_mask)
    lengths = []
    for b in range(m.shape[0]):
        n = 0
        for t in range(m.shape[1]):
            if m[b, t] != 0:
                n += 1
            else:
                break
        lengths.append(n)
    return lengths


def _newlines_in(s):
    return s.count("\n")


def text_table(texts, mode="paper"):
    """Independent Delimiters-like table from token texts (texts[i] = text of token id i).

    leading/trailing_newlines = number of "\\n" in the leading/trailing whitespace run of the text
    (whitespace = Python's str.isspace); whitespace_only = text.isspace() or text == "" (an empty
    text is transparent: it neither ends a whitespace run nor starts a paragraph).
    """
    min_newlines = {"paper": 2, "line": 1}[mode]
    lead, trail, wsonly = [], [], []
    for s in texts:
        i = 0
        while i < len(s) and s[i].isspace():
            i += 1
        j = len(s)
        while j > 0 and s[j - 1].isspace():
            j -= 1
        lead.append(_newlines_in(s[:i]))
        trail.append(_newlines_in(s[j:]))
        wsonly.append(s.isspace() or s == "")
    return SimpleNamespace(
        mode=mode,
        token_ids=None,
        leading_newlines=np.array(lead, dtype=np.uint32),
        trailing_newlines=np.array(trail, dtype=np.uint32),
        whitespace_only=np.array(wsonly, dtype=bool),
        min_newlines=min_newlines,
    )


def _is_text_rule(delimiters):
    return getattr(delimiters, "leading_newlines", None) is not None


def _delimiter_id_set(delimiters):
    if hasattr(delimiters, "token_ids") and not isinstance(delimiters, (list, tuple, np.ndarray)):
        ids = delimiters.token_ids
    else:
        ids = delimiters
    return set(int(x) for x in np.asarray(ids, dtype=np.int64).reshape(-1))


def _breaks_row(ids_row, length, delimiters):
    """List of p in [1, length) such that a paragraph break ends right before p."""
    out = []
    if _is_text_rule(delimiters):
        lead = delimiters.leading_newlines
        trail = delimiters.trailing_newlines
        ws = delimiters.whitespace_only
        need = int(delimiters.min_newlines)
        run = 0  # run(p-1): newlines in the trailing whitespace run of tokens 0..p-1
        for p in range(0, length):
            tok = int(ids_row[p])
            if p >= 1:
                if (not bool(ws[tok])) and run + int(lead[tok]) >= need:
                    out.append(p)
            # update run to run(p)
            if bool(ws[tok]):
                run = run + int(trail[tok])  # whitespace-only: all its newlines
            else:
                run = int(trail[tok])
    else:
        ids = _delimiter_id_set(delimiters)
        for p in range(1, length):
            if int(ids_row[p - 1]) in ids:
                out.append(p)
    return out


def _think_end_pos(ids_row, length, think_end_id):
    if think_end_id is None:
        return None
    for t in range(length):
        if int(ids_row[t]) == int(think_end_id):
            return t
    return None


def _row_structure(ids_row, length, delimiters, think_end_id):
    """(candidates, e) for one row."""
    te = _think_end_pos(ids_row, length, think_end_id)
    e = te + 1 if te is not None else length
    limit = te if te is not None else length
    cands = [p for p in _breaks_row(ids_row, length, delimiters) if p < limit]
    return cands, e


# --------------------------------------------------------------------------------------------
# cuts and paragraphs


def select_cuts(token_ids, response_mask, entropies, delimiters, k=20, think_end_id=None):
    token_ids = np.asarray(token_ids)
    entropies = np.asarray(entropies, dtype=np.float64)
    lengths = _mask_rows(response_mask)
    B = token_ids.shape[0]
    offsets = [0]
    positions = []
    ends = []
    for b in range(B):
        L = lengths[b]
        cands, e = _row_structure(token_ids[b], L, delimiters, think_end_id)
        # top-k: largest entropy first, ties: smaller p first
        ranked = sorted(cands, key=lambda p: (-float(entropies[b, p]), p))
        selected = ranked[: int(k)]
        pts = sorted(set([0] + selected + [e]))
        positions.extend(pts)
        offsets.append(len(positions))
        ends.append(e)
    return {
        "offsets": np.array(offsets, dtype=np.int64),
        "positions": np.array(positions, dtype=np.int64),
        "ends": np.array(ends, dtype=np.int64),
    }


def segment_paragraphs(token_ids, response_mask, delimiters, think_end_id=None):
    token_ids = np.asarray(token_ids)
    lengths = _mask_rows(response_mask)
    B = token_ids.shape[0]
    offsets = [0]
    starts = []
    ends = []
    for b in range(B):
        L = lengths[b]
        if L > 0:
            cands, e = _row_structure(token_ids[b], L, delimiters, think_end_id)
            pts = sorted(set([0] + cands + [e]))
            for i in range(len(pts) - 1):
                starts.append(pts[i])
                ends.append(pts[i + 1])
        offsets.append(len(starts))
    return {
        "offsets": np.array(offsets, dtype=np.int64),
        "starts": np.array(starts, dtype=np.int64),
        "ends": np.array(ends, dtype=np.int64),
    }


# --------------------------------------------------------------------------------------------
# scores


def _sign(x):
    if x > 0:
        return 1
    if x < 0:
        return -1
    return 0


def magnitude(j0, jj):
    v0 = -float(j0)
    vj = -float(jj)
    x = (v0 - vj) / (v0 + EPS_MAGNITUDE)
    return math.tanh(x - 1.0) + 1.0


def kendall_stability(seq):
    """S = (tau_a + 1) / 2 of seq against its index (ties count 0)."""
    n = len(seq)
    total = 0
    for a in range(n):
        for b in range(a + 1, n):
            total += _sign(seq[b] - seq[a])
    tau = total / (n * (n - 1) / 2)
    return (tau + 1.0) / 2.0


def score_steps(j_values, offsets, w=0.1, stability_ema=None):
    J = [float(x) for x in np.asarray(j_values, dtype=np.float64).reshape(-1)]
    offsets = [int(x) for x in np.asarray(offsets).reshape(-1)]
    N = len(J)
    mag = np.zeros(N, dtype=np.float64)
    stab = np.zeros(N, dtype=np.float64)
    score = np.zeros(N, dtype=np.float64)
    reward = np.zeros(N, dtype=np.float64)
    for b in range(len(offsets) - 1):
        lo, hi = offsets[b], offsets[b + 1]
        row = J[lo:hi]
        if not row:
            continue
        if stability_ema is None:
            jbar = list(row)
        else:
            beta = float(stability_ema)
            jbar = [row[0]]
            for i in range(1, len(row)):
                jbar.append(beta * row[i] + (1.0 - beta) * jbar[i - 1])
        c_prev = 0.0
        for j in range(1, len(row)):
            M = magnitude(row[0], row[j])
            S = kendall_stability(jbar[: j + 1])
            C = (1.0 - w) * M + w * S
            mag[lo + j] = M
            stab[lo + j] = S
            score[lo + j] = C
            reward[lo + j] = C - c_prev
            c_prev = C
    return {"magnitude": mag, "stability": stab, "score": score, "reward": reward}


# --------------------------------------------------------------------------------------------
# advantages


def _mean(xs):
    return sum(xs) / len(xs)


def _var_unbiased(xs):
    mu = _mean(xs)
    return sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)


def masked_whiten(x, lengths):
    """(x - mean_m) / sqrt(var_m + 1e-8) over all masked tokens of the batch; 0 off the mask.
    Fewer than two masked values: only subtract the mean; none: zeros."""
    B, T = x.shape
    vals = [x[b, t] for b in range(B) for t in range(lengths[b])]
    out = np.zeros((B, T), dtype=np.float64)
    if len(vals) == 0:
        return out
    mu = _mean(vals)
    if len(vals) < 2:
        for b in range(B):
            for t in range(lengths[b]):
                out[b, t] = x[b, t] - mu
        return out
    denom = math.sqrt(_var_unbiased(vals) + EPS_VAR)
    for b in range(B):
        for t in range(lengths[b]):
            out[b, t] = (x[b, t] - mu) / denom
    return out


def revcumsum(x, lengths, gamma):
    """x_t + gamma * revcumsum(x)_{t+1} over each row's masked tokens; 0 off the mask."""
    B, T = x.shape
    out = np.zeros((B, T), dtype=np.float64)
    for b in range(B):
        acc = 0.0
        for t in range(lengths[b] - 1, -1, -1):
            acc = x[b, t] + gamma * acc
            out[b, t] = acc
    return out


def gae(r, V, lengths, gamma, lam):
    """delta_t = r_t + gamma V_{t+1} - V_t (V after the last valid token = 0),
    A_t = delta_t + gamma lam A_{t+1}."""
    B, T = r.shape
    out = np.zeros((B, T), dtype=np.float64)
    for b in range(B):
        L = lengths[b]
        nxt_adv = 0.0
        for t in range(L - 1, -1, -1):
            v_next = V[b, t + 1] if t + 1 < L else 0.0
            delta = r[b, t] + gamma * v_next - V[b, t]
            nxt_adv = delta + gamma * lam * nxt_adv
            out[b, t] = nxt_adv
    return out


def compute_advantages(
    estimator,
    outcome_rewards,
    step_rewards,
    offsets,
    positions,
    response_mask,
    group_index,
    alpha=0.1,
    gamma=1.0,
    lam=1.0,
    norm_by_std=True,
    values=None,
    token_rewards=None,
    process_std="group",
    stats_include_baseline=False,
    drop_first_token_reward=False,
    critic_target="gae",
):
    R = [float(x) for x in np.asarray(outcome_rewards, dtype=np.float64).reshape(-1)]
    steps = [float(x) for x in np.asarray(step_rewards, dtype=np.float64).reshape(-1)]
    offsets = [int(x) for x in np.asarray(offsets).reshape(-1)]
    positions = [int(x) for x in np.asarray(positions).reshape(-1)]
    groups = [int(x) for x in np.asarray(group_index).reshape(-1)]
    mask = np.asarray(response_mask)
    B, T = mask.shape
    lengths = _mask_rows(mask)
    alpha = float(alpha)
    gamma = float(gamma)
    lam = float(lam)
    if estimator == "dr_grpo":
        estimator, norm_by_std = "grpo", False
    V = None if values is None else np.asarray(values, dtype=np.float64)
    TR = None if token_rewards is None else np.asarray(token_rewards, dtype=np.float64)

    # group membership
    members = {}
    for b in range(B):
        members.setdefault(groups[b], []).append(b)

    # placed process rewards P and placement mask Mp
    P = np.zeros((B, T), dtype=np.float64)
    Mp = np.zeros((B, T), dtype=bool)
    for b in range(B):
        for j in range(offsets[b] + 1, offsets[b + 1]):
            t = positions[j] - 1
            if drop_first_token_reward and t == 0:
                continue  # the authors' code drops a reward on token 0
            P[b, t] = steps[j]
            Mp[b, t] = True

    def placed_of(rows):
        """The process rewards of ``rows`` as the statistics see them: with the baseline, one 0 per
        row but for a row with a reward on the last column, where the authors' code writes that 0."""
        rows = list(rows)
        vals = [P[b, t] for b in rows for t in range(T) if Mp[b, t]]
        zeros = sum(1 for b in rows if not Mp[b, T - 1])
        return vals + [0.0] * zeros if stats_include_baseline else vals

    all_vals = placed_of(range(B))
    batch_sd = math.sqrt(_var_unbiased(all_vals)) if len(all_vals) >= 2 else 1.0

    def outcome_group_stats(b):
        rows = members[groups[b]]
        if len(rows) == 1:
            return 0.0, 1.0
        vals = [R[i] for i in rows]
        return _mean(vals), math.sqrt(_var_unbiased(vals))

    def process_group_stats(b):
        rows = members[groups[b]]
        vals = placed_of(rows)
        if len(rows) == 1 or len(vals) < 2:
            return 0.0, 1.0
        if process_std == "batch":  # the group's mean, the whole batch's std
            return _mean(vals), batch_sd
        return _mean(vals), math.sqrt(_var_unbiased(vals))

    def group_normalised_P(divide):
        out = np.zeros((B, T), dtype=np.float64)
        for b in range(B):
            mu, sd = process_group_stats(b)
            for t in range(T):
                if Mp[b, t]:
                    out[b, t] = (P[b, t] - mu) / (sd + EPS_STD) if divide else P[b, t] - mu
        return out

    def token_outcome_rewards():
        r = np.zeros((B, T), dtype=np.float64)
        for b in range(B):
            L = lengths[b]
            if L > 0:
                r[b, L - 1] += R[b]
            if TR is not None:
                for t in range(L):
                    r[b, t] += TR[b, t]
        return r

    returns = None
    if estimator == "grpo":
        Phat = group_normalised_P(norm_by_std and process_std != "none")
        proc = revcumsum(Phat, lengths, gamma)
        adv = np.zeros((B, T), dtype=np.float64)
        for b in range(B):
            mu, sd = outcome_group_stats(b)
            A_b = (R[b] - mu) / (sd + EPS_STD) if norm_by_std else R[b] - mu
            for t in range(lengths[b]):
                adv[b, t] = A_b + alpha * proc[b, t]
    elif estimator == "ppo":
        r = token_outcome_rewards()
        raw = gae(r, V, lengths, gamma, lam)
        A_out = masked_whiten(raw, lengths)
        Phat = group_normalised_P(True)
        A_proc = masked_whiten(gae(Phat, V, lengths, gamma, lam), lengths)
        adv = np.zeros((B, T), dtype=np.float64)
        returns = np.zeros((B, T), dtype=np.float64)
        for b in range(B):
            for t in range(lengths[b]):
                adv[b, t] = A_out[b, t] + alpha * A_proc[b, t]
                target = adv[b, t] if critic_target == "advantages" else raw[b, t]
                returns[b, t] = target + V[b, t]
    elif estimator == "reinforce_pp":
        r = token_outcome_rewards()
        returns = revcumsum(r, lengths, gamma)
        A_out = masked_whiten(returns, lengths)
        vals = placed_of(range(B))
        if B == 1 or len(vals) < 2:
            mu, var = 0.0, 1.0
        else:
            mu, var = _mean(vals), _var_unbiased(vals)
        Phat = np.zeros((B, T), dtype=np.float64)
        for b in range(B):
            for t in range(T):
                if Mp[b, t]:
                    Phat[b, t] = (P[b, t] - mu) / math.sqrt(var + EPS_VAR)
        proc = revcumsum(Phat, lengths, gamma)
        adv = np.zeros((B, T), dtype=np.float64)
        for b in range(B):
            for t in range(lengths[b]):
                adv[b, t] = A_out[b, t] + alpha * proc[b, t]
    elif estimator == "reinforce_pp_baseline":
        base = np.zeros((B, T), dtype=np.float64)
        for b in range(B):
            mu, _ = outcome_group_stats(b)
            for t in range(lengths[b]):
                base[b, t] = R[b] - mu
        A_out = masked_whiten(base, lengths)
        Phat = group_normalised_P(False)
        proc = revcumsum(Phat, lengths, gamma)
        adv = np.zeros((B, T), dtype=np.float64)
        for b in range(B):
            for t in range(lengths[b]):
                adv[b, t] = A_out[b, t] + alpha * proc[b, t]
    else:  # pragma: no cover - the oracle does not validate
        raise AssertionError(f"unknown estimator {estimator!r}")

    return {
        "advantages": adv.astype(np.float32),
        "returns": None if returns is None else returns.astype(np.float32),
        "advantages64": adv,
        "returns64": returns,
    }


# --------------------------------------------------------------------------------------------
# docs/method.md, "Worked example", as data (shared by the tests)

WORKED = SimpleNamespace(
    token_ids=np.array(
        [
            [5, 7, 3, 4, 7, 6, 7, 8, 9, 2, 2, 0],
            [3, 3, 7, 5, 9, 4, 0, 0, 0, 0, 0, 0],
        ],
        dtype=np.int64,
    ),
    lengths=[11, 6],
    entropies=np.array(
        [
            [0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.1, 0.8, 0.2, 0.1, 0.1, 0.0],
            [0.3, 0.2, 0.1, 0.7, 0.5, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ],
        dtype=np.float64,
    ),
    delimiters=[7],
    think_end_id=9,
    k=2,
    w=0.1,
    alpha=0.1,
    gamma=1.0,
    outcome_rewards=np.array([1.0, 0.0]),
    group_index=np.array([0, 0]),
    ends=[9, 5],
    offsets=[0, 4, 7],
    positions=[0, 2, 7, 9, 0, 3, 5],
    J=[-2.0, -1.5, -1.8, -1.0, -2.5, -2.6, -2.0],
    magnitude=[0, 0.364851, 0.283702, 0.537883, 0, 0.222112, 0.335963],
    stability=[0, 1, 0.666667, 0.833333, 0, 0, 0.666667],
    score=[0, 0.428366, 0.321999, 0.567428, 0, 0.199901, 0.369034],
    reward=[0, 0.428366, -0.106367, 0.245429, 0, 0.199901, 0.169133],
    advantages=np.array(
        [
            [0.709989, 0.709989, 0.584755, 0.584755, 0.584755, 0.584755, 0.584755,
             0.737307, 0.737307, 0.707106, 0.707106, 0],
            [-0.709989, -0.709989, -0.709989, -0.716539, -0.716539, -0.707106,
             0, 0, 0, 0, 0, 0],
        ]
    ),
)


def worked_mask():
    m = np.zeros(WORKED.token_ids.shape, dtype=bool)
    for b, L in enumerate(WORKED.lengths):
        m[b, :L] = True
    return m
