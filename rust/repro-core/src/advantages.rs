//! Per-token advantages from outcome and process rewards (REPRO.md section 4).

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use ndarray::Array2;
use rayon::prelude::*;

use crate::error::{ensure, Error, Result};
use crate::parallel::map_rows;
use crate::ragged::row_ranges;
use crate::rows::{check_finite, check_shape, lengths, Mask, Rows};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    Grpo,
    DrGrpo,
    Ppo,
    ReinforcePp,
    ReinforcePpBaseline,
}

impl Estimator {
    pub const NAMES: [&'static str; 5] = ["grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline"];

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "grpo" => Self::Grpo,
            "dr_grpo" => Self::DrGrpo,
            "ppo" => Self::Ppo,
            "reinforce_pp" => Self::ReinforcePp,
            "reinforce_pp_baseline" => Self::ReinforcePpBaseline,
            _ => return Err(Error::new("estimator", format!("expected one of {:?}, got {name:?}", Self::NAMES))),
        })
    }
}

impl fmt::Display for Estimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::NAMES[*self as usize])
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub alpha: f64,
    pub gamma: f64,
    pub lam: f64,
    pub norm_by_std: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { alpha: 0.1, gamma: 1.0, lam: 1.0, norm_by_std: true }
    }
}

/// Advantages (B, T), and critic returns (B, T) for `ppo`; 0 outside the response mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    pub advantages: Array2<f32>,
    pub returns: Option<Array2<f32>>,
}

/// The inputs of `compute_advantages`, borrowed.
pub struct Batch<'a> {
    pub outcome_rewards: &'a [f64],
    pub step_rewards: &'a [f64],
    pub offsets: &'a [i64],
    pub positions: &'a [i64],
    pub response_mask: &'a dyn Mask,
    pub group_index: &'a [i64],
    pub values: Option<&'a dyn Rows<f64>>,
    pub token_rewards: Option<&'a dyn Rows<f64>>,
}

const STD_EPSILON: f64 = 1e-6;
const VAR_EPSILON: f64 = 1e-8;

/// Mean and unbiased std; `None` below two values.
fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    (values.len() >= 2).then(|| {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt())
    })
}

/// The rows of each group, groups in order of first appearance.
fn groups(labels: &[i64]) -> Vec<Vec<usize>> {
    let mut index = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (b, label) in labels.iter().enumerate() {
        let g = *index.entry(label).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        members[g].push(b);
    }
    members
}

/// Process rewards of one completion, each on the token that closes its span.
type Placed = Vec<(usize, f64)>;

