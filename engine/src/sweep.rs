//! Sweeps: `--set stage.param=a,b,c` and `--seeds 1..5` expand one `magpipe run` into several
//! variants that run side by side on one store, sharing every stage they have in common. A seed
//! goes to every stage whose kind names a seed param ([`Kind::seed_param`]).
//!
//! [`Kind::seed_param`]: crate::kind::Kind::seed_param

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
                // Every override, not only the swept ones: the label is the point's name, and a
                // name must produce what it names (`quick+hgb.subsample=0.8,hgb.seed=1`).
                if !q.label.is_empty() {
                    q.label.push(',');
                }
                q.label.push_str(&format!("{lhs}={a}"));
                next.push(q);
            }
        }
        points = next;
    }
    Ok(points)
}

/// `1..5` (inclusive), `1,2,7`, or one number.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    parse_values(Dimension::Seed, s)
}

/// The values of `--seeds` or `--folds`: `0..9` (inclusive), `1,2,7`, or one number.
pub fn parse_values(dim: Dimension, s: &str) -> Result<Vec<u64>, String> {
    let bad = || {
        format!(
            "--{}s {s}: expected FIRST..LAST (inclusive) or a comma-separated list",
            dim.name()
        )
    };
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

/// The name of a run of `variant` (or of a sweep point already) with these `--set` overrides:
/// `quick+hgb.alpha=2`, `quick+hgb.seed=1,hgb.alpha=2`. It names the run's refs and resolves
/// back to the same plan ([`plan_for`]), so no other run's result is shown under it.
pub fn run_name(variant: Option<&str>, sets: &[String]) -> Option<String> {
    if sets.is_empty() {
        return variant.map(str::to_string);
    }
    let label = sets.join(",");
    Some(match variant {
        Some(v) if v.contains('+') => format!("{v},{label}"),
        v => variant_name(v, &label),
    })
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

/// The plan of a variant name, including a sweep point's `BASE+label` (e.g. `default+seed=2`
/// or `paper-text+lstm_hybrid.lr=0.001,seed=3`), so `status`, `artifact`, `compare` and `report`
/// can name the points of an earlier sweep.
pub fn plan_for(
    spec: &crate::spec::RawSpec,
    registry: &crate::Registry,
    name: Option<&str>,
    sets: &[crate::plan::SetOverride],
) -> Result<crate::plan::Plan, crate::error::SpecError> {
    use crate::plan::{Plan, SetOverride};
    let Some(name) = name else {
        return Plan::build(spec, registry, None, sets);
    };
    let point = name
        .split_once('+')
        .filter(|_| !spec.variants.iter().any(|v| v.name == name));
    let Some((base, label)) = point else {
        return Plan::build(spec, registry, Some(name), sets);
    };
    let base = (base != "default").then_some(base);
    let base_plan = Plan::build(spec, registry, base, &[])?;
    let bad = |msg: String| crate::error::SpecError {
        file: spec.file.clone(),
        line: None,
        path: String::new(),
        msg: format!("variant `{name}`: {msg}"),
    };
    let mut all = Vec::new();
    for part in alternatives(label) {
        let dim = Dimension::ALL.into_iter().find_map(|d| {
            part.strip_prefix(d.name())
                .and_then(|r| r.strip_prefix('='))
                .map(|v| (d, v))
        });
        match dim {
            Some((d, v)) => {
                for (stage, param) in d.stages(&base_plan) {
                    // `+`: a dimension sets its param whether the stage declares it or not.
                    all.push(SetOverride::parse(&format!("+{stage}.{param}={v}")).map_err(bad)?);
                }
            }
            None => all.push(SetOverride::parse(&part).map_err(bad)?),
        }
    }
    all.extend(sets.iter().cloned());
    let mut plan = Plan::build(spec, registry, base, &all)?;
    plan.variant = Some(name.to_string());
    Ok(plan)
}

/// A sweep dimension applied to every stage whose kind names a param for it: `--seeds` and
/// `--folds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Seed,
    Fold,
}

impl Dimension {
    pub const ALL: [Dimension; 2] = [Dimension::Seed, Dimension::Fold];

    /// The label prefix (`seed=3`) and the command-line flag's noun.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Seed => "seed",
            Dimension::Fold => "fold",
        }
    }

    fn param(self, kind: &dyn crate::kind::Kind) -> Option<&'static str> {
        match self {
            Dimension::Seed => kind.seed_param(),
            Dimension::Fold => kind.fold_param(),
        }
    }

    /// The stages of `plan` this dimension goes to, each with its kind's param.
    pub fn stages(self, plan: &crate::plan::Plan) -> Vec<(&str, &'static str)> {
        plan.stages
            .iter()
            .filter_map(|s| self.param(s.kind.as_ref()).map(|p| (s.name.as_str(), p)))
            .collect()
    }
}

