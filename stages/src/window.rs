//! `window`: sliding windows over the scaled central-row series (docs/src/semantics.md §7), written as
//! safetensors `x` (N, W, 5) and `y` (N, P) in f32, plus an index of where each window came from.

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kind::{Context, InputSlot, OutputSlot, ParamError, Report, StageError, TypedKind};
use crate::solared::GRID;
use crate::table::{self, FEATURES, FLUX, SeriesTable};

#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowParams {
    /// Input width W (hours).
    pub input: usize,
    /// Output length P (hours).
    pub horizon: usize,
    /// Hours between the starts of consecutive windows.
    pub stride: usize,
    /// 0: the target starts at the last input step (published code); 1: the next P hours (true
    /// P-hour horizon, paper text).
    pub target_offset: usize,
    /// Grid row whose 9 tiles are windowed (4 = central row, k = 36–44).
    pub row: usize,
}

impl Default for WindowParams {
    fn default() -> Self {
        WindowParams {
            input: 110,
            horizon: 12,
            stride: 1,
            target_offset: 0,
            row: 4,
        }
    }
}

impl WindowParams {
    /// Window starts for a series of length `t`.
    pub fn starts(&self, t: usize) -> impl Iterator<Item = usize> + use<> {
        // Hours a window covers, first input to last target.
        let span = self.input - 1 + self.target_offset + self.horizon;
        (0..(t + 1).saturating_sub(span)).step_by(self.stride)
    }
}

/// Windows of one role, in the study's order: AR (table order) → tile ascending → start ascending.
pub struct Windows {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    /// (ar, tile, start) per window.
    pub index: Vec<(u32, u32, u32)>,
}

pub fn make(t: &SeriesTable, p: &WindowParams) -> Windows {
    let (w, h) = (p.input, p.horizon);
    let mut out = Windows {
        x: Vec::new(),
        y: Vec::new(),
        index: Vec::new(),
    };
    for b in &t.blocks {
        let feats: Vec<&[f64]> = FEATURES.iter().map(|&c| t.channel(b, c)).collect();
        let flux = t.channel(b, FLUX);
        let n = b.len();
        for k in GRID * p.row..GRID * (p.row + 1) {
            for i in p.starts(n) {
                for s in i..i + w {
                    out.x.extend(feats.iter().map(|f| f[k * n + s] as f32));
                }
                let y0 = k * n + i + w - 1 + p.target_offset;
                out.y.extend(flux[y0..y0 + h].iter().map(|&v| v as f32));
                out.index.push((b.ar, k as u32, i as u32));
            }
        }
    }
    out
}

fn write_tensors(path: &std::path::Path, w: &Windows, p: &WindowParams) -> Result<(), StageError> {
    let n = w.index.len();
    crate::table::write_f32(
        path,
        &[
            ("x".into(), vec![n, p.input, FEATURES.len()], w.x.as_slice()),
            ("y".into(), vec![n, p.horizon], w.y.as_slice()),
        ],
    )
    .map_err(|e| StageError::table(path, e))
}

pub struct Window;

impl TypedKind for Window {
    const CONTRACTS: &'static [(&'static str, &'static str)] = &[
        ("train", crate::contract_names::WINDOWS),
        ("val", crate::contract_names::WINDOWS),
    ];
    type Params = WindowParams;
    const NAME: &'static str = "window";
    const VERSION: u32 = 2;
    const DOC: &'static str = "Sliding windows (stride, input W, horizon P, target alignment) over \
        the scaled series of one grid row, for training and validation.";
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "train",
            doc: "scaled training series",
        },
        InputSlot {
            name: "val",
            doc: "scaled validation series",
        },
    ];
    const OUTPUTS: &'static [OutputSlot] = &[
        OutputSlot {
            name: "train",
            file: "train.safetensors",
            doc: "training windows: x (N, W, 5) features [p23, p34, p45, p56, ic], y (N, P) flux",
        },
        OutputSlot {
            name: "val",
            file: "val.safetensors",
            doc: "validation windows, same layout",
        },
        OutputSlot {
            name: "index",
            file: "index.parquet",
            doc: "split, n, ar, tile, start, last input, first target and horizon of every window",
        },
    ];

    fn check(p: &WindowParams) -> Result<(), ParamError> {
        let bad = |name: &str, msg: &str| {
            Err(ParamError::Invalid {
                name: name.into(),
                msg: msg.into(),
            })
        };
        if p.input == 0 {
            return bad("input", "must be at least 1");
        }
        if p.horizon == 0 {
            return bad("horizon", "must be at least 1");
        }
        if p.stride == 0 {
            return bad("stride", "must be at least 1");
        }
        if p.target_offset > 1 {
            return bad(
                "target_offset",
                "must be 0 (published code) or 1 (paper text)",
            );
        }
        if p.row >= GRID {
            return bad("row", "must be a grid row, 0–8");
        }
        Ok(())
    }

    fn run(p: &WindowParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let mut split = Vec::new();
        let mut ns = Vec::new();
        let mut ar = Vec::new();
        let mut tile = Vec::new();
        let mut start = Vec::new();
        let (mut last_input, mut target_start) = (Vec::new(), Vec::new());
        let mut counts = Vec::new();
        for (i, role) in ["train", "val"].into_iter().enumerate() {
            let t = SeriesTable::read(ctx.input(role)?)?;
            let w = make(&t, p);
            if w.index.is_empty() {
                return Err(StageError::Invalid(format!(
                    "no {role} windows: every series is shorter than the {} h a window spans",
                    p.input + p.horizon + p.target_offset - 1
                )));
            }
            write_tensors(&ctx.output(&format!("{role}.safetensors")), &w, p)?;
            for (n, (a, k, s)) in w.index.iter().enumerate() {
                split.push(role);
                ns.push(n as u32);
                ar.push(*a);
                tile.push(*k);
                start.push(*s);
                last_input.push(*s + p.input as u32 - 1);
                target_start.push(*s + p.input as u32 - 1 + p.target_offset as u32);
            }
            counts.push(w.index.len());
            ctx.events.progress(i as u64 + 1, 2, "splits");
        }
        let path = ctx.output("index.parquet");
        let mut df = DataFrame::new(
            ns.len(),
            vec![
                Column::new("split".into(), split),
                Column::new("n".into(), ns),
                Column::new("ar".into(), ar),
                Column::new("tile".into(), tile),
                Column::new("horizon".into(), vec![p.horizon as u32; start.len()]),
                Column::new("start".into(), start),
                Column::new("last_input".into(), last_input),
                Column::new("target_start".into(), target_start),
            ],
        )
        .map_err(|e| StageError::table(&path, e))?;
        table::write_parquet(&mut df, &path)?;
        Ok(Report {
            summary: format!(
                "{} training and {} validation windows (W={}, P={}, offset {})",
                counts[0], counts[1], p.input, p.horizon, p.target_offset
            ),
            stdout: None,
            facts: json!({ "train": counts[0], "val": counts[1] }),
        })
    }
}