/// Checks every input; returns the completion lengths and the row ranges of the cut points.
fn validate(
    estimator: Estimator,
    batch: &Batch,
    options: &Options,
    parallel: bool,
) -> Result<(Vec<usize>, Vec<Range<usize>>)> {
    let lengths = lengths(batch.response_mask, parallel)?;
    let (n_rows, width) = batch.response_mask.shape();
    let Options { alpha, gamma, lam, norm_by_std } = *options;
    ensure(alpha.is_finite(), "alpha", || format!("expected a finite number, got {alpha}"))?;
    ensure((0.0..=1.0).contains(&gamma), "gamma", || format!("expected a discount in [0, 1], got {gamma}"))?;
    ensure((0.0..=1.0).contains(&lam), "lam", || format!("expected a GAE lambda in [0, 1], got {lam}"))?;
    ensure(lam == 1.0 || estimator == Estimator::Ppo, "lam", || {
        format!("only the 'ppo' estimator uses lam, got lam={lam} with {estimator:?}")
    })?;
    ensure(norm_by_std || matches!(estimator, Estimator::Grpo | Estimator::DrGrpo), "norm_by_std", || {
        format!("only 'grpo' divides by a group std ('dr_grpo' never does); norm_by_std=False has no meaning for '{estimator}'")
    })?;
    match (estimator, batch.values) {
        (Estimator::Ppo, None) => {
            return Err(Error::new("values", "the 'ppo' estimator needs critic values (B, T), got None"))
        }
        (Estimator::Ppo, Some(values)) => check_shape("values", values, (n_rows, width), "response_mask")?,
        (_, Some(_)) => {
            return Err(Error::new(
                "values",
                format!("only the 'ppo' estimator uses critic values, got values with '{estimator}'"),
            ))
        }
        (_, None) => {}
    }
    if let Some(token_rewards) = batch.token_rewards {
        ensure(matches!(estimator, Estimator::Ppo | Estimator::ReinforcePp), "token_rewards", || {
            format!("only 'ppo' and 'reinforce_pp' use per-token rewards, got token_rewards with '{estimator}'")
        })?;
        check_shape("token_rewards", token_rewards, (n_rows, width), "response_mask")?;
    }
    for (argument, values) in [("outcome_rewards", batch.outcome_rewards), ("step_rewards", batch.step_rewards)] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::new(argument, format!("expected finite values, got {} at index {i}", values[i])));
        }
    }
    for (argument, len) in [("outcome_rewards", batch.outcome_rewards.len()), ("group_index", batch.group_index.len())]
    {
        ensure(len == n_rows, argument, || {
            format!("expected B = {n_rows} entries (the rows of response_mask), got {len}")
        })?;
    }
    ensure(batch.offsets.len() == n_rows + 1, "offsets", || {
        format!("expected B + 1 = {} entries (B from response_mask), got {}", n_rows + 1, batch.offsets.len())
    })?;
    let n_points = batch.step_rewards.len();
    ensure(batch.positions.len() == n_points, "positions", || {
        format!("expected N = {n_points} entries (the length of step_rewards), got {}", batch.positions.len())
    })?;
    let ranges = row_ranges(batch.offsets, n_points, "step_rewards")?;
    for (b, range) in ranges.iter().enumerate() {
        let row = &batch.positions[range.clone()];
        let len = lengths[b];
        if let Some(&first) = row.first() {
            ensure(first == 0, "positions", || {
                format!("row {b}: expected the baseline cut point 0 first, got {first}")
            })?;
        }
        if let Some(i) = row.windows(2).position(|w| w[1] <= w[0]) {
            return Err(Error::new(
                "positions",
                format!("row {b}: expected strictly increasing positions, got {} then {}", row[i], row[i + 1]),
            ));
        }
        if let Some(&last) = row.last() {
            ensure(last as usize <= len, "positions", || {
                format!("row {b}: position {last} lies beyond the completion length {len} (width {width})")
            })?;
        }
    }
    Ok((lengths, ranges))
}

/// (mean, 1 / sqrt(var + 1e-8)) of masked_whiten over `count` values with the given sum;
/// `squared_deviations(mean)` sums (x - mean)^2. Below two values it only subtracts the mean.
fn whitening(count: usize, sum: f64, squared_deviations: impl Fn(f64) -> f64) -> (f64, f64) {
    if count == 0 {
        return (0.0, 1.0);
    }
    let mean = sum / count as f64;
    if count < 2 {
        return (mean, 1.0);
    }
    (mean, 1.0 / (squared_deviations(mean) / (count - 1) as f64 + VAR_EPSILON).sqrt())
}

/// Whitening over every masked token of the batch, summed in row order so that the result does
/// not depend on scheduling.
fn whiten_rows(rows: &[Vec<f64>]) -> (f64, f64) {
    let count = rows.iter().map(Vec::len).sum();
    let sum = rows.iter().map(|r| r.iter().sum::<f64>()).sum();
    whitening(count, sum, |mean| rows.iter().map(|r| r.iter().map(|v| (v - mean).powi(2)).sum::<f64>()).sum())
}

/// revcumsum_gamma of a dense row.
fn discounted_sum(rewards: &[f64], gamma: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut out: Vec<f64> = rewards
        .iter()
        .rev()
        .map(|r| {
            acc = r + gamma * acc;
            acc
        })
        .collect();
    out.reverse();
    out
}

/// Writes `base(t) + scale * revcumsum_gamma(placed)_t` on every token of `out` (one row's
/// completion), from the end. Placed rewards are sparse and sorted by token.
fn write_row(out: &mut [f32], base: impl Fn(usize) -> f64, placed: &[(usize, f64)], gamma: f64, scale: f64) {
    let mut next = 0.0; // the discounted sum at token `end` (0 past the last token)
    let mut end = out.len();
    for &(token, reward) in placed.iter().rev() {
        next = reward + gamma * fill_span(out, token + 1..end, next, &base, gamma, scale);
        out[token] = (base(token) + scale * next) as f32;
        end = token;
    }
    fill_span(out, 0..end, next, &base, gamma, scale);
}

