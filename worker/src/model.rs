//! MagFluxLSTM and MagFluxEnc-Dec on libtorch (docs/src/semantics.md §9), built on the fused `Tensor::lstm`
//! with PyTorch's layout (gates i, f, g, o; two bias vectors per layer) and PyTorch's default
//! initialisation, so results are comparable with the published code. Dropout follows the call's
//! `train` flag (tch's `nn::LSTM` freezes it at construction, which is why it is not used).
//! `kernels: portable` stages do not run this model: they run magpipe's own engine
//! (worker/src/portable.rs). Configured with portable kernels, this model runs its layers one by
//! one with magpipe's dropout masks ([`DropoutMasks`]), the engine's masks: libtorch's twin of
//! the engine, which worker/tests/agreement.rs compares it with.

use std::cell::Cell;

use magpipe_stages::train::Kernels;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

pub use crate::config::{Arch, ModelConfig};

/// Dropout masks drawn by magpipe instead of libtorch (those of magpipe's own engine, which
/// `kernels: portable` runs): libtorch's `bernoulli_` goes through MKL's generator on Intel CPUs
/// and its own elsewhere, so the same seed drops other units on another vendor's CPU. Each element's draw is a hash of (the step's
/// key, the mask's number within the step, the element's index): it depends on nothing but the
/// seed, the epoch, the batch and the model's shape (not on threads, CPU or library), and a
/// resumed run draws what an uninterrupted one would.
#[derive(Debug, Default)]
pub struct DropoutMasks {
    step_key: Cell<u64>,
    drawn: Cell<u64>,
}

/// SplitMix64's finaliser: a bijective 64-bit mix, good enough to turn counters into
/// independent-looking uniform bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl DropoutMasks {
    /// Keys the masks of one optimisation step.
    pub fn begin_step(&self, seed: u64, epoch: u64, batch: u64) {
        self.step_key.set(mix(
            mix(seed ^ 0x4452_4f50_4f55_5400) ^ mix((epoch << 32) | batch)
        ));
        self.drawn.set(0);
    }

    /// The next mask of this step for a tensor of `shape`: each element kept with probability
    /// 1 − p and then scaled by 1 / (1 − p), as libtorch's dropout does.
    pub fn next(&self, shape: &[i64], p: f64) -> Tensor {
        let n: i64 = shape.iter().product();
        let key = mix(self.step_key.get() ^ mix(self.drawn.get().wrapping_add(1)));
        self.drawn.set(self.drawn.get() + 1);
        // Keep when the top 24 bits, read as a fraction, are at least p (what a float uniform
        // draw against p is, without float rounding in the comparison).
        let threshold = (p * f64::from(1u32 << 24)).ceil() as u64;
        let scale = (1.0 / (1.0 - p)) as f32;
        let values: Vec<f32> = (0..n as u64)
            .map(|i| {
                let u = mix(key.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))) >> 40;
                if u >= threshold { scale } else { 0.0 }
            })
            .collect();
        Tensor::from_slice(&values).view(shape)
    }
}

/// The flat weights of an L-layer LSTM in PyTorch's order: per layer w_ih, w_hh, b_ih, b_hh.
struct Lstm {
    weights: Vec<Tensor>,
    hidden: usize,
    layers: usize,
    dropout: f64,
    bf16: bool,
    kernels: Kernels,
}

impl Lstm {
    fn new(p: &nn::Path, input: usize, c: &ModelConfig) -> Lstm {
        let (hidden, layers, dropout) = (c.hidden, c.layers, c.dropout);
        // PyTorch: every LSTM weight and bias ~ U(±1/√h).
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        let g = 4 * hidden as i64;
        let mut weights = Vec::with_capacity(4 * layers);
        for l in 0..layers {
            let inp = if l == 0 { input } else { hidden } as i64;
            weights.push(p.var(&format!("weight_ih_l{l}"), &[g, inp], init));
            weights.push(p.var(&format!("weight_hh_l{l}"), &[g, hidden as i64], init));
            weights.push(p.var(&format!("bias_ih_l{l}"), &[g], init));
            weights.push(p.var(&format!("bias_hh_l{l}"), &[g], init));
        }
        Lstm {
            weights,
            hidden,
            layers,
            dropout,
            bf16: c.bf16,
            kernels: c.kernels,
        }
    }

