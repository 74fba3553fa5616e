//! Sweeps: `--set stage.param=a,b,c` and `--seeds 1..5` expand one `magpipe run` into several
//! variants that run side by side on one store, sharing every stage they have in common; and the
//! multi-seed Table 2 (majority category, lead mean ± sd, success rate per AR).

use std::collections::BTreeMap;

use crate::events::{Event, Sink};

/// Splits `a,b,c` at top-level commas (not inside `[]`, `{}` or quotes).
pub fn alternatives(rhs: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None);
    for ch in rhs.chars() {
        match (ch, quote) {
            ('"' | '\'', None) => quote = Some(ch),
            (c, Some(q)) if c == q => quote = None,
            ('[' | '{', None) => depth += 1,
            (']' | '}', None) => depth -= 1,
            (',', None) if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

/// One point of a sweep: a label (`lstm_hybrid.seed=3`) and its `--set` overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub label: String,
    pub sets: Vec<String>,
}

/// The cartesian product of every `--set`'s alternatives. A single point with an empty label
/// means no sweep.
pub fn expand(sets: &[String]) -> Result<Vec<Point>, String> {
    let mut points = vec![Point {
        label: String::new(),
        sets: Vec::new(),
    }];
    for s in sets {
        let (lhs, rhs) = s
            .split_once('=')
            .ok_or_else(|| format!("--set {s}: expected stage.param=value"))?;
        let alts = alternatives(rhs);
        if alts.iter().any(String::is_empty) {
            return Err(format!("--set {s}: an empty value in the sweep"));
        }
        let mut next = Vec::new();
        for p in &points {
            for a in &alts {
                let mut q = p.clone();
                q.sets.push(format!("{lhs}={a}"));
                if alts.len() > 1 {
                    if !q.label.is_empty() {
                        q.label.push(',');
                    }
                    q.label.push_str(&format!("{lhs}={a}"));
                }
                next.push(q);
            }
        }
        points = next;
    }
    Ok(points)
}

/// `1..5` (inclusive), `1,2,7`, or one number.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("--seeds {s}: expected FIRST..LAST (inclusive) or a comma-separated list");
    if let Some((a, b)) = s.split_once("..") {
        let (a, b): (u64, u64) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim()
                .trim_start_matches('=')
                .parse()
                .map_err(|_| bad())?,
        );
        if b < a || b - a >= 1000 {
            return Err(bad());
        }
        return Ok((a..=b).collect());
    }
    let v: Vec<u64> = s
        .split(',')
        .map(|x| x.trim().parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err(bad());
    }
    Ok(v)
}

/// Makes a ref/variant name out of a label: no path separators.
pub fn variant_name(base: Option<&str>, label: &str) -> String {
    let clean: String = label
        .chars()
        .map(|c| {
            if c == '/' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{}+{clean}", base.unwrap_or("default"))
}

/// Prefixes the stage of every event with a sweep point's label, so concurrent points stay
/// apart in the progress display and the JSON log.
pub struct PrefixSink<'a> {
    pub inner: &'a dyn Sink,
    pub prefix: String,
}

impl Sink for PrefixSink<'_> {
    fn emit(&self, e: Event) {
        let p = |s: String| format!("{}/{s}", self.prefix);
        let e = match e {
            Event::StageCached { stage, key } => Event::StageCached {
                stage: p(stage),
                key,
            },
            Event::StageStarted { stage, key } => Event::StageStarted {
                stage: p(stage),
                key,
            },
            Event::StageProgress {
                stage,
                done,
                total,
                unit,
            } => Event::StageProgress {
                stage: p(stage),
                done,
                total,
                unit,
            },
            Event::StageLog { stage, msg } => Event::StageLog {
                stage: p(stage),
                msg,
            },
            Event::StageFinished {
                stage,
                key,
                seconds,
                summary,
            } => Event::StageFinished {
                stage: p(stage),
                key,
                seconds,
                summary,
            },
            Event::StageFailed { stage, error } => Event::StageFailed {
                stage: p(stage),
                error,
            },
            Event::StageSkipped { stage, because } => Event::StageSkipped {
                stage: p(stage),
                because,
            },
            other => other,
        };
        self.inner.emit(e);
    }
}

/// One seed's Table 2, read from a `score_alarms` stage's table2.csv: (ar, tile) → (category,
/// lead).
pub type Table2 = BTreeMap<(String, String), (String, Option<i64>)>;

pub fn read_table2(path: &std::path::Path) -> Result<Table2, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let rows = magpipe_stages::alarms::read_table2_csv(&text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.ar, r.tile), (r.category, r.lead_h)))
        .collect())
}

