//! docs/method.md, "Worked example", end to end, to 1e-6.
// The expected numbers are docs/method.md's, printed to six digits; one happens to be 1/sqrt(2).
#![allow(clippy::approx_constant)]

use ndarray::{array, Array2};
use repro_core::{compute_advantages, score_steps, select_cuts, Batch, Delimiters, Estimator, Options};

fn assert_close(actual: &[f64], expected: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() < 1e-6, "{what}[{i}]: {a} != {e}");
    }
}

struct Example {
    ids: Array2<i64>,
    mask: Array2<bool>,
    entropies: Array2<f64>,
}

fn example() -> Example {
    let pad = 0;
    let ids = array![[5, 7, 3, 4, 7, 6, 7, 8, 9, 2, 2, pad], [3, 3, 7, 5, 9, 4, pad, pad, pad, pad, pad, pad]];
    let mask = Array2::from_shape_fn((2, 12), |(b, t)| t < [11, 6][b]);
    let entropies = array![
        [0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.1, 0.8, 0.2, 0.1, 0.1, 0.0],
        [0.3, 0.2, 0.1, 0.7, 0.5, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    ];
    Example { ids, mask, entropies }
}

const J: [f64; 7] = [-2.0, -1.5, -1.8, -1.0, -2.5, -2.6, -2.0];

#[test]
fn cuts() {
    let ex = example();
    let delimiters = Delimiters::from_ids(&[7]).unwrap();
    for parallel in [false, true] {
        let cuts =
            select_cuts(&ex.ids.view(), &ex.mask.view(), &ex.entropies.view(), &delimiters, 2, Some(9), parallel)
                .unwrap();
        assert_eq!(cuts.ends, vec![9, 5]);
        assert_eq!(cuts.offsets, vec![0, 4, 7]);
        assert_eq!(cuts.positions, vec![0, 2, 7, 9, 0, 3, 5]);
    }
}

#[test]
fn scores() {
    let steps = score_steps(&J, &[0, 4, 7], 0.1, None).unwrap();
    assert_close(&steps.magnitude, &[0.0, 0.364851, 0.283702, 0.537883, 0.0, 0.222112, 0.335963], "magnitude");
    assert_close(&steps.stability, &[0.0, 1.0, 0.666667, 0.833333, 0.0, 0.0, 0.666667], "stability");
    assert_close(&steps.score, &[0.0, 0.428366, 0.321999, 0.567428, 0.0, 0.199901, 0.369034], "score");
    assert_close(&steps.reward, &[0.0, 0.428366, -0.106367, 0.245429, 0.0, 0.199901, 0.169133], "reward");
}

#[test]
fn grpo_advantages() {
    let ex = example();
    let mask = ex.mask.view();
    let steps = score_steps(&J, &[0, 4, 7], 0.1, None).unwrap();
    let batch = Batch {
        outcome_rewards: &[1.0, 0.0],
        step_rewards: &steps.reward,
        offsets: &[0, 4, 7],
        positions: &[0, 2, 7, 9, 0, 3, 5],
        response_mask: &mask,
        group_index: &[0, 0],
        values: None,
        token_rewards: None,
    };
    for parallel in [false, true] {
        let adv = compute_advantages(Estimator::Grpo, &batch, &Options::default(), parallel).unwrap();
        assert!(adv.returns.is_none());
        let row = |b: usize| adv.advantages.row(b).iter().map(|&v| v as f64).collect::<Vec<_>>();
        let (a, b, c, d) = (0.709989, 0.584755, 0.737307, 0.707106);
        assert_close(&row(0), &[a, a, b, b, b, b, b, c, c, d, d, 0.0], "row 0");
        let (e, f, g) = (-0.709989, -0.716539, -0.707106);
        assert_close(&row(1), &[e, e, e, f, f, g, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "row 1");
    }
}
