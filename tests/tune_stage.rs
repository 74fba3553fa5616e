//! A tiny real study end to end through the CLI: TPE suggestions, ASHA, trials as training
//! workers on fixture windows, Table 1, and a study killed mid-way that resumes without redoing
//! its finished trials and ends exactly where an uninterrupted one does.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{Project, fixture_project};

fn project(samples: usize) -> Project {
    let p = fixture_project(&[16001, 16002], &[16003], &[16004], 64);
    p.set_pipeline(&format!(
        "{}  tune:
    kind: tune
    default: false
    inputs: {{train: window.train, val: window.val}}
    params:
      num_samples: {samples}
      max_concurrent: 1
      seed: 5
      max_epochs: 3
      subsample: 0.5
      top_k: 4
      tpe: {{n_startup: 3}}
      asha: {{grace_period: 1, reduction_factor: 2, max_t: 3}}
      space:
        lr: {{loguniform: [1.0e-4, 1.0e-2]}}
        hidden: {{choice: [2, 4]}}
        layers: {{choice: [1]}}
        batch_size: {{choice: [32]}}
        model: {{choice: [MagFluxLSTM, MagFluxEnc-Dec]}}
        teacher_forcing_ratio: {{choice: [0.0, 0.5], when: {{model: MagFluxEnc-Dec}}}}
        loss: {{choice: [hybrid, value]}}
        alpha: {{choice: [0.5, 0.9], when: {{loss: hybrid}}}}
  train:
    kind: train
    inputs: {{train: window.train, val: window.val}}
    params: {{hidden: 3, layers: 1, epochs: 1, batch_size: 32, early_stop: none}}
variants:
  tuned:
    train: {{from_study: MagFluxLSTM hybrid, inputs: {{study: [tune.best]}}}}
",
        p.pipeline()
    ));
    p
}

fn read(p: &Project, stage: &str, output: &str) -> String {
    let r = p.run(&["artifact", stage, output]);
    r.assert_ok();
    std::fs::read_to_string(r.stdout.trim()).unwrap()
}

#[test]
fn a_tiny_study_runs_renders_table_1_and_is_not_a_default_target() {
    let p = project(6);
    // A plain run leaves the study alone.
    let r = p.run(&["run"]);
    r.assert_ok();
    assert!(!r.stages("stage_finished").contains(&"tune".to_string()));
    let r = p.run(&["run", "tune"]);
    r.assert_ok();
    assert_eq!(
        r.stages("stage_finished").last().map(String::as_str),
        Some("tune")
    );
    let t1 = read(&p, "tune", "table1");
    assert!(t1.contains("| model | loss | top-4 |"), "{t1}");
    let trials = read(&p, "tune", "trials_md");
    assert_eq!(trials.lines().count(), 2 + 6, "{trials}");
    // ASHA with grace 1 stops some trials early; every trial ends one way or the other.
    for line in trials.lines().skip(2) {
        assert!(
            ["| completed |", "| asha |", "| stopper |"]
                .iter()
                .any(|s| line.contains(s)),
            "{line}"
        );
    }
    // With grace 1 ASHA stops at least one trial after its first epoch. Seeded, so the same on
    // one machine; the trials' metrics come from native kernels, so which trial it stops may
    // differ between CPUs, but at least one was stopped on both the Intel Xeon and the AMD EPYC
    // of worker/tests/golden.rs.
    assert!(trials.contains("| asha | 1 |"), "{trials}");
    // The `tuned` variant trains with the study's best configuration; the study is not redone.
    let r = p.run(&["run", "train", "--variant", "tuned"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["train"]);
    let best: serde_json::Value = serde_json::from_str(&read(&p, "tune", "best")).unwrap();
    let want = &best["MagFluxLSTM hybrid"]["config"];
    let cfg: serde_json::Value = serde_json::from_str(&{
        let r = p.run(&["artifact", "train", "config", "--variant", "tuned"]);
        r.assert_ok();
        std::fs::read_to_string(r.stdout.trim()).unwrap()
    })
    .unwrap();
    for k in ["hidden", "lr", "alpha", "loss"] {
        assert_eq!(cfg["params"][k], want[k], "{k}: {cfg}");
    }
    assert_eq!(
        cfg["params"]["epochs"], 1,
        "the stage's own epochs are kept"
    );
    // Conditional parameters appear only in their branch.
    for (name, b) in best.as_object().unwrap() {
        let c = &b["config"];
        assert_eq!(
            c.get("teacher_forcing_ratio").is_some(),
            name.starts_with("MagFluxEnc-Dec"),
            "{b}"
        );
        assert_eq!(c.get("alpha").is_some(), name.ends_with("hybrid"), "{b}");
    }
}

#[test]
fn a_killed_study_resumes_without_redoing_finished_trials() {
    let whole = project(4);
    whole.run(&["run", "tune"]).assert_ok();

    let p = project(4);
    p.run(&["run", "window"]).assert_ok();
    let mut child = p
        .cmd(&["run", "tune"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Trials run one at a time: once trial 2 is suggested, trials 0 and 1 are finished.
    let mut seen = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        if line.unwrap().contains("\"msg\":\"trial 2: ") {
            seen = true;
            break;
        }
    }
    assert!(seen, "the study never reached trial 2");
    child.kill().unwrap();
    child.wait().unwrap();
    let r = p.run(&["run", "tune"]);
    r.assert_ok();
    assert!(
        r.stderr
            .contains("resuming the study: 2 finished trials kept, 1 to restart"),
        "{}",
        r.stderr
    );
    assert_eq!(
        read(&p, "tune", "trials_md"),
        read(&whole, "tune", "trials_md")
    );
    assert_eq!(read(&p, "tune", "table1"), read(&whole, "tune", "table1"));
}

#[test]
fn a_study_killed_at_twelve_random_moments_ends_with_the_same_trials() {
    let whole = project(8);
    whole.run(&["run", "window"]).assert_ok();
    let t0 = std::time::Instant::now();
    whole.run(&["run", "tune"]).assert_ok();
    let span = t0.elapsed().as_millis() as f64;
    let want = read(&whole, "tune", "trials_md");
    // ASHA stops trials in this study, so kills land between a stop decision and its kill too.
    assert!(want.contains("| asha |"), "{want}");

    let p = project(8);
    p.run(&["run", "window"]).assert_ok();
    let mut rng = magpipe_stages::tune::tpe::Rng::new(12);
    for _ in 0..12 {
        let mut child = p
            .cmd(&["run", "tune"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ms = 100.0 + rng.uniform() * span;
        std::thread::sleep(std::time::Duration::from_millis(ms as u64));
        let _ = child.kill();
        child.wait().unwrap();
    }
    p.run(&["run", "tune"]).assert_ok();
    assert_eq!(read(&p, "tune", "trials_md"), want);
    assert_eq!(read(&p, "tune", "table1"), read(&whole, "tune", "table1"));
    p.run(&["verify"]).assert_ok();
}
