//! The Slurm executor, the engine's side: one batch job per stage attempt (and one job array
//! per set of tasks a kind launches, a tuning study's trials), all polled with one
//! `scontrol -o show job` per interval.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::kind::{Events, Kind, Report, StageError, TaskLauncher};
use serde_json::Value;

use super::{
    Attempt, ExecInfo, Executor, JobResult, Ran, SlurmConfig, StageJob, read_result, run_in_process,
};

/// One job's line of `scontrol -o show job`, the fields the engine reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobStatus {
    pub job_id: String,
    pub name: String,
    pub state: String,
    pub reason: String,
    pub exit_code: String,
    pub node: String,
}

/// Parses `scontrol -o show job` output: one job per line, `Key=Value` fields.
pub fn parse_scontrol(text: &str) -> Vec<JobStatus> {
    text.lines()
        .filter(|l| l.contains("JobId="))
        .map(|l| {
            let mut f: BTreeMap<&str, &str> = BTreeMap::new();
            for kv in l.split_whitespace() {
                if let Some((k, v)) = kv.split_once('=') {
                    f.entry(k).or_insert(v);
                }
            }
            let get = |k: &str| f.get(k).copied().unwrap_or("").to_string();
            let id = match (f.get("ArrayJobId"), f.get("ArrayTaskId")) {
                (Some(a), Some(t)) => format!("{a}_{t}"),
                _ => get("JobId"),
            };
            JobStatus {
                job_id: id,
                name: get("JobName"),
                state: get("JobState"),
                reason: get("Reason"),
                exit_code: get("ExitCode"),
                node: get("BatchHost"),
            }
        })
        .collect()
}

/// States after which a job does nothing more (a requeue shows as PENDING or REQUEUED).
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "OUT_OF_MEMORY"
            | "BOOT_FAIL"
            | "DEADLINE"
    )
}

pub struct Slurm {
    cfg: SlurmConfig,
    /// Every job of this run carries it, so one query sees them all.
    pub job_name: String,
    exe: PathBuf,
    log_dir: PathBuf,
    snapshot: Mutex<(Option<Instant>, Vec<JobStatus>)>,
    /// The task arrays submitted by this run, for the record.
    arrays: Mutex<Vec<Attempt>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run `{cmd}`: {cause} (is Slurm installed, and SLURM_CONF set?)")]
    Spawn { cmd: String, cause: std::io::Error },
    #[error("`{cmd}` failed: {stderr}")]
    Failed { cmd: String, stderr: String },
}

