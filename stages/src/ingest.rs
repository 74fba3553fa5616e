//! `ingest_solared`: every AR folder → one tidy Parquet table plus a per-AR inventory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use polars::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kind::{Context, InputSlot, OutputSlot, Report, Source, StageError, TypedKind};
use crate::solared::{self, ArSeries, GRID, TILES, time::format_micros};
use crate::table;

#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestParams {
    /// The folder holding the `AR<n>/` folders. A location, not content: it is not in the key,
    /// the files' names and hashes are.
    pub data_dir: String,
    /// Restrict to these ARs (empty: every AR folder found).
    pub ars: Vec<u32>,
}

impl Default for IngestParams {
    fn default() -> Self {
        IngestParams {
            data_dir: "data/solared".into(),
            ars: Vec::new(),
        }
    }
}

impl IngestParams {
    fn ars(&self) -> Result<Vec<u32>, StageError> {
        let dir = PathBuf::from(&self.data_dir);
        let found = solared::list_ars(&dir)?;
        if self.ars.is_empty() {
            return Ok(found);
        }
        for ar in &self.ars {
            if !found.contains(ar) {
                return Err(solared::SolaredError::Missing {
                    path: dir.join(format!("AR{ar}")),
                    what: "AR folder is missing (listed in params.ars)".into(),
                }
                .into());
            }
        }
        Ok(self.ars.clone())
    }
}

pub struct Ingest;

/// One AR's inventory line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    pub ar: u32,
    pub t: usize,
    pub first: i64,
    pub last: i64,
    /// NaN counts over the whole (81, T) arrays, in table channel order.
    pub nan: [usize; 6],
    /// NaN counts over the central row (k = 36–44), same order.
    pub central_nan: [usize; 6],
    /// Steps whose spacing is not one hour: (i, Δ hours) for the step i → i+1.
    pub gaps: Vec<(usize, f64)>,
    /// Inclusive index ranges of consecutive frames with bit-identical Ic and |B|.
    pub repeated: Vec<(usize, usize)>,
}

pub fn inventory(s: &ArSeries) -> Inventory {
    let t = s.len();
    let chans = s.channels();
    let central = 4 * GRID * t..5 * GRID * t;
    let nan = chans.map(|c| c.iter().filter(|x| x.is_nan()).count());
    let central_nan = chans.map(|c| c[central.clone()].iter().filter(|x| x.is_nan()).count());
    let gaps = s
        .times
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] - w[0] != 3_600_000_000)
        .map(|(i, w)| (i, (w[1] - w[0]) as f64 / 3.6e9))
        .collect();
    let same = |a: usize, b: usize| {
        (0..TILES).all(|k| {
            s.ic[k * t + a].to_bits() == s.ic[k * t + b].to_bits()
                && s.flux[k * t + a].to_bits() == s.flux[k * t + b].to_bits()
        })
    };
    let mut repeated = Vec::new();
    let mut i = 0;
    while i + 1 < t {
        if same(i, i + 1) {
            let start = i;
            while i + 1 < t && same(i, i + 1) {
                i += 1;
            }
            repeated.push((start, i));
        }
        i += 1;
    }
    Inventory {
        ar: s.ar,
        t,
        first: s.times.first().copied().unwrap_or(0),
        last: s.times.last().copied().unwrap_or(0),
        nan,
        central_nan,
        gaps,
        repeated,
    }
}

fn fmt_hours(h: f64) -> String {
    if h.fract() == 0.0 {
        format!("{h:.0} h")
    } else {
        format!("{h} h")
    }
}

