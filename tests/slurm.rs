//! The Slurm executor against a real single-node Slurm (`make test` starts one with
//! `.ci/slurm/start.sh` and exports SLURM_CONF). Without a reachable cluster these tests fail with
//! the reason; they never skip.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{Project, Run, results_project};

const TARGETS: [&str; 3] = ["tables", "figure", "--jobs=2"];

fn cluster() {
    let conf = std::env::var("SLURM_CONF").unwrap_or_default();
    let ping = Command::new("scontrol").arg("ping").output();
    let ok = matches!(&ping, Ok(o) if o.status.success());
    assert!(
        ok,
        "these tests need a running Slurm (SLURM_CONF={conf:?}); `make test` starts one with \
         .ci/slurm/start.sh: {ping:?}"
    );
}

/// The store the Slurm runs use, beside the project's default one (which the local runs use):
/// one project, so the same keys.
fn slurm_store(p: &Project) -> String {
    p.path().join("slurm-store").display().to_string()
}

fn run_local(p: &Project) -> Run {
    let mut args = vec!["run"];
    args.extend(TARGETS);
    p.run(&args)
}

/// record key → output → content hash, for every record in the store, without the training
/// history (it holds timings; `audit` sets it apart as volatile too).
fn outputs(store: &std::path::Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(store.join("records")).unwrap() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        let outs = v["outputs"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !k.starts_with("history"))
            .map(|(k, o)| (k.clone(), o["hash"].as_str().unwrap().to_string()))
            .collect();
        out.insert(v["key"].as_str().unwrap().to_string(), outs);
    }
    out
}

fn record_of(store: &std::path::Path, stage: &str) -> serde_json::Value {
    for e in std::fs::read_dir(store.join("records")).unwrap() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        if v["stage"] == stage {
            return v;
        }
    }
    panic!("no record of {stage}");
}

