//! RePro process rewards (arXiv 2512.01925), the pure Rust core of repro-core.
//!
//! Data flows one way: token ids and entropies -> [`select_cuts`] -> J at the cut points
//! (computed by the caller's model) -> [`score_steps`] -> [`compute_advantages`]. Inputs are
//! (B, T) buffers of any numeric dtype and memory order behind [`Rows`] (and [`Mask`] for the
//! response mask), and ragged per-row lists as (offsets, values).

mod advantages;
mod cuts;
mod delimiters;
mod error;
mod parallel;
mod ragged;
mod rows;
mod scores;

pub use advantages::{compute_advantages, Advantages, Batch, CriticTarget, Estimator, Options, ProcessStd};
pub use cuts::{segment_paragraphs, select_cuts, Cuts, Segments};
pub use delimiters::{Delimiters, TokenText};
pub use error::{Error, Result};
pub use ragged::row_ranges;
pub use rows::{lengths, Mask, MaskValue, Rows, Widen};
pub use scores::{check_score_options, magnitude, score_steps, Steps};
