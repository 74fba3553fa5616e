//! `magpipe run [TARGET…]`: run the targets and what they need, as one plan or as a sweep over
//! `--set a,b` alternatives and `--seeds`.

use std::process::ExitCode;

use anyhow::bail;
use magpipe_engine::error::RunError;
use magpipe_engine::events::Sink;
use magpipe_engine::exec::{self, Outcome, RunOptions};
use magpipe_engine::plan::Plan;
use magpipe_engine::remote::{Remote, RemoteError};
use magpipe_engine::{provenance, sweep};

use super::{Ctx, Select, default_jobs};

#[derive(clap::Args)]
pub struct Args {
    /// Stages to run, with everything they need (default: every stage not marked
    /// `default: false`).
    targets: Vec<String>,
    #[command(flatten)]
    select: Select,
    /// Rerun this stage even when its outputs are cached. Repeatable.
    #[arg(long, value_name = "STAGE")]
    force: Vec<String>,
    /// Stages run at once (default: number of cores). Sweep points run this many at a time.
    #[arg(short, long)]
    jobs: Option<usize>,
    /// Keep a failed stage's scratch folder (what its program wrote) and its log under
    /// `artifacts/failed/`, and say where; remove them yourself when done (gc leaves them).
    #[arg(long)]
    keep_failed: bool,
    /// Look each stale stage up on the remote first and take a verified hit instead of
    /// computing it.
    #[arg(long)]
    pull: bool,
    /// Push what the run produced (its targets and their upstream chain) when it succeeds.
    #[arg(long)]
    push: bool,
    /// The remote for --pull and --push (default: $MAGPIPE_REMOTE, else the project's default).
    #[arg(long)]
    remote: Option<String>,
    /// Run every seed (`1..5` or `1,4,9`) as a sweep: each value sets `seed` on every `train`
    /// stage and every `command` stage at once (declared or not), and the run ends with the
    /// multi-seed Table 2 and the pooled evaluation.
    #[arg(long)]
    seeds: Option<String>,
    /// Run every cross-validation fold (`0..9` or `0,3`): the stage whose kind has a fold param
    /// (`split_ars` in `mode: kfold`, as in `--variant kfold`) gets each fold, the folds run as
    /// a sweep sharing the data stages, and the evaluation pools them: every AR a test AR once.
    #[arg(long)]
    folds: Option<String>,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let jobs = a.jobs.unwrap_or_else(default_jobs);
    if a.remote.is_some() && !a.pull && !a.push {
        bail!("--remote names the remote for --pull or --push; give one of them");
    }
    let points = sweep::expand(&a.select.sets).map_err(RunError::Usage)?;
    if points.len() == 1 && a.seeds.is_none() && a.folds.is_none() {
        let plan = ctx.plan(Some(&a.select))?;
        run_one(ctx, &plan, a, jobs, ctx.sink.as_ref(), true)?;
        return Ok(ExitCode::SUCCESS);
    }
    run_sweep(ctx, a, jobs, points)
}

