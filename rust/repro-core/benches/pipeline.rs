//! Criterion benches of the RePro pipeline on the shape: 256 completions x 16,384 tokens,
//! k = 20, a paragraph break about once per 40 tokens (exact-token rule, 3 delimiter ids), a
//! think-end token near the end of half of the rows, 8 completions per group.
//!
//! Each stage (select_cuts, score_steps, compute_advantages for grpo and ppo) and the pipeline
//! select_cuts + score_steps + compute_advantages("grpo") run sequentially (`parallel = false`)
//! and in parallel (`parallel = true` inside a rayon pool of every available core). J at the cut
//! points is the model's job: it is drawn once, outside the timed region, for the cut layout of
//! the fixed input (cuts are deterministic). Throughput is B x T tokens per iteration.
//!
//! `cargo bench -p repro-core` (about two minutes on 2 cores); `cargo bench -p repro-core -- pipeline`
//! for the pipeline only. The input is generated here with a small deterministic PRNG: the same
//! distribution as benches/numpy_pipeline.py, not the same bits.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use ndarray::Array2;
use repro_core::{compute_advantages, score_steps, select_cuts, Batch, Cuts, Delimiters, Estimator, Options};

const BATCH: usize = 256;
const WIDTH: usize = 16_384;
const VOCAB: u64 = 32_000;
const K: usize = 20;
const GROUP_SIZE: usize = 8;
const DELIMITER_IDS: [i64; 3] = [271, 382, 1406];
const THINK_END_ID: i64 = 31_999;
const BREAK_EVERY: u64 = 40;

/// splitmix64: a small deterministic generator (the core has no rand dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Input {
    ids: Array2<i64>,
    mask: Array2<bool>,
    entropies: Array2<f32>,
    outcome_rewards: Vec<f64>,
    group_index: Vec<i64>,
    values: Array2<f32>,
    delimiters: Delimiters,
}

fn input() -> Input {
    let mut rng = Rng(0x5EED);
    let lengths: Vec<usize> = (0..BATCH)
        .map(|_| {
            if rng.uniform() < 0.75 {
                WIDTH - rng.below(WIDTH as u64 / 8) as usize
            } else {
                WIDTH / 16 + rng.below((WIDTH - WIDTH / 16) as u64) as usize
            }
        })
        .collect();
    let mut ids = Array2::<i64>::zeros((BATCH, WIDTH));
    let mut entropies = Array2::<f32>::zeros((BATCH, WIDTH));
    for b in 0..BATCH {
        for t in 0..lengths[b] {
            ids[(b, t)] = if rng.below(BREAK_EVERY) == 0 {
                DELIMITER_IDS[rng.below(DELIMITER_IDS.len() as u64) as usize]
            } else {
                loop {
                    let id = rng.below(VOCAB) as i64;
                    if !DELIMITER_IDS.contains(&id) && id != THINK_END_ID {
                        break id;
                    }
                }
            };
            // Gamma(2, 0.6)-like: the sum of two exponentials.
            entropies[(b, t)] = (-0.6 * ((1.0 - rng.uniform()).ln() + (1.0 - rng.uniform()).ln())) as f32;
        }
        if rng.uniform() < 0.5 && lengths[b] > 0 {
            let back = rng.below((WIDTH / 64) as u64) as usize;
            ids[(b, lengths[b].saturating_sub(1 + back))] = THINK_END_ID;
        }
    }
    let mask = Array2::from_shape_fn((BATCH, WIDTH), |(b, t)| t < lengths[b]);
    let values =
        Array2::from_shape_fn((BATCH, WIDTH), |(b, t)| if t < lengths[b] { (rng.uniform() - 0.5) as f32 } else { 0.0 });
    let outcome_rewards = (0..BATCH).map(|_| f64::from(u8::from(rng.uniform() < 0.4))).collect();
    let group_index = (0..BATCH).map(|b| (b / GROUP_SIZE) as i64).collect();
    Input {
        ids,
        mask,
        entropies,
        outcome_rewards,
        group_index,
        values,
        delimiters: Delimiters::from_ids(&DELIMITER_IDS).unwrap(),
    }
}

fn cuts(input: &Input, parallel: bool) -> Cuts {
    select_cuts(
        &input.ids.view(),
        &input.mask.view(),
        &input.entropies.view(),
        &input.delimiters,
        K,
        Some(THINK_END_ID),
        parallel,
    )
    .unwrap()
}

/// J (<= 0) at every cut point: the model's output, drawn once.
fn j_values(n: usize) -> Vec<f64> {
    let mut rng = Rng(0xA11CE);
    (0..n).map(|_| -(-(1.0 - rng.uniform()).ln() - (1.0 - rng.uniform()).ln())).collect()
}

