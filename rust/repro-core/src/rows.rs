//! Row access over (B, T) buffers of any numeric dtype and memory order.
//!
//! The core reads one row at a time into a scratch buffer of its working type (i64 ids, f64
//! values). That keeps every algorithm free of dtype generics, lets strided (F-ordered or sliced)
//! arrays work without copying the whole array, and costs one pass over a row that is then hot in
//! cache.

use ndarray::ArrayView2;

use crate::error::{ensure, Error, Result};

/// A (B, T) buffer that can be read row by row as values of type `T`.
pub trait Rows<T>: Sync {
    fn shape(&self) -> (usize, usize);
    /// Replaces `out` with the first `len` values of row `row`.
    fn read_row(&self, row: usize, len: usize, out: &mut Vec<T>);
}

/// Lossless conversion of a stored element into the core's working type.
pub trait Widen<T>: Copy + Sync {
    fn widen(self) -> T;
}

macro_rules! widen {
    ($to:ty: $($from:ty),*) => {$(
        impl Widen<$to> for $from {
            #[inline(always)]
            fn widen(self) -> $to { self as $to }
        }
    )*};
}
widen!(i64: i32, i64);
widen!(f64: f32, f64, u8, i8, i32, i64);

impl Widen<f64> for bool {
    #[inline(always)]
    fn widen(self) -> f64 {
        f64::from(u8::from(self))
    }
}

impl<S: Widen<T>, T> Rows<T> for ArrayView2<'_, S> {
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }

    fn read_row(&self, row: usize, len: usize, out: &mut Vec<T>) {
        out.clear();
        let row = self.row(row);
        match row.as_slice() {
            Some(contiguous) => out.extend(contiguous[..len].iter().map(|&v| v.widen())),
            None => out.extend(row.iter().take(len).map(|&v| v.widen())),
        }
    }
}

/// Checks that a (B, T) argument has the shape of the reference argument.
pub fn check_shape<T>(
    argument: &'static str,
    rows: &dyn Rows<T>,
    expected: (usize, usize),
    reference: &str,
) -> Result<()> {
    let shape = rows.shape();
    ensure(shape == expected, argument, || {
        format!("expected shape {expected:?} (the shape of {reference}), got {shape:?}")
    })
}

/// Completion lengths from a right-padded 0/1 response mask, validated.
pub fn lengths(mask: &dyn Rows<f64>) -> Result<Vec<usize>> {
    let (batch, width) = mask.shape();
    ensure(batch > 0, "response_mask", || format!("empty batch: expected B >= 1 rows, got shape ({batch}, {width})"))?;
    ensure(width > 0, "response_mask", || {
        format!("zero width: expected T >= 1 columns, got shape ({batch}, {width})")
    })?;
    let mut row = Vec::with_capacity(width);
    (0..batch)
        .map(|b| {
            mask.read_row(b, width, &mut row);
            let len = row.iter().take_while(|&&v| v == 1.0).count();
            match row[len..].iter().position(|&v| v != 0.0) {
                None => Ok(len),
                Some(i) if row[len + i] == 1.0 => Err(Error::new(
                    "response_mask",
                    format!("row {b} is not right-padded: 1 at position {} after 0 at position {len}", len + i),
                )),
                Some(i) => Err(Error::new(
                    "response_mask",
                    format!("expected 0/1 values, got {} at row {b}, position {}", row[len + i], len + i),
                )),
            }
        })
        .collect()
}

/// Reads row `b` and fails on the first NaN or infinite value, naming row and position.
pub(crate) fn read_finite_row(
    rows: &dyn Rows<f64>,
    argument: &'static str,
    b: usize,
    len: usize,
    out: &mut Vec<f64>,
) -> Result<()> {
    rows.read_row(b, len, out);
    if out.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    let t = out.iter().position(|v| !v.is_finite()).unwrap_or_default();
    Err(Error::new(argument, format!("expected finite values, got {} at row {b}, position {t}", out[t])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn lengths_of_right_padded_masks() {
        let mask = array![[true, true, false], [false, false, false], [true, true, true]];
        assert_eq!(lengths(&mask.view()).unwrap(), vec![2, 0, 3]);
        let ints = array![[1i64, 0, 0]];
        assert_eq!(lengths(&ints.view()).unwrap(), vec![1]);
    }

    #[test]
    fn lengths_reject_holes_and_non_binary_values() {
        let holes = array![[1i32, 0, 1]];
        assert!(lengths(&holes.view()).unwrap_err().message.contains("not right-padded"));
        let twos = array![[1.0f64, 2.0, 0.0]];
        assert!(lengths(&twos.view()).unwrap_err().message.contains("0/1"));
        let empty = ndarray::Array2::<bool>::from_elem((0, 3), false);
        assert!(lengths(&empty.view()).is_err());
    }

    #[test]
    fn strided_rows_read_like_contiguous_ones() {
        let c = array![[1i32, 2, 3], [4, 5, 6]];
        let f = c.t().to_owned();
        let f = f.t();
        let mut a: Vec<i64> = Vec::new();
        let mut b: Vec<i64> = Vec::new();
        c.view().read_row(1, 2, &mut a);
        f.read_row(1, 2, &mut b);
        assert_eq!(a, vec![4, 5]);
        assert_eq!(a, b);
    }
}
