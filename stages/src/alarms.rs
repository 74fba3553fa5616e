//! `score_alarms`: the study's Table 2 (docs/src/semantics.md §13). Per scored tile the first observed and
//! first predicted emergence on the common plot axis, the category and the alarm lead; per AR the
//! Emergence column (earliest observed vs earliest predicted over the scored tiles, which may come
//! from different tiles) and the operational success after the processing delay.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::emergence::Criterion;
use crate::kind::{Context, InputSlot, OutputSlot, ParamError, Report, StageError, TypedKind};
use crate::protocol::{ArGeometry, PredictorSummary, Protocol, TileSeries, read_predictions};
use crate::solared::time::format_micros;
use crate::table::{self, SeriesTable};

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmParams {
    /// Smoothed derivative (scaled flux per hour) at or above which a sample counts.
    pub threshold: f64,
    /// Width of the centred moving mean over the derivative (odd).
    pub smoothing: usize,
    /// Minimum run (hours) of consecutive flagged samples.
    pub sustain: usize,
    /// Added to the lead on the observed side: 0 = paper text (Table 2), 1 = the published
    /// table code.
    pub lead_offset: i64,
    /// Hours added to the distance between first observed and first predicted emergence.
    pub horizon_hours: i64,
    /// Processing delay subtracted for operational success.
    pub delay_hours: i64,
    /// The predictor whose alarms make Table 2 (default: the first listed).
    pub primary: Option<String>,
}

impl Default for AlarmParams {
    fn default() -> Self {
        let c = Criterion::default();
        AlarmParams {
            threshold: c.threshold,
            smoothing: c.smoothing,
            sustain: c.sustain,
            lead_offset: 0,
            horizon_hours: 12,
            delay_hours: DEFAULT_DELAY_HOURS,
            primary: None,
        }
    }
}

/// Table 2's categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Category {
    Quiet,
    Ilap,
    NoPred,
    Alarm(i64),
}

impl Category {
    pub fn of(
        q_obs: Option<usize>,
        q_pred: Option<usize>,
        lead: impl Fn(usize, usize) -> i64,
    ) -> Category {
        match (q_obs, q_pred) {
            (None, None) => Category::Quiet,
            (None, Some(_)) => Category::Ilap,
            (Some(_), None) => Category::NoPred,
            (Some(o), Some(p)) => Category::Alarm(lead(o, p)),
        }
    }
    pub fn lead(self) -> Option<i64> {
        match self {
            Category::Alarm(h) => Some(h),
            _ => None,
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Category::Quiet => write!(f, "Quiet"),
            Category::Ilap => write!(f, "ILAP"),
            Category::NoPred => write!(f, "NO PRED"),
            Category::Alarm(h) => write!(f, "{h}h Alarm"),
        }
    }
}

impl Category {
    /// Whether two cells agree in category, the rule Table 2 is compared by: an alarm agrees with
    /// any alarm (leads differ by hours between trainings), anything else only with itself.
    pub fn same_kind(&self, other: &Category) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// [`Category::same_kind`] for cells as written (`4h Alarm`, `Quiet`); text that is no
    /// category agrees only with itself.
    pub fn same_kind_text(a: &str, b: &str) -> bool {
        match (a.parse::<Category>(), b.parse::<Category>()) {
            (Ok(x), Ok(y)) => x.same_kind(&y),
            _ => a == b,
        }
    }

    /// The category without its lead: `Alarm` for any alarm.
    pub fn kind_name(&self) -> String {
        match self {
            Category::Alarm(_) => "Alarm".into(),
            other => other.to_string(),
        }
    }
}

impl std::str::FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "Quiet" => Ok(Category::Quiet),
            "ILAP" => Ok(Category::Ilap),
            "NO PRED" => Ok(Category::NoPred),
            other => other
                .strip_suffix("h Alarm")
                .and_then(|h| h.trim().parse().ok())
                .map(Category::Alarm)
                .ok_or_else(|| format!("`{other}` is not a Table 2 category")),
        }
    }
}

/// One scored tile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TileAlarm {
    pub ar: u32,
    /// Paper tile number (k + 1).
    pub tile: u32,
    pub q_obs: Option<usize>,
    pub q_pred: Option<usize>,
    pub category: Category,
}

/// One AR's Emergence column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArAlarm {
    pub ar: u32,
    pub q_obs: Option<usize>,
    pub q_pred: Option<usize>,
    pub category: Category,
}

