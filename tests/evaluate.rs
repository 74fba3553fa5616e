//! The `evaluate` stage and the pooled k-fold evaluation, end to end: its contingency tables are
//! Table 2's categories counted, its replay leads are `forecast --replay`'s, its intervals are
//! deterministic with their seed, a predictor the alarms stage did not score is refused, and a
//! k-fold sweep makes every AR not excluded a test AR exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Project, results_project, snapshot};
use polars::prelude::*;

fn frame(path: &str) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path.trim()).unwrap())
        .finish()
        .unwrap()
}

fn artifact(p: &Project, args: &[&str]) -> String {
    let mut a = vec!["artifact"];
    a.extend(args);
    let r = p.run(&a);
    r.assert_ok();
    r.stdout.trim().to_string()
}

fn strs(df: &DataFrame, c: &str) -> Vec<String> {
    df.column(c)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}

fn f64s(df: &DataFrame, c: &str) -> Vec<f64> {
    df.column(c)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect()
}

fn u32s(df: &DataFrame, c: &str) -> Vec<Option<u32>> {
    df.column(c).unwrap().u32().unwrap().iter().collect()
}

fn bools(df: &DataFrame, c: &str) -> Vec<bool> {
    df.column(c)
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .map(Option::unwrap)
        .collect()
}

fn i64s(df: &DataFrame, c: &str) -> Vec<Option<i64>> {
    df.column(c).unwrap().i64().unwrap().iter().collect()
}

/// The real pipeline scoring the reference predictors and the ridge model (no training).
fn reference_project() -> Project {
    let p = Project::real_scoring("linear_trend");
    let text = p.pipeline().replace(
        "[linear_trend, persistence, linear_trend, zero_slope, ridge]",
        "[linear_trend, persistence, zero_slope, ridge]",
    );
    assert_eq!(
        text.matches("[linear_trend, persistence, zero_slope, ridge]")
            .count(),
        3
    );
    p.set_pipeline(&text);
    p
}