/// One point of a sweep: its label, its plan (a variant of its own, `<variant>+<label>`) and the
/// seed and fold it sets, if the sweep is over seeds or folds too.
pub struct PointPlan {
    pub label: String,
    pub plan: crate::plan::Plan,
    pub seed: Option<u64>,
    pub fold: Option<u64>,
}

/// The plans of a sweep's points: every `--set` point, times each value of each dimension in
/// `dims` (seeds, folds), a value going to every stage of the dimension ([`Dimension::stages`])
/// at once.
pub fn point_plans(
    spec: &crate::spec::RawSpec,
    registry: &crate::Registry,
    base: Option<&str>,
    points: &[Point],
    dims: &[(Dimension, Vec<u64>)],
) -> Result<Vec<PointPlan>, crate::error::RunError> {
    use crate::error::RunError;
    use crate::plan::{Plan, SetOverride};
    let parse = |sets: &[String]| -> Result<Vec<SetOverride>, RunError> {
        sets.iter()
            .map(|t| SetOverride::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(RunError::Usage)
    };
    type Expanded = (String, Vec<String>, Option<u64>, Option<u64>);
    let mut expanded: Vec<Expanded> = points
        .iter()
        .map(|p| (p.label.clone(), p.sets.clone(), None, None))
        .collect();
    for (dim, values) in dims {
        let mut next = Vec::new();
        for (label, sets, seed, fold) in expanded {
            let plan = Plan::build(spec, registry, base, &parse(&sets)?)?;
            let stages = dim.stages(&plan);
            if stages.is_empty() {
                return Err(RunError::Usage(format!(
                    "--{}s: no stage of the pipeline has a {} param",
                    dim.name(),
                    dim.name()
                )));
            }
            for v in values {
                let mut sets = sets.clone();
                // `+`: a dimension sets its param whether the stage declares it or not.
                sets.extend(stages.iter().map(|(t, param)| format!("+{t}.{param}={v}")));
                let part = format!("{}={v}", dim.name());
                let label = if label.is_empty() {
                    part
                } else {
                    format!("{label},{part}")
                };
                let (s, f) = match dim {
                    Dimension::Seed => (Some(*v), fold),
                    Dimension::Fold => (seed, Some(*v)),
                };
                next.push((label, sets, s, f));
            }
        }
        expanded = next;
    }
    let mut plans = Vec::new();
    for (label, sets, seed, fold) in expanded {
        let mut plan = Plan::build(spec, registry, base, &parse(&sets)?)?;
        plan.variant = Some(variant_name(base, &label));
        plans.push(PointPlan {
            label,
            plan,
            seed,
            fold,
        });
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
        // A point is named by every override, the fixed ones too.
        assert_eq!(p[3].label, "a.x=2,b.y=3,c.z=v");
        assert_eq!(p[3].sets, ["a.x=2", "b.y=3", "c.z=v"]);
        assert_eq!(expand(&["a.x=1".into()]).unwrap()[0].label, "a.x=1");
        assert_eq!(expand(&[]).unwrap()[0].label, "");
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
}
