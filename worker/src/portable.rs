//! `kernels: portable`: training and prediction on magpipe's own engine (the `magpipe-kernels`
//! crate), whose every float operation has an order fixed by the shapes alone, so the same seed
//! gives the same bytes on every CPU and at any thread count. No libtorch op runs on this path:
//! windows, weights and checkpoints are read and written with the safetensors format through the
//! engine, and libtorch stays for `kernels: native` and every GPU.
//!
//! The outputs are those of the libtorch path (stage.rs writes them from a [`Training`]):
//! `model.safetensors` under the VarStore's names, so either engine loads either's weights.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use magpipe_kernels as engine;
use magpipe_kernels::train::{Trainer, Windows};
use magpipe_stages::train::{TrainParams, WorkerRequest};
use serde_json::{Value, json};

use crate::config::{Arch, Epoch, Loss, ModelConfig, TrainConfig};
use crate::engines::{Predictor, Training, input, subsample_indices};

/// `facts.hardware.kernels` of a portable stage: which engine and code path computed it.
pub fn kernels_fact() -> Value {
    json!(format!("portable: {}", engine::engine::describe()))
}

/// The engine's architecture for the worker's (which model.json records).
fn engine_model(m: &ModelConfig) -> engine::ModelConfig {
    engine::ModelConfig {
        arch: match m.arch {
            Arch::Lstm => engine::Arch::Lstm,
            Arch::EncDec => engine::Arch::EncDec,
        },
        input: m.input,
        hidden: m.hidden,
        layers: m.layers,
        dropout: m.dropout,
        horizon: m.horizon,
    }
}

/// The engine's settings for the worker's (`config::config`, which resolves the seed).
fn engine_config(c: &TrainConfig, threads: usize) -> engine::train::TrainConfig {
    engine::train::TrainConfig {
        model: engine_model(&c.model),
        batch_size: c.batch_size,
        shuffle: c.shuffle,
        lr: c.lr,
        weight_decay: c.weight_decay,
        loss: match c.loss {
            Loss::Value => engine::Loss::Value,
            Loss::Hybrid { alpha } => engine::Loss::Hybrid { alpha },
        },
        loss_scale: c.loss_scale,
        teacher_forcing_ratio: c.teacher_forcing_ratio,
        epochs: c.epochs,
        early_stop: c.early_stop,
        seed: c.seed,
        threads,
    }
}

/// A training on the engine, with its windows.
pub struct PortableRun {
    config: TrainConfig,
    trainer: Trainer,
    train: Windows,
    val: Windows,
}

impl PortableRun {
    /// Reads the windows (subsampled when asked) and starts a fresh run; every input is checked
    /// before anything is computed, so bad input is one line and no output.
    pub fn start(req: &WorkerRequest, p: &TrainParams) -> anyhow::Result<PortableRun> {
        let read = |slot: &str| -> anyhow::Result<Windows> {
            Windows::read(input(req, slot)?).map_err(|e| anyhow!("input `{slot}`: {e}"))
        };
        let mut train = read("train")?;
        if p.subsample < 1.0 {
            train = train.select(&subsample_indices(
                train.len(),
                p.subsample,
                p.seed.unwrap_or(0),
            ));
        }
        let val = read("val")?;
        let config = crate::config::config(p, train.horizon(), train.features());
        let trainer = Trainer::new(engine_config(&config, req.threads.max(1)))
            .map_err(|e| anyhow!("kernels: portable: {e}"))?;
        trainer.check(&train, &val).map_err(|e| match e {
            engine::Error::Config(why) => anyhow!("input windows: {why}"),
            e => anyhow!("input windows: {e}"),
        })?;
        Ok(PortableRun {
            config,
            trainer,
            train,
            val,
        })
    }
}

impl Training for PortableRun {
    fn config(&self) -> &TrainConfig {
        &self.config
    }

    fn history(&self) -> &[Epoch] {
        &self.trainer.progress.history
    }

    fn stopped(&self) -> bool {
        self.trainer.progress.stopped
    }

    fn done(&self) -> bool {
        self.trainer.done()
    }

    fn train_windows(&self) -> usize {
        self.train.len()
    }

    fn epoch(&mut self, on_batch: &mut dyn FnMut(usize, usize, f64)) -> anyhow::Result<Epoch> {
        Ok(self.trainer.epoch(&self.train, &self.val, on_batch)?)
    }