/// The remote of `run --pull`. Only a remote that cannot be reached (an offline laptop) is a
/// warning and a run that computes; a mistake in naming or configuring it (an unknown name, a
/// missing bucket, no credentials) is an error, before a long run computes what it meant to pull.
fn pull_remote(
    ctx: &Ctx,
    a: &Args,
    unreachable: &mut Option<String>,
) -> anyhow::Result<Option<std::sync::Arc<Remote>>> {
    let remote = super::push::configured_remote(ctx, a.remote.as_deref())?;
    match remote.check() {
        Ok(()) => Ok(Some(std::sync::Arc::new(remote))),
        Err(RemoteError::Unreachable(why)) => {
            eprintln!("warning: {why}; computing everything here");
            *unreachable = Some(why);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The stages whose reports a run prints: the targets named, else the run's last stages (those
/// no other stage of the run reads). What ran only because a target needs it (the data
/// inventory behind a model) stays in the log.
fn reported(
    plan: &Plan,
    targets: &[String],
    result: &exec::RunResult,
) -> std::collections::BTreeSet<usize> {
    if !targets.is_empty() {
        return targets.iter().filter_map(|t| plan.index(t)).collect();
    }
    let ran: std::collections::BTreeSet<usize> = result.outcomes.iter().map(|(i, _)| *i).collect();
    let read: std::collections::BTreeSet<usize> = ran.iter().flat_map(|&i| plan.deps(i)).collect();
    ran.difference(&read).copied().collect()
}

/// Runs one plan and logs it; prints the reports of the stages that ran when `print` is set.
fn run_one(
    ctx: &Ctx,
    plan: &Plan,
    a: &Args,
    jobs: usize,
    sink: &dyn Sink,
    print: bool,
) -> anyhow::Result<exec::RunResult> {
    let mut unreachable = None;
    let remote = if a.push {
        let remote = super::push::open_remote(ctx, a.remote.as_deref(), true)?;
        // Refused before the run, not after it has computed for an hour.
        if let Some(w) = remote.check_signing(false)? {
            eprintln!("warning: {w}");
        }
        Some(std::sync::Arc::new(remote))
    } else if a.pull {
        pull_remote(ctx, a, &mut unreachable)?
    } else {
        None
    };
    let opts = RunOptions {
        targets: a.targets.clone(),
        force: a.force.clone(),
        jobs,
        executor: ctx.executor(plan),
        keep_failed: a.keep_failed,
        pull: remote.clone().filter(|_| a.pull),
        pull_only: false,
    };
    let started = std::time::SystemTime::now();
    let result = exec::run(plan, &ctx.store, &opts, sink);
    if let Some(why) = &unreachable {
        // Said again at the end, where a long run's user looks.
        eprintln!("warning: nothing was pulled: {why}");
    }
    let result = result?;
    provenance::log_run(
        plan,
        &ctx.store,
        &a.targets,
        started,
        &result,
        opts.executor.name(),
        std::env::args().collect(),
    );
    if print {
        let shown = reported(plan, &a.targets, &result);
        for (i, o) in &result.outcomes {
            if let Outcome::Ran(_, report) = o
                && let Some(text) = &report.stdout
                && shown.contains(i)
            {
                println!("{text}");
            }
        }
    }
    if let Some(f) = result.outcomes.iter().find_map(|(_, o)| match o {
        Outcome::Failed(f) => Some(f),
        _ => None,
    }) {
        bail!("{f}");
    }
    if let Some(remote) = remote.filter(|_| a.push) {
        let records: Vec<_> = result
            .outcomes
            .iter()
            .filter_map(|(_, o)| match o {
                Outcome::Ran(r, _) | Outcome::Cached(r) | Outcome::Pulled(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        let report = remote.push(&ctx.store, &records, &|_| {})?;
        let refs: Vec<(String, String)> = records
            .iter()
            .map(|r| (r.stage.clone(), r.key.clone()))
            .collect();
        remote.push_refs(
            plan.variant
                .as_deref()
                .unwrap_or(magpipe_engine::compare::DEFAULT),
            &refs,
        )?;
        eprintln!(
            "pushed {} record(s) and {} object(s) to {} ({} record(s) there already)",
            report.records,
            report.objects,
            remote.describe(),
            report.records_existing
        );
    }
    Ok(result)
}

/// `--folds` and `--seeds` as sweep dimensions, each applied to its stages at once.
pub(super) fn dimensions(
    folds: &Option<String>,
    seeds: &Option<String>,
) -> Result<Vec<(sweep::Dimension, Vec<u64>)>, RunError> {
    let mut dims = Vec::new();
    for (dim, flag) in [
        (sweep::Dimension::Fold, folds),
        (sweep::Dimension::Seed, seeds),
    ] {
        if let Some(v) = flag {
            dims.push((dim, sweep::parse_values(dim, v).map_err(RunError::Usage)?));
        }
    }
    Ok(dims)
}

/// A sweep: every point is a variant of its own (`<variant>+<label>`), `jobs` points at a time,
/// one stage at a time within a point; shared stages are computed once (per-key locks).
fn run_sweep(
    ctx: &Ctx,
    a: &Args,
    jobs: usize,
    points: Vec<sweep::Point>,
) -> anyhow::Result<ExitCode> {
    let spec = ctx.spec()?;
    let base = a.select.variant.as_deref();
    let dims = dimensions(&a.folds, &a.seeds)?;
    let plans = sweep::point_plans(&spec, &ctx.registry, base, &points, &dims)?;
    let results = sweep::run_points(&plans, jobs, ctx.sink.as_ref(), &|plan, sink| {
        run_one(ctx, plan, a, 1, sink, false)
    });
    let mut failed = 0;
    println!("sweep of {} points:", plans.len());
    for (p, r) in plans.iter().zip(&results) {
        match r {
            Ok(res) => {
                let count =
                    |f: fn(&Outcome) -> bool| res.outcomes.iter().filter(|(_, o)| f(o)).count();
                let pulled = count(|o| matches!(o, Outcome::Pulled(_)));
                println!(
                    "  {}: {} ran, {} cached{} (variant `{}`)",
                    p.label,
                    count(|o| matches!(o, Outcome::Ran(..))),
                    count(|o| matches!(o, Outcome::Cached(_))),
                    if pulled > 0 {
                        format!(", {pulled} pulled")
                    } else {
                        String::new()
                    },
                    p.plan.variant.as_deref().unwrap_or_default()
                );
            }
            Err(e) => {
                failed += 1;
                println!("  {}: FAILED: {e:#}", p.label);
            }
        }
    }
    if failed == 0 && (a.seeds.is_some() || a.folds.is_some()) {
        let done: Vec<_> = plans
            .iter()
            .zip(&results)
            .filter_map(|(p, r)| r.as_ref().ok().map(|r| (p, r)))
            .collect();
        if a.seeds.is_some()
            && let Some((md, path)) =
                magpipe_stages::commands::seeds::seeds_table(&ctx.store, base, &done)
                    .map_err(anyhow::Error::msg)?
        {
            println!("\n{md}\nwritten to {}", path.display());
        }
        if let Some((headline, dir)) =
            magpipe_stages::commands::pooled::pooled_evaluation(&ctx.store, base, &done)
                .map_err(anyhow::Error::msg)?
        {
            println!("\n{headline}\nwritten to {}", dir.display());
        }
    }
    if failed > 0 {
        bail!("{failed} of {} sweep points failed", plans.len());
    }
    Ok(ExitCode::SUCCESS)
}
