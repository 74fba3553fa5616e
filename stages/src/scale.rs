//! `minmax_scale`: NaN → fill value in raw units, then min-max scaling fitted on the training ARs'
//! central row only (docs/src/semantics.md §6), applied to every role without clamping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kind::{Context, InputSlot, OutputSlot, ParamError, Report, StageError, TypedKind};
use crate::solared::{GRID, TILES};
use crate::split;
use crate::table::{CHANNELS, FLUX, IC, POWER, SeriesTable};

#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMode {
    /// One pair pooled over the four power bands, one for Ic, one for flux (published code).
    #[default]
    SharedPower,
    /// One pair per channel (paper text: "independently to each input channel").
    PerChannel,
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleParams {
    pub mode: ScaleMode,
    /// Grid row whose 9 tiles the scaler is fitted on (4 = the central row, k = 36–44).
    pub fit_row: usize,
    /// Raw value that NaN samples become before scaling.
    pub nan_fill: f64,
}

impl Default for ScaleParams {
    fn default() -> Self {
        ScaleParams {
            mode: ScaleMode::SharedPower,
            fit_row: 4,
            nan_fill: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    const EMPTY: Range = Range {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };
    fn add(&mut self, x: f64) {
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }
    fn union(self, o: Range) -> Range {
        Range {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
    pub fn apply(&self, x: f64) -> f64 {
        (x - self.min) / (self.max - self.min)
    }
    pub fn invert(&self, x: f64) -> f64 {
        x * (self.max - self.min) + self.min
    }
}

/// The fitted scaler, written as human-readable JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub mode: ScaleMode,
    pub nan_fill: f64,
    pub fit_row: usize,
    pub fit_tiles: [usize; 2],
    pub fit_ars: Vec<u32>,
    /// Samples per channel the fit saw.
    pub fit_samples: usize,
    /// Raw extremes of each channel over the fit set (after the NaN fill): the per-band ranges.
    pub ranges: BTreeMap<String, Range>,
    /// The (min, max) pair applied to each channel.
    pub pairs: BTreeMap<String, Range>,
}

impl Scaler {
    pub fn pair(&self, channel: usize) -> Range {
        self.pairs[CHANNELS[channel]]
    }

    pub fn read(path: &std::path::Path) -> Result<Scaler, StageError> {
        let text = std::fs::read_to_string(path).map_err(|e| StageError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| StageError::table(path, e))
    }
}

pub fn fit(series: &SeriesTable, train: &[u32], p: &ScaleParams) -> Result<Scaler, StageError> {
    let mut ranges = [Range::EMPTY; 6];
    let tiles = GRID * p.fit_row..GRID * (p.fit_row + 1);
    let mut samples = 0;
    for &ar in train {
        let b = series.block(ar).ok_or_else(|| {
            StageError::Invalid(format!("training AR{ar} is not in the series table"))
        })?;
        for (c, r) in ranges.iter_mut().enumerate() {
            let v = series.channel(b, c);
            for k in tiles.clone() {
                for &x in &v[k * b.len()..(k + 1) * b.len()] {
                    r.add(if x.is_nan() { p.nan_fill } else { x });
                }
            }
        }
        samples += tiles.len() * b.len();
    }
    let mut pairs = ranges;
    if p.mode == ScaleMode::SharedPower {
        let pooled = POWER
            .iter()
            .fold(Range::EMPTY, |acc, &c| acc.union(ranges[c]));
        for c in POWER {
            pairs[c] = pooled;
        }
    }
    for (c, r) in pairs.iter().enumerate() {
        // Also catches an empty fit set, where the extremes stay infinite.
        if !r.min.is_finite() || !r.max.is_finite() || r.max <= r.min {
            return Err(StageError::Invalid(format!(
                "cannot scale channel `{}`: its training range is [{}, {}]",
                CHANNELS[c], r.min, r.max
            )));
        }
    }
    let named = |rs: [Range; 6]| -> BTreeMap<String, Range> {
        CHANNELS.iter().map(|c| c.to_string()).zip(rs).collect()
    };
    Ok(Scaler {
        mode: p.mode,
        nan_fill: p.nan_fill,
        fit_row: p.fit_row,
        fit_tiles: [tiles.start, tiles.end - 1],
        fit_ars: train.to_vec(),
        fit_samples: samples,
        ranges: named(ranges),
        pairs: named(pairs),
    })
}

/// The rows of `ars` (in that order), NaN-filled and scaled.
pub fn apply(series: &SeriesTable, ars: &[u32], s: &Scaler) -> Result<SeriesTable, StageError> {
    let mut out = SeriesTable::default();
    for &ar in ars {
        let b = series
            .block(ar)
            .ok_or_else(|| StageError::Invalid(format!("AR{ar} is not in the series table")))?;
        let scaled: [Vec<f64>; 6] = std::array::from_fn(|c| {
            let r = s.pair(c);
            series
                .channel(b, c)
                .iter()
                .map(|&x| r.apply(if x.is_nan() { s.nan_fill } else { x }))
                .collect()
        });
        out.push(ar, b.times.clone(), scaled);
    }
    Ok(out)
}

pub struct MinMaxScale;

impl TypedKind for MinMaxScale {
    const CONTRACTS: &'static [(&'static str, &'static str)] = &[
        ("train", crate::contract_names::SERIES),
        ("val", crate::contract_names::SERIES),
        ("test", crate::contract_names::SERIES),
    ];
    type Params = ScaleParams;
    const NAME: &'static str = "minmax_scale";
    const VERSION: u32 = 1;
    const DOC: &'static str = "NaN→fill in raw units, then min-max scaling fitted on the training \
        ARs' central row only; writes the scaler and the scaled series per role.";
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "series",
            doc: "the ingested raw series",
        },
        InputSlot {
            name: "splits",
            doc: "the AR roles",
        },
    ];
    const OUTPUTS: &'static [OutputSlot] = &[
        OutputSlot {
            name: "scaler",
            file: "scaler.json",
            doc: "fitted constants, per-band raw ranges and fit provenance",
        },
        OutputSlot {
            name: "train",
            file: "train.parquet",
            doc: "scaled series of the training ARs (split order, all 81 tiles)",
        },
        OutputSlot {
            name: "val",
            file: "val.parquet",
            doc: "scaled series of the validation ARs",
        },
        OutputSlot {
            name: "test",
            file: "test.parquet",
            doc: "scaled series of the test ARs",
        },
    ];

    fn check(p: &ScaleParams) -> Result<(), ParamError> {
        if p.fit_row >= GRID {
            return Err(ParamError::Invalid {
                name: "fit_row".into(),
                msg: format!("row {} is outside the 9×9 grid (0–8)", p.fit_row),
            });
        }
        if !p.nan_fill.is_finite() {
            return Err(ParamError::Invalid {
                name: "nan_fill".into(),
                msg: "must be a finite number".into(),
            });
        }
        Ok(())
    }

    fn run(p: &ScaleParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let series = SeriesTable::read(ctx.input("series")?)?;
        let split = split::read(ctx.input("splits")?)?;
        ctx.events.progress(0, 4, "steps");
        let scaler = fit(&series, &split["train"], p)?;
        let path = ctx.output("scaler.json");
        let text = serde_json::to_string_pretty(&scaler).expect("scaler serialises") + "\n";
        std::fs::write(&path, text).map_err(|e| StageError::io(&path, e))?;
        for (i, role) in ["train", "val", "test"].into_iter().enumerate() {
            apply(&series, &split[role], &scaler)?
                .write(&ctx.output(&format!("{role}.parquet")))?;
            ctx.events.progress(i as u64 + 2, 4, "steps");
        }
        let pr = |c: usize| {
            let r = scaler.pair(c);
            format!("[{:.6e}, {:.6e}]", r.min, r.max)
        };
        Ok(Report {
            summary: format!(
                "{} fit on {} train ARs × {} tiles: power {} Ic {} flux {}",
                serde_json::to_value(p.mode)
                    .expect("mode serialises")
                    .as_str()
                    .unwrap_or("?"),
                scaler.fit_ars.len(),
                GRID,
                pr(POWER[0]),
                pr(IC),
                pr(FLUX)
            ),
            stdout: None,
            facts: json!({ "pairs": scaler.pairs, "ranges": scaler.ranges, "tiles": TILES }),
        })
    }
}