    fn save_checkpoint(&self, dir: &Path) -> anyhow::Result<()> {
        Ok(self.trainer.save_checkpoint(dir)?)
    }

    fn load_checkpoint(&mut self, dir: &Path) -> anyhow::Result<bool> {
        Ok(self.trainer.load_checkpoint(dir)?)
    }

    fn zero_slope(&self) -> f64 {
        self.trainer.zero_slope(&self.val)
    }

    fn val_predictions(&self) -> anyhow::Result<Vec<f32>> {
        Ok(self.trainer.predict(&self.val)?)
    }

    fn save_weights(&self, path: &Path) -> anyhow::Result<()> {
        Ok(engine::weights::save(path, self.trainer.model.params())?)
    }

    fn param_count(&self) -> i64 {
        param_count(&self.trainer.model)
    }
}

fn param_count(m: &engine::Model) -> i64 {
    m.params().iter().map(|p| p.data.len() as i64).sum()
}

/// A trained model on the engine, for `predict` and `infer`.
pub struct PortableModel {
    config: ModelConfig,
    model: engine::Model,
}

/// Loads `weights` (written by either engine: the names and shapes are the same) into the
/// engine's model of architecture `arch`.
pub fn load_model(weights: &Path, arch: &ModelConfig) -> anyhow::Result<PortableModel> {
    let mut model = engine::Model::new(&engine_model(arch), 0)
        .map_err(|e| anyhow!("kernels: portable: {e}"))?;
    engine::weights::load(&mut model, weights)?;
    Ok(PortableModel {
        config: arch.clone(),
        model,
    })
}

impl Predictor for PortableModel {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn param_count(&self) -> i64 {
        param_count(&self.model)
    }

    fn predict(&self, x: &[f32], rows: usize, steps: usize) -> anyhow::Result<Vec<f32>> {
        Ok(engine::train::predict(&self.model, x, rows, steps)?)
    }
}

/// `bench-train … portable`: windows/s of `steps` optimisation steps of `cfg` on the engine,
/// after 5 warm-up steps, on a pool of 4 batches of `batch` random windows of 110 steps (the
/// libtorch bench's shapes and procedure).
pub fn bench_train(cfg: &TrainConfig, threads: usize, steps: usize) -> anyhow::Result<f64> {
    // The bench takes steps itself, outside an epoch, which would set the trainer's threads.
    engine::simd::set_threads(threads);
    let mut t = Trainer::new(engine_config(cfg, threads)).context("kernels: portable")?;
    let (batch, window, horizon) = (cfg.batch_size, 110, cfg.model.horizon);
    let mut rng = engine::splitmix::SplitMix64(0);
    let mut normal = || {
        // Box–Muller from two uniform draws: random data is all a benchmark needs.
        let (u, v) = (rng.uniform().max(1e-12), rng.uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    };
    let batches: Vec<(Vec<f32>, Vec<f32>)> = (0..4)
        .map(|_| {
            let x = (0..batch * window * cfg.model.input)
                .map(|_| normal())
                .collect();
            let y = (0..batch * horizon).map(|_| normal()).collect();
            (x, y)
        })
        .collect();
    let step = |t: &mut Trainer, epoch: u64, i: usize| -> anyhow::Result<()> {
        let (x, y) = &batches[i % 4];
        t.model.masks.begin_step(0, epoch, i as u64);
        t.step(x, y, batch, window)?;
        Ok(())
    };
    for i in 0..5 {
        step(&mut t, 0, i)?;
    }
    let t0 = std::time::Instant::now();
    for i in 0..steps {
        step(&mut t, 1, i)?;
    }
    Ok((steps * batch) as f64 / t0.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use magpipe_kernels::splitmix::SplitMix64 as Ours;
    use magpipe_stages::split::SplitMix64 as Theirs;

    /// The trainer's generators: the engine's copy of SplitMix64 must give the sequence the
    /// libtorch trainer draws from, integers, `below` and uniforms alike.
    #[test]
    fn the_engines_splitmix64_is_the_workers() {
        for seed in [0, 7, 0x5348_5546_464c_4500, u64::MAX] {
            let (mut a, mut b) = (Ours(seed), Theirs(seed));
            for i in 0..1000usize {
                assert_eq!(a.next_u64(), b.next_u64());
                assert_eq!(a.below(i + 1), b.below(i + 1));
                let u = (b.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                assert_eq!(a.uniform().to_bits(), u.to_bits());
            }
            assert_eq!(a.0, b.0);
        }
    }
}
