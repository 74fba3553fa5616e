//! `magpipe stage-job JOB.json` and `magpipe task --kind KIND REQUEST.json`: the bodies of Slurm jobs
//! (the executor's job side, `magpipe_engine::executor::job`).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct StageJobArgs {
    pub job: PathBuf,
}

#[derive(clap::Args)]
pub struct TaskArgs {
    /// The kind whose task this is.
    #[arg(long)]
    pub kind: String,
    pub request: PathBuf,
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

pub fn stage_job(ctx: &super::Ctx, a: &StageJobArgs) -> ExitCode {
    code(magpipe_engine::executor::stage_job_main(
        &ctx.registry,
        &a.job,
    ))
}

pub fn task(ctx: &super::Ctx, a: &TaskArgs) -> ExitCode {
    code(magpipe_engine::executor::task_main(
        &ctx.registry,
        &a.kind,
        &a.request,
    ))
}
