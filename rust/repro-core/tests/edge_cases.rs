//! Edge cases of the core API: degenerate rows, groups and inputs.

use ndarray::{array, Array2};
use repro_core::{
    compute_advantages, score_steps, segment_paragraphs, select_cuts, Batch, CriticTarget, Delimiters, Estimator,
    Options, ProcessStd,
};

fn mask(lengths: &[usize], width: usize) -> Array2<bool> {
    Array2::from_shape_fn((lengths.len(), width), |(b, t)| t < lengths[b])
}

fn cuts(
    ids: &Array2<i64>,
    lengths: &[usize],
    entropies: &Array2<f64>,
    k: usize,
    think_end: Option<i64>,
) -> Vec<Vec<i64>> {
    let m = mask(lengths, ids.ncols());
    let delimiters = Delimiters::from_ids(&[7]).unwrap();
    let cuts = select_cuts(&ids.view(), &m.view(), &entropies.view(), &delimiters, k, think_end, false).unwrap();
    cuts.offsets.windows(2).map(|w| cuts.positions[w[0] as usize..w[1] as usize].to_vec()).collect()
}

#[test]
fn degenerate_rows() {
    let ids = array![[7, 1, 7, 1, 7, 1], [1, 1, 1, 1, 1, 1], [9, 7, 1, 7, 1, 1], [7, 1, 0, 0, 0, 0]];
    let flat = Array2::from_elem((4, 6), 0.5);
    let rows = cuts(&ids, &[6, 6, 6, 0], &flat, 20, Some(9));
    assert_eq!(rows[0], vec![0, 1, 3, 5, 6], "ties keep every candidate when k is large");
    assert_eq!(rows[1], vec![0, 6], "no delimiter: only 0 and e");
    assert_eq!(rows[2], vec![0, 1], "think-end at position 0: e = 1 and no candidate");
    assert_eq!(rows[3], vec![0], "empty completion: only the baseline point");
    assert_eq!(cuts(&ids, &[6, 6, 6, 0], &flat, 0, None)[0], vec![0, 6], "k = 0");
}

#[test]
fn ties_go_to_the_smaller_position() {
    let ids = array![[7, 1, 7, 1, 7, 1, 7, 1]];
    let entropies = array![[0.0, 0.3, 0.0, 0.3, 0.0, 0.9, 0.0, 0.3]];
    assert_eq!(cuts(&ids, &[8], &entropies, 2, None)[0], vec![0, 1, 5, 8]);
    assert_eq!(cuts(&ids, &[8], &entropies, 3, None)[0], vec![0, 1, 3, 5, 8]);
}

#[test]
fn non_finite_entropies_are_errors_inside_the_mask_only() {
    let ids = array![[7, 1, 7, 1]];
    let m = mask(&[3], 4);
    let d = Delimiters::from_ids(&[7]).unwrap();
    let padding_nan = array![[0.1, 0.2, 0.3, f64::NAN]];
    assert!(select_cuts(&ids.view(), &m.view(), &padding_nan.view(), &d, 2, None, false).is_ok());
    let inside = array![[0.1, f64::INFINITY, 0.3, 0.0]];
    let err = select_cuts(&ids.view(), &m.view(), &inside.view(), &d, 2, None, false).unwrap_err();
    assert_eq!(err.argument, "entropies");
    assert!(err.message.contains("row 0, position 1"), "{err}");
}

#[test]
fn paragraphs_cover_the_thinking_part() {
    let ids = array![[1, 7, 1, 1, 7, 1, 9, 1], [1, 1, 1, 1, 1, 1, 1, 1]];
    let m = mask(&[8, 0], 8);
    let d = Delimiters::from_ids(&[7]).unwrap();
    let segments = segment_paragraphs(&ids.view(), &m.view(), &d, Some(9), false).unwrap();
    assert_eq!(segments.offsets, vec![0, 3, 3]);
    assert_eq!(segments.starts, vec![0, 2, 5]);
    assert_eq!(segments.ends, vec![2, 5, 7]);
}

