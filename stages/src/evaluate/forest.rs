//! The forest plot: one row per predictor (the primary on top, in bold), each panel a statistic
//! with its point estimate and bootstrap interval; a dashed line marks the primary's value, so
//! an interval that crosses it is a difference the data cannot resolve.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::Evaluation;
use super::stats::{EventSet, Stat};
use crate::plot::{FONT, PlotError, draw_err, init_fonts, padded_range};

const PANELS: [Stat; 3] = [Stat::Tss(EventSet::TileDelay), Stat::Success, Stat::Rmse];

pub fn draw(png: &Path, svg: &Path, ev: &Evaluation, title: &str) -> Result<(), PlotError> {
    init_fonts();
    let height = 160 + 44 * ev.data.predictors.len() as u32;
    {
        let root = BitMapBackend::new(png, (1500, height)).into_drawing_area();
        draw_on(&root, ev, title).map_err(|e| draw_err(png)(&e))?;
    }
    let root = SVGBackend::new(svg, (1500, height)).into_drawing_area();
    draw_on(&root, ev, title).map_err(|e| draw_err(svg)(&e))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    ev: &Evaluation,
    title: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 22).into_font())?;
    let d = &ev.data;
    // The primary first, the others in pipeline order below it.
    let order: Vec<usize> = std::iter::once(d.primary)
        .chain((0..d.predictors.len()).filter(|p| *p != d.primary))
        .collect();
    let n = order.len();
    let (labels, rest) = root.split_horizontally(230);
    let panels = rest.split_evenly((1, PANELS.len()));
    let row_y = |i: usize| (n - i) as f64 - 0.5;
    for (panel, m) in panels.iter().zip(PANELS) {
        let ests: Vec<_> = order.iter().map(|&p| ev.estimate(p, m)).collect();
        let mut range = padded_range(ests.iter().flat_map(|e| [e.value, e.low, e.high]));
        if matches!(m, Stat::Tss(_)) {
            range = range.start.min(-0.05)..range.end.max(0.05);
        }
        let mut c = ChartBuilder::on(panel)
            .caption(m.name(d.delay), (FONT, 15))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(8)
            .build_cartesian_2d(range.clone(), 0.0..n as f64)?;
        c.configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_labels(6)
            .label_style((FONT, 12))
            .draw()?;
        let primary = ests[0].value;
        if primary.is_finite() {
            c.draw_series(DashedLineSeries::new(
                [(primary, 0.0), (primary, n as f64)],
                6,
                4,
                RGBColor(120, 120, 120).stroke_width(1),
            ))?;
        }
        if matches!(m, Stat::Tss(_)) && range.start < 0.0 && range.end > 0.0 {
            c.draw_series(LineSeries::new(
                [(0.0, 0.0), (0.0, n as f64)],
                BLACK.stroke_width(1),
            ))?;
        }
        for (i, e) in ests.iter().enumerate() {
            let y = row_y(i);
            let color = if i == 0 {
                RGBColor(200, 30, 30)
            } else {
                RGBColor(30, 60, 170)
            };
            if e.low.is_finite() && e.high.is_finite() {
                c.draw_series(LineSeries::new(
                    [(e.low, y), (e.high, y)],
                    color.stroke_width(3),
                ))?;
                for x in [e.low, e.high] {
                    c.draw_series(LineSeries::new(
                        [(x, y - 0.12), (x, y + 0.12)],
                        color.stroke_width(2),
                    ))?;
                }
            }
            if e.value.is_finite() {
                c.draw_series(std::iter::once(Circle::new(
                    (e.value, y),
                    6,
                    color.filled(),
                )))?;
            }
        }
    }
    // The labels, level with the rows of the panels (same caption and axis heights).
    let (w, h) = labels.dim_in_pixel();
    let top = 10 + 15 + 10;
    let plot_h = h as i32 - top - 36 - 10;
    for (i, &p) in order.iter().enumerate() {
        let y = top + ((i as f64 + 0.5) / n as f64 * plot_h as f64) as i32;
        let style = if i == 0 {
            (FONT, 15, FontStyle::Bold).into_font()
        } else {
            (FONT, 15).into_font()
        };
        labels.draw(&Text::new(
            d.predictors[p].clone(),
            (w as i32 - 8, y),
            style
                .into_text_style(&labels)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Right,
                    plotters::style::text_anchor::VPos::Center,
                )),
        ))?;
    }
    root.present()?;
    Ok(())
}