    /// `x` is (B, T, in); the state is zeros when `state` is None. Returns (output, h_n, c_n).
    fn run(
        &self,
        x: &Tensor,
        state: Option<(&Tensor, &Tensor)>,
        train: bool,
        masks: &DropoutMasks,
    ) -> (Tensor, Tensor, Tensor) {
        if self.kernels == Kernels::Portable {
            return self.run_layers(x, state, train, masks);
        }
        // The casts are differentiable, so gradients land in the fp32 master weights.
        let kind = if self.bf16 {
            Kind::BFloat16
        } else {
            Kind::Float
        };
        let zeros = || {
            Tensor::zeros(
                [self.layers as i64, x.size()[0], self.hidden as i64],
                (kind, x.device()),
            )
        };
        let (h0, c0) = match state {
            Some((h, c)) => (h.to_kind(kind), c.to_kind(kind)),
            None => (zeros(), zeros()),
        };
        let cast: Vec<Tensor>;
        let weights = if self.bf16 {
            cast = self.weights.iter().map(|w| w.to_kind(kind)).collect();
            &cast
        } else {
            &self.weights
        };
        let (out, h, c) = x.to_kind(kind).lstm(
            &[h0, c0],
            weights,
            true,
            self.layers as i64,
            self.dropout,
            train,
            false,
            true,
        );
        (
            out.to_kind(Kind::Float),
            h.to_kind(Kind::Float),
            c.to_kind(Kind::Float),
        )
    }
}

impl Lstm {
    /// Portable kernels: one fused single-layer call per layer, with magpipe's dropout between
    /// layers (the same computation as the L-layer call, whose dropout is libtorch's). fp32 only.
    fn run_layers(
        &self,
        x: &Tensor,
        state: Option<(&Tensor, &Tensor)>,
        train: bool,
        masks: &DropoutMasks,
    ) -> (Tensor, Tensor, Tensor) {
        let shape = [1, x.size()[0], self.hidden as i64];
        let zeros = || Tensor::zeros(shape, (Kind::Float, x.device()));
        let mut input = x.shallow_clone();
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        for l in 0..self.layers {
            let (h0, c0) = match state {
                Some((h, c)) => (h.narrow(0, l as i64, 1), c.narrow(0, l as i64, 1)),
                None => (zeros(), zeros()),
            };
            let (out, h, c) = input.lstm(
                &[h0, c0],
                &self.weights[4 * l..4 * l + 4],
                true,
                1,
                0.0,
                train,
                false,
                true,
            );
            hs.push(h);
            cs.push(c);
            input = if train && self.dropout > 0.0 && l + 1 < self.layers {
                let mask = masks
                    .next(&out.size(), self.dropout)
                    .to_device(out.device());
                out * mask
            } else {
                out
            };
        }
        (input, Tensor::cat(&hs, 0), Tensor::cat(&cs, 0))
    }
}

/// PyTorch's `nn.Linear` with its default init: weight and bias ~ U(±1/√fan_in).
struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    fn new(p: &nn::Path, input: usize, output: usize) -> Linear {
        let k = 1.0 / (input as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        Linear {
            w: p.var("weight", &[output as i64, input as i64], init),
            b: p.var("bias", &[output as i64], init),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w, Some(&self.b))
    }
}

pub struct Model {
    pub config: ModelConfig,
    encoder: Lstm,
    decoder: Option<Lstm>,
    head: Linear,
    /// Used with portable kernels only (see the module's doc); the trainer keys it per step.
    pub masks: DropoutMasks,
}

/// Teacher forcing for one forward pass: the targets and a source of uniform draws in [0, 1).
pub struct TeacherForcing<'a> {
    pub targets: &'a Tensor,
    pub ratio: f64,
    pub draw: &'a mut dyn FnMut() -> f64,
}

impl Model {
    pub fn new(p: &nn::Path, config: &ModelConfig) -> Model {
        let c = config;
        let encoder = Lstm::new(&(p / "encoder"), c.input, c);
        let (decoder, head) = match c.arch {
            Arch::Lstm => (None, Linear::new(&(p / "head"), c.hidden, c.horizon)),
            Arch::EncDec => (
                Some(Lstm::new(&(p / "decoder"), 1, c)),
                Linear::new(&(p / "head"), c.hidden, 1),
            ),
        };
        Model {
            config: c.clone(),
            encoder,
            decoder,
            head,
            masks: DropoutMasks::default(),
        }
    }

