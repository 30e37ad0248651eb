//! Row access over (B, T) buffers of any numeric dtype and memory order.
//!
//! The core reads one row at a time. A row stored contiguously in the working type (i64 ids,
//! f64 values) is borrowed; any other row (int32, float32, F-ordered or sliced arrays) is
//! widened into a per-thread scratch buffer. Checks that read every value (finiteness, the 0/1
//! mask) run on the stored dtype, so they copy nothing.

use std::fmt::Display;

use ndarray::{s, ArrayView2};

use crate::error::{ensure, Error, Result};
use crate::parallel::map_rows;

/// A (B, T) buffer that can be read row by row as values of type `T`.
pub trait Rows<T>: Sync {
    fn shape(&self) -> (usize, usize);
    /// The first `len` values of row `row`: borrowed when stored contiguously as `T`, else
    /// widened into `scratch`.
    fn row<'a>(&'a self, row: usize, len: usize, scratch: &'a mut Vec<T>) -> &'a [T];
    fn get(&self, row: usize, column: usize) -> T;
    /// Position and value of the first NaN or infinity among the first `len` values of `row`.
    fn first_non_finite(&self, row: usize, len: usize) -> Option<(usize, String)>;
}

/// A stored element type and its lossless conversion into the core's working type `T`.
pub trait Widen<T>: Copy + Sync + Display {
    fn widen(self) -> T;
    /// `slice` itself when the stored type is the working type.
    fn as_working(slice: &[Self]) -> Option<&[T]>;
    fn is_finite(self) -> bool;
}

impl Widen<i64> for i64 {
    fn widen(self) -> i64 {
        self
    }
    fn as_working(slice: &[Self]) -> Option<&[i64]> {
        Some(slice)
    }
    fn is_finite(self) -> bool {
        true
    }
}

impl Widen<i64> for i32 {
    fn widen(self) -> i64 {
        i64::from(self)
    }
    fn as_working(_: &[Self]) -> Option<&[i64]> {
        None
    }
    fn is_finite(self) -> bool {
        true
    }
}

impl Widen<f64> for f64 {
    fn widen(self) -> f64 {
        self
    }
    fn as_working(slice: &[Self]) -> Option<&[f64]> {
        Some(slice)
    }
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
}

impl Widen<f64> for f32 {
    fn widen(self) -> f64 {
        f64::from(self)
    }
    fn as_working(_: &[Self]) -> Option<&[f64]> {
        None
    }
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}

impl<S: Widen<T>, T: Copy> Rows<T> for ArrayView2<'_, S> {
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }

    fn row<'a>(&'a self, row: usize, len: usize, scratch: &'a mut Vec<T>) -> &'a [T] {
        let stored = self.slice(s![row, ..len]);
        if let Some(working) = stored.to_slice().and_then(S::as_working) {
            return working;
        }
        scratch.clear();
        match stored.to_slice() {
            Some(contiguous) => scratch.extend(contiguous.iter().map(|&v| v.widen())),
            None => scratch.extend(stored.iter().map(|&v| v.widen())),
        }
        scratch
    }

    fn get(&self, row: usize, column: usize) -> T {
        self[[row, column]].widen()
    }

    fn first_non_finite(&self, row: usize, len: usize) -> Option<(usize, String)> {
        let stored = self.slice(s![row, ..len]);
        // The branch-free count vectorises; the position is looked for only when there is one.
        let bad = match stored.to_slice() {
            Some(contiguous) => contiguous.iter().filter(|v| !v.is_finite()).count(),
            None => stored.iter().filter(|v| !v.is_finite()).count(),
        };
        if bad == 0 {
            return None;
        }
        stored.iter().position(|v| !v.is_finite()).map(|t| (t, stored[t].to_string()))
    }
}

