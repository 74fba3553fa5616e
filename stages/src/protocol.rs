//! The study's test-time protocol (docs/src/semantics.md §5, §8): per test AR a 9-tile slice whose local
//! tiles 1…7 are scored, the input length, the history shown before the predictions, the end
//! trim and the 72-h metric window; the plot axis that pairs observed and predicted flux; the
//! per-tile recalibration; and the metrics in Gauss. The per-AR table is data in pipeline.yaml
//! (`test_protocol` stage); this module only derives what follows from it.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kind::{Context, InputSlot, OutputSlot, ParamError, Report, StageError, TypedKind};
use crate::scale::Scaler;
use crate::solared::TILES;
use crate::solared::time::format_micros;
use crate::table::{self, FEATURES, FLUX, SeriesTable};

/// One row of the per-AR protocol table.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestAr {
    /// The AR number.
    pub ar: u32,
    /// Flat index of local tile 0 of the AR's 9-tile slice.
    pub k0: usize,
    /// Input length W (hours) of the test windows.
    pub input: usize,
    /// Observed hours shown before the first prediction (bp).
    pub history: usize,
    /// Predictions dropped at the end (e ≤ 0).
    pub trim: i64,
    /// First plot position of the metric window (ws).
    pub metric_start: usize,
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolParams {
    /// The study's test table, one row per test AR: `ar`, `k0` (flat index of local tile 0 of
    /// its 9-tile slice), `input` (W), `history` (bp), `trim` (e ≤ 0), `metric_start` (ws).
    pub ars: Vec<TestAr>,
    /// Local index of the first scored tile of a slice.
    pub first_scored: usize,
    /// Scored tiles per AR.
    pub scored: usize,
    /// Which output step of a prediction is used (0-based; 11 = the last of 12).
    pub output_step: usize,
    /// Shift each tile's predictions by one constant so the first one continues the last known
    /// flux (published code); derivatives and alarms are unaffected.
    pub recalibrate: bool,
    /// Hours in the metric window.
    pub metric_hours: usize,
    /// Derive the row of every test AR not listed in `ars` from its data by this rule (k-fold
    /// cross-validation, where the test ARs change with the fold).
    pub derive: Option<DeriveRule>,
}

/// The documented rule that gives a test AR its geometry from its data (docs/src/guide/evaluation.md, "Cross-
/// validation"). Input, history and the end trim are the study's values for its three 2022–23
/// test ARs; the slice is the grid row whose scored tiles show the most observed emergences,
/// which is how the study's rows differ from the central row (docs/src/semantics.md §5).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeriveRule {
    /// Input length W (hours) of the test windows.
    pub input: usize,
    /// Observed hours shown before the first prediction (capped at the last known index).
    pub history: usize,
    /// Predictions dropped at the end; the predictions also stop before the first time gap
    /// (> 1.5 h), so array index = hour holds over the scored span.
    pub end_trim: usize,
    /// Start of the metric window, in hours after the first prediction.
    pub metric_offset: usize,
}

impl Default for DeriveRule {
    fn default() -> Self {
        DeriveRule {
            input: 96,
            history: 40,
            end_trim: 12,
            metric_offset: 0,
        }
    }
}

/// A derived row and why its slice is the one it is.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedRow {
    pub row: TestAr,
    /// Grid row of the slice and how many of its scored tiles emerge (observed).
    pub grid_row: usize,
    pub emerging: usize,
}

