//! `baseline`: reference predictors the paper does not compare against, run through exactly the
//! protocol, scoring and tables the models go through, so a reader sees whether a model adds
//! skill. Unlike the models they read the observed flux history (known at forecast time).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kind::{Context, InputSlot, OutputSlot, ParamError, Report, StageError, TypedKind};
use crate::protocol::{
    PREDICTOR_OUTPUTS, PredictorSummary, Protocol, TileSeries, flux, write_predictor_outputs,
};
use crate::scale::Scaler;
use crate::table::{self, FLUX, SeriesTable};

#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The last observed value, held for the horizon.
    Persistence,
    /// The least-squares trend of the last `trend_hours` observed hours, extrapolated.
    Linear,
    /// A flat line at the last value known before the first prediction: the predictor the
    /// validation metric's zero-slope reference describes.
    ZeroSlope,
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineParams {
    pub method: Method,
    /// Hours the linear trend is fitted over.
    pub trend_hours: usize,
    /// Name in tables and figures (default: from the method).
    pub label: Option<String>,
}

impl Default for BaselineParams {
    fn default() -> Self {
        BaselineParams {
            method: Method::Persistence,
            trend_hours: 6,
            label: None,
        }
    }
}

impl BaselineParams {
    pub fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| match self.method {
            Method::Persistence => "persistence".into(),
            Method::Linear => format!("linear trend ({} h)", self.trend_hours),
            Method::ZeroSlope => "zero-slope".into(),
        })
    }

    /// Least-squares slope of `x[e+1-m ..= e]` (fewer points near the start).
    fn slope(&self, x: &[f64], e: usize) -> f64 {
        let lo = (e + 1).saturating_sub(self.trend_hours);
        let pts = &x[lo..=e];
        let n = pts.len() as f64;
        if pts.len() < 2 {
            return 0.0;
        }
        let tm = (n - 1.0) / 2.0;
        let ym = pts.iter().sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (i, y) in pts.iter().enumerate() {
            let dt = i as f64 - tm;
            sxy += dt * (y - ym);
            sxx += dt * dt;
        }
        sxy / sxx
    }

    /// The prediction, made with data up to index `e`, of the value `ahead` hours later.
    pub fn predict(&self, x: &[f64], e: usize, ahead: usize, last_known: usize) -> f64 {
        match self.method {
            Method::Persistence => x[e],
            Method::Linear => x[e] + self.slope(x, e) * ahead as f64,
            Method::ZeroSlope => x[last_known],
        }
    }

    /// The predicted forward difference per hour over a horizon (constant for every method).
    fn predicted_step(&self, x: &[f64], e: usize) -> f64 {
        match self.method {
            Method::Persistence | Method::ZeroSlope => 0.0,
            Method::Linear => self.slope(x, e),
        }
    }
}

/// Validation derivative RMSE of the baseline and of the zero-slope predictor, over the
/// validation windows of `window.index` (the metric the models report, docs/src/semantics.md §10).
pub fn val_rmse(
    p: &BaselineParams,
    val: &SeriesTable,
    index: &polars::prelude::DataFrame,
) -> Result<(f64, f64), String> {
    let col = |n: &str| -> Result<Vec<u32>, String> {
        Ok(index
            .column(n)
            .map_err(|_| format!("column `{n}` is missing"))?
            .u32()
            .map_err(|e| e.to_string())?
            .into_no_null_iter()
            .collect())
    };
    let split: Vec<String> = index
        .column("split")
        .map_err(|_| "column `split` is missing".to_string())?
        .str()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect();
    let (ar, tile, last, target, horizon) = (
        col("ar")?,
        col("tile")?,
        col("last_input")?,
        col("target_start")?,
        col("horizon")?,
    );
    let (mut se, mut se0, mut n) = (0.0, 0.0, 0usize);
    for i in (0..split.len()).filter(|&i| split[i] == "val") {
        let b = val
            .block(ar[i])
            .ok_or_else(|| format!("AR{} is not among the validation series", ar[i]))?;
        let len = b.len();
        let k = tile[i] as usize;
        let x = &val.channel(b, FLUX)[k * len..(k + 1) * len];
        let step = p.predicted_step(x, last[i] as usize);
        let t0 = target[i] as usize;
        for t in 1..horizon[i] as usize {
            let dy = x[t0 + t] - x[t0 + t - 1];
            se += (step - dy).powi(2);
            se0 += dy * dy;
            n += 1;
        }
    }
    if n == 0 {
        return Err("no validation windows in the index".into());
    }
    Ok(((se / n as f64).sqrt(), (se0 / n as f64).sqrt()))
}

