//! `magpipe status`: fresh or stale per stage, with `--explain` every reason, with
//! `--format json` the typed reasons.

use std::process::ExitCode;

use clap::ValueEnum;
use magpipe_engine::error::RunError;
use magpipe_engine::exec::{self, Freshness};
use magpipe_engine::key::short;
use magpipe_engine::remote::{Holding, Miss, Remote};

use super::{Ctx, Select};

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum StatusFormat {
    Text,
    /// One object per stage: state, key, summary or typed reasons.
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// Only these stages and what they need (default: every stage).
    targets: Vec<String>,
    #[command(flatten)]
    select: Select,
    /// Say why each stale stage is stale, and every record the remote holds for it: whose, and
    /// whether a pull would take it.
    #[arg(long)]
    explain: bool,
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    format: StatusFormat,
    /// Look stale stages up on this remote (default: $MAGPIPE_REMOTE, else the project's
    /// default remote, if any).
    #[arg(long)]
    remote: Option<String>,
}

/// One stage as `status --format json` writes it.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StatusRow {
    /// Its record is current: the store has what a run would compute.
    Fresh {
        stage: String,
        key: String,
        summary: String,
    },
    /// A run would compute it.
    Stale {
        stage: String,
        /// Its key, when its inputs are known (every upstream stage fresh).
        key: Option<String>,
        /// Why, most telling first (`status --explain` prints them all).
        reasons: Vec<serde_json::Value>,
        /// The remote that has a record `magpipe pull` would take.
        on_remote: Option<String>,
        /// The key that signed that record.
        on_remote_signer: Option<String>,
        /// A record the remote has that a pull would refuse, and why.
        refused_on_remote: Option<Refused>,
    },
}

/// A remote's record that a pull would refuse.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Refused {
    remote: String,
    why: String,
}

/// What the remote holds for a stale stage.
enum OnRemote {
    /// Nothing (or the stage's key is not known yet).
    No,
    /// A record `magpipe pull` would take, and who signed it.
    Takable(Option<String>),
    /// A record a pull would refuse, and why (an untrusted signer, a bad signature).
    Refused(String),
}

/// The remote's name, and per row what it holds (with --explain, every record, judged).
type RemoteView = (String, Vec<(OnRemote, Vec<Holding>)>);

/// Per stale stage whose key is known: what the remote holds for it, judged as a pull would
/// judge the record (only one it would take is "on the remote"). `None` without a remote; a
/// remote that cannot be read is said on stderr and treated as none.
fn on_remote(
    ctx: &Ctx,
    a: &Args,
    rows: &[(usize, Freshness)],
) -> anyhow::Result<Option<RemoteView>> {
    // A remote named here or in MAGPIPE_REMOTE that is unknown or misconfigured is an error, as
    // in every command; the default remote's trouble only leaves the column out, with a note.
    let named =
        a.remote.is_some() || std::env::var_os("MAGPIPE_REMOTE").is_some_and(|v| !v.is_empty());
    let remote = match Remote::open(&ctx.project_dir(), a.remote.as_deref()) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(e) if named => return Err(e.into()),
        Err(e) => {
            eprintln!("note: {e}");
            return Ok(None);
        }
    };
    let mut has = Vec::with_capacity(rows.len());
    for (_, f) in rows {
        let Freshness::Stale { key: Some(k), .. } = f else {
            has.push((OnRemote::No, Vec::new()));
            continue;
        };
        // With --explain every record is listed, and the one a pull takes is found among them.
        let judged = if a.explain {
            remote.judged(k)
        } else {
            remote.takable(k).map(|t| (t, Vec::new()))
        };
        let (taken, held) = match judged {
            Ok(j) => j,
            Err(e) => {
                eprintln!("note: {e}; not looking further");
                return Ok(None);
            }
        };
        let found = match taken {
            Ok(signer) => OnRemote::Takable(signer),
            Err(Miss::Absent) => OnRemote::No,
            Err(why) => OnRemote::Refused(why.to_string()),
        };
        has.push((found, held));
    }
    Ok(Some((remote.name.clone(), has)))
}

/// With --explain, one line per record the remote holds for row `n`: whose, and what a pull
/// does with it.
fn listed(remote: &Option<RemoteView>, n: usize) -> Vec<String> {
    let Some((name, has)) = remote else {
        return Vec::new();
    };
    let (found, held) = &has[n];
    let taken = match found {
        OnRemote::Takable(signer) => Some(signer),
        _ => None,
    };
    held.iter()
        .map(|h| {
            let what = match &h.verdict {
                Ok(()) if taken == Some(&h.signer) => "`magpipe pull` takes it".to_string(),
                Ok(()) => "takable too, ranked after the one pull takes".to_string(),
                Err(m) => format!("a pull refuses it: {m}"),
            };
            format!("on remote `{name}`: {} ({what})", h.who())
        })
        .collect()
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let plan = ctx.plan(Some(&a.select))?;
    let selected = plan.select(&a.targets).map_err(RunError::Usage)?;
    let rows = exec::status(&plan, &ctx.store, &selected)?;
    let remote = on_remote(ctx, a, &rows)?;
    let there = |n: usize| -> Option<(&str, Option<&str>)> {
        remote.as_ref().and_then(|(name, has)| match &has[n] {
            (OnRemote::Takable(signer), _) => Some((name.as_str(), signer.as_deref())),
            _ => None,
        })
    };
    let refused = |n: usize| -> Option<(&str, &str)> {
        remote.as_ref().and_then(|(name, has)| match &has[n] {
            (OnRemote::Refused(why), _) => Some((name.as_str(), why.as_str())),
            _ => None,
        })
    };
    if a.format == StatusFormat::Json {
        let v: Vec<StatusRow> = rows
            .iter()
            .enumerate()
            .map(|(n, (i, f))| match f {
                Freshness::Fresh(r) => StatusRow::Fresh {
                    stage: plan.stages[*i].name.clone(),
                    key: r.key.clone(),
                    summary: r.summary.clone(),
                },
                Freshness::Stale { key, why } => StatusRow::Stale {
                    stage: plan.stages[*i].name.clone(),
                    key: key.clone(),
                    reasons: why.iter().map(magpipe_engine::stale::to_json).collect(),
                    on_remote: there(n).map(|(r, _)| r.to_string()),
                    on_remote_signer: there(n).and_then(|(_, k)| k).map(str::to_string),
                    refused_on_remote: refused(n).map(|(r, why)| Refused {
                        remote: r.to_string(),
                        why: why.to_string(),
                    }),
                },
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(5);
    for (n, (i, f)) in rows.iter().enumerate() {
        let s = &plan.stages[*i];
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
                let pull = match (there(n), refused(n)) {
                    (Some((r, signer)), _) => format!(
                        "; on remote `{r}` (`magpipe pull` takes {})",
                        signer.map_or("it, unsigned".to_string(), |k| format!(
                            "{}'s record",
                            k.rsplit_once(':').map_or(k, |(n, _)| n)
                        ))
                    ),
                    (None, Some((r, why))) => {
                        format!("; remote `{r}` has a record pull would refuse: {why}")
                    }
                    _ => String::new(),
                };
                println!(
                    "{:<width$}  stale  {k}  {}{pull}",
                    s.name,
                    why.first().map(ToString::to_string).unwrap_or_default()
                );
                if a.explain {
                    for w in why.iter().skip(1) {
                        println!("{:<width$}         {:12}  {w}", "", "");
                    }
                    for line in listed(&remote, n) {
                        println!("{:<width$}         {:12}  {line}", "", "");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
