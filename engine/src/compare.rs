//! `magpipe compare A B …`: experiment variants side by side — only the params that differ, then
//! the results each stage's kind reports of itself ([`Kind::metrics`]), differences highlighted.
//!
//! [`Kind::metrics`]: crate::kind::Kind::metrics

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::error::RunError;
use crate::exec::{self, Freshness};
use crate::kind::Finished;
use crate::plan::Plan;
use crate::store::{Record, Store};

/// `default` names the pipeline without a variant.
pub const DEFAULT: &str = crate::plan::DEFAULT_VARIANT;

/// Variants side by side, as `magpipe compare --format json` writes them.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Comparison {
    pub variants: Vec<String>,
    /// `stage.param` → value per variant (only where they differ).
    pub params: Vec<(String, Vec<Value>)>,
    /// metric → value per variant (`None`: the variant lacks that stage or result).
    pub metrics: Vec<(String, Vec<Option<String>>)>,
    /// Per variant, the stages that are not up to date (their results are left out).
    pub stale: Vec<Vec<String>>,
    /// Where the details (per-cell results) start in `metrics`: the summaries come first.
    pub first_detail: usize,
}

/// The fresh records of a variant, and the names of its stale stages.
fn fresh_records(
    plan: &Plan,
    store: &Store,
    name: &str,
) -> Result<(BTreeMap<usize, Record>, Vec<String>), RunError> {
    let all: Vec<usize> = plan.order.clone();
    let mut out = BTreeMap::new();
    let mut stale = Vec::new();
    for (i, f) in exec::status(plan, store, &all)? {
        match f {
            Freshness::Fresh(r) => {
                out.insert(i, *r);
            }
            // A stage outside a plain run (a tuning study) is only reported when it has run.
            Freshness::Stale { .. } if plan.stages[i].default => {
                stale.push(plan.stages[i].name.clone())
            }
            Freshness::Stale { .. } => {}
        }
    }
    if out.is_empty() {
        return Err(RunError::Usage(format!(
            "variant `{name}` has no results yet; run `magpipe run{}` first",
            if name == DEFAULT {
                String::new()
            } else {
                format!(" --variant {name}")
            }
        )));
    }
    Ok((out, stale))
}

/// The metrics of one fully run variant, by name (`stage: metric`), each with whether it is a
/// detail: what each stage's kind says of it ([`Kind::metrics`](crate::kind::Kind::metrics)) and
/// what the contracts of its outputs say of them.
pub fn metrics(
    plan: &Plan,
    store: &Store,
    recs: &BTreeMap<usize, Record>,
) -> BTreeMap<String, (String, bool)> {
    let mut m = BTreeMap::new();
    for (&i, r) in recs {
        let s = &plan.stages[i];
        let finished = Finished {
            facts: &r.facts,
            outputs: r
                .outputs
                .iter()
                .map(|(name, o)| (name.clone(), store.object_path(o)))
                .collect(),
        };
        let own = s.kind.metrics(&s.params, &finished);
        let said = !own.is_empty();
        for metric in own {
            m.insert(
                format!("{}: {}", s.name, metric.name),
                (metric.value, metric.detail),
            );
        }
        // What the contracts of its outputs say of them, where the kind says nothing of its own
        // (so a command stage's outputs read like a built-in kind's, and a built-in's results
        // are not shown twice).
        for o in s.outputs.iter().filter(|_| !said) {
            let (Some(c), Some(path)) = (
                o.contract
                    .as_deref()
                    .and_then(|c| plan.registry.contract(c)),
                finished.outputs.get(&o.name),
            ) else {
                continue;
            };
            for metric in c.metrics(path) {
                m.entry(format!("{}: {}", s.name, metric.name))
                    .or_insert((metric.value, metric.detail));
            }
        }
    }
    m
}