/// Tokens in `span` carry no reward, so the discounted sum only decays by gamma from `next`, its
/// value right after the span. Returns its value at the span's first token (`next` if empty).
fn fill_span(
    out: &mut [f32],
    span: Range<usize>,
    next: f64,
    base: impl Fn(usize) -> f64,
    gamma: f64,
    scale: f64,
) -> f64 {
    if gamma == 1.0 {
        // The default: a constant over the span, which this loop writes vectorised.
        for t in span {
            out[t] = (base(t) + scale * next) as f32;
        }
        return next;
    }
    let mut sum = next;
    for t in span.rev() {
        sum *= gamma;
        out[t] = (base(t) + scale * sum) as f32;
    }
    sum
}

/// Generalised advantage estimation over one completion (V after the last token is 0).
fn gae(rewards: &[f64], values: &[f64], gamma: f64, lam: f64, out: &mut Vec<f64>) {
    out.clear();
    out.resize(rewards.len(), 0.0);
    let mut acc = 0.0;
    let mut next_value = 0.0;
    for t in (0..rewards.len()).rev() {
        let delta = rewards[t] + gamma * next_value - values[t];
        acc = delta + gamma * lam * acc;
        out[t] = acc;
        next_value = values[t];
    }
}

/// Outcome reward on the last valid token plus the optional per-token rewards.
fn token_level_rewards(batch: &Batch, b: usize, len: usize, out: &mut Vec<f64>) -> Result<()> {
    out.clear();
    match batch.token_rewards {
        Some(rows) => {
            check_finite(rows, "token_rewards", b, len)?;
            let mut scratch = Vec::new();
            out.extend_from_slice(rows.row(b, len, &mut scratch));
        }
        None => out.resize(len, 0.0),
    }
    if let Some(last) = out.last_mut() {
        *last += batch.outcome_rewards[b];
    }
    Ok(())
}

