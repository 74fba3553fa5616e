//! `magpipe run [TARGET…]`: run the targets and what they need, as one plan or as a sweep over
//! `--set a,b` alternatives and `--seeds`.

use std::process::ExitCode;

use anyhow::bail;
use magpipe::error::RunError;
use magpipe::events::Sink;
use magpipe::exec::{self, Outcome, RunOptions};
use magpipe::plan::Plan;
use magpipe::{provenance, sweep};

use super::{Ctx, Select, default_jobs};

#[derive(clap::Args)]
pub struct Args {
    targets: Vec<String>,
    #[command(flatten)]
    select: Select,
    /// Rerun this stage even when its outputs are cached. Repeatable.
    #[arg(long, value_name = "STAGE")]
    force: Vec<String>,
    /// Stages run at once (default: number of cores). Sweep points run this many at a time.
    #[arg(short, long)]
    jobs: Option<usize>,
    /// Train and score every seed (`1..5` or `1,4,9`): each `train` stage gets the seed, the
    /// seeds run as a sweep, and a multi-seed Table 2 is printed.
    #[arg(long)]
    seeds: Option<String>,
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let jobs = a.jobs.unwrap_or_else(default_jobs);
    let points = sweep::expand(&a.select.sets).map_err(RunError::Usage)?;
    if points.len() == 1 && a.seeds.is_none() {
        let plan = ctx.plan(Some(&a.select))?;
        run_one(ctx, &plan, a, jobs, ctx.sink.as_ref(), true)?;
        return Ok(ExitCode::SUCCESS);
    }
    run_sweep(ctx, a, jobs, points)
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
    let opts = RunOptions {
        targets: a.targets.clone(),
        force: a.force.clone(),
        jobs,
        executor: ctx.executor(plan),
    };
    let started = std::time::SystemTime::now();
    let result = exec::run(plan, &ctx.store, &opts, sink)?;
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
        for (_, o) in &result.outcomes {
            if let Outcome::Ran(_, report) = o
                && let Some(text) = &report.stdout
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
    Ok(result)
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
    // Seeds are one more sweep dimension, applied to every `train` stage at once.
    let seed_list = a
        .seeds
        .as_deref()
        .map(sweep::parse_seeds)
        .transpose()
        .map_err(RunError::Usage)?;
    let plans = sweep::point_plans(&spec, base, &points, seed_list.as_deref(), "train")?;
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
                println!(
                    "  {}: {} ran, {} cached (variant `{}`)",
                    p.label,
                    count(|o| matches!(o, Outcome::Ran(..))),
                    count(|o| matches!(o, Outcome::Cached(_))),
                    p.plan.variant.as_deref().unwrap_or_default()
                );
            }
            Err(e) => {
                failed += 1;
                println!("  {}: FAILED: {e:#}", p.label);
            }
        }
    }
    if seed_list.is_some() && failed == 0 {
        seeds_table(ctx, base, &plans, &results)?;
    }
    if failed > 0 {
        bail!("{failed} of {} sweep points failed", plans.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// The multi-seed Table 2, from each seed's (first) alarms stage.
fn seeds_table(
    ctx: &Ctx,
    base: Option<&str>,
    plans: &[sweep::PointPlan],
    results: &[anyhow::Result<exec::RunResult>],
) -> anyhow::Result<()> {
    let mut tables = Vec::new();
    for (p, r) in plans.iter().zip(results) {
        let Ok(res) = r else { continue };
        let table = res.outcomes.iter().find_map(|(j, o)| match o {
            Outcome::Ran(rec, _) | Outcome::Cached(rec)
                if p.plan.stages[*j].kind.name() == "score_alarms" =>
            {
                rec.outputs.get("table2").map(|o| ctx.store.object_path(o))
            }
            _ => None,
        });
        if let (Some(path), Some(seed)) = (table, p.seed) {
            tables.push((seed, sweep::read_table2(&path).map_err(anyhow::Error::msg)?));
        }
    }
    if tables.is_empty() {
        return Ok(());
    }
    let delay = plans[0]
        .plan
        .stages
        .iter()
        .find(|s| s.kind.name() == "score_alarms")
        .map_or(magpipe_stages::alarms::DEFAULT_DELAY_HOURS, |s| {
            magpipe_stages::alarms::delay_hours(&s.params)
        });
    let md = sweep::seeds_markdown(&tables, delay);
    let dir = ctx.store.root.join("reports");
    std::fs::create_dir_all(&dir)?;
    let name = format!(
        "seeds-{}-{}.md",
        base.unwrap_or("default"),
        tables
            .iter()
            .map(|(s, _)| s.to_string())
            .collect::<Vec<_>>()
            .join("_")
    );
    std::fs::write(dir.join(&name), &md)?;
    println!("\n{md}\nwritten to {}", dir.join(&name).display());
    Ok(())
}
