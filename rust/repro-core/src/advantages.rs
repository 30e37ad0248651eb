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

impl Options {
    /// The checks of the options for `estimator`, which need no data.
    pub fn check(&self, estimator: Estimator) -> Result<()> {
        let Self { alpha, gamma, lam, norm_by_std } = *self;
        ensure(alpha.is_finite(), "alpha", || format!("expected a finite number, got {alpha}"))?;
        ensure((0.0..=1.0).contains(&gamma), "gamma", || format!("expected a discount in [0, 1], got {gamma}"))?;
        ensure((0.0..=1.0).contains(&lam), "lam", || format!("expected a GAE lambda in [0, 1], got {lam}"))?;
        ensure(lam == 1.0 || estimator == Estimator::Ppo, "lam", || {
            format!("only the 'ppo' estimator uses lam, got lam={lam} with '{estimator}'")
        })?;
        ensure(norm_by_std || matches!(estimator, Estimator::Grpo | Estimator::DrGrpo), "norm_by_std", || {
            format!("only 'grpo' divides by a group std ('dr_grpo' never does); norm_by_std=False has no meaning for '{estimator}'")
        })
    }
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

/// R_b minus its group's mean, divided by the group's std + 1e-6 when asked (a one-completion
/// group uses mean 0, std 1).
fn outcome_advantages(outcome_rewards: &[f64], groups: &[Vec<usize>], divide_by_std: bool) -> Vec<f64> {
    let mut out = vec![0.0; outcome_rewards.len()];
    for rows in groups {
        let rewards: Vec<f64> = rows.iter().map(|&b| outcome_rewards[b]).collect();
        let (mean, std) = Moments::of(&rewards).mean_std().unwrap_or((0.0, 1.0));
        for &b in rows {
            out[b] = outcome_rewards[b] - mean;
            if divide_by_std {
                out[b] /= std + STD_EPSILON;
            }
        }
    }
    out
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
    options.check(estimator)?;
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

/// Count, mean and sum of squared deviations of some values. Merging them in row order (Chan
/// et al.) gives batch statistics without keeping the values, independent of scheduling.
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    count: f64,
    mean: f64,
    squared_deviations: f64,
}

impl Moments {
    fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let count = values.len() as f64;
        let mean = values.iter().sum::<f64>() / count;
        Self { count, mean, squared_deviations: values.iter().map(|v| (v - mean).powi(2)).sum() }
    }

    /// `count` copies of `value`.
    fn repeated(value: f64, count: usize) -> Self {
        Self { count: count as f64, mean: value, squared_deviations: 0.0 }
    }

    fn merge(self, other: Self) -> Self {
        let count = self.count + other.count;
        if count == 0.0 {
            return self;
        }
        let delta = other.mean - self.mean;
        Self {
            count,
            mean: self.mean + delta * other.count / count,
            squared_deviations: self.squared_deviations
                + other.squared_deviations
                + delta * delta * self.count * other.count / count,
        }
    }

    /// Mean and unbiased std; `None` below two values.
    fn mean_std(self) -> Option<(f64, f64)> {
        (self.count >= 2.0).then(|| (self.mean, (self.squared_deviations / (self.count - 1.0)).sqrt()))
    }

    /// (mean, 1 / sqrt(var + 1e-8)) of masked_whiten; below two values it only subtracts the mean.
    fn whitening(self) -> (f64, f64) {
        if self.count < 2.0 {
            return (self.mean, 1.0);
        }
        (self.mean, 1.0 / (self.squared_deviations / (self.count - 1.0) + VAR_EPSILON).sqrt())
    }
}

/// revcumsum_gamma of a dense row.
fn discounted_sum(rewards: &[f64], gamma: f64, out: &mut Vec<f64>) {
    out.clear();
    out.resize(rewards.len(), 0.0);
    let mut acc = 0.0;
    for t in (0..rewards.len()).rev() {
        acc = rewards[t] + gamma * acc;
        out[t] = acc;
    }
}

