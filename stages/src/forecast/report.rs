//! What `magpipe forecast` reports: the JSON documents (`magpipe.forecast/1`,
//! `magpipe.forecast-replay/1`, whose schemas docs/src/reference/schemas.md is generated from), the replay's timeline table, and
//! their text and Markdown renderings.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{Geometry, LiveData, tile_label};
use crate::alarms::AlarmParams;
use crate::solared::time::format_micros;

pub(super) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// `emerged` once the observed criterion has fired, else `alarm` or `quiet`.
pub(super) fn tile_status(q_obs: Option<usize>, alarm: bool) -> &'static str {
    match (q_obs, alarm) {
        (Some(_), _) => "emerged",
        (None, true) => "alarm",
        (None, false) => "quiet",
    }
}

/// Where the model of a forecast came from.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The `train` stage and the variant it was taken from.
    pub stage: String,
    pub variant: Option<String>,
    /// The train stage's key.
    pub key: String,
    /// When its training finished (UTC).
    pub trained_at: String,
    /// The hash `magpipe lineage <stage>` prints: every stage key and output hash on the chain
    /// and every raw file.
    pub lineage_hash: String,
    pub weights_blake3: String,
    pub scaler_blake3: String,
    /// MagFluxLSTM / MagFluxEnc-Dec, and hybrid / MSE.
    pub model: String,
    pub loss: String,
    /// Validation derivative RMSE, and whether training flagged the run as collapsed.
    pub val_rmse: Option<f64>,
    pub collapsed: bool,
}

/// What was read.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct DataInfo {
    /// The AR folder as given.
    pub dir: String,
    /// First and last hour used, and how many.
    pub first: String,
    pub last: String,
    pub hours: usize,
    /// The `--at` time asked for, if any.
    pub at: Option<String>,
    /// blake3 over the timestamps and raw values of the hours used.
    pub input_blake3: String,
}

impl DataInfo {
    pub fn of(dir: &Path, data: &LiveData, at: Option<i64>) -> DataInfo {
        DataInfo {
            dir: dir.display().to_string(),
            first: data
                .raw
                .times
                .first()
                .map_or(String::new(), |&u| format_micros(u)),
            last: data
                .raw
                .times
                .last()
                .map_or(String::new(), |&u| format_micros(u)),
            hours: data.len(),
            at: at.map(format_micros),
            input_blake3: data.input_blake3.clone(),
        }
    }
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct CriterionInfo {
    pub threshold: f64,
    pub smoothing: usize,
    pub sustain: usize,
    pub horizon_hours: i64,
    pub lead_offset: i64,
    pub delay_hours: i64,
}

impl CriterionInfo {
    pub fn of(a: &AlarmParams) -> CriterionInfo {
        CriterionInfo {
            threshold: a.threshold,
            smoothing: a.smoothing,
            sustain: a.sustain,
            horizon_hours: a.horizon_hours,
            lead_offset: a.lead_offset,
            delay_hours: a.delay_hours,
        }
    }
}

/// One output of the latest window.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub step: usize,
    /// The hour it targets.
    pub time: String,
    pub hours_ahead: i64,
    /// The model's output, denormalised (not recalibrated).
    pub flux_gauss: f64,
}

/// One point of the predicted series the criterion runs on.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Plot position (one hour before the target, as in the study).
    pub time: String,
    pub target_time: String,
    /// Recalibrated once the offset is known.
    pub flux_gauss: f64,
}

/// A first emergence: its time, its hour in the AR's data and its plot-axis position (Table 2's
/// `*_first_q`).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct Emergence {
    pub time: String,
    pub hour: usize,
    pub q: usize,
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct TileEmergence {
    /// Paper tile number.
    pub tile: u32,
    pub at: Emergence,
}

