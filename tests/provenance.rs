//! Provenance on a small real pipeline (the data stages, the test protocol, the reference
//! predictors, alarms and tables; no training): lineage down to the raw files, verify, the run
//! log and gc.

mod common;

use std::collections::BTreeSet;

use common::{Project, repo};

/// The repository's pipeline up to Table 2, scored on the reference predictors only.
fn project() -> Project {
    let p = Project::real();
    let baselines = "[persistence, linear_trend, zero_slope]";
    let text = p
        .pipeline()
        .replace(
            "[predict_lstm_hybrid, predict_lstm_mse, predict_encdec_mse, predict_encdec_hybrid,\n                   persistence, linear_trend, zero_slope, ridge]",
            baselines,
        )
        // The figures draw only what the alarms score (a plan-time check).
        .replace(
            "models: [predict_lstm_hybrid, predict_lstm_mse, predict_encdec_mse, predict_encdec_hybrid, ridge]",
            "models: [persistence]",
        )
        .replace(
            "published: reference/paper-table2.csv",
            &format!("published: {}", repo().join("reference/paper-table2.csv").display()),
        );
    assert_eq!(
        text.matches(baselines).count(),
        3,
        "the pipeline's alarms/tables/evaluate stages changed"
    );
    p.set_pipeline(&text);
    p
}