/// Derives AR `ar`'s protocol row by `rule` from its timestamps and its scaled flux per flat
/// tile (`flux(k)`): W, history and metric window as the rule says; the span cut by the end trim
/// and before the first time gap; the slice `k0 = 9r + 1` (scored columns 2–8, as every study
/// row) of the grid row r in 1…7 whose scored tiles show the most observed emergences under
/// the study's criterion (threshold 0.01, smoothing 5, sustain 4), ties going to the row
/// nearest the centre, then the lower one. Rows 0 and 8 are identically zero.
pub fn derive_row<'a>(
    ar: u32,
    rule: &DeriveRule,
    p: &ProtocolParams,
    times: &[i64],
    flux: impl Fn(usize) -> &'a [f64],
    target_offset: usize,
    horizon: usize,
) -> Result<DerivedRow, String> {
    let t = times.len();
    let fail = |msg: String| format!("AR{ar} (T={t}): cannot derive its protocol row: {msg}");
    let lk = last_known(rule.input, target_offset, p.output_step)
        .ok_or_else(|| fail("input 1 with output step 0 has no last known hour".into()))?;
    let windows = (t + 1)
        .checked_sub(rule.input - 1 + target_offset + horizon)
        .filter(|&w| w > rule.end_trim)
        .ok_or_else(|| fail(format!("input {} leaves no prediction", rule.input)))?;
    use crate::solared::time::HOUR;
    let gap = times.windows(2).position(|w| w[1] - w[0] > HOUR * 3 / 2);
    let mut span = windows - rule.end_trim;
    if let Some(i) = gap {
        // Prediction k targets index lk + 1 + k, which must not lie past the gap.
        span = span.min(i.saturating_sub(lk));
    }
    let history = rule.history.min(lk);
    let metric_start = history + rule.metric_offset;
    if span == 0 || metric_start + p.metric_hours > history + span {
        return Err(fail(format!(
            "{span} predictions before the end trim and the first time gap leave no {}-h metric              window",
            p.metric_hours
        )));
    }
    let c = crate::emergence::Criterion::default();
    let emerging = |r: usize| {
        let k0 = crate::solared::GRID * r + 1;
        (k0 + p.first_scored..k0 + p.first_scored + p.scored)
            .filter(|&k| k < TILES)
            .filter(|&k| {
                let phi = flux(k);
                let o: Vec<f64> = (0..history + span)
                    .map(|q| phi[observed_index(lk, history, q)])
                    .collect();
                c.first(&o).is_some()
            })
            .count()
    };
    let centre = crate::solared::GRID / 2;
    let (grid_row, n) = (1..crate::solared::GRID - 1)
        .filter(|r| crate::solared::GRID * r + 1 + p.first_scored + p.scored <= TILES)
        .map(|r| (r, emerging(r)))
        .max_by_key(|&(r, n)| {
            (
                n,
                std::cmp::Reverse(r.abs_diff(centre)),
                std::cmp::Reverse(r),
            )
        })
        .ok_or_else(|| fail("no grid row holds the scored tiles".into()))?;
    Ok(DerivedRow {
        row: TestAr {
            ar,
            k0: crate::solared::GRID * grid_row + 1,
            input: rule.input,
            history,
            trim: span as i64 - windows as i64,
            metric_start,
        },
        grid_row,
        emerging: n,
    })
}

impl Default for ProtocolParams {
    fn default() -> Self {
        ProtocolParams {
            ars: Vec::new(),
            first_scored: 1,
            scored: 7,
            output_step: 11,
            recalibrate: true,
            metric_hours: 72,
            derive: None,
        }
    }
}

/// Everything the protocol fixes for one test AR, derived and checked against the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArGeometry {
    pub ar: u32,
    pub k0: usize,
    /// Scored flat tile indices k (paper tile = k + 1).
    pub tiles: Vec<usize>,
    pub input: usize,
    pub history: usize,
    pub trim: i64,
    pub metric_start: usize,
    /// Series length T.
    pub t: usize,
    /// Test windows per tile.
    pub windows: usize,
    /// Last known index lk: window 0's used output targets φ[lk + 1].
    pub last_known: usize,
    /// Predictions kept after the trim (L).
    pub span: usize,
    /// Plot positions: history + windows (the span ends at history + span).
    pub axis_len: usize,
    pub axis_start: String,
    pub first_prediction_at: String,
    pub metric_window: [String; 2],
}

/// Index into the series of plot position q, for last known index `lk` and `history` hours
/// shown before the first prediction.
pub fn axis_index(lk: usize, history: usize, q: usize) -> usize {
    lk - history + q
}

/// Index into the series of the observed value at plot position q (φ[lk] is skipped: o and p at
/// the same q share a target).
pub fn observed_index(lk: usize, history: usize, q: usize) -> usize {
    if q < history {
        lk - history + q
    } else {
        lk + 1 + (q - history)
    }
}

impl ArGeometry {
    /// Index into the series of plot position q.
    pub fn time_index(&self, q: usize) -> usize {
        axis_index(self.last_known, self.history, q)
    }
    /// Index into the series of the observed value at plot position q.
    pub fn observed_index(&self, q: usize) -> usize {
        observed_index(self.last_known, self.history, q)
    }
    pub fn metric_range(&self, hours: usize) -> std::ops::Range<usize> {
        self.metric_start..self.metric_start + hours
    }
}

/// The resolved protocol, written as `protocol.json` and read by `predict`, `baseline`,
/// `score_alarms` and the renderers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Protocol {
    pub output_step: usize,
    pub recalibrate: bool,
    pub metric_hours: usize,
    /// From the training windows: 0 = the target starts at the last input (published code).
    pub target_offset: usize,
    pub horizon: usize,
    pub train_input: usize,
    pub ars: Vec<ArGeometry>,
}

impl Protocol {
    pub fn read(path: &std::path::Path) -> Result<Protocol, StageError> {
        let text = std::fs::read_to_string(path).map_err(|e| StageError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| StageError::table(path, e))
    }

    /// The test windows' inputs of tile `k` of `b`: (windows, W, 5) row-major, f32.
    pub fn inputs(&self, g: &ArGeometry, series: &SeriesTable, k: usize) -> Vec<f32> {
        let b = series
            .block(g.ar)
            .expect("checked when the protocol was resolved");
        window_inputs(b, k, g.input, 0..g.windows)
    }
}