/// A Table 2 cell: category, lead and colour class.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct Table2Cell {
    pub category: String,
    pub lead_h: Option<i64>,
    pub status: &'static str,
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct TileForecast {
    pub tile: u32,
    pub k: usize,
    pub row: usize,
    pub col: usize,
    /// Observed |B| at the issue hour (Gauss).
    pub observed_gauss: Option<f64>,
    pub forecast: Vec<Step>,
    /// The recalibration offset in Gauss (null before φ[lk] is known, or when the protocol
    /// does not recalibrate).
    pub recalibration_gauss: Option<f64>,
    pub series: Vec<SeriesPoint>,
    /// The criterion fires on the predicted series.
    pub alarm: bool,
    pub predicted_emergence: Option<Emergence>,
    pub observed_emergence: Option<Emergence>,
    /// Hours from the issue hour to the predicted emergence, and what is left after the
    /// processing delay.
    pub lead_h: Option<i64>,
    pub margin_h: Option<i64>,
    /// `quiet`, `alarm` or `emerged`.
    pub status: &'static str,
    /// Table 2's rule on what is known at the issue hour.
    pub table2: Table2Cell,
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct ArForecast {
    pub alarm: bool,
    pub alarm_tiles: Vec<u32>,
    pub predicted_emergence: Option<TileEmergence>,
    pub observed_emergence: Option<TileEmergence>,
    pub lead_h: Option<i64>,
    pub margin_h: Option<i64>,
    pub status: &'static str,
    pub table2: Table2Cell,
}

/// `magpipe forecast` (schema `magpipe.forecast/1`).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct ForecastReport {
    pub schema: &'static str,
    pub model: ModelInfo,
    pub ar: u32,
    /// The last hour used: the forecast is what was knowable then.
    pub issued_at: String,
    pub data: DataInfo,
    pub geometry: Geometry,
    pub criterion: CriterionInfo,
    pub tiles: Vec<TileForecast>,
    pub summary: ArForecast,
}

/// One row of a replay's timeline: a tile's state at one hour.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct TimelineRow {
    pub ar: u32,
    pub tile: u32,
    pub hour: usize,
    pub time: i64,
    pub windows: usize,
    pub alarm: bool,
    pub predicted_first_q: Option<usize>,
    pub observed_first_q: Option<usize>,
    pub nan_input: bool,
}

