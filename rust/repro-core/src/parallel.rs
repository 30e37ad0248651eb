use rayon::prelude::*;

use crate::error::Result;

/// Maps `row_fn` over rows 0..batch, on the current rayon pool when `parallel` is set.
///
/// Each worker keeps its own scratch state from `init`. The error returned is the one of the
/// first failing row, whatever the scheduling, so messages are deterministic.
pub(crate) fn map_rows<S, R, I, F>(batch: usize, parallel: bool, init: I, row_fn: F) -> Result<Vec<R>>
where
    R: Send,
    I: Fn() -> S + Send + Sync,
    F: Fn(&mut S, usize) -> Result<R> + Send + Sync,
{
    let results: Vec<Result<R>> = if parallel {
        (0..batch).into_par_iter().map_init(&init, |state, b| row_fn(state, b)).collect()
    } else {
        let mut state = init();
        (0..batch).map(|b| row_fn(&mut state, b)).collect()
    };
    results.into_iter().collect()
}
