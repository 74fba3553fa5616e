//! Operational forecasting (`magpipe forecast`): a trained model run on an AR folder as a
//! forecaster would see it at one hour — only the hours up to then — with the study's scaler,
//! windows, recalibration and emergence criterion; and the replay of an AR's history hour by hour.
//!
//! The geometry is the study's test protocol (docs/src/semantics.md §8): prediction j comes from the
//! window of hours j … j+W−1, keeps output `output_step`, and sits on the plot axis at hour
//! lk + j, one hour before its target (lk = the last known index). What is new here is time:
//! at hour s only the windows ending by s exist, the recalibration offset needs φ[lk] (so it
//! applies from hour lk on; the criterion does not depend on it), and the observed series is
//! known up to s. [`Live::state`] computes a tile's state from exactly that, so a replay's hour
//! s and `forecast --at <hour s>` see the same data.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::alarms::{AlarmParams, Category, Scored, status};
use crate::protocol::{self, ArGeometry, ProtocolParams, TileSeries};
use crate::scale::{Range, Scaler};
use crate::solared::{ArSeries, GRID, SolaredError, TILES, time::format_micros};
use crate::table::{ArBlock, CHANNELS, FEATURES, FLUX, SeriesTable};

pub mod report;
pub mod timeline;

pub use report::*;

/// The JSON schema names of `forecast` and `forecast --replay` (docs/src/reference/schemas.md, generated from the report types).
pub const SCHEMA: &str = "magpipe.forecast/1";
pub const REPLAY_SCHEMA: &str = "magpipe.forecast-replay/1";

use crate::solared::time::HOUR;

#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error(transparent)]
    Data(#[from] SolaredError),
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ForecastError {
    ForecastError::Invalid(msg.into())
}

/// What the model's pipeline fixes for its forecasts.
#[derive(Debug, Clone)]
pub struct ModelFrame {
    /// Input width of the training windows.
    pub train_input: usize,
    /// Grid row the model was trained on.
    pub train_row: usize,
    pub target_offset: usize,
    /// Outputs per window (the model's horizon).
    pub horizon: usize,
    /// The test protocol of the model's pipeline (`None`: the pipeline has none).
    pub protocol: Option<ProtocolParams>,
    pub alarms: AlarmParams,
    pub scaler: Scaler,
}

impl ModelFrame {
    fn protocol_params(&self) -> ProtocolParams {
        self.protocol.clone().unwrap_or_else(|| ProtocolParams {
            output_step: self.horizon.saturating_sub(1),
            ..ProtocolParams::default()
        })
    }
}

/// The forecaster's choices on the command line.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    /// Flat tile indices k.
    pub tiles: Option<Vec<usize>>,
    /// Grid rows: every tile of each.
    pub rows: Option<Vec<usize>>,
    /// Input width W of the forecast windows.
    pub input: Option<usize>,
}

/// The geometry of one AR's forecasts.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct Geometry {
    pub ar: u32,
    /// Flat tile indices k (paper tile = k + 1).
    pub tiles: Vec<usize>,
    /// Input width W (hours).
    pub input: usize,
    /// Observed hours on the plot axis before the first prediction (bp).
    pub history: usize,
    /// lk: prediction j is placed at hour lk + j and targets lk + j + 1.
    pub last_known: usize,
    pub target_offset: usize,
    pub output_step: usize,
    pub horizon: usize,
    pub recalibrate: bool,
    /// `test protocol` (the study's row for this AR), `test protocol, tiles from the command
    /// line`, or `defaults` (the training row and input, history from the first hour).
    pub source: String,
    /// In a replay of a protocol AR: the protocol's resolved row (windows per batch, scored
    /// span), so the replay computes exactly what `predict` computed.
    #[serde(skip)]
    pub protocol: Option<ArGeometry>,
}

