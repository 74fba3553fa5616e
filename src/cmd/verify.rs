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
    /// Check an exported RO-Crate (its folder or its zip) instead, without a store: every file
    /// it lists re-hashed (size, sha256, blake3), and every stage run's inputs traced to a raw
    /// file or an earlier run's result.
    #[arg(long = "crate", value_name = "DIR|ZIP", conflicts_with = "remote", value_parser = super::cli_path)]
    krate: Option<std::path::PathBuf>,
}

fn verify_remote(ctx: &Ctx, name: &str) -> anyhow::Result<ExitCode> {
    let remote = super::push::open_remote(ctx, Some(name).filter(|n| !n.is_empty()), false)?;
    let scratch = ctx.store.staging()?;
    let rep = remote.verify(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let rep = rep?;
    // Not damage, so no failure: but a pull never takes them, and they should not pass unseen.
    for u in &rep.untrusted {
        println!("untrusted: {u}");
    }
    let untrusted = match rep.untrusted.len() {
        0 => String::new(),
        n => format!(
            " ({n} signed by nobody in trusted_keys: pulls skip them, `magpipe gc --remote {} --untrusted` drops them)",
            remote.name
        ),
    };
    let what = format!("{}: {} records{untrusted}", remote.describe(), rep.records);
    print_report(&what, &rep.problems, rep.objects, "objects", rep.bytes)
}

/// Each problem, then `verified WHAT, N objects (MB): ok` (or the count of problems); exit 1 on
/// any.
fn print_report(
    what: &str,
    problems: &[String],
    count: usize,
    unit: &str,
    bytes: u64,
) -> anyhow::Result<ExitCode> {
    for p in problems {
        println!("{p}");
    }
    println!(
        "verified {what}, {count} {unit} ({:.1} MB): {}",
        bytes as f64 / 1e6,
        match problems.len() {
            0 => "ok".to_string(),
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        }
    );
    Ok(status_code(problems.is_empty()))
}

fn verify_crate(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let rep = magpipe_engine::rocrate::verify(dir)?;
    let what = format!("crate {}: {} stage runs", dir.display(), rep.actions);
    print_report(&what, &rep.problems, rep.files, "files", rep.bytes)
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    if let Some(name) = &a.remote {
        return verify_remote(ctx, name);
    }
    if let Some(dir) = &a.krate {
        return verify_crate(dir);
    }
    let records = if a.stages.is_empty() {
        provenance::all_records(&ctx.store)?
    } else {
        let plan = ctx.plan(Some(&a.select))?;
        provenance::chain_records(&plan, &ctx.store, &a.stages)?
    };
    let rep = provenance::verify(&ctx.store, &records)?;
    print_report(
        &format!("{} records", rep.records),
        &rep.problems,
        rep.objects,
        "objects",
        rep.bytes,
    )
}
