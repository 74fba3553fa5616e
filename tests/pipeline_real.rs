//! End to end on the real SolARED data: counts, caching, reruns, early cutoff.

mod common;

use common::{Project, snapshot_without_runs, tensor_shapes};

fn artifact(p: &Project, stage: &str, output: &str) -> std::path::PathBuf {
    let r = p.run(&["artifact", stage, output]);
    r.assert_ok();
    std::path::PathBuf::from(r.stdout.trim())
}

#[test]
fn window_from_empty_store_then_cache_hits_and_targeted_reruns() {
    let p = Project::real();
    let first = p.run(&["run", "window"]);
    first.assert_ok();
    assert_eq!(
        first.stages("stage_finished"),
        ["ingest", "scale", "split", "window"]
    );
    // The inventory is the ingest stage's result; stdout carries only what the targets report
    // (issue 41: `run gru` printed all 57 rows of it).
    assert!(
        !first.stdout.contains("| 11726 | 232 |"),
        "{}",
        first.stdout
    );
    let inventory = std::fs::read_to_string(artifact(&p, "ingest", "inventory_md")).unwrap();
    assert!(inventory.contains("| 11726 | 232 |"), "{inventory}");

    let train = tensor_shapes(&artifact(&p, "window", "train"));
    let val = tensor_shapes(&artifact(&p, "window", "val"));
    assert_eq!(train["x"], [44_280, 110, 5]);
    assert_eq!(train["y"], [44_280, 12]);
    assert_eq!(val["x"], [7_560, 110, 5]);
    assert_eq!(val["y"], [7_560, 12]);

    // Second run: every stage is a cache hit and the store does not change, but for the run log.
    let before = snapshot_without_runs(&p.store());
    let logged = std::fs::read_dir(p.store().join("runs")).unwrap().count();
    let second = p.run(&["run", "window"]);
    second.assert_ok();
    assert_eq!(
        second.stages("stage_cached"),
        ["ingest", "scale", "split", "window"]
    );
    assert!(second.stages("stage_finished").is_empty());
    assert_eq!(snapshot_without_runs(&p.store()), before);
    assert_eq!(
        std::fs::read_dir(p.store().join("runs")).unwrap().count(),
        logged + 1
    );

    // A comment-only edit reruns nothing.
    p.set_pipeline(&format!(
        "# a note about the study\n{}",
        p.pipeline()
            .replace("kind: window", "kind: window   # sliding windows")
    ));
    let commented = p.run(&["run", "window"]);
    commented.assert_ok();
    assert!(commented.stages("stage_finished").is_empty());

    // Leaving a param at its default, written out or not, changes no key either.
    assert!(p.pipeline().contains("      stride: 1\n"));
    p.set_pipeline(&p.pipeline().replace("      stride: 1\n", ""));
    assert!(
        p.run(&["run", "window"])
            .assert_ok()
            .stages("stage_finished")
            .is_empty()
    );

    // Changing window.params.input reruns only window.
    p.set_pipeline(&p.pipeline().replace("input: 110", "input: 100"));
    let status = p.run(&["status", "--explain"]);
    status.assert_ok();
    assert!(
        status.stdout.contains("param `input`: 110 → 100"),
        "{}",
        status.stdout
    );
    let changed = p.run(&["run", "window"]);
    changed.assert_ok();
    assert_eq!(changed.stages("stage_finished"), ["window"]);
    assert_eq!(changed.stages("stage_cached"), ["ingest", "scale", "split"]);
    // 41 ARs × 9 tiles × (240 − 100 − 12 + 2) windows.
    assert_eq!(
        tensor_shapes(&artifact(&p, "window", "train"))["x"],
        [41 * 9 * 130, 100, 5]
    );
}

#[test]
fn byte_identical_scale_output_stops_window_from_rerunning() {
    let p = Project::real();
    p.run(&["run", "window"]).assert_ok();
    // Moving the clean, excluded AR11627 into the test set changes the split and reruns scale,
    // but the training fit and the train/val tables are byte-identical: window stays cached.
    let text = p
        .pipeline()
        .replace(
            "test: [11698, 11726, 13165, 13179, 13183]",
            "test: [11698, 11726, 13165, 13179, 13183, 11627]",
        )
        .replace(
            "exclude: [11190, 11627, 12571, 13213]",
            "exclude: [11190, 12571, 13213]",
        );
    assert_ne!(text, p.pipeline());
    p.set_pipeline(&text);
    let r = p.run(&["run", "window"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["scale", "split"]);
    assert_eq!(r.stages("stage_cached"), ["ingest", "window"]);
}

#[test]
fn status_dag_and_artifact_on_the_real_pipeline() {
    let p = Project::real();
    let st = p.run(&["status"]);
    st.assert_ok();
    assert!(
        st.stdout.lines().next().unwrap().contains("stale"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("never run"));
    // Read-only commands create no store.
    assert!(!p.store().exists());
    let stale = p.run(&["artifact", "window", "train"]);
    assert_eq!(stale.code(), Some(1));
    assert!(stale.stderr.contains("not up to date"), "{}", stale.stderr);

    let dot = p.run(&["dag", "--format", "dot"]);
    dot.assert_ok();
    assert!(
        dot.stdout.contains("\"scale\" -> \"window\""),
        "{}",
        dot.stdout
    );
    let text = p.run(&["dag"]);
    assert!(
        text.stdout
            .contains("window (window)\n  train ← scale.train\n"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("variant paper-text: "),
        "{}",
        text.stdout
    );
    let mm = p.run(&["dag", "--format", "mermaid"]);
    assert!(mm.stdout.starts_with("flowchart LR"));

    p.run(&["run", "scale"]).assert_ok();
    let st = p.run(&["status"]);
    let lines: Vec<&str> = st.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("scale") && l.contains("fresh")),
        "{}",
        st.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("window") && l.contains("never run")),
        "{}",
        st.stdout
    );
    let all = p.run(&["artifact", "scale"]);
    all.assert_ok();
    let names: Vec<&str> = all
        .stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, ["scaler", "test", "train", "val"]);
    let scaler = artifact(&p, "scale", "scaler");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(scaler).unwrap()).unwrap();
    assert_eq!(json["fit_ars"].as_array().unwrap().len(), 41);
    assert_eq!(json["fit_samples"], 41 * 9 * 240);
}

#[test]
fn paper_text_variant_shares_upstream_stages_and_explains_itself() {
    let p = Project::real();
    p.run(&["run", "scale"]).assert_ok();
    let st = p.run(&["status", "--variant", "paper-text", "--explain", "scale"]);
    st.assert_ok();
    assert!(
        st.stdout
            .contains("vs the default: param `mode`: \"shared_power\" → \"per_channel\""),
        "{}",
        st.stdout
    );
    let r = p.run(&["run", "--variant", "paper-text", "window"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_cached"), ["ingest", "split"]);
    assert_eq!(r.stages("stage_finished"), ["scale", "window"]);
    let out = p.run(&["artifact", "--variant", "paper-text", "window", "train"]);
    let shapes = tensor_shapes(std::path::Path::new(out.stdout.trim()));
    // True 12-hour horizon: one window fewer per tile.
    assert_eq!(shapes["x"], [41 * 9 * 119, 110, 5]);
    // The default's results are still there, untouched.
    assert!(p.run(&["status", "scale"]).stdout.contains("fresh"));

    let forced = p.run(&["run", "--force", "split", "split"]);
    forced.assert_ok();
    assert_eq!(forced.stages("stage_finished"), ["split"]);
    assert_eq!(forced.stages("stage_cached"), ["ingest"]);
}
