//! `render_figure`: the paper's Figure 3 layout for each of a list of test ARs (docs/src/semantics.md §15),
//! one PNG and one SVG output per AR: a 4×2 grid,
//! seven scored tiles with flux in Gauss (observed and the four models), the observed and the
//! primary model's predicted derivative with the criterion's samples in red, first-warning and
//! first-emergence lines; the last cell two 9×9 tile maps of |B| around the metric window.

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::alarms::{AlarmParams, Scored, read_alarms};
use crate::emergence::{Criterion, gradient};
use crate::kind::{
    Context, InputSlot, Output, OutputSlot, ParamError, Report, StageError, TypedKind,
};
use crate::plot::{FONT, init_fonts};
use crate::protocol::{
    ArGeometry, PredictorSummary, Protocol, TileSeries, Tiles, read_predictions,
};
use crate::scale::Scaler;
use crate::solared::time::format_micros;
use crate::solared::{GRID, TILES};
use crate::table::{self, FLUX, SeriesTable};

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FigureParams {
    /// The test ARs to draw, one figure each (outputs `png_<AR>` and `svg_<AR>`).
    pub ars: Vec<u32>,
    /// Pixels (the paper's figure is 14 × 12 in).
    pub width: u32,
    /// Pixels.
    pub height: u32,
}

impl Default for FigureParams {
    fn default() -> Self {
        FigureParams {
            ars: Vec::new(),
            width: 1400,
            height: 1200,
        }
    }
}

/// One model curve: label, colour, whether it is the primary (solid) one.
struct Curve<'a> {
    label: &'a str,
    color: RGBColor,
    primary: bool,
    tiles: &'a Tiles,
}

/// The paper's colours: Enc-Dec MSE blue, Enc-Dec hybrid orange, LSTM MSE purple, LSTM hybrid
/// green.
fn paper_color(s: &PredictorSummary) -> Option<RGBColor> {
    Some(match (s.model.as_str(), s.loss.as_str()) {
        ("MagFluxEnc-Dec", "MSE") => RGBColor(31, 119, 180),
        ("MagFluxEnc-Dec", "hybrid") => RGBColor(255, 127, 14),
        ("MagFluxLSTM", "MSE") => RGBColor(148, 103, 189),
        ("MagFluxLSTM", "hybrid") => RGBColor(44, 160, 44),
        _ => return None,
    })
}

/// The rest of the tab10 palette for other predictors, without its red: the emergence marker is
/// red, the warning marker blue.
const MORE_COLORS: [RGBColor; 5] = [
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The `n`th colour past the palette: hues a golden angle apart, away from the markers' red and
/// blue.
fn generated_color(n: usize) -> RGBColor {
    let mut hue = (n as f64 * 137.507_764 + 20.0) % 360.0;
    for marker in [0.0, 240.0, 360.0] {
        if (hue - marker).abs() < 20.0 {
            hue = (hue + 40.0) % 360.0;
        }
    }
    let (s, v) = (0.7, 0.72);
    let c = v * s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    let byte = |f: f64| ((f + m) * 255.0).round() as u8;
    RGBColor(byte(r), byte(g), byte(b))
}

/// One colour per predictor, none shared, whatever their number: the primary first (its paper
/// colour, else the palette's first), then the paper's models their own colours, then the others
/// in list order from the palette and past it.
fn assign_colors(predictors: &[&PredictorSummary], primary: &str) -> Vec<RGBColor> {
    let mut out: Vec<Option<RGBColor>> = vec![None; predictors.len()];
    let mut used: Vec<RGBColor> = Vec::new();
    let mut spare = MORE_COLORS
        .iter()
        .copied()
        .chain((0..).map(generated_color));
    let mut take = |want: Option<RGBColor>, used: &mut Vec<RGBColor>| {
        let c = want
            .filter(|c| !used.contains(c))
            .unwrap_or_else(|| spare.by_ref().find(|c| !used.contains(c)).expect("endless"));
        used.push(c);
        c
    };
    let order = (0..predictors.len())
        .filter(|&i| predictors[i].predictor == primary)
        .chain((0..predictors.len()).filter(|&i| {
            predictors[i].predictor != primary && paper_color(predictors[i]).is_some()
        }))
        .chain((0..predictors.len()).filter(|&i| {
            predictors[i].predictor != primary && paper_color(predictors[i]).is_none()
        }))
        .collect::<Vec<_>>();
    for i in order {
        out[i] = Some(take(paper_color(predictors[i]), &mut used));
    }
    out.into_iter()
        .map(|c| c.expect("every index is ordered"))
        .collect()
}

struct FigData<'a> {
    g: &'a ArGeometry,
    times: &'a [i64],
    scaler: &'a Scaler,
    criterion: Criterion,
    curves: Vec<Curve<'a>>,
    primary: &'a Scored,
    horizon_hours: i64,
    metric_hours: usize,
    /// 9×9 tile-mean |B| (Gauss) at the metric window's start and end.
    maps: [Vec<f64>; 2],
}

fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

type DrawResult = Result<(), String>;

fn e2s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A chart whose x axis is the plot position and whose y axis is a value.
type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordusize, plotters::coord::types::RangedCoordf64>,
>;

/// One tile's vertical lines: where the warning (blue) and the emergence (red) fall, and
/// whether this tile is the one that attains the AR's minimum (solid) or not (dashed).
type Lines = [(Option<usize>, Option<bool>, RGBColor); 2];

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &FigData<'_>) -> DrawResult {
    root.fill(&WHITE).map_err(e2s)?;
    let root = root
        .titled(&format!("Comparison Results for AR{}", d.g.ar), (FONT, 24))
        .map_err(e2s)?;
    let cells = root.split_evenly((4, 2));
    for (cell, &k) in cells.iter().zip(&d.g.tiles) {
        draw_tile(cell, d, k)?;
    }
    // Cell 7: the 9×9 tile maps before and after the metric window.
    draw_maps(&cells[7], d)?;
    root.present().map_err(e2s)?;
    Ok(())
}

/// The last plot position shown.
fn last_shown(g: &ArGeometry) -> usize {
    g.history + g.span - 1
}

/// One tile's cell: its flux with every model's prediction above, the observed and predicted
/// derivatives below.
fn draw_tile<DB: DrawingBackend>(
    cell: &DrawingArea<DB, Shift>,
    d: &FigData<'_>,
    k: usize,
) -> DrawResult {
    let (_, h) = cell.dim_in_pixel();
    let (top, rest) = cell.split_vertically(h * 4 / 6);
    let (mid, bottom) = rest.split_vertically(h / 6);
    let Some(pt) = d
        .curves
        .iter()
        .find(|c| c.primary)
        .map(|c| &c.tiles[&(d.g.ar, k)])
    else {
        return Err("no primary model among the curves".into());
    };
    let lines = tile_lines(d, pt);
    draw_flux(&top, d, k, pt, &lines)?;
    draw_derivatives(&mid, &bottom, d, pt, &lines)
}

/// The AR's warning (its first predicted emergence, a horizon earlier) and its first observed
/// emergence, each solid where this tile attains it.
fn tile_lines(d: &FigData<'_>, pt: &TileSeries) -> Lines {
    let g = d.g;
    let last = last_shown(g);
    let ar = d.primary.ars.iter().find(|a| a.ar == g.ar);
    let q_obs_min = ar.and_then(|a| a.q_obs);
    let q_pred_min = ar.and_then(|a| a.q_pred);
    let warn = q_pred_min.map(|q| (q as i64 - d.horizon_hours).clamp(0, last as i64) as usize);
    let emerge = q_obs_min.map(|q| q.min(last));
    let ap = AlarmParams {
        threshold: d.criterion.threshold,
        smoothing: d.criterion.smoothing,
        sustain: d.criterion.sustain,
        ..AlarmParams::default()
    };
    let (tq_obs, tq_pred) = ap.firsts(g, pt);
    [
        (warn, tq_pred.map(|q| Some(q) == q_pred_min), BLUE),
        (emerge, tq_obs.map(|q| Some(q) == q_obs_min), RED),
    ]
}

fn draw_lines<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    lines: &Lines,
    ylo: f64,
    yhi: f64,
) -> DrawResult {
    for &(q, own, color) in lines {
        let Some(q) = q else { continue };
        let pts = vec![(q, ylo), (q, yhi)];
        if own == Some(true) {
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(e2s)?;
        } else {
            chart
                .draw_series(DashedLineSeries::new(pts, 5, 4, color.stroke_width(1)))
                .map_err(e2s)?;
        }
    }
    Ok(())
}