/// Paper tile numbers (k + 1) as `48–54` or a list.
pub fn tile_label(tiles: &[usize]) -> String {
    let contiguous = tiles.windows(2).all(|w| w[1] == w[0] + 1);
    match (tiles.first(), tiles.last()) {
        (Some(a), Some(b)) if contiguous && tiles.len() > 2 => format!("{}–{}", a + 1, b + 1),
        _ => tiles
            .iter()
            .map(|k| (k + 1).to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

impl Geometry {
    /// The geometry for AR `ar` whose data has timestamps `times`: the test protocol's row when
    /// the AR is one of the model's test ARs (resolved in full for a replay), else the model's
    /// training row and input with the observed history from the first hour.
    pub fn new(
        frame: &ModelFrame,
        choice: &Choice,
        ar: u32,
        times: &[i64],
        replay: bool,
    ) -> Result<Geometry, ForecastError> {
        let pp = frame.protocol_params();
        if pp.output_step >= frame.horizon {
            return Err(invalid(format!(
                "the protocol's output step {} is past the model's {} outputs",
                pp.output_step, frame.horizon
            )));
        }
        let row = pp
            .ars
            .iter()
            .find(|a| a.ar == ar)
            .filter(|_| choice.input.is_none());
        let input = row.map_or(choice.input.unwrap_or(frame.train_input), |a| a.input);
        if input == 0 {
            return Err(invalid("--input must be at least 1 hour"));
        }
        let last_known = protocol::last_known(input, frame.target_offset, pp.output_step)
            .ok_or_else(|| {
                invalid("an input of 1 hour with output step 0 has no last known hour")
            })?;
        let chosen = match (&choice.tiles, &choice.rows) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(rows)) => {
                Some(rows.iter().flat_map(|r| GRID * r..GRID * (r + 1)).collect())
            }
            (None, None) => None,
        };
        let chosen = chosen.map(|mut t| {
            t.sort_unstable();
            t.dedup();
            t
        });
        if let Some(t) = &chosen {
            if t.is_empty() {
                return Err(invalid("no tiles chosen"));
            }
            if let Some(k) = t.iter().find(|&&k| k >= TILES) {
                return Err(invalid(format!(
                    "tile {} is outside the 9×9 grid (paper tiles 1–81)",
                    k + 1
                )));
            }
        }
        // The training row and input, the observed series from the first hour; a protocol row
        // replaces tiles and history.
        let mut g = Geometry {
            ar,
            tiles: (GRID * frame.train_row..GRID * (frame.train_row + 1)).collect(),
            input,
            history: last_known,
            last_known,
            target_offset: frame.target_offset,
            output_step: pp.output_step,
            horizon: frame.horizon,
            recalibrate: pp.recalibrate,
            source: "defaults".into(),
            protocol: None,
        };
        if let Some(a) = row {
            // The metric window plays no part in alarms: a replay of a partial folder must not
            // fail on it.
            if replay {
                let row = protocol::TestAr {
                    metric_start: a.history,
                    ..a.clone()
                };
                let pp = ProtocolParams {
                    metric_hours: 1,
                    ..pp.clone()
                };
                g.protocol = Some(
                    protocol::resolve(&row, &pp, times, frame.target_offset, frame.horizon)
                        .map_err(ForecastError::Invalid)?,
                );
            }
            g.tiles = (a.k0 + pp.first_scored..a.k0 + pp.first_scored + pp.scored).collect();
            g.history = a.history;
            g.source = "test protocol".into();
        }
        if g.history > g.last_known {
            return Err(invalid(format!(
                "the protocol's history of {} hours reaches before the first hour (last known \
                 index {})",
                g.history, g.last_known
            )));
        }
        if let Some(t) = chosen {
            if let Some(pg) = &mut g.protocol {
                pg.tiles = t.clone();
            }
            g.tiles = t;
            g.source = format!("{}, tiles from the command line", g.source);
        }
        Ok(g)
    }

    /// Predictions made at hour s: one per window that has ended by then.
    fn windows_by(&self, s: usize) -> usize {
        (s + 2).saturating_sub(self.input)
    }

    /// Index into the AR's hours of the observed value at plot position q (as the study's).
    pub fn observed_index(&self, q: usize) -> usize {
        protocol::observed_index(self.last_known, self.history, q)
    }

    /// Index into the AR's hours of plot position q; prediction j sits at q = history + j.
    pub fn axis_hour(&self, q: usize) -> usize {
        protocol::axis_index(self.last_known, self.history, q)
    }

    /// Observed plot positions known at hour s.
    fn observed_by(&self, s: usize) -> usize {
        let start = self.last_known - self.history;
        if s < start {
            0
        } else if s < self.last_known {
            s - start + 1
        } else {
            self.history + (s - self.last_known)
        }
    }

    /// The first hour at which a forecast exists (the first window's last input).
    pub fn first_hour(&self) -> usize {
        self.input - 1
    }

    /// The replay geometry's protocol row (always there in a replay).
    fn replay_row(&self) -> Result<&ArGeometry, ForecastError> {
        self.protocol
            .as_ref()
            .ok_or_else(|| invalid("a replay needs its geometry resolved for replay"))
    }

    /// Windows per tile to run: the protocol's count in a replay of a protocol AR (the same
    /// batch as `predict`), else every window that has ended by `last`.
    pub fn windows_to_run(&self, last: usize) -> usize {
        match &self.protocol {
            Some(p) => p.windows,
            None => self.windows_by(last),
        }
    }
}

/// The data of one AR folder up to the forecast hour: raw (for NaN checks and Gauss) and scaled
/// with the model's scaler.
pub struct LiveData {
    pub raw: ArSeries,
    pub scaled: ArBlock,
    /// blake3 over the timestamps and the six raw channels actually used.
    pub input_blake3: String,
}

impl LiveData {
    pub fn new(raw: ArSeries, scaler: &Scaler) -> Result<LiveData, ForecastError> {
        let mut h = blake3::Hasher::new();
        for t in &raw.times {
            h.update(&t.to_le_bytes());
        }
        for c in raw.channels() {
            for v in c {
                h.update(&v.to_bits().to_le_bytes());
            }
        }
        let input_blake3 = h.finalize().to_hex().to_string();
        let mut table = SeriesTable::default();
        let [p23, p34, p45, p56] = raw.power.clone();
        table.push(
            raw.ar,
            raw.times.clone(),
            [raw.ic.clone(), raw.flux.clone(), p23, p34, p45, p56],
        );
        let scaled = crate::scale::apply(&table, &[raw.ar], scaler)
            .map_err(|e| invalid(e.to_string()))?
            .blocks
            .remove(0);
        Ok(LiveData {
            raw,
            scaled,
            input_blake3,
        })
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The timestamp of hour i; past the data, hours are counted on from the last one (the
    /// hours used are checked to be gap-free).
    pub fn time_of(&self, i: usize) -> i64 {
        let t = &self.raw.times;
        match t.get(i) {
            Some(&u) => u,
            None => t[t.len() - 1] + (i - (t.len() - 1)) as i64 * HOUR,
        }
    }

    /// Scaled flux of tile k.
    pub fn phi(&self, k: usize) -> &[f64] {
        let n = self.len();
        &self.scaled.values[FLUX][k * n..(k + 1) * n]
    }

    /// The first gap (a step other than one hour) among hours 0 … last.
    pub fn gap_until(&self, last: usize) -> Option<(usize, f64)> {
        let t = &self.raw.times;
        (0..last.min(t.len().saturating_sub(1)))
            .find(|&i| t[i + 1] - t[i] != HOUR)
            .map(|i| (i, (t[i + 1] - t[i]) as f64 / HOUR as f64))
    }

    /// The first NaN of tile k's model inputs or flux over hours `hours`: (channel, hour).
    pub fn nan_in(&self, k: usize, hours: std::ops::Range<usize>) -> Option<(&'static str, usize)> {
        let n = self.len();
        let names = ["Ic", "|B|", "P2-3", "P3-4", "P4-5", "P5-6"];
        let chans = self.raw.channels();
        FEATURES.iter().copied().chain([FLUX]).find_map(|c| {
            hours
                .clone()
                .find(|&h| chans[c][k * n + h].is_nan())
                .map(|h| (names[c], h))
        })
    }

    /// Refuses data a forecast at hour `last` cannot rest on: too few hours for one window, a gap
    /// in the hours used, NaNs in a tile's last window.
    pub fn check(&self, g: &Geometry, last: usize, ar_dir: &Path) -> Result<(), ForecastError> {
        let dir = ar_dir.display();
        let n = self.len();
        if n < g.input {
            let upto = self
                .raw
                .times
                .last()
                .map(|&u| format!(" up to {}", format_micros(u)))
                .unwrap_or_default();
            return Err(invalid(format!(
                "{dir}: too little history: {n} hours{upto}, but one forecast needs {} hours of \
                 input",
                g.input
            )));
        }
        if let Some((i, dh)) = self.gap_until(last) {
            return Err(invalid(format!(
                "{dir}: gap in the timeline: {} → {} ({dh} h instead of 1) after hour {i}; the \
                 model's windows assume hourly data (use --at before the gap)",
                format_micros(self.raw.times[i]),
                format_micros(self.raw.times[i + 1]),
            )));
        }
        for &k in &g.tiles {
            if let Some((ch, h)) = self.nan_in(k, last + 1 - g.input..last + 1) {
                return Err(invalid(format!(
                    "{dir}: NaN in the last hours: {ch} of tile {} at {} lies in the input of \
                     the forecast at {} (choose other tiles with --tiles or an earlier --at)",
                    k + 1,
                    format_micros(self.raw.times[h]),
                    format_micros(self.raw.times[last]),
                )));
            }
        }
        Ok(())
    }

    /// Checks the hours a replay uses: gap-free up to the last observed hour it scores.
    pub fn check_replay(&self, g: &Geometry, ar_dir: &Path) -> Result<(), ForecastError> {
        let last = g.last_known + g.replay_row()?.span;
        if let Some((i, dh)) = self.gap_until(last) {
            return Err(invalid(format!(
                "{}: gap in the timeline: {} → {} ({dh} h instead of 1) after hour {i}, inside \
                 the hours the replay scores (up to hour {last})",
                ar_dir.display(),
                format_micros(self.raw.times[i]),
                format_micros(self.raw.times[i + 1]),
            )));
        }
        Ok(())
    }

    /// The windows to run per tile, each tile one batch (as `predict` batches a tile).
    pub fn batches(&self, g: &Geometry, windows: usize) -> Vec<Batch> {
        g.tiles
            .iter()
            .map(|&k| Batch {
                k,
                windows,
                input: g.input,
                x: protocol::window_inputs(&self.scaled, k, g.input, 0..windows),
            })
            .collect()
    }
}

/// One batch for the model: `windows` windows of tile k, (windows, W, 5) row-major.
#[derive(Debug, Clone)]
pub struct Batch {
    pub k: usize,
    pub windows: usize,
    pub input: usize,
    pub x: Vec<f32>,
}

/// The model's outputs per tile: window j's `horizon` outputs at `[j·horizon …]`.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub horizon: usize,
    pub by_tile: BTreeMap<usize, Vec<f32>>,
}

impl Outputs {
    fn step(&self, k: usize, j: usize, step: usize) -> f64 {
        f64::from(self.by_tile[&k][j * self.horizon + step])
    }
    fn windows(&self, k: usize) -> usize {
        self.by_tile[&k].len() / self.horizon.max(1)
    }
}

/// Writes the batches as one safetensors file (`x0`, `x1`, …, f32) for the worker.
pub fn write_batches(path: &Path, batches: &[Batch]) -> std::io::Result<()> {
    let tensors: Vec<(String, Vec<usize>, &[f32])> = batches
        .iter()
        .enumerate()
        .map(|(i, b)| {
            (
                format!("x{i}"),
                vec![b.windows, b.input, FEATURES.len()],
                b.x.as_slice(),
            )
        })
        .collect();
    write_f32(path, &tensors)
}

pub use crate::table::write_f32;

/// Shaped f32 tensors, in order.
pub type Tensors = Vec<(Vec<usize>, Vec<f32>)>;

/// Reads the f32 tensors `{prefix}0`, `{prefix}1`, … of a safetensors file, in that order.
pub fn read_f32(path: &Path, prefix: &str) -> Result<Tensors, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for i in 0.. {
        let Ok(t) = st.tensor(&format!("{prefix}{i}")) else {
            break;
        };
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(format!("{}: {prefix}{i} is not f32", path.display()));
        }
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        out.push((t.shape().to_vec(), v));
    }
    Ok(out)
}

