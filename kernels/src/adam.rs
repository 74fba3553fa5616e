//! Gradient-norm clipping and Adam with coupled L2 decay, following `magpipe_worker::adam`
//! (itself `torch.optim.Adam(weight_decay=λ)`) operation by operation: every tensor operation
//! there is one rounded f32 operation here, with its f64 scalar rounded to f32 as ATen does.

use crate::param::Param;
use crate::{Error, Result, check_len};

/// Scales all gradients by `max / (G + 1e-6)` when that is below 1, G being their total L2 norm
/// (`clip_grad_norm_`). G is accumulated in f64 over the tensors in parameter order and the
/// elements in index order, `acc = g.mul_add(g, acc)`, then square-rooted; the coefficient is
/// rounded to f32 and multiplies each gradient. Returns G.
pub fn clip_grad_norm(grads: &mut [Vec<f32>], max: f64) -> f64 {
    let mut acc = 0.0f64;
    for g in grads.iter() {
        for &v in g {
            let v = f64::from(v);
            acc = v.mul_add(v, acc);
        }
    }
    let total = acc.sqrt();
    let coef = max / (total + 1e-6);
    if coef < 1.0 {
        let c = coef as f32;
        for g in grads.iter_mut() {
            for v in g.iter_mut() {
                *v *= c;
            }
        }
    }
    total
}

/// βⁿ by squaring, in f64 (no `powi`, whose expansion is the compiler's choice).
fn power(beta: f64, mut n: u64) -> f64 {
    let (mut base, mut acc) = (beta, 1.0f64);
    while n > 0 {
        if n & 1 == 1 {
            acc *= base;
        }
        base *= base;
        n >>= 1;
    }
    acc
}

