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
use magpipe::spec::RawSpec;
use magpipe::store::Store;

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
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
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
        /// Stages run at once (default: number of cores).
        #[arg(short, long)]
        jobs: Option<usize>,
    },
    /// Show which stages are fresh or stale.
    Status {
        targets: Vec<String>,
        #[command(flatten)]
        select: Select,
        /// Say why each stale stage is stale.
        #[arg(long)]
        explain: bool,
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
    Ok(Plan::build(&spec, variant, &sets)?)
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MAGPIPE_LOG"))
        .init();
    match real_main(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
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
        Cmd::Run {
            targets,
            select,
            force,
            jobs,
        } => {
            let plan = load(cli, Some(select))?;
            let store = Store::open(&store_root(cli));
            let sink: Box<dyn Sink> = match cli.log_format {
                LogFormat::Json => Box::new(JsonSink),
                LogFormat::Human => Box::new(HumanSink::new(cli.quiet)),
            };
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let opts = RunOptions {
                targets: targets.clone(),
                force: force.clone(),
                jobs,
            };
            let result = exec::run(&plan, &store, &opts, sink.as_ref())?;
            for (_, o) in &result.outcomes {
                if let Outcome::Ran(_, report) = o
                    && let Some(text) = &report.stdout
                {
                    println!("{text}");
                }
            }
            let failures: Vec<String> = result
                .outcomes
                .iter()
                .filter_map(|(i, o)| match o {
                    Outcome::Failed(msg) if msg.starts_with("stage `") => Some(msg.clone()),
                    Outcome::Failed(msg) => {
                        Some(format!("stage `{}`: {msg}", plan.stages[*i].name))
                    }
                    _ => None,
                })
                .collect();
            if let Some(first) = failures.first() {
                bail!("{first}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status {
            targets,
            select,
            explain,
        } => {
            let plan = load(cli, Some(select))?;
            let store = Store::open(&store_root(cli));
            let selected = plan.select(targets).map_err(RunError::Usage)?;
            let rows = exec::status(&plan, &store, &selected)?;
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
                            why.first().map_or("", String::as_str)
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
                        why: why.join("; "),
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
