//! `magpipe runs`: the store's run log.

use std::process::ExitCode;

use magpipe_engine::provenance;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Only the last N runs.
    #[arg(short = 'n', long)]
    last: Option<usize>,
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let mut logs = provenance::runs(&ctx.store)?;
    if let Some(n) = a.last {
        logs = logs.split_off(logs.len().saturating_sub(n));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&logs)?);
    } else {
        print!("{}", provenance::runs_text(&logs));
    }
    Ok(ExitCode::SUCCESS)
}
