//! The study's training procedure (docs/src/semantics.md §10): Adam with coupled L2 weight decay, the loss
//! scaled ×100 for the hybrid loss only, gradient-norm clipping at 1.0 (which therefore sees the
//! scaled gradient), ReduceLROnPlateau stepped with the validation derivative RMSE each epoch, and
//! an early-stopping rule. Every random choice (init, dropout, shuffling, teacher forcing) flows
//! from the seed.

use std::path::Path;
use std::time::Instant;

use magpipe_stages::split::SplitMix64;
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::adam::Adam;
use crate::metrics::{derivative_rmse, zero_slope_rmse};
use crate::model::{Model, TeacherForcing, hybrid_loss, value_loss};
use crate::schedule::{PatienceStopper, PlateauStopper, ReduceLrOnPlateau};

pub use crate::config::{EarlyStop, Epoch, Loss, TrainConfig};

/// Windows in memory: `x` (N, W, F) and `y` (N, P), f32.
pub struct Windows {
    pub x: Tensor,
    pub y: Tensor,
}

impl Windows {
    pub fn len(&self) -> i64 {
        self.x.size()[0]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// The tensors of the checkpoint taken after `epoch` epochs.
fn checkpoint_file(dir: &Path, epoch: usize) -> std::path::PathBuf {
    dir.join(format!("checkpoint-{epoch:04}.safetensors"))
}

pub struct Trainer {
    pub cfg: TrainConfig,
    pub vs: nn::VarStore,
    pub model: Model,
    opt: Adam,
    pub progress: Progress,
}

fn uniform(r: &mut SplitMix64) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Trainer {
    pub fn new(cfg: TrainConfig, device: Device) -> Trainer {
        tch::manual_seed(cfg.seed as i64);
        // Drawn on the CPU, then moved: CUDA's generator draws other numbers, and one seed
        // should give one initial model whatever the device.
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = Model::new(&vs.root(), &cfg.model);
        if device != Device::Cpu {
            vs.set_device(device);
        }
        // Our own Adam (same update as torch's), because its state must go into checkpoints.
        let opt = Adam::new(vs.trainable_variables(), cfg.lr, cfg.weight_decay);
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
        Trainer {
            progress: Progress {
                history: Vec::new(),
                stopped: false,
                lr: cfg.lr,
                sched: ReduceLrOnPlateau::study(),
                shuffle_rng: SplitMix64(cfg.seed ^ 0x5348_5546_464c_4500),
                tf_rng: SplitMix64(cfg.seed ^ 0x5445_4143_4845_5200),
                plateau,
                patience,
            },
            cfg,
            vs,
            model,
            opt,
        }
    }

    /// The unscaled loss of a batch.
    pub fn loss(&self, pred: &Tensor, y: &Tensor) -> Tensor {
        match self.cfg.loss {
            Loss::Value => value_loss(pred, y),
            Loss::Hybrid { alpha } => hybrid_loss(pred, y, alpha),
        }
    }

    /// Predictions for every window, eval mode, no teacher forcing, in order.
    pub fn predict(&self, w: &Windows, batch: i64) -> Vec<f32> {
        tch::no_grad(|| {
            let mut out = Vec::with_capacity((w.len() * w.y.size()[1]) as usize);
            let mut start = 0;
            while start < w.len() {
                let n = batch.min(w.len() - start);
                let p = self.model.forward(&w.x.narrow(0, start, n), false, None);
                out.extend(
                    Vec::<f32>::try_from(p.to_kind(Kind::Float).flatten(0, -1))
                        .expect("f32 predictions"),
                );
                start += n;
            }
            out
        })
    }

    pub fn val_rmse(&self, val: &Windows) -> f64 {
        let p = self.predict(val, 4096);
        let y = Vec::<f32>::try_from(val.y.flatten(0, -1)).expect("f32 targets");
        derivative_rmse(&p, &y, self.cfg.model.horizon)
    }

    /// Runs the next epoch and records it; returns its report. `progress.stopped` tells whether
    /// the early-stopping rule fired.
    pub fn epoch(
        &mut self,
        train: &Windows,
        val: &Windows,
        on_batch: &mut dyn FnMut(usize, usize, f64),
    ) -> Epoch {
        let epoch = self.progress.history.len() + 1;
        // Dropout draws from libtorch's global generator; seeding it per epoch makes a resumed
        // run draw exactly what an uninterrupted one would.
        tch::manual_seed(
            (self.cfg.seed as i64)
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as i64),
        );
        let t0 = Instant::now();
        let n = train.len() as usize;
        let mut order: Vec<i64> = (0..n as i64).collect();
        if self.cfg.shuffle {
            for i in (1..n).rev() {
                order.swap(i, self.progress.shuffle_rng.below(i + 1));
            }
        }
        let bs = self.cfg.batch_size;
        let batches = n.div_ceil(bs);
        let mut total = 0.0;
        for (b, idx) in order.chunks(bs).enumerate() {
            let idx = Tensor::from_slice(idx).to_device(train.x.device());
            let (x, y) = (train.x.index_select(0, &idx), train.y.index_select(0, &idx));
            self.model
                .masks
                .begin_step(self.cfg.seed, epoch as u64, b as u64);
            let l = self.step(&x, &y);
            total += l;
            on_batch(b + 1, batches, l);
        }
        let val_rmse = self.val_rmse(val);
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
            windows_per_s: n as f64 / seconds,
        };
        p.history.push(e.clone());
        e
    }

