//! The study's training procedure (docs/src/semantics.md §10) on this crate's engine, step for
//! step what the worker's libtorch `Trainer` (worker/src/train.rs) does: the same shuffle, the
//! same teacher-forcing draws, dropout masks keyed by (seed, epoch, batch), the loss scale,
//! clipping at 1.0, Adam, the validation metric over every validation window in evaluation
//! mode, ReduceLROnPlateau stepped once per epoch, the early-stopping rule and the history. No
//! libtorch anywhere, so `kernels: portable` needs none.
//!
//! Everything a resumed run needs is a checkpoint: the weights and Adam's state (safetensors)
//! and the [`Progress`] (history, learning rate, scheduler, generators, stopper; JSON). A run
//! resumed from the checkpoint of any epoch ends with the bytes of an uninterrupted one.
//!
//! Threads: the trainer runs the kernels on [`TrainConfig::threads`] ([`crate::simd`]), which
//! split outputs only, never a chain, so by the numerics contract (lib.rs) no bit depends on the
//! count.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::adam::Adam;
use crate::loss::Loss;
use crate::metrics::{derivative_rmse, zero_slope_rmse};
use crate::model::{Model, ModelConfig, StepConfig};
use crate::schedule::{PatienceStopper, PlateauStopper, ReduceLrOnPlateau};
use crate::splitmix::SplitMix64;
use crate::weights::{self, Entry, FileError, Tensors};
use crate::{Error, Result};

/// The early-stopping rule (`train.early_stop`), shared with the worker's trainer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum EarlyStop {
    /// Ray Tune's TrialPlateauStopper, what the study's runs actually did.
    Plateau {
        std: f64,
        num_results: usize,
        grace: usize,
    },
    Patience {
        patience: usize,
        min_delta: f64,
    },
    None,
}

/// One epoch of the history, shared with the worker's trainer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    pub epoch: usize,
    /// Unscaled training loss, averaged over batches.
    pub train_loss: f64,
    pub val_rmse: f64,
    pub lr: f64,
    pub seconds: f64,
    pub windows_per_s: f64,
}

/// A training run's settings (the worker's `TrainConfig`, on this crate's types).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub batch_size: usize,
    pub shuffle: bool,
    pub lr: f64,
    pub weight_decay: f64,
    pub loss: Loss,
    /// Multiplies the loss before backward (×100 for hybrid, ×1 for value in the published code).
    pub loss_scale: f64,
    pub teacher_forcing_ratio: f64,
    pub epochs: usize,
    pub early_stop: EarlyStop,
    pub seed: u64,
    /// Threads of the kernels; they never change a bit.
    pub threads: usize,
}

/// The gradient-norm bound of every step (docs/src/semantics.md §10).
const CLIP: f64 = 1.0;

/// Rows the engine runs through one evaluation forward. Rows are independent in every kernel,
/// so this bounds the memory a forward's trace takes and changes no bit.
pub const EVAL_ROWS: usize = 64;

/// Windows in memory: `x` (N, W, F) and `y` (N, P), row-major f32, every value finite.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    x: Vec<f32>,
    y: Vec<f32>,
    len: usize,
    steps: usize,
    features: usize,
    horizon: usize,
}