/// Markdown of a multi-seed Table 2: per cell the majority category (ties listed) with the share
/// of seeds that gave it and the lead mean ± sd over the seeds that alarmed; per AR the share of
/// seeds whose Emergence lead passes the delay under ≥ and under >.
pub fn seeds_markdown(tables: &[(u64, Table2)], delay: i64) -> String {
    let n = tables.len();
    let mut ars: Vec<String> = Vec::new();
    let mut tiles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some((_, t)) = tables.first() {
        for (ar, tile) in t.keys() {
            if !ars.contains(ar) {
                ars.push(ar.clone());
            }
            if tile != "Emergence" {
                tiles.entry(ar.clone()).or_default().push(tile.clone());
            }
        }
    }
    let width = tiles.values().map(Vec::len).max().unwrap_or(0);
    let cell = |ar: &str, tile: &str| -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut leads = Vec::new();
        for (_, t) in tables {
            if let Some((c, l)) = t.get(&(ar.to_string(), tile.to_string())) {
                let kind = if c.ends_with("h Alarm") {
                    "Alarm".to_string()
                } else {
                    c.clone()
                };
                *counts.entry(kind).or_default() += 1;
                leads.extend(l.map(|v| v as f64));
            }
        }
        let best = counts.values().copied().max().unwrap_or(0);
        let top: Vec<&String> = counts
            .iter()
            .filter(|(_, c)| **c == best)
            .map(|(k, _)| k)
            .collect();
        let label = top.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("/");
        let lead = if top.iter().any(|k| *k == "Alarm") && !leads.is_empty() {
            let m = leads.iter().sum::<f64>() / leads.len() as f64;
            let sd = (leads.iter().map(|v| (v - m).powi(2)).sum::<f64>()
                / (leads.len().max(2) - 1) as f64)
                .sqrt();
            format!(" {m:.1}±{sd:.1}h")
        } else {
            String::new()
        };
        format!("{label}{lead} ({best}/{n})")
    };
    let mut out = format!(
        "# Table 2 over {n} seeds ({})\n\nPer cell: the category most seeds gave (share of seeds), \
         and for alarms the lead mean ± sd over the seeds that alarmed.\n\n| AR | {} | Emergence | success ≥{delay} h | success >{delay} h |\n|---|{}---|---|---|\n",
        tables
            .iter()
            .map(|(s, _)| s.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        (1..=width)
            .map(|i| format!("tile {i}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(width)
    );
    for ar in &ars {
        let mut row = vec![ar.clone()];
        for t in tiles.get(ar).into_iter().flatten() {
            row.push(format!("{t} {}", cell(ar, t)));
        }
        row.push(cell(ar, "Emergence"));
        let leads: Vec<Option<i64>> = tables
            .iter()
            .map(|(_, t)| {
                t.get(&(ar.clone(), "Emergence".into()))
                    .and_then(|(_, l)| *l)
            })
            .collect();
        let ge = leads
            .iter()
            .filter(|l| l.is_some_and(|v| v >= delay))
            .count();
        let gt = leads
            .iter()
            .filter(|l| l.is_some_and(|v| v > delay))
            .count();
        row.push(format!("{ge}/{n}"));
        row.push(format!("{gt}/{n}"));
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// The plan of a variant name, including a sweep point's `BASE+label` (e.g. `default+seed=2`
/// or `paper-text+lstm_hybrid.lr=0.001,seed=3`), so `status`, `artifact`, `compare` and `report`
/// can name the points of an earlier sweep.
pub fn plan_for(
    spec: &crate::spec::RawSpec,
    name: Option<&str>,
    sets: &[crate::plan::SetOverride],
) -> Result<crate::plan::Plan, crate::error::SpecError> {
    use crate::plan::{Plan, SetOverride};
    let Some(name) = name else {
        return Plan::build(spec, None, sets);
    };
    let point = name
        .split_once('+')
        .filter(|_| !spec.variants.iter().any(|v| v.name == name));
    let Some((base, label)) = point else {
        return Plan::build(spec, Some(name), sets);
    };
    let base = (base != "default").then_some(base);
    let base_plan = Plan::build(spec, base, &[])?;
    let bad = |msg: String| crate::error::SpecError {
        file: spec.file.clone(),
        line: None,
        path: String::new(),
        msg: format!("variant `{name}`: {msg}"),
    };
    let mut all = Vec::new();
    for part in alternatives(label) {
        if let Some(seed) = part.strip_prefix("seed=") {
            for s in base_plan.stages.iter().filter(|s| s.kind.name() == "train") {
                all.push(SetOverride::parse(&format!("{}.seed={seed}", s.name)).map_err(bad)?);
            }
        } else {
            all.push(SetOverride::parse(&part).map_err(bad)?);
        }
    }
    all.extend(sets.iter().cloned());
    let mut plan = Plan::build(spec, base, &all)?;
    plan.variant = Some(name.to_string());
    Ok(plan)
}

/// One point of a sweep: its label, its plan (a variant of its own, `<variant>+<label>`) and the
/// seed it sets, if the sweep is over seeds too.
pub struct PointPlan {
    pub label: String,
    pub plan: crate::plan::Plan,
    pub seed: Option<u64>,
}

/// The plans of a sweep's points, each seed in `seeds` making one more dimension applied to every
/// stage of kind `seed_kind` at once.
pub fn point_plans(
    spec: &crate::spec::RawSpec,
    base: Option<&str>,
    points: &[Point],
    seeds: Option<&[u64]>,
    seed_kind: &str,
) -> Result<Vec<PointPlan>, crate::error::RunError> {
    use crate::error::RunError;
    use crate::plan::{Plan, SetOverride};
    let parse = |sets: &[String]| -> Result<Vec<SetOverride>, RunError> {
        sets.iter()
            .map(|t| SetOverride::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(RunError::Usage)
    };
    let mut expanded: Vec<(String, Vec<String>, Option<u64>)> = Vec::new();
    for p in points {
        match seeds {
            None => expanded.push((p.label.clone(), p.sets.clone(), None)),
            Some(list) => {
                let plan = Plan::build(spec, base, &parse(&p.sets)?)?;
                let seeded: Vec<&str> = plan
                    .stages
                    .iter()
                    .filter(|s| s.kind.name() == seed_kind)
                    .map(|s| s.name.as_str())
                    .collect();
                if seeded.is_empty() {
                    return Err(RunError::Usage(format!(
                        "--seeds: the pipeline has no `{seed_kind}` stage"
                    )));
                }
                for seed in list {
                    let mut sets = p.sets.clone();
                    sets.extend(seeded.iter().map(|t| format!("{t}.seed={seed}")));
                    let label = if p.label.is_empty() {
                        format!("seed={seed}")
                    } else {
                        format!("{},seed={seed}", p.label)
                    };
                    expanded.push((label, sets, Some(*seed)));
                }
            }
        }
    }
    let mut plans = Vec::new();
    for (label, sets, seed) in expanded {
        let mut plan = Plan::build(spec, base, &parse(&sets)?)?;
        plan.variant = Some(variant_name(base, &label));
        plans.push(PointPlan { label, plan, seed });
    }
    Ok(plans)
}

/// Runs `run` on every point, `jobs` points at a time, each point's events prefixed with its
/// label; results in the points' order. Shared stages are computed once (the store's per-key
/// locks make the other points wait and then find them cached).
pub fn run_points<T: Send>(
    points: &[PointPlan],
    jobs: usize,
    sink: &dyn Sink,
    run: &(dyn Fn(&crate::plan::Plan, &dyn Sink) -> T + Sync),
) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(usize, T)>> = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(points.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(p) = points.get(i) else {
                        break;
                    };
                    let prefixed = PrefixSink {
                        inner: sink,
                        prefix: p.label.clone(),
                    };
                    let r = run(&p.plan, &prefixed);
                    results.lock().expect("results").push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_split_at_top_level_commas_only() {
        assert_eq!(alternatives("1,2,3"), ["1", "2", "3"]);
        assert_eq!(alternatives("[1, 2]"), ["[1, 2]"]);
        assert_eq!(alternatives("{a: 1, b: 2},x"), ["{a: 1, b: 2}", "x"]);
        assert_eq!(alternatives("'a,b',c"), ["'a,b'", "c"]);
        let p = expand(&["a.x=1,2".into(), "b.y=3".into(), "c.z=u,v".into()]).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[3].label, "a.x=2,c.z=v");
        assert_eq!(p[3].sets, ["a.x=2", "b.y=3", "c.z=v"]);
        assert_eq!(expand(&["a.x=1".into()]).unwrap()[0].label, "");
        assert!(expand(&["a.x=1,,2".into()]).is_err());
    }

    #[test]
    fn seeds_parse_as_ranges_or_lists() {
        assert_eq!(parse_seeds("1..5").unwrap(), [1, 2, 3, 4, 5]);
        assert_eq!(parse_seeds("1..=3").unwrap(), [1, 2, 3]);
        assert_eq!(parse_seeds("7, 9").unwrap(), [7, 9]);
        assert!(parse_seeds("5..1").is_err());
        assert!(parse_seeds("x").is_err());
    }

    #[test]
    fn the_seed_table_takes_the_majority_and_averages_leads() {
        let t = |cat: &str, lead: Option<i64>, em: Option<i64>| -> Table2 {
            [
                (("AR1".into(), "2".into()), (cat.to_string(), lead)),
                (
                    ("AR1".into(), "Emergence".into()),
                    (em.map_or("ILAP".into(), |h| format!("{h}h Alarm")), em),
                ),
            ]
            .into()
        };
        let md = seeds_markdown(
            &[
                (1, t("4h Alarm", Some(4), Some(4))),
                (2, t("6h Alarm", Some(6), Some(6))),
                (3, t("ILAP", None, None)),
            ],
            4,
        );
        assert!(
            md.contains("| AR1 | 2 Alarm 5.0±1.4h (2/3) | Alarm 5.0±1.4h (2/3) | 2/3 | 1/3 |"),
            "{md}"
        );
    }
}
