//! The artifacts the study's kinds exchange, named and versioned as contracts. Every output that
//! claims one (a built-in kind's or a command stage's) is checked against it before it is
//! committed, and a slot that needs one accepts any stage's output that carries it: a Python
//! model's predictions enter Table 2 exactly like `predict`'s.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use magpipe_engine::contract::{Contract, Field, Peers};
use magpipe_engine::kind::Metric;
use polars::prelude::*;

use crate::protocol::{PredictorSummary, Protocol};

pub use crate::contract_names::*;

pub fn all() -> Vec<Arc<dyn Contract>> {
    vec![
        Arc::new(Series),
        Arc::new(Windows),
        Arc::new(ProtocolContract),
        Arc::new(Predictions),
        Arc::new(Summary),
        Arc::new(ModelConfig),
    ]
}

const fn field(
    name: &'static str,
    dtype: &'static str,
    required: bool,
    doc: &'static str,
) -> Field {
    Field {
        name,
        dtype,
        required,
        doc,
    }
}

fn parquet_schema(path: &Path) -> Result<Schema, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut r = ParquetReader::new(file);
    r.schema()
        .map(|s| Schema::from_arrow_schema(s.as_ref()))
        .map_err(|e| format!("not a Parquet file: {e}"))
}

/// The Parquet dtype a field's `dtype` names.
fn polars_dtype(dtype: &str) -> Option<DataType> {
    Some(match dtype {
        "u32" => DataType::UInt32,
        "f64" => DataType::Float64,
        "bool" => DataType::Boolean,
        "str" => DataType::String,
        "datetime[µs]" => DataType::Datetime(TimeUnit::Microseconds, None),
        _ => return None,
    })
}

/// Every field present with its dtype.
fn check_columns(schema: &Schema, fields: &[Field]) -> Result<(), String> {
    for f in fields {
        let Some(want) = polars_dtype(f.dtype) else {
            continue;
        };
        match schema.get(f.name) {
            None => return Err(format!("column '{}' missing", f.name)),
            Some(got) if *got != want => {
                return Err(format!("column '{}' is {got}, not {}", f.name, f.dtype));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))
}

fn peer_protocol(peers: &Peers) -> Result<Option<Protocol>, String> {
    match peers.find(PROTOCOL) {
        None => Ok(None),
        Some(p) => Protocol::read(p)
            .map(Some)
            .map_err(|e| format!("its protocol input: {e}")),
    }
}

pub struct Series;

const SERIES_FIELDS: &[Field] = &[
    field("ar", "u32", true, "NOAA active-region number"),
    field(
        "tile",
        "u32",
        true,
        "flat tile index k = 9·row + column (0…80)",
    ),
    field("t", "u32", true, "hour index within the AR"),
    field("time", "datetime[µs]", true, "UTC time of the hour"),
    field("ic", "f64", true, "continuum intensity (scaled)"),
    field("flux", "f64", true, "unsigned magnetic flux (scaled)"),
    field("p23", "f64", true, "acoustic power, 2–3 mHz (scaled)"),
    field("p34", "f64", true, "acoustic power, 3–4 mHz (scaled)"),
    field("p45", "f64", true, "acoustic power, 4–5 mHz (scaled)"),
    field("p56", "f64", true, "acoustic power, 5–6 mHz (scaled)"),
];

impl Contract for Series {
    fn name(&self) -> &'static str {
        SERIES
    }
    fn doc(&self) -> &'static str {
        "A tidy series table: one row per (ar, tile, hour), ARs in split order, tiles 0…80 each"
    }
    fn format(&self) -> &'static str {
        "Parquet"
    }
    fn fields(&self) -> &'static [Field] {
        SERIES_FIELDS
    }
    fn check(&self, path: &Path, _peers: &Peers) -> Result<(), String> {
        check_columns(&parquet_schema(path)?, SERIES_FIELDS)
    }
}

pub struct Windows;

