//! The `magpipe` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use magpipe::error::{RunError, SpecError};
use magpipe::events::{HumanSink, JsonSink, Sink};
use magpipe::exec::{self, Freshness, Outcome, RunOptions};
use magpipe::key::short;
use magpipe::plan::{self, Plan, SetOverride};
use magpipe::provenance;
use magpipe::spec::RawSpec;
use magpipe::store::Store;
use magpipe::sweep;

#[derive(Parser)]
#[command(
    name = "magpipe",
    version,
    about = "Reproducible, cached pipeline for the MagFlux emerging-flux study"
)]
struct Cli {
    /// The pipeline file.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "pipeline.yaml"
    )]
    file: PathBuf,
    /// The artifact store (default: `artifacts/` beside the pipeline file, or $MAGPIPE_STORE).
    #[arg(long, global = true, env = "MAGPIPE_STORE")]
    store: Option<PathBuf>,
    /// How progress and logs are written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// No progress output (results and errors still print).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Where stages run: here, or as Slurm jobs (settings: the pipeline's `executor.slurm`).
    #[arg(long, global = true, value_enum, default_value_t = ExecutorFlag::Local, env = "MAGPIPE_EXECUTOR")]
    executor: ExecutorFlag,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum ExecutorFlag {
    Local,
    Slurm,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum StatusFormat {
    Text,
    /// One object per stage: state, key, summary or typed reasons.
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum DagFormat {
    Text,
    Dot,
    Mermaid,
}

#[derive(clap::Args)]
struct Select {
    /// Apply this named variant's param overrides.
    #[arg(long)]
    variant: Option<String>,
    /// Override one param: `stage.param=value` (value in YAML syntax). Repeatable.
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    sets: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the targets (default: every stage) and what they need; cached stages are skipped.
    Run {
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
    },
    /// The body of a Slurm job: run one stage from its job file (used by `--executor slurm`).
    #[command(hide = true)]
    StageJob { job: PathBuf },
    /// The body of one task of a study's job array: run the next trial of the study.
    #[command(hide = true)]
    TrialTask { request: PathBuf },
    /// Show which stages are fresh or stale.
    Status {
        targets: Vec<String>,
        #[command(flatten)]
        select: Select,
        /// Say why each stale stage is stale.
        #[arg(long)]
        explain: bool,
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
    },
    /// Print the stage graph.
    Dag {
        #[arg(long, value_enum, default_value_t = DagFormat::Text)]
        format: DagFormat,
    },
    /// Print the path of a stage's current output (all outputs, `name<TAB>path`, without OUTPUT).
    Artifact {
        stage: String,
        output: Option<String>,
        #[command(flatten)]
        select: Select,
    },
    /// List the stage kinds with their inputs, outputs and params.
    Kinds,
    /// The chain from an output back to the raw files: every stage's kind, key, params, inputs,
    /// outputs, runtime and timing, and every raw file with its size and blake3 hash.
    Lineage {
        /// STAGE or STAGE:OUTPUT.
        target: String,
        #[arg(long, value_enum, default_value_t = LineageFormat::Text)]
        format: LineageFormat,
        #[command(flatten)]
        select: Select,
    },
    /// Re-execute the chain that produced STAGE in a scratch store and compare every output byte
    /// for byte with the stored one; exits 1 if any differs.
    Audit {
        stage: String,
        #[command(flatten)]
        select: Select,
        /// Stages run at once (default: number of cores).
        #[arg(short, long)]
        jobs: Option<usize>,
    },
    /// Re-hash stored objects and check every record's chain; exits 1 on any problem.
    Verify {
        /// Only the chains of these stages (default: every record in the store).
        stages: Vec<String>,
        #[command(flatten)]
        select: Select,
    },
    /// The run log: every `magpipe run` on this store, what ran, what was cached, final outputs.
    Runs {
        /// Only the last N runs.
        #[arg(short = 'n', long)]
        last: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Variants side by side: the params that differ, then the results (`default` = no variant).
    Compare {
        #[arg(required = true, num_args = 2..)]
        variants: Vec<String>,
        #[arg(long, value_enum, default_value_t = CompareFormat::Md)]
        format: CompareFormat,
    },
    /// One self-contained HTML report: Table 1, Table 2 coloured and against the published one,
    /// the figures, predictors and variants compared, the lineage of Table 2.
    Report {
        /// The variant to report (default: none); give more to compare them in the report.
        #[arg(long = "variant", value_name = "VARIANT")]
        variants: Vec<String>,
        /// Where to write it (default: `report.html` in the store).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Forecast an AR from a trained model: the next 12 hours per tile, the emergence criterion
    /// on the predicted series, the alarm, its lead and margin; or `--replay` ARs hour by hour.
    Forecast {
        /// The train stage, optionally `@VARIANT` (default: the model of Table 2).
        #[arg(long, value_name = "STAGE[@VARIANT]")]
        model: Option<String>,
        /// The AR folder (SolARED layout, possibly still growing).
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "replay",
            conflicts_with = "replay"
        )]
        ar: Option<PathBuf>,
        /// Use only the hours up to TIME (`YYYY-MM-DD HH:MM[:SS]`, which covers that minute or
        /// second): the forecast as it was at that moment.
        #[arg(long, value_name = "TIME", requires = "ar")]
        at: Option<String>,
        /// Replay these ARs hour by hour (AR numbers in the pipeline's data folder, or AR
        /// folders; none: the model's test ARs) and write the alarm timeline.
        #[arg(long, value_name = "AR", num_args = 0..)]
        replay: Option<Vec<String>>,
        /// Paper tile numbers (k + 1) to forecast: `37-45` or `41,42` (default: the study's
        /// test tiles of the AR, else the model's training row).
        #[arg(long, value_name = "TILES", conflicts_with = "rows")]
        tiles: Option<String>,
        /// Grid rows 0–8 whose nine tiles to forecast: `4` or `3,4,5`.
        #[arg(long, value_name = "ROWS", value_delimiter = ',')]
        rows: Option<Vec<usize>>,
        /// Input hours per window (default: the study's for the AR, else the training input).
        #[arg(long, value_name = "HOURS")]
        input: Option<usize>,
        /// libtorch threads of the model run.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, value_enum, default_value_t = ForecastFormat::Text)]
        format: ForecastFormat,
        /// Where a replay writes its files (default: `forecasts/<stage>/replay/` in the store).
        #[arg(short, long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Remove records and objects that no ref and none of the last N runs reach.
    Gc {
        #[arg(long, default_value_t = 10)]
        keep_runs: usize,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompareFormat {
    Md,
    Csv,
    Json,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum ForecastFormat {
    Text,
    Json,
    Md,
}

/// `37-45` or `41,42` (paper tile numbers) → flat indices k.
fn parse_tiles(s: &str) -> Result<Vec<usize>, RunError> {
    let bad = || {
        RunError::Usage(format!(
            "--tiles {s}: expected paper tile numbers 1–81 like `37-45` or `41,42`"
        ))
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (a, b) = part.split_once(['-', '–']).unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a == 0 || b > 81 || a > b {
            return Err(bad());
        }
        out.extend(a - 1..b);
    }
    Ok(out)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LineageFormat {
    Text,
    Json,
    Md,
}

fn load(cli: &Cli, select: Option<&Select>) -> anyhow::Result<Plan> {
    let spec = RawSpec::load(&cli.file)?;
    let (variant, sets) = match select {
        Some(s) => (
            s.variant.as_deref(),
            s.sets
                .iter()
                .map(|t| SetOverride::parse(t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?,
        ),
        None => (None, Vec::new()),
    };
    Ok(sweep::plan_for(&spec, variant, &sets)?)
}

/// Absolute, so that the paths `magpipe artifact` prints work from any folder.
fn store_root(cli: &Cli) -> PathBuf {
    let root = cli.store.clone().unwrap_or_else(|| {
        let dir = cli
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        dir.join("artifacts")
    });
    std::path::absolute(&root).unwrap_or(root)
}

fn make_sink(cli: &Cli) -> Box<dyn Sink> {
    match cli.log_format {
        LogFormat::Json => Box::new(JsonSink),
        LogFormat::Human => Box::new(HumanSink::new(cli.quiet)),
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs one plan; prints the reports of the stages that ran when `print` is set.
#[allow(clippy::too_many_arguments)]
fn run_one(
    plan: &Plan,
    store: &Store,
    targets: &[String],
    force: &[String],
    jobs: usize,
    executor: ExecutorFlag,
    sink: &dyn Sink,
    print: bool,
) -> anyhow::Result<exec::RunResult> {
    let opts = RunOptions {
        targets: targets.to_vec(),
        force: force.to_vec(),
        jobs,
        executor: match executor {
            ExecutorFlag::Local => magpipe::executor::Choice::Local,
            ExecutorFlag::Slurm => magpipe::executor::Choice::Slurm(plan.slurm.clone()),
        },
    };
    let started = std::time::SystemTime::now();
    let result = exec::run(plan, store, &opts, sink)?;
    log_run(plan, store, targets, started, &result, opts.executor.name());
    if print {
        for (_, o) in &result.outcomes {
            if let Outcome::Ran(_, report) = o
                && let Some(text) = &report.stdout
            {
                println!("{text}");
            }
        }
    }
    let failures: Vec<String> = result
        .outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Failed(f) => Some(f.to_string()),
            _ => None,
        })
        .collect();
    if let Some(first) = failures.first() {
        bail!("{first}");
    }
    Ok(result)
}

/// A sweep: every point is a variant of its own (`<variant>+<label>`), `jobs` points at a time,
/// one stage at a time within a point; shared stages are computed once (per-key locks).
#[allow(clippy::too_many_arguments)]
fn run_sweep(
    cli: &Cli,
    select: &Select,
    store: &Store,
    targets: &[String],
    force: &[String],
    jobs: usize,
    seeds: Option<&str>,
    points: Vec<sweep::Point>,
    sink: &dyn Sink,
) -> anyhow::Result<ExitCode> {
    let spec = RawSpec::load(&cli.file)?;
    let base = select.variant.as_deref();
    let parse = |sets: &[String]| -> anyhow::Result<Vec<SetOverride>> {
        sets.iter()
            .map(|t| SetOverride::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)
    };
    // Seeds are one more sweep dimension, applied to every `train` stage at once.
    let seed_list = seeds
        .map(sweep::parse_seeds)
        .transpose()
        .map_err(RunError::Usage)?;
    let mut expanded: Vec<(String, Vec<String>, Option<u64>)> = Vec::new();
    for p in &points {
        match &seed_list {
            None => expanded.push((p.label.clone(), p.sets.clone(), None)),
            Some(list) => {
                let plan = Plan::build(&spec, base, &parse(&p.sets)?)?;
                let trains: Vec<&str> = plan
                    .stages
                    .iter()
                    .filter(|s| s.kind.name() == "train")
                    .map(|s| s.name.as_str())
                    .collect();
                if trains.is_empty() {
                    return Err(RunError::Usage(
                        "--seeds: the pipeline has no `train` stage".into(),
                    )
                    .into());
                }
                for seed in list {
                    let mut sets = p.sets.clone();
                    sets.extend(trains.iter().map(|t| format!("{t}.seed={seed}")));
                    let label = if p.label.is_empty() {
                        format!("seed={seed}")
                    } else {
                        format!("{},seed={seed}", p.label)
                    };
                    expanded.push((label, sets, Some(*seed)));
                }
            }
        }
    }
    let mut plans = Vec::new();
    for (label, sets, seed) in &expanded {
        let mut plan = Plan::build(&spec, base, &parse(sets)?)?;
        plan.variant = Some(sweep::variant_name(base, label));
        plans.push((label.clone(), plan, *seed));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(usize, anyhow::Result<exec::RunResult>)>> =
        std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(plans.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((label, plan, _)) = plans.get(i) else {
                        break;
                    };
                    let prefixed = sweep::PrefixSink {
                        inner: sink,
                        prefix: label.clone(),
                    };
                    let r = run_one(
                        plan,
                        store,
                        targets,
                        force,
                        1,
                        cli.executor,
                        &prefixed,
                        false,
                    );
                    results.lock().expect("results").push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(i, _)| *i);
    let mut failed = 0;
    println!("sweep of {} points:", plans.len());
    for (i, r) in &results {
        let (label, plan, _) = &plans[*i];
        match r {
            Ok(res) => {
                let count =
                    |f: fn(&Outcome) -> bool| res.outcomes.iter().filter(|(_, o)| f(o)).count();
                println!(
                    "  {label}: {} ran, {} cached (variant `{}`)",
                    count(|o| matches!(o, Outcome::Ran(..))),
                    count(|o| matches!(o, Outcome::Cached(_))),
                    plan.variant.as_deref().unwrap_or_default()
                );
            }
            Err(e) => {
                failed += 1;
                println!("  {label}: FAILED: {e:#}");
            }
        }
    }
    if seed_list.is_some() && failed == 0 {
        // The multi-seed Table 2, from each seed's (first) alarms stage.
        let mut tables = Vec::new();
        for (i, r) in &results {
            let (_, plan, seed) = &plans[*i];
            let Ok(res) = r else { continue };
            let table = res.outcomes.iter().find_map(|(j, o)| match o {
                Outcome::Ran(rec, _) | Outcome::Cached(rec)
                    if plan.stages[*j].kind.name() == "score_alarms" =>
                {
                    rec.outputs.get("table2").map(|o| store.object_path(o))
                }
                _ => None,
            });
            if let (Some(path), Some(seed)) = (table, seed) {
                tables.push((
                    *seed,
                    sweep::read_table2(&path).map_err(anyhow::Error::msg)?,
                ));
            }
        }
        if !tables.is_empty() {
            let delay = plans[0]
                .1
                .stages
                .iter()
                .find(|s| s.kind.name() == "score_alarms")
                .and_then(|s| s.params["delay_hours"].as_i64())
                .unwrap_or(4);
            let md = sweep::seeds_markdown(&tables, delay);
            let dir = store.root.join("reports");
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
        }
    }
    if failed > 0 {
        bail!("{failed} of {} sweep points failed", plans.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Appends this run to the store's run log; a run log that cannot be written is a warning, not a
/// failure of the run. A failed run that committed nothing leaves no trace, like the rest of the
/// store.
fn log_run(
    plan: &Plan,
    store: &Store,
    targets: &[String],
    started: std::time::SystemTime,
    result: &exec::RunResult,
    executor: &str,
) {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let mut stages = std::collections::BTreeMap::new();
    let mut recs = std::collections::BTreeMap::new();
    let mut jobs = std::collections::BTreeMap::new();
    for (i, o) in &result.outcomes {
        let (what, key) = match o {
            Outcome::Ran(r, _) => {
                recs.insert(*i, r);
                if let Some(x) = &r.executor {
                    jobs.insert(
                        r.stage.clone(),
                        x.attempts
                            .iter()
                            .map(|a| format!("{} {} on {}", a.job_id, a.state, a.node))
                            .collect(),
                    );
                }
                ("ran", Some(r.key.clone()))
            }
            Outcome::Cached(r) => {
                recs.insert(*i, r);
                ("cached", Some(r.key.clone()))
            }
            Outcome::Failed(_) => ("failed", None),
            Outcome::Skipped(_) => ("skipped", None),
        };
        stages.insert(plan.stages[*i].name.clone(), (what.to_string(), key));
    }
    let ran = result
        .outcomes
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Ran(..)));
    if result.failed() > 0 && !ran {
        return;
    }
    let selected: Vec<usize> = result.outcomes.iter().map(|(i, _)| *i).collect();
    let log = provenance::RunLog {
        started_unix: unix(started),
        seconds: started.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0),
        argv: std::env::args().collect(),
        variant: plan.variant.clone(),
        targets: targets.to_vec(),
        ok: result.failed() == 0,
        magpipe_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: magpipe::GIT_COMMIT.to_string(),
        stages,
        outputs: provenance::final_outputs(plan, &selected, &recs),
        executor: executor.to_string(),
        jobs,
    };
    if let Err(e) = provenance::append_run(store, &log) {
        eprintln!("warning: the run log was not written: {e}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MAGPIPE_LOG"))
        .init();
    match real_main(&cli) {
        Ok(code) => code,
        Err(e) => {
            // Escaped, so a control character from the user's input (a NUL in a stage name)
            // neither reaches the terminal raw nor breaks the one-line error.
            let line: String = format!("{e:#}")
                .chars()
                .flat_map(|c| {
                    if c.is_control() {
                        c.escape_default().collect::<Vec<_>>()
                    } else {
                        vec![c]
                    }
                })
                .collect();
            eprintln!("error: {line}");
            let usage = e.downcast_ref::<SpecError>().is_some()
                || matches!(
                    e.downcast_ref::<RunError>(),
                    Some(RunError::Usage(_) | RunError::Spec(_))
                );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn real_main(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.cmd {
        Cmd::StageJob { job } => {
            let code = magpipe::executor::stage_job_main(job);
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Cmd::TrialTask { request } => {
            let code = magpipe::executor::trial_task_main(request);
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Cmd::Run {
            targets,
            select,
            force,
            jobs,
            seeds,
        } => {
            let store = Store::open(&store_root(cli));
            let sink = make_sink(cli);
            let jobs = jobs.unwrap_or_else(default_jobs);
            let points = sweep::expand(&select.sets).map_err(RunError::Usage)?;
            if points.len() == 1 && seeds.is_none() {
                let plan = load(cli, Some(select))?;
                run_one(
                    &plan,
                    &store,
                    targets,
                    force,
                    jobs,
                    cli.executor,
                    sink.as_ref(),
                    true,
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            run_sweep(
                cli,
                select,
                &store,
                targets,
                force,
                jobs,
                seeds.as_deref(),
                points,
                sink.as_ref(),
            )
        }
        Cmd::Status {
            targets,
            select,
            explain,
            format,
        } => {
            let plan = load(cli, Some(select))?;
            let store = Store::open(&store_root(cli));
            let selected = plan.select(targets).map_err(RunError::Usage)?;
            let rows = exec::status(&plan, &store, &selected)?;
            if *format == StatusFormat::Json {
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
                            "reasons": why.iter().map(magpipe::stale::to_json).collect::<Vec<_>>(),
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
                        if *explain {
                            for w in why.iter().skip(1) {
                                println!("{:<width$}         {:12}  {w}", "", "");
                            }
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Dag { format } => {
            let plan = load(cli, None)?;
            print!(
                "{}",
                match format {
                    DagFormat::Text => magpipe::dag::text(&plan),
                    DagFormat::Dot => magpipe::dag::dot(&plan),
                    DagFormat::Mermaid => magpipe::dag::mermaid(&plan),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Artifact {
            stage,
            output,
            select,
        } => {
            let plan = load(cli, Some(select))?;
            let store = Store::open(&store_root(cli));
            let i = plan
                .index(stage)
                .ok_or_else(|| RunError::Usage(format!("no stage `{stage}`")))?;
            let selected = plan
                .select(std::slice::from_ref(stage))
                .map_err(RunError::Usage)?;
            let rows = exec::status(&plan, &store, &selected)?;
            let rec = match rows.into_iter().find(|(j, _)| *j == i).map(|(_, f)| f) {
                Some(Freshness::Fresh(r)) => r,
                Some(Freshness::Stale { why, .. }) => {
                    return Err(RunError::Stale {
                        stage: stage.clone(),
                        why: magpipe::stale::joined(&why),
                    }
                    .into());
                }
                None => unreachable!("the stage is selected"),
            };
            match output {
                Some(o) => {
                    let out = rec.outputs.get(o).with_context(|| {
                        format!(
                            "stage `{stage}` has no output `{o}` (outputs: {})",
                            rec.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    })?;
                    println!("{}", store.object_path(out).display());
                }
                None => {
                    for (name, out) in &rec.outputs {
                        println!("{name}\t{}", store.object_path(out).display());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lineage {
            target,
            format,
            select,
        } => {
            let plan = load(cli, Some(select))?;
            let store = Store::open(&store_root(cli));
            let (stage, output) = match target.split_once(':') {
                Some((s, o)) => (s, Some(o)),
                None => (target.as_str(), None),
            };
            let l = provenance::lineage(&plan, &store, stage, output)?;
            match format {
                LineageFormat::Text => print!("{}", provenance::lineage_text(&l)),
                LineageFormat::Md => print!("{}", provenance::lineage_markdown(&l)),
                LineageFormat::Json => println!("{}", serde_json::to_string_pretty(&l)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit {
            stage,
            select,
            jobs,
        } => {
            let plan = load(cli, Some(select))?;
            let store = Store::open(&store_root(cli));
            let sink = make_sink(cli);
            let jobs = jobs.unwrap_or_else(default_jobs);
            let r = provenance::audit(&plan, &store, stage, jobs, sink.as_ref())?;
            print!("{}", provenance::audit_text(&r));
            Ok(if r.first_difference.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Verify { stages, select } => {
            let store = Store::open(&store_root(cli));
            let records = if stages.is_empty() {
                provenance::all_records(&store)?
            } else {
                let plan = load(cli, Some(select))?;
                provenance::chain_records(&plan, &store, stages)?
            };
            let rep = provenance::verify(&store, &records)?;
            for p in &rep.problems {
                println!("{p}");
            }
            println!(
                "verified {} records, {} objects ({:.1} MB): {}",
                rep.records,
                rep.objects,
                rep.bytes as f64 / 1e6,
                if rep.problems.is_empty() {
                    "ok".to_string()
                } else {
                    match rep.problems.len() {
                        1 => "1 problem".to_string(),
                        n => format!("{n} problems"),
                    }
                }
            );
            Ok(if rep.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Runs { last, json } => {
            let store = Store::open(&store_root(cli));
            let mut logs = provenance::runs(&store)?;
            if let Some(n) = last {
                logs = logs.split_off(logs.len().saturating_sub(*n));
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&logs)?);
            } else {
                print!("{}", provenance::runs_text(&logs));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Compare { variants, format } => {
            let spec = RawSpec::load(&cli.file)?;
            let mut plans = Vec::new();
            for v in variants {
                let variant = (v != magpipe::compare::DEFAULT).then_some(v.as_str());
                plans.push((v.clone(), sweep::plan_for(&spec, variant, &[])?));
            }
            let store = Store::open(&store_root(cli));
            let c = magpipe::compare::compare(&plans, &store)?;
            match format {
                CompareFormat::Md => print!("{}", magpipe::compare::markdown(&c)),
                CompareFormat::Csv => print!("{}", magpipe::compare::csv(&c)),
                CompareFormat::Json => println!("{}", serde_json::to_string_pretty(&c)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report { variants, output } => {
            let spec = RawSpec::load(&cli.file)?;
            let store = Store::open(&store_root(cli));
            let name = variants
                .first()
                .cloned()
                .unwrap_or_else(|| "default".into());
            let build = |v: &str| -> anyhow::Result<Plan> {
                let variant = (v != magpipe::compare::DEFAULT).then_some(v);
                Ok(sweep::plan_for(&spec, variant, &[])?)
            };
            let plan = build(&name)?;
            let mut others = Vec::new();
            for v in variants.iter().skip(1) {
                others.push((v.clone(), build(v)?));
            }
            let input = magpipe::report::ReportInput {
                plan: &plan,
                name: name.clone(),
                others,
            };
            let html = magpipe::report::html(&input, &store)?;
            let path = output.clone().unwrap_or_else(|| {
                store.root.join(if name == "default" {
                    "report.html".to_string()
                } else {
                    format!("report-{name}.html")
                })
            });
            std::fs::write(&path, html).with_context(|| format!("{}", path.display()))?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Forecast {
            model,
            ar,
            at,
            replay,
            tiles,
            rows,
            input,
            threads,
            format,
            out,
        } => {
            let spec = RawSpec::load(&cli.file)?;
            let store = Store::open(&store_root(cli));
            let res = magpipe::forecast::resolve(&spec, &store, model.as_deref())?;
            if let Some(note) = &res.stale {
                eprintln!("note: {note}");
            }
            if let Some(r) = rows.as_deref()
                && let Some(bad) = r.iter().find(|&&r| r >= 9)
            {
                return Err(RunError::Usage(format!(
                    "--rows: row {bad} is outside the 9×9 grid (0–8)"
                ))
                .into());
            }
            let choice = magpipe_stages::forecast::Choice {
                tiles: tiles.as_deref().map(parse_tiles).transpose()?,
                rows: rows.clone(),
                input: *input,
            };
            let sink = make_sink(cli);
            if let Some(list) = replay {
                let dirs: Vec<PathBuf> = if list.is_empty() {
                    let ars: Vec<u32> = res
                        .frame
                        .protocol
                        .as_ref()
                        .map(|p| p.ars.iter().map(|a| a.ar).collect())
                        .unwrap_or_default();
                    if ars.is_empty() {
                        return Err(RunError::Usage("--replay: the model's pipeline has no test protocol; name the ARs to replay".into()).into());
                    }
                    ars.iter()
                        .map(|a| {
                            magpipe::forecast::ar_folder(&a.to_string(), res.data_dir.as_deref())
                        })
                        .collect::<Result<_, _>>()?
                } else {
                    list.iter()
                        .map(|a| magpipe::forecast::ar_folder(a, res.data_dir.as_deref()))
                        .collect::<Result<_, _>>()?
                };
                let out_dir = out
                    .clone()
                    .unwrap_or_else(|| magpipe::forecast::default_out(&store, &res.info));
                let run = magpipe::forecast::replay(
                    &res,
                    &dirs,
                    &choice,
                    *threads,
                    &out_dir,
                    sink.as_ref(),
                )?;
                match format {
                    ForecastFormat::Json => {
                        println!("{}", serde_json::to_string_pretty(&run.report)?)
                    }
                    f => {
                        print!(
                            "{}",
                            magpipe_stages::forecast::replay_text(
                                &run.report,
                                *f == ForecastFormat::Md
                            )
                        );
                        println!("\nwritten to {}:", run.out_dir.display());
                        for (name, path) in &run.report.files {
                            println!("  {name}\t{path}");
                        }
                        for a in &run.report.ars {
                            for (name, path) in &a.files {
                                println!("  AR{} {name}\t{path}", a.ar);
                            }
                        }
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let dir = ar.clone().expect("clap requires --ar without --replay");
            let until = at
                .as_deref()
                .map(|t| {
                    magpipe_stages::solared::time::parse_until(t).ok_or_else(|| {
                        RunError::Usage(format!(
                            "--at {t}: expected a time like `2013-03-12 04:59`"
                        ))
                    })
                })
                .transpose()?;
            let r =
                magpipe::forecast::forecast(&res, &dir, until, &choice, *threads, sink.as_ref())?;
            match format {
                ForecastFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                f => print!(
                    "{}",
                    magpipe_stages::forecast::forecast_text(&r, *f == ForecastFormat::Md)
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Gc { keep_runs, dry_run } => {
            let store = Store::open(&store_root(cli));
            let rep = provenance::gc(&store, *keep_runs, *dry_run)?;
            println!(
                "{} {} records and {} objects ({:.1} MB); kept {} records",
                if *dry_run { "would remove" } else { "removed" },
                rep.removed_records,
                rep.removed_objects,
                rep.freed_bytes as f64 / 1e6,
                rep.kept_records
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Kinds => {
            for k in plan::kinds() {
                println!("{} (v{})\n  {}", k.name(), k.version(), k.doc());
                for i in k.inputs() {
                    println!("  input  {:<12} {}", i.name, i.doc);
                }
                for i in k.list_inputs() {
                    println!("  inputs {:<12} list: {}", i.name, i.doc);
                }
                for o in k.outputs() {
                    println!("  output {:<12} {} — {}", o.name, o.file, o.doc);
                }
                if let serde_json::Value::Object(p) = k.defaults() {
                    for (name, v) in p {
                        println!("  param  {name:<12} default {v}");
                    }
                }
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