/// The inputs of the windows starting at `starts` of tile `k`: (windows, W, 5) row-major, f32,
/// features in the study's order. The test protocol and the forecast both cut windows here, so
/// a forecast feeds the model exactly the numbers `predict` does.
pub fn window_inputs(
    b: &crate::table::ArBlock,
    k: usize,
    input: usize,
    starts: std::ops::Range<usize>,
) -> Vec<f32> {
    let n = b.len();
    let feats: Vec<&[f64]> = FEATURES
        .iter()
        .map(|&c| &b.values[c][k * n..(k + 1) * n])
        .collect();
    let mut x = Vec::with_capacity(starts.len() * input * feats.len());
    for j in starts {
        for s in j..j + input {
            x.extend(feats.iter().map(|f| f[s] as f32));
        }
    }
    x
}

/// Observed and predicted series of one tile on the plot axis.
#[derive(Debug, Clone, PartialEq)]
pub struct TileSeries {
    pub ar: u32,
    pub k: usize,
    /// Observed scaled flux o[q], q = 0 … axis_len − 1.
    pub observed: Vec<f64>,
    /// Predictions at q = history + j, j = 0 … windows − 1, recalibrated if the protocol says so.
    pub predicted: Vec<f64>,
    /// The same before recalibration.
    pub raw: Vec<f64>,
}

impl TileSeries {
    /// `yhat[j]`: the used output of test window j (scaled units).
    pub fn new(p: &Protocol, g: &ArGeometry, phi: &[f64], k: usize, yhat: Vec<f64>) -> TileSeries {
        let observed = (0..g.axis_len).map(|q| phi[g.observed_index(q)]).collect();
        let offset = if p.recalibrate && !yhat.is_empty() {
            phi[g.last_known] - yhat[0]
        } else {
            0.0
        };
        TileSeries {
            ar: g.ar,
            k,
            observed,
            predicted: yhat.iter().map(|v| v + offset).collect(),
            raw: yhat,
        }
    }

    /// The observed series over the scored span (history + trimmed predictions).
    pub fn observed_span(&self, g: &ArGeometry) -> &[f64] {
        &self.observed[..g.history + g.span]
    }

    pub fn predicted_span(&self, g: &ArGeometry) -> &[f64] {
        &self.predicted[..g.span]
    }
}

/// The scaled flux of tile `k` of AR `ar`.
pub fn flux(series: &SeriesTable, ar: u32, k: usize) -> &[f64] {
    let b = series
        .block(ar)
        .expect("checked when the protocol was resolved");
    let n = b.len();
    &series.channel(b, FLUX)[k * n..(k + 1) * n]
}

/// The tidy predictions table of one predictor: one row per (ar, tile, plot position).
pub fn predictions_frame(
    predictor: &str,
    p: &Protocol,
    series: &SeriesTable,
    scaler: &Scaler,
    tiles: &[TileSeries],
) -> PolarsResult<DataFrame> {
    let pair = scaler.pair(FLUX);
    let mut c = PredCols::default();
    for ts in tiles {
        let g = p.ars.iter().find(|g| g.ar == ts.ar).expect("a protocol AR");
        let b = series.block(g.ar).expect("a test AR");
        for q in 0..g.axis_len {
            let pred = q.checked_sub(g.history).map(|j| ts.predicted[j]);
            c.ar.push(g.ar);
            c.k.push(ts.k as u32);
            c.tile.push(ts.k as u32 + 1);
            c.q.push(q as u32);
            c.time.push(b.times[g.time_index(q)]);
            c.observed.push(ts.observed[q]);
            c.predicted.push(pred);
            c.raw.push(q.checked_sub(g.history).map(|j| ts.raw[j]));
            c.observed_gauss.push(pair.invert(ts.observed[q]));
            c.predicted_gauss.push(pred.map(|v| pair.invert(v)));
            c.in_span.push(q < g.history + g.span);
            c.in_metric
                .push(g.metric_range(p.metric_hours).contains(&q));
        }
    }
    let n = c.ar.len();
    DataFrame::new(
        n,
        vec![
            Column::new("predictor".into(), vec![predictor; n]),
            Column::new("ar".into(), c.ar),
            Column::new("k".into(), c.k),
            Column::new("tile".into(), c.tile),
            Column::new("q".into(), c.q),
            Column::new("time".into(), c.time)
                .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?,
            Column::new("observed".into(), c.observed),
            Column::new("predicted".into(), c.predicted),
            Column::new("predicted_raw".into(), c.raw),
            Column::new("observed_gauss".into(), c.observed_gauss),
            Column::new("predicted_gauss".into(), c.predicted_gauss),
            Column::new("in_span".into(), c.in_span),
            Column::new("in_metric".into(), c.in_metric),
        ],
    )
}