    /// `x` (B, W, 5) → (B, P). `train` switches dropout on; teacher forcing applies to Enc-Dec in
    /// training only. Sequence length is free: test inputs are shorter than training ones.
    pub fn forward(&self, x: &Tensor, train: bool, tf: Option<TeacherForcing<'_>>) -> Tensor {
        let (out, h, c) = self.encoder.run(x, None, train, &self.masks);
        let Some(dec) = &self.decoder else {
            return self.head.forward(&out.select(1, -1));
        };
        let b = x.size()[0];
        let mut input = Tensor::zeros([b, 1, 1], (x.kind(), x.device()));
        let (mut h, mut c) = (h, c);
        let mut tf = tf.filter(|_| train);
        let mut steps = Vec::with_capacity(self.config.horizon);
        for t in 0..self.config.horizon as i64 {
            let (o, h2, c2) = dec.run(&input, Some((&h, &c)), train, &self.masks);
            (h, c) = (h2, c2);
            let y_hat = self.head.forward(&o.select(1, 0)); // (B, 1)
            // One draw per step for the whole batch, also after the last step (as published).
            let forced = match tf.as_mut() {
                Some(f) => ((f.draw)() < f.ratio).then(|| f.targets.narrow(1, t, 1).unsqueeze(-1)),
                None => None,
            };
            // The model's own output is fed back without detaching: gradients flow through it.
            input = forced.unwrap_or_else(|| y_hat.unsqueeze(-1));
            steps.push(y_hat);
        }
        Tensor::cat(&steps, 1)
    }
}

/// Trainable parameters of a config, from the architecture alone (a hidden acceptance check).
pub fn param_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum()
}

/// `MSE(ŷ, y)`.
pub fn value_loss(pred: &Tensor, y: &Tensor) -> Tensor {
    (pred - y).square().mean(Kind::Float)
}

