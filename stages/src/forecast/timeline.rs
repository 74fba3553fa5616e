//! The replay's alarm timeline: per tile the hours with the alarm on, the warning, the
//! emergence Table 2 predicts and the observed emergence, on the AR's hours.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{LiveData, ReplayAr, TimelineRow};
use crate::plot::{FONT, PlotError, draw_err, init_fonts};
use crate::solared::time::format_micros;

type DrawResult = Result<(), String>;

fn e2s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

const ALARM: RGBColor = RGBColor(242, 142, 43);
const WARN: RGBColor = RGBColor(31, 119, 180);
const EMERGE: RGBColor = RGBColor(214, 39, 40);

/// Writes the timeline of one replayed AR as PNG and SVG.
pub fn draw_files(
    png: &Path,
    svg: &Path,
    a: &ReplayAr,
    rows: &[TimelineRow],
    data: &LiveData,
    title: &str,
) -> Result<(), PlotError> {
    init_fonts();
    let size = (1400, 260 + 56 * a.tiles.len() as u32);
    {
        let root = BitMapBackend::new(png, size).into_drawing_area();
        draw(&root, a, rows, data, title).map_err(|e| draw_err(png)(&e))?;
        root.present().map_err(|e| draw_err(png)(&e))?;
    }
    let root = SVGBackend::new(svg, size).into_drawing_area();
    draw(&root, a, rows, data, title).map_err(|e| draw_err(svg)(&e))?;
    root.present().map_err(|e| draw_err(svg)(&e))?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    a: &ReplayAr,
    rows: &[TimelineRow],
    data: &LiveData,
    title: &str,
) -> DrawResult {
    root.fill(&WHITE).map_err(e2s)?;
    let e = &a.emergence;
    let hours = |v: Option<i64>| v.map_or("–".to_string(), |v| format!("{v} h"));
    let subtitle = format!(
        "warning {} · observed emergence {} · operational lead {} (margin {}) · Table 2: {}",
        e.warning
            .as_ref()
            .or(e.first_alarm.as_ref())
            .map_or("none".into(), |f| format!(
                "{} (tile {})",
                &f.issued[..16],
                f.tile
            )),
        e.observed_emergence
            .as_ref()
            .map_or("none".into(), |o| format!(
                "{} (tile {})",
                &o.at.time[..16],
                o.tile
            )),
        hours(e.operational_lead_h),
        hours(e.operational_margin_h),
        e.table2.category
    );
    let root = root.titled(title, (FONT, 22)).map_err(e2s)?;
    let (head, body) = root.split_vertically(28);
    head.draw_text(&subtitle, &(FONT, 14).into_text_style(&head), (60, 4))
        .map_err(e2s)?;
    let first = rows.iter().map(|r| r.hour).min().unwrap_or(0);
    let mut last = rows.iter().map(|r| r.hour).max().unwrap_or(1) + 1;
    for t in &a.tiles {
        for h in [
            t.observed_emergence.as_ref().map(|x| x.hour),
            t.predicted_emergence.as_ref().map(|x| x.hour),
        ]
        .into_iter()
        .flatten()
        {
            last = last.max(h + 2);
        }
    }
    let n = a.tiles.len();
    let y_of = |i: usize| (n - 1 - i) as f64;
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        // Room below the last tile for the legend.
        .build_cartesian_2d(first as f64..last as f64, -1.9..n as f64 - 0.2)
        .map_err(e2s)?;
    let tiles: Vec<u32> = a.tiles.iter().map(|t| t.tile).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_labels(12)
        .y_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let s = format_micros(data.time_of(x.round().max(0.0) as usize));
            format!("{}h", &s[5..13])
        })
        .y_label_formatter(&|y| {
            let i = n as f64 - 1.0 - y;
            if (i - i.round()).abs() > 1e-6 || i < -0.5 || i > n as f64 - 0.5 {
                return String::new();
            }
            format!("tile {}", tiles[i.round() as usize])
        })
        .x_desc("hour of the data (as stamped in the files); dashed: the AR's warning (blue) and first observed emergence (red)")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(e2s)?;
    for (i, t) in a.tiles.iter().enumerate() {
        let y = y_of(i);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(first as f64, y), ((last - 1) as f64, y)],
                RGBColor(200, 200, 200).stroke_width(1),
            )))
            .map_err(e2s)?;
        let on = rows.iter().filter(|r| r.tile == t.tile && r.alarm);
        chart
            .draw_series(on.map(|r| {
                Rectangle::new(
                    [(r.hour as f64, y - 0.22), (r.hour as f64 + 1.0, y + 0.22)],
                    ALARM.mix(0.75).filled(),
                )
            }))
            .map_err(e2s)?;
        let nan = rows.iter().filter(|r| r.tile == t.tile && r.nan_input);
        chart
            .draw_series(nan.map(|r| {
                Rectangle::new(
                    [(r.hour as f64, y - 0.35), (r.hour as f64 + 1.0, y - 0.28)],
                    RGBColor(120, 120, 120).filled(),
                )
            }))
            .map_err(e2s)?;
        // The warning as a triangle; a first alarm withdrawn before the emergence as a cross.
        let first = t.first_alarm.as_ref().map(|f| f.hour);
        let warned = t.warning.as_ref().map(|w| w.hour);
        if let Some(h) = warned.or(first) {
            chart
                .draw_series(std::iter::once(TriangleMarker::new(
                    (h as f64 + 0.5, y + 0.38),
                    7,
                    WARN.filled(),
                )))
                .map_err(e2s)?;
        }
        if let (Some(f), Some(w)) = (first, warned)
            && f != w
        {
            chart
                .draw_series(std::iter::once(Cross::new(
                    (f as f64 + 0.5, y + 0.38),
                    5,
                    WARN.stroke_width(2),
                )))
                .map_err(e2s)?;
        }
        if let Some(p) = &t.predicted_emergence {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (p.hour as f64 + 0.5, y),
                    6,
                    WARN.stroke_width(2),
                )))
                .map_err(e2s)?;
        }
        if let Some(o) = &t.observed_emergence {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (o.hour as f64 + 0.5, y),
                    5,
                    EMERGE.filled(),
                )))
                .map_err(e2s)?;
        }
    }
    // The legend from empty series, so it lists every mark whichever tiles carry them.
    let none = std::iter::empty::<Circle<(f64, f64), i32>>;
    chart
        .draw_series(none())
        .map_err(e2s)?
        .label("alarm on (hour of the data)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], ALARM.mix(0.75).filled()));
    chart
        .draw_series(none())
        .map_err(e2s)?
        .label("alarm raised (on an emerging tile: the one in force at emergence)")
        .legend(|(x, y)| TriangleMarker::new((x + 8, y), 6, WARN.filled()));
    chart
        .draw_series(none())
        .map_err(e2s)?
        .label("an earlier alarm, withdrawn")
        .legend(|(x, y)| Cross::new((x + 8, y), 5, WARN.stroke_width(2)));
    chart
        .draw_series(none())
        .map_err(e2s)?
        .label("predicted emergence (Table 2)")
        .legend(|(x, y)| Circle::new((x + 8, y), 5, WARN.stroke_width(2)));
    chart
        .draw_series(none())
        .map_err(e2s)?
        .label("observed emergence")
        .legend(|(x, y)| Circle::new((x + 8, y), 5, EMERGE.filled()));
    let top = n as f64 - 0.2;
    for (hour, color) in [
        (
            e.warning
                .as_ref()
                .or(e.first_alarm.as_ref())
                .map(|f| f.hour),
            WARN,
        ),
        (e.observed_emergence.as_ref().map(|o| o.at.hour), EMERGE),
    ] {
        if let Some(h) = hour {
            chart
                .draw_series(DashedLineSeries::new(
                    [(h as f64 + 0.5, -0.6), (h as f64 + 0.5, top)],
                    6,
                    4,
                    color.stroke_width(1),
                ))
                .map_err(e2s)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 12))
        .draw()
        .map_err(e2s)?;
    Ok(())
}