#[derive(Default)]
struct PredCols {
    ar: Vec<u32>,
    k: Vec<u32>,
    tile: Vec<u32>,
    q: Vec<u32>,
    time: Vec<i64>,
    observed: Vec<f64>,
    predicted: Vec<Option<f64>>,
    raw: Vec<Option<f64>>,
    observed_gauss: Vec<f64>,
    predicted_gauss: Vec<Option<f64>>,
    in_span: Vec<bool>,
    in_metric: Vec<bool>,
}

/// Per-tile series keyed by (ar, k).
pub type Tiles = BTreeMap<(u32, usize), TileSeries>;

/// Reads a predictions table back into per-tile series, keyed by (ar, k).
pub fn read_predictions(df: &DataFrame, p: &Protocol) -> Result<(String, Tiles), String> {
    let col = |n: &str| df.column(n).map_err(|_| format!("column `{n}` is missing"));
    let predictor = col("predictor")?
        .str()
        .map_err(|e| e.to_string())?
        .get(0)
        .unwrap_or_default()
        .to_string();
    let ar = col("ar")?.u32().map_err(|e| e.to_string())?.clone();
    let k = col("k")?.u32().map_err(|e| e.to_string())?.clone();
    let q = col("q")?.u32().map_err(|e| e.to_string())?.clone();
    let obs = col("observed")?.f64().map_err(|e| e.to_string())?.clone();
    let pred = col("predicted")?.f64().map_err(|e| e.to_string())?.clone();
    let raw = col("predicted_raw")?
        .f64()
        .map_err(|e| e.to_string())?
        .clone();
    let mut out: BTreeMap<(u32, usize), TileSeries> = BTreeMap::new();
    for i in 0..df.height() {
        let (a, kk, qq) = (
            ar.get(i).ok_or("null ar")?,
            k.get(i).ok_or("null k")? as usize,
            q.get(i).ok_or("null q")? as usize,
        );
        let g = p
            .ars
            .iter()
            .find(|g| g.ar == a)
            .ok_or_else(|| format!("AR{a} is not in the test protocol"))?;
        let ts = out.entry((a, kk)).or_insert_with(|| TileSeries {
            ar: a,
            k: kk,
            observed: Vec::new(),
            predicted: Vec::new(),
            raw: Vec::new(),
        });
        if qq != ts.observed.len() {
            return Err(format!("AR{a} tile {kk}: rows are not in plot order"));
        }
        ts.observed.push(obs.get(i).ok_or("null observed")?);
        if qq >= g.history {
            ts.predicted.push(pred.get(i).ok_or("null prediction")?);
            ts.raw.push(raw.get(i).ok_or("null prediction")?);
        }
    }
    for g in &p.ars {
        for &kk in &g.tiles {
            let ts = out
                .get(&(g.ar, kk))
                .ok_or_else(|| format!("AR{} tile {} is missing", g.ar, kk + 1))?;
            if ts.observed.len() != g.axis_len {
                return Err(format!(
                    "AR{} tile {}: {} plot positions, the protocol has {}",
                    g.ar,
                    kk + 1,
                    ts.observed.len(),
                    g.axis_len
                ));
            }
        }
    }
    Ok((predictor, out))
}

/// MAE, RMSE and R² between observed and predicted Gauss values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    pub mae: f64,
    pub rmse: f64,
    pub r2: f64,
}

pub fn scores(o: &[f64], p: &[f64]) -> Scores {
    let n = o.len() as f64;
    let mean = o.iter().sum::<f64>() / n;
    let sse: f64 = o.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum();
    let sst: f64 = o.iter().map(|a| (a - mean).powi(2)).sum();
    Scores {
        mae: o.iter().zip(p).map(|(a, b)| (a - b).abs()).sum::<f64>() / n,
        rmse: (sse / n).sqrt(),
        r2: 1.0 - sse / sst,
    }
}

/// One tile's scores in Gauss over its AR's metric window.
pub fn metric_window_scores(
    p: &Protocol,
    g: &ArGeometry,
    ts: &TileSeries,
    pair: crate::scale::Range,
) -> Scores {
    let r = g.metric_range(p.metric_hours);
    let o: Vec<f64> = r.clone().map(|q| pair.invert(ts.observed[q])).collect();
    let pr: Vec<f64> = r
        .map(|q| pair.invert(ts.predicted[q - g.history]))
        .collect();
    scores(&o, &pr)
}