pub struct Scored {
    pub tiles: Vec<TileAlarm>,
    pub ars: Vec<ArAlarm>,
}

impl AlarmParams {
    pub fn criterion(&self) -> Criterion {
        Criterion {
            threshold: self.threshold,
            smoothing: self.smoothing,
            sustain: self.sustain,
        }
    }

    /// Table 2's lead: the horizon plus the distance from first predicted to first observed
    /// emergence on the plot axis.
    pub fn lead(&self, q_obs: usize, q_pred: usize) -> i64 {
        self.horizon_hours + q_obs as i64 + self.lead_offset - q_pred as i64
    }

    /// First observed emergence on the plot axis (history included), first predicted emergence
    /// at history + first(p) over the trimmed predictions.
    pub fn firsts(&self, g: &ArGeometry, ts: &TileSeries) -> (Option<usize>, Option<usize>) {
        let c = self.criterion();
        let q_obs = c.first(ts.observed_span(g));
        let q_pred = c.first(ts.predicted_span(g)).map(|j| g.history + j);
        (q_obs, q_pred)
    }

    /// The hours (series indices) at which a tile is alarmed in the operational replay: at hour
    /// s only the predictions of windows that have ended by s exist (at most the scored span),
    /// and the criterion runs on those alone, exactly as `forecast --replay` steps through
    /// them. The first is the first window's last input, the last the last scored window's.
    pub fn replay_alarm_hours(&self, g: &ArGeometry, predicted: &[f64]) -> Vec<usize> {
        let c = self.criterion();
        let span = g.span.min(predicted.len());
        (g.input - 1..=g.span + g.input - 2)
            .filter(|&s| c.first(&predicted[..(s + 2 - g.input).min(span)]).is_some())
            .collect()
    }

    /// A unit's replay outcome from its alarmed hours (ascending) and its first observed
    /// emergence on the plot axis.
    pub fn operational(&self, g: &ArGeometry, on: &[usize], q_obs: Option<usize>) -> Operational {
        let last = g.span + g.input - 2;
        Operational {
            alarmed: !on.is_empty(),
            lead_h: q_obs.and_then(|q| {
                let emerged = g.time_index(q);
                warning_start(on, emerged, last).map(|w| emerged as i64 - w as i64)
            }),
        }
    }

    pub fn score(&self, p: &Protocol, tiles: &BTreeMap<(u32, usize), TileSeries>) -> Scored {
        let mut out = Scored {
            tiles: Vec::new(),
            ars: Vec::new(),
        };
        let lead = |o, q| self.lead(o, q);
        for g in &p.ars {
            let (mut qo_min, mut qp_min): (Option<usize>, Option<usize>) = (None, None);
            for &k in &g.tiles {
                let (q_obs, q_pred) = self.firsts(g, &tiles[&(g.ar, k)]);
                qo_min = min_opt(qo_min, q_obs);
                qp_min = min_opt(qp_min, q_pred);
                out.tiles.push(TileAlarm {
                    ar: g.ar,
                    tile: k as u32 + 1,
                    q_obs,
                    q_pred,
                    category: Category::of(q_obs, q_pred, lead),
                });
            }
            out.ars.push(ArAlarm {
                ar: g.ar,
                q_obs: qo_min,
                q_pred: qp_min,
                category: Category::of(qo_min, qp_min, lead),
            });
        }
        out
    }
}

/// The alarm that counts for an emergence observed at hour `emerged`: the start of the alarm
/// episode in force then (an alarm raised and withdrawn before it does not count), else the
/// first raised after it (a late alarm, negative lead). `on` lists the alarmed hours ascending;
/// past the replay's `last` hour the alarm is taken to stay as it was.
pub fn warning_start(on: &[usize], emerged: usize, last: usize) -> Option<usize> {
    let at = emerged.min(last);
    match on.binary_search(&at) {
        Ok(mut i) => {
            while i > 0 && on[i - 1] + 1 == on[i] {
                i -= 1;
            }
            Some(on[i])
        }
        Err(i) => on.get(i).copied(),
    }
}

/// What an operator saw of one scored unit (a tile, or an AR: any of its tiles) in the
/// operational replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operational {
    /// Alarmed at any hour of the replay.
    pub alarmed: bool,
    /// The emergence hour minus the start of the warning in force then ([`warning_start`]).
    pub lead_h: Option<i64>,
}

