//! The commands of the `magpipe` binary, one file each: its arguments (a clap `Args` struct) and
//! its `run`. Every command gets the same [`Ctx`], built once from the global options.

pub mod artifact;
pub mod audit;
pub mod compare;
pub mod dag;
pub mod docs;
pub mod export;
pub mod forecast;
pub mod gc;
pub mod import;
pub mod job;
pub mod key;
pub mod kinds;
pub mod lineage;
pub mod pull;
pub mod push;
pub mod remote;
pub mod report;
pub mod run;
pub mod runs;
pub mod status;
pub mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use magpipe_engine::Registry;
use magpipe_engine::error::RunError;
use magpipe_engine::events::{HumanSink, JsonSink, Sink};
use magpipe_engine::executor::Choice;
use magpipe_engine::plan::{Plan, SetOverride};
use magpipe_engine::spec::RawSpec;
use magpipe_engine::store::Store;
use magpipe_engine::sweep;

/// The whole command line; `magpipe docs` renders its reference page from this definition.
#[derive(clap::Parser)]
#[command(
    name = "magpipe",
    version,
    about = "Reproducible, cached pipeline for the MagFlux emerging-flux study",
    after_help = "Book: docs/src/SUMMARY.md (`make docs` builds it as HTML in docs/book/)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The options every command takes.
