//! `magpipe pull [STAGE…]`: fetch from a remote what the plan needs for the targets, stage by
//! stage in plan order (a stage's key follows from what its inputs hold), each record verified
//! and every object re-hashed before it enters the store. Nothing is computed.

use std::process::ExitCode;
use std::sync::Arc;

use magpipe_engine::exec::{self, Outcome, RunOptions};
use magpipe_engine::remote::Remote;
use magpipe_engine::store::Record;

use super::{Ctx, Select, default_jobs};

#[derive(clap::Args)]
pub struct Args {
    /// Stages to pull, with what they need (default: every stage of a plain run).
    targets: Vec<String>,
    #[command(flatten)]
    select: Select,
    /// The remote (default: $MAGPIPE_REMOTE, else the project's default remote).
    #[arg(long)]
    remote: Option<String>,
    /// Say for every stage what happened: pulled (and who signed it), already here, or why not
    /// (not on the remote, unsigned, untrusted, damaged, or an upstream stage was not pulled).
    #[arg(long)]
    explain: bool,
}

/// The other records the remote holds for a pulled stage's key, and why they were not taken
/// (another signer later in trusted_keys, an untrusted one, a damaged one).
fn others(remote: &Remote, taken: &Record) -> String {
    let signer = taken.pulled.as_ref().and_then(|p| p.signer.clone());
    let held = match remote.holdings(&taken.key) {
        Ok(h) => h,
        Err(e) => return format!("; the remote's other records could not be listed ({e})"),
    };
    let rest: Vec<String> = held
        .iter()
        .filter(|h| h.signer != signer || h.verdict.is_err())
        .map(|h| match &h.verdict {
            Ok(()) => format!("{} (takable too, ranked after the one taken)", h.who()),
            Err(m) => format!("{} (not taken: {m})", h.who()),
        })
        .collect();
    if rest.is_empty() {
        String::new()
    } else {
        format!("; the remote also has: {}", rest.join("; "))
    }
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let remote = Arc::new(super::push::open_remote(ctx, a.remote.as_deref(), false)?);
    let plan = ctx.plan(Some(&a.select))?;
    let opts = RunOptions {
        targets: a.targets.clone(),
        jobs: default_jobs(),
        pull: Some(remote.clone()),
        pull_only: true,
        ..RunOptions::default()
    };
    let result = exec::run(&plan, &ctx.store, &opts, ctx.sink.as_ref())?;
    if a.explain {
        let width = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(5);
        for (i, o) in &result.outcomes {
            let what = match o {
                Outcome::Pulled(r) => format!(
                    "pulled, {}{}",
                    match r.pulled.as_ref().and_then(|p| p.signer.as_deref()) {
                        Some(k) => format!("signed by {k}"),
                        None => "unsigned".to_string(),
                    },
                    others(&remote, r)
                ),
                Outcome::Cached(_) | Outcome::Ran(..) => "already here".to_string(),
                Outcome::Skipped(why) => format!("not pulled: {why}"),
                Outcome::Failed(f) => format!("failed: {f}"),
            };
            println!("{:<width$}  {what}", plan.stages[*i].name);
        }
    }
    let count = |f: fn(&Outcome) -> bool| result.outcomes.iter().filter(|(_, o)| f(o)).count();
    let missing: Vec<String> = result
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Skipped(_)))
        .map(|(i, _)| plan.stages[*i].name.clone())
        .collect();
    println!(
        "pulled {} stage(s) from {}; {} already here{}",
        count(|o| matches!(o, Outcome::Pulled(_))),
        remote.describe(),
        count(|o| matches!(o, Outcome::Cached(_))),
        if missing.is_empty() {
            String::new()
        } else {
            format!(
                "; not pulled (`pull --explain` says why): {}",
                missing.join(", ")
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}