/// The tile's |B| in Gauss: observed, every model's prediction (the primary solid and on top),
/// the metric window shaded; the legend on the first tile.
fn draw_flux<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &FigData<'_>,
    k: usize,
    pt: &TileSeries,
    lines: &Lines,
) -> DrawResult {
    let g = d.g;
    let last = last_shown(g);
    let pair = d.scaler.pair(FLUX);
    let o_g: Vec<f64> = pt.observed[..=last]
        .iter()
        .map(|&v| pair.invert(v))
        .collect();
    let mut lo = o_g.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut hi = o_g.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    for c in &d.curves {
        for &v in c.tiles[&(g.ar, k)].predicted_span(g) {
            let v = pair.invert(v);
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let pad = ((hi - lo) * 0.08).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .margin(4)
        .x_label_area_size(0)
        .y_label_area_size(48)
        .build_cartesian_2d(0usize..last, lo - pad..hi + pad)
        .map_err(e2s)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(format!("Tile {} |B| (G)", k + 1))
        .y_labels(4)
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(e2s)?;
    let mr = g.metric_start..g.metric_start + d.metric_hours;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(mr.start.min(last), lo - pad), (mr.end.min(last), hi + pad)],
            RGBColor(255, 243, 176).mix(0.6).filled(),
        )))
        .map_err(e2s)?;
    chart
        .draw_series(LineSeries::new(
            o_g.iter().enumerate().map(|(q, &v)| (q, v)),
            BLACK.stroke_width(2),
        ))
        .map_err(e2s)?
        .label("observed")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
    for c in d
        .curves
        .iter()
        .filter(|c| !c.primary)
        .chain(d.curves.iter().filter(|c| c.primary))
    {
        let pts: Vec<(usize, f64)> = c.tiles[&(g.ar, k)]
            .predicted_span(g)
            .iter()
            .enumerate()
            .map(|(j, &v)| (g.history + j, pair.invert(v)))
            .collect();
        let color = c.color;
        if c.primary {
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(e2s)?
                .label(c.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        } else {
            chart
                .draw_series(DashedLineSeries::new(
                    pts,
                    6,
                    4,
                    color.mix(0.6).stroke_width(1),
                ))
                .map_err(e2s)?
                .label(c.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.mix(0.6)));
        }
    }
    draw_lines(&mut chart, lines, lo - pad, hi + pad)?;
    if k == g.tiles[0] {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 11))
            .draw()
            .map_err(e2s)?;
    }
    Ok(())
}

/// Derivative panels: observed over the whole span, predicted after the history; flagged steps
/// in red.
fn draw_derivatives<DB: DrawingBackend>(
    mid: &DrawingArea<DB, Shift>,
    bottom: &DrawingArea<DB, Shift>,
    d: &FigData<'_>,
    pt: &TileSeries,
    lines: &Lines,
) -> DrawResult {
    let g = d.g;
    let last = last_shown(g);
    let label_q = |q: &usize| {
        let i = g.time_index((*q).min(g.axis_len - 1));
        format_micros(d.times[i])[5..13].replace(' ', "T")
    };
    let obs = &pt.observed[..=last];
    let pred = pt.predicted_span(g);
    let obs_d = gradient(obs);
    let obs_f = d.criterion.flags(obs);
    let mut pred_d = vec![0.0; g.history];
    pred_d.extend(gradient(pred));
    let mut pred_f = vec![false; g.history];
    pred_f.extend(d.criterion.flags(pred));
    for (area, deriv, flags, base, desc, xlabels) in [
        (mid, &obs_d, &obs_f, BLACK, "observed dΦ/dt", false),
        (
            bottom,
            &pred_d,
            &pred_f,
            RGBColor(44, 160, 44),
            "predicted dΦ/dt (solid model)",
            true,
        ),
    ] {
        let mut ch = ChartBuilder::on(area)
            .margin(4)
            .x_label_area_size(if xlabels { 22 } else { 0 })
            .y_label_area_size(48)
            .build_cartesian_2d(0usize..last, -0.05f64..0.05f64)
            .map_err(e2s)?;
        let mut mesh = ch.configure_mesh();
        mesh.disable_x_mesh()
            .disable_y_mesh()
            .y_labels(3)
            .y_label_formatter(&|v| {
                if v.abs() < 1e-9 {
                    "0".into()
                } else {
                    String::new()
                }
            })
            .label_style((FONT, 10));
        if xlabels {
            mesh.x_labels(5).x_label_formatter(&label_q);
        }
        mesh.draw().map_err(e2s)?;
        let clamp = |v: f64| v.clamp(-0.05, 0.05);
        ch.draw_series((0..deriv.len().saturating_sub(1)).map(|j| {
            let from_history = std::ptr::eq(deriv, &pred_d) && j < g.history;
            let color = if flags[j] {
                RED
            } else if from_history {
                RGBColor(120, 120, 120)
            } else {
                base
            };
            PathElement::new(
                vec![(j, clamp(deriv[j])), (j + 1, clamp(deriv[j + 1]))],
                color.stroke_width(2),
            )
        }))
        .map_err(e2s)?;
        draw_lines(&mut ch, lines, -0.05, 0.05)?;
        ch.draw_series(std::iter::once(Text::new(
            desc,
            (1usize, 0.045f64),
            (FONT, 10).into_font().color(&RGBColor(80, 80, 80)),
        )))
        .map_err(e2s)?;
    }
    Ok(())
}