impl Windows {
    /// Checks the shapes (x (N, W, F) and y (N, P), N ≥ 1, each size ≥ 1) and that every value is
    /// finite; a non-finite value is named by its window and its index within the window.
    pub fn new(x: Vec<f32>, x_shape: &[usize], y: Vec<f32>, y_shape: &[usize]) -> Result<Windows> {
        let (&[len, steps, features], &[n_y, horizon]) = (x_shape, y_shape) else {
            return Err(Error::Config(format!(
                "windows need x (N, W, F) and y (N, P); found x {x_shape:?} and y {y_shape:?}"
            )));
        };
        if len != n_y {
            return Err(Error::Config(format!("x holds {len} windows and y {n_y}")));
        }
        if len == 0 || steps == 0 || features == 0 || horizon == 0 {
            return Err(Error::Empty(format!(
                "windows of shape x {x_shape:?}, y {y_shape:?}"
            )));
        }
        crate::check_len("x", &x, len * steps * features)?;
        crate::check_len("y", &y, len * horizon)?;
        for (name, data, per) in [("x", &x, steps * features), ("y", &y, horizon)] {
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    what: format!("{name} of window {}", i / per),
                    index: i % per,
                    value: data[i],
                });
            }
        }
        Ok(Windows {
            x,
            y,
            len,
            steps,
            features,
            horizon,
        })
    }

    /// Reads a windows file as the `window` stage writes it: f32 tensors `x` (N, W, F) and
    /// `y` (N, P), checked as [`Windows::new`] checks them.
    pub fn read(path: &Path) -> std::result::Result<Windows, FileError> {
        let bytes = weights::read(path)?;
        let file = Tensors::parse(path, &bytes)?;
        let (x_shape, x) = file.f32_any("x")?;
        let (y_shape, y) = file.f32_any("y")?;
        Windows::new(x, &x_shape, y, &y_shape).map_err(|source| FileError::Kernels {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// W, the time steps of a window.
    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn features(&self) -> usize {
        self.features
    }

    pub fn horizon(&self) -> usize {
        self.horizon
    }

    pub fn x(&self) -> &[f32] {
        &self.x
    }

    pub fn y(&self) -> &[f32] {
        &self.y
    }

    /// The windows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Windows {
        let (x, y) = self.gather(idx);
        Windows {
            x,
            y,
            len: idx.len(),
            ..*self
        }
    }

    fn gather(&self, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let (wx, wy) = (self.steps * self.features, self.horizon);
        let mut x = Vec::with_capacity(idx.len() * wx);
        let mut y = Vec::with_capacity(idx.len() * wy);
        for &i in idx {
            x.extend_from_slice(&self.x[i * wx..(i + 1) * wx]);
            y.extend_from_slice(&self.y[i * wy..(i + 1) * wy]);
        }
        (x, y)
    }
}

/// Predictions (N, P) of `rows` windows `x` (N, W, F) in evaluation mode, [`EVAL_ROWS`] at a
/// time; none for no windows.
pub fn predict(model: &Model, x: &[f32], rows: usize, steps: usize) -> Result<Vec<f32>> {
    let per = steps * model.config().input;
    crate::check_len("model input", x, rows * per)?;
    let mut out = Vec::with_capacity(rows * model.config().horizon);
    for start in (0..rows).step_by(EVAL_ROWS) {
        let n = EVAL_ROWS.min(rows - start);
        out.extend(model.predict(&x[start * per..(start + n) * per], n, steps)?);
    }
    Ok(out)
}

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub history: Vec<Epoch>,
    pub stopped: bool,
    lr: f64,
    sched: ReduceLrOnPlateau,
    shuffle_rng: SplitMix64,
    tf_rng: SplitMix64,
    plateau: Option<PlateauStopper>,
    patience: Option<PatienceStopper>,
}

/// What training refuses: the engine's errors, and checkpoints it cannot write or read.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Kernels(#[from] Error),
    #[error("checkpoint {0}")]
    Checkpoint(#[from] FileError),
}

/// The tensors of the checkpoint taken after `epoch` epochs (the worker's naming).
fn checkpoint_file(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("checkpoint-{epoch:04}.safetensors"))
}

pub struct Trainer {
    pub cfg: TrainConfig,
    pub model: Model,
    opt: Adam,
    pub progress: Progress,
}