pub fn compare(plans: &[(String, Plan)], store: &Store) -> Result<Comparison, RunError> {
    let mut recs = Vec::new();
    let mut stale = Vec::new();
    for (name, plan) in plans {
        let (r, s) = fresh_records(plan, store, name)?;
        recs.push(r);
        stale.push(s);
    }
    // Params: every stage.param whose resolved value is not the same in all variants.
    let shown: Vec<BTreeMap<(String, String), Value>> = plans
        .iter()
        .map(|(_, plan)| {
            plan.stages
                .iter()
                .flat_map(|s| {
                    s.kind
                        .shown_params(&s.params)
                        .into_iter()
                        .map(|(k, v)| ((s.name.clone(), k), v))
                })
                .collect()
        })
        .collect();
    let keys: BTreeSet<&(String, String)> = shown.iter().flat_map(|m| m.keys()).collect();
    let mut params = Vec::new();
    for key @ (stage, param) in keys {
        let vals: Vec<Value> = shown
            .iter()
            .map(|m| m.get(key).cloned().unwrap_or(Value::Null))
            .collect();
        if vals.iter().any(|v| v != &vals[0]) {
            params.push((format!("{stage}.{param}"), vals));
        }
    }
    let per: Vec<BTreeMap<String, (String, bool)>> = plans
        .iter()
        .zip(&recs)
        .map(|((_, plan), r)| metrics(plan, store, r))
        .collect();
    // Summary metrics first, then the details (per-cell results), each group by name.
    let mut names: BTreeMap<&String, bool> = BTreeMap::new();
    for (n, (_, detail)) in per.iter().flatten() {
        *names.entry(n).or_default() |= *detail;
    }
    let mut names: Vec<(&String, bool)> = names.into_iter().collect();
    names.sort_by_key(|(n, detail)| (*detail, (*n).clone()));
    let first_detail = names
        .iter()
        .position(|(_, detail)| *detail)
        .unwrap_or(names.len());
    let metrics = names
        .into_iter()
        .map(|(n, _)| {
            (
                n.clone(),
                per.iter()
                    .map(|m| m.get(n).map(|(v, _)| v.clone()))
                    .collect(),
            )
        })
        .collect();
    Ok(Comparison {
        variants: plans.iter().map(|(n, _)| n.clone()).collect(),
        params,
        metrics,
        stale,
        first_detail,
    })
}

fn cell(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "–".into())
}

pub fn markdown(c: &Comparison) -> String {
    let head = |first: &str| {
        format!(
            "| {first} | {} |\n|---|{}\n",
            c.variants.join(" | "),
            "---|".repeat(c.variants.len())
        )
    };
    let mut out = format!(
        "# Variants compared: {}\n\n## Params that differ\n\n",
        c.variants.join(", ")
    );
    if c.params.is_empty() {
        out.push_str("None: the variants run the same params.\n");
    } else {
        out.push_str(&head("param"));
        for (p, vals) in &c.params {
            out.push_str(&format!(
                "| {p} | {} |\n",
                vals.iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
    }
    out.push_str("\n## Results (**bold**: differs from the first variant)\n\n");
    out.push_str(&head("metric"));
    let mut differing = 0;
    let mut same_details = 0;
    for (i, (name, vals)) in c.metrics.iter().enumerate() {
        let differs = vals.iter().any(|v| v != &vals[0]);
        differing += differs as usize;
        // Every predictor's Table 2 cells are details: listed where they differ, counted where
        // they do not (the CSV and JSON list them all).
        if i >= c.first_detail && !differs && c.variants.len() > 1 {
            same_details += 1;
            continue;
        }
        let cells: Vec<String> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i > 0 && v != &vals[0] {
                    format!("**{}**", cell(v))
                } else {
                    cell(v)
                }
            })
            .collect();
        out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    }
    out.push_str(&format!(
        "\n{differing} of {} results differ.{}\n",
        c.metrics.len(),
        if same_details > 0 {
            format!(
                " The {same_details} per-cell results that are the same in every variant are not listed (`--format csv` lists them)."
            )
        } else {
            String::new()
        }
    ));
    for (v, s) in c.variants.iter().zip(&c.stale) {
        if !s.is_empty() {
            out.push_str(&format!(
                "\nNot run in `{v}` (results shown as –): {}.\n",
                s.join(", ")
            ));
        }
    }
    out
}

pub fn csv(c: &Comparison) -> String {
    let mut out = format!("kind,name,{}\n", c.variants.join(","));
    let q = |s: &str| {
        if s.contains([',', '"']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    for (p, vals) in &c.params {
        out.push_str(&format!(
            "param,{},{}\n",
            q(p),
            vals.iter()
                .map(|v| q(&v.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    for (m, vals) in &c.metrics {
        out.push_str(&format!(
            "metric,{},{}\n",
            q(m),
            vals.iter()
                .map(|v| q(&cell(v)))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    out
}