/// The 9×9 tile-mean |B| maps at the metric window's start and end, the scored tiles boxed.
fn draw_maps<DB: DrawingBackend>(cell: &DrawingArea<DB, Shift>, d: &FigData<'_>) -> DrawResult {
    let g = d.g;
    let map_cell = cell
        .titled("Tile-mean |B| (G); scored tiles boxed", (FONT, 14))
        .map_err(e2s)?;
    let halves = map_cell.split_evenly((1, 2));
    let all: Vec<f64> = d.maps.iter().flatten().cloned().collect();
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = all.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    for (i, half) in halves.iter().enumerate() {
        let title = format!(
            "{}: {}",
            if i == 0 {
                "Pre-Emergence"
            } else {
                "Post-Emergence"
            },
            &g.metric_window[i][..16]
        );
        let mut ch = ChartBuilder::on(half)
            .caption(title, (FONT, 12))
            .margin(6)
            .build_cartesian_2d(0i32..GRID as i32, GRID as i32..0i32)
            .map_err(e2s)?;
        ch.configure_mesh()
            .disable_mesh()
            .disable_axes()
            .draw()
            .map_err(e2s)?;
        ch.draw_series((0..TILES).map(|t| {
            let (r, c) = ((t / GRID) as i32, (t % GRID) as i32);
            let v = (d.maps[i][t] - lo) / (hi - lo).max(1e-12);
            Rectangle::new([(c, r), (c + 1, r + 1)], viridis(v).filled())
        }))
        .map_err(e2s)?;
        ch.draw_series((0..TILES).map(|t| {
            let (r, c) = ((t / GRID) as i32, (t % GRID) as i32);
            Rectangle::new([(c, r), (c + 1, r + 1)], WHITE.stroke_width(1))
        }))
        .map_err(e2s)?;
        ch.draw_series(g.tiles.iter().map(|&t| {
            let (r, c) = ((t / GRID) as i32, (t % GRID) as i32);
            Rectangle::new([(c, r), (c + 1, r + 1)], RED.stroke_width(2))
        }))
        .map_err(e2s)?;
    }
    Ok(())
}

pub struct RenderFigure;

