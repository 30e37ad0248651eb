//! Row by row: the (B, T) output writers every estimator shares, and the per-row inputs they
//! read. Nothing here keeps a (B, T) float64 array: each worker recomputes a row in its scratch.

use std::ops::Range;

use rayon::prelude::*;

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
/// rest stays 0); rows run in parallel when asked, each worker with its own scratch state. `fill`
/// returns whether every value it wrote is finite (checked as it writes, which costs no pass of
/// its own); the first row where one is not is refused with `blame(b)`.
pub(super) fn fill_rows<S>(
    target: &mut [f32],
    lengths: &[usize],
    parallel: bool,
    init: impl Fn() -> S + Send + Sync,
    fill: impl Fn(&mut S, usize, &mut [f32]) -> bool + Send + Sync,
    blame: impl Fn(usize) -> Error,
) -> Result<()> {
    let width = target.len() / lengths.len();
    let fill_one = |state: &mut S, (b, row): (usize, &mut [f32])| fill(state, b, &mut row[..lengths[b]]);
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

/// Writes `value(t)` as float32 on every token of `out` (one row's completion), and returns
/// whether every value written is finite.
pub(super) fn write_values(out: &mut [f32], value: impl Fn(usize) -> f64) -> bool {
    let mut finite = true;
    for (t, out) in out.iter_mut().enumerate() {
        *out = value(t) as f32;
        finite &= out.is_finite();
    }
    finite
}

/// Writes `base(t) + scale * revcumsum_gamma(placed)_t` on every token of `out` (one row's
/// completion), from the end, and returns whether every value written is finite. Placed rewards
/// are sparse and sorted by token, so the sum is written span by span rather than accumulated
/// over a dense row.
pub(super) fn write_row(
    out: &mut [f32],
    base: impl Fn(usize) -> f64,
    placed: &[(usize, f64)],
    gamma: f64,
    scale: f64,
) -> bool {
    let mut next = 0.0; // the discounted sum at token `end` (0 past the last token)
    let mut end = out.len();
    let mut finite = true;
    for &(token, reward) in placed.iter().rev() {
        let (sum, span_finite) = fill_span(out, token + 1..end, next, &base, gamma, scale);
        next = reward + gamma * sum;
        out[token] = (base(token) + scale * next) as f32;
        finite &= span_finite & out[token].is_finite();
        end = token;
    }
    finite & fill_span(out, 0..end, next, &base, gamma, scale).1
}

/// Tokens in `span` carry no reward, so the discounted sum only decays by gamma from `next`, its
/// value right after the span. Returns its value at the span's first token (`next` if empty),
/// and whether every value written is finite.
#[inline(always)]
fn fill_span(
    out: &mut [f32],
    span: Range<usize>,
    next: f64,
    base: impl Fn(usize) -> f64,
    gamma: f64,
    scale: f64,
) -> (f64, bool) {
    let start = span.start;
    let out = &mut out[span];
    let mut finite = true;
    if gamma == 1.0 {
        // The default: the sum is constant over the span, and this loop vectorises.
        for (i, value) in out.iter_mut().enumerate() {
            *value = (base(start + i) + scale * next) as f32;
            finite &= value.is_finite();
        }
        return (next, finite);
    }
    let mut sum = next;
    for (i, value) in out.iter_mut().enumerate().rev() {
        sum *= gamma;
        *value = (base(start + i) + scale * sum) as f32;
        finite &= value.is_finite();
    }
    (sum, finite)
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
        assert!(write_row(&mut out, base, placed, gamma, 0.5));
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
    fn write_row_tells_values_beyond_float32() {
        for gamma in [1.0, 0.5] {
            let mut out = vec![0.0; 6];
            // A span token (alpha times the sum), then a placed token only (the sum decays past it).
            assert!(!write_row(&mut out, |_| 0.0, &[(4, 1.0)], gamma, 1e39), "gamma {gamma}");
            assert!(!write_row(&mut out, |t| if t == 5 { 1e39 } else { 0.0 }, &[(5, 1.0)], gamma, 1.0));
            assert!(!write_row(&mut out, |_| 0.0, &[(2, f64::MAX), (3, f64::MAX)], 1.0, 1.0), "inf sum");
            assert!(write_row(&mut out, |_| 3e38, &[(4, 1.0)], gamma, 1e30), "large, in range");
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
            let fill = |_: &mut (), b: usize, row: &mut [f32]| {
                row.fill(b as f32 + 1.0);
                true
            };
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
            let fill = |_: &mut (), b: usize, row: &mut [f32]| {
                row.fill([1.0, f32::INFINITY, 1.0, f32::NAN][b]);
                b % 2 == 0
            };
            let err = fill_rows(&mut target, &lengths, parallel, || (), fill, |b| Error::new("row", format!("{b}")));
            assert_eq!(err.unwrap_err().message, "1");
        }
    }
}
