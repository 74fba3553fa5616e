//! A training's settings as model.json records them, the same for both engines and free of
//! libtorch, so a worker built without it (`--no-default-features`) still reads and writes them.

use magpipe_stages::train::{Kernels, LossName, ModelName, Precision, StopRule, TrainParams};
use serde::{Deserialize, Serialize};

// One stopping rule and one history for both engines (magpipe-kernels' trainer is libtorch's
// trainer's twin), so model.json, history.parquet and checkpoints read the same from either.
pub use magpipe_kernels::train::{EarlyStop, Epoch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Stacked LSTM, last step of the top layer → Linear(h → P).
    #[serde(rename = "MagFluxLSTM")]
    Lstm,
    /// LSTM encoder whose final states start an LSTM decoder run for P single steps.
    #[serde(rename = "MagFluxEnc-Dec")]
    EncDec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub input: usize,
    pub hidden: usize,
    pub layers: usize,
    pub dropout: f64,
    pub horizon: usize,
    /// bf16 mixed precision: the LSTMs compute in bf16 from fp32 master weights; the head, the
    /// loss and the optimiser stay fp32.
    #[serde(default)]
    pub bf16: bool,
    /// Absent from model.json when `native`, so native models keep their bytes.
    #[serde(default, skip_serializing_if = "Kernels::is_native")]
    pub kernels: Kernels,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Loss {
    Value,
    Hybrid { alpha: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// The seed of a run: the param, or one drawn from the OS when the param is `null`.
pub fn run_seed(p: &TrainParams) -> u64 {
    p.seed.unwrap_or_else(|| {
        let mut b = [0u8; 8];
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
            .is_err()
        {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            b = (t ^ u64::from(std::process::id())).to_le_bytes();
        }
        u64::from_le_bytes(b)
    })
}

pub fn config(p: &TrainParams, horizon: usize, features: usize) -> TrainConfig {
    TrainConfig {
        model: ModelConfig {
            arch: match p.model {
                ModelName::MagFluxLstm => Arch::Lstm,
                ModelName::MagFluxEncDec => Arch::EncDec,
            },
            input: features,
            hidden: p.hidden,
            layers: p.layers,
            dropout: p.dropout,
            horizon,
            bf16: p.precision == Precision::Bf16Mixed,
            kernels: p.kernels,
        },
        batch_size: p.batch_size,
        shuffle: p.shuffle,
        lr: p.lr,
        weight_decay: p.weight_decay,
        loss: match p.loss {
            LossName::Value => Loss::Value,
            LossName::Hybrid => Loss::Hybrid { alpha: p.alpha },
        },
        loss_scale: p.loss_scale(),
        teacher_forcing_ratio: p.teacher_forcing_ratio,
        epochs: p.epochs,
        early_stop: match p.early_stop {
            StopRule::Plateau => EarlyStop::Plateau {
                std: p.stop_std,
                num_results: p.stop_num_results,
                grace: p.stop_grace,
            },
            StopRule::Patience => EarlyStop::Patience {
                patience: p.patience,
                min_delta: p.min_delta,
            },
            StopRule::None => EarlyStop::None,
        },
        seed: run_seed(p),
    }
}
