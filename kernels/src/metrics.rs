//! The study's validation metric, on plain slices (f64 accumulation over f32 predictions).

/// `R = sqrt(mean over windows n and steps t = 1..P−1 of ((ŷ[n,t] − ŷ[n,t−1]) − (y[n,t] − y[n,t−1]))²)`:
/// the RMSE of forward differences, in scaled units (docs/src/semantics.md §10).
pub fn derivative_rmse(pred: &[f32], target: &[f32], horizon: usize) -> f64 {
    assert_eq!(pred.len(), target.len());
    assert!(horizon >= 2 && pred.len().is_multiple_of(horizon));
    let mut sum = 0.0f64;
    let mut count = 0usize;
    for (p, y) in pred.chunks_exact(horizon).zip(target.chunks_exact(horizon)) {
        for t in 1..horizon {
            let e =
                (f64::from(p[t]) - f64::from(p[t - 1])) - (f64::from(y[t]) - f64::from(y[t - 1]));
            sum += e * e;
            count += 1;
        }
    }
    (sum / count as f64).sqrt()
}

/// The same metric for a predictor whose output never changes over the horizon: the baseline a
/// trained model must beat, and the value a collapsed model sits at.
pub fn zero_slope_rmse(target: &[f32], horizon: usize) -> f64 {
    let flat = vec![0.0f32; target.len()];
    derivative_rmse(&flat, target, horizon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivative_rmse_by_hand() {
        // Two windows, P = 3. Differences: pred [1, 1] and [0, 0]; target [1, 2] and [0, 2].
        let pred = [0.0, 1.0, 2.0, 5.0, 5.0, 5.0];
        let y = [0.0, 1.0, 3.0, 1.0, 1.0, 3.0];
        // Errors: [0, −1] and [0, −2] → mean of squares 5/4.
        assert!((derivative_rmse(&pred, &y, 3) - (5.0f64 / 4.0).sqrt()).abs() < 1e-12);
        // Zero slope: errors are the target differences [1, 2, 0, 2] → mean 9/4.
        assert!((zero_slope_rmse(&y, 3) - 1.5).abs() < 1e-12);
        // A constant offset does not matter, only slopes do.
        let shifted: Vec<f32> = y.iter().map(|v| v + 7.0).collect();
        assert_eq!(derivative_rmse(&shifted, &y, 3), 0.0);
    }
}