/// The first alarm of a tile in a replay.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct FirstAlarm {
    /// The hour the alarm was first raised (the last hour of data it rests on).
    pub issued: String,
    pub hour: usize,
    /// Paper tile number (for an AR, the tile that raised it).
    pub tile: u32,
    /// The emergence it predicted then.
    pub predicted_emergence: Emergence,
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct ReplayTile {
    pub tile: u32,
    pub k: usize,
    /// Table 2's first observed and predicted emergence and cell.
    pub observed_emergence: Option<Emergence>,
    pub predicted_emergence: Option<Emergence>,
    pub table2: Table2Cell,
    /// The first alarm the tile ever raised.
    pub first_alarm: Option<FirstAlarm>,
    /// The alarm in force when the flux emerged (its episode's first hour), else the first one
    /// after it: what the operational lead counts from.
    pub warning: Option<FirstAlarm>,
    /// Hours with the alarm on, and how often it went off again.
    pub alarm_hours: usize,
    pub retractions: usize,
    /// Observed emergence minus the warning's first hour, and what is left after the delay.
    pub operational_lead_h: Option<i64>,
    pub operational_margin_h: Option<i64>,
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct ReplayEmergence {
    pub observed_emergence: Option<TileEmergence>,
    pub predicted_emergence: Option<TileEmergence>,
    pub table2: Table2Cell,
    /// The AR's first alarm on any tile, and the alarm in force (on any tile) when its first
    /// tile emerged.
    pub first_alarm: Option<FirstAlarm>,
    pub warning: Option<FirstAlarm>,
    pub operational_lead_h: Option<i64>,
    pub operational_margin_h: Option<i64>,
    /// The operational lead's colour class (the Table 2 rule applied to it).
    pub operational_status: &'static str,
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct ReplayHours {
    pub first: String,
    pub last: String,
    pub count: usize,
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct ReplayAr {
    pub ar: u32,
    pub geometry: Geometry,
    pub data: DataInfo,
    /// The hours replayed: from the first window to the last scored prediction's.
    pub hours: ReplayHours,
    pub tiles: Vec<ReplayTile>,
    pub emergence: ReplayEmergence,
    /// Files written for this AR (timeline plot).
    pub files: BTreeMap<String, String>,
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct Successes {
    pub ars: usize,
    /// Table 2's Emergence column: leads ≥ delay and > delay.
    pub table2_ge: usize,
    pub table2_gt: usize,
    /// Operational leads (observed emergence minus the warning): ≥ delay and > delay.
    pub operational_ge: usize,
    pub operational_gt: usize,
}

/// `magpipe forecast --replay` (schema `magpipe.forecast-replay/1`).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    pub schema: &'static str,
    pub model: ModelInfo,
    pub criterion: CriterionInfo,
    pub ars: Vec<ReplayAr>,
    pub successes: Successes,
    /// Files written for the whole replay (timeline table, Table 2, this report).
    pub files: BTreeMap<String, String>,
}

/// Successes over the replayed ARs.
pub fn successes(ars: &[ReplayAr], delay: i64) -> Successes {
    let count = |f: &dyn Fn(&ReplayAr) -> Option<i64>, strict: bool| {
        ars.iter()
            .filter_map(f)
            .filter(|&l| if strict { l > delay } else { l >= delay })
            .count()
    };
    let t2 = |a: &ReplayAr| a.emergence.table2.lead_h;
    let op = |a: &ReplayAr| a.emergence.operational_lead_h;
    Successes {
        ars: ars.len(),
        table2_ge: count(&t2, false),
        table2_gt: count(&t2, true),
        operational_ge: count(&op, false),
        operational_gt: count(&op, true),
    }
}

/// The timeline as a table (Parquet through polars).
pub fn timeline_frame(
    rows: &[TimelineRow],
) -> polars::prelude::PolarsResult<polars::prelude::DataFrame> {
    use polars::prelude::*;
    let n = rows.len();
    let u =
        |f: fn(&TimelineRow) -> usize| -> Vec<u32> { rows.iter().map(|r| f(r) as u32).collect() };
    let o = |f: fn(&TimelineRow) -> Option<usize>| -> Vec<Option<u32>> {
        rows.iter().map(|r| f(r).map(|v| v as u32)).collect()
    };
    DataFrame::new(
        n,
        vec![
            Column::new("ar".into(), rows.iter().map(|r| r.ar).collect::<Vec<_>>()),
            Column::new(
                "tile".into(),
                rows.iter().map(|r| r.tile).collect::<Vec<_>>(),
            ),
            Column::new("hour".into(), u(|r| r.hour)),
            Column::new(
                "time".into(),
                rows.iter().map(|r| r.time).collect::<Vec<_>>(),
            )
            .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?,
            Column::new("windows".into(), u(|r| r.windows)),
            Column::new(
                "alarm".into(),
                rows.iter().map(|r| r.alarm).collect::<Vec<_>>(),
            ),
            Column::new("predicted_first_q".into(), o(|r| r.predicted_first_q)),
            Column::new("observed_first_q".into(), o(|r| r.observed_first_q)),
            Column::new(
                "nan_input".into(),
                rows.iter().map(|r| r.nan_input).collect::<Vec<_>>(),
            ),
        ],
    )
}

/// The timeline as CSV, with the plot-axis positions also as times.
pub fn timeline_csv<'a>(
    ars: impl IntoIterator<Item = (&'a [TimelineRow], &'a Geometry, &'a LiveData)>,
) -> String {
    let mut out = String::from(
        "ar,tile,hour,time,windows,alarm,predicted_first,observed_first,predicted_first_q,observed_first_q,nan_input\n",
    );
    for (rows, g, data) in ars {
        let at = |q: Option<usize>| {
            q.map(|q| format_micros(data.time_of(g.axis_hour(q))))
                .unwrap_or_default()
        };
        let q = |v: Option<usize>| v.map(|v| v.to_string()).unwrap_or_default();
        for r in rows {
            out.push_str(&format!(
                "AR{},{},{},{},{},{},{},{},{},{},{}\n",
                r.ar,
                r.tile,
                r.hour,
                format_micros(r.time),
                r.windows,
                r.alarm,
                at(r.predicted_first_q),
                at(r.observed_first_q),
                q(r.predicted_first_q),
                q(r.observed_first_q),
                r.nan_input
            ));
        }
    }
    out
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("–".into(), |v| v.to_string())
}

fn hours(v: Option<i64>) -> String {
    v.map_or("–".into(), |v| format!("{v} h"))
}

/// `YYYY-MM-DD HH:MM` of a full timestamp string.
fn minute(s: &str) -> &str {
    s.get(..16).unwrap_or(s)
}

fn model_line(m: &ModelInfo) -> String {
    format!(
        "model: {}{} ({} {}), key {}, lineage {}{}",
        m.stage,
        m.variant
            .as_ref()
            .map(|v| format!("@{v}"))
            .unwrap_or_default(),
        m.model,
        m.loss,
        &m.key[..m.key.len().min(12)],
        &m.lineage_hash[..m.lineage_hash.len().min(12)],
        if m.collapsed {
            " — COLLAPSED in training: its alarms mean little"
        } else {
            ""
        }
    )
}

/// The forecast as a Markdown table (`md`) or aligned text.
pub fn forecast_text(r: &ForecastReport, markdown: bool) -> String {
    let g = &r.geometry;
    let mut out = String::new();
    let head = format!(
        "forecast for AR{} issued at {} (data up to this hour{})",
        r.ar,
        r.issued_at,
        r.data
            .at
            .as_ref()
            .map(|a| format!("; --at {a}"))
            .unwrap_or_default()
    );
    if markdown {
        out.push_str(&format!("# {head}\n\n"));
    } else {
        out.push_str(&format!("{head}\n"));
    }
    out.push_str(&format!(
        "{}\ntiles {} ({}), input {} h; criterion: smoothed dΦ/dt ≥ {} for {} h, delay {} h\n\n",
        model_line(&r.model),
        tile_label(&g.tiles),
        g.source,
        g.input,
        r.criterion.threshold,
        r.criterion.sustain,
        r.criterion.delay_hours
    ));
    let header = [
        "tile",
        "|B| now (G)",
        "+11 h (G)",
        "status",
        "predicted emergence",
        "lead",
        "margin",
        "observed emergence",
        "Table 2 so far",
    ];
    let rows: Vec<Vec<String>> = r
        .tiles
        .iter()
        .map(|t| {
            vec![
                t.tile.to_string(),
                opt(t.observed_gauss.map(|v| format!("{v:.1}"))),
                opt(t.forecast.last().map(|s| format!("{:.1}", s.flux_gauss))),
                t.status.to_uppercase(),
                opt(t
                    .predicted_emergence
                    .as_ref()
                    .map(|e| minute(&e.time).to_string())),
                hours(t.lead_h),
                hours(t.margin_h),
                opt(t
                    .observed_emergence
                    .as_ref()
                    .map(|e| minute(&e.time).to_string())),
                t.table2.category.clone(),
            ]
        })
        .collect();
    out.push_str(&if markdown {
        crate::table::markdown(&header, &rows)
    } else {
        aligned(&header, &rows)
    });
    let s = &r.summary;
    out.push_str(&format!(
        "\nAR{}: {}\n",
        r.ar,
        match (&s.observed_emergence, &s.predicted_emergence) {
            (Some(o), _) => format!(
                "EMERGED — the observed criterion fired at {} on tile {}",
                minute(&o.at.time),
                o.tile
            ),
            (None, Some(p)) => format!(
                "ALARM — predicted emergence {} on tile {} ({} ahead, {} after the {}-h delay)",
                minute(&p.at.time),
                p.tile,
                hours(s.lead_h),
                hours(s.margin_h),
                r.criterion.delay_hours
            ),
            (None, None) => "quiet — no emergence predicted or observed".into(),
        }
    ));
    out
}

fn aligned(header: &[&str], rows: &[Vec<String>]) -> String {
    let w: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&w)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The replay as Markdown (`md`) or aligned text: per AR the tiles and the Emergence row.
pub fn replay_text(r: &ReplayReport, markdown: bool) -> String {
    let mut out = String::new();
    let head = "forecast replay: the alarms an operator would have seen, hour by hour";
    if markdown {
        out.push_str(&format!("# {head}\n\n"));
    } else {
        out.push_str(&format!("{head}\n"));
    }
    out.push_str(&format!(
        "{}\ncriterion: smoothed dΦ/dt ≥ {} for {} h; processing delay {} h. The warning is the alarm \
         in force when the flux emerged, from the hour of the data it was first raised on (an \
         alarm withdrawn before the emergence does not count); operational lead = observed \
         emergence − warning. Table 2's lead = {} + q_obs − q_pred.\n",
        model_line(&r.model),
        r.criterion.threshold,
        r.criterion.sustain,
        r.criterion.delay_hours,
        r.criterion.horizon_hours
    ));
    let header = [
        "tile",
        "observed emergence",
        "first alarm",
        "warning since",
        "predicted then",
        "Table 2 predicted",
        "Table 2",
        "operational lead",
        "margin",
        "alarm hours",
        "retractions",
    ];
    for a in &r.ars {
        out.push_str(&format!(
            "\n{}AR{} ({}, tiles {}, input {} h): {} hours replayed, {} → {}\n\n",
            if markdown { "## " } else { "" },
            a.ar,
            a.geometry.source,
            tile_label(&a.geometry.tiles),
            a.geometry.input,
            a.hours.count,
            minute(&a.hours.first),
            minute(&a.hours.last)
        ));
        let t = |e: &Option<Emergence>| opt(e.as_ref().map(|e| minute(&e.time).to_string()));
        let mut rows: Vec<Vec<String>> = a
            .tiles
            .iter()
            .map(|x| {
                vec![
                    x.tile.to_string(),
                    t(&x.observed_emergence),
                    opt(x
                        .first_alarm
                        .as_ref()
                        .map(|f| minute(&f.issued).to_string())),
                    opt(x.warning.as_ref().map(|f| minute(&f.issued).to_string())),
                    opt(x
                        .warning
                        .as_ref()
                        .map(|f| minute(&f.predicted_emergence.time).to_string())),
                    t(&x.predicted_emergence),
                    x.table2.category.clone(),
                    hours(x.operational_lead_h),
                    hours(x.operational_margin_h),
                    x.alarm_hours.to_string(),
                    x.retractions.to_string(),
                ]
            })
            .collect();
        let e = &a.emergence;
        let te = |x: &Option<TileEmergence>| {
            opt(x
                .as_ref()
                .map(|x| format!("{} (tile {})", minute(&x.at.time), x.tile)))
        };
        rows.push(vec![
            "Emergence".into(),
            te(&e.observed_emergence),
            opt(e
                .first_alarm
                .as_ref()
                .map(|f| format!("{} (tile {})", minute(&f.issued), f.tile))),
            opt(e
                .warning
                .as_ref()
                .map(|f| format!("{} (tile {})", minute(&f.issued), f.tile))),
            String::new(),
            te(&e.predicted_emergence),
            e.table2.category.clone(),
            hours(e.operational_lead_h),
            hours(e.operational_margin_h),
            String::new(),
            String::new(),
        ]);
        out.push_str(&if markdown {
            crate::table::markdown(&header, &rows)
        } else {
            aligned(&header, &rows)
        });
    }
    let s = &r.successes;
    let d = r.criterion.delay_hours;
    out.push_str(&format!(
        "\nSuccessful ARs after the {d}-h delay: Table 2's Emergence column {}/{n} (≥ {d} h), \
         {}/{n} (> {d} h); operational lead {}/{n} (≥ {d} h), {}/{n} (> {d} h).\n",
        s.table2_ge,
        s.table2_gt,
        s.operational_ge,
        s.operational_gt,
        n = s.ars
    ));
    out
}
