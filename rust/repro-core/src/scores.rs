//! Magnitude, stability, composite score and process reward per cut point (docs/method.md, "Scores and process rewards").

use crate::error::{ensure, Error, Result};
use crate::ragged::row_ranges;

const EPSILON: f64 = 1e-6;

/// Per cut point, in cuts order; 0 at the baseline point p_0 of every row.
#[derive(Debug, Clone, PartialEq)]
pub struct Steps {
    pub magnitude: Vec<f64>,
    pub stability: Vec<f64>,
    pub score: Vec<f64>,
    pub reward: Vec<f64>,
}

/// M_j = tanh((v_0 - v_j) / (v_0 + eps) - 1) + 1 with v = -J.
pub fn magnitude(j_baseline: f64, j: f64) -> f64 {
    let (v0, v) = (-j_baseline, -j);
    ((v0 - v) / (v0 + EPSILON) - 1.0).tanh() + 1.0
}

fn sign(x: f64) -> f64 {
    f64::from(u8::from(x > 0.0)) - f64::from(u8::from(x < 0.0))
}

/// S_j = (tau_j + 1) / 2, Kendall's tau-a of smoothed[0..=j] against the index, for j >= 1.
fn stability(smoothed: &[f64], out: &mut [f64]) {
    let mut concordance = 0.0;
    for j in 1..smoothed.len() {
        concordance += smoothed[..j].iter().map(|&earlier| sign(smoothed[j] - earlier)).sum::<f64>();
        let pairs = (j * (j + 1) / 2) as f64;
        out[j] = (concordance / pairs + 1.0) / 2.0;
    }
}

/// The checks of `score_steps`' options, which need no data.
pub fn check_score_options(w: f64, stability_ema: Option<f64>) -> Result<()> {
    ensure((0.0..=1.0).contains(&w), "w", || format!("expected a weight in [0, 1], got {w}"))?;
    if let Some(beta) = stability_ema {
        ensure(beta > 0.0 && beta <= 1.0, "stability_ema", || format!("expected beta in (0, 1], got {beta}"))?;
    }
    Ok(())
}

fn validate(j_values: &[f64], w: f64, stability_ema: Option<f64>) -> Result<()> {
    check_score_options(w, stability_ema)?;
    for (i, &j) in j_values.iter().enumerate() {
        if !j.is_finite() {
            return Err(Error::new("j_values", format!("expected finite values, got {j} at index {i}")));
        }
        if j > 0.0 {
            return Err(Error::new(
                "j_values",
                format!(
                    "expected mean log-probabilities <= 0, got {j} at index {i} (was the NLL -J passed instead of J?)"
                ),
            ));
        }
    }
    Ok(())
}

pub fn score_steps(j_values: &[f64], offsets: &[i64], w: f64, stability_ema: Option<f64>) -> Result<Steps> {
    validate(j_values, w, stability_ema)?;
    let rows = row_ranges(offsets, j_values.len(), "j_values")?;
    let n = j_values.len();
    let mut steps =
        Steps { magnitude: vec![0.0; n], stability: vec![0.0; n], score: vec![0.0; n], reward: vec![0.0; n] };
    let mut smoothed = Vec::new();
    for range in rows {
        let j = &j_values[range.clone()];
        let Some(&baseline) = j.first() else { continue };
        smoothed.clear();
        match stability_ema {
            None => smoothed.extend_from_slice(j),
            Some(beta) => smoothed.extend(j.iter().scan(None, |state: &mut Option<f64>, &x| {
                let next = state.map_or(x, |prev| beta * x + (1.0 - beta) * prev);
                *state = Some(next);
                Some(next)
            })),
        }
        stability(&smoothed, &mut steps.stability[range.clone()]);
        let mut previous_score = 0.0;
        for i in range.clone().skip(1) {
            steps.magnitude[i] = magnitude(baseline, j_values[i]);
            steps.score[i] = (1.0 - w) * steps.magnitude[i] + w * steps.stability[i];
            steps.reward[i] = steps.score[i] - previous_score;
            previous_score = steps.score[i];
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn magnitude_test_vectors() {
        for (jb, j, m) in [
            (-2.0, -1.0, 0.537883),
            (-2.0, -2.0, 0.238406),
            (-2.0, 0.0, 1.0),
            (-2.0, -4.0, 0.035972),
            (-0.5, -0.1, 0.802623),
        ] {
            assert!(close(magnitude(jb, j), m), "M({jb}, {j}) = {} != {m}", magnitude(jb, j));
        }
    }

    #[test]
    fn stability_test_vector() {
        let steps = score_steps(&[-2.0, -1.5, -1.8, -1.0], &[0, 4], 0.1, None).unwrap();
        assert!(close(steps.stability[3], 0.833333));
    }

    #[test]
    fn ema_smooths_stability_only() {
        let j = [-2.0, -1.0, -1.2];
        let raw = score_steps(&j, &[0, 3], 0.5, None).unwrap();
        let smooth = score_steps(&j, &[0, 3], 0.5, Some(0.5)).unwrap();
        assert_eq!(raw.magnitude, smooth.magnitude);
        // Raw J dips at j = 2; the EMA [-2, -1.5, -1.35] keeps rising.
        assert!(close(raw.stability[2], (1.0 / 3.0 + 1.0) / 2.0));
        assert!(close(smooth.stability[2], 1.0));
        assert_eq!(score_steps(&j, &[0, 3], 0.5, Some(1.0)).unwrap(), raw);
    }

    #[test]
    fn bad_inputs_name_their_argument() {
        assert_eq!(score_steps(&[-1.0, 0.5], &[0, 2], 0.1, None).unwrap_err().argument, "j_values");
        assert_eq!(score_steps(&[-1.0, f64::NAN], &[0, 2], 0.1, None).unwrap_err().argument, "j_values");
        assert_eq!(score_steps(&[-1.0], &[0, 2], 0.1, None).unwrap_err().argument, "offsets");
        assert_eq!(score_steps(&[-1.0, -1.0], &[0, 2, 1, 2], 0.1, None).unwrap_err().argument, "offsets");
        assert_eq!(score_steps(&[-1.0], &[0, 1], 1.5, None).unwrap_err().argument, "w");
        assert_eq!(score_steps(&[-1.0], &[0, 1], 0.1, Some(0.0)).unwrap_err().argument, "stability_ema");
    }
}