#[test]
fn the_evaluation_counts_table_2_and_answers_with_intervals_and_paired_differences() {
    let p = reference_project();
    let r = p.run(&["run", "evaluate"]);
    r.assert_ok();
    // The run ends with the answer: the primary's TSS, then one paired line per predictor.
    let tail: Vec<&str> = r
        .stdout
        .lines()
        .rev()
        .filter(|l| !l.is_empty())
        .take(3)
        .collect();
    for other in ["persistence", "zero-slope", "Ridge (acoustic inputs)"] {
        assert!(
            tail.iter().any(
                |l| l.starts_with(&format!("linear trend (6 h) − {other}: ΔTSS "))
                    && l.contains(", p = ")
                    && l.ends_with("(5 ARs, 35 tiles)")
            ),
            "no paired line for {other}:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stdout.contains("linear trend (6 h): TSS "),
        "{}",
        r.stdout
    );

    // The tile contingency table of each predictor is its Table 2, counted.
    let alarms = frame(&artifact(&p, &["alarms", "alarms"]));
    let cont = frame(&artifact(&p, &["evaluate", "contingency"]));
    let (apred, atile, acat, alead) = (
        strs(&alarms, "predictor"),
        u32s(&alarms, "tile"),
        strs(&alarms, "category"),
        i64s(&alarms, "lead_h"),
    );
    let mut counted: BTreeMap<String, [u32; 4]> = BTreeMap::new();
    for i in 0..alarms.height() {
        if atile[i].is_none() {
            continue;
        }
        let c = counted.entry(apred[i].clone()).or_default();
        let cell = match acat[i].as_str() {
            "Quiet" => 3,
            "ILAP" => 2,
            "NO PRED" => 1,
            _ if alead[i].unwrap() >= 4 => 0,
            _ => 1,
        };
        c[cell] += 1;
    }
    assert_eq!(counted.len(), 4, "{counted:?}");
    let (cpred, cev) = (strs(&cont, "predictor"), strs(&cont, "events"));
    let col = |n: &str| u32s(&cont, n);
    let (h, m, fa, cn) = (
        col("hits"),
        col("misses"),
        col("false_alarms"),
        col("correct_negatives"),
    );
    let (tss, pod, pofd) = (f64s(&cont, "tss"), f64s(&cont, "pod"), f64s(&cont, "pofd"));
    let mut seen = 0;
    for i in 0..cont.height() {
        if cev[i] != "tiles, lead ≥ 4 h" {
            continue;
        }
        seen += 1;
        let got = [h[i], m[i], fa[i], cn[i]].map(Option::unwrap);
        assert_eq!(got, counted[&cpred[i]], "{}", cpred[i]);
        assert_eq!(got.iter().sum::<u32>(), 35);
        let [a, c, b, d] = got.map(f64::from); // hits, misses, false alarms, correct negatives
        assert!(
            (tss[i] - (a / (a + c) - b / (b + d))).abs() < 1e-12,
            "{} {got:?} {}",
            cpred[i],
            tss[i]
        );
        assert!((pod[i] - a / (a + c)).abs() < 1e-12 && (pofd[i] - b / (b + d)).abs() < 1e-12);
    }
    assert_eq!(seen, 4);

    // Every interval covers its estimate; rerunning with the same seed gives the same bytes,
    // another seed other intervals around the same estimates.
    let path = artifact(&p, &["evaluate", "scores"]);
    let scores = frame(&path);
    let (v, lo, hi) = (
        f64s(&scores, "value"),
        f64s(&scores, "ci_low"),
        f64s(&scores, "ci_high"),
    );
    let mut defined = 0;
    for i in 0..scores.height() {
        if v[i].is_finite() && lo[i].is_finite() {
            defined += 1;
            assert!(lo[i] <= v[i] + 1e-12 && v[i] <= hi[i] + 1e-12, "row {i}");
        }
    }
    assert!(defined > 50, "{defined}");
    let bytes = std::fs::read(&path).unwrap();
    p.run(&["run", "evaluate", "--force", "evaluate"])
        .assert_ok();
    assert_eq!(
        std::fs::read(artifact(&p, &["evaluate", "scores"])).unwrap(),
        bytes
    );
    p.run(&["run", "evaluate", "--set", "evaluate.seed=1"])
        .assert_ok();
    let other = frame(&artifact(
        &p,
        &["evaluate", "scores", "--set", "evaluate.seed=1"],
    ));
    assert_eq!(f64s(&other, "value").len(), v.len());
    for (a, b) in f64s(&other, "value").iter().zip(&v) {
        assert!(a == b || (a.is_nan() && b.is_nan()));
    }
    assert_ne!(format!("{:?}", f64s(&other, "ci_low")), format!("{lo:?}"));

    // 5 ARs are enumerated exactly; the primary against itself is not listed.
    let paired = frame(&artifact(&p, &["evaluate", "paired"]));
    assert_eq!(paired.height(), 3 * 4);
    assert!(
        strs(&paired, "against")
            .iter()
            .all(|a| a == "linear trend (6 h)")
    );
    assert!(bools(&paired, "exact").iter().all(|e| *e));
    // Undefined where the statistic is (a predictor that never alarms has no mean lead).
    for pv in f64s(&paired, "p_value").into_iter().filter(|p| !p.is_nan()) {
        // Multiples of 1/32, at least the smallest attainable two-sided 2/32.
        assert!((2.0 / 32.0 - 1e-12..=1.0).contains(&pv), "{pv}");
        assert!(((pv * 32.0) - (pv * 32.0).round()).abs() < 1e-9, "{pv}");
    }
    let md = std::fs::read_to_string(artifact(&p, &["evaluate", "evaluation_md"])).unwrap();
    for needle in [
        "## The answer",
        "## Contingency tables",
        "### ARs, replay warning ≥ 4 h",
    ] {
        assert!(md.contains(needle), "{needle}");
    }
    let png = std::fs::read(artifact(&p, &["evaluate", "forest_png"])).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(artifact(&p, &["evaluate", "forest_svg"])).unwrap();
    assert!(svg.contains("<svg") && svg.contains("Ridge (acoustic inputs)"));
    // `compare` shows the paired differences of variants side by side.
    let c = p.run(&["compare", "default", "default+evaluate.seed=1"]);
    assert!(
        c.stdout.contains("ΔTSS linear trend (6 h) − persistence"),
        "{}{}",
        c.stdout,
        c.stderr
    );
}

/// The fixture's trained model: the replay warning lead of every tile and of the AR in the
/// evaluation is the one `forecast --replay` reports hour by hour.
#[test]
fn the_evaluation_takes_the_operational_lead_of_the_replay() {
    let p = results_project();
    p.set_pipeline(&format!(
        "{}  evaluate:
    kind: evaluate
    inputs: {{protocol: protocol.protocol, scaler: scale.scaler, alarms: alarms.alarms, criterion: alarms.criterion, predictors: [predict, predict_encdec, persistence, trend]}}
    params: {{resamples: 200}}
",
        p.pipeline()
    ));
    p.run(&["run", "evaluate"]).assert_ok();
    let ev = frame(&artifact(&p, &["evaluate", "events"]));
    let primary = bools(&ev, "primary");
    let (tile, lead) = (u32s(&ev, "tile"), i64s(&ev, "replay_lead_h"));
    let ours: BTreeMap<Option<u32>, Option<i64>> = (0..ev.height())
        .filter(|&i| primary[i])
        .map(|i| (tile[i], lead[i]))
        .collect();
    let r = p.run(&[
        "forecast",
        "--replay",
        "--format",
        "json",
        "--out",
        "replay-out",
    ]);
    r.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let a = &v["ars"][0];
    let mut theirs: BTreeMap<Option<u32>, Option<i64>> = a["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                Some(t["tile"].as_u64().unwrap() as u32),
                t["operational_lead_h"].as_i64(),
            )
        })
        .collect();
    theirs.insert(None, a["emergence"]["operational_lead_h"].as_i64());
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 8, "7 tiles and the AR");
}

