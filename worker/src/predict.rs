//! `predict`: a trained model run over the test protocol (docs/src/semantics.md §8): every test window of
//! every scored tile as one batch in eval mode, output step `output_step` kept, recalibrated and
//! denormalised, written in the same layout as the baselines'.

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow, bail};
use magpipe_stages::protocol::{
    PredictorSummary, Protocol, TileSeries, flux, write_predictor_outputs,
};
use magpipe_stages::scale::Scaler;
use magpipe_stages::table::{FEATURES, SeriesTable};
use magpipe_stages::train::{Kernels, PredictParams, WorkerRequest};
use serde_json::Value;

use crate::config::ModelConfig;
pub use crate::engines::Predictor;
use crate::engines::input;

pub struct Loaded {
    pub model: Box<dyn Predictor>,
    pub config: Value,
}

/// Rebuilds the model that `train` wrote: its architecture from model.json, weights from
/// model.safetensors.
/// It runs with the request's kernels, which are the training's unless `predict` overrides them:
/// libtorch for `native`, magpipe's own engine for `portable` (both read either's weights).
pub fn load_model(
    weights: &std::path::Path,
    config: &std::path::Path,
    kernels: Kernels,
) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(config).with_context(|| config.display().to_string())?;
    let cfg: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", config.display()))?;
    let mut arch: ModelConfig = serde_json::from_value(cfg["architecture"].clone())
        .with_context(|| format!("{}: no valid `architecture`", config.display()))?;
    arch.kernels = kernels;
    let model: Box<dyn Predictor> = match kernels {
        #[cfg(feature = "torch")]
        Kernels::Native => Box::new(crate::native::TorchModel::load(weights, &arch)?),
        #[cfg(not(feature = "torch"))]
        Kernels::Native => bail!(crate::NO_TORCH),
        Kernels::Portable => Box::new(crate::portable::load_model(weights, &arch)?),
        Kernels::Auto => bail!("kernels `auto` reached the worker unsettled"),
    };
    Ok(Loaded { model, config: cfg })
}

/// The threads of the model run: libtorch's intra-op threads for native kernels, the engine's
/// for portable ones (which compute the same bits at any count).
fn set_threads(req: &WorkerRequest) {
    match req.kernels {
        #[cfg(feature = "torch")]
        Kernels::Native | Kernels::Auto => tch::set_num_threads(req.threads.max(1) as i32),
        #[cfg(not(feature = "torch"))]
        Kernels::Native | Kernels::Auto => {}
        Kernels::Portable => magpipe_kernels::simd::set_threads(req.threads.max(1)),
    }
}

pub fn run(req: &WorkerRequest, emit_progress: &dyn Fn(u64, u64)) -> anyhow::Result<String> {
    let p: PredictParams = serde_json::from_value(req.params.clone()).context("predict params")?;
    set_threads(req);
    let input = |slot: &str| input(req, slot);
    let m = load_model(input("model")?, input("config")?, req.kernels)?;
    let proto = Protocol::read(input("protocol")?).map_err(|e| anyhow!("{e}"))?;
    let series = SeriesTable::read(input("test")?).map_err(|e| anyhow!("{e}"))?;
    let scaler = Scaler::read(input("scaler")?).map_err(|e| anyhow!("{e}"))?;
    let horizon = m.model.config().horizon;
    if proto.output_step >= horizon {
        bail!(
            "the protocol uses output step {} but the model predicts {horizon} steps",
            proto.output_step
        );
    }
    if m.model.config().input != FEATURES.len() {
        bail!(
            "the model was trained on {} features, the test series have {}",
            m.model.config().input,
            FEATURES.len()
        );
    }
    let total: usize = proto.ars.iter().map(|g| g.tiles.len()).sum();
    let mut tiles = Vec::with_capacity(total);
    for g in &proto.ars {
        for &k in &g.tiles {
            let x = proto.inputs(g, &series, k);
            let out = m.model.predict(&x, g.windows, g.input)?;
            // Output step `output_step` of every window (f32 → f64 is exact).
            let yhat: Vec<f64> = out
                .chunks_exact(horizon)
                .map(|w| f64::from(w[proto.output_step]))
                .collect();
            tiles.push(TileSeries::new(&proto, g, flux(&series, g.ar, k), k, yhat));
            emit_progress(tiles.len() as u64, total as u64);
        }
    }
    let params = &m.config["params"];
    let model = params["model"].as_str().unwrap_or_default().to_string();
    let loss = match params["loss"].as_str() {
        Some("hybrid") => "hybrid",
        _ => "MSE",
    };
    let summary = PredictorSummary {
        predictor: p.label.clone().unwrap_or_else(|| format!("{model} {loss}")),
        kind: "model".into(),
        model,
        loss: loss.into(),
        val_rmse: m.config["val_rmse"].as_f64().unwrap_or(f64::NAN),
        zero_slope_rmse: m.config["zero_slope_rmse"].as_f64().unwrap_or(f64::NAN),
        collapsed: m.config["collapsed"].as_bool().unwrap_or(false),
        params: params.clone(),
        param_count: Some(m.model.param_count()),
        epochs_run: m.config["epochs_run"].as_u64().map(|e| e as usize),
        mean_rmse_gauss: BTreeMap::new(),
    };
    let s = write_predictor_outputs(&req.out_dir, &proto, &series, &scaler, tiles, summary)
        .map_err(|e| anyhow!("{e}"))?;
    let mean: Vec<String> = s
        .mean_rmse_gauss
        .iter()
        .map(|(ar, v)| format!("{ar} {v:.1}"))
        .collect();
    Ok(format!(
        "{}: {} tiles predicted; mean RMSE (G) {}",
        s.predictor,
        total,
        mean.join(", ")
    ))
}

/// `infer`, for `magpipe forecast`: the model run on batches of windows the engine cut
/// (`windows`: safetensors `x0`, `x1`, … of (N, W, 5)), every output kept; writes
/// `outputs.safetensors` with `y0`, `y1`, … of (N, horizon). Each batch runs as `predict` runs a
/// tile, so the same windows give the same numbers.
pub fn infer(req: &WorkerRequest, emit_progress: &dyn Fn(u64, u64)) -> anyhow::Result<String> {
    set_threads(req);
    let input = |slot: &str| input(req, slot);
    let m = load_model(input("model")?, input("config")?, req.kernels)?;
    let batches =
        magpipe_stages::forecast::read_f32(input("windows")?, "x").map_err(|e| anyhow!(e))?;
    let (features, horizon) = (m.model.config().input, m.model.config().horizon);
    let mut ys = Vec::with_capacity(batches.len());
    for (i, (shape, x)) in batches.iter().enumerate() {
        if shape.len() != 3 || shape[2] != features {
            bail!("batch {i} has shape {shape:?}; the model takes (N, W, {features}) windows");
        }
        let y = m.model.predict(x, shape[0], shape[1])?;
        ys.push((format!("y{i}"), vec![shape[0], horizon], y));
        emit_progress(i as u64 + 1, batches.len() as u64);
    }
    let named: Vec<(String, Vec<usize>, &[f32])> = ys
        .iter()
        .map(|(n, d, y)| (n.clone(), d.clone(), y.as_slice()))
        .collect();
    let path = req.out_dir.join("outputs.safetensors");
    magpipe_stages::forecast::write_f32(&path, &named)
        .with_context(|| path.display().to_string())?;
    Ok(format!("{} batches run", batches.len()))
}
