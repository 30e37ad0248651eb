//! Cut points and paragraphs of each completion (docs/method.md, "Cut points", steps 2 to 4).

use std::cmp::Ordering;

use crate::delimiters::Delimiters;
use crate::error::Result;
use crate::parallel::map_rows;
use crate::ragged::flatten;
use crate::rows::{check_finite, check_shape, lengths, Mask, Rows};

/// Cut points of a batch: row b is `positions[offsets[b]..offsets[b + 1]]`, sorted, first 0,
/// last `ends[b]` (the end of thinking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cuts {
    pub offsets: Vec<i64>,
    pub positions: Vec<i64>,
    pub ends: Vec<i64>,
}

/// Every paragraph span `[starts[i], ends[i])` of the thinking part, rows delimited by `offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    pub offsets: Vec<i64>,
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
}

/// The paragraph structure of one completion.
struct Thinking {
    /// Break positions inside the thinking part, ascending.
    candidates: Vec<usize>,
    /// End of thinking: first think-end token + 1, else the completion length.
    end: usize,
}

fn scan_row(ids: &[i64], delimiters: &Delimiters, think_end_id: Option<i64>, row: usize) -> Result<Thinking> {
    let mut candidates = Vec::new();
    let think_end = delimiters.scan(ids, think_end_id, row, &mut candidates)?;
    Ok(Thinking { candidates, end: think_end.map_or(ids.len(), |t| t + 1) })
}

/// Completion lengths from the mask, once token_ids is known to have its shape.
fn completion_lengths(token_ids: &dyn Rows<i64>, response_mask: &dyn Mask, parallel: bool) -> Result<Vec<usize>> {
    let lengths = lengths(response_mask, parallel)?;
    check_shape("token_ids", token_ids, response_mask.shape(), "response_mask")?;
    Ok(lengths)
}

/// {0} ∪ the k candidates of highest entropy (ties: smaller position) ∪ {end}, sorted.
fn row_cut_points(
    thinking: Thinking,
    entropy: impl Fn(usize) -> f64,
    k: usize,
    scored: &mut Vec<(f64, usize)>,
) -> Vec<i64> {
    let Thinking { mut candidates, end } = thinking;
    if candidates.len() > k {
        scored.clear();
        scored.extend(candidates.iter().map(|&p| (entropy(p), p)));
        if k > 0 {
            // Entropies are finite here, so partial_cmp is total (and -0.0 ties with 0.0).
            scored.select_nth_unstable_by(k - 1, |a, b| {
                b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal).then(a.1.cmp(&b.1))
            });
        }
        candidates.clear();
        candidates.extend(scored[..k].iter().map(|&(_, p)| p));
        candidates.sort_unstable();
    }
    let mut points = Vec::with_capacity(candidates.len() + 2);
    points.push(0);
    points.extend(candidates.iter().map(|&p| p as i64));
    if end > 0 {
        points.push(end as i64);
    }
    points
}

#[allow(clippy::too_many_arguments)]
pub fn select_cuts(
    token_ids: &dyn Rows<i64>,
    response_mask: &dyn Mask,
    entropies: &dyn Rows<f64>,
    delimiters: &Delimiters,
    k: usize,
    think_end_id: Option<i64>,
    parallel: bool,
) -> Result<Cuts> {
    let lengths = completion_lengths(token_ids, response_mask, parallel)?;
    check_shape("entropies", entropies, response_mask.shape(), "response_mask")?;
    let rows = map_rows(
        lengths.len(),
        parallel,
        || (Vec::new(), Vec::new()),
        |(ids, scored), b| {
            check_finite(entropies, "entropies", b, lengths[b])?;
            let thinking = scan_row(token_ids.row(b, lengths[b], ids), delimiters, think_end_id, b)?;
            Ok(row_cut_points(thinking, |p| entropies.get(b, p), k, scored))
        },
    )?;
    let ends = rows.iter().map(|points| *points.last().unwrap_or(&0)).collect();
    let (offsets, positions) = flatten(rows);
    Ok(Cuts { offsets, positions, ends })
}

pub fn segment_paragraphs(
    token_ids: &dyn Rows<i64>,
    response_mask: &dyn Mask,
    delimiters: &Delimiters,
    think_end_id: Option<i64>,
    parallel: bool,
) -> Result<Segments> {
    let lengths = completion_lengths(token_ids, response_mask, parallel)?;
    let rows = map_rows(lengths.len(), parallel, Vec::new, |ids, b| {
        let Thinking { candidates, end } = scan_row(token_ids.row(b, lengths[b], ids), delimiters, think_end_id, b)?;
        if end == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let starts: Vec<i64> = std::iter::once(0).chain(candidates.iter().map(|&p| p as i64)).collect();
        let ends = starts[1..].iter().copied().chain(std::iter::once(end as i64)).collect();
        Ok((starts, ends))
    })?;
    let (starts, ends): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
    let (offsets, starts) = flatten(starts);
    let (_, ends) = flatten(ends);
    Ok(Segments { offsets, starts, ends })
}
