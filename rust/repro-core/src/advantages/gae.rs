//! ppo: generalised advantage estimation of the outcome and of the process rewards, each
//! whitened over the batch, and the critic returns: the raw GAE of the outcome token rewards plus
//! the values, as verl's `gae` and classic PPO regress the critic (no whitening, no process part).

use super::moments::Moments;
use super::rowwise::{fill_rows, token_level_rewards, Scratch};
use super::{CriticTarget, Options, Prepared};
use crate::error::Result;
use crate::parallel::map_rows;

/// Writes the advantages into `target` and returns the critic returns, (B, T) row-major.
pub(super) fn ppo(prepared: &Prepared, target: &mut [f32]) -> Result<Vec<f32>> {
    let Prepared { batch, options, ref lengths, ref placed, parallel } = *prepared;
    let Options { alpha, gamma, lam, .. } = options;
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
    let moments = map_rows(lengths.len(), parallel, Scratch::default, |s, b| {
        gaes(s, b);
        Ok((Moments::of(&s.first), Moments::of(&s.second)))
    })?;
    let (outcome, process): (Vec<_>, Vec<_>) = moments.into_iter().unzip();
    let (outcome_mean, outcome_inv_std) = Moments::merged(outcome).whitening();
    let (process_mean, process_inv_std) = Moments::merged(process).whitening();
    let advantage = |outcome: f64, process: f64| {
        (outcome - outcome_mean) * outcome_inv_std + alpha * (process - process_mean) * process_inv_std
    };
    fill_rows(target, lengths, parallel, Scratch::default, |s, b, row| {
        gaes(s, b);
        for (t, out) in row.iter_mut().enumerate() {
            *out = advantage(s.first[t], s.second[t]) as f32;
        }
    });
    let mut returns = vec![0.0f32; target.len()];
    if options.critic_target == CriticTarget::Advantages {
        // The authors' code: the combined advantage plus V.
        fill_rows(&mut returns, lengths, parallel, Scratch::default, |s, b, row| {
            gaes(s, b);
            let v = values.row(b, row.len(), &mut s.widened);
            for (t, out) in row.iter_mut().enumerate() {
                *out = (advantage(s.first[t], s.second[t]) + v[t]) as f32;
            }
        });
        return Ok(returns);
    }
    fill_rows(&mut returns, lengths, parallel, Scratch::default, |s, b, row| {
        let len = row.len();
        token_level_rewards(batch, b, len, &mut s.rewards, &mut s.widened);
        let v = values.row(b, len, &mut s.widened);
        gae(&s.rewards, v, gamma, lam, &mut s.first);
        for (t, out) in row.iter_mut().enumerate() {
            *out = (s.first[t] + v[t]) as f32;
        }
    });
    Ok(returns)
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
