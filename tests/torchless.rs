//! A worker built without libtorch (`cargo build -p magpipe-worker --no-default-features`, what
//! `make run` builds where torch is not installed): it links no libtorch, runs the default
//! pipeline's trainings and predictions on magpipe's own engine to the same bytes as the
//! libtorch-linked worker, and refuses a stage that needs libtorch in one line that says how to
//! get it, before that stage computes anything.
//!
//! `make test` builds that worker into target/torchless/ before the suite (a build inside a test
//! would replace the binary other tests run).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Project, hash_of, results_project};

/// target/torchless/magpipe-worker, beside target/release/ where the tests' `magpipe` is.
fn torchless_worker() -> PathBuf {
    let release = PathBuf::from(common::bin());
    let w = release
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/magpipe")
        .join("torchless")
        .join("magpipe-worker");
    assert!(
        w.is_file(),
        "{} is missing: `make test` builds it (cargo build --release -p magpipe-worker \
         --no-default-features, then copied there)",
        w.display()
    );
    w
}

fn with_worker(p: &Project, worker: &std::path::Path, args: &[&str]) -> common::Run {
    common::Run::from(
        p.cmd(args)
            .env("MAGPIPE_WORKER", worker)
            .output()
            .expect("spawn magpipe"),
    )
}

#[test]
fn the_torchless_worker_links_no_libtorch_and_says_so() {
    let w = torchless_worker();
    let out = Command::new("readelf")
        .args(["-d", "-W"])
        .arg(&w)
        .output()
        .expect("readelf (binutils) runs");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "readelf: {dynamic}");
    assert!(
        !dynamic.contains("libtorch") && !dynamic.contains("libc10"),
        "the torchless worker needs libtorch: {dynamic}"
    );
    // The libtorch-linked worker does, so the check above can tell them apart.
    let linked = Command::new("readelf")
        .args(["-d", "-W"])
        .arg(common::worker())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&linked.stdout).contains("libtorch"));

    let info = Command::new(&w).arg("info").output().unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(v["libtorch_version"].is_null(), "{v}");
    assert_eq!(v["cuda_available"], false);
    assert_eq!(v["kernels"]["numerics"], 1);
    assert!(v["kernels"]["path"].is_string(), "{v}");
}

#[test]
fn the_default_chain_runs_without_libtorch_to_the_same_bytes() {
    let w = torchless_worker();
    let with = results_project();
    let without = results_project();
    with.run(&["run"]).assert_ok();
    with_worker(&without, &w, &["run"]).assert_ok();
    for (stage, output) in [
        ("train", "model"),
        ("train_encdec", "model"),
        ("predict", "predictions"),
        ("predict_encdec", "predictions"),
        ("alarms", "alarms"),
    ] {
        assert_eq!(
            hash_of(&with, stage, output),
            hash_of(&without, stage, output),
            "{stage}.{output}"
        );
    }
    // The same keys too: a store filled by either worker serves the other.
    let keys = |p: &Project| {
        let r = p.run(&["status", "--format", "json"]);
        r.assert_ok();
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["stage"].as_str().unwrap().contains("predict")
                    || s["stage"].as_str().unwrap().starts_with("train")
            })
            .map(|s| (s["stage"].to_string(), s["key"].to_string()))
            .collect::<Vec<_>>()
    };
    let k = keys(&with);
    assert_eq!(k.len(), 4, "{k:?}");
    assert_eq!(k, keys(&without));
}

#[test]
fn a_stage_that_needs_libtorch_is_refused_in_one_line_and_writes_nothing() {
    let w = torchless_worker();
    let p = results_project();
    p.set_pipeline(&p.pipeline().replacen(
        "early_stop: none",
        "early_stop: none, kernels: native",
        1,
    ));
    assert!(p.pipeline().contains("kernels: native"), "{}", p.pipeline());
    let r = with_worker(&p, &w, &["run", "train"]);
    assert!(!r.ok(), "{}", r.stderr);
    let errors = r.error_lines();
    assert!(
        errors.iter().any(|l| l.contains("train")
            && l.contains("`kernels: native`")
            && l.contains("make build")),
        "{errors:#?}"
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    // Its key cannot be computed without libtorch, so the stage never starts: no record, no
    // checkpoint, nothing of it in the store; its upstream data stages ran and were kept.
    assert!(p.store().join("refs/default/window").exists());
    assert!(!p.store().join("refs/default/train").exists());
    let left = std::fs::read_dir(p.store().join("checkpoints"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
    // The libtorch-linked worker runs the same pipeline.
    p.run(&["run", "train"]).assert_ok();
    assert!(p.store().join("refs/default/train").exists());
}
