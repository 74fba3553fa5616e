//! `magpipe gc`: remove records and objects nothing reaches.

use std::process::ExitCode;

use magpipe_engine::provenance;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10)]
    keep_runs: usize,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let rep = provenance::gc(&ctx.store, a.keep_runs, a.dry_run)?;
    println!(
        "{} {} records and {} objects ({:.1} MB); kept {} records",
        if a.dry_run { "would remove" } else { "removed" },
        rep.removed_records,
        rep.removed_objects,
        rep.freed_bytes as f64 / 1e6,
        rep.kept_records
    );
    Ok(ExitCode::SUCCESS)
}