impl Trainer {
    /// A fresh run: initial weights from the seed, zero Adam moments, the study's scheduler.
    pub fn new(cfg: TrainConfig) -> Result<Trainer> {
        if cfg.batch_size == 0 {
            return Err(Error::Config("batch size 0".into()));
        }
        let model = Model::new(&cfg.model, cfg.seed)?;
        let opt = Adam::new(model.params(), cfg.lr, cfg.weight_decay);
        let (plateau, patience) = match cfg.early_stop {
            EarlyStop::Plateau {
                std,
                num_results,
                grace,
            } => (Some(PlateauStopper::new(std, num_results, grace)), None),
            EarlyStop::Patience {
                patience,
                min_delta,
            } => (None, Some(PatienceStopper::new(patience, min_delta))),
            EarlyStop::None => (None, None),
        };
        Ok(Trainer {
            progress: Progress {
                history: Vec::new(),
                stopped: false,
                lr: cfg.lr,
                sched: ReduceLrOnPlateau::study(),
                // The worker's seeds for its two generators ("SHUFFLE", "TEACHER").
                shuffle_rng: SplitMix64(cfg.seed ^ 0x5348_5546_464c_4500),
                tf_rng: SplitMix64(cfg.seed ^ 0x5445_4143_4845_5200),
                plateau,
                patience,
            },
            cfg,
            model,
            opt,
        })
    }

    /// `Err` unless both sets of windows fit the model: its input features and horizon, and a
    /// horizon of at least 2 (the validation metric compares slopes).
    pub fn check(&self, train: &Windows, val: &Windows) -> Result<()> {
        let c = &self.cfg.model;
        if (train.features, train.horizon) != (val.features, val.horizon) {
            return Err(Error::Config(format!(
                "the training windows have {} features and horizon {}, the validation windows {} \
                 and {}",
                train.features, train.horizon, val.features, val.horizon
            )));
        }
        for (name, w) in [("training", train), ("validation", val)] {
            if w.features != c.input || w.horizon != c.horizon {
                return Err(Error::Config(format!(
                    "the {name} windows have {} features and horizon {}; the model takes {} and {}",
                    w.features, w.horizon, c.input, c.horizon
                )));
            }
        }
        if c.horizon < 2 {
            return Err(Error::Config(
                "the validation metric needs a horizon of at least 2".into(),
            ));
        }
        Ok(())
    }

    /// Predictions for every window, evaluation mode, no teacher forcing, in order.
    pub fn predict(&self, w: &Windows) -> Result<Vec<f32>> {
        crate::simd::with_threads(self.cfg.threads, || {
            predict(&self.model, &w.x, w.len, w.steps)
        })
    }

    /// The validation metric R of the current weights.
    pub fn val_rmse(&self, val: &Windows) -> Result<f64> {
        Ok(derivative_rmse(
            &self.predict(val)?,
            &val.y,
            self.cfg.model.horizon,
        ))
    }

    /// The zero-slope predictor's validation metric, the bar a model must clear.
    pub fn zero_slope(&self, val: &Windows) -> f64 {
        zero_slope_rmse(&val.y, self.cfg.model.horizon)
    }

    /// Runs the next epoch and records it; returns its report. `progress.stopped` tells whether
    /// the early-stopping rule fired. `on_batch(batch, batches, loss)` follows each step.
    pub fn epoch(
        &mut self,
        train: &Windows,
        val: &Windows,
        on_batch: &mut dyn FnMut(usize, usize, f64),
    ) -> Result<Epoch> {
        let threads = self.cfg.threads;
        crate::simd::with_threads(threads, || self.run_epoch(train, val, on_batch))
    }

    fn run_epoch(
        &mut self,
        train: &Windows,
        val: &Windows,
        on_batch: &mut dyn FnMut(usize, usize, f64),
    ) -> Result<Epoch> {
        self.check(train, val)?;
        let epoch = self.progress.history.len() + 1;
        let t0 = Instant::now();
        let order = self.shuffled(train.len);
        let bs = self.cfg.batch_size;
        let batches = train.len.div_ceil(bs);
        let mut total = 0.0;
        for (b, idx) in order.chunks(bs).enumerate() {
            let (x, y) = train.gather(idx);
            self.model
                .masks
                .begin_step(self.cfg.seed, epoch as u64, b as u64);
            let l = self.step(&x, &y, idx.len(), train.steps)?;
            total += l;
            on_batch(b + 1, batches, l);
        }
        let val_rmse = self.val_rmse(val)?;
        let p = &mut self.progress;
        let lr_used = p.lr;
        p.lr = p.sched.step(val_rmse, p.lr);
        self.opt.lr = p.lr;
        p.stopped = p.plateau.as_mut().is_some_and(|s| s.record(val_rmse))
            || p.patience.as_mut().is_some_and(|s| s.record(val_rmse));
        let seconds = t0.elapsed().as_secs_f64();
        let e = Epoch {
            epoch,
            train_loss: total / batches as f64,
            val_rmse,
            lr: lr_used,
            seconds,
            windows_per_s: train.len as f64 / seconds,
        };
        p.history.push(e.clone());
        Ok(e)
    }

