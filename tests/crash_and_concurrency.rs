//! A run killed mid-stage leaves no record; two runs on one store do not trample each other.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{fixture_project, snapshot};

#[test]
fn sigkill_before_the_record_leaves_no_record_and_the_next_run_redoes_it() {
    let p = fixture_project(&[12001, 12002], &[12003], &[12004], 64);
    let mut child = p
        .cmd(&["run"])
        .env("MAGPIPE_FAULT", "pause-before-record:scale")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut key = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let v: serde_json::Value = match serde_json::from_str(&line.unwrap()) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if v["event"] == "stage_started" && v["stage"] == "scale" {
            key = Some(v["key"].as_str().unwrap().to_string());
        }
        if v["event"] == "stage_log" && v["stage"] == "scale" {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let key = key.expect("scale started");
    assert!(
        !p.store()
            .join("records")
            .join(format!("{key}.json"))
            .exists()
    );
    // Its outputs may be in objects/ already, orphaned until `magpipe gc`; nothing points at them.
    let r = p.run(&["run"]);
    r.assert_ok();
    // The dead run's lock file is noticed, named and taken over.
    assert!(
        r.stderr
            .contains("took over a stale lock left by a process that died holding it (pid "),
        "{}",
        r.stderr
    );
    assert_eq!(r.stages("stage_finished"), ["scale", "window"]);
    assert_eq!(r.stages("stage_cached"), ["ingest", "split"]);
    assert!(
        p.store()
            .join("records")
            .join(format!("{key}.json"))
            .exists()
    );
    // The key's lock is gone (gc.lock, the store's gc lock, stays: see the store page).
    let locks: Vec<String> = std::fs::read_dir(p.store().join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(locks, ["gc.lock"]);
}

#[test]
fn four_runs_on_one_store_at_once_each_stage_executes_once() {
    let p = fixture_project(&[14001, 14002, 14003], &[14004], &[14005], 96);
    let runs: Vec<_> = (0..4)
        .map(|i| {
            // Overlapping targets: two want everything, two only the first stages.
            let target: &[&str] = if i % 2 == 0 {
                &["run"]
            } else {
                &["run", "scale"]
            };
            p.cmd(target)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Each run's stderr is read as it comes: a run blocked on a full pipe would hold its key
    // locks, and a run waiting on them would never end.
    let outputs: Vec<_> = runs
        .into_iter()
        .map(|c| std::thread::spawn(move || c.wait_with_output().unwrap()))
        .collect();
    let mut finished: Vec<String> = Vec::new();
    for o in outputs {
        let out = o.join().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        for line in err.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && v["event"] == "stage_finished"
            {
                finished.push(v["stage"].as_str().unwrap().to_string());
            }
        }
    }
    finished.sort();
    assert_eq!(
        finished,
        ["ingest", "scale", "split", "window"],
        "each stage ran exactly once"
    );
    let v = p.run(&["verify"]);
    v.assert_ok();
    assert!(v.stdout.contains("4 records"), "{}", v.stdout);
}

#[test]
fn two_runs_on_one_store_at_once() {
    let p = fixture_project(&[13001, 13002, 13003], &[13004], &[13005], 96);
    let a = p
        .cmd(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = p
        .cmd(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = std::thread::spawn(move || b.wait_with_output().unwrap());
    let (a, b) = (a.wait_with_output().unwrap(), b.join().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let snap = snapshot(&p.store());
    assert_eq!(
        snap.keys()
            .filter(|k| k.starts_with("records/") && k.ends_with(".json"))
            .count(),
        4
    );
    // Whoever ran second found everything cached.
    let again = p.run(&["run"]);
    assert_eq!(again.stages("stage_cached").len(), 4);
    assert!(
        snap.keys().all(|k| !k.starts_with("tmp/") || k == "tmp/"),
        "{snap:?}"
    );
}