fn min_opt(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Markdown laid out like the paper's Table 2: one row per AR, the scored tiles, Emergence.
pub fn table2_markdown(s: &Scored) -> String {
    let width = s
        .ars
        .iter()
        .map(|a| s.tiles.iter().filter(|t| t.ar == a.ar).count())
        .max()
        .unwrap_or(0);
    let mut header: Vec<String> = vec!["AR".into()];
    header.extend((1..=width).map(|i| format!("tile {i}")));
    header.push("Emergence".into());
    let rows: Vec<Vec<String>> = s
        .ars
        .iter()
        .map(|a| {
            let mut r = vec![format!("AR{}", a.ar)];
            r.extend(
                s.tiles
                    .iter()
                    .filter(|t| t.ar == a.ar)
                    .map(|t| format!("{} {}", t.tile, t.category)),
            );
            r.push(a.category.to_string());
            r
        })
        .collect();
    let h: Vec<&str> = header.iter().map(String::as_str).collect();
    table::markdown(&h, &rows)
}

/// Operational successes over the ARs' Emergence column: (≥ delay, > delay, ARs).
pub fn successes(s: &Scored, delay: i64) -> (usize, usize, usize) {
    let leads: Vec<i64> = s.ars.iter().filter_map(|a| a.category.lead()).collect();
    (
        leads.iter().filter(|&&l| l >= delay).count(),
        leads.iter().filter(|&&l| l > delay).count(),
        s.ars.len(),
    )
}

/// Colour class of a cell (paper: green success/Quiet, orange delayed, red ILAP; NO PRED, which
/// the paper leaves uncoloured, is a missed emergence and shown red as well).
/// The delay Table 2 is judged against unless a stage's `delay_hours` says otherwise (the
/// study's 4 h: an alarm must come more than, or at least, this long before emergence).
pub const DEFAULT_DELAY_HOURS: i64 = 4;

/// The delay of a plan's (first) `score_alarms` stage, or the default when it has none.
pub fn plan_delay_hours(plan: &magpipe_engine::plan::Plan) -> i64 {
    plan.stages
        .iter()
        .find(|s| s.kind.name() == <ScoreAlarms as crate::kind::TypedKind>::NAME)
        .map_or(DEFAULT_DELAY_HOURS, |s| delay_hours(&s.params))
}

/// The `delay_hours` of a `score_alarms` or `render_tables` stage's resolved params.
pub fn delay_hours(params: &serde_json::Value) -> i64 {
    params["delay_hours"]
        .as_i64()
        .unwrap_or(DEFAULT_DELAY_HOURS)
}

/// One cell of the `table2.csv` that `score_alarms` writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Table2Row {
    pub ar: String,
    /// A tile number, or `Emergence` for the AR's own row.
    pub tile: String,
    pub category: String,
    pub lead_h: Option<i64>,
}

/// Reads a `table2.csv` by its column names; the one reader of that file.
pub fn read_table2_csv(text: &str) -> Result<Vec<Table2Row>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |n: &str| {
        header
            .iter()
            .position(|h| *h == n)
            .ok_or_else(|| format!("no column `{n}`"))
    };
    let (ar, tile, cat, lead) = (col("ar")?, col("tile")?, col("category")?, col("lead_h")?);
    let need = ar.max(tile).max(cat).max(lead);
    lines
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() <= need {
                return Err(format!(
                    "line {}: {} fields, expected {}",
                    i + 2,
                    f.len(),
                    header.len()
                ));
            }
            Ok(Table2Row {
                ar: f[ar].to_string(),
                tile: f[tile].to_string(),
                category: f[cat].to_string(),
                lead_h: f[lead].parse().ok(),
            })
        })
        .collect()
}

pub fn status(c: Category, delay: i64) -> &'static str {
    match c {
        Category::Quiet => "quiet",
        Category::Ilap => "false alarm",
        Category::NoPred => "missed",
        Category::Alarm(h) if h >= delay => "success",
        Category::Alarm(_) => "delayed",
    }
}

pub struct ScoreAlarms;

