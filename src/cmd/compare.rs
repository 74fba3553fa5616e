//! `magpipe compare A B …`: variants side by side.

use std::process::ExitCode;

use clap::ValueEnum;
use magpipe_engine::sweep;

use super::Ctx;

#[derive(Clone, Copy, ValueEnum)]
pub enum CompareFormat {
    Md,
    Csv,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true, num_args = 2..)]
    variants: Vec<String>,
    #[arg(long, value_enum, default_value_t = CompareFormat::Md)]
    format: CompareFormat,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let spec = ctx.spec()?;
    let mut plans = Vec::new();
    for v in &a.variants {
        let variant = (v != magpipe_engine::compare::DEFAULT).then_some(v.as_str());
        plans.push((
            v.clone(),
            sweep::plan_for(&spec, &ctx.registry, variant, &[])?,
        ));
    }
    let c = magpipe_engine::compare::compare(&plans, &ctx.store)?;
    match a.format {
        CompareFormat::Md => print!("{}", magpipe_engine::compare::markdown(&c)),
        CompareFormat::Csv => print!("{}", magpipe_engine::compare::csv(&c)),
        CompareFormat::Json => println!("{}", serde_json::to_string_pretty(&c)?),
    }
    Ok(ExitCode::SUCCESS)
}