impl TypedKind for RenderFigure {
    const INPUT_CONTRACTS: &'static [magpipe_engine::kind::InputContract] =
        &crate::contract_names::predictor_slot("models");
    const LIST_AGREEMENTS: &'static [magpipe_engine::kind::ListAgreement] =
        &crate::contract_names::agrees_with_alarms("models", true);
    type Params = FigureParams;
    const NAME: &'static str = "render_figure";
    // 2: one stage draws a list of ARs (`ars`), one PNG and one SVG output per AR.
    const VERSION: u32 = 2;
    const DOC: &'static str = "The paper's Figure 3 layout for each test AR in `ars`: seven scored \
        tiles (flux, observed and predicted derivative, alarm lines) and the 9×9 tile maps; \
        outputs png_<AR> and svg_<AR>.";
    const INPUTS: &'static [InputSlot] = &[
        crate::protocol::PROTOCOL_SLOT,
        crate::protocol::TEST_SLOT,
        crate::protocol::SCALER_SLOT,
        InputSlot {
            name: "alarms",
            doc: "the alarms stage's table (score_alarms.alarms)",
        },
        InputSlot {
            name: "criterion",
            doc: "the alarms stage's criterion (score_alarms.criterion)",
        },
    ];
    const LIST_INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "models",
        doc: "predict stages to draw; the alarms table's primary one is drawn solid",
    }];
    // The outputs follow from `ars` (see `outputs`); none are fixed.
    const OUTPUTS: &'static [OutputSlot] = &[];

    fn outputs(p: &FigureParams) -> Vec<Output> {
        p.ars
            .iter()
            .flat_map(|ar| {
                [("png", "PNG"), ("svg", "SVG")].map(|(ext, what)| {
                    Output::file(
                        format!("{ext}_{ar}"),
                        format!("AR{ar}.{ext}"),
                        format!("AR{ar}'s figure as {what}"),
                    )
                })
            })
            .collect()
    }

    fn check(p: &FigureParams) -> Result<(), ParamError> {
        if p.ars.is_empty() {
            return Err(ParamError::Invalid {
                name: "ars".into(),
                msg: "name the test ARs to draw, e.g. [11698, 11726]".into(),
            });
        }
        if let Some(ar) = p
            .ars
            .iter()
            .find(|a| p.ars.iter().filter(|b| b == a).count() > 1)
        {
            return Err(ParamError::Invalid {
                name: "ars".into(),
                msg: format!("AR{ar} is listed twice"),
            });
        }
        if p.width < 600 || p.height < 500 {
            return Err(ParamError::Invalid {
                name: "width".into(),
                msg: "the figure needs at least 600 × 500 pixels".into(),
            });
        }
        Ok(())
    }

    fn run(p: &FigureParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let proto = Protocol::read(ctx.input("protocol")?)?;
        let series = SeriesTable::read(ctx.input("test")?)?;
        let scaler = Scaler::read(ctx.input("scaler")?)?;
        let geometry = p
            .ars
            .iter()
            .map(|&ar| {
                proto.ars.iter().find(|g| g.ar == ar).ok_or_else(|| {
                    StageError::Invalid(format!(
                        "AR{ar} is not in the test protocol ({})",
                        proto
                            .ars
                            .iter()
                            .map(|g| format!("AR{}", g.ar))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cpath = ctx.input("criterion")?;
        let ap: AlarmParams = serde_json::from_str(
            &std::fs::read_to_string(cpath).map_err(|e| StageError::io(cpath, e))?,
        )
        .map_err(|e| StageError::table(cpath, e))?;
        let apath = ctx.input("alarms")?;
        let all =
            read_alarms(&table::read_parquet(apath)?).map_err(|e| StageError::table(apath, e))?;
        let primary_label = crate::report::primary_label(&table::read_parquet(apath)?)
            .map_err(|e| StageError::table(apath, e))?;
        let (_, primary) = all
            .iter()
            .find(|(l, _)| *l == primary_label)
            .ok_or_else(|| StageError::table(apath, "no primary predictor"))?;
        let mut loaded: Vec<(PredictorSummary, Tiles)> = Vec::new();
        for e in ctx.list("models") {
            let s = PredictorSummary::read(e.output("summary")?)?;
            let path = e.output("predictions")?;
            let (_, tiles) = read_predictions(&table::read_parquet(path)?, &proto)
                .map_err(|m| StageError::table(path, m))?;
            loaded.push((s, tiles));
        }
        if !loaded.iter().any(|(s, _)| s.predictor == primary_label) {
            return Err(StageError::Invalid(format!(
                "the alarms' primary predictor `{primary_label}` is not among the models drawn"
            )));
        }
        init_fonts();
        for (done, g) in geometry.iter().enumerate() {
            draw_ar(
                p,
                ctx,
                g,
                &proto,
                &series,
                &scaler,
                &ap,
                primary,
                &loaded,
                &primary_label,
            )?;
            ctx.events
                .progress(done as u64 + 1, geometry.len() as u64, "figures");
        }
        Ok(Report {
            summary: format!(
                "{}: {}×{} PNG and SVG",
                p.ars
                    .iter()
                    .map(|a| format!("AR{a}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                p.width,
                p.height
            ),
            stdout: None,
            facts: json!({ "ars": p.ars }),
        })
    }
}

/// Draws one AR's figure into the stage's outputs `AR<ar>.png` and `AR<ar>.svg`.
#[allow(clippy::too_many_arguments)]
fn draw_ar(
    p: &FigureParams,
    ctx: &Context<'_>,
    g: &ArGeometry,
    proto: &Protocol,
    series: &SeriesTable,
    scaler: &Scaler,
    ap: &AlarmParams,
    primary: &Scored,
    loaded: &[(PredictorSummary, Tiles)],
    primary_label: &str,
) -> Result<(), StageError> {
    {
        let colors = assign_colors(
            &loaded.iter().map(|(s, _)| s).collect::<Vec<_>>(),
            primary_label,
        );
        let curves: Vec<Curve<'_>> = loaded
            .iter()
            .zip(colors)
            .map(|((s, t), color)| Curve {
                label: &s.predictor,
                color,
                primary: s.predictor == primary_label,
                tiles: t,
            })
            .collect();
        let b = series.block(g.ar).expect("a protocol AR is a test AR");
        let n = b.len();
        let pair = scaler.pair(FLUX);
        let flux = series.channel(b, FLUX);
        let at = |q: usize| {
            let i = g.time_index(q.min(g.axis_len - 1));
            (0..TILES)
                .map(|t| pair.invert(flux[t * n + i]))
                .collect::<Vec<f64>>()
        };
        let d = FigData {
            g,
            times: &b.times,
            scaler,
            criterion: ap.criterion(),
            curves,
            primary,
            horizon_hours: ap.horizon_hours,
            metric_hours: proto.metric_hours,
            maps: [at(g.metric_start), at(g.metric_start + proto.metric_hours)],
        };
        let png = ctx.output(&format!("AR{}.png", g.ar));
        {
            let root = BitMapBackend::new(&png, (p.width, p.height)).into_drawing_area();
            draw(&root, &d).map_err(|e| StageError::table(&png, e))?;
        }
        let svg = ctx.output(&format!("AR{}.svg", g.ar));
        {
            let root = SVGBackend::new(&svg, (p.width, p.height)).into_drawing_area();
            draw(&root, &d).map_err(|e| StageError::table(&svg, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(predictor: &str, model: &str, loss: &str) -> PredictorSummary {
        PredictorSummary {
            predictor: predictor.into(),
            kind: "model".into(),
            model: model.into(),
            loss: loss.into(),
            val_rmse: 0.0,
            zero_slope_rmse: 0.0,
            collapsed: false,
            params: serde_json::Value::Null,
            param_count: None,
            epochs_run: None,
            mean_rmse_gauss: Default::default(),
        }
    }

    #[test]
    fn every_predictor_gets_its_own_colour_whatever_their_number() {
        let mut list = vec![
            summary("predict_lstm_hybrid", "MagFluxLSTM", "hybrid"),
            summary("predict_lstm_mse", "MagFluxLSTM", "MSE"),
            summary("predict_encdec_mse", "MagFluxEnc-Dec", "MSE"),
            summary("predict_encdec_hybrid", "MagFluxEnc-Dec", "hybrid"),
            // A second LSTM hybrid (a tuned one) cannot take the primary's green.
            summary("predict_lstm_tuned", "MagFluxLSTM", "hybrid"),
        ];
        for i in 0..20 {
            list.push(summary(&format!("user_model_{i}"), "command", ""));
        }
        let refs: Vec<&PredictorSummary> = list.iter().collect();
        let colors = assign_colors(&refs, "predict_lstm_hybrid");
        assert_eq!(colors.len(), list.len());
        for (i, a) in colors.iter().enumerate() {
            for (j, b) in colors.iter().enumerate().skip(i + 1) {
                assert_ne!(
                    a, b,
                    "{} and {} share a colour",
                    list[i].predictor, list[j].predictor
                );
            }
        }
        assert_eq!(
            colors[0],
            RGBColor(44, 160, 44),
            "the primary keeps the paper's green"
        );
        assert_eq!(colors[3], RGBColor(255, 127, 14));
        // A primary that is not one of the paper's models still gets a colour no one else has.
        let colors = assign_colors(&refs, "user_model_7");
        let primary = colors[5 + 7];
        assert_eq!(colors.iter().filter(|&&c| c == primary).count(), 1);
        assert_eq!(colors[0], RGBColor(44, 160, 44));
    }
}
