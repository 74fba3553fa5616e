//! `magpipe dag`: the stage graph as text, Graphviz dot or Mermaid.

use std::process::ExitCode;

use clap::ValueEnum;

use super::Ctx;

#[derive(Clone, Copy, ValueEnum)]
pub enum DagFormat {
    Text,
    Dot,
    Mermaid,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = DagFormat::Text)]
    format: DagFormat,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let plan = ctx.plan(None)?;
    print!(
        "{}",
        match a.format {
            DagFormat::Text => magpipe_engine::dag::text(&plan),
            DagFormat::Dot => magpipe_engine::dag::dot(&plan),
            DagFormat::Mermaid => magpipe_engine::dag::mermaid(&plan),
        }
    );
    Ok(ExitCode::SUCCESS)
}