fn batch<'a>(
    rewards: &'a [f64],
    steps: &'a [f64],
    offsets: &'a [i64],
    positions: &'a [i64],
    m: &'a dyn repro_core::Mask,
    groups: &'a [i64],
) -> Batch<'a> {
    Batch {
        outcome_rewards: rewards,
        step_rewards: steps,
        offsets,
        positions,
        response_mask: m,
        group_index: groups,
        values: None,
        token_rewards: None,
    }
}

#[test]
fn one_completion_group_uses_mean_zero_std_one() {
    let m = mask(&[4], 5);
    let mv = m.view();
    let b = batch(&[1.0], &[0.0, 0.5, 0.25], &[0, 3], &[0, 2, 4], &mv, &[3]);
    let adv = compute_advantages(Estimator::Grpo, &b, &Options::default(), false).unwrap().advantages;
    let scale = 1.0 / (1.0 + 1e-6);
    let expected = [
        scale + 0.1 * 0.75 * scale,
        scale + 0.1 * 0.75 * scale,
        scale + 0.1 * 0.25 * scale,
        scale + 0.1 * 0.25 * scale,
        0.0,
    ];
    for (a, e) in adv.row(0).iter().zip(expected) {
        assert!((f64::from(*a) - e).abs() < 1e-6, "{a} != {e}");
    }
}

/// GAE over one completion, the textbook loop (V after the last token is 0).
fn gae_row(rewards: &[f64], values: &[f64], gamma: f64, lam: f64) -> Vec<f64> {
    let mut out = vec![0.0; rewards.len()];
    let (mut acc, mut next) = (0.0, 0.0);
    for t in (0..rewards.len()).rev() {
        acc = rewards[t] + gamma * next - values[t] + gamma * lam * acc;
        out[t] = acc;
        next = values[t];
    }
    out
}

#[test]
fn ppo_returns_are_the_raw_outcome_gae_plus_values() {
    // verl's gae: the critic regresses on GAE(r, V) + V of the token rewards, unwhitened and
    // without the process part, so neither alpha nor the step rewards move the returns.
    let m = mask(&[3, 2], 3);
    let mv = m.view();
    let values = array![[0.1, 0.2, 0.3], [0.5, -0.5, 9.0]];
    let vv = values.view();
    let kl = array![[-0.01, -0.02, -0.03], [-0.04, 0.0, 7.0]];
    let kv = kl.view();
    let mut b = batch(&[1.0, 0.0], &[0.0, 0.3, 0.0, 0.2], &[0, 2, 4], &[0, 3, 0, 2], &mv, &[0, 0]);
    let options = Options { gamma: 0.9, lam: 0.8, ..Options::default() };
    assert_eq!(compute_advantages(Estimator::Ppo, &b, &options, false).unwrap_err().argument, "values");
    b.values = Some(&vv);
    b.token_rewards = Some(&kv);
    let result = compute_advantages(Estimator::Ppo, &b, &options, false).unwrap();
    let returns = result.returns.unwrap();
    let rewards = [vec![-0.01, -0.02, 1.0 - 0.03], vec![-0.04, 0.0]];
    for (bi, r) in rewards.iter().enumerate() {
        let v = &values.row(bi).to_vec()[..r.len()];
        let gae = gae_row(r, v, 0.9, 0.8);
        for t in 0..3 {
            let expected = if t < r.len() { gae[t] + v[t] } else { 0.0 };
            assert!((f64::from(returns[[bi, t]]) - expected).abs() < 1e-6, "row {bi}, token {t}");
        }
    }
    assert_eq!(result.advantages[[1, 2]], 0.0);
    let other = Options { alpha: 0.7, ..options };
    assert_eq!(compute_advantages(Estimator::Ppo, &b, &other, false).unwrap().returns.unwrap(), returns);
}

