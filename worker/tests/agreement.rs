//! magpipe-kernels (the scalar reference engine) against libtorch: the same initial weights, the
//! same batch and the same teacher-forcing draws must give the same predictions, hybrid loss,
//! gradients of `100 × loss` and, after three steps of clipping and Adam, the same weights, to
//! within rounding. Each tensor's difference is measured as max|ours − libtorch| / max|libtorch|
//! and printed (run with `--nocapture` to see them); all must stay at most [`TOLERANCE`].
//!
//! libtorch runs MagFluxLSTM and MagFluxEnc-Dec with native kernels and no dropout (its dropout
//! masks are libtorch's own draws); a third run uses the worker's portable path with dropout,
//! whose masks magpipe draws, to check that the engine's masks are the worker's.

use std::sync::Mutex;

use magpipe_kernels as k;
use magpipe_stages::split::SplitMix64;
use magpipe_stages::train::Kernels;
use magpipe_worker::adam::Adam;
use magpipe_worker::model::{self, Arch, Model, ModelConfig, TeacherForcing, hybrid_loss};
use tch::{Device, Tensor, nn};

const TOLERANCE: f64 = 1e-4;
static INIT: Mutex<()> = Mutex::new(());
const BATCH: usize = 8;
const STEPS: usize = 24;
const HORIZON: usize = 6;
const ALPHA: f64 = 0.7;
const LOSS_SCALE: f64 = 100.0;
const LR: f64 = 5e-3;
const WEIGHT_DECAY: f64 = 1e-5;

/// A batch whose every input is a multiple of 2⁻²⁴ in [−0.5, 0.5) (exact in f32, no libm), with
/// targets that follow the inputs' last step (as in tests/golden.rs).
fn batch(seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix64(seed);
    let mut u = || ((rng.next_u64() >> 40) as f32) / (1u32 << 24) as f32 - 0.5;
    let x: Vec<f32> = (0..BATCH * STEPS * 5).map(|_| u()).collect();
    let mut y = Vec::with_capacity(BATCH * HORIZON);
    for i in 0..BATCH {
        let last = x[(i * STEPS + STEPS - 1) * 5];
        for h in 0..HORIZON {
            y.push(last * 0.5 + h as f32 / 64.0 + u() / 8.0);
        }
    }
    (x, y)
}

/// Uniform draws in [0, 1) as the trainer makes them for teacher forcing.
fn uniform(r: &mut SplitMix64) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1).contiguous()).expect("f32 tensor")
}

/// max|a − b| / max|b|.
fn relative(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| f64::from(*y).abs()).fold(0.0, f64::max);
    assert!(scale > 0.0, "a reference tensor is all zeros");
    diff / scale
}

/// The measured differences of one run, printed together (tests run in parallel).
struct Report {
    label: String,
    rows: Vec<(String, f64)>,
}

impl Report {
    fn add(&mut self, what: &str, ours: &[f32], reference: &[f32]) {
        self.rows
            .push((what.to_string(), relative(ours, reference)));
    }

    fn check(&self) {
        let mut out = format!(
            "{}: max|ours − libtorch| / max|libtorch| per tensor\n",
            self.label
        );
        for (what, r) in &self.rows {
            out += &format!("  {what:<30} {r:.3e}\n");
        }
        let worst = self.rows.iter().map(|(_, r)| *r).fold(0.0, f64::max);
        println!("{out}  worst {worst:.3e} (tolerance {TOLERANCE:e})");
        let bad: Vec<_> = self
            .rows
            .iter()
            .filter(|(_, r)| r.is_nan() || *r > TOLERANCE)
            .collect();
        assert!(
            bad.is_empty(),
            "{}: above {TOLERANCE:e}: {bad:?}",
            self.label
        );
    }
}

/// The libtorch model and the engine's, with the engine's weights copied from libtorch's.
fn pair(
    arch: Arch,
    hidden: usize,
    layers: usize,
    dropout: f64,
    kernels: Kernels,
) -> (nn::VarStore, Model, k::Model) {
    let vs = nn::VarStore::new(Device::Cpu);
    let config = ModelConfig {
        arch,
        input: 5,
        hidden,
        layers,
        dropout,
        horizon: HORIZON,
        bf16: false,
        kernels,
    };
    // libtorch's initial weights come from its global generator, which the tests of this
    // binary share across threads: seeding and drawing under one lock makes them repeatable.
    let theirs = {
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(17);
        Model::new(&vs.root(), &config)
    };
    let kconfig = k::ModelConfig {
        arch: match arch {
            Arch::Lstm => k::Arch::Lstm,
            Arch::EncDec => k::Arch::EncDec,
        },
        input: 5,
        hidden,
        layers,
        dropout,
        horizon: HORIZON,
    };
    let mut ours = k::Model::new(&kconfig, 0).unwrap();
    let vars = vs.variables();
    assert_eq!(vars.len(), ours.params().len(), "the same parameters");
    for p in ours.params().to_vec() {
        let t = vars
            .get(&p.name)
            .unwrap_or_else(|| panic!("libtorch has no `{}`", p.name));
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        assert_eq!(shape, p.shape, "{}", p.name);
        ours.set_param(&p.name, &values(t)).unwrap();
    }
    (vs, theirs, ours)
}

