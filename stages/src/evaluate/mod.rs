//! `evaluate`: is the model better than the simple alternatives, and how sure are we? Over
//! `score_alarms`' output for every predictor: contingency tables under six event definitions
//! (tiles and ARs; lead ≥ the processing delay, any lead, and the operational replay's warning),
//! POD, FAR, POFD, TSS and HSS, lead-time distributions and RMSE/MAE, with percentile bootstrap
//! intervals over ARs and the tiles within them, and paired comparisons of the primary model
//! against every other predictor (paired-bootstrap interval of the difference and a permutation
//! p-value). The sweep report of `magpipe run --folds/--seeds` pools the same rows over points.

pub mod forest;
pub mod render;
pub mod stats;

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::alarms::{AlarmParams, Scored, read_alarms};
use crate::kind::{Context, InputSlot, OutputSlot, ParamError, Report, StageError, TypedKind};
use crate::protocol::{PredictorSummary, Protocol, metric_window_scores, read_predictions};
use crate::scale::Scaler;
use crate::table::{self, FLUX};
use stats::{ArUnit, Dataset, Estimate, Outcome, Paired, Resampling, Stat, Tally};

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluateParams {
    /// Bootstrap replicates.
    pub resamples: usize,
    /// Random swap patterns of the permutation test when there are more than 12 ARs (fewer are
    /// enumerated exactly).
    pub permutations: usize,
    /// Seeds the bootstrap and the random permutations.
    pub seed: u64,
    /// Coverage of the intervals.
    pub level: f64,
    /// The predictor the others are compared against (default: `score_alarms`' primary).
    pub primary: Option<String>,
}

impl Default for EvaluateParams {
    fn default() -> Self {
        let r = Resampling::default();
        EvaluateParams {
            resamples: r.resamples,
            permutations: r.permutations,
            seed: r.seed,
            level: r.level,
            primary: None,
        }
    }
}

impl EvaluateParams {
    pub fn resampling(&self) -> Resampling {
        Resampling {
            resamples: self.resamples,
            permutations: self.permutations,
            seed: self.seed,
            level: self.level,
        }
    }
}

/// One row of `events.parquet`: one predictor's outcome on one tile or one AR's Emergence.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub predictor: String,
    pub primary: bool,
    /// Set when sweep points are pooled.
    pub fold: Option<u64>,
    pub seed: Option<u64>,
    pub ar: u32,
    /// Paper tile number; `None` for the AR's Emergence column.
    pub tile: Option<u32>,
    pub outcome: Outcome,
}

/// The rows of one predictor: its Table 2 (from `score_alarms`), its replay and its errors.
pub fn predictor_rows(
    label: &str,
    primary: bool,
    proto: &Protocol,
    ap: &AlarmParams,
    scored: &Scored,
    tiles: &crate::protocol::Tiles,
    scaler: &Scaler,
) -> Result<Vec<EventRow>, String> {
    let pair = scaler.pair(FLUX);
    let mut rows = Vec::new();
    let event = |ar: u32, tile: Option<u32>, outcome: Outcome| EventRow {
        predictor: label.to_string(),
        primary,
        fold: None,
        seed: None,
        ar,
        tile,
        outcome,
    };
    for g in &proto.ars {
        let mut ar_hours: Vec<usize> = Vec::new();
        for &k in &g.tiles {
            let tile = k as u32 + 1;
            let t = scored
                .tiles
                .iter()
                .find(|t| t.ar == g.ar && t.tile == tile)
                .ok_or_else(|| format!("{label}: AR{} tile {tile} was not scored", g.ar))?;
            let ts = tiles
                .get(&(g.ar, k))
                .ok_or_else(|| format!("{label}: AR{} tile {tile} has no predictions", g.ar))?;
            let on = ap.replay_alarm_hours(g, ts.predicted_span(g));
            let op = ap.operational(g, &on, t.q_obs);
            ar_hours.extend(&on);
            let s = metric_window_scores(proto, g, ts, pair);
            rows.push(event(
                g.ar,
                Some(tile),
                Outcome {
                    observed: t.q_obs.is_some(),
                    alarmed: t.q_pred.is_some(),
                    lead_h: t.category.lead(),
                    op_alarmed: op.alarmed,
                    op_lead_h: op.lead_h,
                    rmse_gauss: Some(s.rmse),
                    mae_gauss: Some(s.mae),
                },
            ));
        }
        let a = scored
            .ars
            .iter()
            .find(|a| a.ar == g.ar)
            .ok_or_else(|| format!("{label}: AR{} has no Emergence row", g.ar))?;
        // The AR is alarmed at an hour when any of its tiles is, as the replay reports it.
        ar_hours.sort_unstable();
        ar_hours.dedup();
        let op = ap.operational(g, &ar_hours, a.q_obs);
        rows.push(event(
            g.ar,
            None,
            Outcome {
                observed: a.q_obs.is_some(),
                alarmed: a.q_pred.is_some(),
                lead_h: a.category.lead(),
                op_alarmed: op.alarmed,
                op_lead_h: op.lead_h,
                rmse_gauss: None,
                mae_gauss: None,
            },
        ));
    }
    Ok(rows)
}

