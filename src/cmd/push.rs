//! `magpipe push [STAGE…]`: upload the named stages' current results, with their whole upstream
//! chain, to a remote: objects first, then the signed records.

use std::process::ExitCode;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use magpipe_engine::exec::{self, Freshness};
use magpipe_engine::remote::Remote;
use magpipe_engine::store::Record;

use super::{Ctx, Select};

#[derive(clap::Args)]
pub struct Args {
    /// Stages to push, with everything upstream of them (default: every stage of a plain run).
    targets: Vec<String>,
    #[command(flatten)]
    select: Select,
    /// Every complete record in the store, whatever the plan.
    #[arg(long, conflicts_with_all = ["targets", "variant", "sets"])]
    all: bool,
    /// The remote (default: $MAGPIPE_REMOTE, else the project's default remote).
    #[arg(long)]
    remote: Option<String>,
    /// Push without a signing key, even to a remote that lists trusted_keys (whose pulls will
    /// not take the records).
    #[arg(long)]
    unsigned: bool,
}

/// A bar over bytes on stderr, hidden with `-q` or `--log-format json`.
pub fn bytes_bar(ctx: &Ctx, total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if ctx.global.quiet || !matches!(ctx.global.log_format, super::LogFormat::Human) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})")
            .expect("template"),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// What a push of a plan publishes: its fresh records, the refs (variant, stage → key) that
/// keep them on the remote, and the names of its stale stages.
struct Planned {
    records: Vec<Record>,
    variant: String,
    refs: Vec<(String, String)>,
    stale: Vec<String>,
}

/// The records to push: the plan's fresh ones for the targets, and the names of stale stages.
fn plan_records(ctx: &Ctx, a: &Args) -> anyhow::Result<Planned> {
    let plan = ctx.plan(Some(&a.select))?;
    let selected = plan
        .select(&a.targets)
        .map_err(magpipe_engine::error::RunError::Usage)?;
    let mut out = Planned {
        records: Vec::new(),
        variant: plan
            .variant
            .clone()
            .unwrap_or_else(|| magpipe_engine::compare::DEFAULT.to_string()),
        refs: Vec::new(),
        stale: Vec::new(),
    };
    for (i, f) in exec::status(&plan, &ctx.store, &selected)? {
        match f {
            Freshness::Fresh(r) => {
                out.refs.push((plan.stages[i].name.clone(), r.key.clone()));
                out.records.push(*r);
            }
            Freshness::Stale { .. } => out.stale.push(plan.stages[i].name.clone()),
        }
    }
    Ok(out)
}

/// Every complete record of the store.
fn all_records(ctx: &Ctx) -> anyhow::Result<Vec<Record>> {
    let dir = ctx.store.root.join("records");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => bail!("{}: {e}", dir.display()),
    };
    let mut keys: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
        })
        .collect();
    keys.sort();
    for k in keys {
        if let Some(r) = ctx.store.complete_record(&k)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The remote a command names (or the default), as configured, not yet contacted: an unknown
/// name (from --remote or MAGPIPE_REMOTE), a bad URL or missing credentials are errors here.
pub fn configured_remote(ctx: &Ctx, name: Option<&str>) -> anyhow::Result<Remote> {
    let Some(remote) = Remote::open(&ctx.project_dir(), name)? else {
        bail!(
            "no remote: name one with --remote or MAGPIPE_REMOTE, or make one the default (`magpipe remote add NAME URL --default`)"
        );
    };
    Ok(remote)
}

/// The remote a command names (or the default), checked: for writing when `write` is set (an
/// S3 server must honour create-only writes), else for reading only.
pub fn open_remote(ctx: &Ctx, name: Option<&str>, write: bool) -> anyhow::Result<Remote> {
    let remote = configured_remote(ctx, name)?;
    if write {
        remote.check_writes()?;
    } else {
        remote.check()?;
    }
    Ok(remote)
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let remote = open_remote(ctx, a.remote.as_deref(), true)?;
    if let Some(w) = remote.check_signing(a.unsigned)? {
        eprintln!("warning: {w}");
    }
    let planned = if a.all {
        Planned {
            records: all_records(ctx)?,
            variant: String::new(),
            refs: Vec::new(),
            stale: Vec::new(),
        }
    } else {
        plan_records(ctx, a)?
    };
    let (records, stale) = (&planned.records, &planned.stale);
    if records.is_empty() {
        bail!(
            "nothing to push: no stage{} has a result yet; run it first",
            if a.targets.is_empty() {
                String::new()
            } else {
                format!(" of {}", a.targets.join(", "))
            }
        );
    }
    let total: u64 = records
        .iter()
        .flat_map(|r| r.outputs.values())
        .map(|o| o.size)
        .sum();
    let bar = bytes_bar(ctx, total, "push");
    let report = remote.push(&ctx.store, records, &|n| bar.inc(n))?;
    remote.push_refs(&planned.variant, &planned.refs)?;
    bar.finish_and_clear();
    let name = |k: &str| k.split(':').next().unwrap_or(k).to_string();
    let relayed: usize = report.relayed.values().sum();
    // Only this user's own results carry this user's signature; pulled ones keep their signers'.
    let own = records.len() - relayed - report.left_out;
    let mut signed = match (&report.signer, own) {
        (_, 0) => String::new(),
        (Some(k), _) => format!(", signed by {}", name(k)),
        (None, _) => ", unsigned".to_string(),
    };
    if relayed > 0 {
        let who: Vec<String> = report
            .relayed
            .iter()
            .map(|(k, n)| format!("{} ×{n}", name(k)))
            .collect();
        signed.push_str(&format!(
            "; {relayed} pulled record(s) relayed with their signers' own signatures ({})",
            who.join(", ")
        ));
    }
    if report.left_out > 0 {
        println!(
            "left out {} pulled record(s) whose signature no longer covers them (not re-signed as yours)",
            report.left_out
        );
    }
    println!(
        "pushed {} record(s) and {} object(s) ({:.1} MB) to {}{signed}; {} record(s) and {} object(s) were there already",
        report.records,
        report.objects,
        report.bytes as f64 / 1e6,
        remote.describe(),
        report.records_existing,
        report.objects_existing
    );
    if !stale.is_empty() {
        println!(
            "not pushed, not up to date: {} (run them first)",
            stale.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