/// Fails on the first NaN or infinity of row `b`, naming the argument, row and position.
pub(crate) fn check_finite<T>(rows: &dyn Rows<T>, argument: &'static str, b: usize, len: usize) -> Result<()> {
    match rows.first_non_finite(b, len) {
        None => Ok(()),
        Some((t, value)) => {
            Err(Error::new(argument, format!("expected finite values, got {value} at row {b}, position {t}")))
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

/// A 0/1 response mask of any dtype.
pub trait Mask: Sync {
    fn shape(&self) -> (usize, usize);
    /// The number of leading ones of row `row`, once the row is known to be 0/1 and right-padded.
    fn length(&self, row: usize) -> Result<usize>;
}

/// A mask element: bool, or a number that must be 0 or 1.
pub trait MaskValue: Copy + Sync + PartialEq + Display {
    const ZERO: Self;
    const ONE: Self;
}

macro_rules! mask_value {
    ($($t:ty: $zero:expr, $one:expr);*) => {$(
        impl MaskValue for $t {
            const ZERO: Self = $zero;
            const ONE: Self = $one;
        }
    )*};
}
mask_value!(bool: false, true; u8: 0, 1; i8: 0, 1; i32: 0, 1; i64: 0, 1; f32: 0.0, 1.0; f64: 0.0, 1.0);

fn row_length<'a, S: MaskValue + 'a>(values: impl Iterator<Item = &'a S> + Clone, row: usize) -> Result<usize> {
    let len = values.clone().take_while(|&&v| v == S::ONE).count();
    match values.enumerate().skip(len).find(|&(_, &v)| v != S::ZERO) {
        None => Ok(len),
        Some((t, &v)) if v == S::ONE => Err(Error::new(
            "response_mask",
            format!("row {row} is not right-padded: 1 at position {t} after 0 at position {len}"),
        )),
        Some((t, &v)) => {
            Err(Error::new("response_mask", format!("expected 0/1 values, got {v} at row {row}, position {t}")))
        }
    }
}

/// `row_length` for a contiguous row: whole blocks are compared without branches (which
/// vectorises) and only the block where the ones end, or a bad value, is walked one by one.
fn contiguous_row_length<S: MaskValue>(values: &[S], row: usize) -> Result<usize> {
    const BLOCK: usize = 64;
    let all = |block: &[S], expected: S| block.iter().fold(true, |all, &v| all & (v == expected));
    let full: usize = values.chunks(BLOCK).take_while(|block| all(block, S::ONE)).map(<[S]>::len).sum();
    let len = full + values[full..].iter().take_while(|&&v| v == S::ONE).count();
    if all(&values[len..], S::ZERO) {
        Ok(len)
    } else {
        row_length(values.iter(), row)
    }
}

impl<S: MaskValue> Mask for ArrayView2<'_, S> {
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }

    fn length(&self, row: usize) -> Result<usize> {
        let stored = self.row(row);
        match stored.to_slice() {
            Some(contiguous) => contiguous_row_length(contiguous, row),
            None => row_length(stored.iter(), row),
        }
    }
}

/// Completion lengths from a right-padded 0/1 response mask, validated.
pub fn lengths(mask: &dyn Mask, parallel: bool) -> Result<Vec<usize>> {
    let (batch, width) = mask.shape();
    ensure(batch > 0, "response_mask", || format!("empty batch: expected B >= 1 rows, got shape ({batch}, {width})"))?;
    ensure(width > 0, "response_mask", || {
        format!("zero width: expected T >= 1 columns, got shape ({batch}, {width})")
    })?;
    map_rows(batch, parallel, || (), |_, b| mask.length(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn lengths_of_right_padded_masks() {
        let mask = array![[true, true, false], [false, false, false], [true, true, true]];
        assert_eq!(lengths(&mask.view(), false).unwrap(), vec![2, 0, 3]);
        let ints = array![[1i64, 0, 0]];
        assert_eq!(lengths(&ints.view(), false).unwrap(), vec![1]);
        let fortran = ints.t().to_owned();
        assert_eq!(lengths(&fortran.t(), true).unwrap(), vec![1]);
        // Around the 64-value blocks of the contiguous scan.
        for (width, len) in [(64, 64), (130, 129), (130, 64), (130, 63), (200, 0), (65, 65)] {
            let mask = ndarray::Array2::from_shape_fn((1, width), |(_, t)| t < len);
            assert_eq!(lengths(&mask.view(), false).unwrap(), vec![len], "width {width}");
        }
    }

    #[test]
    fn lengths_reject_holes_and_non_binary_values() {
        let holes = array![[1i32, 0, 1]];
        assert!(lengths(&holes.view(), false).unwrap_err().message.contains("not right-padded"));
        let late_hole = ndarray::Array2::from_shape_fn((1, 150), |(_, t)| u8::from(t < 70 || t == 149));
        let err = lengths(&late_hole.view(), false).unwrap_err();
        assert!(err.message.contains("1 at position 149 after 0 at position 70"), "{err}");
        let twos = array![[1.0f64, 2.0, 0.0]];
        assert!(lengths(&twos.view(), false).unwrap_err().message.contains("0/1"));
        let empty = ndarray::Array2::<bool>::from_elem((0, 3), false);
        assert!(lengths(&empty.view(), false).is_err());
    }

    #[test]
    fn rows_are_borrowed_or_widened_alike() {
        let c = array![[1i32, 2, 3], [4, 5, 6]];
        let wide = c.mapv(i64::from);
        let fortran = c.t().to_owned();
        let (mut s1, mut s2, mut s3) = (Vec::new(), Vec::new(), Vec::new());
        assert_eq!(Rows::<i64>::row(&c.view(), 1, 2, &mut s1), &[4, 5]);
        assert_eq!(Rows::<i64>::row(&wide.view(), 1, 2, &mut s2), &[4, 5]);
        assert!(s2.is_empty(), "an i64 row is borrowed, not copied");
        assert_eq!(Rows::<i64>::row(&fortran.t(), 1, 2, &mut s3), &[4, 5]);
    }

    #[test]
    fn non_finite_values_are_found_in_the_stored_dtype() {
        let values = array![[0.5f32, f32::INFINITY, f32::NAN], [0.0, 1.0, f32::NAN]];
        assert_eq!(Rows::<f64>::first_non_finite(&values.view(), 0, 3), Some((1, "inf".to_string())));
        assert_eq!(Rows::<f64>::first_non_finite(&values.view(), 1, 2), None);
    }
}