impl TypedKind for ScoreAlarms {
    const INPUT_CONTRACTS: &'static [magpipe_engine::kind::InputContract] =
        &crate::contract_names::predictor_slot("predictors");
    type Params = AlarmParams;
    const NAME: &'static str = "score_alarms";
    const VERSION: u32 = 1;
    const DOC: &'static str = "The emergence criterion on observed and predicted flux per scored \
        tile: categories, alarm leads, per-AR Emergence and operational success (Table 2), for \
        every listed predictor.";
    const INPUTS: &'static [InputSlot] =
        &[crate::protocol::PROTOCOL_SLOT, crate::protocol::TEST_SLOT];
    const LIST_INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "predictors",
        doc: "predict / baseline stages (whole stages: predictions and summary are read)",
    }];
    const OUTPUTS: &'static [OutputSlot] = &[
        OutputSlot {
            name: "alarms",
            file: "alarms.parquet",
            doc: "every predictor: per tile and per AR (tile null) first emergences, category, lead",
        },
        OutputSlot {
            name: "table2",
            file: "table2.csv",
            doc: "the primary predictor's Table 2: ar, tile, observed_first, predicted_first, category, lead_h",
        },
        OutputSlot {
            name: "table2_md",
            file: "table2.md",
            doc: "the primary predictor's Table 2 laid out like the paper's",
        },
        OutputSlot {
            name: "criterion",
            file: "criterion.json",
            doc: "the criterion and lead params used, for the figures",
        },
    ];

    fn check(p: &AlarmParams) -> Result<(), ParamError> {
        p.criterion().check().map_err(|msg| ParamError::Invalid {
            name: if msg.starts_with("threshold") {
                "threshold".into()
            } else if msg.starts_with("smoothing") {
                "smoothing".into()
            } else {
                "sustain".into()
            },
            msg,
        })?;
        if !(0..=1).contains(&p.lead_offset) {
            return Err(ParamError::Invalid {
                name: "lead_offset".into(),
                msg: "must be 0 (paper text) or 1 (published table code)".into(),
            });
        }
        Ok(())
    }

    /// Every Table 2 cell, and the successful ARs under both readings of the delay.
    fn metrics(p: &AlarmParams, run: &crate::kind::Finished<'_>) -> Vec<crate::kind::Metric> {
        use crate::kind::Metric;
        let Some(rows) = run
            .outputs
            .get("table2")
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| read_table2_csv(&text).ok())
        else {
            return Vec::new();
        };
        let delay = p.delay_hours;
        let mut out = Vec::new();
        let (mut ge, mut gt, mut n) = (0, 0, 0);
        for r in &rows {
            out.push(Metric::detail(
                format!("Table 2 {} {}", r.ar, r.tile),
                r.category.clone(),
            ));
            if r.tile == "Emergence" {
                n += 1;
                ge += r.lead_h.is_some_and(|l| l >= delay) as usize;
                gt += r.lead_h.is_some_and(|l| l > delay) as usize;
            }
        }
        if n > 0 {
            out.push(Metric::summary(
                format!("successful ARs (lead ≥ {delay} h)"),
                format!("{ge}/{n}"),
            ));
            out.push(Metric::summary(
                format!("successful ARs (lead > {delay} h)"),
                format!("{gt}/{n}"),
            ));
        }
        if let Some(path) = run.outputs.get("alarms") {
            out.extend(others_metrics(path, delay));
        }
        out
    }

    fn run(p: &AlarmParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let proto = Protocol::read(ctx.input("protocol")?)?;
        let series = SeriesTable::read(ctx.input("test")?)?;
        let entries = ctx.list("predictors");
        if entries.is_empty() {
            return Err(StageError::Invalid(
                "no predictors: list predict or baseline stages under `inputs.predictors`".into(),
            ));
        }
        let mut cols = AlarmCols::default();
        let mut primary = None;
        let mut labels = Vec::new();
        for e in &entries {
            let path = e.output("predictions")?;
            let df = table::read_parquet(path)?;
            let (_, tiles) =
                read_predictions(&df, &proto).map_err(|m| StageError::table(path, m))?;
            let summary = PredictorSummary::read(e.output("summary")?)?;
            let label = summary.predictor.clone();
            let s = p.score(&proto, &tiles);
            let is_primary = primary.is_none()
                && match &p.primary {
                    Some(want) => want == &label || want == &e.stage,
                    None => true,
                };
            cols.push(&label, is_primary, &proto, &series, &s, p);
            if is_primary {
                primary = Some((label.clone(), s));
            }
            labels.push(label);
        }
        let Some((plabel, ps)) = primary else {
            return Err(StageError::Invalid(format!(
                "primary predictor `{}` is not among the predictors ({})",
                p.primary.clone().unwrap_or_default(),
                labels.join(", ")
            )));
        };
        let path = ctx.output("alarms.parquet");
        let mut df = cols.frame().map_err(|e| StageError::table(&path, e))?;
        table::write_parquet(&mut df, &path)?;

        let csv = table2_csv(&proto, &series, &ps, p.delay_hours);
        let cp = ctx.output("table2.csv");
        std::fs::write(&cp, csv).map_err(|e| StageError::io(&cp, e))?;
        let md = format!(
            "# Table 2 — {plabel}\n\n{}\n{}\n",
            table2_markdown(&ps),
            success_line(&ps, p.delay_hours)
        );
        let crit = ctx.output("criterion.json");
        std::fs::write(
            &crit,
            serde_json::to_string_pretty(p).expect("serialises") + "\n",
        )
        .map_err(|e| StageError::io(&crit, e))?;
        let mp = ctx.output("table2.md");
        std::fs::write(&mp, &md).map_err(|e| StageError::io(&mp, e))?;
        let em: Vec<String> = ps
            .ars
            .iter()
            .map(|a| format!("AR{} {}", a.ar, a.category))
            .collect();
        Ok(Report {
            summary: format!("{plabel}: {}", em.join(", ")),
            stdout: None,
            facts: json!({
                "primary": plabel,
                "emergence": ps.ars.iter().map(|a| (format!("AR{}", a.ar), a.category.to_string())).collect::<BTreeMap<_, _>>(),
            }),
        })
    }
}

