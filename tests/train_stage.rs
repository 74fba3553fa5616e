//! The `train` stage end to end through the CLI and its worker: outputs, caching, and a run
//! killed after its first epoch that resumes to the same weights as an uninterrupted one.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{Project, fixture_project};

fn with_train(p: &Project) {
    p.set_pipeline(&format!(
        "{}  train:
    kind: train
    inputs:
      train: window.train
      val: window.val
    params:
      model: MagFluxEnc-Dec
      teacher_forcing_ratio: 0.5
      hidden: 8
      layers: 2
      epochs: 3
      batch_size: 32
      early_stop: none
      seed: 7
",
        p.pipeline()
    ));
}

fn project() -> Project {
    let p = fixture_project(&[15001, 15002], &[15003], &[15004], 64);
    with_train(&p);
    p
}

#[test]
fn train_writes_its_outputs_and_is_cached() {
    let p = project();
    let r = p.run(&["run", "train"]);
    r.assert_ok();
    assert_eq!(
        r.stages("stage_finished"),
        ["ingest", "scale", "split", "train", "window"]
    );
    assert!(
        r.events
            .iter()
            .any(|e| e["event"] == "stage_progress" && e["stage"] == "train")
    );
    let cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.run(&["artifact", "train", "config"]).stdout.trim()).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["epochs_run"], 3);
    assert!(cfg["param_count"].as_i64().unwrap() > 0);
    assert!(cfg["zero_slope_rmse"].as_f64().unwrap() > 0.0);
    let md =
        std::fs::read_to_string(p.run(&["artifact", "train", "history_md"]).stdout.trim()).unwrap();
    assert_eq!(md.lines().count(), 2 + 3, "{md}");
    let png = std::fs::read(p.run(&["artifact", "train", "loss_curve"]).stdout.trim()).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 10_000,
        "a near-empty image: {} bytes",
        png.len()
    );
    let again = p.run(&["run", "train"]);
    assert_eq!(again.stages("stage_cached").len(), 5);
    // A training param reruns training only.
    p.set_pipeline(&p.pipeline().replace("seed: 7", "seed: 8"));
    let r = p.run(&["run", "train"]);
    assert_eq!(r.stages("stage_finished"), ["train"]);
}

#[test]
fn a_killed_native_training_resumes_to_identical_weights() {
    killed_and_resumed(&["--set", "train.kernels=native"]);
}

#[test]
fn a_killed_training_on_the_default_kernels_resumes_to_identical_weights() {
    killed_and_resumed(&[]);
}