    /// One optimisation step on a batch; returns its unscaled loss.
    pub fn step(&mut self, x: &Tensor, y: &Tensor) -> f64 {
        self.opt.zero_grad();
        let ratio = self.cfg.teacher_forcing_ratio;
        let rng = &mut self.progress.tf_rng;
        let mut draw = || uniform(rng);
        let pred = self.model.forward(
            x,
            true,
            Some(TeacherForcing {
                targets: y,
                ratio,
                draw: &mut draw,
            }),
        );
        let loss = self.loss(&pred, y);
        (&loss * self.cfg.loss_scale).backward();
        self.opt.clip_grad_norm(1.0);
        self.opt.step();
        loss.double_value(&[])
    }

    /// Whether training is over: the epoch budget is spent or the stopping rule fired.
    pub fn done(&self) -> bool {
        self.progress.stopped || self.progress.history.len() >= self.cfg.epochs
    }

    /// Writes weights, optimizer state and progress into `dir` (atomically: a kill mid-write
    /// leaves the previous checkpoint).
    pub fn save_checkpoint(&self, dir: &Path) -> Result<(), String> {
        let mut named: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(k, v)| (format!("model/{k}"), v))
            .collect();
        named.extend(
            self.opt
                .state()
                .into_iter()
                .map(|(k, v)| (format!("adam/{k}"), v)),
        );
        named.sort_by(|a, b| a.0.cmp(&b.0));
        // The tensors go to a file named by their epoch, then progress.json (which names that
        // epoch) replaces the old one: a kill between the two renames leaves the old progress
        // pointing at the old, still present tensors, never a mix of two epochs.
        let epoch = self.progress.history.len();
        let tmp = dir.join("checkpoint.safetensors.tmp");
        Tensor::write_safetensors(&named, &tmp).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, checkpoint_file(dir, epoch)).map_err(|e| e.to_string())?;
        let json = serde_json::to_vec(&self.progress).map_err(|e| e.to_string())?;
        let jtmp = dir.join("progress.json.tmp");
        std::fs::write(&jtmp, json).map_err(|e| e.to_string())?;
        std::fs::rename(&jtmp, dir.join("progress.json")).map_err(|e| e.to_string())?;
        if epoch > 0 {
            let _ = std::fs::remove_file(checkpoint_file(dir, epoch - 1));
        }
        Ok(())
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`]; false when there is none.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<bool, String> {
        let pj = dir.join("progress.json");
        if !pj.is_file() {
            return Ok(false);
        }
        let progress: Progress =
            serde_json::from_slice(&std::fs::read(&pj).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        let ck = checkpoint_file(dir, progress.history.len());
        if !ck.is_file() {
            // A checkpoint from before tensors were named by epoch, or one cut short: starting
            // over gives the same result, only later.
            return Ok(false);
        }
        let named = Tensor::read_safetensors(&ck).map_err(|e| e.to_string())?;
        let adam: Vec<(String, Tensor)> = named
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("adam/")
                    .map(|k| (k.to_string(), v.shallow_clone()))
            })
            .collect();
        let vars = self.vs.variables();
        tch::no_grad(|| {
            for (name, mut var) in vars {
                let src = named
                    .iter()
                    .find(|(k, _)| k.strip_prefix("model/") == Some(name.as_str()))
                    .ok_or(format!("checkpoint lacks `{name}`"))?;
                var.copy_(&src.1);
            }
            Ok::<(), String>(())
        })?;
        self.opt.load_state(&adam)?;
        self.opt.lr = progress.lr;
        self.progress = progress;
        Ok(true)
    }

    /// The zero-slope predictor's validation metric, the bar a model must clear.
    pub fn zero_slope(&self, val: &Windows) -> f64 {
        let y = Vec::<f32>::try_from(val.y.flatten(0, -1)).expect("f32 targets");
        zero_slope_rmse(&y, self.cfg.model.horizon)
    }
}