/// Pairs the worker's outputs (`y0`, `y1`, … of (windows, horizon)) with their batches.
pub fn outputs_of(batches: &[Batch], ys: Tensors, horizon: usize) -> Result<Outputs, String> {
    if ys.len() != batches.len() {
        return Err(format!(
            "the worker returned {} batches for {}",
            ys.len(),
            batches.len()
        ));
    }
    let mut out = Outputs {
        horizon,
        by_tile: BTreeMap::new(),
    };
    for (b, (shape, y)) in batches.iter().zip(ys) {
        if shape != [b.windows, horizon] {
            return Err(format!(
                "the worker returned shape {shape:?} for {} windows × {horizon} outputs",
                b.windows
            ));
        }
        out.by_tile.insert(b.k, y);
    }
    Ok(out)
}

/// One tile's state at one hour.
#[derive(Debug, Clone, PartialEq)]
pub struct TileState {
    pub k: usize,
    /// Predictions known (windows ended by the hour, capped at a replay's scored span).
    pub windows: usize,
    /// First observed emergence so far (plot axis).
    pub q_obs: Option<usize>,
    /// First predicted emergence on the predictions so far (plot axis).
    pub q_pred: Option<usize>,
    /// Recalibration offset (scaled), once φ[lk] is known.
    pub offset: Option<f64>,
    /// The tile's latest window holds a NaN (filled, as in the study).
    pub nan_input: bool,
}