/// Runs `fill(state, b, row)` on every row of a (B, T) output, `row` cut to the completion (the
/// rest stays 0); rows run in parallel when asked, each worker with its own scratch state.
fn fill_rows<S>(
    target: &mut [f32],
    lengths: &[usize],
    parallel: bool,
    init: impl Fn() -> S + Send + Sync,
    fill: impl Fn(&mut S, usize, &mut [f32]) + Send + Sync,
) {
    let width = target.len() / lengths.len();
    let fill_one = |state: &mut S, (b, row): (usize, &mut [f32])| fill(state, b, &mut row[..lengths[b]]);
    if parallel {
        target.par_chunks_mut(width).enumerate().for_each_init(init, fill_one);
    } else {
        let mut state = init();
        target.chunks_mut(width).enumerate().for_each(|row| fill_one(&mut state, row));
    }
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
#[inline(always)]
fn fill_span(
    out: &mut [f32],
    span: Range<usize>,
    next: f64,
    base: impl Fn(usize) -> f64,
    gamma: f64,
    scale: f64,
) -> f64 {
    let start = span.start;
    let out = &mut out[span];
    if gamma == 1.0 {
        // The default: the sum is constant over the span, and this loop vectorises.
        for (i, value) in out.iter_mut().enumerate() {
            *value = (base(start + i) + scale * next) as f32;
        }
        return next;
    }
    let mut sum = next;
    for (i, value) in out.iter_mut().enumerate().rev() {
        sum *= gamma;
        *value = (base(start + i) + scale * sum) as f32;
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

/// Outcome reward on the last valid token plus the optional per-token rewards (checked finite).
fn token_level_rewards(batch: &Batch, b: usize, len: usize, out: &mut Vec<f64>, scratch: &mut Vec<f64>) {
    out.clear();
    match batch.token_rewards {
        Some(rows) => out.extend_from_slice(rows.row(b, len, scratch)),
        None => out.resize(len, 0.0),
    }
    if let Some(last) = out.last_mut() {
        *last += batch.outcome_rewards[b];
    }
}

/// Scratch rows of one worker.
#[derive(Default)]
struct Scratch {
    rewards: Vec<f64>,
    widened: Vec<f64>,
    first: Vec<f64>,
    second: Vec<f64>,
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
    let whole_batch = [(0..n_rows).collect::<Vec<_>>()];
    let process_groups = if estimator == Estimator::ReinforcePp { &whole_batch[..] } else { &members[..] };
    for rows in process_groups {
        let rewards: Vec<f64> = rows.iter().flat_map(|&b| placed[b].iter().map(|&(_, r)| r)).collect();
        let (mu, sigma) = Moments::of(&rewards).mean_std().filter(|_| rows.len() >= 2).unwrap_or((0.0, 1.0));
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

    // Checked once here, so that the passes below cannot fail.
    for (argument, rows) in [("values", batch.values), ("token_rewards", batch.token_rewards)] {
        if let Some(rows) = rows {
            map_rows(n_rows, parallel, || (), |_, b| check_finite(rows, argument, b, lengths[b]))?;
        }
    }
    let merge_in_row_order = |moments: Vec<Moments>| moments.into_iter().fold(Moments::default(), Moments::merge);

    let mut advantages = vec![0.0f32; n_rows * width];
    let mut returns = None;
    match estimator {
        Estimator::Grpo | Estimator::DrGrpo | Estimator::ReinforcePpBaseline => {
            let mut outcome =
                outcome_advantages(batch.outcome_rewards, &members, estimator == Estimator::Grpo && norm_by_std);
            if estimator == Estimator::ReinforcePpBaseline {
                // masked_whiten of a per-row constant: each row counts once per token.
                let rows = outcome.iter().zip(&lengths).map(|(&x, &len)| Moments::repeated(x, len)).collect();
                let (mean, inv_std) = merge_in_row_order(rows).whitening();
                outcome.iter_mut().for_each(|x| *x = (*x - mean) * inv_std);
            }
            fill_rows(
                &mut advantages,
                &lengths,
                parallel,
                || (),
                |_, b, row| write_row(row, |_| outcome[b], &placed[b], gamma, alpha),
            );
        }
        Estimator::ReinforcePp => {
            // Discounted token rewards, computed twice rather than kept for the whole batch:
            // once for their moments, once to write them whitened.
            let discounted = |s: &mut Scratch, b: usize| {
                token_level_rewards(batch, b, lengths[b], &mut s.rewards, &mut s.widened);
                discounted_sum(&s.rewards, gamma, &mut s.first);
            };
            let moments = map_rows(n_rows, parallel, Scratch::default, |s, b| {
                discounted(s, b);
                Ok(Moments::of(&s.first))
            })?;
            let (mean, inv_std) = merge_in_row_order(moments).whitening();
            fill_rows(&mut advantages, &lengths, parallel, Scratch::default, |s, b, row| {
                discounted(s, b);
                write_row(row, |t| (s.first[t] - mean) * inv_std, &placed[b], gamma, alpha);
            });
        }
        Estimator::Ppo => {
            let Some(values) = batch.values else { unreachable!("validate() requires values for ppo") };
            // GAE of the outcome rewards into `first` and of the process rewards into `second`,
            // recomputed in each pass rather than kept for the whole batch.
            let gaes = |s: &mut Scratch, b: usize| {
                let len = lengths[b];
                token_level_rewards(batch, b, len, &mut s.rewards, &mut s.widened);
                let v = values.row(b, len, &mut s.widened);
                gae(&s.rewards, v, gamma, lam, &mut s.first);
                s.rewards.iter_mut().for_each(|r| *r = 0.0);
                for &(t, r) in &placed[b] {
                    s.rewards[t] = r;
                }
                gae(&s.rewards, v, gamma, lam, &mut s.second);
            };
            let moments = map_rows(n_rows, parallel, Scratch::default, |s, b| {
                gaes(s, b);
                Ok((Moments::of(&s.first), Moments::of(&s.second)))
            })?;
            let (outcome, process): (Vec<_>, Vec<_>) = moments.into_iter().unzip();
            let (outcome_mean, outcome_inv_std) = merge_in_row_order(outcome).whitening();
            let (process_mean, process_inv_std) = merge_in_row_order(process).whitening();
            let advantage = |outcome: f64, process: f64| {
                (outcome - outcome_mean) * outcome_inv_std + alpha * (process - process_mean) * process_inv_std
            };
            fill_rows(&mut advantages, &lengths, parallel, Scratch::default, |s, b, row| {
                gaes(s, b);
                for (t, out) in row.iter_mut().enumerate() {
                    *out = advantage(s.first[t], s.second[t]) as f32;
                }
            });
            let mut critic_returns = vec![0.0f32; n_rows * width];
            fill_rows(&mut critic_returns, &lengths, parallel, Scratch::default, |s, b, row| {
                gaes(s, b);
                let v = values.row(b, row.len(), &mut s.widened);
                for (t, out) in row.iter_mut().enumerate() {
                    *out = (advantage(s.first[t], s.second[t]) + v[t]) as f32;
                }
            });
            returns = Some(critic_returns);
        }
    }
    let shape = (n_rows, width);
    let to_array = |data: Vec<f32>| Array2::from_shape_vec(shape, data).expect("buffer has B * T entries");
    Ok(Advantages { advantages: to_array(advantages), returns: returns.map(to_array) })
}
