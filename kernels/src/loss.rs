//! The study's losses (docs/src/semantics.md §10), value and gradient side by side, for
//! predictions and targets of shape (B, P) row-major.
//!
//! - `value`: MSE(ŷ, y) = (chain over elements in order of d.mul_add(d, acc), from 0) / (B·P) with
//!   d = ŷ − y.
//! - `hybrid`: α·MSE(ŷ, y) + (1 − α)·MSE(Δŷ, Δy), with `Δz[b][t] = z[b][t+1] − z[b][t]` (B·(P − 1)
//!   terms), combined as `α.mul_add(mse, (1 − α) · mse_Δ)`; α and 1 − α are f64 rounded to f32.
//!
//! The gradient is that of `scale × loss` (the trainer's loss scale goes in here): with
//! `k = (2·scale·α / (B·P))` and `k_Δ = (2·scale·(1 − α) / (B·(P − 1)))`, computed in f64 and
//! rounded to f32, `∂/∂ŷ[b][t] = k.mul_add(d[b][t], k_Δ · (e[b][t−1] − e[b][t]))` where
//! e = Δŷ − Δy and `e[b][−1] = e[b][P−1] = 0`; the value loss is `k · d` with α = 1.

use crate::{Error, Result, check_input};

/// Which loss a run trains with (`train.loss`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    Value,
    Hybrid { alpha: f64 },
}

/// Σ d² / n by a mul_add chain in element order.
fn mean_square(d: impl Iterator<Item = f32>, n: usize) -> f32 {
    let mut acc = 0.0f32;
    for v in d {
        acc = v.mul_add(v, acc);
    }
    acc / n as f32
}

/// e[b][t] = (ŷ[b][t+1] − ŷ[b][t]) − (y[b][t+1] − y[b][t]), row-major (B, P − 1).
fn slope_errors(pred: &[f32], y: &[f32], horizon: usize) -> Vec<f32> {
    let mut e = Vec::with_capacity(pred.len() / horizon * (horizon - 1));
    for (p, y) in pred.chunks_exact(horizon).zip(y.chunks_exact(horizon)) {
        for t in 0..horizon - 1 {
            e.push((p[t + 1] - p[t]) - (y[t + 1] - y[t]));
        }
    }
    e
}

impl Loss {
    fn check(&self, pred: &[f32], y: &[f32], batch: usize, horizon: usize) -> Result<()> {
        if batch == 0 || horizon == 0 {
            return Err(Error::Empty(format!(
                "a loss over batch {batch} and horizon {horizon}"
            )));
        }
        if let Loss::Hybrid { alpha } = *self {
            if horizon < 2 {
                return Err(Error::Config(
                    "the hybrid loss needs a horizon of at least 2".into(),
                ));
            }
            if !(0.0..=1.0).contains(&alpha) {
                return Err(Error::Config(format!(
                    "hybrid α = {alpha} is outside [0, 1]"
                )));
            }
        }
        check_input("predictions", pred, batch * horizon)?;
        check_input("targets", y, batch * horizon)
    }

    /// The (unscaled) loss.
    pub fn value(&self, pred: &[f32], y: &[f32], batch: usize, horizon: usize) -> Result<f32> {
        self.check(pred, y, batch, horizon)?;
        let mse = mean_square(pred.iter().zip(y).map(|(p, t)| p - t), pred.len());
        Ok(match *self {
            Loss::Value => mse,
            Loss::Hybrid { alpha } => {
                let e = slope_errors(pred, y, horizon);
                let mse_slope = mean_square(e.iter().copied(), e.len());
                (alpha as f32).mul_add(mse, (1.0 - alpha) as f32 * mse_slope)
            }
        })
    }