/// What a replay of one AR gives: the report, its timeline rows and its Table 2 as the
/// evaluation's scoring computes it.
pub struct Replayed {
    pub ar: ReplayAr,
    pub rows: Vec<TimelineRow>,
    pub table2: Scored,
}

/// A model's view of one AR: the data, the geometry and the outputs of every window run.
pub struct Live<'a> {
    pub g: &'a Geometry,
    pub data: &'a LiveData,
    pub out: &'a Outputs,
    pub alarms: &'a AlarmParams,
    /// The scaler's flux pair, for Gauss.
    pub pair: Range,
}

impl Live<'_> {
    /// Predictions kept at hour s.
    pub fn windows_at(&self, k: usize, s: usize) -> usize {
        let n = self.g.windows_by(s).min(self.out.windows(k));
        match &self.g.protocol {
            Some(p) => n.min(p.span),
            None => n,
        }
    }

    /// The recalibrated (once φ[lk] is known, s ≥ lk) predicted series at hour s and the offset.
    pub fn predicted_at(&self, k: usize, s: usize) -> (Vec<f64>, Option<f64>) {
        let n = self.windows_at(k, s);
        let yhat: Vec<f64> = (0..n)
            .map(|j| self.out.step(k, j, self.g.output_step))
            .collect();
        // The same arithmetic as TileSeries::new, so a replay's scores are the evaluation's.
        let offset = (self.g.recalibrate && s >= self.g.last_known && !yhat.is_empty())
            .then(|| self.data.phi(k)[self.g.last_known] - yhat[0]);
        let p = match offset {
            Some(o) => yhat.iter().map(|v| v + o).collect(),
            None => yhat,
        };
        (p, offset)
    }

    /// The observed series on the plot axis as known at hour s.
    pub fn observed_at(&self, k: usize, s: usize) -> Vec<f64> {
        let phi = self.data.phi(k);
        let m = self.g.observed_by(s.min(self.data.len() - 1));
        (0..m).map(|q| phi[self.g.observed_index(q)]).collect()
    }

    /// Tile k's state at hour s, from the hours up to s only.
    pub fn state(&self, k: usize, s: usize) -> TileState {
        self.state_and_series(k, s).0
    }

    /// The state and the predicted series it was computed on.
    fn state_and_series(&self, k: usize, s: usize) -> (TileState, Vec<f64>) {
        let c = self.alarms.criterion();
        let (p, offset) = self.predicted_at(k, s);
        let o = self.observed_at(k, s);
        let nan_input =
            s + 1 >= self.g.input && self.data.nan_in(k, s + 1 - self.g.input..s + 1).is_some();
        let state = TileState {
            k,
            windows: p.len(),
            q_obs: c.first(&o),
            q_pred: c.first(&p).map(|j| self.g.history + j),
            offset,
            nan_input,
        };
        (state, p)
    }

    fn lead(&self, q_obs: Option<usize>, q_pred: Option<usize>) -> Category {
        Category::of(q_obs, q_pred, |o, q| self.alarms.lead(o, q))
    }

    fn emergence(&self, q: usize) -> Emergence {
        let hour = self.g.axis_hour(q);
        Emergence {
            time: format_micros(self.data.time_of(hour)),
            hour,
            q,
        }
    }

    fn cell(&self, c: Category) -> Table2Cell {
        Table2Cell {
            category: c.to_string(),
            lead_h: c.lead(),
            status: status(c, self.alarms.delay_hours),
        }
    }

    /// The forecast at hour s (the last hour of the data read).
    pub fn forecast(&self, s: usize, model: ModelInfo, data: DataInfo) -> ForecastReport {
        let pair = self.pair;
        let n = self.data.len();
        let mut tiles = Vec::new();
        for &k in &self.g.tiles {
            let (st, p) = self.state_and_series(k, s);
            let j_last = st.windows - 1;
            let forecast = (0..self.g.horizon)
                .map(|i| {
                    let ahead = (self.g.target_offset + i) as i64;
                    Step {
                        step: i,
                        time: format_micros(self.data.time_of(s) + ahead * HOUR),
                        hours_ahead: ahead,
                        flux_gauss: pair.invert(self.out.step(k, j_last, i)),
                    }
                })
                .collect();
            let series = p
                .iter()
                .enumerate()
                .map(|(j, &v)| {
                    let at = self.data.time_of(self.g.axis_hour(self.g.history + j));
                    SeriesPoint {
                        time: format_micros(at),
                        target_time: format_micros(at + HOUR),
                        flux_gauss: pair.invert(v),
                    }
                })
                .collect();
            let lead_h = st.q_pred.map(|q| self.g.axis_hour(q) as i64 - s as i64);
            let alarm = st.q_pred.is_some();
            tiles.push(TileForecast {
                tile: k as u32 + 1,
                k,
                row: k / GRID,
                col: k % GRID,
                observed_gauss: finite(self.data.raw.flux[k * n + s]),
                forecast,
                recalibration_gauss: st.offset.map(|o| o * (pair.max - pair.min)),
                series,
                alarm,
                predicted_emergence: st.q_pred.map(|q| self.emergence(q)),
                observed_emergence: st.q_obs.map(|q| self.emergence(q)),
                lead_h,
                margin_h: lead_h.map(|l| l - self.alarms.delay_hours),
                status: tile_status(st.q_obs, alarm),
                table2: self.cell(self.lead(st.q_obs, st.q_pred)),
            });
        }
        let first = |f: fn(&TileForecast) -> Option<&Emergence>| {
            tiles
                .iter()
                .filter_map(|t| f(t).map(|e| (e.q, t.tile)))
                .min()
        };
        let pred = first(|t| t.predicted_emergence.as_ref());
        let obs = first(|t| t.observed_emergence.as_ref());
        let lead_h = pred.map(|(q, _)| self.g.axis_hour(q) as i64 - s as i64);
        let summary = ArForecast {
            alarm: pred.is_some(),
            alarm_tiles: tiles.iter().filter(|t| t.alarm).map(|t| t.tile).collect(),
            predicted_emergence: pred.map(|(q, tile)| TileEmergence {
                tile,
                at: self.emergence(q),
            }),
            observed_emergence: obs.map(|(q, tile)| TileEmergence {
                tile,
                at: self.emergence(q),
            }),
            lead_h,
            margin_h: lead_h.map(|l| l - self.alarms.delay_hours),
            status: tile_status(obs.map(|o| o.0), pred.is_some()),
            table2: self.cell(self.lead(obs.map(|o| o.0), pred.map(|p| p.0))),
        };
        ForecastReport {
            schema: SCHEMA,
            model,
            ar: self.g.ar,
            issued_at: format_micros(self.data.time_of(s)),
            data,
            geometry: self.g.clone(),
            criterion: CriterionInfo::of(self.alarms),
            tiles,
            summary,
        }
    }
}