pub fn compute_advantages(
    estimator: Estimator,
    batch: &Batch,
    options: &Options,
    parallel: bool,
) -> Result<Advantages> {
    let (lengths, ranges) = validate(estimator, batch, options, parallel)?;
    let (n_rows, width) = batch.response_mask.shape();
    let Options { alpha, gamma, lam, norm_by_std } = *options;
    let members = groups(batch.group_index);

    // Process rewards r_j (j >= 1) on token p_j - 1.
    let mut placed: Vec<Placed> = ranges
        .iter()
        .map(|range| range.clone().skip(1).map(|i| (batch.positions[i] as usize - 1, batch.step_rewards[i])).collect())
        .collect();

    // Normalise process rewards per group (or over the batch for reinforce_pp).
    let divide_by_std = norm_by_std && matches!(estimator, Estimator::Grpo | Estimator::Ppo);
    let process_groups: Vec<Vec<usize>> = match estimator {
        Estimator::ReinforcePp => vec![(0..n_rows).collect()],
        _ => members.clone(),
    };
    for rows in &process_groups {
        let rewards: Vec<f64> = rows.iter().flat_map(|&b| placed[b].iter().map(|&(_, r)| r)).collect();
        let (mu, sigma) = mean_std(&rewards).filter(|_| rows.len() >= 2).unwrap_or((0.0, 1.0));
        let scale = match estimator {
            Estimator::ReinforcePp => 1.0 / (sigma * sigma + VAR_EPSILON).sqrt(),
            _ if divide_by_std => 1.0 / (sigma + STD_EPSILON),
            _ => 1.0,
        };
        for &b in rows {
            for (_, r) in placed[b].iter_mut() {
                *r = (*r - mu) * scale;
            }
        }
    }

    // Outcome advantage per completion, from group statistics of R.
    let outcome_per_row = || -> Vec<f64> {
        let mut out = vec![0.0; n_rows];
        for rows in &members {
            let rewards: Vec<f64> = rows.iter().map(|&b| batch.outcome_rewards[b]).collect();
            let (mean, std) = mean_std(&rewards).unwrap_or((0.0, 1.0));
            for &b in rows {
                out[b] = batch.outcome_rewards[b] - mean;
                if estimator == Estimator::Grpo && norm_by_std {
                    out[b] /= std + STD_EPSILON;
                }
            }
        }
        out
    };

    let mut advantages = vec![0.0f32; n_rows * width];
    // Each row writes the first `lengths[b]` values of its slice; the rest stays 0.
    let fill_rows = |target: &mut [f32], fill: &(dyn Fn(usize, &mut [f32]) + Sync)| {
        let fill_one = |(b, row): (usize, &mut [f32])| fill(b, &mut row[..lengths[b]]);
        if parallel {
            target.par_chunks_mut(width).enumerate().for_each(fill_one);
        } else {
            target.chunks_mut(width).enumerate().for_each(fill_one);
        }
    };
    let mut returns = None;
    match estimator {
        Estimator::Grpo | Estimator::DrGrpo | Estimator::ReinforcePpBaseline => {
            let mut outcome = outcome_per_row();
            if estimator == Estimator::ReinforcePpBaseline {
                // masked_whiten of a per-row constant: each row weighs by its length.
                let weighted = || outcome.iter().zip(&lengths).map(|(&x, &len)| (x, len as f64));
                let (mean, inv_std) = whitening(lengths.iter().sum(), weighted().map(|(x, n)| x * n).sum(), |mean| {
                    weighted().map(|(x, n)| n * (x - mean).powi(2)).sum()
                });
                outcome.iter_mut().for_each(|x| *x = (*x - mean) * inv_std);
            }
            fill_rows(&mut advantages, &|b, row| write_row(row, |_| outcome[b], &placed[b], gamma, alpha));
        }
        Estimator::ReinforcePp => {
            let discounted = map_rows(n_rows, parallel, Vec::new, |rewards, b| {
                token_level_rewards(batch, b, lengths[b], rewards)?;
                Ok(discounted_sum(rewards, gamma))
            })?;
            let (mean, inv_std) = whiten_rows(&discounted);
            fill_rows(&mut advantages, &|b, row| {
                write_row(row, |t| (discounted[b][t] - mean) * inv_std, &placed[b], gamma, alpha);
            });
        }
        Estimator::Ppo => {
            let Some(values) = batch.values else { unreachable!("validate() requires values for ppo") };
            let gaes = map_rows(
                n_rows,
                parallel,
                || (Vec::new(), Vec::new()),
                |(rewards, scratch), b| {
                    check_finite(values, "values", b, lengths[b])?;
                    let v = values.row(b, lengths[b], scratch);
                    token_level_rewards(batch, b, lengths[b], rewards)?;
                    let mut outcome = Vec::new();
                    gae(rewards, v, gamma, lam, &mut outcome);
                    rewards.iter_mut().for_each(|r| *r = 0.0);
                    for &(t, r) in &placed[b] {
                        rewards[t] = r;
                    }
                    let mut process = Vec::new();
                    gae(rewards, v, gamma, lam, &mut process);
                    Ok((outcome, process))
                },
            )?;
            let (outcome, process): (Vec<_>, Vec<_>) = gaes.into_iter().unzip();
            let (outcome_mean, outcome_inv_std) = whiten_rows(&outcome);
            let (process_mean, process_inv_std) = whiten_rows(&process);
            let advantage = |b: usize, t: usize| {
                (outcome[b][t] - outcome_mean) * outcome_inv_std
                    + alpha * (process[b][t] - process_mean) * process_inv_std
            };
            fill_rows(&mut advantages, &|b, row| {
                row.iter_mut().enumerate().for_each(|(t, out)| *out = advantage(b, t) as f32);
            });
            let mut critic_returns = vec![0.0f32; n_rows * width];
            fill_rows(&mut critic_returns, &|b, row| {
                let mut scratch = Vec::new();
                let v = values.row(b, row.len(), &mut scratch);
                row.iter_mut().enumerate().for_each(|(t, out)| *out = (advantage(b, t) + v[t]) as f32);
            });
            returns = Some(critic_returns);
        }
    }
    let shape = (n_rows, width);
    let to_array = |data: Vec<f32>| Array2::from_shape_vec(shape, data).expect("buffer has B * T entries");
    Ok(Advantages { advantages: to_array(advantages), returns: returns.map(to_array) })
}
