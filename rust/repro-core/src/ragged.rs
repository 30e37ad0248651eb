//! Ragged per-row lists stored as (offsets (B+1,), values (N,)).

use crate::error::{ensure, Error, Result};

/// Concatenates per-row lists into (offsets, values).
pub(crate) fn flatten(rows: Vec<Vec<i64>>) -> (Vec<i64>, Vec<i64>) {
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0);
    let mut values = Vec::with_capacity(rows.iter().map(Vec::len).sum());
    for row in rows {
        values.extend(row);
        offsets.push(values.len() as i64);
    }
    (offsets, values)
}

/// Validates offsets over `n` values and returns the row ranges.
pub fn row_ranges(offsets: &[i64], n: usize, values_argument: &str) -> Result<Vec<std::ops::Range<usize>>> {
    ensure(offsets.len() >= 2, "offsets", || {
        format!("expected B + 1 >= 2 entries (one row at least), got {}", offsets.len())
    })?;
    ensure(offsets[0] == 0, "offsets", || format!("expected offsets[0] == 0, got {}", offsets[0]))?;
    if let Some(b) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(Error::new(
            "offsets",
            format!(
                "expected non-decreasing values, got offsets[{}] = {} > offsets[{}] = {}",
                b,
                offsets[b],
                b + 1,
                offsets[b + 1]
            ),
        ));
    }
    let last = offsets[offsets.len() - 1];
    ensure(last == n as i64, "offsets", || {
        format!("expected the last offset to equal the length of {values_argument} ({n}), got {last}")
    })?;
    Ok(offsets.windows(2).map(|w| w[0] as usize..w[1] as usize).collect())
}
