//! `magpipe status`: fresh or stale per stage, with `--explain` every reason, with
//! `--format json` the typed reasons.

use std::process::ExitCode;

use clap::ValueEnum;
use magpipe_engine::error::RunError;
use magpipe_engine::exec::{self, Freshness};
use magpipe_engine::key::short;

use super::{Ctx, Select};

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum StatusFormat {
    Text,
    /// One object per stage: state, key, summary or typed reasons.
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// Only these stages and what they need (default: every stage).
    targets: Vec<String>,
    #[command(flatten)]
    select: Select,
    /// Say why each stale stage is stale.
    #[arg(long)]
    explain: bool,
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    format: StatusFormat,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let plan = ctx.plan(Some(&a.select))?;
    let selected = plan.select(&a.targets).map_err(RunError::Usage)?;
    let rows = exec::status(&plan, &ctx.store, &selected)?;
    if a.format == StatusFormat::Json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(i, f)| match f {
                Freshness::Fresh(r) => serde_json::json!({
                    "stage": plan.stages[*i].name,
                    "state": "fresh",
                    "key": r.key,
                    "summary": r.summary,
                }),
                Freshness::Stale { key, why } => serde_json::json!({
                    "stage": plan.stages[*i].name,
                    "state": "stale",
                    "key": key,
                    "reasons": why.iter().map(magpipe_engine::stale::to_json).collect::<Vec<_>>(),
                }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(5);
    for (i, f) in rows {
        let s = &plan.stages[i];
        match f {
            Freshness::Fresh(r) => {
                println!(
                    "{:<width$}  fresh  {}  {}",
                    s.name,
                    short(&r.key),
                    r.summary
                )
            }
            Freshness::Stale { key, why } => {
                let k = key
                    .as_deref()
                    .map_or("-".repeat(12), |k| short(k).to_string());
                println!(
                    "{:<width$}  stale  {k}  {}",
                    s.name,
                    why.first().map(ToString::to_string).unwrap_or_default()
                );
                if a.explain {
                    for w in why.iter().skip(1) {
                        println!("{:<width$}         {:12}  {w}", "", "");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