#[test]
fn a_predictor_the_alarms_stage_did_not_score_is_refused_at_plan_time_and_the_store_kept() {
    let p = results_project();
    p.set_pipeline(&format!(
        "{}  zero:
    kind: baseline
    inputs: *b
    params: {{method: zero_slope}}
  evaluate:
    kind: evaluate
    inputs: {{protocol: protocol.protocol, scaler: scale.scaler, alarms: alarms.alarms, criterion: alarms.criterion, predictors: [predict, zero]}}
",
        p.pipeline()
    ));
    // Refused when the plan is built (it used to be found by the evaluate stage at run time),
    // before anything runs.
    let before = snapshot(&p.store());
    let r = p.run(&["run", "evaluate"]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(
        r.error_lines().iter().any(|l| l.contains(
            "stages.evaluate.inputs.predictors: `zero` is listed here but not in `alarms`'s `predictors`"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(before, snapshot(&p.store()), "the store changed");
    // A bad param is a plan error naming it.
    let r = p.run(&["run", "evaluate", "--set", "evaluate.level=1.5"]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("level"), "{}", r.stderr);
}

/// The k-fold mechanism on a tiny configuration: 3 folds, the reference predictors and ridge.
#[test]
fn a_kfold_sweep_makes_every_ar_a_test_ar_once_and_pools_the_evaluation() {
    let p = reference_project();
    // Folds need a k-fold split: a clear usage error otherwise.
    let r = p.run(&["run", "--folds", "0..1", "evaluate"]);
    assert_ne!(r.code(), Some(0));
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(
        r.stderr.contains("`fold` is only for `mode: kfold`"),
        "{}",
        r.stderr
    );

    let r = p.run(&[
        "run",
        "--variant",
        "kfold",
        "--folds",
        "0..2",
        "--set",
        "split.folds=3",
        "evaluate",
    ]);
    r.assert_ok();
    assert!(
        r.stdout
            .contains("# Pooled evaluation — 53 ARs in 3 folds, 371 tiles"),
        "{}",
        r.stdout
    );
    // Each fold's split: test, validation and training disjoint; over the folds every AR once.
    let mut tested: Vec<u32> = Vec::new();
    for f in 0..3 {
        let v = format!("kfold+fold={f}");
        let df = frame(&artifact(
            &p,
            &["--variant", &v, "split", "splits", "--set", "split.folds=3"],
        ));
        let ar: Vec<u32> = u32s(&df, "ar").into_iter().map(Option::unwrap).collect();
        let role = strs(&df, "role");
        let of = |r: &str| -> BTreeSet<u32> {
            ar.iter()
                .zip(&role)
                .filter(|(_, x)| *x == r)
                .map(|(a, _)| *a)
                .collect()
        };
        let (train, val, test) = (of("train"), of("val"), of("test"));
        assert!(train.is_disjoint(&test) && val.is_disjoint(&test) && train.is_disjoint(&val));
        assert_eq!(of("exclude"), [11190, 11627, 12571, 13213].into());
        tested.extend(test);
    }
    tested.sort_unstable();
    assert_eq!(tested.len(), 53);
    tested.dedup();
    assert_eq!(tested.len(), 53, "no AR is a test AR twice");

    // The pooled rows: each AR in one fold, one Emergence row per predictor.
    let dir = p.store().join("reports/evaluation-kfold-folds0-2");
    let ev = frame(dir.join("events.parquet").to_str().unwrap());
    let (ar, tile, fold) = (
        u32s(&ev, "ar"),
        u32s(&ev, "tile"),
        ev.column("fold")
            .unwrap()
            .u64()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
    );
    let mut fold_of: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut emergence_rows = 0;
    for i in 0..ev.height() {
        fold_of
            .entry(ar[i].unwrap())
            .or_default()
            .insert(fold[i].unwrap());
        emergence_rows += usize::from(tile[i].is_none());
    }
    assert_eq!(fold_of.len(), 53);
    assert!(fold_of.values().all(|f| f.len() == 1));
    assert_eq!(emergence_rows, 53 * 4, "4 predictors × 53 ARs");
    for f in [
        "evaluation.md",
        "scores.parquet",
        "paired.parquet",
        "forest.png",
        "forest.svg",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let paired = frame(dir.join("paired.parquet").to_str().unwrap());
    // More than 12 ARs: random swaps, not enumeration.
    assert!(bools(&paired, "exact").iter().all(|e| !e));

    // The whole cross-validation as one publication crate: every fold's chain (ridge's program
    // with it), the pooled evaluation made from the folds, accepted by the standard validator.
    let krate = p.path().join("kfold-crate");
    let mut args = vec![
        "export",
        "crate",
        "evaluate",
        "--variant",
        "kfold",
        "--folds",
        "0..2",
        "--set",
        "split.folds=3",
        "-o",
        krate.to_str().unwrap(),
    ];
    args.extend_from_slice(&common::CRATE_META);
    let e = p.run(&args);
    e.assert_ok();
    assert!(e.stdout.contains("in 3 sweep points"), "{}", e.stdout);
    let (ok, issues) = common::validate_crate(&krate);
    assert!(ok, "the validator refused the crate:\n{issues}");
    p.run(&["verify", "--crate", krate.to_str().unwrap()])
        .assert_ok();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(krate.join("ro-crate-metadata.json")).unwrap())
            .unwrap();
    let graph = doc["@graph"].as_array().unwrap();
    let pooled = graph
        .iter()
        .find(|e| e["@id"] == "#aggregate-pooled-evaluation")
        .expect("the pooled evaluation's action");
    assert_eq!(pooled["object"].as_array().unwrap().len(), 3, "{pooled}");
    assert_eq!(
        std::fs::read(krate.join("outputs/sweep/pooled-evaluation/events.parquet")).unwrap(),
        std::fs::read(dir.join("events.parquet")).unwrap()
    );
    // Ridge ran once per fold, its program in the crate as their input.
    let ridge_runs: Vec<_> = graph
        .iter()
        .filter(|e| e["@type"] == "CreateAction" && e["instrument"]["@id"] == "#stage-ridge")
        .collect();
    assert_eq!(ridge_runs.len(), 3);
    assert!(
        ridge_runs
            .iter()
            .all(|r| r["object"].to_string().contains("code/")
                && r["object"].to_string().contains("ridge.py")),
        "{:?}",
        ridge_runs
    );
}
