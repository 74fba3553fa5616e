//! `magpipe runs`: the store's run log; with `--results`, each run's stages as their records
//! have them, which the Python package (python/magpipe) reads as one row per run.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

use magpipe_engine::plan::Plan;
use magpipe_engine::provenance::{self, RunLog};
use magpipe_engine::store::Record;
use magpipe_engine::sweep;
use serde::Serialize;
use serde_json::Value;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Only the last N runs.
    #[arg(short = 'n', long)]
    last: Option<usize>,
    #[arg(long)]
    json: bool,
    /// With --json: each run's stages too, as their records have them (key, params, the
    /// metrics `compare` shows, summary, signer), and a sweep point's overrides.
    #[arg(long, requires = "json")]
    results: bool,
}

/// A run log entry with what its stages produced.
#[derive(Serialize, schemars::JsonSchema)]
pub struct RunResults<'a> {
    #[serde(flatten)]
    log: &'a RunLog,
    /// The variant without a sweep point's label (`default` for none).
    base_variant: String,
    /// A sweep point's (or a `--set` run's) overrides as its name gives them, `seed` or
    /// `stage.param` → the value as YAML reads it.
    overrides: BTreeMap<String, Value>,
    /// The stages whose records the store holds, in pipeline order.
    results: Vec<StageResult>,
}

/// One stage of a run, as its record has it.
#[derive(Clone, Serialize, schemars::JsonSchema)]
struct StageResult {
    stage: String,
    /// `ran`, `cached` or `pulled`, as the run log has it.
    outcome: String,
    key: String,
    summary: String,
    started_unix: f64,
    seconds: f64,
    /// The remote a pulled record came from, and the key that signed it.
    pulled_from: Option<String>,
    signer: Option<String>,
    /// What entered the key, as `compare` names the params.
    params: BTreeMap<String, Value>,
    metrics: Vec<MetricOut>,
}

/// A result `compare` shows: a summary, or a detail (one Table 2 cell).
#[derive(Clone, Serialize, schemars::JsonSchema)]
struct MetricOut {
    name: String,
    value: String,
    detail: bool,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let mut logs = provenance::runs(&ctx.store)?;
    if let Some(n) = a.last {
        logs = logs.split_off(logs.len().saturating_sub(n));
    }
    if a.results {
        println!(
            "{}",
            serde_json::to_string_pretty(&with_results(ctx, &logs)?)?
        );
    } else if a.json {
        println!("{}", serde_json::to_string_pretty(&logs)?);
    } else {
        print!("{}", provenance::runs_text(&logs));
    }
    Ok(ExitCode::SUCCESS)
}

/// `quick+hgb.alpha=2,seed=1` → (`quick`, {hgb.alpha: 2, seed: 1}), unless the pipeline names a
/// variant so.
fn split_variant(name: Option<&str>, declared: &[String]) -> (String, BTreeMap<String, Value>) {
    let name = name.unwrap_or(magpipe_engine::compare::DEFAULT);
    let Some((base, label)) = name
        .split_once('+')
        .filter(|_| !declared.iter().any(|v| v == name))
    else {
        return (name.to_string(), BTreeMap::new());
    };
    let overrides = sweep::alternatives(label)
        .into_iter()
        .filter_map(|part| {
            let (k, v) = part.split_once('=')?;
            let v = serde_yaml::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.into()));
            Some((k.trim_start_matches('+').to_string(), v))
        })
        .collect();
    (base.to_string(), overrides)
}

fn with_results<'a>(ctx: &Ctx, logs: &'a [RunLog]) -> anyhow::Result<Vec<RunResults<'a>>> {
    // Without a pipeline file the records still say key, params and signer; the metrics need
    // the stage's kind and output contracts, which only a plan has. A pipeline file that does
    // not load is an error, not a frame without metrics.
    let spec = if ctx.global.file.exists() {
        Some(ctx.spec()?)
    } else {
        None
    };
    let declared: Vec<String> = spec
        .as_ref()
        .map(|s| s.variants.iter().map(|v| v.name.clone()).collect())
        .unwrap_or_default();
    // A sweep's points share most records, and every point of a variant shares its plan.
    let mut plans: HashMap<Option<String>, Option<Plan>> = HashMap::new();
    let mut records: HashMap<String, Option<Record>> = HashMap::new();
    let mut done: HashMap<(String, String), StageResult> = HashMap::new();
    let mut out = Vec::with_capacity(logs.len());
    for log in logs {
        let plan = plans.entry(log.variant.clone()).or_insert_with(|| {
            spec.as_ref()
                .and_then(|s| sweep::plan_for(s, &ctx.registry, log.variant.as_deref(), &[]).ok())
        });
        // Pipeline order where the plan knows the stage, the log's (by name) after it.
        let mut names: Vec<&String> = log.stages.keys().collect();
        if let Some(p) = plan.as_ref() {
            let pos = |n: &str| p.order.iter().position(|&i| p.stages[i].name == n);
            names.sort_by_key(|n| pos(n).unwrap_or(usize::MAX));
        }
        let mut results = Vec::new();
        for name in names {
            let (outcome, Some(key)) = &log.stages[name] else {
                continue;
            };
            if let Some(r) = done.get(&(name.clone(), key.clone())) {
                results.push(StageResult {
                    outcome: outcome.clone(),
                    ..r.clone()
                });
                continue;
            }
            if !records.contains_key(key) {
                records.insert(key.clone(), ctx.store.record(key)?);
            }
            let Some(rec) = &records[key] else {
                continue;
            };
            let planned = plan
                .as_ref()
                .and_then(|p| p.index(name).map(|i| (p, i)))
                .filter(|(p, i)| p.stages[*i].kind.name() == rec.preimage.kind);
            let kind = planned
                .map(|(p, i)| p.stages[i].kind.clone())
                .or_else(|| ctx.registry.get(&rec.preimage.kind).cloned());
            let params = kind
                .map(|k| k.shown_params(&rec.preimage.params).into_iter().collect())
                .unwrap_or_default();
            let metrics = planned
                .map(|(p, i)| {
                    let one = BTreeMap::from([(i, rec.clone())]);
                    let prefix = format!("{name}: ");
                    magpipe_engine::compare::metrics(p, &ctx.store, &one)
                        .into_iter()
                        .map(|(n, (value, detail))| MetricOut {
                            name: n.strip_prefix(&prefix).unwrap_or(&n).to_string(),
                            value,
                            detail,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let r = StageResult {
                stage: name.clone(),
                outcome: outcome.clone(),
                key: key.clone(),
                summary: rec.summary.clone(),
                started_unix: rec.started_unix,
                seconds: rec.seconds,
                pulled_from: rec.pulled.as_ref().map(|p| p.remote.clone()),
                signer: rec.pulled.as_ref().and_then(|p| p.signer.clone()),
                params,
                metrics,
            };
            done.insert((name.clone(), key.clone()), r.clone());
            results.push(r);
        }
        let (base_variant, overrides) = split_variant(log.variant.as_deref(), &declared);
        out.push(RunResults {
            log,
            base_variant,
            overrides,
            results,
        });
    }
    Ok(out)
}
