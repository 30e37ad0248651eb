//! Paragraph breaks (REPRO.md section 2).

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

    /// Calls `on_break(p)` for every break position 1 <= p < `limit` (<= ids.len()), in order.
    /// The text rule reads every id, so that an id outside its table is an error wherever it is;
    /// `row` only names the row in errors.
    pub fn for_each_break(&self, ids: &[i64], limit: usize, row: usize, mut on_break: impl FnMut(usize)) -> Result<()> {
        match self {
            Self::Tokens { ids: delimiters } => {
                // A break before p is a delimiter at p - 1: tokens 0..limit - 1 decide.
                for (t, id) in ids[..limit.saturating_sub(1)].iter().enumerate() {
                    if delimiters.binary_search(id).is_ok() {
                        on_break(t + 1);
                    }
                }
            }
            Self::Text { table, min_newlines } => {
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
                        if t > 0 && t < limit && run.saturating_add(text.leading_newlines) >= *min_newlines {
                            on_break(t);
                        }
                        run = text.trailing_newlines;
                    }
                }
            }
        }
        Ok(())
    }
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
        d.for_each_break(ids, ids.len(), 0, |p| out.push(p)).unwrap();
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
    }

    #[test]
    fn exact_rule_breaks_after_delimiter_ids() {
        let d = Delimiters::from_ids(&[7]).unwrap();
        let mut out = vec![];
        d.for_each_break(&[5, 7, 3, 4, 7, 6, 7, 8, 9, 2, 2, -1, 1000], 13, 0, |p| out.push(p)).unwrap();
        assert_eq!(out, vec![2, 5, 7]);
        // Ids are stored sparsely: a huge id costs nothing.
        let d = Delimiters::from_ids(&[i64::MAX, 5, 5]).unwrap();
        out.clear();
        d.for_each_break(&[1, 5, 2, i64::MAX, 3], 5, 0, |p| out.push(p)).unwrap();
        assert_eq!(out, vec![2, 4]);
        assert!(Delimiters::from_ids(&[-3]).is_err());
    }

    #[test]
    fn ids_outside_the_text_table_are_errors() {
        let d = Delimiters::from_text(vec![text("a")], 2).unwrap();
        let err = d.for_each_break(&[0, 5], 1, 3, |_| {}).unwrap_err();
        assert_eq!(err.argument, "token_ids");
        assert!(err.message.contains("row 3, position 1"));
    }
}