#[test]
fn reinforce_pp_returns_are_the_discounted_token_rewards() {
    // verl's reinforce_plus_plus returns revcumsum_gamma(r), unwhitened, without the process part.
    let m = mask(&[3, 2], 3);
    let mv = m.view();
    let kl = array![[-0.01, -0.02, -0.03], [-0.04, 0.0, 7.0]];
    let kv = kl.view();
    let mut b = batch(&[1.0, 0.5], &[0.0, 0.3, 0.0, 0.2], &[0, 2, 4], &[0, 3, 0, 2], &mv, &[0, 0]);
    b.token_rewards = Some(&kv);
    let options = Options { gamma: 0.5, ..Options::default() };
    let returns = compute_advantages(Estimator::ReinforcePp, &b, &options, false).unwrap().returns.unwrap();
    let expected =
        array![[-0.01 + 0.5 * (-0.02 + 0.5 * 0.97), -0.02 + 0.5 * 0.97, 0.97], [-0.04 + 0.5 * 0.5, 0.5, 0.0]];
    for (r, e) in returns.iter().zip(expected.iter()) {
        assert!((f64::from(*r) - e).abs() < 1e-6, "{returns} != {expected}");
    }
    for estimator in [Estimator::Grpo, Estimator::DrGrpo, Estimator::ReinforcePpBaseline] {
        b.token_rewards = None;
        assert!(compute_advantages(estimator, &b, &Options::default(), false).unwrap().returns.is_none());
    }
}

#[test]
fn knobs_an_estimator_does_not_use_are_errors() {
    let m = mask(&[2], 2);
    let mv = m.view();
    let b = batch(&[1.0], &[0.0, 0.1], &[0, 2], &[0, 2], &mv, &[0]);
    let lam = Options { lam: 0.9, ..Options::default() };
    assert_eq!(compute_advantages(Estimator::Grpo, &b, &lam, false).unwrap_err().argument, "lam");
    let no_std = Options { norm_by_std: false, ..Options::default() };
    assert_eq!(compute_advantages(Estimator::ReinforcePp, &b, &no_std, false).unwrap_err().argument, "norm_by_std");
    // grpo without std is dr_grpo.
    let a = compute_advantages(Estimator::Grpo, &b, &no_std, false).unwrap();
    let d = compute_advantages(Estimator::DrGrpo, &b, &Options::default(), false).unwrap();
    assert_eq!(a, d);
}

#[test]
fn positions_must_fit_their_rows() {
    let m = mask(&[2], 4);
    let mv = m.view();
    for (positions, needle) in
        [([0, 3], "beyond the completion length"), ([1, 2], "baseline"), ([0, 0], "strictly increasing")]
    {
        let b = batch(&[1.0], &[0.0, 0.1], &[0, 2], &positions, &mv, &[0]);
        let err = compute_advantages(Estimator::Grpo, &b, &Options::default(), false).unwrap_err();
        assert_eq!(err.argument, "positions");
        assert!(err.message.contains(needle), "{err}");
    }
}