/// Aligns rows into predictors × seeds × ARs × tiles; every predictor must have an outcome on
/// every unit of every seed. `primary` names the predictor compared against (default: the row
/// flagged primary).
pub fn dataset(rows: &[EventRow], primary: Option<&str>, delay: i64) -> Result<Dataset, String> {
    let mut predictors: Vec<String> = Vec::new();
    let mut seeds: Vec<Option<u64>> = Vec::new();
    let mut ars: Vec<(u32, Option<u64>)> = Vec::new();
    let mut flagged = None;
    for r in rows {
        if !predictors.contains(&r.predictor) {
            predictors.push(r.predictor.clone());
        }
        if r.primary && flagged.is_none() {
            flagged = Some(r.predictor.clone());
        }
        if !seeds.contains(&r.seed) {
            seeds.push(r.seed);
        }
        match ars.iter().find(|(a, _)| *a == r.ar) {
            Some((_, f)) if *f != r.fold => {
                return Err(format!(
                    "AR{} is a test AR of two folds ({} and {})",
                    r.ar,
                    f.map_or("-".into(), |f| f.to_string()),
                    r.fold.map_or("-".into(), |f| f.to_string())
                ));
            }
            Some(_) => {}
            None => ars.push((r.ar, r.fold)),
        }
    }
    if predictors.is_empty() {
        return Err("no outcomes to evaluate".into());
    }
    let want = primary
        .map(str::to_string)
        .or(flagged)
        .unwrap_or_else(|| predictors[0].clone());
    let primary = predictors.iter().position(|p| *p == want).ok_or_else(|| {
        format!(
            "primary predictor `{want}` is not among the predictors ({})",
            predictors.join(", ")
        )
    })?;
    let mut index: BTreeMap<(usize, usize, u32, Option<u32>), Outcome> = BTreeMap::new();
    for r in rows {
        let s = seeds.iter().position(|x| *x == r.seed).expect("listed");
        let p = predictors
            .iter()
            .position(|x| *x == r.predictor)
            .expect("listed");
        if index.insert((s, p, r.ar, r.tile), r.outcome).is_some() {
            return Err(format!(
                "{}: AR{} {} appears twice",
                r.predictor,
                r.ar,
                r.tile.map_or("Emergence".into(), |t| format!("tile {t}"))
            ));
        }
    }
    let mut units = Vec::new();
    for &(ar, fold) in &ars {
        let mut tiles: Vec<u32> = rows
            .iter()
            .filter(|r| r.ar == ar)
            .filter_map(|r| r.tile)
            .collect();
        tiles.sort_unstable();
        tiles.dedup();
        let mut cells = Vec::new();
        for (s, seed) in seeds.iter().enumerate() {
            let mut per = Vec::new();
            for (p, label) in predictors.iter().enumerate() {
                let missing = |what: String| {
                    format!(
                        "{label}: no outcome for AR{ar} {what}{}",
                        seed.map_or(String::new(), |s| format!(" with seed {s}"))
                    )
                };
                let em = *index
                    .get(&(s, p, ar, None))
                    .ok_or_else(|| missing("Emergence".into()))?;
                let ts = tiles
                    .iter()
                    .map(|&t| {
                        index
                            .get(&(s, p, ar, Some(t)))
                            .copied()
                            .ok_or_else(|| missing(format!("tile {t}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                per.push((em, ts));
            }
            cells.push(per);
        }
        units.push(ArUnit {
            ar,
            fold,
            tiles,
            cells,
        });
    }
    Ok(Dataset {
        predictors,
        primary,
        seeds,
        ars: units,
        delay,
    })
}

/// Everything an evaluation reports.
pub struct Evaluation {
    pub data: Dataset,
    pub resampling: Resampling,
    pub tallies: Vec<Tally>,
    pub stats: Vec<Stat>,
    /// `[predictor][stat]`, in `stats` order.
    pub estimates: Vec<Vec<Estimate>>,
    /// `[predictor][k]` for `Stat::PAIRED[k]`; `None` for the primary itself.
    pub paired: Vec<Vec<Option<Paired>>>,
}

pub fn evaluate(data: Dataset, r: &Resampling) -> Evaluation {
    let stats = Stat::reported();
    let (estimates, deltas) = data.bootstrap(&stats, r);
    let paired = (0..data.predictors.len())
        .map(|p| {
            Stat::PAIRED
                .iter()
                .map(|m| {
                    (p != data.primary).then(|| {
                        let i = stats.iter().position(|s| s == m).expect("reported");
                        let (p_value, exact) = data.permutation_p(p, *m, r);
                        Paired {
                            delta: deltas[p][i],
                            p_value,
                            exact,
                        }
                    })
                })
                .collect()
        })
        .collect();
    Evaluation {
        tallies: data.tallies(),
        data,
        resampling: *r,
        stats,
        estimates,
        paired,
    }
}

impl Evaluation {
    pub fn estimate(&self, p: usize, m: Stat) -> Estimate {
        let i = self.stats.iter().position(|s| *s == m).expect("reported");
        self.estimates[p][i]
    }
}

pub fn events_frame(rows: &[EventRow]) -> PolarsResult<DataFrame> {
    let n = rows.len();
    let o = |f: fn(&Outcome) -> bool| rows.iter().map(|r| f(&r.outcome)).collect::<Vec<_>>();
    DataFrame::new(
        n,
        vec![
            Column::new(
                "predictor".into(),
                rows.iter()
                    .map(|r| r.predictor.as_str())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "primary".into(),
                rows.iter().map(|r| r.primary).collect::<Vec<_>>(),
            ),
            Column::new(
                "fold".into(),
                rows.iter().map(|r| r.fold).collect::<Vec<_>>(),
            ),
            Column::new(
                "seed".into(),
                rows.iter().map(|r| r.seed).collect::<Vec<_>>(),
            ),
            Column::new("ar".into(), rows.iter().map(|r| r.ar).collect::<Vec<_>>()),
            Column::new(
                "tile".into(),
                rows.iter().map(|r| r.tile).collect::<Vec<_>>(),
            ),
            Column::new("observed".into(), o(|o| o.observed)),
            Column::new("alarmed".into(), o(|o| o.alarmed)),
            Column::new(
                "lead_h".into(),
                rows.iter().map(|r| r.outcome.lead_h).collect::<Vec<_>>(),
            ),
            Column::new("replay_alarmed".into(), o(|o| o.op_alarmed)),
            Column::new(
                "replay_lead_h".into(),
                rows.iter().map(|r| r.outcome.op_lead_h).collect::<Vec<_>>(),
            ),
            Column::new(
                "rmse_gauss".into(),
                rows.iter()
                    .map(|r| r.outcome.rmse_gauss)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "mae_gauss".into(),
                rows.iter().map(|r| r.outcome.mae_gauss).collect::<Vec<_>>(),
            ),
        ],
    )
}

/// Reads `events.parquet` back; a damaged or mis-typed table is refused with its column.
pub fn read_events(df: &DataFrame) -> Result<Vec<EventRow>, String> {
    let col = |n: &str| df.column(n).map_err(|_| format!("column `{n}` is missing"));
    let typed = |n: &str, e: PolarsError| format!("column `{n}`: {e}");
    let pred = col("predictor")?
        .str()
        .map_err(|e| typed("predictor", e))?
        .clone();
    let bools = |n: &str| -> Result<BooleanChunked, String> {
        Ok(col(n)?.bool().map_err(|e| typed(n, e))?.clone())
    };
    let u64s = |n: &str| -> Result<UInt64Chunked, String> {
        Ok(col(n)?.u64().map_err(|e| typed(n, e))?.clone())
    };
    let i64s = |n: &str| -> Result<Int64Chunked, String> {
        Ok(col(n)?.i64().map_err(|e| typed(n, e))?.clone())
    };
    let f64s = |n: &str| -> Result<Float64Chunked, String> {
        Ok(col(n)?.f64().map_err(|e| typed(n, e))?.clone())
    };
    let (primary, observed, alarmed, op_alarmed) = (
        bools("primary")?,
        bools("observed")?,
        bools("alarmed")?,
        bools("replay_alarmed")?,
    );
    let (fold, seed) = (u64s("fold")?, u64s("seed")?);
    let ar = col("ar")?.u32().map_err(|e| typed("ar", e))?.clone();
    let tile = col("tile")?.u32().map_err(|e| typed("tile", e))?.clone();
    let (lead, op_lead) = (i64s("lead_h")?, i64s("replay_lead_h")?);
    let (rmse, mae) = (f64s("rmse_gauss")?, f64s("mae_gauss")?);
    (0..df.height())
        .map(|i| {
            let need =
                |v: Option<bool>, n: &str| v.ok_or_else(|| format!("row {i}: `{n}` is null"));
            let tile = tile.get(i);
            let rmse = rmse.get(i);
            if tile.is_some() && !rmse.is_some_and(f64::is_finite) {
                return Err(format!("row {i}: a tile without a finite `rmse_gauss`"));
            }
            Ok(EventRow {
                predictor: pred
                    .get(i)
                    .ok_or_else(|| format!("row {i}: `predictor` is null"))?
                    .to_string(),
                primary: need(primary.get(i), "primary")?,
                fold: fold.get(i),
                seed: seed.get(i),
                ar: ar.get(i).ok_or_else(|| format!("row {i}: `ar` is null"))?,
                tile,
                outcome: Outcome {
                    observed: need(observed.get(i), "observed")?,
                    alarmed: need(alarmed.get(i), "alarmed")?,
                    lead_h: lead.get(i),
                    op_alarmed: need(op_alarmed.get(i), "replay_alarmed")?,
                    op_lead_h: op_lead.get(i),
                    rmse_gauss: rmse,
                    mae_gauss: mae.get(i),
                },
            })
        })
        .collect()
}

/// Writes an evaluation's files into `dir`: its tables as Parquet, `evaluation.md` and the
/// forest plot; returns the Markdown.
pub fn write_evaluation(
    dir: &std::path::Path,
    rows: &[EventRow],
    ev: &Evaluation,
    title: &str,
) -> Result<String, StageError> {
    let path = dir.join("events.parquet");
    let mut df = events_frame(rows).map_err(|e| StageError::table(&path, e))?;
    table::write_parquet(&mut df, &path)?;
    for (file, frame) in [
        ("scores.parquet", render::scores_frame(ev)),
        ("contingency.parquet", render::contingency_frame(ev)),
        ("paired.parquet", render::paired_frame(ev)),
    ] {
        let path = dir.join(file);
        let mut df = frame.map_err(|e| StageError::table(&path, e))?;
        table::write_parquet(&mut df, &path)?;
    }
    let md = render::markdown(ev, title);
    let mdp = dir.join("evaluation.md");
    std::fs::write(&mdp, &md).map_err(|e| StageError::io(&mdp, e))?;
    forest::draw(&dir.join("forest.png"), &dir.join("forest.svg"), ev, title)
        .map_err(StageError::domain)?;
    Ok(md)
}

pub struct Evaluate;

impl TypedKind for Evaluate {
    const INPUT_CONTRACTS: &'static [magpipe_engine::kind::InputContract] =
        &crate::contract_names::predictor_slot("predictors");
    const LIST_AGREEMENTS: &'static [magpipe_engine::kind::ListAgreement] =
        &crate::contract_names::agrees_with_alarms("predictors", false);
    type Params = EvaluateParams;
    const NAME: &'static str = "evaluate";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Forecast verification of every predictor against the primary \
        model: contingency tables (tiles and ARs; lead ≥ the delay, any lead, the replay's \
        warning), POD, FAR, POFD, TSS, HSS, leads and RMSE with bootstrap intervals over ARs \
        and tiles, and paired differences with permutation p-values.";
    const INPUTS: &'static [InputSlot] = &[
        crate::protocol::PROTOCOL_SLOT,
        crate::protocol::SCALER_SLOT,
        InputSlot {
            name: "alarms",
            doc: "score_alarms' alarms.parquet (Table 2 of every predictor)",
        },
        InputSlot {
            name: "criterion",
            doc: "score_alarms' criterion.json (the criterion, lead and delay)",
        },
    ];
    const LIST_INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "predictors",
        doc: "the predictor stages scored by the alarms stage (predictions and summary are read)",
    }];
    const OUTPUTS: &'static [OutputSlot] = &[
        OutputSlot {
            name: "events",
            file: "events.parquet",
            doc: "per predictor, AR and tile (null: the AR's Emergence): observed, alarmed, Table 2 lead, replay alarm and warning lead, RMSE/MAE (G)",
        },
        OutputSlot {
            name: "scores",
            file: "scores.parquet",
            doc: "per predictor and statistic: value, bootstrap interval, replicates defined",
        },
        OutputSlot {
            name: "contingency",
            file: "contingency.parquet",
            doc: "per predictor and event set: hits, misses, false alarms, correct negatives, POD, FAR, POFD, TSS, HSS, lead quartiles",
        },
        OutputSlot {
            name: "paired",
            file: "paired.parquet",
            doc: "per predictor against the primary: Δ (primary − predictor), paired-bootstrap interval, permutation p",
        },
        OutputSlot {
            name: "evaluation_md",
            file: "evaluation.md",
            doc: "the definitions, scores, contingency tables and paired comparisons",
        },
        OutputSlot {
            name: "forest_png",
            file: "forest.png",
            doc: "forest plot: each predictor's TSS, success rate and RMSE with intervals",
        },
        OutputSlot {
            name: "forest_svg",
            file: "forest.svg",
            doc: "the same as SVG",
        },
    ];

    fn check(p: &EvaluateParams) -> Result<(), ParamError> {
        let bad = |name: &str, msg: &str| {
            Err(ParamError::Invalid {
                name: name.into(),
                msg: msg.into(),
            })
        };
        if p.resamples < 100 {
            return bad("resamples", "use at least 100 bootstrap replicates");
        }
        if p.permutations < 100 {
            return bad("permutations", "use at least 100 permutations");
        }
        if !(p.level > 0.5 && p.level < 1.0) {
            return bad("level", "must be between 0.5 and 1 (e.g. 0.95)");
        }
        Ok(())
    }

    /// Each predictor's TSS with its interval and the paired ΔTSS against the primary, so
    /// `compare` sets variants side by side on the same terms.
    fn metrics(_p: &EvaluateParams, run: &crate::kind::Finished<'_>) -> Vec<crate::kind::Metric> {
        run.outputs
            .get("paired")
            .zip(run.outputs.get("scores"))
            .and_then(|(paired, scores)| render::compare_metrics(scores, paired).ok())
            .unwrap_or_default()
    }

    fn run(p: &EvaluateParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let proto = Protocol::read(ctx.input("protocol")?)?;
        let scaler = Scaler::read(ctx.input("scaler")?)?;
        let cpath = ctx.input("criterion")?;
        let text = std::fs::read_to_string(cpath).map_err(|e| StageError::io(cpath, e))?;
        let ap: AlarmParams =
            serde_json::from_str(&text).map_err(|e| StageError::table(cpath, e))?;
        let apath = ctx.input("alarms")?;
        let adf = table::read_parquet(apath)?;
        let scored = read_alarms(&adf).map_err(|e| StageError::table(apath, e))?;
        let alarm_primary =
            crate::report::primary_label(&adf).map_err(|e| StageError::table(apath, e))?;
        let want = p.primary.clone().unwrap_or(alarm_primary);
        let entries = ctx.list("predictors");
        if entries.is_empty() {
            return Err(StageError::Invalid(
                "no predictors: list the stages the alarms stage scored under `inputs.predictors`"
                    .into(),
            ));
        }
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        let mut stages: Vec<&str> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            ctx.events
                .progress(i as u64, entries.len() as u64, "predictors");
            let summary = PredictorSummary::read(e.output("summary")?)?;
            let label = summary.predictor;
            if let Some(j) = labels.iter().position(|l| *l == label) {
                // The same stage listed twice is one predictor; two stages with one label
                // would be indistinguishable in every table.
                if stages[j] == e.stage {
                    continue;
                }
                return Err(StageError::Invalid(format!(
                    "stages `{}` and `{}` are both labelled `{label}`; give one of them a \
                     `label` param",
                    stages[j], e.stage
                )));
            }
            stages.push(&e.stage);
            let (_, s) = scored.iter().find(|(l, _)| *l == label).ok_or_else(|| {
                StageError::table(
                    apath,
                    format!(
                        "predictor `{label}` (stage `{}`) was not scored by the alarms stage; \
                         list the same predictors in both",
                        e.stage
                    ),
                )
            })?;
            let path = e.output("predictions")?;
            let df = table::read_parquet(path)?;
            let (_, tiles) =
                read_predictions(&df, &proto).map_err(|m| StageError::table(path, m))?;
            let primary = label == want || e.stage == want;
            rows.extend(
                predictor_rows(&label, primary, &proto, &ap, s, &tiles, &scaler)
                    .map_err(|m| StageError::table(path, m))?,
            );
            labels.push(label);
        }
        ctx.events
            .progress(entries.len() as u64, entries.len() as u64, "predictors");
        let primary_label = rows
            .iter()
            .find(|r| r.primary)
            .map(|r| r.predictor.clone())
            .ok_or_else(|| {
                StageError::Invalid(format!(
                    "primary predictor `{want}` is not among the predictors ({})",
                    labels.join(", ")
                ))
            })?;
        let data =
            dataset(&rows, Some(&primary_label), ap.delay_hours).map_err(StageError::Invalid)?;
        let ev = evaluate(data, &p.resampling());
        let title = format!(
            "Evaluation — {} test ARs, {} scored tiles",
            ev.data.ars.len(),
            ev.data.tile_count()
        );
        write_evaluation(ctx.out_dir, &rows, &ev, &title)?;
        let headline = render::headline(&ev);
        Ok(Report {
            summary: headline.lines().next().unwrap_or_default().to_string(),
            stdout: Some(format!("# {title}\n\n{headline}")),
            facts: json!({
                "primary": primary_label,
                "ars": ev.data.ars.len(),
                "tiles": ev.data.tile_count(),
                "resamples": p.resamples,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        pred: &str,
        seed: Option<u64>,
        fold: Option<u64>,
        ar: u32,
        tile: Option<u32>,
    ) -> EventRow {
        EventRow {
            predictor: pred.into(),
            primary: pred == "a",
            fold,
            seed,
            ar,
            tile,
            outcome: Outcome {
                observed: tile.is_none_or(|t| t % 2 == 0),
                alarmed: seed == Some(1),
                lead_h: (seed == Some(1)).then_some(6),
                rmse_gauss: tile.map(|_| 1.0),
                mae_gauss: tile.map(|_| 1.0),
                ..Default::default()
            },
        }
    }

    fn rows(seeds: &[u64]) -> Vec<EventRow> {
        let mut v = Vec::new();
        for &s in seeds {
            for p in ["a", "b"] {
                for ar in [1, 2, 3] {
                    for t in [None, Some(1), Some(2)] {
                        v.push(row(p, Some(s), Some(u64::from(ar)), ar, t));
                    }
                }
            }
        }
        v
    }

    #[test]
    fn seeds_pool_into_one_dataset_and_the_bootstrap_draws_them() {
        let d = dataset(&rows(&[1, 2]), None, 4).unwrap();
        assert_eq!(d.predictors, ["a", "b"]);
        assert_eq!(
            (d.primary, d.seeds.len(), d.ars.len(), d.tile_count()),
            (0, 2, 3, 6)
        );
        // Seed 1 alarms everything, seed 2 nothing: pooled, half the emerging tiles are hits,
        // and resampling the seeds within each drawn AR spreads the POD around it.
        let ev = evaluate(
            d,
            &Resampling {
                resamples: 400,
                ..Resampling::default()
            },
        );
        let pod = ev.estimate(0, Stat::Pod(stats::EventSet::TileDelay));
        assert_eq!(pod.value, 0.5);
        assert!(pod.low < 0.5 && pod.high > 0.5, "{pod:?}");
        assert!(
            render::units(&ev).ends_with("× 2 seeds"),
            "{}",
            render::units(&ev)
        );
    }

    #[test]
    fn misaligned_rows_are_refused_with_what_is_missing() {
        let mut r = rows(&[1, 2]);
        r.retain(|x| !(x.predictor == "b" && x.seed == Some(2) && x.ar == 3 && x.tile == Some(2)));
        let e = dataset(&r, None, 4).unwrap_err();
        assert_eq!(e, "b: no outcome for AR3 tile 2 with seed 2");
        let mut r = rows(&[1]);
        r[0].fold = Some(9);
        assert!(
            dataset(&r, None, 4)
                .unwrap_err()
                .contains("AR1 is a test AR of two folds")
        );
        let e = dataset(&rows(&[1]), Some("zzz"), 4).unwrap_err();
        assert!(e.contains("primary predictor `zzz`"), "{e}");
        let mut r = rows(&[1]);
        r.push(r[0].clone());
        assert!(dataset(&r, None, 4).unwrap_err().contains("appears twice"));
    }

    #[test]
    fn events_round_trip_through_parquet_and_a_bad_table_is_refused() {
        let r = rows(&[1]);
        let df = events_frame(&r).unwrap();
        assert_eq!(read_events(&df).unwrap(), r);
        let bad = df.drop("observed").unwrap();
        assert_eq!(
            read_events(&bad).unwrap_err(),
            "column `observed` is missing"
        );
    }
}