    /// ∂(scale · loss)/∂ŷ, (B, P).
    pub fn grad(
        &self,
        pred: &[f32],
        y: &[f32],
        batch: usize,
        horizon: usize,
        scale: f64,
    ) -> Result<Vec<f32>> {
        self.check(pred, y, batch, horizon)?;
        if !scale.is_finite() {
            return Err(Error::Config(format!("loss scale {scale}")));
        }
        let n = (batch * horizon) as f64;
        let d = pred.iter().zip(y).map(|(p, t)| p - t);
        Ok(match *self {
            Loss::Value => {
                let k = (2.0 * scale / n) as f32;
                d.map(|d| k * d).collect()
            }
            Loss::Hybrid { alpha } => {
                let k = (2.0 * scale * alpha / n) as f32;
                let k_slope = (2.0 * scale * (1.0 - alpha) / (batch * (horizon - 1)) as f64) as f32;
                let e = slope_errors(pred, y, horizon);
                let d: Vec<f32> = d.collect();
                let mut g = vec![0.0; d.len()];
                for b in 0..batch {
                    let e = &e[b * (horizon - 1)..(b + 1) * (horizon - 1)];
                    for t in 0..horizon {
                        // ŷ[t] enters e[t−1] with + and e[t] with −.
                        let before = if t > 0 { e[t - 1] } else { 0.0 };
                        let after = if t + 1 < horizon { e[t] } else { 0.0 };
                        let i = b * horizon + t;
                        g[i] = k.mul_add(d[i], k_slope * (before - after));
                    }
                }
                g
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, values};

    #[test]
    fn by_hand() {
        // The worker's case: ŷ = [0, 1, 3], y = [1, 1, 1]: MSE 5/3; slopes [1, 2] vs [0, 0] → 5/2.
        let (p, y) = ([0.0, 1.0, 3.0], [1.0, 1.0, 1.0]);
        assert_eq!(Loss::Value.value(&p, &y, 1, 3).unwrap(), 5.0 / 3.0);
        let h = Loss::Hybrid { alpha: 0.7 }.value(&p, &y, 1, 3).unwrap();
        assert!(
            (h as f64 - (0.7 * 5.0 / 3.0 + 0.3 * 2.5)).abs() < 1e-6,
            "{h}"
        );
        // Gradient of the value loss ×3: 2·3/3·d = 2d = [−2, 0, 4].
        assert_eq!(
            Loss::Value.grad(&p, &y, 1, 3, 3.0).unwrap(),
            [-2.0, 0.0, 4.0]
        );
        // α = 0: only slopes. e = [1, 2]; ∂/∂ŷ = 2/2·[−e0, e0 − e1, e1] = [−1, −1, 2].
        assert_eq!(
            Loss::Hybrid { alpha: 0.0 }.grad(&p, &y, 1, 3, 1.0).unwrap(),
            [-1.0, -1.0, 2.0]
        );
        // α = 1 is the value loss.
        assert_eq!(
            Loss::Hybrid { alpha: 1.0 }.grad(&p, &y, 1, 3, 1.0).unwrap(),
            Loss::Value.grad(&p, &y, 1, 3, 1.0).unwrap()
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (b, horizon) = (3, 5);
        let p = values(1, b * horizon, 1.0);
        let y = values(2, b * horizon, 1.0);
        for loss in [
            Loss::Value,
            Loss::Hybrid { alpha: 0.7 },
            Loss::Hybrid { alpha: 0.0 },
        ] {
            let g = loss.grad(&p, &y, b, horizon, 100.0).unwrap();
            check_grad(&format!("{loss:?}"), &p, &g, 1e-2, 1e-3, |q| {
                100.0 * loss.value(q, &y, b, horizon).unwrap() as f64
            });
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let h = Loss::Hybrid { alpha: 0.7 };
        assert!(matches!(
            Loss::Value.value(&[], &[], 0, 3),
            Err(Error::Empty(_))
        ));
        assert!(matches!(
            h.value(&[1.0; 2], &[1.0; 2], 2, 1),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Loss::Hybrid { alpha: 1.5 }.value(&[1.0; 4], &[1.0; 4], 2, 2),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            h.value(&[1.0; 4], &[1.0; 5], 2, 2),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            h.grad(&[1.0, f32::NAN, 0.0, 0.0], &[1.0; 4], 2, 2, 1.0),
            Err(Error::NonFinite { .. })
        ));
        assert!(matches!(
            h.grad(&[1.0; 4], &[1.0; 4], 2, 2, f64::NAN),
            Err(Error::Config(_))
        ));
    }
}
