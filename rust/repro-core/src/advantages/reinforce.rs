//! reinforce_pp: the discounted token rewards, whitened over the whole batch, plus alpha times
//! the discounted sum of the (batch-whitened) process rewards. The returns are the discounted
//! token rewards themselves, unwhitened, as verl's `reinforce_plus_plus` returns them.

use super::moments::Moments;
use super::overflow::{process_sums, Input, Term};
use super::rowwise::{discounted_sum, fill_rows, token_level_rewards, write_row, write_values, Scratch};
use super::{Options, Prepared};
use crate::error::Result;
use crate::parallel::map_rows;

/// What the token rewards are made of.
const TOKEN_INPUTS: [Input; 2] = [Input::OutcomeRewards, Input::TokenRewards];

/// Writes the advantages into `target` and returns the discounted returns, (B, T) row-major.
pub(super) fn reinforce_pp(prepared: &Prepared, target: &mut [f32]) -> Result<Vec<f32>> {
    let Prepared { batch, options, ref lengths, ref placed, parallel } = *prepared;
    let Options { alpha, gamma, .. } = options;
    let culprits = prepared.culprits();
    // Discounted token rewards, computed twice rather than kept for the whole batch: once for
    // their moments, once to write them whitened.
    let discounted = |s: &mut Scratch, b: usize| {
        token_level_rewards(batch, b, lengths[b], &mut s.rewards, &mut s.widened);
        discounted_sum(&s.rewards, gamma, &mut s.first);
    };
    let moments = map_rows(lengths.len(), parallel, Scratch::default, |s, b| {
        discounted(s, b);
        culprits.finite(Moments::of(&s.first), &TOKEN_INPUTS, || format!("the discounted token rewards of row {b}"))
    })?;
    let moments = culprits.finite(Moments::merged(moments), &TOKEN_INPUTS, || {
        "the batch mean and std of the discounted token rewards".into()
    })?;
    let (mean, inv_std) = moments.whitening();
    let fill = |s: &mut Scratch, b: usize, row: &mut [f32]| {
        discounted(s, b);
        write_row(row, |t| (s.first[t] - mean) * inv_std, &placed[b], gamma, alpha)
    };
    fill_rows(target, lengths, parallel, Scratch::default, fill, |b| {
        let s = &mut Scratch::default();
        discounted(s, b);
        let terms = [
            (Term::Inputs(&TOKEN_INPUTS), s.first.iter().map(|r| (r - mean) * inv_std).collect()),
            (Term::Alpha(&[Input::StepRewards]), process_sums(&placed[b], lengths[b], gamma)),
        ];
        culprits.output_error(b, "the advantages", &terms)
    })?;
    let mut returns = vec![0.0f32; target.len()];
    let fill = |s: &mut Scratch, b: usize, row: &mut [f32]| {
        discounted(s, b);
        write_values(row, |t| s.first[t])
    };
    fill_rows(&mut returns, lengths, parallel, Scratch::default, fill, |b| {
        culprits.error(&TOKEN_INPUTS, &format!("the returns (discounted token rewards) of row {b}"))
    })?;
    Ok(returns)
}
