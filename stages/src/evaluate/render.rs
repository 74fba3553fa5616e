//! An evaluation as tables (Parquet), Markdown and the headline lines `magpipe run` ends with.

use polars::prelude::*;

use super::Evaluation;
use super::stats::{EventSet, Stat, quantile};
use crate::kind::Metric;
use crate::table;

/// `0.43`, or `—` where undefined.
pub fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}").replace('-', "−")
    } else {
        "—".into()
    }
}

/// `+0.05`: a difference always shows its sign.
pub fn signed(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:+.digits$}").replace('-', "−")
    } else {
        "—".into()
    }
}

fn digits(m: Stat) -> usize {
    match m {
        Stat::MeanLead | Stat::Rmse | Stat::Mae => 1,
        _ => 2,
    }
}

/// `0.43 [0.10, 0.71]`.
pub fn with_interval(m: Stat, e: &super::Estimate, sign: bool) -> String {
    let d = digits(m);
    let f = |v| if sign { signed(v, d) } else { num(v, d) };
    if e.value.is_finite() && e.low.is_finite() {
        format!("{} [{}, {}]", f(e.value), f(e.low), f(e.high))
    } else {
        f(e.value)
    }
}

/// `p = 0.12`, `p = 0.004`, `p < 0.001`.
pub fn p_clause(p: f64) -> String {
    if !p.is_finite() {
        "p = —".into()
    } else if p < 0.001 {
        "p < 0.001".into()
    } else if p < 0.01 {
        format!("p = {p:.3}")
    } else {
        format!("p = {p:.2}")
    }
}

/// What the units are: `5 ARs, 35 tiles`, `53 ARs in 10 folds, 371 tiles`, `… × 3 seeds`.
pub fn units(ev: &Evaluation) -> String {
    let d = &ev.data;
    let mut folds: Vec<u64> = d.ars.iter().filter_map(|a| a.fold).collect();
    folds.sort_unstable();
    folds.dedup();
    let mut s = format!("{} ARs", d.ars.len());
    if folds.len() > 1 {
        s.push_str(&format!(" in {} folds", folds.len()));
    }
    s.push_str(&format!(", {} tiles", d.tile_count()));
    if d.seeds.len() > 1 {
        s.push_str(&format!(", × {} seeds", d.seeds.len()));
    }
    s
}

const TSS: Stat = Stat::Tss(EventSet::TileDelay);

/// The answer in a few lines: the primary model's TSS and success rate, then its difference
/// from every other predictor, in the paper reader's terms.
pub fn headline(ev: &Evaluation) -> String {
    let d = &ev.data;
    let pr = d.primary;
    let delay = d.delay;
    let t = &ev.tallies[pr];
    let mut out = format!(
        "{}: TSS {} (tiles, alarm lead ≥ {delay} h); {}/{} ARs successful, rate {} ({}; {:.0} % \
         intervals).\n",
        d.predictors[pr],
        with_interval(TSS, &ev.estimate(pr, TSS), false),
        t.ar_success.round(),
        t.ars.round(),
        with_interval(Stat::Success, &ev.estimate(pr, Stat::Success), false),
        units(ev),
        ev.resampling.level * 100.0
    );
    for (p, name) in d.predictors.iter().enumerate() {
        let Some(pair) = ev.paired[p][0] else {
            continue;
        };
        out.push_str(&format!(
            "{} − {name}: ΔTSS {}, {} ({})\n",
            d.predictors[pr],
            with_interval(TSS, &pair.delta, true),
            p_clause(pair.p_value),
            units(ev)
        ));
    }
    out
}

/// First quartile, median, third quartile and how many leads.
type Quartiles = (f64, f64, f64, usize);

fn lead_quartiles(ev: &Evaluation, p: usize, set: EventSet) -> Quartiles {
    let mut leads = Vec::new();
    for a in &ev.data.ars {
        for seed in &a.cells {
            let (em, tiles) = &seed[p];
            let outcomes: Vec<_> = if set.per_tile() {
                tiles.iter().collect()
            } else {
                vec![em]
            };
            for o in outcomes.into_iter().filter(|o| o.observed) {
                let l = match set {
                    EventSet::TileOperational | EventSet::ArOperational => o.op_lead_h,
                    _ => o.lead_h,
                };
                leads.extend(l.map(|l| l as f64));
            }
        }
    }
    leads.sort_by(f64::total_cmp);
    (
        quantile(&leads, 0.25),
        quantile(&leads, 0.5),
        quantile(&leads, 0.75),
        leads.len(),
    )
}

