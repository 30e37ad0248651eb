//! The rayon pool, sized by `REPRO_NUM_THREADS` and rebuilt after `fork()`.
//!
//! RL stacks fork data-loader and rollout workers. A rayon pool does not survive a fork: the
//! child inherits the pool's bookkeeping but none of its threads, so using it would hang. The
//! pool is therefore tagged with the process id that built it and a child builds its own.

use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};
use repro_core::{Error, Result};

/// Below this many (B x T) elements a call runs on the calling thread: spawning costs more.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

const THREADS_VARIABLE: &str = "REPRO_NUM_THREADS";

struct Pool {
    pid: u32,
    threads: usize,
    pool: Arc<ThreadPool>,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// Threads to use: `REPRO_NUM_THREADS` (read at every call; 1 turns parallelism off), else
/// every available core.
fn threads() -> Result<usize> {
    match std::env::var(THREADS_VARIABLE) {
        Ok(text) if !text.trim().is_empty() => match text.trim().parse::<usize>() {
            Ok(0) | Err(_) => Err(Error::new(THREADS_VARIABLE, format!("expected a positive integer, got {text:?}"))),
            Ok(n) => Ok(n),
        },
        _ => Ok(std::thread::available_parallelism().map_or(1, usize::from)),
    }
}

fn pool(threads: usize) -> Result<Arc<ThreadPool>> {
    let pid = std::process::id();
    let mut slot = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match slot.take() {
        Some(current) if current.pid == pid && current.threads == threads => {
            let pool = current.pool.clone();
            *slot = Some(current);
            return Ok(pool);
        }
        // Inherited from the parent: its threads do not exist here, and dropping it would wait
        // on them, so it is leaked.
        Some(stale) if stale.pid != pid => std::mem::forget(stale),
        _ => {}
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("repro-core-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::new(THREADS_VARIABLE, format!("could not start {threads} threads: {e}")))?;
    *slot = Some(Pool { pid, threads, pool: pool.clone() });
    Ok(pool)
}

/// Runs `compute(parallel)`, inside the pool when the work is large enough and more than one
/// thread is allowed.
pub fn run<T: Send>(elements: usize, compute: impl FnOnce(bool) -> Result<T> + Send) -> Result<T> {
    let threads = threads()?;
    if threads == 1 || elements < PARALLEL_MIN_ELEMENTS {
        return compute(false);
    }
    pool(threads)?.install(|| compute(true))
}