/// `α·MSE(ŷ, y) + (1−α)·MSE(Δŷ, Δy)` with forward differences along the horizon.
pub fn hybrid_loss(pred: &Tensor, y: &Tensor, alpha: f64) -> Tensor {
    let p = pred.size()[1];
    let d = |z: &Tensor| z.narrow(1, 1, p - 1) - z.narrow(1, 0, p - 1);
    value_loss(pred, y) * alpha + value_loss(&d(pred), &d(y)) * (1.0 - alpha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn cfg(arch: Arch, hidden: usize, layers: usize, dropout: f64) -> ModelConfig {
        ModelConfig {
            arch,
            input: 5,
            hidden,
            layers,
            dropout,
            horizon: 12,
            bf16: false,
            kernels: Kernels::Native,
        }
    }

    /// Independent count: 4h(in + h) + 8h per LSTM layer, plus the head.
    fn expected(c: &ModelConfig) -> i64 {
        let (h, l) = (c.hidden as i64, c.layers as i64);
        let lstm = |inp: i64| 4 * h * (inp + h) + 8 * h + (l - 1) * (4 * h * 2 * h + 8 * h);
        match c.arch {
            Arch::Lstm => lstm(5) + h * 12 + 12,
            Arch::EncDec => lstm(5) + lstm(1) + h + 1,
        }
    }

    #[test]
    fn parameter_counts_of_the_table_1_models() {
        for c in [
            cfg(Arch::Lstm, 128, 4, 0.1),
            cfg(Arch::Lstm, 64, 1, 0.2),
            cfg(Arch::EncDec, 32, 4, 0.3),
            cfg(Arch::EncDec, 64, 4, 0.2),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let _m = Model::new(&vs.root(), &c);
            assert_eq!(param_count(&vs), expected(&c), "{c:?}");
        }
        assert_eq!(expected(&cfg(Arch::Lstm, 128, 4, 0.1)), 466_956);
    }

    #[test]
    fn shapes_gradients_and_init_bounds() {
        tch::manual_seed(0);
        for arch in [Arch::Lstm, Arch::EncDec] {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = Model::new(&vs.root(), &cfg(arch, 16, 2, 0.1));
            let x = Tensor::randn([3, 20, 5], (Kind::Float, Device::Cpu));
            let y = Tensor::randn([3, 12], (Kind::Float, Device::Cpu));
            // Shorter inputs run too (test windows are 96 or 72 h against 110 in training).
            assert_eq!(m.forward(&x.narrow(1, 0, 7), false, None).size(), [3, 12]);
            let pred = m.forward(&x, true, None);
            assert_eq!(pred.size(), [3, 12]);
            hybrid_loss(&pred, &y, 0.7).backward();
            for (name, v) in vs.variables() {
                let g = v.grad();
                assert!(
                    g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                    "{arch:?} {name}"
                );
                // U(±1/√fan_in): 1/4 for the LSTM (h = 16) and the head (fan_in 16).
                assert!(v.abs().max().double_value(&[]) <= 0.25 + 1e-6, "{name}");
            }
        }
    }

    #[test]
    fn eval_is_deterministic_and_train_applies_dropout() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Model::new(&vs.root(), &cfg(Arch::Lstm, 32, 3, 0.5));
        let x = Tensor::randn([4, 15, 5], (Kind::Float, Device::Cpu));
        let a = m.forward(&x, false, None);
        let b = m.forward(&x, false, None);
        assert!(a.equal(&b));
        let t1 = m.forward(&x, true, None);
        let t2 = m.forward(&x, true, None);
        assert!(!t1.equal(&t2), "dropout between layers is on in training");
    }

    #[test]
    fn teacher_forcing_ratio_one_feeds_targets_and_zero_ignores_them() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Model::new(&vs.root(), &cfg(Arch::EncDec, 8, 1, 0.0));
        let x = Tensor::randn([2, 10, 5], (Kind::Float, Device::Cpu));
        let y1 = Tensor::zeros([2, 12], (Kind::Float, Device::Cpu));
        let y2 = y1.copy();
        let _ = y2.narrow(1, 0, 1).fill_(5.0);
        let run = |y: &Tensor, ratio: f64, train: bool| {
            let mut draws = 0usize;
            let mut draw = || {
                draws += 1;
                0.5
            };
            let out = m.forward(
                &x,
                train,
                Some(TeacherForcing {
                    targets: y,
                    ratio,
                    draw: &mut draw,
                }),
            );
            (out, draws)
        };
        // Ratio 1: y[:, 0] is step 1's input, so step 0 is unchanged and step 1 moves.
        let (a, n) = run(&y1, 1.0, true);
        let (b, _) = run(&y2, 1.0, true);
        assert_eq!(n, 12, "one draw per step, the last one included");
        assert!(a.narrow(1, 0, 1).equal(&b.narrow(1, 0, 1)));
        assert!(!a.narrow(1, 1, 1).equal(&b.narrow(1, 1, 1)));
        // Ratio 0, or evaluation: targets are never read, no draws are made in evaluation.
        let (a, _) = run(&y1, 0.0, true);
        let (b, _) = run(&y2, 0.0, true);
        assert!(a.equal(&b));
        let (a, n) = run(&y1, 1.0, false);
        let (b, _) = run(&y2, 1.0, false);
        assert!(a.equal(&b));
        assert_eq!(n, 0);
    }

    #[test]
    fn bf16_mixed_tracks_fp32_and_keeps_fp32_master_weights() {
        for arch in [Arch::Lstm, Arch::EncDec] {
            let vs = nn::VarStore::new(Device::Cpu);
            let mut c = cfg(arch, 16, 2, 0.0);
            let fp32 = Model::new(&vs.root(), &c);
            c.bf16 = true;
            let mut vs_mixed = nn::VarStore::new(Device::Cpu);
            let mixed = Model::new(&vs_mixed.root(), &c);
            vs_mixed.copy(&vs).unwrap();
            let vs = vs_mixed;
            let x = (Tensor::arange(3 * 20 * 5, (Kind::Float, Device::Cpu)) * 0.013)
                .sin()
                .view([3, 20, 5]);
            let a = fp32.forward(&x, false, None);
            let b = mixed.forward(&x, false, None);
            assert_eq!(b.kind(), Kind::Float);
            let d = (&a - &b).abs().max().double_value(&[]);
            assert!(d > 0.0 && d < 0.05, "{arch:?}: bf16 differs by {d}");
            value_loss(&b, &Tensor::zeros([3, 12], (Kind::Float, Device::Cpu))).backward();
            for v in vs.trainable_variables() {
                assert_eq!(v.kind(), Kind::Float);
                assert!(v.grad().defined());
            }
        }
    }

    #[test]
    fn hybrid_loss_by_hand() {
        let p = Tensor::from_slice(&[0.0f32, 1.0, 3.0]).view([1, 3]);
        let y = Tensor::from_slice(&[1.0f32, 1.0, 1.0]).view([1, 3]);
        // MSE = (1 + 0 + 4)/3; differences [1, 2] vs [0, 0] → MSE 5/2.
        let l = hybrid_loss(&p, &y, 0.7).double_value(&[]);
        assert!((l - (0.7 * 5.0 / 3.0 + 0.3 * 2.5)).abs() < 1e-6, "{l}");
        assert!((value_loss(&p, &y).double_value(&[]) - 5.0 / 3.0).abs() < 1e-6);
    }
}
