//! The pooled evaluation of `magpipe run --folds/--seeds`: every point's `evaluate` rows, tagged
//! with the point's fold and seed, evaluated as one set. Folds pool their test ARs (over k folds
//! every AR is a test AR once); seeds repeat the same ARs, and the bootstrap resamples them within
//! each AR it draws (the ARs stay the independent unit).

use std::path::PathBuf;

use magpipe_engine::exec::RunResult;
use magpipe_engine::store::Store;
use magpipe_engine::sweep::PointPlan;

use crate::evaluate::{self, EvaluateParams, render};
use crate::kind::TypedKind;

/// `0-9` for a run of consecutive values, else the values joined.
fn span(values: &[u64]) -> String {
    match (values.first(), values.last()) {
        (Some(a), Some(b)) if values.len() > 1 && b - a + 1 == values.len() as u64 => {
            format!("{a}-{b}")
        }
        _ => values
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("_"),
    }
}

/// Evaluates the pooled rows of a finished sweep into the store's `reports/evaluation-…/`:
/// returns the headline and the folder, or `None` when no point has an evaluate stage.
pub fn pooled_evaluation(
    store: &Store,
    base: Option<&str>,
    points: &[(&PointPlan, &RunResult)],
) -> Result<Option<(String, PathBuf)>, String> {
    let mut rows = Vec::new();
    let mut params = None;
    let mut delay = crate::alarms::DEFAULT_DELAY_HOURS;
    for (p, res) in points {
        let Some((j, path)) =
            super::point_output(store, p, res, evaluate::Evaluate::NAME, "events")
        else {
            continue;
        };
        if params.is_none() {
            let v = &p.plan.stages[j].params;
            params = Some(
                serde_json::from_value::<EvaluateParams>(v.clone())
                    .map_err(|e| format!("stage `{}`: {e}", p.plan.stages[j].name))?,
            );
            delay = crate::alarms::plan_delay_hours(&p.plan);
        }
        let df = crate::table::read_parquet(&path).map_err(|e| e.to_string())?;
        let mut point_rows =
            evaluate::read_events(&df).map_err(|e| format!("{}: {e}", path.display()))?;
        for r in &mut point_rows {
            r.fold = p.fold;
            r.seed = p.seed;
        }
        rows.extend(point_rows);
    }
    let Some(params) = params else {
        return Ok(None);
    };
    let data = evaluate::dataset(&rows, params.primary.as_deref(), delay)?;
    let ev = evaluate::evaluate(data, &params.resampling());
    let values = |f: fn(&PointPlan) -> Option<u64>| {
        let mut v: Vec<u64> = points.iter().filter_map(|(p, _)| f(p)).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (folds, seeds) = (values(|p| p.fold), values(|p| p.seed));
    let mut name = format!("evaluation-{}", base.unwrap_or("default"));
    if !folds.is_empty() {
        name.push_str(&format!("-folds{}", span(&folds)));
    }
    if !seeds.is_empty() {
        name.push_str(&format!("-seeds{}", span(&seeds)));
    }
    let dir = store.root.join("reports").join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let title = format!("Pooled evaluation — {}", render::units(&ev));
    evaluate::write_evaluation(&dir, &rows, &ev, &title).map_err(|e| e.to_string())?;
    Ok(Some((
        format!("# {title}\n\n{}", render::headline(&ev)),
        dir,
    )))
}
