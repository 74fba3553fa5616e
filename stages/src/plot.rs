//! Figures, drawn with plotters. Text uses an embedded DejaVu Sans, so a figure renders the same
//! on a bare CI machine as on a workstation, with no fontconfig and no system fonts involved.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: cannot draw the figure: {msg}")]
    Draw { path: String, msg: String },
}

pub type Result<T> = std::result::Result<T, PlotError>;

/// The family name every figure uses; registered once per process.
pub const FONT: &str = "sans-serif";

pub fn init_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Registration only fails on a malformed font, and these are compiled-in bytes.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Turns any plotters error into a one-line [`PlotError`] naming the file.
pub fn draw_err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> PlotError + '_ {
    move |e| PlotError::Draw {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

/// One epoch of a training history, as the loss-curve figure needs it.
#[derive(Debug, Clone, Copy)]
pub struct CurvePoint {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_rmse: f64,
    pub lr: f64,
}

/// A linear axis range around the finite values, with headroom and never zero-width.
pub fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        lo.abs().max(1e-12) * 0.05
    };
    lo - pad..hi + pad
}

/// The loss-curve PNG of a training run: training loss (left) and validation derivative RMSE
/// against the zero-slope predictor's (right); lr cuts are marked.
pub fn loss_curve(path: &Path, title: &str, points: &[CurvePoint], zero_slope: f64) -> Result<()> {
    init_fonts();
    let err = draw_err(path);
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, (FONT, 22).into_font())
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(600);
    // Integer epochs on the x axis: a float axis would label 1.5, 2.5… as duplicate integers.
    let last = points.last().map_or(1, |p| p.epoch).max(2) as i32;
    let xs = 1..last;
    let x_labels = (last as usize).min(12);

    let mut c = ChartBuilder::on(&left)
        .caption("training loss (unscaled)", (FONT, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(
            xs.clone(),
            padded_range(points.iter().map(|p| p.train_loss)),
        )
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .y_label_formatter(&|v| format!("{v:.1e}"))
        .x_labels(x_labels)
        .draw()
        .map_err(|e| err(&e))?;
    let train = points.iter().map(|p| (p.epoch as i32, p.train_loss));
    c.draw_series(LineSeries::new(train.clone(), BLUE.stroke_width(2)))
        .map_err(|e| err(&e))?;
    c.draw_series(train.map(|xy| Circle::new(xy, 3, BLUE.filled())))
        .map_err(|e| err(&e))?;

    let vals = points
        .iter()
        .map(|p| p.val_rmse)
        .chain(std::iter::once(zero_slope));
    let mut c = ChartBuilder::on(&right)
        .caption("validation derivative RMSE (scaled)", (FONT, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(xs, padded_range(vals))
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_desc("epoch")
        .y_desc("RMSE of forward differences")
        .y_label_formatter(&|v| format!("{v:.2e}"))
        .x_labels(x_labels)
        .draw()
        .map_err(|e| err(&e))?;
    let val = points.iter().map(|p| (p.epoch as i32, p.val_rmse));
    c.draw_series(LineSeries::new(val.clone(), GREEN.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("model")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    c.draw_series(val.map(|xy| Circle::new(xy, 3, GREEN.filled())))
        .map_err(|e| err(&e))?;
    c.draw_series(DashedLineSeries::new(
        [(1, zero_slope), (last, zero_slope)],
        8,
        5,
        BLACK.stroke_width(1),
    ))
    .map_err(|e| err(&e))?
    .label("zero-slope predictor")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    // The scheduler's cuts explain kinks in both curves.
    let cuts: Vec<(i32, f64)> = points
        .windows(2)
        .filter(|w| w[1].lr < w[0].lr)
        .map(|w| (w[1].epoch as i32, w[1].val_rmse))
        .collect();
    if !cuts.is_empty() {
        c.draw_series(
            cuts.into_iter()
                .map(|xy| TriangleMarker::new(xy, 6, RED.filled())),
        )
        .map_err(|e| err(&e))?
        .label("lr reduced")
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, RED.filled()));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_curve_writes_a_png_of_the_declared_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let points: Vec<CurvePoint> = (1..=5)
            .map(|e| CurvePoint {
                epoch: e,
                train_loss: 1e-2 / e as f64,
                val_rmse: 4e-3 - 1e-4 * e as f64,
                lr: if e < 4 { 1e-3 } else { 2e-4 },
            })
            .collect();
        loss_curve(&path, "test run", &points, 4.1e-3).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, right after the chunk header.
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 1200);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 480);
        // A single epoch still draws (degenerate x range).
        loss_curve(&path, "one epoch", &points[..1], 4.1e-3).unwrap();
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let path = Path::new("/nonexistent-dir/loss.png");
        let e = loss_curve(path, "t", &[], 1e-3).unwrap_err().to_string();
        assert!(e.contains("/nonexistent-dir/loss.png"), "{e}");
    }
}
