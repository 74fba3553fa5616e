//! `magpipe lineage STAGE[:OUTPUT]`: the chain back to the raw files.

use std::process::ExitCode;

use clap::ValueEnum;
use magpipe_engine::provenance;

use super::{Ctx, Select};

#[derive(Clone, Copy, ValueEnum)]
pub enum LineageFormat {
    Text,
    Json,
    Md,
}

#[derive(clap::Args)]
pub struct Args {
    /// STAGE or STAGE:OUTPUT.
    target: String,
    #[arg(long, value_enum, default_value_t = LineageFormat::Text)]
    format: LineageFormat,
    #[command(flatten)]
    select: Select,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let plan = ctx.plan(Some(&a.select))?;
    let (stage, output) = match a.target.split_once(':') {
        Some((s, o)) => (s, Some(o)),
        None => (a.target.as_str(), None),
    };
    let l =
        provenance::lineage(&plan, &ctx.store, stage, output).map_err(|e| a.select.in_hint(e))?;
    match a.format {
        LineageFormat::Text => print!("{}", provenance::lineage_text(&l)),
        LineageFormat::Md => print!("{}", provenance::lineage_markdown(&l)),
        LineageFormat::Json => println!("{}", serde_json::to_string_pretty(&l)?),
    }
    Ok(ExitCode::SUCCESS)
}
