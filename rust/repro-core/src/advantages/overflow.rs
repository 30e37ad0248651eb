//! Overflow: finite but huge inputs (rewards, values, alpha) can drive a statistic or an output
//! out of range: inf or NaN in float64, or beyond float32's largest value in the (B, T) outputs.
//! Such a result is refused with an error naming the input that drove it. The hot path only
//! checks (each output value as it is written, each statistic once); which input is to blame is
//! worked out once a check has failed, from the row's inputs and terms.

use super::moments::Moments;
use super::rowwise::discounted_sum;
use super::{Batch, Placed};
use crate::error::{Error, Result};

/// An input of `compute_advantages` that can drive results out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Input {
    OutcomeRewards,
    StepRewards,
    Values,
    TokenRewards,
}

impl Input {
    fn name(self) -> &'static str {
        match self {
            Self::OutcomeRewards => "outcome_rewards",
            Self::StepRewards => "step_rewards",
            Self::Values => "values",
            Self::TokenRewards => "token_rewards",
        }
    }
}

/// One part of an output value, and what drives it.
pub(super) enum Term<'a> {
    /// Driven by the largest of these inputs.
    Inputs(&'a [Input]),
    /// alpha times values driven by the largest of these inputs (the term holds them unscaled).
    Alpha(&'a [Input]),
}

/// `NaN` and infinities compare above every finite magnitude.
fn magnitude(value: f64) -> f64 {
    if value.is_finite() {
        value.abs()
    } else {
        f64::INFINITY
    }
}

/// Finds the input to blame for a result out of range, reading the rows of the inputs.
pub(super) struct Culprits<'a> {
    pub(super) batch: &'a Batch<'a>,
    pub(super) lengths: &'a [usize],
    pub(super) alpha: f64,
}

impl Culprits<'_> {
    /// The largest magnitude of `input` in row `b`, 0 when it is absent or the row is empty.
    fn row_magnitude(&self, input: Input, b: usize) -> f64 {
        let largest = |values: &[f64]| values.iter().fold(0.0, |m: f64, &v| m.max(v.abs()));
        let dense = |rows: Option<&dyn crate::rows::Rows<f64>>| {
            rows.map_or(0.0, |rows| largest(rows.row(b, self.lengths[b], &mut Vec::new())))
        };
        match input {
            Input::OutcomeRewards => self.batch.outcome_rewards[b].abs(),
            Input::StepRewards => {
                let offsets = self.batch.offsets;
                largest(&self.batch.step_rewards[offsets[b] as usize..offsets[b + 1] as usize])
            }
            Input::Values => dense(self.batch.values),
            Input::TokenRewards => dense(self.batch.token_rewards),
        }
    }

    /// Of `inputs`, the one of largest magnitude in the batch, with the row where it is largest
    /// (the first on ties).
    fn largest(&self, inputs: &[Input]) -> (Input, usize, f64) {
        let mut best = (inputs[0], 0, -1.0);
        for b in 0..self.lengths.len() {
            for &input in inputs {
                let m = self.row_magnitude(input, b);
                if m > best.2 {
                    best = (input, b, m);
                }
            }
        }
        best
    }

    /// `what` (a statistic, or a row of an output) went out of range: blames the largest of
    /// `inputs`, which drive it. Outputs are normalised by group or batch statistics, so the
    /// input to blame may sit in another row than the output out of range.
    pub(super) fn error(&self, inputs: &[Input], what: &str) -> Error {
        let (input, b, m) = self.largest(inputs);
        let name = input.name();
        Error::new(
            name,
            format!(
                "{what} overflowed (to inf or NaN, or beyond float32 in an output): |{name}| reaches {m:e} at row \
                 {b}; expected magnitudes that keep the results finite"
            ),
        )
    }

    /// `moments` when they are finite, else the error of `what` (the statistic they are, worded
    /// only then) going out of range, blamed on the largest of `inputs`.
    pub(super) fn finite(&self, moments: Moments, inputs: &[Input], what: impl FnOnce() -> String) -> Result<Moments> {
        if moments.is_finite() {
            Ok(moments)
        } else {
            Err(self.error(inputs, &what()))
        }
    }

    /// `what` (an output) is out of range in row `b`, and each of its values is the sum of `terms`
    /// (one value per token each). At the token of largest magnitude, the largest term is to
    /// blame; for an alpha term, alpha itself when it is the larger factor.
    pub(super) fn output_error(&self, b: usize, what: &str, terms: &[(Term, Vec<f64>)]) -> Error {
        let value = |(term, values): &(Term, Vec<f64>), t: usize| {
            let unscaled = values.get(t).copied().unwrap_or(0.0);
            match term {
                Term::Inputs(_) => unscaled,
                Term::Alpha(_) => self.alpha * unscaled,
            }
        };
        let total = |t: usize| magnitude(terms.iter().map(|term| value(term, t)).sum());
        let t = (0..self.lengths[b]).max_by(|&x, &y| total(x).total_cmp(&total(y))).unwrap_or(0);
        let largest = terms.iter().max_by(|x, y| magnitude(value(x, t)).total_cmp(&magnitude(value(y, t))));
        match largest.expect("an output has one term at least") {
            (Term::Alpha(inputs), unscaled) => {
                let (alpha, unscaled) = (self.alpha, unscaled.get(t).copied().unwrap_or(0.0));
                if alpha.abs() >= magnitude(unscaled) {
                    Error::new(
                        "alpha",
                        format!(
                            "alpha = {alpha:e} times the process advantage {unscaled:.3e} at row {b}, token {t} puts \
                             {what} beyond float32's range; expected a smaller alpha"
                        ),
                    )
                } else {
                    self.error(inputs, &format!("{what} of row {b}"))
                }
            }
            (Term::Inputs(inputs), _) => self.error(inputs, &format!("{what} of row {b}")),
        }
    }
}

/// The discounted sum to the end of the row of its placed process rewards, per token (what
/// `write_row` scales by alpha), recomputed densely once a row is known to be out of range.
pub(super) fn process_sums(placed: &Placed, len: usize, gamma: f64) -> Vec<f64> {
    let mut rewards = vec![0.0; len];
    for &(t, r) in placed {
        rewards[t] = r;
    }
    let mut sums = Vec::new();
    discounted_sum(&rewards, gamma, &mut sums);
    sums
}
