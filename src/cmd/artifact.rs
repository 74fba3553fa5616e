//! `magpipe artifact STAGE [OUTPUT]`: the absolute path of a fresh stage's output.

use std::process::ExitCode;

use anyhow::Context as _;
use magpipe_engine::error::RunError;
use magpipe_engine::exec::{self, Freshness};

use super::{Ctx, Select};

#[derive(clap::Args)]
pub struct Args {
    /// The stage.
    stage: String,
    /// One output's name (default: every output, `name<TAB>path`).
    output: Option<String>,
    #[command(flatten)]
    select: Select,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let plan = ctx.plan(Some(&a.select))?;
    let stage = &a.stage;
    let i = plan
        .index(stage)
        .ok_or_else(|| RunError::Usage(format!("no stage `{stage}`")))?;
    let selected = plan
        .select(std::slice::from_ref(stage))
        .map_err(RunError::Usage)?;
    let rows = exec::status(&plan, &ctx.store, &selected)?;
    let rec = match rows.into_iter().find(|(j, _)| *j == i).map(|(_, f)| f) {
        Some(Freshness::Fresh(r)) => r,
        Some(Freshness::Stale { why, .. }) => {
            return Err(a
                .select
                .in_hint(RunError::Stale {
                    stage: stage.clone(),
                    why: magpipe_engine::stale::joined(&why),
                    flags: String::new(),
                })
                .into());
        }
        None => unreachable!("the stage is selected"),
    };
    match &a.output {
        Some(o) => {
            let out = rec.outputs.get(o).with_context(|| {
                format!(
                    "stage `{stage}` has no output `{o}` (outputs: {})",
                    rec.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            println!("{}", ctx.store.object_path(out).display());
        }
        None => {
            for (name, out) in &rec.outputs {
                println!("{name}\t{}", ctx.store.object_path(out).display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
