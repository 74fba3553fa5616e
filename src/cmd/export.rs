//! `magpipe export crate [STAGE]`: the provenance of a stage's results as a Workflow Run RO-Crate
//! (Provenance Run Crate 0.5), with the outputs copied in, for a journal, an archive or a referee.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use magpipe_engine::error::RunError;
use magpipe_engine::exec::{Outcome, RunResult};
use magpipe_engine::kind::TypedKind;
use magpipe_engine::provenance::{self, Lineage};
use magpipe_engine::remote::config;
use magpipe_engine::rocrate::{self, Aggregate, Contents, CrateMeta, Organization, Person};
use magpipe_engine::store::Store;
use magpipe_engine::sweep::{self, PointPlan};
use magpipe_stages::alarms::ScoreAlarms;
use magpipe_stages::evaluate::Evaluate;

use super::{Ctx, Select};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// A Workflow Run RO-Crate (Provenance Run Crate 0.5) of STAGE's chain: the pipeline file as
    /// the workflow, one action per stage run with its inputs, param values, outputs (copied in)
    /// and the machine facts that changed its floats, every file with its sha256 and blake3.
    Crate(CrateArgs),
}

#[derive(clap::Args)]
struct CrateArgs {
    /// The stage whose chain is exported.
    #[arg(default_value = "tables")]
    stage: String,
    /// The folder to write (new or empty).
    #[arg(short = 'o', long = "out", default_value = "crate", value_parser = super::cli_path)]
    out: PathBuf,
    /// Write the crate as one zip file instead of a folder (what Zenodo and WorkflowHub take).
    #[arg(long, value_name = "FILE", conflicts_with = "out", value_parser = super::cli_path)]
    zip: Option<PathBuf>,
    /// The licence of the results: an SPDX id (CC-BY-4.0) or a URL (default: export.license in
    /// .magpipe/config.yaml; a crate needs one).
    #[arg(long)]
    license: Option<String>,
    /// An author (repeatable; default: export.authors).
    #[arg(long = "author", value_name = "NAME")]
    authors: Vec<String>,
    /// The publishing organisation, `NAME=URL` (default: export.publisher).
    #[arg(long, value_name = "NAME=URL")]
    publisher: Option<String>,
    /// What the results are (default: export.description, else a sentence naming the stage).
    #[arg(long)]
    description: Option<String>,
    /// The project's address (its repository), for the workflow (default: export.url).
    #[arg(long)]
    url: Option<String>,
    /// Copy the raw files into the crate too (default: named, sized and hashed only).
    #[arg(long)]
    include_data: bool,
    /// Leave trained models (outputs named `model`) out of the crate.
    #[arg(long)]
    no_models: bool,
    /// Export a seed sweep run with `run --seeds` (same values): every seed's chain, the runs
    /// they share once, and the multi-seed Table 2 and pooled evaluation made from them.
    #[arg(long)]
    seeds: Option<String>,
    /// Export a k-fold run made with `run --folds` (same values): every fold's chain and the
    /// pooled evaluation (`export crate evaluate --variant kfold --folds 0..9`).
    #[arg(long)]
    folds: Option<String>,
    #[command(flatten)]
    select: Select,
}

/// The config's `export:` section with the flags over it.
fn meta(ctx: &Ctx, a: &CrateArgs) -> anyhow::Result<CrateMeta> {
    let mut m = config::load(&ctx.project_dir())?.export.unwrap_or_default();
    if a.license.is_some() {
        m.license = a.license.clone();
    }
    if !a.authors.is_empty() {
        m.authors = a
            .authors
            .iter()
            .map(|n| Person {
                name: n.clone(),
                id: None,
            })
            .collect();
    }
    if let Some(p) = &a.publisher {
        let Some((name, url)) = p.split_once('=') else {
            anyhow::bail!("--publisher {p}: expected NAME=URL");
        };
        m.publisher = Some(Organization {
            name: name.into(),
            url: url.into(),
        });
    }
    if a.description.is_some() {
        m.description = a.description.clone();
    }
    if a.url.is_some() {
        m.url = a.url.clone();
    }
    Ok(m)
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let What::Crate(a) = &a.what;
    let meta = meta(ctx, a)?;
    // Valid without them, but the profiles recommend both, and archives show them.
    for (missing, flag) in [
        (
            meta.url.is_none(),
            "--url (export.url): where the project lives",
        ),
        (
            meta.publisher.is_none(),
            "--publisher (export.publisher): the authors' organisation",
        ),
    ] {
        if missing && meta.license.is_some() {
            eprintln!("note: no {flag}; the Provenance Run Crate profile recommends it");
        }
    }
    let (chains, aggregates) = chains(ctx, a)?;
    let contents = Contents {
        include_data: a.include_data,
        no_models: a.no_models,
    };
    let write = |out: &Path| {
        rocrate::export(
            &chains,
            &aggregates,
            &ctx.store,
            &ctx.global.file,
            &meta,
            contents,
            out,
        )
    };
    let (w, written, size) = match &a.zip {
        None => {
            let w = write(&a.out)?;
            let bytes = w.bytes;
            (w, a.out.clone(), bytes)
        }
        Some(zip) => {
            // Refused before any work if the name is taken; the folder is a private one.
            if zip.exists() {
                anyhow::bail!("{} exists: a crate is written to a new file", zip.display());
            }
            let tmp = tempfile::tempdir()?;
            let w = write(tmp.path())?;
            let size = rocrate::write_zip(tmp.path(), zip)?;
            (w, zip.clone(), size)
        }
    };
    let runs: std::collections::BTreeSet<&str> = chains
        .iter()
        .flat_map(|l| l.stages.iter().map(|s| s.key.as_str()))
        .collect();
    println!(
        "wrote {} ({} stage runs{}, {} files, {:.1} MB), identifier {}",
        written.display(),
        runs.len(),
        if chains.len() > 1 {
            format!(" in {} sweep points", chains.len())
        } else {
            String::new()
        },
        w.files,
        size as f64 / 1e6,
        w.identifier
    );
    Ok(ExitCode::SUCCESS)
}

