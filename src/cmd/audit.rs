//! `magpipe audit STAGE`: rerun its chain in a scratch store and compare byte for byte.

use std::process::ExitCode;

use magpipe_engine::provenance;

use super::{Ctx, Select, default_jobs, status_code};

#[derive(clap::Args)]
pub struct Args {
    /// The stage whose chain is re-executed.
    stage: String,
    #[command(flatten)]
    select: Select,
    /// Stages run at once (default: number of cores).
    #[arg(short, long)]
    jobs: Option<usize>,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let plan = ctx.plan(Some(&a.select))?;
    let jobs = a.jobs.unwrap_or_else(default_jobs);
    let r = provenance::audit(&plan, &ctx.store, &a.stage, jobs, ctx.sink.as_ref())
        .map_err(|e| a.select.in_hint(e))?;
    print!("{}", provenance::audit_text(&r));
    Ok(status_code(r.first_difference.is_none()))
}