/// Per-tile and per-AR (plain mean of the tiles) metrics in Gauss, over the 72-h metric window
/// (`metric72`, the paper's) and over the whole prediction span (`span`, a later version of the
/// published code).
pub fn metrics_frame(
    predictor: &str,
    p: &Protocol,
    scaler: &Scaler,
    tiles: &BTreeMap<(u32, usize), TileSeries>,
) -> PolarsResult<DataFrame> {
    let pair = scaler.pair(FLUX);
    let (mut ar, mut tile, mut window) = (Vec::new(), Vec::<Option<u32>>::new(), Vec::new());
    let (mut mae, mut rmse, mut r2) = (Vec::new(), Vec::new(), Vec::new());
    for g in &p.ars {
        for (name, range) in [
            ("metric72", g.metric_range(p.metric_hours)),
            ("span", g.history..g.history + g.span),
        ] {
            let mut per = Vec::new();
            for &k in &g.tiles {
                let ts = &tiles[&(g.ar, k)];
                let o: Vec<f64> = range.clone().map(|q| pair.invert(ts.observed[q])).collect();
                let pr: Vec<f64> = range
                    .clone()
                    .map(|q| pair.invert(ts.predicted[q - g.history]))
                    .collect();
                let s = scores(&o, &pr);
                per.push(s);
                ar.push(g.ar);
                tile.push(Some(k as u32 + 1));
                window.push(name);
                mae.push(s.mae);
                rmse.push(s.rmse);
                r2.push(s.r2);
            }
            let m = |f: fn(&Scores) -> f64| per.iter().map(f).sum::<f64>() / per.len() as f64;
            ar.push(g.ar);
            tile.push(None);
            window.push(name);
            mae.push(m(|s| s.mae));
            rmse.push(m(|s| s.rmse));
            r2.push(m(|s| s.r2));
        }
    }
    let n = ar.len();
    DataFrame::new(
        n,
        vec![
            Column::new("predictor".into(), vec![predictor; n]),
            Column::new("ar".into(), ar),
            Column::new("tile".into(), tile),
            Column::new("window".into(), window),
            Column::new("mae_gauss".into(), mae),
            Column::new("rmse_gauss".into(), rmse),
            Column::new("r2".into(), r2),
        ],
    )
}

/// Markdown of the per-AR rows of a metrics frame.
pub fn metrics_markdown(df: &DataFrame) -> String {
    let get = |n: &str| df.column(n).ok().cloned();
    let (Some(ar), Some(tile), Some(win), Some(mae), Some(rmse), Some(r2)) = (
        get("ar"),
        get("tile"),
        get("window"),
        get("mae_gauss"),
        get("rmse_gauss"),
        get("r2"),
    ) else {
        return String::new();
    };
    let mut rows = Vec::new();
    for i in 0..df.height() {
        if !tile.get(i).map(|v| v.is_null()).unwrap_or(false) {
            continue;
        }
        let f = |c: &Column| {
            c.get(i)
                .ok()
                .and_then(|v| v.extract::<f64>())
                .unwrap_or(f64::NAN)
        };
        rows.push(vec![
            format!("AR{}", ar.get(i).map(|v| v.to_string()).unwrap_or_default()),
            win.get(i)
                .map(|v| v.get_str().unwrap_or_default().to_string())
                .unwrap_or_default(),
            format!("{:.1}", f(&mae)),
            format!("{:.1}", f(&rmse)),
            format!("{:.3}", f(&r2)),
        ]);
    }
    table::markdown(
        &["AR", "window", "MAE (G)", "RMSE (G)", "R² (7-tile mean)"],
        &rows,
    )
}

pub struct TestProtocol;