impl Live<'_> {
    /// The hours a replay steps through: from the first window's last input to the last
    /// scored prediction's.
    pub fn replay_hours(&self) -> Result<std::ops::RangeInclusive<usize>, ForecastError> {
        let pg = self.g.replay_row()?;
        Ok(self.g.first_hour()..=pg.span + self.g.input - 2)
    }

    /// Steps hour by hour through the AR; each hour's state uses only the hours up to it. The
    /// Table 2 cells come from the study's scoring of the full scored span, as `score_alarms`
    /// computes them.
    pub fn replay(&self, data: DataInfo) -> Result<Replayed, ForecastError> {
        let g = self.g;
        let pg = self.g.replay_row()?;
        let hours = self.replay_hours()?;
        let mut rows = Vec::new();
        for s in hours.clone() {
            for &k in &g.tiles {
                let st = self.state(k, s);
                rows.push(TimelineRow {
                    ar: g.ar,
                    tile: k as u32 + 1,
                    hour: s,
                    time: self.data.time_of(s),
                    windows: st.windows,
                    alarm: st.q_pred.is_some(),
                    predicted_first_q: st.q_pred,
                    observed_first_q: st.q_obs,
                    nan_input: st.nan_input,
                });
            }
        }
        let scored = self.table2(pg);
        let delay = self.alarms.delay_hours;
        let alarm_at = |r: &TimelineRow| FirstAlarm {
            issued: format_micros(r.time),
            hour: r.hour,
            tile: r.tile,
            predicted_emergence: self.emergence(r.predicted_first_q.expect("an alarm")),
        };
        let lead = |w: &Option<FirstAlarm>, q: Option<usize>| match (w, q) {
            (Some(w), Some(q)) => Some(g.axis_hour(q) as i64 - w.hour as i64),
            _ => None,
        };
        let mut tiles = Vec::new();
        for t in &scored.tiles {
            let k = t.tile as usize - 1;
            let mine: Vec<&TimelineRow> = rows.iter().filter(|r| r.tile == t.tile).collect();
            let on: Vec<usize> = mine.iter().filter(|r| r.alarm).map(|r| r.hour).collect();
            let warning = t
                .q_obs
                .and_then(|q| warning_start(&on, g.axis_hour(q), *hours.end()))
                .and_then(|h| mine.iter().find(|r| r.hour == h))
                .map(|r| alarm_at(r));
            let retractions = mine
                .windows(2)
                .filter(|w| w[0].alarm && !w[1].alarm)
                .count();
            let l = lead(&warning, t.q_obs);
            tiles.push(ReplayTile {
                tile: t.tile,
                k,
                observed_emergence: t.q_obs.map(|q| self.emergence(q)),
                predicted_emergence: t.q_pred.map(|q| self.emergence(q)),
                table2: self.cell(t.category),
                first_alarm: mine.iter().find(|r| r.alarm).map(|r| alarm_at(r)),
                warning,
                alarm_hours: on.len(),
                retractions,
                operational_lead_h: l,
                operational_margin_h: l.map(|l| l - delay),
            });
        }
        let a = &scored.ars[0];
        let tile_of = |q: Option<usize>, f: fn(&ReplayTile) -> Option<&Emergence>| {
            q.and_then(|q| {
                tiles
                    .iter()
                    .find(|t| f(t).map(|e| e.q) == Some(q))
                    .map(|t| TileEmergence {
                        tile: t.tile,
                        at: self.emergence(q),
                    })
            })
        };
        // The AR is alarmed at an hour when any of its tiles is; the row that says so first is
        // the lowest tile alarmed then.
        let first_on = |h: usize| rows.iter().find(|r| r.hour == h && r.alarm);
        let mut on: Vec<usize> = rows.iter().filter(|r| r.alarm).map(|r| r.hour).collect();
        on.dedup();
        let warning = a
            .q_obs
            .and_then(|q| warning_start(&on, g.axis_hour(q), *hours.end()))
            .and_then(first_on)
            .map(alarm_at);
        let l = lead(&warning, a.q_obs);
        let emergence = ReplayEmergence {
            observed_emergence: tile_of(a.q_obs, |t| t.observed_emergence.as_ref()),
            predicted_emergence: tile_of(a.q_pred, |t| t.predicted_emergence.as_ref()),
            table2: self.cell(a.category),
            operational_status: status(
                Category::of(a.q_obs, warning.as_ref().map(|w| w.hour), |_, _| {
                    l.unwrap_or_default()
                }),
                delay,
            ),
            first_alarm: on.first().and_then(|&h| first_on(h)).map(alarm_at),
            warning,
            operational_lead_h: l,
            operational_margin_h: l.map(|l| l - delay),
        };
        let span = ReplayHours {
            first: format_micros(self.data.time_of(*hours.start())),
            last: format_micros(self.data.time_of(*hours.end())),
            count: hours.count(),
        };
        Ok(Replayed {
            ar: ReplayAr {
                ar: g.ar,
                geometry: g.clone(),
                data,
                hours: span,
                tiles,
                emergence,
                files: BTreeMap::new(),
            },
            rows,
            table2: scored,
        })
    }

    /// Table 2 of this AR, by the evaluation's own code on the full scored span.
    fn table2(&self, pg: &ArGeometry) -> Scored {
        let proto = protocol::Protocol {
            output_step: self.g.output_step,
            recalibrate: self.g.recalibrate,
            metric_hours: 0,
            target_offset: self.g.target_offset,
            horizon: self.g.horizon,
            train_input: self.g.input,
            ars: vec![pg.clone()],
        };
        let tiles: BTreeMap<(u32, usize), TileSeries> = pg
            .tiles
            .iter()
            .map(|&k| {
                let yhat = (0..pg.windows)
                    .map(|j| self.out.step(k, j, self.g.output_step))
                    .collect();
                (
                    (pg.ar, k),
                    TileSeries::new(&proto, pg, self.data.phi(k), k, yhat),
                )
            })
            .collect();
        self.alarms.score(&proto, &tiles)
    }
}