/// A training killed after its first epoch's checkpoint and run again ends with the weights of an
/// uninterrupted one; `set` chooses the kernels.
fn killed_and_resumed(set: &[&'static str]) {
    let args = |cmd: &[&'static str]| -> Vec<&str> {
        let mut a = vec![cmd[0]];
        a.extend_from_slice(set);
        a.extend_from_slice(&cmd[1..]);
        a
    };
    let weights = |p: &Project| {
        let r = p.run(&args(&["artifact", "train", "model"]));
        r.assert_ok();
        std::fs::read(r.stdout.trim()).unwrap()
    };
    let whole = project();
    whole.run(&args(&["run", "train"])).assert_ok();

    let p = project();
    let mut child = p
        .cmd(&args(&["run", "train"]))
        .env("MAGPIPE_FAULT", "pause-after-epoch:1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("paused after epoch 1") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL; the worker dies with it
    child.wait().unwrap();
    let r = p.run(&args(&["run", "train"]));
    r.assert_ok();
    assert!(r.stderr.contains("resuming after epoch 1"), "{}", r.stderr);
    assert_eq!(r.stages("stage_finished"), ["train"]);
    assert_eq!(weights(&p), weights(&whole));
    // The checkpoint is gone once the outputs are committed.
    let left = std::fs::read_dir(p.store().join("checkpoints"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
}

#[test]
fn bad_train_params_are_located() {
    let p = project();
    p.set_pipeline(
        &p.pipeline()
            .replace("      hidden: 8\n", "      hidden: 0\n"),
    );
    let r = p.run(&["run"]);
    assert_eq!(r.code(), Some(2));
    assert!(
        r.stderr
            .contains("stages.train.params.hidden: param `hidden`: must be at least 1"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_device_choice_is_logged_and_the_hardware_recorded_and_shown_by_lineage() {
    let p = project();
    // libtorch picks the device for `device: auto` (the default kernels run on the CPU).
    let r = p.run(&["run", "--set", "train.kernels=native", "train"]);
    r.assert_ok();
    let logs: Vec<String> = r
        .events
        .iter()
        .filter(|e| e["event"] == "stage_log" && e["stage"] == "train")
        .filter_map(|e| e["msg"].as_str().map(str::to_string))
        .collect();
    let info: serde_json::Value = serde_json::from_slice(
        &std::process::Command::new(common::worker())
            .arg("info")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let gpu = info["cuda_available"] == true;
    let picked = if gpu {
        "device auto → cuda:0"
    } else {
        "device auto → cpu: "
    };
    assert!(logs.iter().any(|l| l.starts_with(picked)), "{logs:?}");
    let l = p.run(&["lineage", "--set", "train.kernels=native", "train"]);
    l.assert_ok();
    let ran_on = l
        .stdout
        .lines()
        .find(|x| x.trim_start().starts_with("ran on "))
        .unwrap_or_else(|| panic!("no `ran on` line: {}", l.stdout));
    let cpu = info["cpu"]["model"].as_str().unwrap();
    assert!(ran_on.contains(&format!("cpu {cpu}")), "{ran_on}");
    assert!(
        ran_on.contains(&format!(
            "cpu_isa {} (ATen {})",
            info["cpu"]["onednn_isa"].as_str().unwrap(),
            info["cpu"]["aten_capability"].as_str().unwrap()
        )),
        "{ran_on}"
    );
    assert!(ran_on.contains(if gpu { "device cuda" } else { "device cpu" }));
    // The data stages report no hardware: only the torch stage has the line.
    assert_eq!(
        l.stdout
            .lines()
            .filter(|x| x.trim_start().starts_with("ran on "))
            .count(),
        1,
        "{}",
        l.stdout
    );
}

fn train_key(p: &Project, set: &[&str]) -> String {
    let mut args = vec!["status", "--format", "json"];
    args.extend_from_slice(set);
    args.push("train");
    let r = p.run(&args);
    r.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "train")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn portable_kernels_are_their_own_key_are_recorded_and_audit_byte_identical() {
    let p = project();
    let portable = ["--set", "train.kernels=portable"];
    let native_set = ["--set", "train.kernels=native"];
    // A stage's key is known once its inputs are.
    p.run(&["run", "window"]).assert_ok();
    let native_key = train_key(&p, &native_set);
    // The default (`auto`) settles to `portable` on the CPU, and is keyed as it: one result.
    assert_eq!(train_key(&p, &[]), train_key(&p, &portable));
    assert_eq!(
        train_key(&p, &["--set", "train.kernels=auto"]),
        train_key(&p, &portable)
    );
    assert_ne!(native_key, train_key(&p, &portable));
    // On a GPU or in bf16 it settles to `native`: only libtorch computes there.
    assert_eq!(
        train_key(&p, &["--set", "train.precision=bf16-mixed"]),
        train_key(
            &p,
            &[
                "--set",
                "train.precision=bf16-mixed",
                "--set",
                "train.kernels=native"
            ]
        )
    );

    p.run(&["run", "--set", "train.kernels=native", "train"])
        .assert_ok();
    let native = {
        let r = p.run(&[
            "artifact",
            "--set",
            "train.kernels=native",
            "train",
            "model",
        ]);
        r.assert_ok();
        std::fs::read(r.stdout.trim()).unwrap()
    };
    let mut run = vec!["run"];
    run.extend_from_slice(&portable);
    run.push("train");
    let r = p.run(&run);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["train"]);
    let mut art = vec!["artifact"];
    art.extend_from_slice(&portable);
    art.extend_from_slice(&["train", "model"]);
    let portable_weights = std::fs::read(p.run(&art).stdout.trim()).unwrap();
    assert_ne!(
        native, portable_weights,
        "another computation, other floats"
    );

    // Which engine computed it is in the record, and lineage shows it.
    let mut lin = vec!["lineage"];
    lin.extend_from_slice(&portable);
    lin.push("train");
    let l = p.run(&lin);
    l.assert_ok();
    assert!(
        l.stdout.contains("kernels portable: magpipe-kernels "),
        "{}",
        l.stdout
    );
    // model.json says which kernels trained it, so `predict` follows them.
    let mut cfg = vec!["artifact"];
    cfg.extend_from_slice(&portable);
    cfg.extend_from_slice(&["train", "config"]);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.run(&cfg).stdout.trim()).unwrap()).unwrap();
    assert_eq!(config["params"]["kernels"], "portable");
    assert_eq!(config["architecture"]["kernels"], "portable");
    // Re-executed from scratch on this machine: the same bytes.
    let mut audit = portable.to_vec();
    audit.push("train");
    common::assert_audit_clean(&p, &audit);
}

#[test]
fn portable_kernels_refuse_a_gpu_and_bf16_at_plan_time() {
    let p = project();
    for (set, says) in [
        (
            "train.device=cuda",
            "`portable` kernels are magpipe's own CPU engine",
        ),
        (
            "train.precision=bf16-mixed",
            "`portable` kernels compute in fp32",
        ),
    ] {
        let r = p.run(&[
            "status",
            "--set",
            "train.kernels=portable",
            "--set",
            set,
            "train",
        ]);
        assert_eq!(r.code(), Some(2), "{set}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{set}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    }
}
