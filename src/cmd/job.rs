//! `magpipe stage-job JOB.json` and `magpipe trial-task REQUEST.json`: the bodies of Slurm jobs
//! (the executor's job side, `magpipe::executor::job`).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct StageJobArgs {
    pub job: PathBuf,
}

#[derive(clap::Args)]
pub struct TrialTaskArgs {
    pub request: PathBuf,
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

pub fn stage_job(a: &StageJobArgs) -> ExitCode {
    code(magpipe::executor::stage_job_main(&a.job))
}

pub fn trial_task(a: &TrialTaskArgs) -> ExitCode {
    code(magpipe::executor::trial_task_main(&a.request))
}