pub use crate::alarms::warning_start;

impl Geometry {
    /// A replay of an AR outside the test protocol is scored like a protocol row with no trim:
    /// every prediction whose target hour is in the data, history as chosen.
    pub fn resolve_for_replay(
        &mut self,
        frame: &ModelFrame,
        times: &[i64],
    ) -> Result<(), ForecastError> {
        if self.protocol.is_some() {
            return Ok(());
        }
        let pp = ProtocolParams {
            metric_hours: 1,
            ..frame.protocol_params()
        };
        let row = protocol::TestAr {
            ar: self.ar,
            k0: 0,
            input: self.input,
            history: self.history,
            trim: 0,
            metric_start: self.history,
        };
        let mut pg = protocol::resolve(&row, &pp, times, frame.target_offset, frame.horizon)
            .map_err(ForecastError::Invalid)?;
        pg.tiles = self.tiles.clone();
        self.protocol = Some(pg);
        Ok(())
    }
}

/// Checks the model's feature layout against the study's (the five features, in order, and a
/// scaler with every channel).
pub fn check_layout(model_inputs: usize, scaler: &Scaler) -> Result<(), ForecastError> {
    if model_inputs != FEATURES.len() {
        return Err(invalid(format!(
            "the model was trained with {model_inputs} input features, but forecasts feed the \
             study's {} ([P2-3, P3-4, P4-5, P5-6, Ic]): another feature layout",
            FEATURES.len()
        )));
    }
    if let Some(c) = CHANNELS.iter().find(|c| !scaler.pairs.contains_key(**c)) {
        return Err(invalid(format!(
            "the model's scaler has no pair for channel `{c}`: another feature layout"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TestAr;

    const T0: i64 = 1_362_682_777_500_000; // 2013-03-07 18:59:37.5

    fn series(ar: u32, t: usize) -> ArSeries {
        let wave = |c: usize| -> Vec<f64> {
            (0..TILES * t)
                .map(|i| {
                    let (k, h) = (i / t, i % t);
                    (c + 1) as f64 * ((h as f64 * 0.07 + k as f64 * 0.3 + c as f64).sin() + 1.5)
                })
                .collect()
        };
        ArSeries {
            ar,
            times: (0..t as i64).map(|h| T0 + h * HOUR).collect(),
            ic: wave(0),
            flux: wave(1),
            power: [wave(2), wave(3), wave(4), wave(5)],
        }
    }

    fn scaler() -> Scaler {
        let s = series(1, 50);
        let mut table = SeriesTable::default();
        let [a, b, c, d] = s.power.clone();
        table.push(
            1,
            s.times.clone(),
            [s.ic.clone(), s.flux.clone(), a, b, c, d],
        );
        crate::scale::fit(&table, &[1], &crate::scale::ScaleParams::default()).unwrap()
    }

    fn frame(protocol: Option<ProtocolParams>) -> ModelFrame {
        ModelFrame {
            train_input: 20,
            train_row: 4,
            target_offset: 0,
            horizon: 12,
            protocol,
            alarms: AlarmParams::default(),
            scaler: scaler(),
        }
    }

    fn protocol_row(ar: u32) -> ProtocolParams {
        ProtocolParams {
            ars: vec![TestAr {
                ar,
                k0: 28,
                input: 16,
                history: 10,
                trim: -3,
                metric_start: 10,
            }],
            metric_hours: 12,
            ..ProtocolParams::default()
        }
    }

    /// Outputs where step `os` of window j is `f(j)` and every other step is j/1000.
    fn outputs(g: &Geometry, windows: usize, f: &dyn Fn(usize, usize) -> f64) -> Outputs {
        let mut out = Outputs {
            horizon: g.horizon,
            by_tile: BTreeMap::new(),
        };
        for &k in &g.tiles {
            let v = (0..windows)
                .flat_map(|j| {
                    (0..g.horizon).map(move |i| {
                        if i == g.output_step {
                            f(k, j) as f32
                        } else {
                            j as f32 / 1000.0
                        }
                    })
                })
                .collect();
            out.by_tile.insert(k, v);
        }
        out
    }

    #[test]
    fn the_protocol_row_of_a_test_ar_sets_the_geometry_else_the_training_row() {
        let f = frame(Some(protocol_row(7)));
        let s = series(7, 80);
        let g = Geometry::new(&f, &Choice::default(), 7, &s.times, false).unwrap();
        assert_eq!(g.tiles, (29..36).collect::<Vec<_>>());
        assert_eq!((g.input, g.history, g.last_known), (16, 10, 16 + 9));
        assert_eq!(g.source, "test protocol");
        let other = Geometry::new(&f, &Choice::default(), 8, &s.times, false).unwrap();
        assert_eq!(other.tiles, (36..45).collect::<Vec<_>>());
        assert_eq!((other.input, other.history), (20, 20 + 9));
        assert_eq!(other.source, "defaults");
        // Tiles from the command line keep the protocol's windows; an input of its own leaves it.
        let c = Choice {
            tiles: Some(vec![41, 40, 41]),
            ..Choice::default()
        };
        let t = Geometry::new(&f, &c, 7, &s.times, true).unwrap();
        assert_eq!(t.tiles, [40, 41]);
        assert_eq!(t.protocol.as_ref().unwrap().tiles, [40, 41]);
        assert_eq!(
            t.protocol.as_ref().unwrap().span,
            80 + 1 - (16 - 1 + 12) - 3
        );
        let i = Choice {
            input: Some(30),
            ..Choice::default()
        };
        assert_eq!(
            Geometry::new(&f, &i, 7, &s.times, false).unwrap().source,
            "defaults"
        );
        let bad = Choice {
            tiles: Some(vec![81]),
            ..Choice::default()
        };
        let e = Geometry::new(&f, &bad, 7, &s.times, false).unwrap_err();
        assert!(e.to_string().contains("tile 82 is outside"), "{e}");
    }

    #[test]
    fn an_hours_state_depends_on_the_hours_up_to_it_only() {
        let f = frame(None);
        let full = LiveData::new(series(3, 90), &f.scaler).unwrap();
        let g = Geometry::new(&f, &Choice::default(), 3, &full.raw.times, false).unwrap();
        let wave = |k: usize, j: usize| 0.4 + 0.3 * ((j as f64 * 0.4 + k as f64).sin());
        let out = outputs(&g, g.windows_to_run(89), &wave);
        let live = view(&f, &g, &full, &out);
        let mut fired = 0;
        for s in g.first_hour()..90 {
            // The same AR as a forecaster had it at hour s, and only the windows run by then.
            let data = LiveData::new(series(3, 90).first_hours(s + 1), &f.scaler).unwrap();
            let past = outputs(&g, g.windows_to_run(s), &wave);
            let then = view(&f, &g, &data, &past);
            for &k in &g.tiles {
                let a = live.state(k, s);
                assert_eq!(a, then.state(k, s), "tile {k} hour {s}");
                assert_eq!(live.predicted_at(k, s), then.predicted_at(k, s));
                fired += usize::from(a.q_pred.is_some());
            }
        }
        assert!(
            fired > 0,
            "the wave never fired: the test would prove nothing"
        );
    }

    #[test]
    fn a_clean_rise_is_first_alarmed_seven_hours_before_its_plot_position() {
        // Step `os` rises by 0.05 per window from window 20: the criterion needs the windows up
        // to three past the first flagged one, and a prediction sits 10 h after its window's
        // last input, so the alarm comes 7 h (not Table 2's 12) before the predicted emergence.
        let f = frame(None);
        let mut quiet = series(4, 120);
        quiet.flux = vec![40.0; TILES * 120];
        let data = LiveData::new(quiet, &f.scaler).unwrap();
        let g = Geometry::new(&f, &Choice::default(), 4, &data.raw.times, false).unwrap();
        let rise = |_: usize, j: usize| {
            if j < 20 {
                0.3
            } else {
                0.3 + 0.05 * (j - 20) as f64
            }
        };
        let out = outputs(&g, g.windows_to_run(119), &rise);
        let live = view(&f, &g, &data, &out);
        let k = g.tiles[0];
        let first = (g.first_hour()..120)
            .find(|&s| live.state(k, s).q_pred.is_some())
            .unwrap();
        let q = live.state(k, first).q_pred.unwrap();
        assert_eq!(
            q - g.history,
            19,
            "the smoothed derivative clears 0.01 one window early"
        );
        assert_eq!(g.axis_hour(q) - first, 7);
        let report = live.forecast(first, model(), DataInfo::of(Path::new("x"), &data, None));
        let t = &report.tiles[0];
        assert!(t.alarm && t.status == "alarm");
        assert_eq!((t.lead_h, t.margin_h), (Some(7), Some(3)));
        assert_eq!(report.summary.alarm_tiles, (37..=45).collect::<Vec<u32>>());
        assert_eq!(report.summary.lead_h, Some(7));
        // The hour before, the run of four is not complete: no alarm yet.
        assert_eq!(live.state(k, first - 1).q_pred, None);
    }

    fn view<'a>(
        f: &'a ModelFrame,
        g: &'a Geometry,
        data: &'a LiveData,
        out: &'a Outputs,
    ) -> Live<'a> {
        Live {
            g,
            data,
            out,
            alarms: &f.alarms,
            pair: f.scaler.pair(FLUX),
        }
    }

    fn model() -> ModelInfo {
        ModelInfo {
            stage: "m".into(),
            variant: None,
            key: "k".repeat(64),
            trained_at: "2026-01-01T00:00:00Z".into(),
            lineage_hash: "l".repeat(64),
            weights_blake3: "w".repeat(64),
            scaler_blake3: "s".repeat(64),
            model: "MagFluxLSTM".into(),
            loss: "hybrid".into(),
            val_rmse: None,
            collapsed: false,
        }
    }

    #[test]
    fn the_recalibration_waits_for_the_last_known_hour_and_changes_no_alarm() {
        let f = frame(None);
        let data = LiveData::new(series(5, 100), &f.scaler).unwrap();
        let g = Geometry::new(&f, &Choice::default(), 5, &data.raw.times, false).unwrap();
        let out = outputs(&g, g.windows_to_run(99), &|_, j| 0.1 * j as f64);
        let live = view(&f, &g, &data, &out);
        let k = g.tiles[0];
        assert_eq!(live.state(k, g.last_known - 1).offset, None);
        let at = live.state(k, g.last_known);
        let offset = at.offset.expect("φ[lk] is known at hour lk");
        assert_eq!(offset, data.phi(k)[g.last_known]);
        let (p, _) = live.predicted_at(k, g.last_known);
        assert_eq!(p[0], data.phi(k)[g.last_known]);
    }

    #[test]
    fn data_a_forecast_cannot_rest_on_is_refused_with_its_cause() {
        let f = frame(None);
        let dir = Path::new("/data/AR9");
        let short = LiveData::new(series(9, 15), &f.scaler).unwrap();
        let g = Geometry::new(&f, &Choice::default(), 9, &short.raw.times, false).unwrap();
        let e = short.check(&g, 14, dir).unwrap_err().to_string();
        assert!(
            e.starts_with("/data/AR9: too little history: 15 hours up to 2013-03-08 08:59:37"),
            "{e}"
        );
        assert!(e.contains("needs 20 hours"), "{e}");

        let mut gap = series(9, 60);
        for t in &mut gap.times[30..] {
            *t += 3 * HOUR;
        }
        let d = LiveData::new(gap, &f.scaler).unwrap();
        let e = d.check(&g, 59, dir).unwrap_err().to_string();
        assert!(e.contains("gap in the timeline"), "{e}");
        assert!(e.contains("(4 h instead of 1) after hour 29"), "{e}");
        assert!(
            d.check(&g, 29, dir).is_ok(),
            "the hours before the gap are fine"
        );

        let mut nan = series(9, 60);
        nan.power[1][40 * 60 + 57] = f64::NAN;
        let d = LiveData::new(nan, &f.scaler).unwrap();
        let e = d.check(&g, 59, dir).unwrap_err().to_string();
        assert!(e.contains("NaN in the last hours: P3-4 of tile 41"), "{e}");
        assert!(d.check(&g, 56, dir).is_ok(), "the NaN lies after hour 56");
        // An older NaN, out of the last window, is filled as the study fills it.
        let mut old = series(9, 60);
        old.ic[36 * 60 + 10] = f64::NAN;
        let d = LiveData::new(old, &f.scaler).unwrap();
        assert!(d.check(&g, 59, dir).is_ok());
        assert!(d.check(&g, 25, dir).is_err());
    }

    #[test]
    fn another_feature_layout_is_refused() {
        let s = scaler();
        assert!(check_layout(5, &s).is_ok());
        let e = check_layout(6, &s).unwrap_err().to_string();
        assert!(e.contains("trained with 6 input features"), "{e}");
        let mut missing = s.clone();
        missing.pairs.remove("p56");
        let e = check_layout(5, &missing).unwrap_err().to_string();
        assert!(e.contains("no pair for channel `p56`"), "{e}");
    }

    #[test]
    fn the_warning_is_the_alarm_in_force_when_the_flux_emerged() {
        let on = [3, 4, 5, 9, 10, 11, 12, 20];
        // Emerged during the second episode: from its start, not from the withdrawn first one.
        assert_eq!(warning_start(&on, 11, 30), Some(9));
        assert_eq!(warning_start(&on, 9, 30), Some(9));
        // Emerged while no alarm was on: the next one is late.
        assert_eq!(warning_start(&on, 7, 30), Some(9));
        assert_eq!(warning_start(&on, 0, 30), Some(3));
        // Past the replay's last hour the last state stands.
        assert_eq!(warning_start(&on, 45, 20), Some(20));
        assert_eq!(
            warning_start(&on[..7], 45, 19),
            None,
            "off at the end, nothing after"
        );
        assert_eq!(warning_start(&[], 5, 30), None);
    }

    #[test]
    fn batches_travel_to_the_worker_and_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let batches = vec![
            Batch {
                k: 3,
                windows: 2,
                input: 4,
                x: (0..40).map(|i| i as f32 * 0.5).collect(),
            },
            Batch {
                k: 9,
                windows: 1,
                input: 4,
                x: (0..20).map(|i| -(i as f32)).collect(),
            },
        ];
        write_batches(&path, &batches).unwrap();
        let back = read_f32(&path, "x").unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], (vec![2, 4, 5], batches[0].x.clone()));
        assert_eq!(back[1], (vec![1, 4, 5], batches[1].x.clone()));
        let ys = vec![(vec![2, 3], vec![0.0; 6]), (vec![1, 3], vec![1.0; 3])];
        let out = outputs_of(&batches, ys, 3).unwrap();
        assert_eq!(out.windows(9), 1);
        let wrong = vec![(vec![2, 4], vec![0.0; 8]), (vec![1, 3], vec![1.0; 3])];
        assert!(outputs_of(&batches, wrong, 3).is_err());
    }
}