/// Every predictor's Table 2 but the primary's (which `table2.csv` holds), from
/// `alarms.parquet`: so `compare` shows a change in a model's alarms even when it is not the one
/// Table 2 is scored on. Per predictor its successes, then each cell as a detail.
fn others_metrics(path: &std::path::Path, delay: i64) -> Vec<crate::kind::Metric> {
    use crate::kind::Metric;
    let Ok(df) = table::read_parquet(path) else {
        return Vec::new();
    };
    let cols = (
        df.column("predictor").and_then(|c| c.str().cloned()),
        df.column("primary").and_then(|c| c.bool().cloned()),
        df.column("ar").and_then(|c| c.u32().cloned()),
        df.column("tile").and_then(|c| c.u32().cloned()),
        df.column("category").and_then(|c| c.str().cloned()),
        df.column("lead_h").and_then(|c| c.i64().cloned()),
    );
    let (Ok(pred), Ok(primary), Ok(ar), Ok(tile), Ok(cat), Ok(lead)) = cols else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // predictor → (lead ≥ delay, lead > delay, emergences), in the order they were scored.
    let mut counts: Vec<(String, usize, usize, usize)> = Vec::new();
    for i in 0..df.height() {
        if primary.get(i).unwrap_or(true) {
            continue;
        }
        let (Some(label), Some(a), Some(c)) = (pred.get(i), ar.get(i), cat.get(i)) else {
            continue;
        };
        let where_ = tile
            .get(i)
            .map_or("Emergence".to_string(), |t| t.to_string());
        out.push(Metric::detail(
            format!("Table 2 ({label}) AR{a} {where_}"),
            c.to_string(),
        ));
        if tile.get(i).is_none() {
            let at = match counts.iter().position(|(l, ..)| l == label) {
                Some(at) => at,
                None => {
                    counts.push((label.to_string(), 0, 0, 0));
                    counts.len() - 1
                }
            };
            let l = lead.get(i);
            counts[at].1 += l.is_some_and(|l| l >= delay) as usize;
            counts[at].2 += l.is_some_and(|l| l > delay) as usize;
            counts[at].3 += 1;
        }
    }
    for (label, ge, gt, n) in counts {
        out.push(Metric::summary(
            format!("successful ARs ({label}, lead ≥ {delay} h)"),
            format!("{ge}/{n}"),
        ));
        out.push(Metric::summary(
            format!("successful ARs ({label}, lead > {delay} h)"),
            format!("{gt}/{n}"),
        ));
    }
    out
}