#[derive(clap::Args)]
pub struct Global {
    /// The pipeline file.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        help_heading = "Global options",
        default_value = "pipeline.yaml"
    )]
    pub file: PathBuf,
    /// The artifact store (default: `artifacts/` beside the pipeline file, or $MAGPIPE_STORE).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MAGPIPE_STORE",
        hide_env_values = true,
        value_parser = cli_path
    )]
    pub store: Option<PathBuf>,
    /// How progress and logs are written to stderr.
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// No progress output (results and errors still print).
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// Where stages run: here, or as Slurm jobs (settings: the pipeline's `executor.slurm`).
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = ExecutorFlag::Local, env = "MAGPIPE_EXECUTOR", hide_env_values = true)]
    pub executor: ExecutorFlag,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum ExecutorFlag {
    Local,
    Slurm,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// `--variant` and `--set`, for the commands that build a plan.
#[derive(clap::Args)]
pub struct Select {
    /// Apply this named variant's param overrides.
    #[arg(long)]
    pub variant: Option<String>,
    /// Override one param: `stage.param=value` (value in YAML syntax); `+stage.param=value`
    /// adds one the stage does not declare (a misspelt name is refused). Repeatable.
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    pub sets: Vec<String>,
}

impl Select {
    /// This selection as flags (` --variant quick --set 'a.b=x y'`), for a command to suggest.
    pub fn flags(&self) -> String {
        let quote = |s: &str| {
            if s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+=,:/@".contains(c))
            {
                s.to_string()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        };
        let mut out = String::new();
        if let Some(v) = &self.variant {
            out.push_str(&format!(" --variant {}", quote(v)));
        }
        for s in &self.sets {
            out.push_str(&format!(" --set {}", quote(s)));
        }
        out
    }

    /// A stale-stage error that suggests rerunning with this selection, not without it.
    pub fn in_hint(&self, e: RunError) -> RunError {
        match e {
            RunError::Stale { stage, why, .. } => RunError::Stale {
                stage,
                why,
                flags: self.flags(),
            },
            e => e,
        }
    }
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the targets (default: every stage) and what they need; cached stages are skipped.
    #[command(after_help = "Book: docs/src/guide/reproducing.md")]
    Run(run::Args),
    /// The body of a Slurm job: run one stage from its job file (used by `--executor slurm`).
    #[command(hide = true)]
    StageJob(job::StageJobArgs),
    /// The body of one task of a kind's job array (a tuning study's: run its next trial).
    #[command(hide = true)]
    Task(job::TaskArgs),
    /// Show which stages are fresh or stale.
    #[command(after_help = "Book: docs/src/guide/store.md")]
    Status(status::Args),
    /// Print the stage graph.
    #[command(after_help = "Book: docs/src/reference/pipeline-yaml.md")]
    Dag(dag::Args),
    /// Print the path of a stage's current output (all outputs, `name<TAB>path`, without OUTPUT).
    #[command(after_help = "Book: docs/src/guide/store.md")]
    Artifact(artifact::Args),
    /// List the stage kinds with their inputs, outputs and params.
    #[command(after_help = "Book: docs/src/reference/kinds.md")]
    Kinds(kinds::Args),
    /// The chain from an output back to the raw files: every stage's kind, key, params, inputs,
    /// outputs, runtime and timing, and every raw file with its size and blake3 hash.
    #[command(after_help = "Book: docs/src/guide/store.md")]
    Lineage(lineage::Args),
    /// Re-execute the chain that produced STAGE in a scratch store and compare every output byte
    /// for byte with the stored one; exits 1 if any differs.
    #[command(after_help = "Book: docs/src/guide/store.md")]
    Audit(audit::Args),
    /// Re-hash stored objects and check every record's chain; exits 1 on any problem.
    #[command(after_help = "Book: docs/src/guide/reliability.md")]
    Verify(verify::Args),
    /// Write a stage's results and their provenance in a standard others read without magpipe
    /// (`export crate`: a Workflow Run RO-Crate).
    #[command(after_help = "Book: docs/src/guide/publishing.md")]
    Export(export::Args),
    /// Bring results another machine exported into this store (`import crate`), so `audit`
    /// re-executes them.
    #[command(after_help = "Book: docs/src/guide/publishing.md")]
    Import(import::Args),
    /// The run log: every `magpipe run` on this store, what ran, what was cached, final outputs.
    #[command(after_help = "Book: docs/src/guide/store.md")]
    Runs(runs::Args),
    /// Variants side by side: the params that differ, then the results (`default` = no variant).
    #[command(after_help = "Book: docs/src/guide/variants.md")]
    Compare(compare::Args),
    /// One self-contained HTML report: Table 1, Table 2 coloured and against the published one,
    /// the figures, predictors and variants compared, the lineage of Table 2.
    #[command(after_help = "Book: docs/src/guide/evaluation.md")]
    Report(report::Args),
    /// Forecast an AR from a trained model: the next 12 hours per tile, the emergence criterion
    /// on the predicted series, the alarm, its lead and margin; or `--replay` ARs hour by hour.
    #[command(after_help = "Book: docs/src/guide/forecasts.md")]
    Forecast(forecast::Args),
    /// Upload the named stages' current results, with their whole upstream chain, to a remote:
    /// the objects it lacks, then the records, signed with this user's key.
    #[command(after_help = "Book: docs/src/guide/sharing.md")]
    Push(push::Args),
    /// Fetch from a remote what the plan needs for the targets, each record verified and every
    /// object re-hashed before it enters the store; nothing is computed.
    #[command(after_help = "Book: docs/src/guide/sharing.md")]
    Pull(pull::Args),
    /// The project's remotes: add, list, remove, trust a signing key, print the default.
    #[command(after_help = "Book: docs/src/guide/sharing.md")]
    Remote(remote::Args),
    /// This user's signing key for `push`: generate one, or show its public half.
    #[command(after_help = "Book: docs/src/guide/sharing.md")]
    Key(key::Args),
    /// Remove records and objects that no ref and none of the last N runs reach.
    #[command(after_help = "Book: docs/src/guide/store.md")]
    Gc(gc::Args),
    /// The book's reference pages, generated from this binary: print one, or write them all.
    #[command(after_help = "Book: docs/src/reference/cli.md")]
    Docs(docs::Args),
}

/// What every command works with, built once: the global options, the kinds, the store, the
/// event sink.
pub struct Ctx<'a> {
    pub global: &'a Global,
    /// The study's kinds, the only ones this binary registers with the engine.
    pub registry: Registry,
    pub store: Store,
    pub sink: Box<dyn Sink>,
}

impl<'a> Ctx<'a> {
    pub fn new(global: &'a Global) -> Ctx<'a> {
        let sink: Box<dyn Sink> = match global.log_format {
            LogFormat::Json => Box::new(JsonSink),
            LogFormat::Human => Box::new(HumanSink::new(global.quiet)),
        };
        Ctx {
            global,
            registry: magpipe_stages::registry(),
            store: Store::open(&store_root(global)),
            sink,
        }
    }

    pub fn spec(&self) -> anyhow::Result<RawSpec> {
        Ok(RawSpec::load(&self.global.file)?)
    }

    /// The plan, with `--variant`/`--set` applied when given.
    /// The plan of one run: `--variant` with every `--set`, named by both (its own refs). A
    /// `--set` with alternatives names several points, which only `run` sweeps.
    pub fn plan(&self, select: Option<&Select>) -> anyhow::Result<Plan> {
        let spec = self.spec()?;
        let Some(s) = select else {
            return Ok(sweep::plan_for(&spec, &self.registry, None, &[])?);
        };
        let points = sweep::expand(&s.sets).map_err(RunError::Usage)?;
        if points.len() > 1 {
            return Err(RunError::Usage(format!(
                "--set names {} sweep points ({}, …); this command shows one: give each --set \
                 one value (`magpipe run` sweeps them)",
                points.len(),
                points[0].label
            ))
            .into());
        }
        let variant = s.variant.as_deref();
        let mut plan = sweep::plan_for(&spec, &self.registry, variant, &parse_sets(&s.sets)?)?;
        plan.variant = sweep::run_name(variant, &s.sets);
        Ok(plan)
    }

    /// The folder of the pipeline file: where `.magpipe/` (the remotes) lives.
    pub fn project_dir(&self) -> PathBuf {
        let dir = self
            .global
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
    }

    /// The executor `--executor` asks for, with the plan's Slurm settings.
    pub fn executor(&self, plan: &Plan) -> Choice {
        match self.global.executor {
            ExecutorFlag::Local => Choice::Local,
            ExecutorFlag::Slurm => Choice::Slurm(plan.slurm.clone()),
        }
    }
}

/// A path given on the command line, made absolute against the folder magpipe was started in:
/// magpipe then works in the pipeline file's folder (`Global::enter_project`).
pub fn cli_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("an empty path".into());
    }
    std::path::absolute(s).map_err(|e| format!("{s}: {e}"))
}

