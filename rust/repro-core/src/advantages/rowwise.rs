//! Row by row: the (B, T) output writers every estimator shares, and the per-row inputs they
//! read. Nothing here keeps a (B, T) float64 array: each worker recomputes a row in its scratch.

use std::ops::Range;

use rayon::prelude::*;

use super::overflow::all_finite;
use super::Batch;
use crate::error::{Error, Result};

/// Scratch rows of one worker.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) rewards: Vec<f64>,
    pub(super) widened: Vec<f64>,
    pub(super) first: Vec<f64>,
    pub(super) second: Vec<f64>,
}

/// Runs `fill(state, b, row)` on every row of a (B, T) output, `row` cut to the completion (the
/// rest stays 0); rows run in parallel when asked, each worker with its own scratch state. A row
/// that comes out with a value out of range is refused with `blame(b)` (the first such row).
pub(super) fn fill_rows<S>(
    target: &mut [f32],
    lengths: &[usize],
    parallel: bool,
    init: impl Fn() -> S + Send + Sync,
    fill: impl Fn(&mut S, usize, &mut [f32]) + Send + Sync,
    blame: impl Fn(usize) -> Error,
) -> Result<()> {
    let width = target.len() / lengths.len();
    let fill_one = |state: &mut S, (b, row): (usize, &mut [f32])| {
        let row = &mut row[..lengths[b]];
        fill(state, b, row);
        all_finite(row)
    };
    let first_bad = if parallel {
        let rows = target.par_chunks_mut(width).enumerate();
        rows.map_init(init, |state, (b, row)| (b, fill_one(state, (b, row))))
            .filter(|&(_, ok)| !ok)
            .map(|(b, _)| b)
            .min()
    } else {
        let mut state = init();
        target
            .chunks_mut(width)
            .enumerate()
            .map(|(b, row)| (b, fill_one(&mut state, (b, row))))
            .find(|&(_, ok)| !ok)
            .map(|(b, _)| b)
    };
    first_bad.map_or(Ok(()), |b| Err(blame(b)))
}

/// Writes `base(t) + scale * revcumsum_gamma(placed)_t` on every token of `out` (one row's
/// completion), from the end. Placed rewards are sparse and sorted by token, so the sum is
/// written span by span rather than accumulated over a dense row.
pub(super) fn write_row(out: &mut [f32], base: impl Fn(usize) -> f64, placed: &[(usize, f64)], gamma: f64, scale: f64) {
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

/// revcumsum_gamma of a dense row.
pub(super) fn discounted_sum(rewards: &[f64], gamma: f64, out: &mut Vec<f64>) {
    out.clear();
    out.resize(rewards.len(), 0.0);
    let mut acc = 0.0;
    for t in (0..rewards.len()).rev() {
        acc = rewards[t] + gamma * acc;
        out[t] = acc;
    }
}

/// Outcome reward on the last valid token plus the optional per-token rewards (checked finite).
pub(super) fn token_level_rewards(batch: &Batch, b: usize, len: usize, out: &mut Vec<f64>, scratch: &mut Vec<f64>) {
    out.clear();
    match batch.token_rewards {
        Some(rows) => out.extend_from_slice(rows.row(b, len, scratch)),
        None => out.resize(len, 0.0),
    }
    if let Some(last) = out.last_mut() {
        *last += batch.outcome_rewards[b];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `base(t) + scale * revcumsum_gamma(dense)_t`, the dense way.
    fn dense(len: usize, base: impl Fn(usize) -> f64, placed: &[(usize, f64)], gamma: f64, scale: f64) -> Vec<f32> {
        let mut rewards = vec![0.0; len];
        for &(t, r) in placed {
            rewards[t] = r;
        }
        let mut sums = Vec::new();
        discounted_sum(&rewards, gamma, &mut sums);
        sums.iter().enumerate().map(|(t, s)| (base(t) + scale * s) as f32).collect()
    }

    fn check_write_row(len: usize, placed: &[(usize, f64)], gamma: f64) {
        let base = |t: usize| 0.25 - 0.01 * t as f64;
        let mut out = vec![f32::NAN; len];
        write_row(&mut out, base, placed, gamma, 0.5);
        let expected = dense(len, base, placed, gamma, 0.5);
        for (t, (a, e)) in out.iter().zip(&expected).enumerate() {
            assert!((a - e).abs() <= 1e-6, "gamma {gamma}, token {t}: {a} != {e}");
        }
    }

    #[test]
    fn write_row_matches_a_dense_reverse_cumulative_sum() {
        let placed = [(0, 1.5), (3, -2.0), (4, 0.75), (9, 3.0)];
        for gamma in [1.0, 0.9, 0.5, 0.0] {
            check_write_row(10, &placed, gamma);
            check_write_row(12, &placed, gamma); // tokens after the last placed reward
            check_write_row(10, &placed[1..3], gamma); // tokens before the first one
            check_write_row(7, &[], gamma);
            check_write_row(0, &[], gamma);
        }
    }

    #[test]
    fn discounted_sum_is_a_reverse_cumulative_sum() {
        let mut out = vec![9.0; 2];
        discounted_sum(&[1.0, 2.0, 4.0], 0.5, &mut out);
        assert_eq!(out, [1.0 + 0.5 * (2.0 + 0.5 * 4.0), 2.0 + 0.5 * 4.0, 4.0]);
        discounted_sum(&[1.0, 2.0, 4.0], 1.0, &mut out);
        assert_eq!(out, [7.0, 6.0, 4.0]);
        discounted_sum(&[], 1.0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn fill_rows_leaves_the_padding_at_zero() {
        let lengths = [3, 0, 4];
        for parallel in [false, true] {
            let mut target = vec![0.0f32; 12];
            let fill = |_: &mut (), b: usize, row: &mut [f32]| row.fill(b as f32 + 1.0);
            fill_rows(&mut target, &lengths, parallel, || (), fill, |_| unreachable!()).unwrap();
            assert_eq!(target, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 3.0]);
        }
    }

    #[test]
    fn fill_rows_refuses_the_first_row_out_of_range() {
        let lengths = [2, 3, 1, 3];
        for parallel in [false, true] {
            let mut target = vec![0.0f32; 12];
            // Rows 1 and 3 are out of range: row 1 is blamed, however the rows were scheduled.
            let fill = |_: &mut (), b: usize, row: &mut [f32]| row.fill([1.0, f32::INFINITY, 1.0, f32::NAN][b]);
            let err = fill_rows(&mut target, &lengths, parallel, || (), fill, |b| Error::new("row", format!("{b}")));
            assert_eq!(err.unwrap_err().message, "1");
        }
    }
}