#[test]
fn a_small_pipeline_on_slurm_gives_the_local_executors_bytes() {
    cluster();
    let p = results_project();
    run_local(&p).assert_ok();
    let store = slurm_store(&p);
    let mut args = vec!["--store", &store, "run", "--executor=slurm"];
    args.extend(TARGETS);
    p.run(&args).assert_ok();
    let store = std::path::PathBuf::from(store);
    // Same keys, same content hashes, stage for stage.
    assert_eq!(outputs(&store), outputs(&p.store()));
    p.run(&["--store", store.to_str().unwrap(), "verify"])
        .assert_ok();
    // Every stage ran as a job, and the record, lineage and run log say which and where.
    let rec = record_of(&store, "train");
    let attempts = rec["executor"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{rec}");
    assert_eq!(attempts[0]["state"], "COMPLETED");
    assert!(!attempts[0]["node"].as_str().unwrap().is_empty());
    let l = p.run(&["--store", store.to_str().unwrap(), "lineage", "tables"]);
    l.assert_ok();
    assert!(l.stdout.contains("slurm job "), "{}", l.stdout);
    let runs = p.run(&["--store", store.to_str().unwrap(), "runs"]);
    assert!(runs.stdout.contains("train: slurm job "), "{}", runs.stdout);
    // The local run's records name no executor.
    assert!(record_of(&p.store(), "train").get("executor").is_none());
}

/// Runs the targets on Slurm with `MAGPIPE_FAULT=fault`, calling `act` with the job id the first
/// time `stage`'s job is seen running; returns whether the run succeeded, and its stderr.
fn run_slurm_watching(
    p: &Project,
    fault: &str,
    stage: &str,
    act: impl FnOnce(&str),
) -> (bool, String) {
    let store = slurm_store(p);
    let mut args = vec!["--store", &store, "run", "--executor=slurm"];
    args.extend(TARGETS);
    let mut child = p
        .cmd(&args)
        .env("MAGPIPE_FAULT", fault)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    let mut act = Some(act);
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["stage"] == stage
            && let Some((id, state)) = v["msg"]
                .as_str()
                .and_then(|m| m.strip_prefix("slurm job "))
                .and_then(|m| m.split_once(": "))
            && state.starts_with("RUNNING")
            && let Some(f) = act.take()
        {
            f(id);
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    (child.wait().unwrap().success(), stderr)
}

/// Runs with a fault on `stage`'s first attempt; the retry must finish the run with the local
/// executor's outputs, a clean `verify`, and the failed attempt on record.
fn survives(
    fault: &str,
    stage: &str,
    expect_state: &str,
    executor_block: &str,
    act: impl FnOnce(&str),
) {
    cluster();
    let p = results_project();
    p.set_pipeline(&format!("{}{executor_block}", p.pipeline()));
    run_local(&p).assert_ok();
    let store = slurm_store(&p);
    let (ok, stderr) = run_slurm_watching(&p, fault, stage, act);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!("ended {expect_state}")) || stderr.contains(expect_state),
        "{stderr}"
    );
    assert!(stderr.contains("retrying (1 of 2)"), "{stderr}");
    let store = std::path::PathBuf::from(store);
    assert_eq!(outputs(&store), outputs(&p.store()));
    p.run(&["--store", store.to_str().unwrap(), "verify"])
        .assert_ok();
    let rec = record_of(&store, stage);
    let attempts = rec["executor"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{rec}");
    assert_eq!(attempts[1]["state"], "COMPLETED");
    // The failed attempt's log is kept and named.
    assert!(
        std::path::Path::new(attempts[0]["log"].as_str().unwrap()).is_file(),
        "{rec}"
    );
}

#[test]
fn a_cancelled_job_is_reported_and_retried() {
    survives("job-sleep:train:600", "train", "CANCELLED", "", |id| {
        let s = Command::new("scancel").arg(id).status().unwrap();
        assert!(s.success());
    });
}

#[test]
fn a_crashed_job_is_reported_and_retried() {
    survives("job-crash:protocol", "protocol", "FAILED", "", |_| {});
}

#[test]
fn a_job_that_exits_0_without_a_result_is_a_failure_and_retried() {
    survives(
        "job-exit0:persistence",
        "persistence",
        "exited 0 without a complete result",
        "",
        |_| {},
    );
}

#[test]
fn a_job_over_its_time_limit_is_reported_and_retried() {
    // Slurm counts time limits in minutes: this test takes a minute and a half.
    survives(
        "job-sleep:train:600",
        "train",
        "TIMEOUT",
        "executor:\n  slurm:\n    time: \"1\"\n",
        |_| {},
    );
}

#[test]
fn a_study_runs_as_a_throttled_job_array_and_matches_the_local_study() {
    cluster();
    let p = common::results_project_with_study();
    p.run(&["run", "tune"]).assert_ok();
    let store = slurm_store(&p);
    let r = p.run(&["--store", &store, "run", "tune", "--executor=slurm"]);
    r.assert_ok();
    // Three trials, one at a time: a 3-task array throttled to 1, each task pulling its trial.
    assert!(
        r.stderr.contains("(--array=0-2%1): 3 tasks"),
        "{}",
        r.stderr
    );
    let read = |store: Option<&str>, output: &str| {
        let mut args = vec![];
        if let Some(s) = store {
            args.extend(["--store", s]);
        }
        args.extend(["artifact", "tune", output]);
        let a = p.run(&args);
        a.assert_ok();
        std::fs::read_to_string(a.stdout.trim()).unwrap()
    };
    // Sequential mode decides exactly as the local driver does.
    assert_eq!(read(Some(&store), "trials_md"), read(None, "trials_md"));
    assert_eq!(read(Some(&store), "table1"), read(None, "table1"));
    let rec = record_of(std::path::Path::new(&store), "tune");
    let tasks = rec["executor"]["attempts"].as_array().unwrap();
    assert_eq!(tasks.len(), 3, "{rec}");
    assert!(tasks.iter().all(|t| t["state"] == "COMPLETED"), "{rec}");
    p.run(&["--store", &store, "verify"]).assert_ok();
}

fn scontrol(args: &[&str]) {
    let s = Command::new("scontrol").args(args).status().unwrap();
    assert!(s.success(), "scontrol {args:?}");
}

/// `scontrol requeue`, then release the job at once: a requeued job is held about two minutes,
/// and the hold can only be lifted once it is PENDING again.
fn requeue_now(id: &str) {
    scontrol(&["requeue", id]);
    let t0 = std::time::Instant::now();
    while job_state(id) != "PENDING" {
        assert!(t0.elapsed().as_secs() < 60, "job {id}: {}", job_state(id));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    scontrol(&["update", &format!("JobId={id}"), "StartTime=now"]);
}

fn job_state(id: &str) -> String {
    let out = Command::new("scontrol")
        .args(["-o", "show", "job", id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix("JobState="))
        .unwrap_or("")
        .to_string()
}

/// Requeued while running, the engine waits through REQUEUED/PENDING, the job runs again from
/// the start, and its one result is committed; requeued after the commit, it changes nothing.
#[test]
fn a_requeued_job_gives_one_result() {
    cluster();
    let p = results_project();
    run_local(&p).assert_ok();
    let store = slurm_store(&p);
    let t_run = std::time::Instant::now();
    let mut requeued = None;
    let (ok, stderr) = run_slurm_watching(&p, "job-sleep:train:4", "train", |id| {
        requeue_now(id);
        requeued = Some(id.to_string());
    });
    assert!(ok, "{stderr}");
    eprintln!("run with a requeue took {:?}", t_run.elapsed());
    let id = requeued.expect("the train job was seen running");
    let store = std::path::PathBuf::from(store);
    assert_eq!(outputs(&store), outputs(&p.store()));
    let rec = record_of(&store, "train");
    let attempts = rec["executor"]["attempts"].as_array().unwrap();
    // One result from the requeued job. (Rarely the requeue's kill lands mid-training and the
    // rerun fails on the half-written state; that failure is then retried as a new attempt, and
    // still one result is committed.)
    assert_eq!(attempts[0]["job_id"], id.as_str(), "{rec}");
    assert!(attempts.len() <= 2, "{rec}");
    assert_eq!(attempts.last().unwrap()["state"], "COMPLETED", "{rec}");
    if attempts.len() == 2 {
        let log = std::fs::read_to_string(attempts[0]["log"].as_str().unwrap());
        eprintln!("the requeued job failed before its retry: {log:?}");
    }

    // Requeued once more after the run committed it: the job finds its attempt gone and does
    // nothing, so the store does not change.
    // The job's log gains its "nothing to do" line; the store proper stays as it was.
    let snap = |s: &std::path::Path| {
        let mut m = common::snapshot(s);
        m.retain(|k, _| !k.starts_with("logs/"));
        m
    };
    let before = snap(&store);
    let t_requeue = std::time::Instant::now();
    requeue_now(&id);
    let t0 = std::time::Instant::now();
    while job_state(&id) != "COMPLETED" || t0.elapsed().as_secs() < 2 {
        // A guard against a hang, not a timing: the requeued job may wait for the node while
        // another test's job sleeps out its time limit (a minute and a half) on it.
        assert!(t0.elapsed().as_secs() < 600, "job {id}: {}", job_state(&id));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    eprintln!("second requeue took {:?}", t_requeue.elapsed());
    assert_eq!(snap(&store), before);
    let log = attempts[0]["log"].as_str().unwrap();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("nothing to do"), "{text}");
    p.run(&["--store", store.to_str().unwrap(), "verify"])
        .assert_ok();
}