impl TypedKind for TestProtocol {
    const CONTRACTS: &'static [(&'static str, &'static str)] =
        &[("protocol", crate::contract_names::PROTOCOL)];
    type Params = ProtocolParams;
    const NAME: &'static str = "test_protocol";
    const VERSION: u32 = 1;
    const DOC: &'static str = "The test-time protocol per test AR (tile slice, input length, \
        history, end trim, metric window), checked against the scaled test series and the \
        training windows' target alignment, written as protocol.json for predict and scoring.";
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "test",
            doc: "scaled test series (scale.test)",
        },
        InputSlot {
            name: "index",
            doc: "the training window index (window.index): target alignment and horizon",
        },
    ];
    const OUTPUTS: &'static [OutputSlot] = &[
        OutputSlot {
            name: "protocol",
            file: "protocol.json",
            doc: "the resolved per-AR geometry",
        },
        OutputSlot {
            name: "protocol_md",
            file: "protocol.md",
            doc: "the same as a Markdown table",
        },
    ];

    /// `derive` enters the key only when given, so listed-only protocols keep the keys they
    /// had before derivation existed.
    fn key_params(p: &ProtocolParams) -> serde_json::Value {
        let mut v = serde_json::to_value(p).expect("params serialise");
        if p.derive.is_none()
            && let Some(m) = v.as_object_mut()
        {
            m.remove("derive");
        }
        v
    }

    fn check(p: &ProtocolParams) -> Result<(), ParamError> {
        let bad = |name: &str, msg: String| {
            Err(ParamError::Invalid {
                name: name.into(),
                msg,
            })
        };
        if p.ars.is_empty() && p.derive.is_none() {
            return bad(
                "ars",
                "list at least one test AR, or give `derive:` to derive every test AR's row".into(),
            );
        }
        if let Some(d) = &p.derive
            && d.input == 0
        {
            return bad("derive", "input must be at least 1".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &p.ars {
            if !seen.insert(a.ar) {
                return bad("ars", format!("AR{} is listed twice", a.ar));
            }
            if a.input == 0 {
                return bad("ars", format!("AR{}: input must be at least 1", a.ar));
            }
            if a.trim > 0 {
                return bad("ars", format!("AR{}: trim must be ≤ 0", a.ar));
            }
            if a.k0 + p.first_scored + p.scored > TILES {
                return bad(
                    "ars",
                    format!("AR{}: the scored tiles run past tile {TILES}", a.ar),
                );
            }
        }
        if p.scored == 0 {
            return bad("scored", "must be at least 1".into());
        }
        if p.metric_hours == 0 {
            return bad("metric_hours", "must be at least 1".into());
        }
        Ok(())
    }

    fn run(p: &ProtocolParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let series = SeriesTable::read(ctx.input("test")?)?;
        let index_path = ctx.input("index")?;
        let (target_offset, horizon, train_input) = window_geometry(index_path)?;
        if p.output_step >= horizon {
            return Err(StageError::Invalid(format!(
                "output_step {} is past the horizon of the training windows ({horizon})",
                p.output_step
            )));
        }
        let mut proto = Protocol {
            output_step: p.output_step,
            recalibrate: p.recalibrate,
            metric_hours: p.metric_hours,
            target_offset,
            horizon,
            train_input,
            ars: Vec::new(),
        };
        for a in &p.ars {
            let b = series.block(a.ar).ok_or_else(|| {
                StageError::Invalid(format!(
                    "AR{} is in the test protocol but not among the test ARs of the split ({})",
                    a.ar,
                    series
                        .blocks
                        .iter()
                        .map(|b| b.ar.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            proto.ars.push(
                resolve(a, p, &b.times, target_offset, horizon).map_err(StageError::Invalid)?,
            );
        }
        let mut derived = Vec::new();
        if let Some(rule) = &p.derive {
            for b in &series.blocks {
                if p.ars.iter().any(|a| a.ar == b.ar) {
                    continue;
                }
                let n = b.len();
                let flux = series.channel(b, FLUX);
                let d = derive_row(
                    b.ar,
                    rule,
                    p,
                    &b.times,
                    |k| &flux[k * n..(k + 1) * n],
                    target_offset,
                    horizon,
                )
                .map_err(StageError::Invalid)?;
                proto.ars.push(
                    resolve(&d.row, p, &b.times, target_offset, horizon)
                        .map_err(StageError::Invalid)?,
                );
                derived.push(json!({
                    "ar": b.ar, "grid_row": d.grid_row, "emerging_tiles": d.emerging,
                }));
            }
        }
        let path = ctx.output("protocol.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&proto).expect("serialises") + "\n",
        )
        .map_err(|e| StageError::io(&path, e))?;
        let md = protocol_markdown(&proto);
        let mdp = ctx.output("protocol.md");
        std::fs::write(&mdp, &md).map_err(|e| StageError::io(&mdp, e))?;
        let mut facts = json!({ "ars": proto.ars.iter().map(|g| g.ar).collect::<Vec<_>>() });
        if p.derive.is_some() {
            facts["derived"] = json!(derived);
        }
        Ok(Report {
            summary: format!(
                "{} test ARs, {} scored tiles each, output step {} (target offset {})",
                proto.ars.len(),
                p.scored,
                p.output_step,
                target_offset
            ),
            stdout: None,
            facts,
        })
    }
}

/// The geometry of one protocol row on a series with timestamps `times`, checked: the test
/// windows with a full horizon of targets (cut as the training windows are), the last known
/// index, the trimmed span and the metric window. `forecast` resolves its replays here too.
pub fn resolve(
    a: &TestAr,
    p: &ProtocolParams,
    times: &[i64],
    target_offset: usize,
    horizon: usize,
) -> Result<ArGeometry, String> {
    let t = times.len();
    let fail = |msg: String| format!("AR{} (T={t}): {msg}", a.ar);
    let spans = a.input - 1 + target_offset + horizon;
    let windows = (t + 1)
        .checked_sub(spans)
        .filter(|&w| w > 0)
        .ok_or_else(|| {
            fail(format!(
                "input {} + horizon {horizon} do not fit the series",
                a.input
            ))
        })?;
    let last_known = last_known(a.input, target_offset, p.output_step)
        .ok_or_else(|| fail("input 1 with output step 0 has no last known hour".into()))?;
    let span = (windows as i64 + a.trim).max(0) as usize;
    if span == 0 {
        return Err(fail(format!(
            "trim {} leaves no prediction of {windows}",
            a.trim
        )));
    }
    if a.history > last_known {
        return Err(fail(format!(
            "history {} reaches before the first hour (last known index {last_known})",
            a.history
        )));
    }
    if a.metric_start + p.metric_hours > a.history + span {
        return Err(fail(format!(
            "the metric window {}…{} runs past the scored span (ends at {})",
            a.metric_start,
            a.metric_start + p.metric_hours,
            a.history + span
        )));
    }
    if a.metric_start < a.history {
        return Err(fail(format!(
            "the metric window starts at {} inside the history ({})",
            a.metric_start, a.history
        )));
    }
    let tiles: Vec<usize> = (a.k0 + p.first_scored..a.k0 + p.first_scored + p.scored).collect();
    let at = |q: usize| format_micros(times[last_known - a.history + q]);
    Ok(ArGeometry {
        ar: a.ar,
        k0: a.k0,
        tiles,
        input: a.input,
        history: a.history,
        trim: a.trim,
        metric_start: a.metric_start,
        t,
        windows,
        last_known,
        span,
        axis_len: a.history + windows,
        axis_start: at(0),
        first_prediction_at: at(a.history),
        metric_window: [at(a.metric_start), at(a.metric_start + p.metric_hours)],
    })
}

/// The last known index lk: window 0's used output (`output_step`) targets lk + 1, and a
/// prediction is placed on the plot axis at lk + j, one hour before its target.
pub fn last_known(input: usize, target_offset: usize, output_step: usize) -> Option<usize> {
    (input + target_offset + output_step).checked_sub(2)
}

/// (target_offset, horizon, input width) of the training windows, from `window.index`.
fn window_geometry(path: &std::path::Path) -> Result<(usize, usize, usize), StageError> {
    let df = table::read_parquet(path)?;
    let first = |n: &str| -> Result<u32, StageError> {
        df.column(n)
            .and_then(|c| c.u32().map(|c| c.get(0)))
            .ok()
            .flatten()
            .ok_or_else(|| {
                StageError::table(
                    path,
                    format!("column `{n}` is missing (rerun the window stage)"),
                )
            })
    };
    let (start, last, target, horizon) = (
        first("start")?,
        first("last_input")?,
        first("target_start")?,
        first("horizon")?,
    );
    Ok((
        (target - last) as usize,
        horizon as usize,
        (last - start + 1) as usize,
    ))
}

pub fn protocol_markdown(p: &Protocol) -> String {
    let rows: Vec<Vec<String>> = p
        .ars
        .iter()
        .map(|g| {
            vec![
                format!("AR{}", g.ar),
                g.k0.to_string(),
                format!(
                    "{}–{}",
                    g.tiles[0] + 1,
                    g.tiles.last().copied().unwrap_or(0) + 1
                ),
                format!(
                    "r{}, c{}–{}",
                    g.k0 / 9,
                    g.tiles[0] % 9,
                    g.tiles.last().unwrap_or(&0) % 9
                ),
                g.input.to_string(),
                g.history.to_string(),
                g.trim.to_string(),
                g.metric_start.to_string(),
                g.windows.to_string(),
                g.last_known.to_string(),
                g.span.to_string(),
                g.t.to_string(),
                g.first_prediction_at.clone(),
                format!("{} → {}", g.metric_window[0], g.metric_window[1]),
            ]
        })
        .collect();
    table::markdown(
        &[
            "AR",
            "k0",
            "paper tiles",
            "row, cols",
            "W",
            "bp",
            "e",
            "ws",
            "nwin",
            "lk",
            "L",
            "T",
            "first prediction plotted at",
            "metric window",
        ],
        &rows,
    )
}

/// Input slots the results stages share.
pub const PROTOCOL_SLOT: InputSlot = InputSlot {
    name: "protocol",
    doc: "the test protocol (test_protocol.protocol)",
};
pub const TEST_SLOT: InputSlot = InputSlot {
    name: "test",
    doc: "scaled test series (scale.test)",
};
pub const SCALER_SLOT: InputSlot = InputSlot {
    name: "scaler",
    doc: "the fitted scaler (scale.scaler), to report Gauss",
};

/// The outputs every predictor stage (`predict`, `baseline`) writes, so that scoring and
/// rendering treat models and reference predictors alike.
/// What `compare` shows of a predictor (a model's or a baseline's): the mean RMSE per test AR, in
/// Gauss, from its summary.
pub fn predictor_metrics(run: &crate::kind::Finished<'_>) -> Vec<crate::kind::Metric> {
    run.outputs
        .get("summary")
        .map_or_else(Vec::new, |path| summary_metrics(path))
}

/// The same, from the path of a `summary.json` (what its contract shows in `compare`).
pub fn summary_metrics(path: &std::path::Path) -> Vec<crate::kind::Metric> {
    let Some(v) = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
    else {
        return Vec::new();
    };
    let Some(map) = v["mean_rmse_gauss"].as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(ar, x)| {
            x.as_f64().map(|x| {
                crate::kind::Metric::summary(format!("{ar} mean RMSE (G)"), format!("{x:.1}"))
            })
        })
        .collect()
}

/// What a `magpipe.summary/1` file says in `compare` for a stage whose kind says nothing (a
/// command stage): the per-AR test RMSE, and a model's validation derivative RMSE under the
/// name `train` gives it.
pub fn summary_contract_metrics(path: &std::path::Path) -> Vec<crate::kind::Metric> {
    let mut out = summary_metrics(path);
    let Some(v) = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
    else {
        return out;
    };
    if v["kind"] == "model"
        && let Some(rmse) = v["val_rmse"].as_f64()
    {
        let collapsed = v["collapsed"].as_bool() == Some(true);
        out.insert(
            0,
            crate::kind::Metric::summary(
                "val derivative RMSE",
                format!("{rmse:.4e}{}", if collapsed { " (COLLAPSED)" } else { "" }),
            ),
        );
    }
    out
}

pub const PREDICTOR_OUTPUTS: &[OutputSlot] = &[
    OutputSlot {
        name: "predictions",
        file: "predictions.parquet",
        doc: "per (ar, tile, plot position): time, observed and predicted flux, scaled and Gauss",
    },
    OutputSlot {
        name: "metrics",
        file: "metrics.parquet",
        doc: "MAE, RMSE, R² in Gauss per tile and per AR (7-tile mean), metric window and span",
    },
    OutputSlot {
        name: "metrics_md",
        file: "metrics.md",
        doc: "the per-AR metrics as Markdown",
    },
    OutputSlot {
        name: "summary",
        file: "summary.json",
        doc: "the predictor's label, kind, configuration and validation derivative RMSE",
    },
];

/// What `summary.json` holds; Table 1 and the figures read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorSummary {
    pub predictor: String,
    /// `model` or `baseline`.
    pub kind: String,
    /// MagFluxLSTM / MagFluxEnc-Dec, or the baseline method.
    pub model: String,
    /// `hybrid` / `MSE` for models; empty for baselines.
    pub loss: String,
    pub val_rmse: f64,
    pub zero_slope_rmse: f64,
    pub collapsed: bool,
    /// The training params (models) or the method params (baselines).
    pub params: serde_json::Value,
    pub param_count: Option<i64>,
    pub epochs_run: Option<usize>,
    /// AR → 7-tile mean RMSE (Gauss) over the metric window.
    pub mean_rmse_gauss: BTreeMap<String, f64>,
}

impl PredictorSummary {
    pub fn read(path: &std::path::Path) -> Result<PredictorSummary, StageError> {
        let text = std::fs::read_to_string(path).map_err(|e| StageError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| StageError::table(path, e))
    }
}

/// Writes the [`PREDICTOR_OUTPUTS`] of one predictor into `out`; returns the summary with the
/// per-AR mean RMSE filled in.
pub fn write_predictor_outputs(
    out: &std::path::Path,
    p: &Protocol,
    series: &SeriesTable,
    scaler: &Scaler,
    tiles: Vec<TileSeries>,
    mut summary: PredictorSummary,
) -> Result<PredictorSummary, StageError> {
    let label = summary.predictor.clone();
    let path = out.join("predictions.parquet");
    let mut df = predictions_frame(&label, p, series, scaler, &tiles)
        .map_err(|e| StageError::table(&path, e))?;
    table::write_parquet(&mut df, &path)?;
    let by_tile: BTreeMap<(u32, usize), TileSeries> =
        tiles.into_iter().map(|t| ((t.ar, t.k), t)).collect();
    let path = out.join("metrics.parquet");
    let mut m =
        metrics_frame(&label, p, scaler, &by_tile).map_err(|e| StageError::table(&path, e))?;
    for g in &p.ars {
        let pair = scaler.pair(FLUX);
        let mean = g
            .tiles
            .iter()
            .map(|&k| metric_window_scores(p, g, &by_tile[&(g.ar, k)], pair).rmse)
            .sum::<f64>()
            / g.tiles.len() as f64;
        summary.mean_rmse_gauss.insert(format!("AR{}", g.ar), mean);
    }
    table::write_parquet(&mut m, &path)?;
    let md = format!("# {label}\n\n{}", metrics_markdown(&m));
    let mdp = out.join("metrics.md");
    std::fs::write(&mdp, md).map_err(|e| StageError::io(&mdp, e))?;
    let sp = out.join("summary.json");
    std::fs::write(
        &sp,
        serde_json::to_string_pretty(&summary).expect("serialises") + "\n",
    )
    .map_err(|e| StageError::io(&sp, e))?;
    Ok(summary)
}
