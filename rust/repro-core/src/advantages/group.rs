//! Groups of completions of one prompt: the outcome-group estimators (grpo, dr_grpo,
//! reinforce_pp_baseline), and the normalisation of the process rewards, which every estimator
//! but reinforce_pp does per group.

use std::collections::HashMap;
use std::ops::Range;

use super::moments::{Moments, VAR_EPSILON};
use super::overflow::{process_sums, Culprits, Input, Term};
use super::rowwise::{fill_rows, write_row};
use super::{Batch, Estimator, Options, Placed, Prepared, ProcessStd};
use crate::error::Result;

/// Added to a group's std before dividing by it (grpo, ppo).
const STD_EPSILON: f64 = 1e-6;

/// The rows of each group, groups in order of first appearance.
pub(super) fn groups(labels: &[i64]) -> Vec<Vec<usize>> {
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

/// Process rewards r_j (j >= 1) on token p_j - 1, minus the mean of their group and divided by
/// its std when the estimator does (a one-completion group uses mean 0, std 1). reinforce_pp
/// whitens them over the whole batch instead, as its token rewards. grpo's `process_std` may take
/// the std over the whole batch's rewards instead, or none. `stats_include_baseline` adds one 0
/// per completion to every statistic, but for a completion with a reward on the batch's last
/// token; `drop_first_token_reward` drops rewards on token 0.
/// Statistics or normalised rewards out of range are errors on `step_rewards`.
pub(super) fn process_rewards(
    estimator: Estimator,
    batch: &Batch,
    ranges: &[Range<usize>],
    members: &[Vec<usize>],
    options: &Options,
    culprits: &Culprits,
) -> Result<Vec<Placed>> {
    let drop_first = options.drop_first_token_reward;
    let mut placed: Vec<Placed> = ranges
        .iter()
        .map(|range| {
            range
                .clone()
                .skip(1)
                .map(|i| (batch.positions[i] as usize - 1, batch.step_rewards[i]))
                .filter(|&(t, _)| !(drop_first && t == 0))
                .collect()
        })
        .collect();
    // The authors' code writes the baseline's 0 on token -1, the last column: a row whose
    // reward sits there (a response as wide as the batch) keeps that reward and adds no 0.
    let last_column = batch.response_mask.shape().1 - 1;
    let baseline_zeros = |placed: &[Placed], rows: &[usize]| {
        rows.iter().filter(|&&b| !placed[b].iter().any(|&(t, _)| t == last_column)).count()
    };
    // The rewards of some rows (a group, or the whole batch), as the statistics see them.
    let statistics = |placed: &[Placed], rows: &[usize], scope: &dyn Fn() -> String| {
        let mut rewards: Vec<f64> = rows.iter().flat_map(|&b| placed[b].iter().map(|&(_, r)| r)).collect();
        if options.stats_include_baseline {
            rewards.extend(std::iter::repeat_n(0.0, baseline_zeros(placed, rows)));
        }
        culprits.finite(Moments::of(&rewards), &[Input::StepRewards], || {
            format!("the mean and std of the process rewards of {}", scope())
        })
    };
    let divide_by_std = options.norm_by_std && matches!(estimator, Estimator::Grpo | Estimator::Ppo);
    let whole_batch = [(0..placed.len()).collect::<Vec<_>>()];
    let batch_sigma = match (estimator, options.process_std) {
        (Estimator::Grpo, ProcessStd::Batch) => {
            statistics(&placed, &whole_batch[0], &|| "the batch".into())?.mean_std().map_or(1.0, |(_, sigma)| sigma)
        }
        _ => 1.0,
    };
    let process_groups = if estimator == Estimator::ReinforcePp { &whole_batch[..] } else { members };
    for rows in process_groups {
        let scope = || match estimator {
            Estimator::ReinforcePp => "the batch".into(),
            _ => format!("the group of row {}", rows[0]),
        };
        let stats = statistics(&placed, rows, &scope)?.mean_std().filter(|_| rows.len() >= 2);
        let (mu, sigma) = stats.unwrap_or((0.0, 1.0));
        // The batch's std replaces the group's where the group has one.
        let sigma = if options.process_std == ProcessStd::Batch && stats.is_some() { batch_sigma } else { sigma };
        let scale = match estimator {
            Estimator::ReinforcePp => 1.0 / (sigma * sigma + VAR_EPSILON).sqrt(),
            _ if divide_by_std && options.process_std != ProcessStd::None => 1.0 / (sigma + STD_EPSILON),
            _ => 1.0,
        };
        for &b in rows {
            for (_, r) in placed[b].iter_mut() {
                *r = (*r - mu) * scale;
            }
            if !placed[b].iter().all(|(_, r)| r.is_finite()) {
                return Err(
                    culprits.error(&[Input::StepRewards], &format!("the normalised process rewards of row {b}"))
                );
            }
        }
    }
    Ok(placed)
}

/// grpo, dr_grpo and reinforce_pp_baseline: a per-row constant from the outcome rewards of the
/// group, plus alpha times the discounted sum of the normalised process rewards.
pub(super) fn outcome_group(
    estimator: Estimator,
    members: &[Vec<usize>],
    prepared: &Prepared,
    target: &mut [f32],
) -> Result<()> {
    let Prepared { batch, options, ref lengths, ref placed, parallel } = *prepared;
    let culprits = prepared.culprits();
    let divide_by_std = estimator == Estimator::Grpo && options.norm_by_std;
    let mut outcome = outcome_advantages(batch.outcome_rewards, members, divide_by_std, &culprits)?;
    if estimator == Estimator::ReinforcePpBaseline {
        // masked_whiten of a per-row constant: each row counts once per token.
        let rows = outcome.iter().zip(lengths).map(|(&x, &len)| Moments::repeated(x, len));
        let moments = culprits.finite(Moments::merged(rows), &[Input::OutcomeRewards], || {
            "the batch mean and std of the outcome advantages".into()
        })?;
        let (mean, inv_std) = moments.whitening();
        outcome.iter_mut().for_each(|x| *x = (*x - mean) * inv_std);
    }
    let Options { alpha, gamma, .. } = options;
    let fill = |_: &mut (), b: usize, row: &mut [f32]| write_row(row, |_| outcome[b], &placed[b], gamma, alpha);
    fill_rows(
        target,
        lengths,
        parallel,
        || (),
        fill,
        |b| {
            let terms = [
                (Term::Inputs(&[Input::OutcomeRewards]), vec![outcome[b]; lengths[b]]),
                (Term::Alpha(&[Input::StepRewards]), process_sums(&placed[b], lengths[b], gamma)),
            ];
            culprits.output_error(b, "the advantages", &terms)
        },
    )
}

/// R_b minus its group's mean, divided by the group's std + 1e-6 when asked (a one-completion
/// group uses mean 0, std 1).
fn outcome_advantages(
    outcome_rewards: &[f64],
    groups: &[Vec<usize>],
    divide_by_std: bool,
    culprits: &Culprits,
) -> Result<Vec<f64>> {
    let mut out = vec![0.0; outcome_rewards.len()];
    for rows in groups {
        let rewards: Vec<f64> = rows.iter().map(|&b| outcome_rewards[b]).collect();
        let moments = culprits.finite(Moments::of(&rewards), &[Input::OutcomeRewards], || {
            format!("the mean and std of the outcome rewards of the group of row {}", rows[0])
        })?;
        let (mean, std) = moments.mean_std().unwrap_or((0.0, 1.0));
        for &b in rows {
            out[b] = outcome_rewards[b] - mean;
            if divide_by_std {
                out[b] /= std + STD_EPSILON;
            }
            if !out[b].is_finite() {
                return Err(culprits.error(&[Input::OutcomeRewards], &format!("the outcome advantage of row {b}")));
            }
        }
    }
    Ok(out)
}