pub fn success_line(s: &Scored, delay: i64) -> String {
    let (ge, gt, n) = successes(s, delay);
    format!(
        "Operationally successful ARs after the {delay}-h processing delay: {ge}/{n} counting \
         leads ≥ {delay} h, {gt}/{n} counting leads > {delay} h."
    )
}

fn time_at(series: &SeriesTable, g: &ArGeometry, q: Option<usize>) -> String {
    q.map(|q| {
        let b = series.block(g.ar).expect("a test AR");
        format_micros(b.times[g.time_index(q.min(g.axis_len - 1))])
    })
    .unwrap_or_default()
}

fn table2_csv(p: &Protocol, series: &SeriesTable, s: &Scored, delay: i64) -> String {
    let mut out = String::from(
        "ar,tile,observed_first,predicted_first,observed_first_q,predicted_first_q,category,lead_h,status\n",
    );
    let q = |v: Option<usize>| v.map(|v| v.to_string()).unwrap_or_default();
    let row = |out: &mut String, ar: u32, tile: String, qo, qp, c: Category, g: &ArGeometry| {
        out.push_str(&format!(
            "AR{ar},{tile},{},{},{},{},{c},{},{}\n",
            time_at(series, g, qo),
            time_at(series, g, qp),
            q(qo),
            q(qp),
            c.lead().map(|l| l.to_string()).unwrap_or_default(),
            status(c, delay)
        ));
    };
    for g in &p.ars {
        for t in s.tiles.iter().filter(|t| t.ar == g.ar) {
            row(
                &mut out,
                g.ar,
                t.tile.to_string(),
                t.q_obs,
                t.q_pred,
                t.category,
                g,
            );
        }
        if let Some(a) = s.ars.iter().find(|a| a.ar == g.ar) {
            row(
                &mut out,
                g.ar,
                "Emergence".into(),
                a.q_obs,
                a.q_pred,
                a.category,
                g,
            );
        }
    }
    out
}

#[derive(Default)]
struct AlarmCols {
    predictor: Vec<String>,
    primary: Vec<bool>,
    ar: Vec<u32>,
    tile: Vec<Option<u32>>,
    q_obs: Vec<Option<u32>>,
    q_pred: Vec<Option<u32>>,
    obs_time: Vec<Option<String>>,
    pred_time: Vec<Option<String>>,
    category: Vec<String>,
    lead: Vec<Option<i64>>,
    status: Vec<&'static str>,
}

impl AlarmCols {
    fn push(
        &mut self,
        label: &str,
        primary: bool,
        p: &Protocol,
        series: &SeriesTable,
        s: &Scored,
        ap: &AlarmParams,
    ) {
        let mut one =
            |ar: u32, tile: Option<u32>, qo: Option<usize>, qp: Option<usize>, c: Category| {
                let g = p.ars.iter().find(|g| g.ar == ar).expect("a protocol AR");
                self.predictor.push(label.to_string());
                self.primary.push(primary);
                self.ar.push(ar);
                self.tile.push(tile);
                self.q_obs.push(qo.map(|v| v as u32));
                self.q_pred.push(qp.map(|v| v as u32));
                self.obs_time.push(qo.map(|_| time_at(series, g, qo)));
                self.pred_time.push(qp.map(|_| time_at(series, g, qp)));
                self.category.push(c.to_string());
                self.lead.push(c.lead());
                self.status.push(status(c, ap.delay_hours));
            };
        for a in &s.ars {
            for t in s.tiles.iter().filter(|t| t.ar == a.ar) {
                one(t.ar, Some(t.tile), t.q_obs, t.q_pred, t.category);
            }
            one(a.ar, None, a.q_obs, a.q_pred, a.category);
        }
    }

    fn frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new(
            self.ar.len(),
            vec![
                Column::new("predictor".into(), self.predictor),
                Column::new("primary".into(), self.primary),
                Column::new("ar".into(), self.ar),
                Column::new("tile".into(), self.tile),
                Column::new("observed_first_q".into(), self.q_obs),
                Column::new("predicted_first_q".into(), self.q_pred),
                Column::new("observed_first".into(), self.obs_time),
                Column::new("predicted_first".into(), self.pred_time),
                Column::new("category".into(), self.category),
                Column::new("lead_h".into(), self.lead),
                Column::new("status".into(), self.status),
            ],
        )
    }
}

