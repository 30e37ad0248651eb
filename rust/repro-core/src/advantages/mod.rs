//! Per-token advantages from outcome and process rewards (docs/method.md, "Advantages").
//!
//! `compute_advantages` checks every input first (`validate`), places the process rewards on
//! the tokens that close their spans and normalises them (`group`), then runs the estimator's
//! family: `group` (grpo, dr_grpo, reinforce_pp_baseline), `reinforce` (reinforce_pp) or `gae`
//! (ppo). `moments` (mergeable batch statistics) and `rowwise` (the row writers) are shared.

mod gae;
mod group;
mod moments;
mod overflow;
mod reinforce;
mod rowwise;
mod validate;

use std::fmt;

use ndarray::Array2;

use crate::error::{ensure, Error, Result};
use crate::rows::{Mask, Rows};

/// The advantage estimators, in the order of [`Estimator::NAMES`] (which `Display` indexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    Grpo,
    DrGrpo,
    Ppo,
    ReinforcePp,
    ReinforcePpBaseline,
}

impl Estimator {
    pub const NAMES: [&'static str; 5] = ["grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline"];

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "grpo" => Self::Grpo,
            "dr_grpo" => Self::DrGrpo,
            "ppo" => Self::Ppo,
            "reinforce_pp" => Self::ReinforcePp,
            "reinforce_pp_baseline" => Self::ReinforcePpBaseline,
            _ => return Err(Error::new("estimator", format!("expected one of {:?}, got {name:?}", Self::NAMES))),
        })
    }
}

impl fmt::Display for Estimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::NAMES[*self as usize])
    }
}

/// Which std grpo divides its process rewards by (the mean is always the group's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessStd {
    /// The std of the group's placed rewards (the paper; TRL's `scale_rewards="group"`).
    #[default]
    Group,
    /// The std of the whole batch's placed rewards (TRL's `scale_rewards="batch"`).
    Batch,
    /// No division (TRL's `scale_rewards="none"`, as dr_grpo).
    None,
}

impl ProcessStd {
    pub const NAMES: [&'static str; 3] = ["group", "batch", "none"];

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "group" => Self::Group,
            "batch" => Self::Batch,
            "none" => Self::None,
            _ => return Err(Error::new("process_std", format!("expected one of {:?}, got {name:?}", Self::NAMES))),
        })
    }
}

impl fmt::Display for ProcessStd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::NAMES[*self as usize])
    }
}

/// What ppo returns as the critic's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CriticTarget {
    /// The raw GAE return of the token rewards plus V, as verl's `gae`.
    #[default]
    Gae,
    /// The combined advantage plus V, as the authors' code.
    Advantages,
}

impl CriticTarget {
    pub const NAMES: [&'static str; 2] = ["gae", "advantages"];

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gae" => Self::Gae,
            "advantages" => Self::Advantages,
            _ => return Err(Error::new("critic_target", format!("expected one of {:?}, got {name:?}", Self::NAMES))),
        })
    }
}

impl fmt::Display for CriticTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::NAMES[*self as usize])
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Weight of the process-reward term.
    pub alpha: f64,
    /// Discount of the reverse cumulative sums (and of GAE).
    pub gamma: f64,
    /// GAE lambda; only ppo uses it, so anything but 1 elsewhere is an error.
    pub lam: f64,
    /// grpo divides by the group std unless this is false; dr_grpo never divides and accepts
    /// either; the other estimators require true.
    pub norm_by_std: bool,
    /// grpo's process std: the group's (default), the batch's or none; only grpo with
    /// norm_by_std accepts anything but `Group`.
    pub process_std: ProcessStd,
    /// Authors' code: the baseline cut point adds one 0 per completion to the process-reward
    /// statistics (mean and std of a group, or of the batch), written on the last column, so a
    /// completion with a reward there adds none.
    pub stats_include_baseline: bool,
    /// Authors' code: a process reward placed on token 0 (a cut at p = 1) is dropped from the
    /// statistics and the advantage.
    pub drop_first_token_reward: bool,
    /// ppo's returns: GAE + V (default) or, as the authors' code, the combined advantage + V.
    pub critic_target: CriticTarget,
}