const WINDOWS_FIELDS: &[Field] = &[
    field(
        "x",
        "F32 (N, W, 5)",
        true,
        "inputs: W hours of [p23, p34, p45, p56, ic], scaled",
    ),
    field(
        "y",
        "F32 (N, P)",
        true,
        "targets: the next P hours of flux, scaled",
    ),
];

impl Contract for Windows {
    fn name(&self) -> &'static str {
        WINDOWS
    }
    fn doc(&self) -> &'static str {
        "Training or validation windows: N inputs of W hours and their P-hour flux targets"
    }
    fn format(&self) -> &'static str {
        "safetensors"
    }
    fn fields(&self) -> &'static [Field] {
        WINDOWS_FIELDS
    }
    fn check(&self, path: &Path, _peers: &Peers) -> Result<(), String> {
        // The header alone says names, dtypes and shapes; the file's length says whether the
        // data it promises is all there, without reading hundreds of MB.
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let len = f.metadata().map_err(|e| e.to_string())?.len();
        let mut n = [0u8; 8];
        f.read_exact(&mut n)
            .map_err(|_| "not a safetensors file (shorter than its header)".to_string())?;
        let n = u64::from_le_bytes(n);
        if n > 100 << 20 || 8 + n > len {
            return Err("not a safetensors file (header length out of range)".into());
        }
        let mut h = vec![0u8; n as usize];
        f.read_exact(&mut h).map_err(|e| e.to_string())?;
        let h: serde_json::Value =
            serde_json::from_slice(&h).map_err(|e| format!("safetensors header: {e}"))?;
        let tensor = |name: &str| -> Result<(Vec<u64>, u64), String> {
            let t = &h[name];
            if t.is_null() {
                return Err(format!("tensor '{name}' missing"));
            }
            if t["dtype"] != "F32" {
                return Err(format!("tensor '{name}' is {}, not F32", t["dtype"]));
            }
            let shape: Vec<u64> = t["shape"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d.as_u64()).collect())
                .unwrap_or_default();
            let end = t["data_offsets"][1].as_u64().unwrap_or(u64::MAX);
            Ok((shape, end))
        };
        let (xs, xe) = tensor("x")?;
        let (ys, ye) = tensor("y")?;
        if xs.len() != 3 || xs[2] != 5 {
            return Err(format!("tensor 'x' has shape {xs:?}, not (N, W, 5)"));
        }
        if ys.len() != 2 || ys[0] != xs[0] {
            return Err(format!(
                "tensor 'y' has shape {ys:?}, not (N, P) with N = {}",
                xs[0]
            ));
        }
        if 8 + n + xe.max(ye) > len {
            return Err("truncated: the data the header promises is not all there".into());
        }
        Ok(())
    }
}

pub struct ProtocolContract;

const PROTOCOL_FIELDS: &[Field] = &[
    field(
        "output_step",
        "int",
        true,
        "which of the P outputs is the prediction",
    ),
    field(
        "recalibrate",
        "bool",
        true,
        "one offset per tile so p[0] continues φ[lk]",
    ),
    field("metric_hours", "int", true, "length of the metric window"),
    field(
        "target_offset",
        "int",
        true,
        "0: targets start at the last input",
    ),
    field("horizon", "int", true, "P"),
    field("train_input", "int", true, "the training windows' W"),
    field(
        "ars",
        "list",
        true,
        "per test AR: ar, k0, tiles, input, history, trim, metric_start, t, windows, last_known, span, axis_len, times",
    ),
];

impl Contract for ProtocolContract {
    fn name(&self) -> &'static str {
        PROTOCOL
    }
    fn doc(&self) -> &'static str {
        "The test-time protocol: per test AR its geometry (tiles, input length, history, trims, metric window)"
    }
    fn format(&self) -> &'static str {
        "JSON"
    }
    fn fields(&self) -> &'static [Field] {
        PROTOCOL_FIELDS
    }
    fn check(&self, path: &Path, _peers: &Peers) -> Result<(), String> {
        let p = Protocol::read(path).map_err(|e| e.to_string())?;
        if p.ars.is_empty() {
            return Err("no test ARs".into());
        }
        Ok(())
    }
}