pub fn scores_frame(ev: &Evaluation) -> PolarsResult<DataFrame> {
    let d = &ev.data;
    let (mut pred, mut primary, mut stat, mut value, mut low, mut high, mut defined) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (p, name) in d.predictors.iter().enumerate() {
        for (i, m) in ev.stats.iter().enumerate() {
            let e = ev.estimates[p][i];
            pred.push(name.clone());
            primary.push(p == d.primary);
            stat.push(m.name(d.delay));
            value.push(e.value);
            low.push(e.low);
            high.push(e.high);
            defined.push(e.defined as u32);
        }
    }
    let n = pred.len();
    DataFrame::new(
        n,
        vec![
            Column::new("predictor".into(), pred),
            Column::new("primary".into(), primary),
            Column::new("statistic".into(), stat),
            Column::new("value".into(), value),
            Column::new("ci_low".into(), low),
            Column::new("ci_high".into(), high),
            Column::new("replicates_defined".into(), defined),
            Column::new("replicates".into(), vec![ev.resampling.resamples as u32; n]),
            Column::new("level".into(), vec![ev.resampling.level; n]),
        ],
    )
}

pub fn contingency_frame(ev: &Evaluation) -> PolarsResult<DataFrame> {
    let d = &ev.data;
    let mut c: Vec<(String, String, [f64; 9], Quartiles)> = Vec::new();
    for (p, name) in d.predictors.iter().enumerate() {
        for set in EventSet::ALL {
            let t = ev.tallies[p].table(set);
            c.push((
                name.clone(),
                set.name(d.delay),
                [
                    t.hits,
                    t.misses,
                    t.false_alarms,
                    t.correct_negatives,
                    t.pod(),
                    t.far(),
                    t.pofd(),
                    t.tss(),
                    t.hss(),
                ],
                lead_quartiles(ev, p, set),
            ));
        }
    }
    let n = c.len();
    let f = |i: usize| c.iter().map(|r| r.2[i]).collect::<Vec<f64>>();
    let u = |i: usize| {
        c.iter()
            .map(|r| r.2[i].round() as u32)
            .collect::<Vec<u32>>()
    };
    DataFrame::new(
        n,
        vec![
            Column::new(
                "predictor".into(),
                c.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "events".into(),
                c.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            ),
            Column::new("hits".into(), u(0)),
            Column::new("misses".into(), u(1)),
            Column::new("false_alarms".into(), u(2)),
            Column::new("correct_negatives".into(), u(3)),
            Column::new("pod".into(), f(4)),
            Column::new("far".into(), f(5)),
            Column::new("pofd".into(), f(6)),
            Column::new("tss".into(), f(7)),
            Column::new("hss".into(), f(8)),
            Column::new(
                "lead_q1_h".into(),
                c.iter().map(|r| r.3.0).collect::<Vec<_>>(),
            ),
            Column::new(
                "lead_median_h".into(),
                c.iter().map(|r| r.3.1).collect::<Vec<_>>(),
            ),
            Column::new(
                "lead_q3_h".into(),
                c.iter().map(|r| r.3.2).collect::<Vec<_>>(),
            ),
            Column::new(
                "leads".into(),
                c.iter().map(|r| r.3.3 as u32).collect::<Vec<_>>(),
            ),
        ],
    )
}

pub fn paired_frame(ev: &Evaluation) -> PolarsResult<DataFrame> {
    let d = &ev.data;
    let mut rows = Vec::new();
    for (p, name) in d.predictors.iter().enumerate() {
        for (k, m) in Stat::PAIRED.iter().enumerate() {
            if let Some(pair) = ev.paired[p][k] {
                rows.push((name.clone(), m.name(d.delay), pair));
            }
        }
    }
    let n = rows.len();
    DataFrame::new(
        n,
        vec![
            Column::new(
                "predictor".into(),
                rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            ),
            Column::new("against".into(), vec![d.predictors[d.primary].clone(); n]),
            Column::new(
                "statistic".into(),
                rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "delta".into(),
                rows.iter().map(|r| r.2.delta.value).collect::<Vec<_>>(),
            ),
            Column::new(
                "ci_low".into(),
                rows.iter().map(|r| r.2.delta.low).collect::<Vec<_>>(),
            ),
            Column::new(
                "ci_high".into(),
                rows.iter().map(|r| r.2.delta.high).collect::<Vec<_>>(),
            ),
            Column::new(
                "p_value".into(),
                rows.iter().map(|r| r.2.p_value).collect::<Vec<_>>(),
            ),
            Column::new(
                "exact".into(),
                rows.iter().map(|r| r.2.exact).collect::<Vec<_>>(),
            ),
            Column::new("ars".into(), vec![d.ars.len() as u32; n]),
            Column::new("tiles".into(), vec![d.tile_count() as u32; n]),
            Column::new("seeds".into(), vec![d.seeds.len() as u32; n]),
        ],
    )
}