impl Options {
    /// The checks of the options for `estimator`, which need no data.
    pub fn check(&self, estimator: Estimator) -> Result<()> {
        let Self { alpha, gamma, lam, norm_by_std, process_std, critic_target, .. } = *self;
        ensure(alpha.is_finite(), "alpha", || format!("expected a finite number, got {alpha}"))?;
        ensure((0.0..=1.0).contains(&gamma), "gamma", || format!("expected a discount in [0, 1], got {gamma}"))?;
        ensure((0.0..=1.0).contains(&lam), "lam", || format!("expected a GAE lambda in [0, 1], got {lam}"))?;
        ensure(lam == 1.0 || estimator == Estimator::Ppo, "lam", || {
            format!("only the 'ppo' estimator uses lam, got lam={lam} with '{estimator}'")
        })?;
        ensure(norm_by_std || matches!(estimator, Estimator::Grpo | Estimator::DrGrpo), "norm_by_std", || {
            format!("only 'grpo' divides by a group std ('dr_grpo' never does); norm_by_std=False has no meaning for '{estimator}'")
        })?;
        ensure(process_std == ProcessStd::Group || estimator == Estimator::Grpo, "process_std", || {
            format!(
                "only the 'grpo' estimator chooses its process std, got process_std='{process_std}' with '{estimator}'"
            )
        })?;
        ensure(process_std == ProcessStd::Group || norm_by_std, "process_std", || {
            format!("norm_by_std=False already drops the process std; process_std='{process_std}' contradicts it")
        })?;
        ensure(critic_target == CriticTarget::Gae || estimator == Estimator::Ppo, "critic_target", || {
            format!("only the 'ppo' estimator has a critic, got critic_target='{critic_target}' with '{estimator}'")
        })
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            alpha: 0.1,
            gamma: 1.0,
            lam: 1.0,
            norm_by_std: true,
            process_std: ProcessStd::Group,
            stats_include_baseline: false,
            drop_first_token_reward: false,
            critic_target: CriticTarget::Gae,
        }
    }
}

/// Advantages (B, T), and returns (B, T) for `ppo` (the critic's target, GAE + V) and
/// `reinforce_pp` (the discounted token rewards), as verl returns them; 0 outside the response mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    pub advantages: Array2<f32>,
    pub returns: Option<Array2<f32>>,
}

/// The inputs of `compute_advantages`, borrowed.
pub struct Batch<'a> {
    pub outcome_rewards: &'a [f64],
    pub step_rewards: &'a [f64],
    pub offsets: &'a [i64],
    pub positions: &'a [i64],
    pub response_mask: &'a dyn Mask,
    pub group_index: &'a [i64],
    pub values: Option<&'a dyn Rows<f64>>,
    pub token_rewards: Option<&'a dyn Rows<f64>>,
}

/// Process rewards of one completion, each on the token that closes its span.
type Placed = Vec<(usize, f64)>;

/// The checked inputs, as every estimator family reads them.
struct Prepared<'a> {
    batch: &'a Batch<'a>,
    options: Options,
    /// Completion length of each row.
    lengths: Vec<usize>,
    /// Normalised process rewards of each row.
    placed: Vec<Placed>,
    parallel: bool,
}

impl Prepared<'_> {
    /// What blames a result out of range on the input that drove it.
    fn culprits(&self) -> overflow::Culprits<'_> {
        overflow::Culprits { batch: self.batch, lengths: &self.lengths, alpha: self.options.alpha }
    }
}

/// The advantages of `estimator` (and the returns for ppo and reinforce_pp). Every input is checked before
/// any arithmetic; past that, the only error is a result out of range (inf or NaN, or beyond float32 in
/// the outputs), which names the input that drove it.
pub fn compute_advantages(
    estimator: Estimator,
    batch: &Batch,
    options: &Options,
    parallel: bool,
) -> Result<Advantages> {
    let (lengths, ranges) = validate::validate(estimator, batch, options, parallel)?;
    let members = group::groups(batch.group_index);
    let culprits = overflow::Culprits { batch, lengths: &lengths, alpha: options.alpha };
    let placed = group::process_rewards(estimator, batch, &ranges, &members, options, &culprits)?;
    let prepared = Prepared { batch, options: *options, lengths, placed, parallel };

    let shape = batch.response_mask.shape();
    let mut advantages = vec![0.0f32; shape.0 * shape.1];
    let returns = match estimator {
        Estimator::Grpo | Estimator::DrGrpo | Estimator::ReinforcePpBaseline => {
            group::outcome_group(estimator, &members, &prepared, &mut advantages)?;
            None
        }
        Estimator::ReinforcePp => Some(reinforce::reinforce_pp(&prepared, &mut advantages)?),
        Estimator::Ppo => Some(gae::ppo(&prepared, &mut advantages)?),
    };
    let to_array = |data: Vec<f32>| Array2::from_shape_vec(shape, data).expect("buffer has B * T entries");
    Ok(Advantages { advantages: to_array(advantages), returns: returns.map(to_array) })
}