    /// This epoch's order of the training windows: Fisher–Yates from the last index down, each
    /// swap partner `below(i + 1)` from the shuffle generator, or the windows in order.
    fn shuffled(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        if self.cfg.shuffle {
            for i in (1..n).rev() {
                order.swap(i, self.progress.shuffle_rng.below(i + 1));
            }
        }
        order
    }

    /// One optimisation step on a batch of `rows` windows; returns its unscaled loss. The caller
    /// keys [`Model::masks`] for the step first.
    pub fn step(&mut self, x: &[f32], y: &[f32], rows: usize, steps: usize) -> Result<f64> {
        let cfg = StepConfig {
            loss: self.cfg.loss,
            loss_scale: self.cfg.loss_scale,
            teacher_forcing_ratio: self.cfg.teacher_forcing_ratio,
            clip: CLIP,
        };
        let rng = &mut self.progress.tf_rng;
        let mut draw = || rng.uniform();
        let r = self
            .model
            .train_step(&mut self.opt, x, y, rows, steps, &cfg, &mut draw)?;
        Ok(f64::from(r.loss))
    }

    /// Whether training is over: the epoch budget is spent or the stopping rule fired.
    pub fn done(&self) -> bool {
        self.progress.stopped || self.progress.history.len() >= self.cfg.epochs
    }