fn slurm_cmd(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|cause| SlurmError::Spawn {
            cmd: cmd.clone(),
            cause,
        })?;
    if !out.status.success() {
        return Err(SlurmError::Failed {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', " "),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

impl Slurm {
    /// `run_id` names the run's jobs; `log_dir` keeps their stdout/stderr after the run.
    pub fn new(cfg: SlurmConfig, run_id: &str, log_dir: PathBuf) -> Result<Slurm, SlurmError> {
        let exe = std::env::current_exe().map_err(|cause| SlurmError::Spawn {
            cmd: "current_exe".into(),
            cause,
        })?;
        // Fail before any stage runs when the cluster is not reachable.
        slurm_cmd("scontrol", &["ping".into()])?;
        Ok(Slurm {
            cfg,
            job_name: format!("magpipe-{run_id}"),
            exe,
            log_dir,
            snapshot: Mutex::new((None, Vec::new())),
            arrays: Mutex::new(Vec::new()),
        })
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs_f64(self.cfg.poll_seconds.max(0.2))
    }

    /// Every job of this run, from a snapshot at most one poll interval old: however many
    /// stages wait, the cluster sees one query per interval.
    fn jobs(&self) -> Result<Vec<JobStatus>, SlurmError> {
        let mut snap = self.snapshot.lock().expect("slurm snapshot");
        if snap.0.is_none_or(|t| t.elapsed() >= self.poll_interval()) {
            let text = slurm_cmd("scontrol", &["-o".into(), "show".into(), "job".into()]).or_else(
                |e| match e {
                    // No job at all in the controller's memory.
                    SlurmError::Failed { ref stderr, .. } if stderr.contains("No jobs") => {
                        Ok(String::new())
                    }
                    e => Err(e),
                },
            )?;
            snap.1 = parse_scontrol(&text)
                .into_iter()
                .filter(|j| j.name == self.job_name)
                .collect();
            snap.0 = Some(Instant::now());
        }
        Ok(snap.1.clone())
    }

    fn submit(&self, job_file: &Path, log: &Path, threads: usize) -> Result<String, SlurmError> {
        self.sbatch(
            &[],
            log,
            threads,
            &format!("stage-job {}", shell_quote(job_file)),
        )
    }

    /// `sbatch` of `magpipe <command>` with the run's name and the pipeline's settings.
    fn sbatch(
        &self,
        extra: &[String],
        log: &Path,
        threads: usize,
        command: &str,
    ) -> Result<String, SlurmError> {
        let c = &self.cfg;
        let mut args: Vec<String> = vec![
            "--parsable".into(),
            format!("--job-name={}", self.job_name),
            format!("--output={}", log.display()),
            // A requeued job appends to its log instead of erasing the first run's.
            "--open-mode=append".into(),
            format!(
                "--cpus-per-task={}",
                c.cpus_per_task.unwrap_or(threads.max(1) as u32)
            ),
        ];
        if let Ok(dir) = std::env::current_dir() {
            args.push(format!("--chdir={}", dir.display()));
        }
        for (flag, v) in [
            ("partition", &c.partition),
            ("account", &c.account),
            ("time", &c.time),
            ("mem", &c.mem),
        ] {
            if let Some(v) = v {
                args.push(format!("--{flag}={v}"));
            }
        }
        if let Some(g) = c.gpus {
            args.push(format!("--gpus={g}"));
        }
        args.extend(c.sbatch_args.iter().cloned());
        args.extend(extra.iter().cloned());
        args.push(format!("--wrap=exec {} {command}", shell_quote(&self.exe)));
        let out = slurm_cmd("sbatch", &args)?;
        // `--parsable` prints `id` or `id;cluster`.
        Ok(out.trim().split(';').next().unwrap_or("").to_string())
    }

    /// Forwards the progress lines a job has written to its log since `offset`.
    fn forward(&self, log: &Path, offset: &mut u64, events: &dyn Events) {
        let Ok(mut f) = std::fs::File::open(log) else {
            return;
        };
        if f.seek(std::io::SeekFrom::Start(*offset)).is_err() {
            return;
        }
        let mut buf = String::new();
        if f.read_to_string(&mut buf).is_err() {
            return;
        }
        // Only whole lines; a partial one is read again next time.
        let whole = buf.rfind('\n').map_or(0, |i| i + 1);
        for line in buf[..whole].lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                if let Some(p) = v.get("progress") {
                    events.progress(
                        p["done"].as_u64().unwrap_or(0),
                        p["total"].as_u64().unwrap_or(0),
                        p["unit"].as_str().unwrap_or(""),
                    );
                } else if let Some(m) = v.get("log").and_then(Value::as_str) {
                    events.log(m);
                }
            }
        }
        *offset += whole as u64;
    }

    /// Submits one attempt and waits for it to end; the job's final status and its result file.
    fn attempt(
        &self,
        job: &StageJob,
        attempt_dir: &Path,
        log: &Path,
        events: &dyn Events,
    ) -> Result<(JobStatus, Option<JobResult>), StageError> {
        let job_file = attempt_dir.join("job.json");
        let bytes = serde_json::to_vec_pretty(job).expect("job serialises");
        std::fs::write(&job_file, bytes).map_err(|e| StageError::io(&job_file, e))?;
        let id = self
            .submit(&job_file, log, job.threads)
            .map_err(|e| StageError::Invalid(e.to_string()))?;
        events.log(&format!("slurm job {id} submitted (log {})", log.display()));
        let result_path = attempt_dir.join("result.json");
        let mut last_state = String::new();
        let mut offset = 0u64;
        let mut unknown_since: Option<Instant> = None;
        loop {
            std::thread::sleep(self.poll_interval());
            self.forward(log, &mut offset, events);
            let st = self
                .jobs()
                .map_err(|e| StageError::Invalid(e.to_string()))?
                .into_iter()
                .find(|j| j.job_id == id);
            let Some(st) = st else {
                // Purged from the controller (MinJobAge) or not yet visible: the result file
                // decides; a job gone for long without one was lost.
                if result_path.is_file() {
                    let r = read_result(&result_path);
                    let status = JobStatus {
                        job_id: id.clone(),
                        state: "COMPLETED".into(),
                        ..Default::default()
                    };
                    return Ok((status, r));
                }
                let since = *unknown_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    let status = JobStatus {
                        job_id: id.clone(),
                        state: "LOST".into(),
                        ..Default::default()
                    };
                    return Ok((status, None));
                }
                continue;
            };
            unknown_since = None;
            if st.state != last_state {
                let at = if st.node.is_empty() || st.node == "(null)" {
                    String::new()
                } else {
                    format!(" on {}", st.node)
                };
                let why = if st.state == "PENDING" && !st.reason.is_empty() {
                    format!(" ({})", st.reason)
                } else {
                    String::new()
                };
                events.log(&format!("slurm job {id}: {}{at}{why}", st.state));
                last_state = st.state.clone();
            }
            if is_terminal(&st.state) {
                self.forward(log, &mut offset, events);
                return Ok((st, read_result(&result_path)));
            }
        }
    }
}

