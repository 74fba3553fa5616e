//! `magpipe compare A B …`: experiment variants side by side — only the params that differ, then
//! the results the study is judged by (validation derivative RMSE per model, Table 2 cells,
//! operational successes under both rules, mean RMSE in Gauss), differences highlighted.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::error::RunError;
use crate::exec::{self, Freshness};
use crate::plan::Plan;
use crate::store::{Record, Store};

/// `default` names the pipeline without a variant.
pub const DEFAULT: &str = "default";

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub variants: Vec<String>,
    /// `stage.param` → value per variant (only where they differ).
    pub params: Vec<(String, Vec<Value>)>,
    /// metric → value per variant (`None`: the variant lacks that stage or result).
    pub metrics: Vec<(String, Vec<Option<String>>)>,
    /// Per variant, the stages that are not up to date (their results are left out).
    pub stale: Vec<Vec<String>>,
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

/// The metrics of one fully run variant, by name.
fn metrics(plan: &Plan, store: &Store, recs: &BTreeMap<usize, Record>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (&i, r) in recs {
        let s = &plan.stages[i];
        match s.kind.name() {
            "train" => {
                if let Some(v) = r.facts["val_rmse"].as_f64() {
                    let collapsed = r.facts["collapsed"].as_bool() == Some(true);
                    m.insert(
                        format!("{}: val derivative RMSE", s.name),
                        format!("{v:.4e}{}", if collapsed { " (COLLAPSED)" } else { "" }),
                    );
                }
            }
            "predict" | "baseline" => {
                let Some(o) = r.outputs.get("summary") else {
                    continue;
                };
                let Ok(text) = std::fs::read_to_string(store.object_path(o)) else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(map) = v["mean_rmse_gauss"].as_object() {
                    for (ar, x) in map {
                        if let Some(x) = x.as_f64() {
                            m.insert(format!("{}: {ar} mean RMSE (G)", s.name), format!("{x:.1}"));
                        }
                    }
                }
            }
            "score_alarms" => {
                let Some(o) = r.outputs.get("table2") else {
                    continue;
                };
                let Ok(table) = crate::sweep::read_table2(&store.object_path(o)) else {
                    continue;
                };
                let delay = magpipe_stages::alarms::delay_hours(&s.params);
                let (mut ge, mut gt, mut n) = (0, 0, 0);
                for ((ar, tile), (cat, lead)) in &table {
                    m.insert(format!("{}: Table 2 {ar} {tile}", s.name), cat.clone());
                    if tile == "Emergence" {
                        n += 1;
                        ge += lead.is_some_and(|l| l >= delay) as usize;
                        gt += lead.is_some_and(|l| l > delay) as usize;
                    }
                }
                if n > 0 {
                    m.insert(
                        format!("{}: successful ARs (lead ≥ {delay} h)", s.name),
                        format!("{ge}/{n}"),
                    );
                    m.insert(
                        format!("{}: successful ARs (lead > {delay} h)", s.name),
                        format!("{gt}/{n}"),
                    );
                }
            }
            "render_tables" => {
                let c = &r.facts["matching_cells"];
                if let (Some(cat), Some(exact), Some(of)) = (
                    c["category"].as_u64(),
                    c["exact"].as_u64(),
                    c["of"].as_u64(),
                ) {
                    m.insert(
                        format!("{}: published Table 2 cells matched in category", s.name),
                        format!("{cat}/{of}"),
                    );
                    m.insert(
                        format!(
                            "{}: published Table 2 cells matched exactly (lead included)",
                            s.name
                        ),
                        format!("{exact}/{of}"),
                    );
                }
            }
            _ => {}
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
    let mut keys: BTreeSet<(String, String)> = BTreeSet::new();
    for (_, plan) in plans {
        for s in &plan.stages {
            if let Value::Object(p) = &s.params {
                keys.extend(p.keys().map(|k| (s.name.clone(), k.clone())));
            }
        }
    }
    let mut params = Vec::new();
    for (stage, param) in keys {
        let vals: Vec<Value> = plans
            .iter()
            .map(|(_, plan)| {
                plan.index(&stage)
                    .map(|i| plan.stages[i].params[&param].clone())
                    .unwrap_or(Value::Null)
            })
            .collect();
        if vals.iter().any(|v| v != &vals[0]) {
            params.push((format!("{stage}.{param}"), vals));
        }
    }
    let per: Vec<BTreeMap<String, String>> = plans
        .iter()
        .zip(&recs)
        .map(|((_, plan), r)| metrics(plan, store, r))
        .collect();
    let names: BTreeSet<&String> = per.iter().flat_map(|m| m.keys()).collect();
    // Summary metrics first, then the Table 2 cells.
    let mut names: Vec<&String> = names.into_iter().collect();
    names.sort_by_key(|n| (n.contains("Table 2 AR"), (*n).clone()));
    let metrics = names
        .into_iter()
        .map(|n| (n.clone(), per.iter().map(|m| m.get(n).cloned()).collect()))
        .collect();
    Ok(Comparison {
        variants: plans.iter().map(|(n, _)| n.clone()).collect(),
        params,
        metrics,
        stale,
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
    for (name, vals) in &c.metrics {
        let differs = vals.iter().any(|v| v != &vals[0]);
        differing += differs as usize;
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
        "\n{differing} of {} results differ.\n",
        c.metrics.len()
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