impl Global {
    /// With `-f` naming a pipeline file in another folder, works from that folder, as DVC and
    /// Snakemake do: the paths in the pipeline (a command stage's `code:` and `env:`, data
    /// folders, the published table) mean the same wherever magpipe is started. Paths given on
    /// the command line were made absolute as they were parsed.
    pub fn enter_project(&mut self) -> std::io::Result<()> {
        let Some(dir) = self.file.parent().filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(());
        };
        let dir = std::path::absolute(dir)?;
        if std::env::current_dir().is_ok_and(|cwd| cwd == dir) {
            return Ok(());
        }
        self.file = std::path::absolute(&self.file)?;
        std::env::set_current_dir(&dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
    }
}

pub fn parse_sets(sets: &[String]) -> anyhow::Result<Vec<SetOverride>> {
    sets.iter()
        .map(|t| SetOverride::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)
}

/// Absolute, so that the paths `magpipe artifact` prints work from any folder.
fn store_root(g: &Global) -> PathBuf {
    let root = g.store.clone().unwrap_or_else(|| {
        let dir = g
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        dir.join("artifacts")
    });
    std::path::absolute(&root).unwrap_or(root)
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Exit status 1 unless `ok`.
pub fn status_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn run(ctx: &Ctx, cmd: &Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run(a) => run::run(ctx, a),
        Cmd::StageJob(a) => Ok(job::stage_job(ctx, a)),
        Cmd::Task(a) => Ok(job::task(ctx, a)),
        Cmd::Status(a) => status::run(ctx, a),
        Cmd::Dag(a) => dag::run(ctx, a),
        Cmd::Artifact(a) => artifact::run(ctx, a),
        Cmd::Kinds(a) => kinds::run(ctx, a),
        Cmd::Lineage(a) => lineage::run(ctx, a),
        Cmd::Audit(a) => audit::run(ctx, a),
        Cmd::Verify(a) => verify::run(ctx, a),
        Cmd::Export(a) => export::run(ctx, a),
        Cmd::Import(a) => import::run(ctx, a),
        Cmd::Runs(a) => runs::run(ctx, a),
        Cmd::Compare(a) => compare::run(ctx, a),
        Cmd::Report(a) => report::run(ctx, a),
        Cmd::Forecast(a) => forecast::run(ctx, a),
        Cmd::Push(a) => push::run(ctx, a),
        Cmd::Pull(a) => pull::run(ctx, a),
        Cmd::Remote(a) => remote::run(ctx, a),
        Cmd::Key(a) => key::run(ctx, a),
        Cmd::Gc(a) => gc::run(ctx, a),
        Cmd::Docs(a) => docs::run(ctx, a),
    }
}
