//! Paragraph breaks (docs/method.md, "Cut points", step 2).

use crate::error::{ensure, Error, Result};

/// What one vocabulary entry contributes to the whitespace run at a token boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenText {
    /// Newlines in the leading whitespace run of the token's text.
    pub leading_newlines: u32,
    /// Newlines in the trailing whitespace run (all of them for a whitespace-only token).
    pub trailing_newlines: u32,
    pub whitespace_only: bool,
}

/// Which token boundaries are paragraph breaks, for one vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delimiters {
    /// Exact-token rule: a break falls right after any of these ids (sorted, unique).
    Tokens { ids: Vec<i64> },
    /// Text rule: a break falls before a token that is not whitespace-only when the whitespace run
    /// around the boundary holds at least `min_newlines` newlines.
    Text { table: Vec<TokenText>, min_newlines: u32 },
}

impl Delimiters {
    pub fn from_ids(ids: &[i64]) -> Result<Self> {
        if let Some(&bad) = ids.iter().find(|&&id| id < 0) {
            return Err(Error::new("delimiters", format!("expected token ids >= 0, got {bad}")));
        }
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        Ok(Self::Tokens { ids })
    }

    pub fn from_text(table: Vec<TokenText>, min_newlines: u32) -> Result<Self> {
        ensure(min_newlines >= 1, "min_newlines", || format!("expected >= 1, got {min_newlines}"))?;
        Ok(Self::Text { table, min_newlines })
    }

    /// Scans one completion: pushes every break position p inside the thinking part (1 <= p <
    /// the first `think_end_id` token, else p < ids.len()) onto `candidates`, in order, and
    /// returns the position of that think-end token. The text rule reads every id, so that an id
    /// outside its table is an error wherever it is; `row` only names the row in errors.
    pub fn scan(
        &self,
        ids: &[i64],
        think_end_id: Option<i64>,
        row: usize,
        candidates: &mut Vec<usize>,
    ) -> Result<Option<usize>> {
        let think_end = match self {
            Self::Tokens { ids: delimiters } => match delimiters.len() {
                1..=4 => {
                    let padded = std::array::from_fn(|i| delimiters[i.min(delimiters.len() - 1)]);
                    scan_few(ids, &padded, think_end_id, candidates)
                }
                _ => scan_many(ids, delimiters, think_end_id, candidates),
            },
            Self::Text { table, min_newlines } => {
                let think_end = think_end_id.and_then(|tag| ids.iter().position(|&id| id == tag));
                scan_text(ids, table, *min_newlines, row, candidates)?;
                think_end
            }
        };
        let limit = think_end.unwrap_or(ids.len());
        while candidates.last().is_some_and(|&p| p >= limit) {
            candidates.pop();
        }
        Ok(think_end)
    }
}

const THINK_END_FLAG: u8 = 2;

/// Per token: 1 for one of the (up to four, repeated to fill) delimiters, THINK_END_FLAG for the
/// tag. Branch-free, so that it vectorises.
#[inline(always)]
fn flag_tokens(ids: &[i64], delimiters: &[i64; 4], tag: Option<i64>, flags: &mut [u8]) {
    let [a, b, c, d] = *delimiters;
    let (tag, has_tag) = (tag.unwrap_or_default(), tag.is_some());
    for (flag, &id) in flags.iter_mut().zip(ids) {
        *flag = u8::from((id == a) | (id == b) | (id == c) | (id == d)) | (u8::from(has_tag & (id == tag)) << 1);
    }
}

/// The same loop compiled for AVX2, which compares 64-bit ids four at a time; the baseline
/// x86-64 target has no 64-bit compare and leaves it scalar.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn flag_tokens_avx2(ids: &[i64], delimiters: &[i64; 4], tag: Option<i64>, flags: &mut [u8]) {
    flag_tokens(ids, delimiters, tag, flags)
}

fn flag_tokens_fastest(ids: &[i64], delimiters: &[i64; 4], tag: Option<i64>, flags: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { flag_tokens_avx2(ids, delimiters, tag, flags) };
    }
    flag_tokens(ids, delimiters, tag, flags)
}

/// Exact-token rule with up to four delimiter ids: flags a block of tokens at a time, then visits
/// the few flagged ones. Returns the position of the first think-end tag.
fn scan_few(
    ids: &[i64],
    delimiters: &[i64; 4],
    think_end_id: Option<i64>,
    candidates: &mut Vec<usize>,
) -> Option<usize> {
    const BLOCK: usize = 512;
    let mut flags = [0u8; BLOCK];
    for (block_index, block) in ids.chunks(BLOCK).enumerate() {
        flag_tokens_fastest(block, delimiters, think_end_id, &mut flags);
        flags[block.len()..].fill(0); // the last block is short: no stale flags past its end
        let start = block_index * BLOCK;
        for (word_index, word) in flags.chunks_exact(8).enumerate() {
            // Eight flags at once: most words of a completion hold none.
            let mut bits = u64::from_le_bytes(word.try_into().expect("chunks of 8"));
            while bits != 0 {
                let byte = bits.trailing_zeros() as usize / 8;
                let t = start + word_index * 8 + byte;
                if word[byte] & THINK_END_FLAG != 0 {
                    return Some(t);
                }
                candidates.push(t + 1);
                bits &= !(0xff << (byte * 8));
            }
        }
    }
    None
}

