//! Adam with coupled L2 weight decay, written out so its state (step, first and second moments)
//! can be checkpointed: tch's optimizer keeps that state inside libtorch with no way to save it,
//! and a resumed run must end with the same weights as an uninterrupted one. The update follows
//! `torch.optim.Adam(weight_decay=λ)` operation by operation.

use tch::Tensor;

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub step: i64,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    pub fn new(params: Vec<Tensor>, lr: f64, weight_decay: f64) -> Adam {
        let zeros = |p: &Tensor| p.zeros_like().set_requires_grad(false);
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            params,
        }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Scales all gradients so their global L2 norm is at most `max` (`clip_grad_norm_`).
    pub fn clip_grad_norm(&mut self, max: f64) {
        tch::no_grad(|| {
            let norms: Vec<Tensor> = self
                .params
                .iter()
                .map(|p| p.grad())
                .filter(|g| g.defined())
                .map(|g| g.norm())
                .collect();
            if norms.is_empty() {
                return;
            }
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            let coef = max / (total + 1e-6);
            if coef < 1.0 {
                for p in &self.params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(coef);
                    }
                }
            }
        })
    }

    pub fn step(&mut self) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                // Coupled decay: added to the (already clipped) gradient.
                let g = if self.weight_decay != 0.0 {
                    &g + &*p * self.weight_decay
                } else {
                    g
                };
                let _ = m
                    .g_mul_scalar_(self.beta1)
                    .g_add_(&(&g * (1.0 - self.beta1)));
                let _ = v
                    .g_mul_scalar_(self.beta2)
                    .g_add_(&(&g * &g * (1.0 - self.beta2)));
                let denom = v.sqrt() / bc2.sqrt() + self.eps;
                let _ = p.g_add_(&(&*m / denom * (-self.lr / bc1)));
            }
        })
    }

    /// The optimizer state as named tensors (for a checkpoint).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from_slice(&[self.step]))];
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.push((format!("m.{i}"), m.shallow_clone()));
            out.push((format!("v.{i}"), v.shallow_clone()));
        }
        out
    }

    /// Restores a state written by [`Adam::state`].
    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<(), String> {
        let get = |k: &str| {
            named
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, t)| t)
                .ok_or(format!("missing `{k}`"))
        };
        self.step = get("step")?.int64_value(&[0]);
        for i in 0..self.m.len() {
            tch::no_grad(|| {
                self.m[i].copy_(get(&format!("m.{i}"))?);
                self.v[i].copy_(get(&format!("v.{i}"))?);
                Ok::<(), String>(())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, OptimizerConfig};
    use tch::{Device, Kind};

    // Tests in one binary share libtorch's global RNG across threads, so nothing here draws from
    // it: data and initial weights are fixed values.
    fn problem() -> (Tensor, Tensor) {
        let x = (Tensor::arange(128, (Kind::Float, Device::Cpu)) * 0.37)
            .sin()
            .view([32, 4]);
        let y = (Tensor::arange(32, (Kind::Float, Device::Cpu)) * 0.11)
            .cos()
            .view([32, 1]);
        (x, y)
    }

    fn model() -> (nn::VarStore, nn::Linear) {
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root(), 4, 1, Default::default());
        tch::no_grad(|| {
            for (i, mut v) in vs.trainable_variables().into_iter().enumerate() {
                let n = v.numel() as i64;
                v.copy_(
                    &((Tensor::arange(n, (Kind::Float, Device::Cpu)) + i as f64) * 0.1)
                        .view(v.size().as_slice()),
                );
            }
        });
        (vs, lin)
    }

    #[test]
    fn matches_libtorch_adam_with_coupled_decay_and_clipping() {
        let (x, y) = problem();
        let run_ours = || {
            let (vs, lin) = model();
            let mut opt = Adam::new(vs.trainable_variables(), 1e-2, 1e-3);
            for _ in 0..20 {
                opt.zero_grad();
                (x.apply(&lin) - &y)
                    .square()
                    .mean(Kind::Float)
                    .multiply_scalar(100.0)
                    .backward();
                opt.clip_grad_norm(1.0);
                opt.step();
            }
            vs.trainable_variables()
        };
        let run_tch = || {
            let (vs, lin) = model();
            let mut opt = nn::Adam {
                wd: 1e-3,
                ..Default::default()
            }
            .build(&vs, 1e-2)
            .unwrap();
            for _ in 0..20 {
                opt.zero_grad();
                (x.apply(&lin) - &y)
                    .square()
                    .mean(Kind::Float)
                    .multiply_scalar(100.0)
                    .backward();
                opt.clip_grad_norm(1.0);
                opt.step();
            }
            vs.trainable_variables()
        };
        for (a, b) in run_ours().iter().zip(run_tch()) {
            let d = (a - &b).abs().max().double_value(&[]);
            assert!(d < 1e-6, "max difference {d}");
        }
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let (x, y) = problem();
        let fresh = || {
            let (vs, lin) = model();
            let opt = Adam::new(vs.trainable_variables(), 1e-2, 0.0);
            (vs, lin, opt)
        };
        let step = |lin: &nn::Linear, opt: &mut Adam| {
            opt.zero_grad();
            (x.apply(lin) - &y).square().mean(Kind::Float).backward();
            opt.step();
        };
        let (vs_a, lin_a, mut a) = fresh();
        for _ in 0..10 {
            step(&lin_a, &mut a);
        }
        let (vs_b, lin_b, mut b) = fresh();
        for _ in 0..5 {
            step(&lin_b, &mut b);
        }
        // "Restart": a new optimizer and copied weights, then the saved state.
        let saved = b.state();
        let (vs_c, lin_c, mut c) = fresh();
        tch::no_grad(|| {
            for (dst, src) in vs_c
                .trainable_variables()
                .iter_mut()
                .zip(vs_b.trainable_variables())
            {
                dst.copy_(&src);
            }
        });
        c.load_state(&saved).unwrap();
        for _ in 0..5 {
            step(&lin_c, &mut c);
        }
        let _ = vs_b;
        for (p, q) in vs_a
            .trainable_variables()
            .iter()
            .zip(vs_c.trainable_variables())
        {
            assert!(p.equal(&q));
        }
    }
}