pub struct Predictions;

const PREDICTION_FIELDS: &[Field] = &[
    field(
        "predictor",
        "str",
        true,
        "the predictor's label (Table 2's row)",
    ),
    field("ar", "u32", true, "test AR"),
    field("k", "u32", true, "flat tile index"),
    field("tile", "u32", true, "paper tile number, k + 1"),
    field(
        "q",
        "u32",
        true,
        "plot position 0 … axis_len − 1, in order per tile",
    ),
    field("time", "datetime[µs]", true, "UTC time of plot position q"),
    field("observed", "f64", true, "observed flux at q (scaled)"),
    field(
        "predicted",
        "f64",
        false,
        "prediction at q (scaled, recalibrated if the protocol says so); null before the history ends",
    ),
    field(
        "predicted_raw",
        "f64",
        false,
        "the same before recalibration",
    ),
    field("observed_gauss", "f64", true, "observed flux in Gauss"),
    field("predicted_gauss", "f64", false, "prediction in Gauss"),
    field("in_span", "bool", true, "q lies in the scored span"),
    field(
        "in_metric",
        "bool",
        true,
        "q lies in the 72-h metric window",
    ),
];

impl Contract for Predictions {
    fn name(&self) -> &'static str {
        PREDICTIONS
    }
    fn doc(&self) -> &'static str {
        "A predictor's rolling test predictions: one row per (ar, tile, plot position), every protocol AR and scored tile, predictions non-null and finite from the first predicted position on"
    }
    fn format(&self) -> &'static str {
        "Parquet"
    }
    fn fields(&self) -> &'static [Field] {
        PREDICTION_FIELDS
    }
    fn check(&self, path: &Path, peers: &Peers) -> Result<(), String> {
        check_columns(&parquet_schema(path)?, PREDICTION_FIELDS)?;
        let Some(p) = peer_protocol(peers)? else {
            return Ok(());
        };
        let df = crate::table::read_parquet(path).map_err(|e| e.to_string())?;
        if df
            .column("predictor")
            .map_err(|e| e.to_string())?
            .null_count()
            > 0
        {
            return Err("column 'predictor' has nulls".into());
        }
        let (_, tiles) = crate::protocol::read_predictions(&df, &p)?;
        let want: BTreeSet<(u32, usize)> = p
            .ars
            .iter()
            .flat_map(|g| g.tiles.iter().map(move |&k| (g.ar, k)))
            .collect();
        let got: BTreeSet<(u32, usize)> = tiles.keys().copied().collect();
        if let Some((ar, k)) = want.difference(&got).next() {
            return Err(format!(
                "AR{ar} tile {} missing (the protocol scores it)",
                k + 1
            ));
        }
        if let Some((ar, k)) = got.difference(&want).next() {
            return Err(format!(
                "AR{ar} tile {} is not one the protocol scores",
                k + 1
            ));
        }
        for g in &p.ars {
            for &k in &g.tiles {
                let ts = &tiles[&(g.ar, k)];
                if ts.observed.len() != g.axis_len {
                    return Err(format!(
                        "AR{} tile {}: {} plot positions, the protocol has {}",
                        g.ar,
                        k + 1,
                        ts.observed.len(),
                        g.axis_len
                    ));
                }
                if let Some(j) = ts.predicted.iter().position(|v| !v.is_finite()) {
                    return Err(format!(
                        "AR{} tile {}: prediction at q = {} is not finite",
                        g.ar,
                        k + 1,
                        g.history + j
                    ));
                }
            }
        }
        Ok(())
    }
}

pub struct Summary;