    /// Writes weights, Adam's state and progress into `dir`, atomically as the worker does: the
    /// tensors go to a file named by their epoch, then progress.json (which names that epoch)
    /// replaces the old one, so a kill between the two leaves the old progress pointing at the
    /// old, still present tensors, never a mix of two epochs.
    pub fn save_checkpoint(&self, dir: &Path) -> std::result::Result<(), TrainError> {
        let mut entries: Vec<Entry> = self
            .model
            .params()
            .iter()
            .map(|p| Entry::f32(format!("model/{}", p.name), &p.shape, &p.data))
            .collect();
        entries.push(Entry::i64("adam/step".into(), self.opt.step as i64));
        for (i, (p, (m, v))) in self
            .model
            .params()
            .iter()
            .zip(self.opt.m.iter().zip(&self.opt.v))
            .enumerate()
        {
            entries.push(Entry::f32(format!("adam/m.{i}"), &p.shape, m));
            entries.push(Entry::f32(format!("adam/v.{i}"), &p.shape, v));
        }
        let epoch = self.progress.history.len();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e| FileError::io(&path, e)
        };
        let tmp = dir.join("checkpoint.safetensors.tmp");
        weights::write(&tmp, &entries)?;
        let ck = checkpoint_file(dir, epoch);
        std::fs::rename(&tmp, &ck).map_err(io(&ck))?;
        let json = exact_floats::to_json(&self.progress);
        let jtmp = dir.join("progress.json.tmp");
        std::fs::write(&jtmp, json).map_err(io(&jtmp))?;
        let pj = dir.join("progress.json");
        std::fs::rename(&jtmp, &pj).map_err(io(&pj))?;
        if epoch > 0 {
            let _ = std::fs::remove_file(checkpoint_file(dir, epoch - 1));
        }
        Ok(())
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`]; false when there is none
    /// (or its tensors are gone: starting over gives the same result, only later).
    pub fn load_checkpoint(&mut self, dir: &Path) -> std::result::Result<bool, TrainError> {
        let pj = dir.join("progress.json");
        if !pj.is_file() {
            return Ok(false);
        }
        let text = std::fs::read(&pj).map_err(|e| FileError::io(&pj, e))?;
        let progress: Progress = exact_floats::from_json(&text)
            .map_err(|e| FileError::format(&pj, format!("not this engine's progress: {e}")))?;
        let ck = checkpoint_file(dir, progress.history.len());
        if !ck.is_file() {
            return Ok(false);
        }
        let bytes = weights::read(&ck)?;
        let file = Tensors::parse(&ck, &bytes)?;
        let shapes: Vec<(String, Vec<usize>)> = self
            .model
            .params()
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect();
        let mut opt = Adam::new(self.model.params(), progress.lr, self.cfg.weight_decay);
        opt.step = u64::try_from(file.i64("adam/step")?)
            .map_err(|_| FileError::format(&ck, "a negative Adam step"))?;
        for (i, (name, shape)) in shapes.iter().enumerate() {
            let w = file.f32(&format!("model/{name}"), shape)?;
            self.model.set_param(name, &w)?;
            opt.m[i] = file.f32(&format!("adam/m.{i}"), shape)?;
            opt.v[i] = file.f32(&format!("adam/v.{i}"), shape)?;
        }
        self.opt = opt;
        self.progress = progress;
        Ok(true)
    }
}

/// progress.json with every float exactly as it was. serde_json writes the shortest decimal that
/// reads back to the same f64, but its parser may round such a decimal one ulp off (exact parsing
/// is its `float_roundtrip` feature, which would change how every crate of the build parses), and
/// a resumed run must continue from the very bits it stopped at: the learning rate, the
/// scheduler's best. So each float is written as a string of Rust's shortest round-trip decimal
/// and read back with Rust's correctly rounded parser. [`Progress`] holds no strings of its
/// own, so every string in the file is such a float.
mod exact_floats {
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::{Number, Value};

    pub fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
        let mut value = serde_json::to_value(v).expect("progress serialises");
        floats_to_strings(&mut value);
        serde_json::to_vec(&value).expect("a JSON value serialises")
    }

    pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        let mut value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        strings_to_floats(&mut value)?;
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    fn floats_to_strings(v: &mut Value) {
        match v {
            Value::Number(n) if n.is_f64() => {
                *v = Value::String(n.as_f64().expect("an f64").to_string());
            }
            Value::Array(a) => a.iter_mut().for_each(floats_to_strings),
            Value::Object(o) => o.values_mut().for_each(floats_to_strings),
            _ => {}
        }
    }

    fn strings_to_floats(v: &mut Value) -> Result<(), String> {
        match v {
            Value::String(s) => {
                let f: f64 = s.parse().map_err(|_| format!("`{s}` is not a float"))?;
                *v = Value::Number(Number::from_f64(f).ok_or(format!("`{s}` is not finite"))?);
            }
            Value::Array(a) => a.iter_mut().try_for_each(strings_to_floats)?,
            Value::Object(o) => o.values_mut().try_for_each(strings_to_floats)?,
            _ => {}
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn floats_come_back_with_their_bits() {
            // 0.10836774259805679 is one that serde_json's own parser reads one ulp off.
            let v: Vec<f64> = vec![
                0.10836774259805679,
                1.0,
                7.06e-3 * 0.2,
                f64::MIN_POSITIVE,
                -0.0,
            ];
            let back: Vec<f64> = super::from_json(&super::to_json(&v)).unwrap();
            let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&back), bits(&v));
            let u: (u64, bool) = super::from_json(&super::to_json(&(u64::MAX, true))).unwrap();
            assert_eq!(u, (u64::MAX, true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arch;
    use crate::testutil::{fingerprint, fnv1a, values};

    fn windows(seed: u64, n: usize, steps: usize, horizon: usize) -> Windows {
        Windows::new(
            values(seed, n * steps * 5, 0.5),
            &[n, steps, 5],
            values(seed + 1, n * horizon, 0.5),
            &[n, horizon],
        )
        .unwrap()
    }

    fn config(arch: Arch, epochs: usize, early_stop: EarlyStop) -> TrainConfig {
        TrainConfig {
            model: ModelConfig {
                arch,
                input: 5,
                hidden: 6,
                layers: 2,
                dropout: 0.3,
                horizon: 4,
            },
            batch_size: 7,
            shuffle: true,
            lr: 5e-3,
            weight_decay: 1e-5,
            loss: Loss::Hybrid { alpha: 0.7 },
            loss_scale: 100.0,
            teacher_forcing_ratio: if arch == Arch::EncDec { 0.5 } else { 0.0 },
            epochs,
            early_stop,
            seed: 3,
            threads: 1,
        }
    }

    fn run(t: &mut Trainer, train: &Windows, val: &Windows) {
        while !t.done() {
            t.epoch(train, val, &mut |_, _, _| {}).unwrap();
        }
    }

    /// Kill a run after every possible epoch and resume it in a new trainer from its checkpoint:
    /// each ends with the weights, Adam state and progress (but times) of the uninterrupted run.
    #[test]
    fn a_resumed_run_ends_with_the_bytes_of_an_uninterrupted_one() {
        let (train, val) = (windows(1, 30, 9, 4), windows(5, 11, 9, 4));
        for arch in [Arch::Lstm, Arch::EncDec] {
            let cfg = config(arch, 4, EarlyStop::None);
            let mut whole = Trainer::new(cfg.clone()).unwrap();
            run(&mut whole, &train, &val);
            let dir = tempfile::tempdir().unwrap();
            let whole_file = dir.path().join("whole.safetensors");
            weights::save(&whole_file, whole.model.params()).unwrap();
            for stop_after in 1..4 {
                let ck = dir.path().join(format!("ck{stop_after}"));
                std::fs::create_dir(&ck).unwrap();
                let mut first = Trainer::new(cfg.clone()).unwrap();
                for _ in 0..stop_after {
                    first.epoch(&train, &val, &mut |_, _, _| {}).unwrap();
                    first.save_checkpoint(&ck).unwrap();
                }
                drop(first);
                let mut resumed = Trainer::new(cfg.clone()).unwrap();
                assert!(resumed.load_checkpoint(&ck).unwrap());
                assert_eq!(resumed.progress.history.len(), stop_after);
                run(&mut resumed, &train, &val);
                assert_eq!(resumed.model.params(), whole.model.params(), "{arch:?}");
                assert_eq!(resumed.opt, whole.opt);
                let strip = |p: &Progress| {
                    let mut p = p.clone();
                    for e in &mut p.history {
                        (e.seconds, e.windows_per_s) = (0.0, 0.0);
                    }
                    p
                };
                assert_eq!(strip(&resumed.progress), strip(&whole.progress));
                let file = ck.join("resumed.safetensors");
                weights::save(&file, resumed.model.params()).unwrap();
                assert_eq!(
                    std::fs::read(&file).unwrap(),
                    std::fs::read(&whole_file).unwrap()
                );
                // Only the last epoch's tensors are kept.
                let kept: Vec<_> = std::fs::read_dir(&ck)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| n.starts_with("checkpoint-"))
                    .collect();
                assert_eq!(kept, [format!("checkpoint-{stop_after:04}.safetensors")]);
            }
        }
    }

    #[test]
    fn no_checkpoint_or_a_lost_one_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(Arch::Lstm, 2, EarlyStop::None);
        let mut t = Trainer::new(cfg.clone()).unwrap();
        assert!(!t.load_checkpoint(dir.path()).unwrap());
        let (train, val) = (windows(1, 10, 5, 4), windows(5, 4, 5, 4));
        t.epoch(&train, &val, &mut |_, _, _| {}).unwrap();
        t.save_checkpoint(dir.path()).unwrap();
        std::fs::remove_file(checkpoint_file(dir.path(), 1)).unwrap();
        let mut fresh = Trainer::new(cfg).unwrap();
        assert!(!fresh.load_checkpoint(dir.path()).unwrap());
        assert!(fresh.progress.history.is_empty());
        // A checkpoint of another model is an error, never a silent restart.
        t.save_checkpoint(dir.path()).unwrap();
        let mut other = Trainer::new(config(Arch::EncDec, 2, EarlyStop::None)).unwrap();
        let e = other.load_checkpoint(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("checkpoint ") && e.contains("model/"), "{e}");
    }

    /// The procedure's bookkeeping: one history row per epoch with the lr used, the stopper
    /// ends the run, batches are counted with the last partial one, and the threads asked for
    /// change no bit.
    #[test]
    fn epochs_batches_stopping_and_threads() {
        let (train, val) = (windows(1, 15, 6, 4), windows(5, 4, 6, 4));
        let stop = EarlyStop::Patience {
            patience: 2,
            min_delta: 10.0,
        };
        let mut t = Trainer::new(config(Arch::Lstm, 5, stop)).unwrap();
        let mut seen = Vec::new();
        let e = t
            .epoch(&train, &val, &mut |b, n, l| seen.push((b, n, l)))
            .unwrap();
        assert_eq!(
            seen.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
            [(1, 3), (2, 3), (3, 3)]
        );
        let mean = seen.iter().map(|s| s.2).sum::<f64>() / 3.0;
        assert_eq!(e.train_loss, mean);
        assert_eq!((e.epoch, e.lr), (1, 5e-3));
        assert!(e.val_rmse > 0.0 && e.val_rmse.is_finite());
        // A gain of min_delta 10 (1000 %) is never met: every epoch is a bad one, the second stops.
        assert!(!t.done());
        t.epoch(&train, &val, &mut |_, _, _| {}).unwrap();
        assert!(t.done() && t.progress.stopped);
        let weights_at = |threads| {
            let mut c = config(Arch::EncDec, 2, EarlyStop::None);
            c.threads = threads;
            let mut t = Trainer::new(c).unwrap();
            run(&mut t, &train, &val);
            fingerprint(t.model.params().iter().map(|p| p.data.as_slice()))
        };
        assert_eq!(weights_at(1), weights_at(2));
    }

    /// Without shuffling the windows go in order; with it, each epoch has its own order from the
    /// seed, the same in every run.
    #[test]
    fn shuffling_follows_the_seed() {
        let mut t = Trainer::new(config(Arch::Lstm, 2, EarlyStop::None)).unwrap();
        let a = t.shuffled(20);
        let b = t.shuffled(20);
        assert_ne!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
        let mut again = Trainer::new(config(Arch::Lstm, 2, EarlyStop::None)).unwrap();
        assert_eq!(again.shuffled(20), a);
        t.cfg.shuffle = false;
        assert_eq!(t.shuffled(5), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn bad_windows_are_refused_in_one_line() {
        let e = |r: Result<Windows>| r.unwrap_err().to_string();
        let mut x = values(1, 2 * 3 * 5, 0.5);
        x[17] = f32::NAN;
        assert_eq!(
            e(Windows::new(x, &[2, 3, 5], vec![0.0; 8], &[2, 4])),
            "x of window 1 holds a non-finite value (NaN) at index 2"
        );
        let mut y = vec![0.0; 8];
        y[5] = f32::INFINITY;
        assert_eq!(
            e(Windows::new(vec![0.0; 30], &[2, 3, 5], y, &[2, 4])),
            "y of window 1 holds a non-finite value (inf) at index 1"
        );
        assert!(e(Windows::new(vec![], &[0, 3, 5], vec![], &[0, 4])).starts_with("empty input"));
        assert!(
            e(Windows::new(vec![0.0; 30], &[2, 15], vec![0.0; 8], &[2, 4]))
                .contains("windows need x (N, W, F)")
        );
        assert!(
            e(Windows::new(
                vec![0.0; 30],
                &[2, 3, 5],
                vec![0.0; 12],
                &[3, 4]
            ))
            .contains("x holds 2 windows and y 3")
        );
        assert!(
            e(Windows::new(
                vec![0.0; 29],
                &[2, 3, 5],
                vec![0.0; 8],
                &[2, 4]
            ))
            .contains("shape mismatch")
        );
        // Windows of another model's shape.
        let mut t = Trainer::new(config(Arch::Lstm, 1, EarlyStop::None)).unwrap();
        let wrong = Windows::new(vec![0.0; 30], &[2, 3, 5], vec![0.0; 6], &[2, 3]).unwrap();
        let ok = windows(1, 2, 3, 4);
        let err = t.epoch(&wrong, &ok, &mut |_, _, _| {}).unwrap_err();
        assert!(err.to_string().contains("horizon 3"), "{err}");
        assert!(t.progress.history.is_empty());
        assert!(
            Trainer::new(TrainConfig {
                batch_size: 0,
                ..config(Arch::Lstm, 1, EarlyStop::None)
            })
            .is_err()
        );
    }

    #[test]
    fn a_windows_file_reads_back_and_a_bad_one_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.safetensors");
        let w = windows(1, 3, 4, 2);
        let write = |x: &[f32], y: &[f32]| {
            weights::write(
                &path,
                &[
                    Entry::f32("x".into(), &[3, 4, 5], x),
                    Entry::f32("y".into(), &[3, 2], y),
                ],
            )
            .unwrap()
        };
        write(w.x(), w.y());
        assert_eq!(Windows::read(&path).unwrap(), w);
        let mut x = w.x().to_vec();
        x[45] = f32::NAN;
        write(&x, w.y());
        assert_eq!(
            Windows::read(&path).unwrap_err().to_string(),
            format!(
                "{}: x of window 2 holds a non-finite value (NaN) at index 5",
                path.display()
            )
        );
        weights::write(&path, &[Entry::f32("x".into(), &[3, 4, 5], w.x())]).unwrap();
        let e = Windows::read(&path).unwrap_err().to_string();
        assert!(e.ends_with("no tensor `y`"), "{e}");
    }

    /// Two epochs of each model with everything on (shuffling, dropout, teacher forcing, the
    /// hybrid loss ×100, clipping, decay, the scheduler and the validation metric), fingerprinted
    /// with the history's metrics: the bits of the whole procedure, the same on x86-64 and on
    /// aarch64 (`make test-aarch64`), at every thread count and on every code path.
    #[test]
    fn golden_training_run() {
        let (train, val) = (windows(11, 40, 12, 4), windows(12, 9, 12, 4));
        let print = |arch, threads| {
            let mut c = config(arch, 2, EarlyStop::None);
            c.threads = threads;
            let mut t = Trainer::new(c).unwrap();
            run(&mut t, &train, &val);
            let mut bytes = Vec::new();
            for p in t.model.params() {
                bytes.extend(p.data.iter().flat_map(|v| v.to_bits().to_le_bytes()));
            }
            for e in &t.progress.history {
                for v in [e.train_loss, e.val_rmse, e.lr] {
                    bytes.extend(v.to_bits().to_le_bytes());
                }
            }
            fnv1a(&bytes)
        };
        for isa in crate::simd::supported_isas() {
            for threads in [1, 3] {
                let prints = crate::simd::with_isa(isa, || {
                    [print(Arch::Lstm, threads), print(Arch::EncDec, threads)]
                });
                println!(
                    "golden run, {} path, {threads} thread(s): {:#018x} {:#018x}",
                    isa.name(),
                    prints[0],
                    prints[1]
                );
                assert_eq!(
                    prints,
                    [GOLDEN_RUN_LSTM, GOLDEN_RUN_ENCDEC],
                    "{}",
                    isa.name()
                );
            }
        }
    }

    const GOLDEN_RUN_LSTM: u64 = 0xc103_833c_fea6_e369;
    const GOLDEN_RUN_ENCDEC: u64 = 0x8f5c_faab_3de4_255d;

    #[test]
    fn predictions_do_not_depend_on_how_rows_are_grouped() {
        let t = Trainer::new(config(Arch::EncDec, 1, EarlyStop::None)).unwrap();
        let w = windows(9, EVAL_ROWS + 5, 4, 4);
        let all = t.predict(&w).unwrap();
        let one = predict(&t.model, &w.x()[..20], 1, 4).unwrap();
        assert_eq!(one, all[..4]);
        let last = w.select(&[EVAL_ROWS + 4]);
        assert_eq!(t.predict(&last).unwrap(), all[all.len() - 4..]);
        assert!(predict(&t.model, &[], 0, 4).unwrap().is_empty());
    }
}
