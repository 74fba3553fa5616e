//! What a stage's run asks of whichever engine computes it: a [`Training`] and a [`Predictor`],
//! each implemented by libtorch (native.rs, the `torch` feature) and by magpipe's own engine
//! (portable.rs), and the helpers both engines use, so stage.rs and predict.rs drive either
//! without knowing which.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use magpipe_stages::train::WorkerRequest;

use crate::config::{Epoch, ModelConfig, TrainConfig};

/// The file wired into an input slot.
pub fn input<'a>(req: &'a WorkerRequest, slot: &str) -> anyhow::Result<&'a PathBuf> {
    req.inputs
        .get(slot)
        .ok_or_else(|| anyhow!("input `{slot}` is not connected"))
}

/// The windows a `subsample` keeps out of `n`: a fixed, seeded subset, in their original order
/// (the same for both engines).
pub fn subsample_indices(n: usize, fraction: f64, seed: u64) -> Vec<usize> {
    let keep = ((n as f64 * fraction).ceil() as usize).clamp(1, n);
    let mut rng = magpipe_stages::tune::tpe::Rng::new(seed ^ 0x5355_4253_414d_504c);
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        idx.swap(i, rng.below(i + 1));
    }
    idx.truncate(keep);
    idx.sort_unstable();
    idx
}

/// A training run, whichever engine computes it: what the epoch loop, the checkpoints and the
/// outputs need of it.
pub trait Training {
    /// The run's settings, as model.json records them (the seed resolved).
    fn config(&self) -> &TrainConfig;
    fn history(&self) -> &[Epoch];
    /// Whether the early-stopping rule fired.
    fn stopped(&self) -> bool;
    /// Whether the epoch budget is spent or the stopping rule fired.
    fn done(&self) -> bool;
    /// The training windows an epoch runs over (after subsampling).
    fn train_windows(&self) -> usize;
    /// Runs and records the next epoch; `on_batch(batch, batches, loss)` follows each step.
    fn epoch(&mut self, on_batch: &mut dyn FnMut(usize, usize, f64)) -> anyhow::Result<Epoch>;
    fn save_checkpoint(&self, dir: &Path) -> anyhow::Result<()>;
    /// Restores the checkpoint in `dir`; false when there is none.
    fn load_checkpoint(&mut self, dir: &Path) -> anyhow::Result<bool>;
    /// The zero-slope predictor's validation metric, the bar a model must clear.
    fn zero_slope(&self) -> f64;
    /// Predictions for every validation window, in order.
    fn val_predictions(&self) -> anyhow::Result<Vec<f32>>;
    /// Writes the weights under the VarStore's names.
    fn save_weights(&self, path: &Path) -> anyhow::Result<()>;
    fn param_count(&self) -> i64;
}

/// A trained model as prediction uses it, on whichever engine the request's kernels name.
pub trait Predictor {
    /// The architecture (model.json's `architecture`).
    fn config(&self) -> &ModelConfig;
    fn param_count(&self) -> i64;
    /// Predictions (N, P) for windows `x` (N, W, features), evaluation mode, row-major.
    fn predict(&self, x: &[f32], rows: usize, steps: usize) -> anyhow::Result<Vec<f32>>;
}
