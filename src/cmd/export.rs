//! `magpipe export crate [STAGE]`: the provenance of a stage's results as a Workflow Run RO-Crate
//! (Provenance Run Crate 0.5), with the outputs copied in, for a journal, an archive or a referee.

use std::path::PathBuf;
use std::process::ExitCode;

use magpipe_engine::provenance;
use magpipe_engine::remote::config;
use magpipe_engine::rocrate::{self, Contents, CrateMeta, Organization, Person};

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
    #[arg(short = 'o', long = "out", default_value = "crate")]
    out: PathBuf,
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
    let plan = ctx.plan(Some(&a.select))?;
    let l =
        provenance::lineage(&plan, &ctx.store, &a.stage, None).map_err(|e| a.select.in_hint(e))?;
    let contents = Contents {
        include_data: a.include_data,
        no_models: a.no_models,
    };
    let w = rocrate::export(&l, &ctx.store, &ctx.global.file, &meta, contents, &a.out)?;
    println!(
        "wrote {} ({} stage runs, {} files, {:.1} MB), identifier magpipe-lineage:{}",
        a.out.display(),
        l.stages.len(),
        w.files,
        w.bytes as f64 / 1e6,
        w.identifier
    );
    Ok(ExitCode::SUCCESS)
}