fn batch<'a>(
    input: &'a Input,
    cuts: &'a Cuts,
    rewards: &'a [f64],
    mask: &'a ndarray::ArrayView2<'a, bool>,
    values: Option<&'a ndarray::ArrayView2<'a, f32>>,
) -> Batch<'a> {
    Batch {
        outcome_rewards: &input.outcome_rewards,
        step_rewards: rewards,
        offsets: &cuts.offsets,
        positions: &cuts.positions,
        response_mask: mask,
        group_index: &input.group_index,
        values: values.map(|v| v as &dyn repro_core::Rows<f64>),
        token_rewards: None,
    }
}

fn pipeline(input: &Input, j: &[f64], parallel: bool) -> ndarray::Array2<f32> {
    let cuts = cuts(input, parallel);
    let steps = score_steps(j, &cuts.offsets, 0.1, None).unwrap();
    let mask = input.mask.view();
    let batch = batch(input, &cuts, &steps.reward, &mask, None);
    compute_advantages(Estimator::Grpo, &batch, &Options::default(), parallel).unwrap().advantages
}

/// Runs `f(parallel)` sequentially and inside `pool`, as two benchmarks of `group`.
fn both(group: &mut BenchmarkGroup<'_, WallTime>, pool: &rayon::ThreadPool, name: &str, f: impl Fn(bool) + Sync) {
    group.bench_function(format!("{name}/sequential"), |b| b.iter(|| f(false)));
    let threads = pool.current_num_threads();
    group.bench_function(format!("{name}/parallel-{threads}"), |b| b.iter(|| pool.install(|| f(true))));
}

/// A vectorisable f32 sum (16 lanes, like NumPy's pairwise SIMD sum).
fn sum_f32(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn benches(c: &mut Criterion) {
    let input = input();
    let layout = cuts(&input, false);
    let j = j_values(layout.positions.len());
    let steps = score_steps(&j, &layout.offsets, 0.1, None).unwrap();
    // What the benches run on, and a checksum to compare implementations of the core with.
    let advantages = pipeline(&input, &j, false);
    let checksum = layout.positions.iter().fold(0u64, |h, &p| h.wrapping_mul(1_000_003).wrapping_add(p as u64));
    eprintln!(
        "input: {BATCH} x {WIDTH}, {} tokens in completions, {} cut points (k = {K}), positions hash {checksum:016x}, sum |advantages| {:.6}",
        input.mask.iter().filter(|&&m| m).count(),
        layout.positions.len(),
        advantages.iter().map(|&a| f64::from(a).abs()).sum::<f64>(),
    );
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mask = input.mask.view();
    let values = input.values.view();

    let mut group = c.benchmark_group("repro-core");
    group.throughput(Throughput::Elements((BATCH * WIDTH) as u64));
    both(&mut group, &pool, "select_cuts", |parallel| {
        black_box(cuts(black_box(&input), parallel));
    });
    // score_steps has no parallel flag: it is O(N) with N = B x (k + 2) cut points.
    group.bench_function("score_steps", |b| {
        b.iter(|| black_box(score_steps(black_box(&j), &layout.offsets, 0.1, None).unwrap()))
    });
    both(&mut group, &pool, "compute_advantages_grpo", |parallel| {
        let batch = batch(&input, &layout, &steps.reward, &mask, None);
        black_box(compute_advantages(Estimator::Grpo, black_box(&batch), &Options::default(), parallel).unwrap());
    });
    both(&mut group, &pool, "compute_advantages_ppo", |parallel| {
        let batch = batch(&input, &layout, &steps.reward, &mask, Some(&values));
        black_box(compute_advantages(Estimator::Ppo, black_box(&batch), &Options::default(), parallel).unwrap());
    });
    both(&mut group, &pool, "pipeline_grpo", |parallel| {
        black_box(pipeline(black_box(&input), &j, parallel));
    });
    // The memory-bandwidth yardstick: one read of each input buffer (a sum), sequential.
    group.bench_function("yardstick_sum", |b| {
        b.iter(|| {
            let ids: i64 = black_box(&input.ids).as_slice().unwrap().iter().sum();
            let mask: usize = black_box(&input.mask).as_slice().unwrap().iter().map(|&m| usize::from(m)).sum();
            black_box((ids, mask, sum_f32(black_box(&input.entropies).as_slice().unwrap())))
        })
    });
    group.finish();
}

criterion_group! {
    name = pipeline_benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(pipeline_benches);