/// The chain of the stage, or of the stage in every point of the sweep the flags describe (as
/// `run` expands them), with what the sweep's points make together.
fn chains(ctx: &Ctx, a: &CrateArgs) -> anyhow::Result<(Vec<Lineage>, Vec<Aggregate>)> {
    let points = sweep::expand(&a.select.sets).map_err(RunError::Usage)?;
    if points.len() == 1 && a.seeds.is_none() && a.folds.is_none() {
        let plan = ctx.plan(Some(&a.select))?;
        let l = provenance::lineage(&plan, &ctx.store, &a.stage, None)
            .map_err(|e| a.select.in_hint(e))?;
        return Ok((vec![l], Vec::new()));
    }
    let dims = super::run::dimensions(&a.folds, &a.seeds)?;
    let base = a.select.variant.as_deref();
    let plans = sweep::point_plans(&ctx.spec()?, &ctx.registry, base, &points, &dims)?;
    let mut chains = Vec::new();
    for p in &plans {
        let l = provenance::lineage(&p.plan, &ctx.store, &a.stage, None).map_err(|e| {
            anyhow::anyhow!(
                "sweep point {}: {e} (run the sweep first, with the same flags)",
                p.label
            )
        })?;
        chains.push(l);
    }
    let aggregates = aggregates(&ctx.store, base, &plans, &chains, a.seeds.is_some())?;
    Ok((chains, aggregates))
}

/// The multi-seed Table 2 (a seed sweep) and the pooled evaluation, made again from the points'
/// stored outputs exactly as `run` made them, with the outputs each one read.
fn aggregates(
    store: &Store,
    base: Option<&str>,
    plans: &[PointPlan],
    chains: &[Lineage],
    seeds: bool,
) -> anyhow::Result<Vec<Aggregate>> {
    // What each point's run would have reported: every stage of its chain, cached.
    let mut results = Vec::new();
    for (p, l) in plans.iter().zip(chains) {
        let mut outcomes = Vec::new();
        for s in &l.stages {
            let (Some(j), Some(rec)) = (p.plan.index(&s.stage), store.record(&s.key)?) else {
                continue;
            };
            outcomes.push((j, Outcome::Cached(rec)));
        }
        results.push(RunResult { outcomes });
    }
    let done: Vec<(&PointPlan, &RunResult)> = plans.iter().zip(&results).collect();
    // A run two points share is one object of the aggregate, not two.
    let reads = |kind: &str, outputs: &[&str]| -> Vec<(String, String)> {
        let runs: std::collections::BTreeSet<&str> = chains
            .iter()
            .flat_map(|l| l.stages.iter().filter(|s| s.kind == kind))
            .map(|s| s.key.as_str())
            .collect();
        runs.iter()
            .flat_map(|k| outputs.iter().map(move |o| (k.to_string(), o.to_string())))
            .collect()
    };
    let mut out = Vec::new();
    if seeds
        && let Some((_, path)) = magpipe_stages::commands::seeds::seeds_table(store, base, &done)
            .map_err(anyhow::Error::msg)?
    {
        out.push(Aggregate {
            name: "seeds-table".into(),
            description: "The multi-seed Table 2: each category by majority over the seeds, \
                          with the seeds' lead times, from each seed's alarms stage."
                .into(),
            files: vec![(path.clone(), file_name(&path))],
            reads: reads(ScoreAlarms::NAME, &["table2", "alarms"]),
        });
    }
    if let Some((_, dir)) = magpipe_stages::commands::pooled::pooled_evaluation(store, base, &done)
        .map_err(anyhow::Error::msg)?
    {
        let mut files = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            if path.is_file() {
                files.push((path.clone(), file_name(&path)));
            }
        }
        files.sort();
        out.push(Aggregate {
            name: "pooled-evaluation".into(),
            description: "The evaluation of every point's test rows pooled (each fold's ARs, \
                          each seed), with skill scores and their intervals."
                .into(),
            files,
            reads: reads(Evaluate::NAME, &["events"]),
        });
    }
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