fn b3(path: &std::path::Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

#[test]
fn lineage_of_table_2_reaches_every_raw_file_with_true_hashes() {
    let p = project();
    p.run(&["run", "tables"]).assert_ok();
    let r = p.run(&["lineage", "tables:table2", "--format", "json"]);
    r.assert_ok();
    let l: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let stages: BTreeSet<&str> = l["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "ingest",
            "split",
            "scale",
            "window",
            "protocol",
            "persistence",
            "linear_trend",
            "zero_slope",
            "alarms",
            "tables"
        ]
        .into()
    );
    // Every output hash in the lineage is the hash of the object the store holds.
    let store = p.store();
    let mut n = 0;
    for s in l["stages"].as_array().unwrap() {
        for o in s["outputs"].as_object().unwrap().values() {
            let (hash, file) = (o["hash"].as_str().unwrap(), o["file"].as_str().unwrap());
            assert_eq!(b3(&store.join("objects").join(hash).join(file)), hash);
            n += 1;
        }
        assert!(s["git_commit"].as_str().unwrap().len() >= 7, "{s}");
        assert!(s["key"].as_str().unwrap().len() == 64);
    }
    assert!(n >= 20, "{n} outputs");
    assert_eq!(
        l["output"]["hash"],
        l["stages"].as_array().unwrap().last().unwrap()["outputs"]["table2"]["hash"]
    );
    // Every raw file: the 57 ARs' three files and the transcribed published Table 2, each with
    // its true size and hash.
    let raw = l["raw_files"].as_array().unwrap();
    assert_eq!(raw.len(), 57 * 3 + 1);
    assert!(raw.iter().any(|f| {
        f["path"]
            .as_str()
            .unwrap()
            .ends_with("reference/paper-table2.csv")
    }));
    for f in raw.iter().step_by(17) {
        let path = std::path::Path::new(f["path"].as_str().unwrap());
        assert_eq!(
            b3(path),
            f["blake3"].as_str().unwrap(),
            "{}",
            path.display()
        );
        assert_eq!(
            std::fs::metadata(path).unwrap().len(),
            f["size"].as_u64().unwrap()
        );
    }
    // Params that differ from the kind's defaults are marked.
    let split = l["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "split")
        .unwrap();
    assert!(
        split["non_default"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "train")
    );
    // The Markdown form names the raw files too.
    let md = p.run(&["lineage", "tables:table2", "--format", "md"]);
    assert!(md.stdout.contains("### Raw files (172)"), "{}", md.stdout);
}

#[test]
fn verify_finds_a_flipped_byte_and_run_log_and_gc_keep_what_is_reachable() {
    let p = project();
    p.run(&["run", "tables"]).assert_ok();
    p.run(&["run", "tables", "--set", "zero_slope.label=flat"])
        .assert_ok();
    p.run(&["run", "tables"]).assert_ok();

    let runs: serde_json::Value = serde_json::from_str(&p.run(&["runs", "--json"]).stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let count = |r: &serde_json::Value, what: &str| {
        r["stages"]
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v[0] == what)
            .count()
    };
    assert_eq!((count(&runs[0], "ran"), count(&runs[0], "cached")), (10, 0));
    assert_eq!(count(&runs[1], "ran"), 3); // zero_slope, alarms, tables
    assert_eq!((count(&runs[2], "ran"), count(&runs[2], "cached")), (0, 10));
    assert_eq!(runs[2]["outputs"], runs[0]["outputs"]);
    assert!(runs[2]["outputs"]["tables"]["table2"].is_string());

    let v = p.run(&["verify"]);
    v.assert_ok();
    assert!(
        v.stdout.contains("13 records") && v.stdout.ends_with("ok\n"),
        "{}",
        v.stdout
    );

    // The one-off run is a variant of its own, named by its override, with its own refs.
    assert_eq!(runs[1]["variant"], "default+zero_slope.label=flat");
    let own = p.store().join("refs").join("default+zero_slope.label=flat");
    assert!(own.join("zero_slope").is_file());
    // gc keeps what refs name; once that experiment's refs are gone, keeping only the last run
    // drops its three records, nothing reachable (no grace period: all were made a moment ago).
    let g = p.run(&["gc", "--keep-runs", "1", "--grace", "0"]);
    assert!(g.stdout.starts_with("removed 0 records"), "{}", g.stdout);
    std::fs::remove_dir_all(&own).unwrap();
    let g = p.run(&["gc", "--keep-runs", "1", "--grace", "0"]);
    g.assert_ok();
    assert!(g.stdout.starts_with("removed 3 records"), "{}", g.stdout);
    let again = p.run(&["run", "tables"]);
    assert_eq!(again.stages("stage_cached").len(), 10);
    p.run(&["verify"]).assert_ok();

    // A flipped byte in a stored object: verify names it and fails.
    let out = std::path::PathBuf::from(p.run(&["artifact", "scale", "scaler"]).stdout.trim());
    let mut perm = std::fs::metadata(&out).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&out, perm).unwrap();
    let good = std::fs::read(&out).unwrap();
    let mut b = good.clone();
    b[10] ^= 1;
    std::fs::write(&out, &b).unwrap();
    let v = p.run(&["verify"]);
    assert_eq!(v.code(), Some(1));
    assert!(
        v.stdout
            .contains(&format!("corrupted object {}", out.display())),
        "{}",
        v.stdout
    );
    let v = p.run(&["verify", "window"]);
    assert!(v.stdout.contains(": 1 problem\n"), "{}", v.stdout);
    // `run` never uses the damaged object: it moves it aside and recomputes it; the bytes come
    // back the same, so nothing downstream reruns.
    let r = p.run(&["run", "tables"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["scale"]);
    assert_eq!(std::fs::read(&out).unwrap(), good);
    p.run(&["verify"]).assert_ok();
    assert_eq!(
        std::fs::read_dir(p.store().join("tmp/corrupt"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn variants_differing_in_scoring_share_everything_upstream_and_compare_side_by_side() {
    let p = project();
    p.set_pipeline(&format!(
        "{}  published-code-lead:\n    doc: the published table code's +1 h lead\n    alarms: {{lead_offset: 1}}\n",
        p.pipeline()
    ));
    p.run(&["run", "tables"]).assert_ok();
    let v = p.run(&["run", "tables", "--variant", "published-code-lead"]);
    v.assert_ok();
    assert_eq!(v.stages("stage_finished"), ["alarms", "tables"]);
    let c = p.run(&["compare", "default", "published-code-lead"]);
    c.assert_ok();
    insta::assert_snapshot!("compare_lead_offset", c.stdout);
    // Not only the primary predictor's Table 2: each other predictor's successes are shown, and
    // its cells where they differ (issue 41: a model's changed alarms were hidden).
    assert!(
        c.stdout.contains(
            "| alarms: successful ARs (linear trend (6 h), lead ≥ 4 h) | 4/5 | **5/5** |"
        ) && c.stdout.contains(
            "| alarms: Table 2 (linear trend (6 h)) AR11698 Emergence | 6h Alarm | **7h Alarm** |"
        ) && c
            .stdout
            .contains("per-cell results that are the same in every variant are not listed"),
        "{}",
        c.stdout
    );
    let csv = p.run(&[
        "compare",
        "default",
        "published-code-lead",
        "--format",
        "csv",
    ]);
    assert!(
        csv.stdout
            .starts_with("kind,name,default,published-code-lead\nparam,alarms.lead_offset,0,1\n"),
        "{}",
        csv.stdout
    );
    // A variant that extends another runs its overrides: the same keys, so nothing reruns, and
    // one more override is the only difference `compare` sees.
    p.set_pipeline(&p.pipeline().replace(
        "alarms: {lead_offset: 1}",
        "alarms: {lead_offset: 1}\n  same-lead:\n    extends: published-code-lead\n  \
         strict-lead:\n    extends: [same-lead]\n    alarms: {sustain: 5}",
    ));
    let same = p.run(&["run", "tables", "--variant", "same-lead"]);
    same.assert_ok();
    assert!(same.stages("stage_finished").is_empty(), "{}", same.stderr);
    let c = p.run(&["compare", "published-code-lead", "strict-lead"]);
    c.assert_ok();
    assert!(
        c.stdout.contains("| alarms.sustain | `4` | `5` |") && !c.stdout.contains("lead_offset"),
        "{}",
        c.stdout
    );
    // A variant whose scoring has not run shows its shared results and says what is missing.
    p.set_pipeline(&p.pipeline().replace(
        "alarms: {sustain: 5}",
        "alarms: {sustain: 5}\n  strict:\n    alarms: {sustain: 5}",
    ));
    let c = p.run(&["compare", "default", "strict"]);
    c.assert_ok();
    assert!(
        c.stdout
            .contains("Not run in `strict` (results shown as –): "),
        "{}",
        c.stdout
    );
    assert!(
        c.stdout.contains("| alarms.sustain | `4` | `5` |"),
        "{}",
        c.stdout
    );
}

/// Debian's chromium, which `make test` installs.
fn chromium() -> std::path::PathBuf {
    for c in ["chromium", "chromium-browser"] {
        if let Ok(out) = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            && out.status.success()
        {
            return std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("chromium is not installed: `make test` installs Debian's `chromium` package");
}

#[test]
fn the_html_report_loads_in_a_real_browser() {
    let p = project();
    p.run(&["run", "tables"]).assert_ok();
    let out = p.path().join("report.html");
    let r = p.run(&["report", "-o", out.to_str().unwrap()]);
    r.assert_ok();
    let html = std::fs::read_to_string(&out).unwrap();
    // Self-contained: nothing is fetched from anywhere.
    for needle in ["http://", "https://", "<script src", "<link "] {
        assert!(!html.contains(needle), "the report refers to {needle}");
    }
    assert!(
        html.contains("Provenance of <code>tables:table2</code>"),
        "no lineage in the report"
    );

    let browser = chromium();
    let profile = tempfile::tempdir().unwrap();
    let base = |extra: &[&str]| {
        let mut c = std::process::Command::new(&browser);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", out.display()));
        c.output().unwrap()
    };
    let dom = base(&["--enable-logging=stderr", "--v=0", "--dump-dom"]);
    assert!(dom.status.success());
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(
        dom_text.matches("<tr class=\"ar\">").count(),
        5,
        "five AR rows in Table 2"
    );
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(
        !stderr.lines().any(|l| l.contains("CONSOLE")),
        "console messages:\n{stderr}"
    );
    let shot = p.path().join("shot.png");
    let s = base(&[
        "--window-size=1200,1600",
        &format!("--screenshot={}", shot.display()),
    ]);
    assert!(s.status.success());
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // A blank page compresses to a few kilobytes; tables and colour do not.
    assert!(
        png.len() > 40_000,
        "a blank screenshot? {} bytes",
        png.len()
    );
}