/// Adam with coupled L2 decay; β = (0.9, 0.999), ε = 1e-8 (docs/src/semantics.md §10).
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    pub lr: f64,
    pub weight_decay: f64,
    /// Steps taken; the bias corrections are 1 − βᵗ.
    pub step: u64,
    /// First and second moments, one per parameter in parameter order.
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl Adam {
    pub const BETA1: f64 = 0.9;
    pub const BETA2: f64 = 0.999;
    pub const EPS: f64 = 1e-8;

    /// Zero moments shaped like `params`.
    pub fn new(params: &[Param], lr: f64, weight_decay: f64) -> Adam {
        let zeros = || params.iter().map(|p| vec![0.0; p.data.len()]).collect();
        Adam {
            lr,
            weight_decay,
            step: 0,
            m: zeros(),
            v: zeros(),
        }
    }

    /// One update of `params` with `grads` (parallel to `params`, already clipped):
    /// g ← g + λθ; m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
    /// θ ← θ + (m / (√v / √bc2 + ε)) · (−lr / bc1), with bc = 1 − βᵗ.
    pub fn step(&mut self, params: &mut [Param], grads: &[Vec<f32>]) -> Result<()> {
        if params.len() != grads.len()
            || params.len() != self.m.len()
            || self.m.len() != self.v.len()
        {
            return Err(Error::Shape {
                what: "Adam's parameter list".into(),
                expected: self.m.len(),
                got: params.len().max(grads.len()),
            });
        }
        for (((p, g), m), v) in params.iter().zip(grads).zip(&self.m).zip(&self.v) {
            check_len(&format!("gradient of {}", p.name), g, p.data.len())?;
            check_len(&format!("Adam's m of {}", p.name), m, p.data.len())?;
            check_len(&format!("Adam's v of {}", p.name), v, p.data.len())?;
        }
        self.step += 1;
        let bc1 = 1.0 - power(Self::BETA1, self.step);
        let bc2 = 1.0 - power(Self::BETA2, self.step);
        // The f64 scalars as ATen rounds them where they meet an f32 tensor.
        let wd = self.weight_decay as f32;
        let (b1, one_minus_b1) = (Self::BETA1 as f32, (1.0 - Self::BETA1) as f32);
        let (b2, one_minus_b2) = (Self::BETA2 as f32, (1.0 - Self::BETA2) as f32);
        let sqrt_bc2 = bc2.sqrt() as f32;
        let eps = Self::EPS as f32;
        let step_size = (-self.lr / bc1) as f32;
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            for i in 0..g.len() {
                let theta = p.data[i];
                // Coupled decay: added to the (already clipped) gradient.
                let g = if self.weight_decay != 0.0 {
                    g[i] + theta * wd
                } else {
                    g[i]
                };
                m[i] = m[i] * b1 + g * one_minus_b1;
                v[i] = v[i] * b2 + g * g * one_minus_b2;
                let denom = v[i].sqrt() / sqrt_bc2 + eps;
                p.data[i] = theta + m[i] / denom * step_size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(data: Vec<f32>) -> Param {
        Param {
            name: "p".into(),
            shape: vec![data.len()],
            data,
        }
    }

    #[test]
    fn clipping_by_hand() {
        // Norm of [3, 4] and [12] is 13.
        let mut g = vec![vec![3.0, 4.0], vec![12.0]];
        let n = clip_grad_norm(&mut g, 1.0);
        assert_eq!(n, 13.0);
        let c = (1.0 / (13.0 + 1e-6)) as f32;
        assert_eq!(g, [vec![3.0 * c, 4.0 * c], vec![12.0 * c]]);
        // Below the bound nothing changes.
        let mut g = vec![vec![0.375, 0.5]];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 0.625);
        assert_eq!(g, [vec![0.375, 0.5]]);
    }

    #[test]
    fn power_by_squaring() {
        assert_eq!(power(0.5, 10), 1.0 / 1024.0);
        assert_eq!(power(0.9, 0), 1.0);
        assert_eq!(power(0.9, 1), 0.9);
        // Against a libm reference (which may differ between platforms in the last bits).
        let reference = (1000.0 * 0.999f64.ln()).exp();
        assert!((power(0.999, 1000) / reference - 1.0).abs() < 1e-13);
    }

    /// The first step moves every weight by ≈ lr against its gradient's sign (m̂/√v̂ = ±1), and the
    /// moments are (1 − β)·g and (1 − β2)·g².
    #[test]
    fn first_steps_by_hand() {
        let mut p = vec![param(vec![1.0, -2.0, 0.5])];
        let g = vec![vec![0.5, -0.25, 0.0]];
        let mut opt = Adam::new(&p, 0.01, 0.0);
        opt.step(&mut p, &g).unwrap();
        assert_eq!(opt.step, 1);
        assert!((p[0].data[0] - 0.99).abs() < 1e-6);
        assert!((p[0].data[1] + 1.99).abs() < 1e-6);
        assert_eq!(p[0].data[2], 0.5, "a zero gradient moves nothing");
        assert!((opt.m[0][0] - 0.05).abs() < 1e-8);
        assert!((opt.v[0][1] - 0.001 * 0.0625).abs() < 1e-10);
        // Second step with the same gradient: m̂ = g, v̂ = g², so again ≈ lr.
        opt.step(&mut p, &g).unwrap();
        assert!((p[0].data[0] - 0.98).abs() < 1e-6);
        // Coupled decay: with a zero gradient the weight's own λθ drives the step.
        let mut p = vec![param(vec![1.0])];
        let mut opt = Adam::new(&p, 0.01, 0.1);
        opt.step(&mut p, &[vec![0.0]]).unwrap();
        assert!((p[0].data[0] - 0.99).abs() < 1e-6, "{}", p[0].data[0]);
    }

    /// Against a textbook Adam in f64 over many steps: the f32 rounding of each operation stays
    /// small.
    #[test]
    fn tracks_an_f64_adam() {
        let n = 8;
        let mut p = vec![param((0..n).map(|i| i as f32 * 0.1 - 0.3).collect())];
        let mut q: Vec<f64> = p[0].data.iter().map(|&v| v as f64).collect();
        let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
        let (lr, wd) = (1e-2, 1e-3);
        let mut opt = Adam::new(&p, lr, wd);
        for t in 1..=50 {
            // Gradient of Σ (θ − 1)²·(i + 1).
            let g32: Vec<f32> = p[0]
                .data
                .iter()
                .enumerate()
                .map(|(i, &x)| 2.0 * (x - 1.0) * (i + 1) as f32)
                .collect();
            opt.step(&mut p, &[g32]).unwrap();
            for i in 0..n {
                let g = 2.0 * (q[i] - 1.0) * (i + 1) as f64 + wd * q[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                q[i] -= lr * mh / (vh.sqrt() + 1e-8);
            }
        }
        for (a, b) in p[0].data.iter().zip(&q) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut p = vec![param(vec![1.0, 2.0])];
        let mut opt = Adam::new(&p, 0.01, 0.0);
        assert!(matches!(
            opt.step(&mut p, &[vec![1.0]]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(opt.step(&mut p, &[]), Err(Error::Shape { .. })));
        assert_eq!(opt.step, 0, "a refused update changes nothing");
    }
}
