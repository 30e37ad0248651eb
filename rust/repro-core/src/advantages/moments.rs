//! Count, mean and squared deviations of some values, mergeable: the batch and group statistics
//! that the estimators normalise by, without keeping the values themselves.

/// Added to the variance before its square root, as masked_whiten does.
pub(super) const VAR_EPSILON: f64 = 1e-8;

/// Count, mean and sum of squared deviations of some values. Merging them in row order (Chan
/// et al.) gives batch statistics without keeping the values, independent of scheduling.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Moments {
    count: f64,
    mean: f64,
    squared_deviations: f64,
}

impl Moments {
    /// Two passes over `values` (mean first, then deviations from it), for accuracy.
    pub(super) fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let count = values.len() as f64;
        let mean = values.iter().sum::<f64>() / count;
        Self { count, mean, squared_deviations: values.iter().map(|v| (v - mean).powi(2)).sum() }
    }

    /// `count` copies of `value`.
    pub(super) fn repeated(value: f64, count: usize) -> Self {
        Self { count: count as f64, mean: value, squared_deviations: 0.0 }
    }

    /// The moments of both sets of values together (Chan et al.).
    pub(super) fn merge(self, other: Self) -> Self {
        let count = self.count + other.count;
        if count == 0.0 {
            return self;
        }
        let delta = other.mean - self.mean;
        Self {
            count,
            mean: self.mean + delta * other.count / count,
            squared_deviations: self.squared_deviations
                + other.squared_deviations
                + delta * delta * self.count * other.count / count,
        }
    }

    /// Merges per-row moments in the order given (row order), so that the result does not
    /// depend on how rows were scheduled.
    pub(super) fn merged(moments: impl IntoIterator<Item = Self>) -> Self {
        moments.into_iter().fold(Self::default(), Self::merge)
    }

    /// Whether the mean and the squared deviations are finite (huge values overflow them).
    pub(super) fn is_finite(self) -> bool {
        self.mean.is_finite() && self.squared_deviations.is_finite()
    }

    /// Mean and unbiased std; `None` below two values.
    pub(super) fn mean_std(self) -> Option<(f64, f64)> {
        (self.count >= 2.0).then(|| (self.mean, (self.squared_deviations / (self.count - 1.0)).sqrt()))
    }

    /// (mean, 1 / sqrt(var + 1e-8)) of masked_whiten; below two values it only subtracts the mean.
    pub(super) fn whitening(self) -> (f64, f64) {
        if self.count < 2.0 {
            return (self.mean, 1.0);
        }
        (self.mean, 1.0 / (self.squared_deviations / (self.count - 1.0) + VAR_EPSILON).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mixed signs and magnitudes, a repeated value and a -0.0, so that merges are not trivial.
    const VALUES: [f64; 11] = [0.5, -1.25, 3.0, 3.0, 1e-3, -0.0, 7.5, -2.0, 0.125, 10.0, -4.5];

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= 1e-12 * expected.abs().max(1.0)
    }

    fn assert_moments_close(actual: Moments, expected: Moments) {
        assert_eq!(actual.count, expected.count);
        assert!(close(actual.mean, expected.mean), "mean {} != {}", actual.mean, expected.mean);
        assert!(
            close(actual.squared_deviations, expected.squared_deviations),
            "squared deviations {} != {}",
            actual.squared_deviations,
            expected.squared_deviations
        );
    }

    /// The textbook two-pass mean and unbiased variance.
    fn two_pass(values: &[f64]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    #[test]
    fn of_matches_a_direct_two_pass_mean_and_variance() {
        let moments = Moments::of(&VALUES);
        let (mean, var) = two_pass(&VALUES);
        assert_eq!(moments.count, VALUES.len() as f64);
        assert_eq!(moments.mean, mean);
        assert!(close(moments.squared_deviations / (moments.count - 1.0), var));
        let (m, std) = moments.mean_std().unwrap();
        assert_eq!(m, mean);
        assert!(close(std, var.sqrt()));
    }

    #[test]
    fn of_nothing_is_the_default() {
        assert_eq!(Moments::of(&[]), Moments::default());
    }

    #[test]
    fn merging_split_slices_equals_the_whole() {
        let whole = Moments::of(&VALUES);
        for split in 0..=VALUES.len() {
            let (left, right) = VALUES.split_at(split);
            assert_moments_close(Moments::of(left).merge(Moments::of(right)), whole);
        }
        // Three parts, including empty ones anywhere.
        for (i, j) in [(0, 0), (0, 4), (4, 4), (3, 8), (8, 11), (11, 11)] {
            let parts = [&VALUES[..i], &VALUES[i..j], &VALUES[j..]];
            assert_moments_close(Moments::merged(parts.map(Moments::of)), whole);
        }
    }

    #[test]
    fn merging_empty_moments_changes_nothing() {
        let some = Moments::of(&VALUES[..5]);
        assert_eq!(some.merge(Moments::default()), some);
        assert_eq!(Moments::default().merge(some), some);
        assert_eq!(Moments::default().merge(Moments::default()), Moments::default());
        assert_eq!(Moments::merged([]), Moments::default());
    }

    #[test]
    fn merge_order_does_not_matter_within_float_tolerance() {
        let parts: Vec<Moments> = VALUES.chunks(3).map(Moments::of).collect();
        let forward = Moments::merged(parts.iter().copied());
        let backward = Moments::merged(parts.iter().rev().copied());
        let shuffled = Moments::merged([parts[2], parts[0], parts[3], parts[1]]);
        for other in [backward, shuffled] {
            assert_moments_close(other, forward);
        }
        assert_moments_close(parts[0].merge(parts[1]), parts[1].merge(parts[0]));
    }

    #[test]
    fn repeated_equals_of_the_copies() {
        for count in [1, 2, 7] {
            assert_moments_close(Moments::repeated(-2.5, count), Moments::of(&vec![-2.5; count]));
        }
        // No copies keep their value as mean, but count for nothing once merged.
        assert_eq!(Moments::merged([Moments::repeated(-2.5, 0)]), Moments::default());
        // Rows of constants merged: what reinforce_pp_baseline whitens.
        let rows = Moments::merged([Moments::repeated(1.0, 3), Moments::repeated(-1.0, 0), Moments::repeated(4.0, 2)]);
        assert_moments_close(rows, Moments::of(&[1.0, 1.0, 1.0, 4.0, 4.0]));
    }

    #[test]
    fn mean_std_needs_two_values() {
        assert_eq!(Moments::of(&[]).mean_std(), None);
        assert_eq!(Moments::of(&[3.0]).mean_std(), None);
        assert_eq!(Moments::repeated(3.0, 1).mean_std(), None);
        assert_eq!(Moments::of(&[1.0, 3.0]).mean_std(), Some((2.0, 2f64.sqrt())));
        assert_eq!(Moments::repeated(3.0, 4).mean_std(), Some((3.0, 0.0)));
    }

    #[test]
    fn whitening_below_two_values_only_subtracts_the_mean() {
        assert_eq!(Moments::of(&[]).whitening(), (0.0, 1.0));
        assert_eq!(Moments::of(&[-7.0]).whitening(), (-7.0, 1.0));
    }

    #[test]
    fn whitening_from_two_values_divides_by_sqrt_of_var_plus_epsilon() {
        let (mean, inv_std) = Moments::of(&VALUES).whitening();
        let (expected_mean, var) = two_pass(&VALUES);
        assert_eq!(mean, expected_mean);
        assert!(close(inv_std, 1.0 / (var + VAR_EPSILON).sqrt()));
        // Constant values: the epsilon alone keeps it finite.
        assert_eq!(Moments::repeated(2.0, 3).whitening(), (2.0, 1.0 / VAR_EPSILON.sqrt()));
    }
}
