//! The job's side of the Slurm executor, on the compute node: `magpipe stage-job JOB.json` runs
//! one stage attempt exactly as the local executor would, `magpipe task --kind KIND REQUEST.json`
//! one task of a kind's job array.

use std::path::Path;
use std::time::Duration;

use crate::kind::Events;
use serde_json::Value;

use super::{JobResult, StageJob, read_json_file, run_in_process};

/// Events of a stage job, as JSON lines on stdout (the job's log), for the engine to forward.
struct LineEvents;

impl Events for LineEvents {
    fn progress(&self, done: u64, total: u64, unit: &str) {
        println!(
            "{}",
            serde_json::json!({"progress": {"done": done, "total": total, "unit": unit}})
        );
    }
    fn log(&self, msg: &str) {
        println!("{}", serde_json::json!({ "log": msg }));
    }
}

/// Test hooks for the Slurm fault tests, on a stage's first attempt only:
/// `MAGPIPE_FAULT=job-sleep:<stage>:<seconds>` (to be cancelled or hit its time limit),
/// `job-crash:<stage>` (the job dies without a result) and `job-exit0:<stage>` (it exits 0
/// without a result).
fn fault_hook(stage: &str) {
    let Ok(f) = std::env::var("MAGPIPE_FAULT") else {
        return;
    };
    let parts: Vec<&str> = f.split(':').collect();
    match parts.as_slice() {
        ["job-sleep", s, secs] if *s == stage => {
            println!("{}", serde_json::json!({"log": "sleeping (MAGPIPE_FAULT)"}));
            std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(600)));
        }
        ["job-crash", s] if *s == stage => std::process::abort(),
        ["job-exit0", s] if *s == stage => std::process::exit(0),
        _ => {}
    }
}

/// `magpipe stage-job JOB.json`: the body of a Slurm job. Returns the process exit code.
pub fn stage_job_main(registry: &crate::Registry, job_file: &Path) -> i32 {
    let attempt_dir = job_file.parent().unwrap_or(Path::new("."));
    let result_path = attempt_dir.join("result.json");
    // Idempotent completion: a requeued copy of a job that already finished, or one whose
    // engine has committed and cleared the attempt, does nothing.
    if result_path.is_file() {
        eprintln!("{}: already completed; nothing to do", job_file.display());
        return 0;
    }
    let job: StageJob = match read_json_file(job_file) {
        Ok(j) => j,
        Err(e) => {
            if !attempt_dir.exists() {
                eprintln!(
                    "{}: the engine has moved on; nothing to do",
                    job_file.display()
                );
                return 0;
            }
            eprintln!("error: {}: {e}", job_file.display());
            return 1;
        }
    };
    let Some(kind) = registry.get(&job.kind) else {
        eprintln!("error: {}: unknown kind `{}`", job_file.display(), job.kind);
        return 1;
    };
    if job.attempt == 0 {
        fault_hook(&job.stage);
    }
    let result = match run_in_process(kind.as_ref(), &job, &LineEvents, None) {
        Ok(r) => JobResult {
            ok: true,
            summary: r.summary,
            stdout: r.stdout,
            facts: r.facts,
            error: None,
            host: crate::fsutil::hostname(),
        },
        Err(e) => JobResult {
            ok: false,
            summary: String::new(),
            stdout: None,
            facts: Value::Null,
            error: Some(e.to_string()),
            host: crate::fsutil::hostname(),
        },
    };
    let bytes = serde_json::to_vec_pretty(&result).expect("result serialises");
    if let Err(e) = crate::fsutil::write_atomic(attempt_dir, &result_path, &bytes) {
        eprintln!("error: {e}");
        return 1;
    }
    if let Some(e) = &result.error {
        eprintln!("error: stage `{}`: {e}", job.stage);
        return 1;
    }
    0
}

/// `magpipe task --kind KIND REQUEST.json`: the body of one task of a kind's job array
/// ([`Kind::run_task`](crate::kind::Kind::run_task)). The task's tag is the array task's id, the
/// same after a requeue.
pub fn task_main(registry: &crate::Registry, kind: &str, request: &Path) -> i32 {
    let Some(k) = registry.get(kind) else {
        eprintln!(
            "error: {}: unknown kind `{kind}` (known: {})",
            request.display(),
            registry.names()
        );
        return 1;
    };
    let tag = match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
    ) {
        (Ok(a), Ok(t)) => format!("{a}_{t}"),
        _ => format!("pid-{}", std::process::id()),
    };
    match k.run_task(request, &tag, &LineEvents) {
        Ok(line) => {
            LineEvents.log(&line);
            0
        }
        Err(e) => {
            eprintln!("error: task {tag}: {e}");
            1
        }
    }
}