pub struct Baseline;

impl TypedKind for Baseline {
    const CONTRACTS: &'static [(&'static str, &'static str)] =
        crate::contract_names::PREDICTOR_CONTRACTS;
    type Params = BaselineParams;
    const NAME: &'static str = "baseline";
    const VERSION: u32 = 1;
    const DOC: &'static str = "A reference predictor (persistence, linear trend, zero-slope) run \
        through the test protocol like a model, with its validation derivative RMSE for Table 1.";
    const INPUTS: &'static [InputSlot] = &[
        crate::protocol::PROTOCOL_SLOT,
        crate::protocol::TEST_SLOT,
        crate::protocol::SCALER_SLOT,
        InputSlot {
            name: "val",
            doc: "scaled validation series (scale.val)",
        },
        InputSlot {
            name: "index",
            doc: "the window index (window.index), for the validation metric",
        },
    ];
    const OUTPUTS: &'static [OutputSlot] = PREDICTOR_OUTPUTS;

    fn check(p: &BaselineParams) -> Result<(), ParamError> {
        if p.trend_hours < 2 {
            return Err(ParamError::Invalid {
                name: "trend_hours".into(),
                msg: "a trend needs at least 2 hours".into(),
            });
        }
        Ok(())
    }

    fn metrics(_p: &BaselineParams, run: &crate::kind::Finished<'_>) -> Vec<crate::kind::Metric> {
        crate::protocol::predictor_metrics(run)
    }

    fn run(p: &BaselineParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let proto = Protocol::read(ctx.input("protocol")?)?;
        let series = SeriesTable::read(ctx.input("test")?)?;
        let scaler = Scaler::read(ctx.input("scaler")?)?;
        let val = SeriesTable::read(ctx.input("val")?)?;
        let index_path = ctx.input("index")?;
        let index = table::read_parquet(index_path)?;
        let (rmse, zero) =
            val_rmse(p, &val, &index).map_err(|e| StageError::table(index_path, e))?;
        let mut tiles = Vec::new();
        for g in &proto.ars {
            for &k in &g.tiles {
                let x = flux(&series, g.ar, k);
                let ahead = proto.target_offset + proto.output_step;
                let yhat: Vec<f64> = (0..g.windows)
                    .map(|j| p.predict(x, j + g.input - 1, ahead, g.last_known))
                    .collect();
                tiles.push(TileSeries::new(&proto, g, x, k, yhat));
            }
        }
        let summary = PredictorSummary {
            predictor: p.label(),
            kind: "baseline".into(),
            model: serde_json::to_value(p.method)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            loss: String::new(),
            val_rmse: rmse,
            zero_slope_rmse: zero,
            collapsed: false,
            params: serde_json::to_value(p).expect("serialises"),
            param_count: None,
            epochs_run: None,
            mean_rmse_gauss: BTreeMap::new(),
        };
        let s = write_predictor_outputs(ctx.out_dir, &proto, &series, &scaler, tiles, summary)?;
        Ok(Report {
            summary: format!(
                "{}: val derivative RMSE {:.4e} (zero-slope {:.4e})",
                s.predictor, rmse, zero
            ),
            stdout: None,
            facts: json!({ "val_rmse": rmse, "zero_slope_rmse": zero, "mean_rmse_gauss": s.mean_rmse_gauss }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: Method) -> BaselineParams {
        BaselineParams {
            method,
            ..Default::default()
        }
    }

    #[test]
    fn each_method_predicts_as_documented() {
        let x: Vec<f64> = (0..20).map(|i| 2.0 * i as f64 + 1.0).collect();
        assert_eq!(p(Method::Persistence).predict(&x, 10, 11, 5), 21.0);
        // An exact line is extrapolated exactly.
        assert!((p(Method::Linear).predict(&x, 10, 11, 5) - 43.0).abs() < 1e-12);
        assert_eq!(p(Method::ZeroSlope).predict(&x, 10, 11, 5), 11.0);
        // Near the start the trend uses what exists.
        assert!((p(Method::Linear).predict(&x, 1, 1, 0) - 5.0).abs() < 1e-12);
        assert_eq!(p(Method::Linear).slope(&x, 0), 0.0);
    }

    #[test]
    fn the_trend_is_least_squares_over_the_window() {
        // Last 6 hours: 0, 0, 0, 0, 0, 6 → slope = Σ(t − 2.5)(y − 1) / Σ(t − 2.5)² = 15 / 17.5.
        let mut x = vec![0.0; 10];
        x.push(6.0);
        assert!((p(Method::Linear).slope(&x, 10) - 15.0 / 17.5).abs() < 1e-12);
    }
}
