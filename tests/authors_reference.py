"""The authors' reference arithmetic of the process advantages, written on its own in torch.

Written from docs/semantics.md ("Departures from the reference code"), not from repro_core nor
tests/reference.py, in the authors' code's style (dense (B, T) tensors, masks, one pass per group)
rather than the oracle's loops. It has the three quirks that repro_core makes options of, all on:

- the baseline cut point (j = 0) counts in the process-reward statistics as a 0 written on token
  -1, the last column, where a response as wide as the batch has its end reward: such a row keeps
  that reward and counts no 0 (``stats_include_baseline``);
- a process reward placed on token 0 (a cut at p = 1) is dropped, from the statistics and from the
  advantage (``drop_first_token_reward``);
- ppo's critic target is the combined advantage plus V (``critic_target="advantages"``).

Only grpo and ppo, the two estimators of the authors' code. Inputs are valid by assumption.
"""

from __future__ import annotations

import numpy as np
import torch

STD_EPS = 1e-6  # group std + eps (grpo's outcome and the process rewards)
WHITEN_EPS = 1e-8  # masked_whiten: rsqrt(var + eps)


def _dense_process_rewards(step_rewards, offsets, positions, shape):
    """(B, T) process rewards on token p_j - 1, j = 0 included, and two masks: the cells the
    statistics count and the rewards placed (j >= 1), token 0 left out of both."""
    rewards = torch.zeros(shape, dtype=torch.float64)
    counted = torch.zeros(shape, dtype=torch.bool)
    placed = torch.zeros(shape, dtype=torch.bool)
    for b in range(shape[0]):
        for j in range(int(offsets[b]), int(offsets[b + 1])):
            t = int(positions[j]) - 1  # the baseline (p = 0) lands on t = -1, the last column
            if t == 0:
                continue  # the authors' code: a reward on the first token is lost
            # A later reward on the last column (a response as wide as the batch) overwrites the
            # baseline's 0 there: that row counts no 0.
            rewards[b, t] = float(step_rewards[j]) if t >= 0 else 0.0
            counted[b, t] = True
            placed[b, t] = t >= 0
    return rewards, counted, placed


def _normalise_per_group(rewards, counted, placed, group_index):
    """(r - mean) / (std + eps) per group, over the counted cells (the placed rewards and the
    baseline's 0s), on the placed rewards; a one-completion group keeps mean 0, std 1."""
    out = torch.zeros_like(rewards)
    labels = torch.as_tensor(np.unique(np.asarray(group_index), return_inverse=True)[1])
    for g in labels.unique():
        rows = labels == g
        if int(rows.sum()) < 2:
            mean, std = 0.0, 1.0
        else:
            values = rewards[rows][counted[rows]]
            mean, std = values.mean(), values.std(unbiased=True)
        out[rows] = torch.where(placed[rows], (rewards[rows] - mean) / (std + STD_EPS), 0.0)
    return out


def _discounted_suffix_sums(x, gamma):
    """sum_{s >= t} gamma^(s - t) x[s] along T, as one matrix product."""
    T = x.shape[1]
    t = torch.arange(T, dtype=torch.float64)
    exponent = t[None, :] - t[:, None]  # [t, s] = s - t
    weights = torch.where(exponent >= 0, torch.tensor(gamma, dtype=torch.float64) ** exponent.clamp(min=0), 0.0)
    return x @ weights.T


def _gae(rewards, values, mask, gamma, lam):
    B, T = rewards.shape
    values = values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=torch.float64)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros(B, dtype=torch.float64)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    return advantages * mask


def _masked_whiten(x, mask):
    n = mask.sum()
    mean = (x * mask).sum() / n
    var = (((x - mean) ** 2) * mask).sum() / n
    if n >= 2:
        var = var * n / (n - 1)  # unbiased, as verl's masked_var
    else:
        return (x - mean) * mask
    return (x - mean) * torch.rsqrt(var + WHITEN_EPS) * mask


def authors_advantages(
    estimator, outcome_rewards, step_rewards, offsets, positions, response_mask, group_index,
    *, alpha, gamma=1.0, lam=1.0, values=None,
):
    """(advantages, returns) as float64 NumPy arrays; returns is None for grpo."""
    mask = torch.as_tensor(np.asarray(response_mask, dtype=np.float64))
    shape = tuple(mask.shape)
    R = torch.as_tensor(np.asarray(outcome_rewards, dtype=np.float64))
    rewards, counted, placed = _dense_process_rewards(step_rewards, offsets, positions, shape)
    normalised = _normalise_per_group(rewards, counted, placed, group_index)
    if estimator == "grpo":
        labels = np.unique(np.asarray(group_index), return_inverse=True)[1]
        outcome = torch.zeros_like(R)
        for g in np.unique(labels):
            rows = torch.as_tensor(labels == g)
            if int(rows.sum()) < 2:
                outcome[rows] = R[rows]
            else:
                outcome[rows] = (R[rows] - R[rows].mean()) / (R[rows].std(unbiased=True) + STD_EPS)
        process = _discounted_suffix_sums(normalised, gamma)
        return ((outcome[:, None] + alpha * process) * mask).numpy(), None
    assert estimator == "ppo", estimator
    V = torch.as_tensor(np.nan_to_num(np.asarray(values, dtype=np.float64)))
    lengths = mask.sum(1).long()
    token_rewards = torch.zeros(shape, dtype=torch.float64)
    for b in range(shape[0]):
        if lengths[b] > 0:
            token_rewards[b, lengths[b] - 1] = R[b]
    outcome = _masked_whiten(_gae(token_rewards, V, mask, gamma, lam), mask)
    process = _masked_whiten(_gae(normalised, V, mask, gamma, lam), mask)
    advantages = (outcome + alpha * process) * mask
    returns = (advantages + V) * mask  # the authors' critic target: the advantage plus V
    return advantages.numpy(), returns.numpy()
