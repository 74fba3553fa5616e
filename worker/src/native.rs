//! `kernels: native`: training and prediction on libtorch (the `torch` feature), behind the
//! interfaces both engines share ([`Training`], [`Predictor`]).

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use magpipe_stages::train::{TrainParams, WorkerRequest};
use tch::{Device, Kind, Tensor, nn};

use crate::config::config;
use crate::engines::{Predictor, Training, input, subsample_indices};
use crate::model::{Model, ModelConfig, param_count};
use crate::train::{Epoch, TrainConfig, Trainer, Windows};

pub fn load_windows(path: &Path, device: Device) -> anyhow::Result<Windows> {
    let named = Tensor::read_safetensors(path).with_context(|| format!("{}", path.display()))?;
    let get = |n: &str| {
        named
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, t)| t.to_device(device))
            .ok_or_else(|| anyhow!("{}: no tensor `{n}`", path.display()))
    };
    let (x, y) = (get("x")?, get("y")?);
    if x.dim() != 3 || y.dim() != 2 || x.size()[0] != y.size()[0] {
        bail!(
            "{}: expected x (N, W, F) and y (N, P), found {:?} and {:?}",
            path.display(),
            x.size(),
            y.size()
        );
    }
    Ok(Windows { x, y })
}

/// A fixed, seeded subset of the windows (in their original order).
fn subsample(w: Windows, fraction: f64, seed: u64) -> Windows {
    let idx: Vec<i64> = subsample_indices(w.len() as usize, fraction, seed)
        .into_iter()
        .map(|i| i as i64)
        .collect();
    let t = Tensor::from_slice(&idx).to_device(w.x.device());
    Windows {
        x: w.x.index_select(0, &t),
        y: w.y.index_select(0, &t),
    }
}

/// The training windows (subsampled when asked) and the validation windows, on `device`.
fn load_inputs(
    req: &WorkerRequest,
    p: &TrainParams,
    device: Device,
) -> anyhow::Result<(Windows, Windows)> {
    let mut train = load_windows(input(req, "train")?, device)?;
    if p.subsample < 1.0 {
        train = subsample(train, p.subsample, p.seed.unwrap_or(0));
    }
    let val = load_windows(input(req, "val")?, device)?;
    Ok((train, val))
}

/// A training on libtorch, with its windows.
pub struct NativeRun {
    t: Trainer,
    train: Windows,
    val: Windows,
}

impl NativeRun {
    pub fn start(
        req: &WorkerRequest,
        p: &TrainParams,
        device: Device,
    ) -> anyhow::Result<NativeRun> {
        let (train, val) = load_inputs(req, p, device)?;
        let (horizon, features) = (train.y.size()[1] as usize, train.x.size()[2] as usize);
        let t = Trainer::new(config(p, horizon, features), device);
        Ok(NativeRun { t, train, val })
    }
}

impl Training for NativeRun {
    fn config(&self) -> &TrainConfig {
        &self.t.cfg
    }

    fn history(&self) -> &[Epoch] {
        &self.t.progress.history
    }

    fn stopped(&self) -> bool {
        self.t.progress.stopped
    }

    fn done(&self) -> bool {
        self.t.done()
    }

    fn train_windows(&self) -> usize {
        self.train.len() as usize
    }

    fn epoch(&mut self, on_batch: &mut dyn FnMut(usize, usize, f64)) -> anyhow::Result<Epoch> {
        Ok(self.t.epoch(&self.train, &self.val, on_batch))
    }

    fn save_checkpoint(&self, dir: &Path) -> anyhow::Result<()> {
        self.t
            .save_checkpoint(dir)
            .map_err(|e| anyhow!("checkpoint: {e}"))
    }

    fn load_checkpoint(&mut self, dir: &Path) -> anyhow::Result<bool> {
        self.t
            .load_checkpoint(dir)
            .map_err(|e| anyhow!("checkpoint: {e}"))
    }

    fn zero_slope(&self) -> f64 {
        self.t.zero_slope(&self.val)
    }

    fn val_predictions(&self) -> anyhow::Result<Vec<f32>> {
        Ok(self.t.predict(&self.val, 4096))
    }

    fn save_weights(&self, path: &Path) -> anyhow::Result<()> {
        self.t.vs.save(path).context("model.safetensors")
    }

    fn param_count(&self) -> i64 {
        param_count(&self.t.vs)
    }
}

/// A model on libtorch.
pub struct TorchModel {
    pub vs: nn::VarStore,
    pub model: Model,
}

impl TorchModel {
    /// The model of `arch` with the weights `train` wrote, on the CPU.
    pub fn load(weights: &Path, arch: &ModelConfig) -> anyhow::Result<TorchModel> {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = Model::new(&vs.root(), arch);
        vs.load(weights)
            .map_err(|e| anyhow!("{}: {e}", weights.display()))?;
        Ok(TorchModel { vs, model })
    }
}

impl Predictor for TorchModel {
    fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    fn param_count(&self) -> i64 {
        param_count(&self.vs)
    }

    fn predict(&self, x: &[f32], rows: usize, steps: usize) -> anyhow::Result<Vec<f32>> {
        let shape = [rows as i64, steps as i64, self.model.config.input as i64];
        tch::no_grad(|| {
            let out = self
                .model
                .forward(&Tensor::from_slice(x).view(shape), false, None);
            Vec::<f32>::try_from(out.contiguous().view([-1]).to_kind(Kind::Float))
                .map_err(|e| anyhow!("{e}"))
        })
    }
}
