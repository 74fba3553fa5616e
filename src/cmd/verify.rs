//! `magpipe verify [STAGE…]`: re-hash stored objects and check every record's chain.

use std::process::ExitCode;

use magpipe_engine::provenance;

use super::{Ctx, Select, status_code};

#[derive(clap::Args)]
pub struct Args {
    /// Only the chains of these stages (default: every record in the store).
    stages: Vec<String>,
    #[command(flatten)]
    select: Select,
    /// Check a remote instead of the store: every record and every object it names,
    /// downloaded and re-hashed (`--remote` alone: the default remote).
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "NAME")]
    remote: Option<String>,
}

fn verify_remote(ctx: &Ctx, name: &str) -> anyhow::Result<ExitCode> {
    let remote = super::push::open_remote(ctx, Some(name).filter(|n| !n.is_empty()), false)?;
    let scratch = ctx.store.staging()?;
    let rep = remote.verify(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let rep = rep?;
    for p in &rep.problems {
        println!("{p}");
    }
    println!(
        "verified {}: {} records, {} objects ({:.1} MB): {}",
        remote.describe(),
        rep.records,
        rep.objects,
        rep.bytes as f64 / 1e6,
        match rep.problems.len() {
            0 => "ok".to_string(),
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        }
    );
    Ok(status_code(rep.problems.is_empty()))
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    if let Some(name) = &a.remote {
        return verify_remote(ctx, name);
    }
    let records = if a.stages.is_empty() {
        provenance::all_records(&ctx.store)?
    } else {
        let plan = ctx.plan(Some(&a.select))?;
        provenance::chain_records(&plan, &ctx.store, &a.stages)?
    };
    let rep = provenance::verify(&ctx.store, &records)?;
    for p in &rep.problems {
        println!("{p}");
    }
    println!(
        "verified {} records, {} objects ({:.1} MB): {}",
        rep.records,
        rep.objects,
        rep.bytes as f64 / 1e6,
        match rep.problems.len() {
            0 => "ok".to_string(),
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        }
    );
    Ok(status_code(rep.problems.is_empty()))
}
