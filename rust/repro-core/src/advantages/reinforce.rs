//! reinforce_pp: the discounted token rewards, whitened over the whole batch, plus alpha times
//! the discounted sum of the (batch-whitened) process rewards. The returns are the discounted
//! token rewards themselves, unwhitened, as verl's `reinforce_plus_plus` returns them.

use super::moments::Moments;
use super::rowwise::{discounted_sum, fill_rows, token_level_rewards, write_row, Scratch};
use super::{Options, Prepared};
use crate::error::Result;
use crate::parallel::map_rows;

/// Writes the advantages into `target` and returns the discounted returns, (B, T) row-major.
pub(super) fn reinforce_pp(prepared: &Prepared, target: &mut [f32]) -> Result<Vec<f32>> {
    let Prepared { batch, options, ref lengths, ref placed, parallel } = *prepared;
    let Options { alpha, gamma, .. } = options;
    // Discounted token rewards, computed twice rather than kept for the whole batch: once for
    // their moments, once to write them whitened.
    let discounted = |s: &mut Scratch, b: usize| {
        token_level_rewards(batch, b, lengths[b], &mut s.rewards, &mut s.widened);
        discounted_sum(&s.rewards, gamma, &mut s.first);
    };
    let moments = map_rows(lengths.len(), parallel, Scratch::default, |s, b| {
        discounted(s, b);
        Ok(Moments::of(&s.first))
    })?;
    let (mean, inv_std) = Moments::merged(moments).whitening();
    fill_rows(target, lengths, parallel, Scratch::default, |s, b, row| {
        discounted(s, b);
        write_row(row, |t| (s.first[t] - mean) * inv_std, &placed[b], gamma, alpha);
    });
    let mut returns = vec![0.0f32; target.len()];
    fill_rows(&mut returns, lengths, parallel, Scratch::default, |s, b, row| {
        discounted(s, b);
        row.iter_mut().zip(&s.first).for_each(|(out, r)| *out = *r as f32);
    });
    Ok(returns)
}
