//! The results half of the pipeline end to end on fixture ARs written in the real format: a tiny
//! trained model → test protocol → predict and baselines → alarms → tables and a figure.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{
    Project, RESULTS_TEST_AR as TEST_AR, hash_of, results_project as project,
    results_project_with_study as project_with_study,
};
use polars::prelude::{ParquetReader, SerReader};

fn artifact(p: &Project, stage: &str, output: &str) -> std::path::PathBuf {
    let r = p.run(&["artifact", stage, output]);
    r.assert_ok();
    std::path::PathBuf::from(r.stdout.trim())
}

fn png_size(path: &std::path::Path) -> (u32, u32, usize) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    (
        u32::from_be_bytes(b[16..20].try_into().unwrap()),
        u32::from_be_bytes(b[20..24].try_into().unwrap()),
        b.len(),
    )
}

#[test]
fn the_results_chain_renders_every_file() {
    let p = project();
    let r = p.run(&["run"]);
    r.assert_ok();
    // Table 2 and the comparison reach stdout.
    assert!(
        r.stdout.contains("# Table 2 — MagFluxLSTM hybrid"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("cells match in category"), "{}", r.stdout);
    assert!(r.stdout.contains("| persistence |"), "{}", r.stdout);

    // One row per scored tile plus the AR's Emergence row.
    let t2 = std::fs::read_to_string(artifact(&p, "alarms", "table2")).unwrap();
    assert_eq!(t2.lines().count(), 1 + 7 + 1, "{t2}");
    assert!(
        t2.lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("AR{TEST_AR},38,")),
        "{t2}"
    );
    let tex = std::fs::read_to_string(artifact(&p, "tables", "table2_tex")).unwrap();
    assert!(
        tex.contains("\\begin{tabular}") && tex.contains(&format!("AR{TEST_AR} &")),
        "{tex}"
    );
    let t1 = std::fs::read_to_string(artifact(&p, "tables", "table1")).unwrap();
    for row in [
        "| MagFluxLSTM | hybrid |",
        "| MagFluxEnc-Dec | MSE |",
        "| persistence |",
        "| linear trend (6 h) |",
    ] {
        assert!(t1.contains(row), "{row} missing from\n{t1}");
    }

    // Predictions: one row per plot position of every scored tile, Gauss beside scaled.
    let df =
        ParquetReader::new(std::fs::File::open(artifact(&p, "predict", "predictions")).unwrap())
            .finish()
            .unwrap();
    // windows = 64 − (30 − 1 + 6) + 1 = 30; plot positions = history 10 + 30.
    assert_eq!(df.height(), 7 * 40);
    for c in ["observed_gauss", "predicted_gauss", "in_metric", "time"] {
        assert!(df.column(c).is_ok(), "{c}");
    }

    let (w, h, n) = png_size(&artifact(&p, "figure", &format!("png_{TEST_AR}")));
    assert_eq!((w, h), (1400, 1200));
    assert!(n > 50_000, "a near-empty figure: {n} bytes");
    let svg = std::fs::read_to_string(artifact(&p, "figure", &format!("svg_{TEST_AR}"))).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Comparison Results for AR15004"));

    // Everything is cached on a second run, and a scoring param reruns only what follows it.
    let again = p.run(&["run"]);
    assert!(again.stages("stage_finished").is_empty());
    p.set_pipeline(&p.pipeline().replace(
        "predictors: [predict, predict_encdec, persistence, trend]}\n  tables",
        "predictors: [predict, predict_encdec, persistence, trend]}\n    params: {lead_offset: 1}\n  tables",
    ));
    let r = p.run(&["run"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["alarms", "figure", "tables"]);
}

#[test]
fn a_figure_for_an_ar_outside_the_protocol_is_refused() {
    let p = project();
    p.set_pipeline(&p.pipeline().replace(
        &format!("params: {{ars: [{TEST_AR}]}}"),
        "params: {ars: [11726]}",
    ));
    let r = p.run(&["run", "figure"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr
            .contains("AR11726 is not in the test protocol (AR15004)"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_chain_audits_clean_and_an_unseeded_training_is_caught() {
    let p = project();
    p.run(&["run"]).assert_ok();
    let a = p.run(&["audit", "tables"]);
    a.assert_ok();
    assert!(
        a.stdout.contains("clean: every output is byte-identical"),
        "{}",
        a.stdout
    );
    // Training history holds timings: reported apart, not as a difference.
    assert!(a.stdout.contains("volatile     train"), "{}", a.stdout);
    assert!(a.stdout.contains("identical    alarms"), "{}", a.stdout);
    // The scratch store is gone afterwards.
    let tmp = std::fs::read_dir(p.store().join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tmp, 0);

    // An unseeded run: the same key, different weights — audit names the first such stage.
    p.set_pipeline(
        &p.pipeline()
            .replace("early_stop: none, seed: 3", "early_stop: none, seed: null"),
    );
    p.run(&["run"]).assert_ok();
    let a = p.run(&["audit", "tables"]);
    assert_eq!(a.code(), Some(1), "{}", a.stdout);
    assert!(
        a.stdout
            .contains("NOT reproducible: the first stage whose outputs differ is `train`"),
        "{}",
        a.stdout
    );
    assert!(
        a.stdout
            .contains("model (model.safetensors): first difference at byte"),
        "{}",
        a.stdout
    );
}

#[test]
fn seeds_and_set_sweeps_run_as_variants_sharing_upstream_stages() {
    let p = project();
    let r = p.run(&["run", "tables", "--seeds", "1..3"]);
    r.assert_ok();
    assert!(r.stdout.contains("sweep of 3 points:"), "{}", r.stdout);
    assert!(
        r.stdout.contains("# Table 2 over 3 seeds (1, 2, 3)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("| AR{TEST_AR} | 38 ")),
        "{}",
        r.stdout
    );
    // Every predictor's success shares, not only the primary's; a baseline ignores the seed, so
    // its shares are all or nothing.
    assert!(
        r.stdout
            .contains(&format!("| predictor | AR{TEST_AR} | all ARs |")),
        "{}",
        r.stdout
    );
    let row = |label: &str| -> Vec<String> {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {label} | ")))
            .unwrap_or_else(|| panic!("no row for {label}:\n{}", r.stdout));
        line.trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect()
    };
    assert_eq!(row("MagFluxEnc-Dec MSE").len(), 3);
    for label in ["persistence", "linear trend (6 h)"] {
        let cell = &row(label)[1];
        assert!(
            ["0/3 (0)", "3/3 (0)", "3/3 (3)"].contains(&cell.as_str()),
            "{label}: {cell}"
        );
    }
    // Every point trains its own models; the data stages and the baselines run once in all.
    let finished = r.stages("stage_finished");
    let count = |suffix: &str| finished.iter().filter(|s| s.ends_with(suffix)).count();
    assert_eq!(count("/train"), 3);
    assert_eq!(count("/ingest"), 1);
    assert_eq!(count("/persistence"), 1);
    // Each point is a variant that status, compare and artifact can name.
    assert!(p.store().join("refs/default+seed=2/tables").is_file());
    let st = p.run(&["status", "tables", "--variant", "default+seed=2"]);
    st.assert_ok();
    assert!(!st.stdout.contains("stale"), "{}", st.stdout);
    let c = p.run(&["compare", "default+seed=1", "default+seed=2"]);
    c.assert_ok();
    assert!(
        c.stdout.contains("| train.seed | `1` | `2` |"),
        "{}",
        c.stdout
    );
    let reports = std::fs::read_dir(p.store().join("reports"))
        .unwrap()
        .count();
    assert_eq!(reports, 1);

    // A --set sweep: two points; the one equal to a seed point above is all cached.
    let r = p.run(&[
        "run",
        "tables",
        "--set",
        "train.seed=1,9",
        "--set",
        "train_encdec.seed=1",
    ]);
    r.assert_ok();
    // Each point is named by every override, the fixed one too.
    assert!(
        r.stdout
            .contains("train.seed=1,train_encdec.seed=1: 0 ran, 13 cached"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("train.seed=9,train_encdec.seed=1: 4 ran, 9 cached"),
        "{}",
        r.stdout
    );
    // The name resolves to what made it: its status is fresh, its own refs are there.
    let s = p.run(&[
        "status",
        "tables",
        "--variant",
        "default+train.seed=9,train_encdec.seed=1",
    ]);
    s.assert_ok();
    assert!(!s.stdout.contains("stale"), "{}", s.stdout);
    // A --set with alternatives names several points: a command that shows one says so.
    let many = p.run(&["status", "tables", "--set", "train.seed=1,9"]);
    assert_eq!(many.code(), Some(2), "{}", many.stderr);
    assert!(
        many.stderr.contains("--set names 2 sweep points"),
        "{}",
        many.stderr
    );
}

#[test]
fn killed_at_twenty_random_points_the_pipeline_still_ends_with_the_same_table_2() {
    let whole = project_with_study();
    whole.run(&["run", "tables", "figure", "tune"]).assert_ok();
    let want = hash_of(&whole, "tables", "table2_csv");

    let p = project_with_study();
    // Each kill waits for the k-th stage of its run to start (k seeded in 1..=3), then a seeded
    // 0–400 ms more: the kills walk through the whole run (data stages, both trainings,
    // predictions, scoring, rendering and the study) at the same places however loaded the
    // machine is, and every run but a k = 1 one finishes stages before it dies.
    let mut rng = magpipe_stages::tune::tpe::Rng::new(20);
    let mut stages_hit = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let k = 1 + (rng.uniform() * 3.0) as usize;
        let delay = std::time::Duration::from_millis((rng.uniform() * 400.0) as u64);
        let mut child = p
            .cmd(&["run", "tables", "figure", "tune"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (kth_started, started) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let (mut running, mut n) = (None, 0);
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["event"] == "stage_started"
                {
                    running = v["stage"].as_str().map(str::to_string);
                    n += 1;
                    if n == k {
                        let _ = kth_started.send(());
                    }
                }
            }
            running
        });
        // A run with fewer than k stages left ends on its own and closes the channel.
        if started.recv().is_ok() {
            std::thread::sleep(delay);
        }
        let _ = child.kill(); // SIGKILL; a run that already finished is simply reaped
        child.wait().unwrap();
        if let Some(s) = reader.join().unwrap() {
            stages_hit.insert(s);
        }
    }
    let r = p.run(&["run", "tables", "figure", "tune"]);
    r.assert_ok();
    assert_eq!(hash_of(&p, "tables", "table2_csv"), want);
    // The study finishes all its trials after the kills, exactly as the uninterrupted one did.
    let trials =
        std::fs::read_to_string(p.run(&["artifact", "tune", "trials_md"]).stdout.trim()).unwrap();
    assert_eq!(trials.lines().count(), 2 + 3, "{trials}");
    let want_trials =
        std::fs::read_to_string(whole.run(&["artifact", "tune", "trials_md"]).stdout.trim())
            .unwrap();
    assert_eq!(trials, want_trials);
    let v = p.run(&["verify"]);
    v.assert_ok();
    // Kills landed in several different stages, training among them.
    assert!(stages_hit.len() >= 3, "{stages_hit:?}");
    assert!(
        stages_hit
            .iter()
            .any(|s| s == "train" || s == "train_encdec" || s == "tune"),
        "{stages_hit:?}"
    );
}