impl Executor for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn run_stage(
        &self,
        kind: &dyn Kind,
        job: StageJob,
        events: &dyn Events,
    ) -> Result<Ran, StageError> {
        std::fs::create_dir_all(&self.log_dir).map_err(|e| StageError::io(&self.log_dir, e))?;
        if kind.launches_jobs() {
            // The kind's driver stays here; its tasks go out as a job array.
            let report = run_in_process(kind, &job, events, Some(self))?;
            return Ok(Ran {
                report,
                out_dir: job.out_dir,
                info: Some(ExecInfo {
                    executor: self.name().into(),
                    attempts: self.arrays.lock().expect("arrays").clone(),
                }),
            });
        }
        let scratch = job.out_dir.clone();
        let mut info = ExecInfo {
            executor: self.name().into(),
            attempts: Vec::new(),
        };
        for n in 0..=self.cfg.retries {
            // Each attempt writes into a folder of its own, so a late or requeued run of an
            // earlier attempt can never mix its files into the one that is committed.
            let attempt_dir = scratch.join(format!("attempt-{n}"));
            let out_dir = attempt_dir.join("out");
            std::fs::create_dir_all(&out_dir).map_err(|e| StageError::io(&out_dir, e))?;
            let log = self
                .log_dir
                .join(format!("{}-{}-{n}.log", job.stage, self.job_name));
            let this = StageJob {
                out_dir: out_dir.clone(),
                attempt: n,
                ..job.clone()
            };
            let (st, result) = self.attempt(&this, &attempt_dir, &log, events)?;
            info.attempts.push(Attempt {
                job_id: st.job_id.clone(),
                state: st.state.clone(),
                exit_code: st.exit_code.clone(),
                node: result
                    .as_ref()
                    .map(|r| r.host.clone())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| st.node.clone()),
                log: log.display().to_string(),
            });
            let outputs_present = kind
                .outputs(&job.params)
                .iter()
                .all(|o| o.written_in(&out_dir));
            match result {
                Some(r) if r.ok && outputs_present => {
                    return Ok(Ran {
                        report: Report {
                            summary: r.summary,
                            stdout: r.stdout,
                            facts: r.facts,
                        },
                        out_dir,
                        info: Some(info),
                    });
                }
                // The stage's own verdict: another attempt would say the same.
                Some(r) if !r.ok => {
                    return Err(StageError::Invalid(format!(
                        "{} (slurm job {}, log {})",
                        r.error.unwrap_or_else(|| "failed".into()),
                        st.job_id,
                        log.display()
                    )));
                }
                _ => {
                    let what = if st.state == "COMPLETED" {
                        "exited 0 without a complete result".to_string()
                    } else {
                        format!("ended {} (exit {})", st.state, st.exit_code)
                    };
                    let msg = format!("slurm job {} {what}; log {}", st.job_id, log.display());
                    if n < self.cfg.retries {
                        events.log(&format!(
                            "{msg}; retrying ({} of {})",
                            n + 1,
                            self.cfg.retries
                        ));
                        continue;
                    }
                    return Err(StageError::Invalid(format!(
                        "{msg} (after {} attempts)",
                        n + 1
                    )));
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }
}

impl TaskLauncher for Slurm {
    fn run_tasks(
        &self,
        kind: &str,
        request: &Path,
        count: usize,
        concurrent: usize,
        events: &dyn Events,
    ) -> Result<Vec<String>, StageError> {
        let log = self
            .log_dir
            .join(format!("tasks-{}-%A_%a.log", self.job_name));
        let array = format!(
            "--array=0-{}%{}",
            count.saturating_sub(1),
            concurrent.max(1)
        );
        let id = self
            .sbatch(
                std::slice::from_ref(&array),
                &log,
                1,
                &format!(
                    "task --kind {} {}",
                    shell_quote(Path::new(kind)),
                    shell_quote(request)
                ),
            )
            .map_err(|e| StageError::Invalid(e.to_string()))?;
        events.log(&format!("slurm array job {id} ({array}): {count} tasks"));
        let prefix = format!("{id}_");
        let mut last = String::new();
        let mut unseen_since: Option<Instant> = None;
        loop {
            std::thread::sleep(self.poll_interval());
            let tasks: Vec<JobStatus> = self
                .jobs()
                .map_err(|e| StageError::Invalid(e.to_string()))?
                .into_iter()
                .filter(|j| j.job_id.starts_with(&prefix) || j.job_id == id)
                .collect();
            if tasks.is_empty() {
                let since = *unseen_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    return Err(StageError::Invalid(format!(
                        "slurm array job {id} is unknown to the controller"
                    )));
                }
                continue;
            }
            unseen_since = None;
            let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
            for t in &tasks {
                *by_state.entry(t.state.as_str()).or_default() += 1;
            }
            let line = by_state
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ");
            if line != last {
                events.log(&format!("slurm array job {id}: {line}"));
                last = line;
            }
            if tasks.iter().all(|t| is_terminal(&t.state)) {
                let mut arrays = self.arrays.lock().expect("arrays");
                let mut failed = Vec::new();
                for t in &tasks {
                    let log = self
                        .log_dir
                        .join(format!("tasks-{}-{}.log", self.job_name, t.job_id));
                    arrays.push(Attempt {
                        job_id: t.job_id.clone(),
                        state: t.state.clone(),
                        exit_code: t.exit_code.clone(),
                        node: t.node.clone(),
                        log: log.display().to_string(),
                    });
                    if t.state != "COMPLETED" {
                        failed.push(format!(
                            "task {} {} (exit {}), log {}",
                            t.job_id,
                            t.state,
                            t.exit_code,
                            log.display()
                        ));
                    }
                }
                return Ok(failed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scontrol_lines_parse_with_arrays_and_odd_fields() {
        let text = "JobId=7 JobName=magpipe-r1 UserId=root(0) JobState=RUNNING Reason=None Restarts=0 BatchHost=vm ExitCode=0:0\n\
                    JobId=9 ArrayJobId=8 ArrayTaskId=1 JobName=magpipe-r1 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15 BatchHost=vm\n\
                    JobId=10 JobName=other JobState=PENDING Reason=Priority\n";
        let v = parse_scontrol(text);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].job_id, "7");
        assert_eq!(v[0].state, "RUNNING");
        assert_eq!(v[1].job_id, "8_1");
        assert_eq!(v[1].exit_code, "0:15");
        assert_eq!(v[2].reason, "Priority");
        assert!(is_terminal("TIMEOUT") && !is_terminal("PENDING") && !is_terminal("REQUEUED"));
    }
}