#[test]
fn stability_is_kendall_tau_a_with_ties_counting_zero() {
    let steps = score_steps(&[-1.0, -1.0, -0.5], &[0, 3], 0.0, None).unwrap();
    // Pairs: (0,1) tie -> 0, (0,2) +1, (1,2) +1: tau = 2/3 at j = 2; tau = 0 at j = 1.
    assert!((steps.stability[1] - 0.5).abs() < 1e-12);
    assert!((steps.stability[2] - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
    // w = 0: the score is the magnitude alone.
    assert_eq!(steps.score, steps.magnitude);
}

#[test]
fn the_authors_options_and_the_process_std_are_checked_per_estimator() {
    let m = mask(&[2], 2);
    let mv = m.view();
    let b = batch(&[1.0], &[0.0, 0.1], &[0, 2], &[0, 2], &mv, &[0]);
    let target = Options { critic_target: CriticTarget::Advantages, ..Options::default() };
    assert_eq!(compute_advantages(Estimator::Grpo, &b, &target, false).unwrap_err().argument, "critic_target");
    for scope in [ProcessStd::Batch, ProcessStd::None] {
        let options = Options { process_std: scope, ..Options::default() };
        assert!(compute_advantages(Estimator::Grpo, &b, &options, false).is_ok());
        assert_eq!(compute_advantages(Estimator::DrGrpo, &b, &options, false).unwrap_err().argument, "process_std");
        let no_std = Options { norm_by_std: false, ..options };
        assert_eq!(compute_advantages(Estimator::Grpo, &b, &no_std, false).unwrap_err().argument, "process_std");
    }
    assert_eq!(ProcessStd::parse("batch").unwrap(), ProcessStd::Batch);
    assert_eq!(ProcessStd::parse("rows").unwrap_err().argument, "process_std");
    assert_eq!(CriticTarget::parse("advantages").unwrap(), CriticTarget::Advantages);
    assert_eq!(CriticTarget::parse("values").unwrap_err().argument, "critic_target");
}

#[test]
fn the_authors_quirks_by_hand() {
    // One group of two rows, length 3, one process reward each: row 0 on token 0 (a cut at
    // p = 1), row 1 on token 1; zero outcomes so that only the process part is left.
    let m = mask(&[3, 3], 3);
    let mv = m.view();
    let b = batch(&[0.0, 0.0], &[0.0, 1.0, 0.0, 3.0], &[0, 2, 4], &[0, 1, 0, 2], &mv, &[0, 0]);
    let run = |options: Options| compute_advantages(Estimator::DrGrpo, &b, &options, false).unwrap().advantages;
    let plain = Options { alpha: 1.0, ..Options::default() };
    // Mean 2 over {1, 3}: -1 on token 0 of row 0, +1 on token 1 of row 1.
    assert_eq!(run(plain), array![[-1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]);
    // With one 0 per completion: mean 1 over {1, 3, 0, 0}.
    let baseline = Options { stats_include_baseline: true, ..plain };
    assert_eq!(run(baseline), array![[0.0, 0.0, 0.0], [2.0, 2.0, 0.0]]);
    // The reward on token 0 is gone: mean 3 over {3}, one value, so the group falls back to mean 0.
    let dropped = Options { drop_first_token_reward: true, ..plain };
    assert_eq!(run(dropped), array![[0.0, 0.0, 0.0], [3.0, 3.0, 0.0]]);
    // Both: mean 1 over {3, 0, 0}.
    let both = Options { drop_first_token_reward: true, ..baseline };
    assert_eq!(run(both), array![[0.0, 0.0, 0.0], [2.0, 2.0, 0.0]]);
}

#[test]
fn a_reward_on_the_last_column_takes_the_baseline_zero_cell() {
    // The authors' code writes the baseline's 0 on token -1, the batch's last column. Row 0 fills
    // the width (its end reward 3 is on token 2, that column): it adds no 0. Row 1 is shorter.
    let m = mask(&[3, 2], 3);
    let mv = m.view();
    let b = batch(&[0.0, 0.0], &[0.0, 3.0, 0.0, 1.0], &[0, 2, 4], &[0, 3, 0, 2], &mv, &[0, 0]);
    let baseline = Options { alpha: 1.0, stats_include_baseline: true, ..Options::default() };
    let advantages = compute_advantages(Estimator::DrGrpo, &b, &baseline, false).unwrap().advantages;
    // Mean 4 / 3 over {3, 1, 0}: one 0, row 1's, not two.
    let (high, low) = ((3.0 - 4.0 / 3.0) as f32, (1.0 - 4.0 / 3.0) as f32);
    assert_eq!(advantages, array![[high, high, high], [low, low, 0.0]]);
}
