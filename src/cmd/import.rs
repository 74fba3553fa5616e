//! `magpipe import crate DIR`: an exported RO-Crate's records and outputs into this store, so
//! `magpipe audit` re-executes its chain and compares byte for byte (the referee's workflow).

use std::path::PathBuf;
use std::process::ExitCode;

use magpipe_engine::rocrate;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// A crate written by `magpipe export crate`: verified first (as `verify --crate`), then
    /// each record with its key checked against its pre-image, each output re-hashed into the
    /// store before the record that names it.
    Crate {
        /// The crate: its folder, or its zip.
        #[arg(value_parser = super::cli_path)]
        dir: PathBuf,
    },
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let What::Crate { dir } = &a.what;
    let done = rocrate::import(dir, &ctx.store)?;
    for s in &done.skipped {
        println!("not imported: {s}");
    }
    println!(
        "imported {} records and {} outputs from {} into {}",
        done.records,
        done.objects,
        dir.display(),
        ctx.store.root.display()
    );
    Ok(ExitCode::SUCCESS)
}