/// The event definitions, written once for the Markdown and the docs.
pub fn definitions(delay: i64) -> String {
    format!(
        "Events. Per scored tile, the emergence criterion runs on the observed and on the \
         predicted series over the scored span (Table 2). A **hit** is an alarm on a tile that \
         emerges with lead ≥ {delay} h (the processing delay; separately: with any lead), a \
         **miss** an emerging tile without one (a late alarm counts as a miss under ≥ {delay} h), \
         a **false alarm** an ILAP (alarm, no observed emergence), a **correct negative** a Quiet \
         tile. The same per AR from the Emergence column (earliest observed vs earliest \
         predicted over the AR's scored tiles). Under the **replay warning** the lead is the \
         operator's: the hours from the start of the alarm in force when the tile (AR: any of \
         its tiles) emerged, as `magpipe forecast --replay` steps through the hours with only \
         the windows ended by then; a false alarm is a non-emerging unit alarmed at any hour.\n\n\
         Scores: POD = a/(a+c), FAR = b/(a+b), POFD = b/(b+d), TSS = POD − POFD, HSS = \
         2(ad − bc)/((a+c)(c+d) + (a+b)(b+d)) with a hits, b false alarms, c misses, d correct \
         negatives; — where a denominator is zero (TSS and HSS need both events and non-events, \
         so they are undefined per AR when every AR emerges). Success rate: ARs whose Emergence lead is \
         ≥ {delay} h over all ARs (Table 2's \"successful ARs\"). Mean lead: over alarmed \
         emerging tiles. RMSE/MAE: mean over tiles of the per-tile error in Gauss over the \
         metric window.\n"
    )
}

fn method(ev: &Evaluation) -> String {
    let r = &ev.resampling;
    let n = ev.data.ars.len();
    let perm = if n <= super::stats::EXACT_LIMIT {
        format!(
            "all 2^{n} = {} swap patterns enumerated (exact; the smallest attainable two-sided \
             p is {:.3})",
            1usize << n,
            2.0 / (1usize << n) as f64
        )
    } else {
        format!("{} random swap patterns (seed {})", r.permutations, r.seed)
    };
    format!(
        "Intervals: {:.0} % percentile bootstrap, {} replicates with seed {}, resampling ARs \
         (the independent unit) and the tiles within each drawn AR, with replacement{}; every \
         predictor sees the same draws, so the differences are paired. p-values: two-sided \
         permutation test of Δ = primary − predictor, swapping the two predictors' outcomes per \
         AR; {perm}.\n",
        r.level * 100.0,
        r.resamples,
        r.seed,
        match ev.data.seeds.len() {
            0 | 1 => String::new(),
            n => format!(
                "; the {n} seeds are resampled within each drawn AR (with its tiles), so the \
                 ARs stay the independent unit and a predictor that does not depend on the \
                 seed keeps the interval of one run"
            ),
        }
    )
}