impl Inventory {
    pub fn gaps_text(&self) -> String {
        self.gaps
            .iter()
            .map(|(i, h)| format!("{}→{}: {}", i, i + 1, fmt_hours(*h)))
            .collect::<Vec<_>>()
            .join(", ")
    }
    pub fn repeated_text(&self) -> String {
        self.repeated
            .iter()
            .map(|(a, b)| format!("{a}–{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn inventory_frame(inv: &[Inventory]) -> PolarsResult<DataFrame> {
    let dt = |name: &str, f: fn(&Inventory) -> i64| {
        Int64Chunked::from_vec(name.into(), inv.iter().map(f).collect())
            .into_datetime(TimeUnit::Microseconds, None)
            .into_column()
    };
    let mut cols = vec![
        Column::new("ar".into(), inv.iter().map(|i| i.ar).collect::<Vec<_>>()),
        Column::new(
            "T".into(),
            inv.iter().map(|i| i.t as u32).collect::<Vec<_>>(),
        ),
        dt("first_time", |i| i.first),
        dt("last_time", |i| i.last),
    ];
    for (c, name) in table::CHANNELS.iter().enumerate() {
        cols.push(Column::new(
            format!("nan_{name}").into(),
            inv.iter().map(|i| i.nan[c] as u32).collect::<Vec<_>>(),
        ));
    }
    for (c, name) in table::CHANNELS.iter().enumerate() {
        cols.push(Column::new(
            format!("central_nan_{name}").into(),
            inv.iter()
                .map(|i| i.central_nan[c] as u32)
                .collect::<Vec<_>>(),
        ));
    }
    cols.push(Column::new(
        "gaps".into(),
        inv.iter().map(Inventory::gaps_text).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "repeated".into(),
        inv.iter().map(Inventory::repeated_text).collect::<Vec<_>>(),
    ));
    DataFrame::new(inv.len(), cols)
}

pub fn inventory_markdown(inv: &[Inventory]) -> String {
    let dash = |s: String| if s.is_empty() { "–".to_string() } else { s };
    let power_nan = |n: &[usize; 6]| table::POWER.iter().map(|&c| n[c]).max().unwrap_or(0);
    let rows: Vec<Vec<String>> = inv
        .iter()
        .map(|i| {
            vec![
                i.ar.to_string(),
                i.t.to_string(),
                format_micros(i.first)[..21].to_string(),
                format_micros(i.last)[..21].to_string(),
                format!("{}/{}/{}", i.nan[0], i.nan[1], power_nan(&i.nan)),
                format!(
                    "{}/{}/{}",
                    i.central_nan[0],
                    i.central_nan[1],
                    power_nan(&i.central_nan)
                ),
                dash(i.gaps_text()),
                dash(i.repeated_text()),
            ]
        })
        .collect();
    table::markdown(
        &[
            "AR",
            "T",
            "first timestamp",
            "last timestamp",
            "NaN Ic/|B|/P",
            "central NaN",
            "gaps",
            "repeated",
        ],
        &rows,
    )
}

pub const OUTPUTS: &[OutputSlot] = &[
    OutputSlot {
        name: "series",
        file: "series.parquet",
        doc: "tidy raw series: ar, tile, t, time, ic, flux, p23, p34, p45, p56 (NaN preserved)",
    },
    OutputSlot {
        name: "inventory",
        file: "inventory.parquet",
        doc: "per-AR inventory: T, first/last time, NaN counts, gaps, repeated frames",
    },
    OutputSlot {
        name: "inventory_md",
        file: "inventory.md",
        doc: "the inventory as a Markdown table",
    },
];

impl TypedKind for Ingest {
    type Params = IngestParams;
    const NAME: &'static str = "ingest_solared";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Reads every SolARED AR folder (three npz files each), validates them \
        against each other and writes one tidy Parquet table plus a per-AR inventory.";
    const INPUTS: &'static [InputSlot] = &[];
    const OUTPUTS: &'static [OutputSlot] = OUTPUTS;

    fn key_params(p: &IngestParams) -> serde_json::Value {
        json!({ "ars": p.ars })
    }

    fn sources(p: &IngestParams) -> Result<Vec<Source>, StageError> {
        let dir = PathBuf::from(&p.data_dir);
        let mut out = Vec::new();
        for ar in p.ars()? {
            for path in solared::ar_files(&dir, ar) {
                let name = path
                    .strip_prefix(&dir)
                    .expect("under the data folder")
                    .to_string_lossy()
                    .into_owned();
                out.push(Source::data(name, path));
            }
        }
        Ok(out)
    }

    fn run(p: &IngestParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let dir = PathBuf::from(&p.data_dir);
        let ars = p.ars()?;
        let done = AtomicU64::new(0);
        let total = ars.len() as u64;
        ctx.events.progress(0, total, "ARs");
        // Each AR is read, checked, inventoried and encoded as its own row group on one thread,
        // while its arrays are still in cache; only the final write is sequential.
        let series = ctx.output("series.parquet");
        let per_ar: Vec<(Inventory, Vec<table::EncodedGroup>)> = ars
            .par_iter()
            .map(|&ar| {
                let s = solared::load_ar(&dir, ar)?;
                let inv = inventory(&s);
                let groups =
                    table::encode_block(s.into()).map_err(|e| StageError::table(&series, e))?;
                ctx.events
                    .progress(done.fetch_add(1, Ordering::Relaxed) + 1, total, "ARs");
                Ok((inv, groups))
            })
            .collect::<Result<_, StageError>>()?;
        let (inv, groups): (Vec<Inventory>, Vec<Vec<table::EncodedGroup>>) =
            per_ar.into_iter().unzip();
        let groups: Vec<table::EncodedGroup> = groups.into_iter().flatten().collect();
        table::write_series_groups(&groups, &series)?;
        let rows: usize = inv.iter().map(|i| TILES * i.t).sum();
        let path = ctx.output("inventory.parquet");
        let mut df = inventory_frame(&inv).map_err(|e| StageError::table(&path, e))?;
        table::write_parquet(&mut df, &path)?;
        let md = inventory_markdown(&inv);
        let md_path = ctx.output("inventory.md");
        std::fs::write(&md_path, &md).map_err(|e| StageError::io(&md_path, e))?;

        let with_nan = inv.iter().filter(|i| i.nan.iter().any(|&n| n > 0)).count();
        let with_gaps = inv.iter().filter(|i| !i.gaps.is_empty()).count();
        Ok(Report {
            summary: format!(
                "{} ARs, {} rows; {with_nan} ARs with NaNs, {with_gaps} with time gaps",
                inv.len(),
                rows
            ),
            stdout: Some(md),
            facts: json!({
                "ars": inv.len(),
                "rows": rows,
                "nan_per_ar": inv.iter().map(|i| json!({"ar": i.ar, "nan": i.nan})).collect::<Vec<_>>(),
            }),
        })
    }
}
