//! Where a stage's code runs. The engine keys, locks, commits and records a stage the same way
//! whichever executor ran it:
//!
//! - `local`: in this process (torch stages start their worker process from here).
//! - `slurm`: as one Slurm batch job per stage attempt. The job runs `magpipe stage-job JOB.json`
//!   on a compute node: the same stage code on exactly the context the local executor would
//!   give it, writing into a scratch folder of the store (a shared filesystem). The engine stays
//!   on the login node, polls every job of the run with one `scontrol -o show job` per poll
//!   interval, and trusts the job's result file and outputs, not its exit code.
//!
//! `local.rs` runs a stage in this process, `slurm.rs` submits and watches Slurm jobs (the
//! engine's side), `job.rs` is the job's side on the compute node (`magpipe stage-job`,
//! `magpipe task`).

mod job;
mod local;
mod slurm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::kind::{Events, Kind, Report, StageError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::spec::SlurmConfig;
pub use crate::store::{Attempt, ExecInfo};
pub use job::{stage_job_main, task_main};
pub use local::{Local, run_in_process};
pub use slurm::{JobStatus, Slurm, SlurmError, is_terminal, parse_scontrol};

/// One stage's work, as a job file: everything `Kind::run` needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageJob {
    pub stage: String,
    pub kind: String,
    pub params: Value,
    pub inputs: BTreeMap<String, PathBuf>,
    pub out_dir: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub threads: usize,
    /// 0 for the first attempt; the test hooks in `MAGPIPE_FAULT` act on the first only.
    #[serde(default)]
    pub attempt: u32,
}

/// What a stage job leaves beside its outputs when it ends; written last, atomically.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobResult {
    pub ok: bool,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub stdout: Option<String>,
    #[serde(default)]
    pub facts: Value,
    #[serde(default)]
    pub error: Option<String>,
    /// The node the job ran on.
    #[serde(default)]
    pub host: String,
}

/// A stage that ran: its report, where its outputs are, and how it ran.
pub struct Ran {
    pub report: Report,
    pub out_dir: PathBuf,
    pub info: Option<ExecInfo>,
}

/// The executor interface: run one stage attempt to completion (or to a clear failure).
pub trait Executor: Sync {
    fn name(&self) -> &'static str;
    fn run_stage(
        &self,
        kind: &dyn Kind,
        job: StageJob,
        events: &dyn Events,
    ) -> Result<Ran, StageError>;
}

/// `--executor` and the pipeline's `executor:` block, resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Choice {
    #[default]
    Local,
    Slurm(SlurmConfig),
}

impl Choice {
    pub fn name(&self) -> &'static str {
        match self {
            Choice::Local => "local",
            Choice::Slurm(_) => "slurm",
        }
    }
}

pub(crate) fn read_json_file<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

pub(crate) fn read_result(path: &Path) -> Option<JobResult> {
    read_json_file(path).ok()
}