pub fn markdown(ev: &Evaluation, title: &str) -> String {
    let d = &ev.data;
    let delay = d.delay;
    let mut out = format!("# {title}\n\n## The answer\n\n");
    for l in headline(ev).lines() {
        out.push_str(&format!("- {l}\n"));
    }
    out.push_str(&format!("\n{}\n", method(ev)));
    let cols = [
        TSS,
        Stat::Hss(EventSet::TileDelay),
        Stat::Pod(EventSet::TileDelay),
        Stat::Far(EventSet::TileDelay),
        Stat::Pofd(EventSet::TileDelay),
        Stat::Tss(EventSet::TileOperational),
        Stat::Success,
        Stat::MeanLead,
        Stat::Rmse,
    ];
    let names: Vec<String> = std::iter::once("predictor".to_string())
        .chain(cols.iter().map(|m| m.name(delay)))
        .collect();
    let rows: Vec<Vec<String>> = d
        .predictors
        .iter()
        .enumerate()
        .map(|(p, name)| {
            std::iter::once(if p == d.primary {
                format!("**{name}**")
            } else {
                name.clone()
            })
            .chain(
                cols.iter()
                    .map(|m| with_interval(*m, &ev.estimate(p, *m), false)),
            )
            .collect()
        })
        .collect();
    let h: Vec<&str> = names.iter().map(String::as_str).collect();
    out.push_str(&format!("## Scores\n\n{}\n", table::markdown(&h, &rows)));

    out.push_str("## Paired comparisons (primary − predictor)\n\n");
    let names: Vec<String> = std::iter::once("predictor".to_string())
        .chain(Stat::PAIRED.iter().map(|m| format!("Δ {}", m.name(delay))))
        .collect();
    let rows: Vec<Vec<String>> = d
        .predictors
        .iter()
        .enumerate()
        .filter(|(p, _)| *p != d.primary)
        .map(|(p, name)| {
            std::iter::once(name.clone())
                .chain(Stat::PAIRED.iter().enumerate().map(|(k, m)| {
                    ev.paired[p][k].map_or("—".into(), |x| {
                        format!(
                            "{}, {}",
                            with_interval(*m, &x.delta, true),
                            p_clause(x.p_value)
                        )
                    })
                }))
                .collect()
        })
        .collect();
    let h: Vec<&str> = names.iter().map(String::as_str).collect();
    out.push_str(&table::markdown(&h, &rows));
    out.push_str(&format!(
        "\nA positive Δ TSS, success rate or mean lead favours {}; a positive Δ RMSE favours the \
         other predictor.\n\n## Contingency tables\n\n",
        d.predictors[d.primary]
    ));
    for set in EventSet::ALL {
        let rows: Vec<Vec<String>> = d
            .predictors
            .iter()
            .enumerate()
            .map(|(p, name)| {
                let t = ev.tallies[p].table(set);
                let (q1, med, q3, n) = lead_quartiles(ev, p, set);
                vec![
                    name.clone(),
                    format!("{}", t.hits),
                    format!("{}", t.misses),
                    format!("{}", t.false_alarms),
                    format!("{}", t.correct_negatives),
                    num(t.pod(), 2),
                    num(t.far(), 2),
                    num(t.pofd(), 2),
                    num(t.tss(), 2),
                    num(t.hss(), 2),
                    if n > 0 {
                        format!("{} ({}–{}), n = {n}", num(med, 1), num(q1, 1), num(q3, 1))
                    } else {
                        "—".into()
                    },
                ]
            })
            .collect();
        out.push_str(&format!(
            "### {}\n\n{}\n",
            set.name(delay),
            table::markdown(
                &[
                    "predictor",
                    "hits",
                    "misses",
                    "false alarms",
                    "correct negatives",
                    "POD",
                    "FAR",
                    "POFD",
                    "TSS",
                    "HSS",
                    "lead median (quartiles), h",
                ],
                &rows
            )
        ));
    }
    out.push_str(&format!("## Definitions\n\n{}", definitions(delay)));
    out
}

/// `compare`'s view of an evaluate stage: every predictor's TSS with its interval and the
/// primary's paired ΔTSS against it.
pub fn compare_metrics(
    scores: &std::path::Path,
    paired: &std::path::Path,
) -> Result<Vec<Metric>, String> {
    let s = table::read_parquet(scores).map_err(|e| e.to_string())?;
    let p = table::read_parquet(paired).map_err(|e| e.to_string())?;
    let strs = |df: &DataFrame, n: &str| -> Result<Vec<String>, String> {
        let c = df
            .column(n)
            .and_then(|c| c.str().cloned())
            .map_err(|e| e.to_string())?;
        Ok(c.iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let f64s = |df: &DataFrame, n: &str| -> Result<Vec<f64>, String> {
        let c = df
            .column(n)
            .and_then(|c| c.f64().cloned())
            .map_err(|e| e.to_string())?;
        Ok(c.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let mut out = Vec::new();
    let (pred, stat, v, lo, hi) = (
        strs(&s, "predictor")?,
        strs(&s, "statistic")?,
        f64s(&s, "value")?,
        f64s(&s, "ci_low")?,
        f64s(&s, "ci_high")?,
    );
    for i in 0..pred.len() {
        if stat[i].starts_with("TSS (tiles, lead") {
            out.push(Metric::summary(
                format!("TSS {}", pred[i]),
                format!("{} [{}, {}]", num(v[i], 2), num(lo[i], 2), num(hi[i], 2)),
            ));
        }
    }
    let (pred, against, stat, d, lo, hi, pv) = (
        strs(&p, "predictor")?,
        strs(&p, "against")?,
        strs(&p, "statistic")?,
        f64s(&p, "delta")?,
        f64s(&p, "ci_low")?,
        f64s(&p, "ci_high")?,
        f64s(&p, "p_value")?,
    );
    for i in 0..pred.len() {
        if stat[i].starts_with("TSS (tiles, lead") {
            out.push(Metric::summary(
                format!("ΔTSS {} − {}", against[i], pred[i]),
                format!(
                    "{} [{}, {}], {}",
                    signed(d[i], 2),
                    signed(lo[i], 2),
                    signed(hi[i], 2),
                    p_clause(pv[i])
                ),
            ));
        }
    }
    Ok(out)
}