const SUMMARY_FIELDS: &[Field] = &[
    field("predictor", "string", true, "label, as in the predictions"),
    field("kind", "string", true, "`model` or `baseline`"),
    field("model", "string", true, "architecture or method"),
    field("loss", "string", true, "`hybrid` / `MSE`, or empty"),
    field(
        "val_rmse",
        "number",
        true,
        "validation derivative RMSE (scaled)",
    ),
    field(
        "zero_slope_rmse",
        "number",
        true,
        "the zero-slope predictor's, for comparison",
    ),
    field(
        "collapsed",
        "bool",
        true,
        "whether it failed to beat zero slope",
    ),
    field("params", "object", true, "its training or method params"),
    field("param_count", "int or null", false, "trainable parameters"),
    field("epochs_run", "int or null", false, "epochs trained"),
    field(
        "mean_rmse_gauss",
        "object",
        true,
        "`AR<n>` → 7-tile mean RMSE over the metric window, Gauss, for every protocol AR",
    ),
];

impl Contract for Summary {
    fn name(&self) -> &'static str {
        SUMMARY
    }
    fn doc(&self) -> &'static str {
        "What Table 1, the figures and the report show of a predictor"
    }
    fn format(&self) -> &'static str {
        "JSON"
    }
    fn fields(&self) -> &'static [Field] {
        SUMMARY_FIELDS
    }
    fn check(&self, path: &Path, peers: &Peers) -> Result<(), String> {
        let s = PredictorSummary::read(path).map_err(|e| e.to_string())?;
        if s.predictor.trim().is_empty() {
            return Err("field 'predictor' is empty".into());
        }
        if let Some(p) = peer_protocol(peers)? {
            for g in &p.ars {
                match s.mean_rmse_gauss.get(&format!("AR{}", g.ar)) {
                    None => {
                        return Err(format!("field 'mean_rmse_gauss' has no AR{}", g.ar));
                    }
                    Some(x) if !x.is_finite() => {
                        return Err(format!("field 'mean_rmse_gauss': AR{} is {x}", g.ar));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
    fn metrics(&self, path: &Path) -> Vec<Metric> {
        crate::protocol::summary_contract_metrics(path)
    }
}

pub struct ModelConfig;

const MODEL_CONFIG_FIELDS: &[Field] = &[
    field("params", "object", true, "the training params"),
    field(
        "architecture",
        "object",
        true,
        "what `predict` rebuilds the model from",
    ),
    field("param_count", "int", true, "trainable parameters"),
    field("epochs_run", "int", true, "epochs trained"),
    field(
        "val_rmse",
        "number",
        false,
        "last validation derivative RMSE (null if not finite)",
    ),
    field(
        "zero_slope_rmse",
        "number",
        false,
        "the zero-slope predictor's",
    ),
    field(
        "collapsed",
        "bool",
        true,
        "whether it failed to beat zero slope",
    ),
];

impl Contract for ModelConfig {
    fn name(&self) -> &'static str {
        MODEL_CONFIG
    }
    fn doc(&self) -> &'static str {
        "A trained model's configuration and training outcome (train's model.json)"
    }
    fn format(&self) -> &'static str {
        "JSON"
    }
    fn fields(&self) -> &'static [Field] {
        MODEL_CONFIG_FIELDS
    }
    fn check(&self, path: &Path, _peers: &Peers) -> Result<(), String> {
        let v = read_json(path)?;
        for f in MODEL_CONFIG_FIELDS {
            let x = &v[f.name];
            let ok = match f.dtype {
                "object" => x.is_object(),
                "int" => x.is_u64() || x.is_i64(),
                "number" => x.is_number(),
                "bool" => x.is_boolean(),
                _ => true,
            };
            if x.is_null() {
                if f.required {
                    return Err(format!("field '{}' missing", f.name));
                }
                continue;
            }
            if !ok {
                return Err(format!("field '{}' is not {}", f.name, f.dtype));
            }
        }
        Ok(())
    }
}
