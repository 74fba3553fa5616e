//! The study's emergence criterion (docs/src/semantics.md §12), for observed and predicted flux alike:
//! numpy-gradient derivative → centred moving mean with edge replication → threshold (≥) →
//! runs shorter than the sustain time removed. All in f64, in scaled flux per hour.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Criterion {
    /// Smoothed derivative at or above this (scaled flux per hour) counts.
    pub threshold: f64,
    /// Width of the centred moving mean over the derivative (odd; 1 = no smoothing).
    pub smoothing: usize,
    /// Minimum run length (hours) of consecutive flagged samples.
    pub sustain: usize,
}

impl Default for Criterion {
    fn default() -> Self {
        Criterion {
            threshold: 0.01,
            smoothing: 5,
            sustain: 4,
        }
    }
}

impl Criterion {
    pub fn check(&self) -> Result<(), String> {
        if !self.threshold.is_finite() {
            return Err("threshold must be a finite number".into());
        }
        if self.smoothing == 0 || self.smoothing.is_multiple_of(2) {
            return Err("smoothing must be an odd width ≥ 1 (a centred mean)".into());
        }
        if self.sustain == 0 {
            return Err("sustain must be at least 1 hour".into());
        }
        Ok(())
    }

    /// Which samples satisfy the criterion.
    pub fn flags(&self, x: &[f64]) -> Vec<bool> {
        let s = smooth(&gradient(x), self.smoothing);
        let mut b: Vec<bool> = s.iter().map(|&v| v >= self.threshold).collect();
        let mut i = 0;
        while i < b.len() {
            if !b[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && b[i] {
                i += 1;
            }
            // A run cut off by the end of the array is judged like any other.
            if i - start < self.sustain {
                b[start..i].iter_mut().for_each(|v| *v = false);
            }
        }
        b
    }

    /// The first flagged sample, if any.
    pub fn first(&self, x: &[f64]) -> Option<usize> {
        self.flags(x).iter().position(|&b| b)
    }
}

/// `numpy.gradient` with unit spacing and first-order edges: one-sided differences at both ends,
/// central differences inside. Series shorter than 2 have no derivative (empty).
pub fn gradient(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    if n < 2 {
        return Vec::new();
    }
    (0..n)
        .map(|i| match i {
            0 => x[1] - x[0],
            i if i == n - 1 => x[n - 1] - x[n - 2],
            i => (x[i + 1] - x[i - 1]) / 2.0,
        })
        .collect()
}

/// Centred moving mean of odd `width`, replicating the edge values.
pub fn smooth(d: &[f64], width: usize) -> Vec<f64> {
    let n = d.len() as isize;
    let h = (width / 2) as isize;
    (0..n)
        .map(|i| {
            (i - h..=i + h)
                .map(|j| d[j.clamp(0, n - 1) as usize])
                .sum::<f64>()
                / width as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Criterion = Criterion {
        threshold: 0.01,
        smoothing: 5,
        sustain: 4,
    };

    #[test]
    fn gradient_is_numpys() {
        // np.gradient([1, 2, 4, 7, 11]) = [1, 1.5, 2.5, 3.5, 4]
        assert_eq!(
            gradient(&[1.0, 2.0, 4.0, 7.0, 11.0]),
            [1.0, 1.5, 2.5, 3.5, 4.0]
        );
        assert_eq!(gradient(&[3.0, 1.0]), [-2.0, -2.0]);
        assert!(gradient(&[1.0]).is_empty());
    }

    #[test]
    fn smoothing_replicates_edges() {
        // d = [0, 0, 0, 0, 5]: s[4] = (0 + 0 + 5 + 5 + 5)/5 = 3, s[3] = (0+0+0+5+5)/5 = 2, s[2] = 1.
        assert_eq!(
            smooth(&[0.0, 0.0, 0.0, 0.0, 5.0], 5),
            [0.0, 0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(smooth(&[1.0, 2.0], 1), [1.0, 2.0]);
    }

    #[test]
    fn a_ramp_fires_at_once_and_a_flat_series_never() {
        let ramp: Vec<f64> = (0..20).map(|i| 0.02 * i as f64).collect();
        assert_eq!(C.first(&ramp), Some(0));
        assert_eq!(C.first(&[0.5; 20]), None);
        let down: Vec<f64> = (0..20).map(|i| -0.02 * i as f64).collect();
        assert_eq!(C.first(&down), None);
    }

    #[test]
    fn a_step_is_spread_by_gradient_and_smoothing() {
        // A 0.1 step between samples 9 and 10: gradient 0.05 at 9 and 10; the 5-point mean
        // carries 0.01 to 7…12 (≥ threshold: 0.05/5 = 0.01 exactly at 7 and 12, 0.02 at 8…11).
        let x: Vec<f64> = (0..20).map(|i| if i < 10 { 0.0 } else { 0.1 }).collect();
        let s = smooth(&gradient(&x), 5);
        assert!((s[7] - 0.01).abs() < 1e-15 && (s[8] - 0.02).abs() < 1e-15);
        let f = C.flags(&x);
        let on: Vec<usize> = (0..20).filter(|&i| f[i]).collect();
        // s[7] and s[12] are 0.01 up to float rounding; which side they fall on is float noise.
        assert!(
            on.starts_with(&[8, 9, 10, 11]) || on.starts_with(&[7, 8, 9, 10, 11]),
            "{on:?}"
        );
        assert_eq!(C.first(&x).map(|i| i <= 8), Some(true));
    }

    #[test]
    fn noise_just_under_the_threshold_never_fires() {
        let x: Vec<f64> = (0..50)
            .map(|i| 0.0099 * i as f64 + if i % 2 == 0 { 1e-5 } else { -1e-5 })
            .collect();
        assert!(smooth(&gradient(&x), 5).iter().all(|&v| v < 0.01));
        assert_eq!(C.first(&x), None);
        let just_over: Vec<f64> = (0..50).map(|i| 0.0101 * i as f64).collect();
        assert_eq!(C.first(&just_over), Some(0));
    }

    /// `hours` consecutive rises of 2⁻⁵ (exact in binary, so no sample sits on the threshold).
    fn run_of(hours: usize) -> Vec<bool> {
        let c = Criterion { smoothing: 1, ..C };
        let mut x = vec![0.0; 10];
        for _ in 0..hours {
            let last = *x.last().unwrap();
            x.push(last + 0.03125);
        }
        x.extend(std::iter::repeat_n(*x.last().unwrap(), 10));
        c.flags(&x)
    }

    #[test]
    fn runs_of_three_hours_are_dropped_and_four_kept() {
        // Without smoothing the gradient's central differences make k rises flag k+1 samples
        // (the half-slopes at both ends clear 0.01), so 2 rises give a 3-hour run.
        assert_eq!(run_of(2).iter().filter(|&&b| b).count(), 0);
        assert_eq!(run_of(3).iter().filter(|&&b| b).count(), 4);
        let f = run_of(3);
        assert_eq!(f.iter().position(|&b| b), Some(9));
        assert_eq!(run_of(2).iter().position(|&b| b), None);
    }

    #[test]
    fn a_run_touching_the_end_needs_the_sustain_time_too() {
        let c = Criterion { smoothing: 1, ..C };
        // Rising only over the last samples: flags 9, 10 and the one-sided end 11 — 3 hours.
        let mut x = vec![0.0; 10];
        x.extend([0.03, 0.06]);
        let f = c.flags(&x);
        assert_eq!(f.iter().filter(|&&b| b).count(), 0, "{f:?}");
        x.push(0.09);
        assert_eq!(c.first(&x), Some(9));
    }

    #[test]
    fn short_series_have_no_emergence() {
        assert_eq!(C.first(&[]), None);
        assert_eq!(C.first(&[1.0]), None);
        assert_eq!(C.first(&[0.0, 1.0]), None); // a run of 2 < 4
    }

    #[test]
    fn bad_params_are_refused() {
        assert!(Criterion { smoothing: 4, ..C }.check().is_err());
        assert!(Criterion { sustain: 0, ..C }.check().is_err());
        assert!(
            Criterion {
                threshold: f64::NAN,
                ..C
            }
            .check()
            .is_err()
        );
        assert!(C.check().is_ok());
    }
}
