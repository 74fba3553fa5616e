//! `magpipe gc`: remove records and objects nothing reaches.

use std::process::ExitCode;

use magpipe_engine::provenance;
use magpipe_engine::time::duration_text;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10)]
    keep_runs: usize,
    /// Keep records and objects younger than this (`0`, `90s`, `15m`, `1h`, `2d`), whatever
    /// reaches them: a safety margin for a process that holds no lease (see the store page).
    #[arg(long, default_value = "1h", value_parser = magpipe_engine::time::parse_duration)]
    grace: std::time::Duration,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Collect a remote instead of the store (`--remote` alone: the default remote): remove
    /// what no pushed ref of any variant reaches and is older than --grace.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "NAME")]
    remote: Option<String>,
    /// With --remote: also remove records that no key of the remote's trusted_keys signed,
    /// whatever reaches them and however young (a pull never takes them).
    #[arg(long, requires = "remote")]
    untrusted: bool,
}

fn gc_remote(ctx: &Ctx, a: &Args, name: &str) -> anyhow::Result<ExitCode> {
    let remote = super::push::open_remote(ctx, Some(name).filter(|n| !n.is_empty()), false)?;
    let rep = remote.gc(a.grace, a.dry_run, a.untrusted)?;
    println!(
        "{} {} records{}, {} objects and {} unfinished uploads on {}; kept {} records reached by a pushed ref{}",
        if a.dry_run { "would remove" } else { "removed" },
        rep.removed_records,
        if a.untrusted {
            format!(" ({} signed by nobody trusted)", rep.removed_untrusted)
        } else {
            String::new()
        },
        rep.removed_objects,
        rep.removed_unfinished,
        remote.describe(),
        rep.kept_records,
        if rep.kept_young > 0 {
            format!(
                ", and {} younger than --grace {}",
                rep.kept_young,
                duration_text(a.grace)
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    if let Some(name) = &a.remote {
        return gc_remote(ctx, a, name);
    }
    let rep = provenance::gc(&ctx.store, a.keep_runs, a.grace, a.dry_run)?;
    let mut kept = format!("kept {} records", rep.kept_records);
    if rep.live_leases > 0 {
        kept.push_str(&format!(
            ", with what {} running magpipe process{} use{}",
            rep.live_leases,
            if rep.live_leases == 1 { "" } else { "es" },
            if rep.live_leases == 1 { "s" } else { "" }
        ));
    }
    if rep.kept_young > 0 {
        kept.push_str(&format!(
            "; {} younger than --grace {}",
            rep.kept_young,
            duration_text(a.grace)
        ));
    }
    println!(
        "{} {} records and {} objects ({:.1} MB); {kept}",
        if a.dry_run { "would remove" } else { "removed" },
        rep.removed_records,
        rep.removed_objects,
        rep.freed_bytes as f64 / 1e6,
    );
    if rep.stale_leases > 0 {
        eprintln!(
            "{} {} lease{} left by magpipe processes that died",
            if a.dry_run { "would remove" } else { "removed" },
            rep.stale_leases,
            if rep.stale_leases == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
