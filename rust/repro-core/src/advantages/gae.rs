//! ppo: generalised advantage estimation of the outcome and of the process rewards, each
//! whitened over the batch, and the critic returns: the raw GAE of the outcome token rewards plus
//! the values, as verl's `gae` and classic PPO regress the critic (no whitening, no process part).

use super::moments::Moments;
use super::overflow::{Input, Term};
use super::rowwise::{fill_rows, token_level_rewards, write_values, Scratch};
use super::{CriticTarget, Options, Prepared};
use crate::error::Result;
use crate::parallel::map_rows;

/// What the GAE of the outcome (token) rewards is made of, and that of the process rewards.
const OUTCOME_INPUTS: [Input; 3] = [Input::OutcomeRewards, Input::TokenRewards, Input::Values];
const PROCESS_INPUTS: [Input; 2] = [Input::StepRewards, Input::Values];

/// Writes the advantages into `target` and returns the critic returns, (B, T) row-major.
pub(super) fn ppo(prepared: &Prepared, target: &mut [f32]) -> Result<Vec<f32>> {
    let Prepared { batch, options, ref lengths, ref placed, parallel } = *prepared;
    let Options { alpha, gamma, lam, .. } = options;
    let Some(values) = batch.values else { unreachable!("validate() requires values for ppo") };
    let culprits = prepared.culprits();
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
        let outcome = culprits
            .finite(Moments::of(&s.first), &OUTCOME_INPUTS, || format!("the GAE of the token rewards of row {b}"))?;
        let process = culprits
            .finite(Moments::of(&s.second), &PROCESS_INPUTS, || format!("the GAE of the process rewards of row {b}"))?;
        Ok((outcome, process))
    })?;
    let (outcome, process): (Vec<_>, Vec<_>) = moments.into_iter().unzip();
    let outcome = culprits.finite(Moments::merged(outcome), &OUTCOME_INPUTS, || {
        "the batch mean and std of the GAE of the token rewards".into()
    })?;
    let process = culprits.finite(Moments::merged(process), &PROCESS_INPUTS, || {
        "the batch mean and std of the GAE of the process rewards".into()
    })?;
    let (outcome_mean, outcome_inv_std) = outcome.whitening();
    let (process_mean, process_inv_std) = process.whitening();
    let advantage = |outcome: f64, process: f64| {
        (outcome - outcome_mean) * outcome_inv_std + alpha * (process - process_mean) * process_inv_std
    };
    // The terms of row b's advantage, for an error that names what put it out of range.
    let advantage_terms = |b: usize| {
        let s = &mut Scratch::default();
        gaes(s, b);
        [
            (Term::Inputs(&OUTCOME_INPUTS), s.first.iter().map(|x| (x - outcome_mean) * outcome_inv_std).collect()),
            (Term::Alpha(&PROCESS_INPUTS), s.second.iter().map(|x| (x - process_mean) * process_inv_std).collect()),
        ]
    };
    let fill = |s: &mut Scratch, b: usize, row: &mut [f32]| {
        gaes(s, b);
        write_values(row, |t| advantage(s.first[t], s.second[t]))
    };
    fill_rows(target, lengths, parallel, Scratch::default, fill, |b| {
        culprits.output_error(b, "the advantages", &advantage_terms(b))
    })?;
    let mut returns = vec![0.0f32; target.len()];
    let values_of = |b: usize| values.row(b, lengths[b], &mut Vec::new()).to_vec();
    if options.critic_target == CriticTarget::Advantages {
        // The authors' code: the combined advantage plus V.
        let fill = |s: &mut Scratch, b: usize, row: &mut [f32]| {
            gaes(s, b);
            let v = values.row(b, row.len(), &mut s.widened);
            write_values(row, |t| advantage(s.first[t], s.second[t]) + v[t])
        };
        fill_rows(&mut returns, lengths, parallel, Scratch::default, fill, |b| {
            let [outcome, process] = advantage_terms(b);
            let terms = [outcome, process, (Term::Inputs(&[Input::Values]), values_of(b))];
            culprits.output_error(b, "the returns (advantages + values)", &terms)
        })?;
        return Ok(returns);
    }
    let gae_return = |s: &mut Scratch, b: usize| {
        let len = lengths[b];
        token_level_rewards(batch, b, len, &mut s.rewards, &mut s.widened);
        let v = values.row(b, len, &mut s.widened);
        gae(&s.rewards, v, gamma, lam, &mut s.first);
    };
    let fill = |s: &mut Scratch, b: usize, row: &mut [f32]| {
        gae_return(s, b);
        let v = values.row(b, row.len(), &mut s.widened);
        write_values(row, |t| s.first[t] + v[t])
    };
    fill_rows(&mut returns, lengths, parallel, Scratch::default, fill, |b| {
        let s = &mut Scratch::default();
        gae_return(s, b);
        let terms = [(Term::Inputs(&OUTCOME_INPUTS), s.first.clone()), (Term::Inputs(&[Input::Values]), values_of(b))];
        culprits.output_error(b, "the returns (GAE + values)", &terms)
    })?;
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
