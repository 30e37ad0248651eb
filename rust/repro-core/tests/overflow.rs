//! Finite but huge inputs: every result out of range (inf or NaN, or beyond float32 in the
//! outputs) is an error naming the input that drove it, in every estimator, sequential or not.

use ndarray::{array, Array2};
use repro_core::{compute_advantages, score_steps, Advantages, Batch, CriticTarget, Error, Estimator, Options};

/// Two rows of length 3 in one group, a process reward on token 1 of each.
struct Inputs {
    outcome_rewards: Vec<f64>,
    step_rewards: Vec<f64>,
    values: Option<Array2<f64>>,
    token_rewards: Option<Array2<f64>>,
    options: Options,
}

impl Inputs {
    fn new() -> Self {
        Self {
            outcome_rewards: vec![1.0, 0.0],
            step_rewards: vec![0.0, 0.5, 0.0, -0.5],
            values: None,
            token_rewards: None,
            options: Options::default(),
        }
    }

    fn run(&self, estimator: Estimator) -> Vec<Result<Advantages, Error>> {
        let mask = Array2::from_elem((2, 3), true);
        let values = (estimator == Estimator::Ppo).then(|| self.values.clone().unwrap_or(Array2::zeros((2, 3))));
        let (mv, vv, tv) =
            (mask.view(), values.as_ref().map(|v| v.view()), self.token_rewards.as_ref().map(|t| t.view()));
        let batch = Batch {
            outcome_rewards: &self.outcome_rewards,
            step_rewards: &self.step_rewards,
            offsets: &[0, 2, 4],
            positions: &[0, 2, 0, 2],
            response_mask: &mv,
            group_index: &[0, 0],
            values: vv.as_ref().map(|v| v as &dyn repro_core::Rows<f64>),
            token_rewards: tv.as_ref().map(|v| v as &dyn repro_core::Rows<f64>),
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let sequential = compute_advantages(estimator, &batch, &self.options, false);
        let parallel = pool.install(|| compute_advantages(estimator, &batch, &self.options, true));
        vec![sequential, parallel]
    }

    /// Every run fails, naming `argument` and the row where it is largest; returns the message.
    fn fails(&self, estimator: Estimator, argument: &str, row: usize) -> String {
        let mut messages = Vec::new();
        for result in self.run(estimator) {
            let err = result.expect_err(&format!("{estimator}: expected an error on {argument}"));
            assert_eq!(err.argument, argument, "{estimator}: {err}");
            assert!(err.message.contains(&format!("at row {row}")), "{estimator}: {err}");
            messages.push(err.message);
        }
        assert_eq!(messages[0], messages[1], "sequential and parallel runs blame alike");
        messages.swap_remove(0)
    }

    fn finite(&self, estimator: Estimator) {
        for result in self.run(estimator) {
            let result = result.unwrap_or_else(|e| panic!("{estimator}: {e}"));
            assert!(result.advantages.iter().all(|a| a.is_finite()), "{estimator}: {}", result.advantages);
            assert!(result.returns.iter().flatten().all(|r| r.is_finite()), "{estimator}");
        }
    }
}

const ALL: [Estimator; 5] =
    [Estimator::Grpo, Estimator::DrGrpo, Estimator::Ppo, Estimator::ReinforcePp, Estimator::ReinforcePpBaseline];

#[test]
fn huge_alpha_is_blamed() {
    let inputs = Inputs { options: Options { alpha: 1e308, ..Options::default() }, ..Inputs::new() };
    for estimator in ALL {
        let message = inputs.fails(estimator, "alpha", 0);
        assert!(message.contains("float32"), "{message}");
    }
    // Large but in range: the advantages are huge, and finite.
    let large = Inputs { options: Options { alpha: 1e30, ..Options::default() }, ..Inputs::new() };
    ALL.into_iter().for_each(|estimator| large.finite(estimator));
}

#[test]
fn huge_outcome_rewards_are_blamed() {
    // Their spread overflows the group's std (grpo's advantages would silently be 0), or the
    // outcome advantage itself, or the discounted token rewards and GAE.
    let inputs = Inputs { outcome_rewards: vec![1e308, -1e308], ..Inputs::new() };
    for estimator in ALL {
        inputs.fails(estimator, "outcome_rewards", 0);
    }
    // Finite in float64, beyond float32: dr_grpo does not divide by the std.
    let beyond_f32 = Inputs { outcome_rewards: vec![0.0, 1e39], ..Inputs::new() };
    let message = beyond_f32.fails(Estimator::DrGrpo, "outcome_rewards", 1);
    assert!(message.contains("1e39"), "{message}");
    beyond_f32.finite(Estimator::Grpo);
}

#[test]
fn huge_step_rewards_are_blamed() {
    let inputs = Inputs { step_rewards: vec![0.0, 1e308, 0.0, -1e308], ..Inputs::new() };
    for estimator in ALL {
        inputs.fails(estimator, "step_rewards", 0);
    }
    // dr_grpo keeps them unscaled: alpha * 1e40 is beyond float32 on row 1.
    let unscaled = Inputs { step_rewards: vec![0.0, 0.0, 0.0, 1e41], ..Inputs::new() };
    unscaled.fails(Estimator::DrGrpo, "step_rewards", 1);
}

#[test]
fn huge_values_and_token_rewards_are_blamed() {
    let values = array![[0.0, 0.0, 0.0], [1e308, -1e308, 1e308]];
    let inputs = Inputs { values: Some(values), ..Inputs::new() };
    inputs.fails(Estimator::Ppo, "values", 1);
    let target = Options { critic_target: CriticTarget::Advantages, ..Options::default() };
    let beyond_f32 = Inputs { values: Some(array![[0.0, 1e39, 0.0], [0.0; 3]]), options: target, ..Inputs::new() };
    beyond_f32.fails(Estimator::Ppo, "values", 0);
    // 3 x 1e308 summed over the completion.
    let token_rewards = Inputs { token_rewards: Some(Array2::from_elem((2, 3), 1e308)), ..Inputs::new() };
    token_rewards.fails(Estimator::ReinforcePp, "token_rewards", 0);
    token_rewards.fails(Estimator::Ppo, "token_rewards", 0);
}

#[test]
fn score_steps_stay_finite_for_extreme_j() {
    for j in [[-f64::MAX, -1e-300, -1.0], [-1e-300, -f64::MAX, -f64::MAX], [0.0, -f64::MAX, -0.0]] {
        for ema in [None, Some(1e-300), Some(0.5), Some(1.0)] {
            let steps = score_steps(&j, &[0, 3], 0.5, ema).unwrap();
            for values in [&steps.magnitude, &steps.stability, &steps.score, &steps.reward] {
                assert!(values.iter().all(|v| v.is_finite()), "{j:?} {ema:?}: {steps:?}");
            }
        }
    }
}