/// Exact-token rule with any number of delimiter ids (sorted).
fn scan_many(ids: &[i64], delimiters: &[i64], think_end_id: Option<i64>, candidates: &mut Vec<usize>) -> Option<usize> {
    for (t, &id) in ids.iter().enumerate() {
        if Some(id) == think_end_id {
            return Some(t);
        }
        if delimiters.binary_search(&id).is_ok() {
            candidates.push(t + 1);
        }
    }
    None
}

/// Text rule: a break before every token that is not whitespace-only when the whitespace run
/// before it (across tokens) and its own leading whitespace hold `min_newlines` newlines.
fn scan_text(
    ids: &[i64],
    table: &[TokenText],
    min_newlines: u32,
    row: usize,
    candidates: &mut Vec<usize>,
) -> Result<()> {
    let mut run = 0u32;
    for (t, &id) in ids.iter().enumerate() {
        let text = usize::try_from(id).ok().and_then(|i| table.get(i)).ok_or_else(|| {
            Error::new(
                "token_ids",
                format!(
                    "id {id} at row {row}, position {t} is outside the delimiter table of {} tokens \
                     (was it built from this tokenizer?)",
                    table.len()
                ),
            )
        })?;
        if text.whitespace_only {
            run = run.saturating_add(text.leading_newlines);
        } else {
            if t > 0 && run.saturating_add(text.leading_newlines) >= min_newlines {
                candidates.push(t);
            }
            run = text.trailing_newlines;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> TokenText {
        let newlines = |s: &str| s.chars().filter(|&c| c == '\n').count() as u32;
        let lead: String = t.chars().take_while(|c| c.is_whitespace()).collect();
        let trail: String = t.chars().rev().take_while(|c| c.is_whitespace()).collect();
        TokenText {
            leading_newlines: newlines(&lead),
            trailing_newlines: newlines(&trail),
            whitespace_only: !t.is_empty() && t.chars().all(char::is_whitespace),
        }
    }

    fn breaks(vocab: &[&str], ids: &[i64], min_newlines: u32) -> Vec<usize> {
        let d = Delimiters::from_text(vocab.iter().map(|t| text(t)).collect(), min_newlines).unwrap();
        let mut out = vec![];
        d.scan(ids, None, 0, &mut out).unwrap();
        out
    }

    #[test]
    fn paper_mode_cuts_once_before_the_next_text_token() {
        let vocab = ["x", ".\n\n", ".", "\n", "Then", "\n\nThen", " ", "\n \t\n"];
        assert_eq!(breaks(&vocab, &[0, 1, 4], 2), vec![2]);
        assert_eq!(breaks(&vocab, &[0, 2, 3, 3, 4], 2), vec![4]);
        assert_eq!(breaks(&vocab, &[0, 2, 5], 2), vec![2]);
        assert_eq!(breaks(&vocab, &[0, 3, 6, 3, 6, 4], 2), vec![5]);
        assert_eq!(breaks(&vocab, &[0, 7, 4], 2), vec![2]);
        assert_eq!(breaks(&vocab, &[0, 3, 4], 2), Vec::<usize>::new());
        assert_eq!(breaks(&vocab, &[0, 3, 4], 1), vec![2]);
        // Text before the first token is not part of the completion: no break at p = 0.
        assert_eq!(breaks(&vocab, &[5, 4], 2), Vec::<usize>::new());
        // Across block boundaries of the exact rule the positions stay exact.
        let long: Vec<i64> = (0..200).map(|t| if t % 63 == 0 { 7 } else { 1 }).collect();
        let mut out = vec![];
        Delimiters::from_ids(&[7]).unwrap().scan(&long, None, 0, &mut out).unwrap();
        assert_eq!(out, vec![1, 64, 127, 190]);
    }

    #[test]
    fn exact_rule_breaks_after_delimiter_ids() {
        let d = Delimiters::from_ids(&[7]).unwrap();
        let mut out = vec![];
        let ids = [5, 7, 3, 4, 7, 6, 7, 8, 9, 2, 2, -1, 1000, 7];
        assert_eq!(d.scan(&ids, Some(9), 0, &mut out).unwrap(), Some(8));
        assert_eq!(out, vec![2, 5, 7]);
        out.clear();
        assert_eq!(d.scan(&ids, None, 0, &mut out).unwrap(), None);
        assert_eq!(out, vec![2, 5, 7], "a delimiter on the last token breaks nothing");
        // Ids are stored sparsely: a huge id costs nothing. Five ids take the general path.
        for delimiters in [vec![i64::MAX, 5, 5], vec![5, 40, 41, 42, i64::MAX]] {
            let d = Delimiters::from_ids(&delimiters).unwrap();
            out.clear();
            d.scan(&[1, 5, 2, i64::MAX, 3], None, 0, &mut out).unwrap();
            assert_eq!(out, vec![2, 4]);
        }
        assert!(Delimiters::from_ids(&[-3]).is_err());
    }

    #[test]
    fn ids_outside_the_text_table_are_errors() {
        let d = Delimiters::from_text(vec![text("a")], 2).unwrap();
        let err = d.scan(&[0, 5], Some(0), 3, &mut vec![]).unwrap_err();
        assert_eq!(err.argument, "token_ids");
        assert!(err.message.contains("row 3, position 1"));
    }
}