/// The alarms table read back: predictor → Scored, in the order written.
pub fn read_alarms(df: &DataFrame) -> Result<Vec<(String, Scored)>, String> {
    let col = |n: &str| df.column(n).map_err(|_| format!("column `{n}` is missing"));
    let pred = col("predictor")?.str().map_err(|e| e.to_string())?.clone();
    let ar = col("ar")?.u32().map_err(|e| e.to_string())?.clone();
    let tile = col("tile")?.u32().map_err(|e| e.to_string())?.clone();
    let qo = col("observed_first_q")?
        .u32()
        .map_err(|e| e.to_string())?
        .clone();
    let qp = col("predicted_first_q")?
        .u32()
        .map_err(|e| e.to_string())?
        .clone();
    let cat = col("category")?.str().map_err(|e| e.to_string())?.clone();
    let mut out: Vec<(String, Scored)> = Vec::new();
    for i in 0..df.height() {
        let label = pred.get(i).unwrap_or_default().to_string();
        if out.last().map(|(l, _)| l != &label).unwrap_or(true) {
            out.push((
                label,
                Scored {
                    tiles: Vec::new(),
                    ars: Vec::new(),
                },
            ));
        }
        let s = &mut out.last_mut().expect("pushed").1;
        let category: Category = cat.get(i).unwrap_or_default().parse()?;
        let (a, qo, qp) = (
            ar.get(i).ok_or("null ar")?,
            qo.get(i).map(|v| v as usize),
            qp.get(i).map(|v| v as usize),
        );
        match tile.get(i) {
            Some(t) => s.tiles.push(TileAlarm {
                ar: a,
                tile: t,
                q_obs: qo,
                q_pred: qp,
                category,
            }),
            None => s.ars.push(ArAlarm {
                ar: a,
                q_obs: qo,
                q_pred: qp,
                category,
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_print_and_parse_like_the_paper() {
        for (c, s) in [
            (Category::Quiet, "Quiet"),
            (Category::Ilap, "ILAP"),
            (Category::NoPred, "NO PRED"),
            (Category::Alarm(4), "4h Alarm"),
            (Category::Alarm(-3), "-3h Alarm"),
        ] {
            assert_eq!(c.to_string(), s);
            assert_eq!(s.parse::<Category>().unwrap(), c);
        }
        assert!("4 h alarm".parse::<Category>().is_err());
    }

    #[test]
    fn lead_follows_the_paper_text_or_the_published_code() {
        let p = AlarmParams::default();
        assert_eq!(p.lead(60, 68), 4); // 12 + 60 − 68
        let code = AlarmParams {
            lead_offset: 1,
            ..AlarmParams::default()
        };
        assert_eq!(code.lead(60, 68), 5);
        let lead = |o, q| p.lead(o, q);
        assert_eq!(Category::of(None, None, lead), Category::Quiet);
        assert_eq!(Category::of(None, Some(3), lead), Category::Ilap);
        assert_eq!(Category::of(Some(3), None, lead), Category::NoPred);
    }

    #[test]
    fn success_is_counted_both_ways() {
        let s = Scored {
            tiles: Vec::new(),
            ars: [7, 4, 7, 3, 10]
                .iter()
                .enumerate()
                .map(|(i, &h)| ArAlarm {
                    ar: i as u32,
                    q_obs: None,
                    q_pred: None,
                    category: Category::Alarm(h),
                })
                .collect(),
        };
        // The published Emergence column: 4/5 with ≥ 4 h, the paper's "3 of 5" with > 4 h.
        assert_eq!(successes(&s, 4), (4, 3, 5));
    }

    #[test]
    fn table2_csv_is_read_by_column_name_and_short_rows_are_refused() {
        let text = "tile,ar,lead_h,category\n1,AR11698,12,12 h Alarm\nEmergence,AR11698,,Quiet\n";
        let rows = read_table2_csv(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].ar.as_str(), rows[0].lead_h), ("AR11698", Some(12)));
        assert_eq!((rows[1].tile.as_str(), rows[1].lead_h), ("Emergence", None));
        let e = read_table2_csv("ar,tile,category,lead_h\nAR1,2\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(
            read_table2_csv("ar,tile\n")
                .unwrap_err()
                .contains("category")
        );
        assert_eq!(delay_hours(&serde_json::json!({})), DEFAULT_DELAY_HOURS);
        assert_eq!(delay_hours(&serde_json::json!({"delay_hours": 6})), 6);
    }
}