/// One forward and backward on both sides, compared; then three steps of clipping and Adam on
/// both, compared weight by weight.
fn agree(label: &str, arch: Arch, hidden: usize, layers: usize, dropout: f64, kernels: Kernels) {
    let (vs, theirs, mut ours) = pair(arch, hidden, layers, dropout, kernels);
    let mut report = Report {
        label: label.to_string(),
        rows: Vec::new(),
    };
    let ratio = if arch == Arch::EncDec { 0.5 } else { 0.0 };
    let loss = k::Loss::Hybrid { alpha: ALPHA };
    let (mut draws_t, mut draws_k) = (SplitMix64(42), SplitMix64(42));
    let mut opt_t = Adam::new(vs.trainable_variables(), LR, WEIGHT_DECAY);
    let mut opt_k = k::Adam::new(ours.params(), LR, WEIGHT_DECAY);
    let vars = vs.variables();
    // Draws that fed back the prediction, and those that forced the target.
    let mut forced = [0usize; 2];
    for step in 0..3u64 {
        let (x, y) = batch(100 + step);
        let (xt, yt) = (
            Tensor::from_slice(&x).view([BATCH as i64, STEPS as i64, 5]),
            Tensor::from_slice(&y).view([BATCH as i64, HORIZON as i64]),
        );
        // Both sides key their dropout masks alike (used only when dropout is on).
        theirs.masks.begin_step(7, 1, step);
        ours.masks.begin_step(7, 1, step);

        opt_t.zero_grad();
        let mut draw_t = || uniform(&mut draws_t);
        let tf = TeacherForcing {
            targets: &yt,
            ratio,
            draw: &mut draw_t,
        };
        let pred_t = theirs.forward(&xt, true, Some(tf));
        let loss_t = hybrid_loss(&pred_t, &yt, ALPHA);
        (&loss_t * LOSS_SCALE).backward();

        let mut draw_k = || {
            let d = uniform(&mut draws_k);
            forced[usize::from(d < ratio)] += 1;
            d
        };
        let tf = k::TeacherForcing {
            targets: &y,
            ratio,
            draw: &mut draw_k,
        };
        let trace = ours.forward(&x, BATCH, STEPS, true, Some(tf)).unwrap();
        let loss_k = loss.value(trace.pred(), &y, BATCH, HORIZON).unwrap();
        let dpred = loss
            .grad(trace.pred(), &y, BATCH, HORIZON, LOSS_SCALE)
            .unwrap();
        let mut grads = ours.backward(&trace, &dpred).unwrap();

        if step == 0 {
            report.add("predictions", trace.pred(), &values(&pred_t));
            report.add("hybrid loss", &[loss_k], &values(&loss_t));
            for (p, g) in ours.params().iter().zip(&grads) {
                report.add(
                    &format!("grad {}", p.name),
                    g,
                    &values(&vars[&p.name].grad()),
                );
            }
        }
        opt_t.clip_grad_norm(1.0);
        opt_t.step();
        k::clip_grad_norm(&mut grads, 1.0);
        ours.update(&mut opt_k, &grads).unwrap();
    }
    if arch == Arch::EncDec {
        // One draw per decoder step and batch, for three batches; both kinds must occur.
        assert_eq!(forced[0] + forced[1], 3 * HORIZON);
        assert!(forced[0] > 0 && forced[1] > 0, "draws {forced:?}");
    }
    for p in ours.params() {
        report.add(
            &format!("after 3 steps {}", p.name),
            &p.data,
            &values(&vars[&p.name]),
        );
    }
    report.check();
}

#[test]
fn lstm_agrees_with_libtorch() {
    agree("MagFluxLSTM", Arch::Lstm, 16, 3, 0.0, Kernels::Native);
}

#[test]
fn encdec_agrees_with_libtorch() {
    agree("MagFluxEnc-Dec", Arch::EncDec, 12, 2, 0.0, Kernels::Native);
}

/// The worker's portable path draws its dropout masks with magpipe's generator: with dropout on,
/// the engine must see the same masks, so the two still agree.
#[test]
fn dropout_masks_are_the_workers() {
    let theirs = model::DropoutMasks::default();
    let ours = k::DropoutMasks::default();
    for (seed, epoch, b) in [(0u64, 1u64, 0u64), (7, 3, 11), (u64::MAX, 1000, 65_535)] {
        theirs.begin_step(seed, epoch, b);
        ours.begin_step(seed, epoch, b);
        for (shape, p) in [([4i64, 24, 16], 0.3), ([8, 1, 12], 0.1), ([2, 5, 3], 0.9)] {
            let n = shape.iter().product::<i64>() as usize;
            assert_eq!(
                ours.next(n, p),
                values(&theirs.next(&shape, p)),
                "{seed} {epoch} {b} {shape:?}"
            );
        }
    }
    agree("LSTM dropout", Arch::Lstm, 16, 3, 0.3, Kernels::Portable);
    agree(
        "Enc-Dec dropout",
        Arch::EncDec,
        12,
        2,
        0.3,
        Kernels::Portable,
    );
}
