//! The checks of every input of `compute_advantages`, done before any arithmetic so that the
//! estimators can fail only on a result out of range (`overflow`). The first problem found is the
//! error, in a fixed order.

use std::ops::Range;

use super::{Batch, Estimator, Options};
use crate::error::{ensure, Error, Result};
use crate::parallel::map_rows;
use crate::ragged::row_ranges;
use crate::rows::{check_finite, check_shape, lengths};

/// Checks every input; returns the completion lengths and the row ranges of the cut points.
pub(super) fn validate(
    estimator: Estimator,
    batch: &Batch,
    options: &Options,
    parallel: bool,
) -> Result<(Vec<usize>, Vec<Range<usize>>)> {
    let lengths = lengths(batch.response_mask, parallel)?;
    options.check(estimator)?;
    check_dense_inputs(estimator, batch)?;
    check_ragged_inputs(batch)?;
    let ranges = row_ranges(batch.offsets, batch.step_rewards.len(), "step_rewards")?;
    check_positions(batch, &ranges, &lengths)?;
    check_dense_values(batch, &lengths, parallel)?;
    Ok((lengths, ranges))
}

/// Critic values (ppo only, and required there) and per-token rewards (ppo and reinforce_pp):
/// present only where the estimator uses them, with the shape of the response mask.
fn check_dense_inputs(estimator: Estimator, batch: &Batch) -> Result<()> {
    let shape = batch.response_mask.shape();
    match (estimator, batch.values) {
        (Estimator::Ppo, None) => {
            return Err(Error::new("values", "the 'ppo' estimator needs critic values (B, T), got None"))
        }
        (Estimator::Ppo, Some(values)) => check_shape("values", values, shape, "response_mask")?,
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
        check_shape("token_rewards", token_rewards, shape, "response_mask")?;
    }
    Ok(())
}

/// The per-row and per-cut-point lists: finite rewards, and lengths that agree with B and N.
fn check_ragged_inputs(batch: &Batch) -> Result<()> {
    let (n_rows, _) = batch.response_mask.shape();
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
    })
}

/// Each row's cut points: the baseline 0 first, strictly increasing, within the completion.
fn check_positions(batch: &Batch, ranges: &[Range<usize>], lengths: &[usize]) -> Result<()> {
    let (_, width) = batch.response_mask.shape();
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
    Ok(())
}

/// Critic values and per-token rewards finite inside the mask, checked once here so that the
/// passes of the estimators cannot fail.
fn check_dense_values(batch: &Batch, lengths: &[usize], parallel: bool) -> Result<()> {
    for (argument, rows) in [("values", batch.values), ("token_rewards", batch.token_rewards)] {
        if let Some(rows) = rows {
            map_rows(lengths.len(), parallel, || (), |_, b| check_finite(rows, argument, b, lengths[b]))?;
        }
    }
    Ok(())
}
