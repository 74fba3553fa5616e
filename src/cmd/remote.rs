//! `magpipe remote add|list|remove|trust|default`: the project's remotes, kept in
//! `.magpipe/config.yaml` (committed) or, with `--local`, `.magpipe/config.local.yaml` (not).

use std::process::ExitCode;

use anyhow::bail;
use magpipe_engine::remote::config::{self, RemoteConfig};
use magpipe_engine::remote::sign;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Add a remote: a folder (a path, relative to the project, or file://PATH) or an S3
    /// bucket (s3://BUCKET/PREFIX; credentials from AWS_* or ~/.aws/credentials, never here).
    Add {
        name: String,
        url: String,
        /// An S3-compatible server's address (for example http://127.0.0.1:8333).
        #[arg(long)]
        endpoint: Option<String>,
        /// The S3 bucket's region.
        #[arg(long)]
        region: Option<String>,
        /// Another source of S3 credentials than the environment and ~/.aws: `imds` (an AWS
        /// machine's instance role; never with --endpoint) or `anonymous` (a public bucket).
        #[arg(long)]
        credentials: Option<config::Credentials>,
        /// Make it the remote `push`, `pull` and `run --pull` use when none is named.
        #[arg(long)]
        default: bool,
        /// Into the git-ignored `.magpipe/config.local.yaml` instead of the committed file.
        #[arg(long)]
        local: bool,
    },
    /// List the remotes (`*` marks the default).
    List,
    /// Remove a remote.
    Remove {
        name: String,
        #[arg(long)]
        local: bool,
    },
    /// Accept records signed by this public key (`name:base64`, as `magpipe key show` prints)
    /// from the remote; once a remote has one, unsigned and other records are refused.
    Trust { name: String, key: String },
    /// Print the default remote's name; exit 1 when there is none.
    Default,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let dir = ctx.project_dir();
    let (shared, local) = config::files(&dir);
    match &a.cmd {
        Sub::Add {
            name,
            url,
            endpoint,
            region,
            credentials,
            default,
            local: to_local,
        } => {
            if !is_name(name) {
                bail!("remote names use letters, digits, `_` and `-` only (got `{name}`)");
            }
            let file = if *to_local { &local } else { &shared };
            let mut c = config::read_one(file)?;
            if config::load(&dir)?.remotes.contains_key(name) {
                bail!("remote `{name}` exists already; `magpipe remote remove {name}` first");
            }
            let rc = RemoteConfig {
                url: url.clone(),
                endpoint: endpoint.clone(),
                region: region.clone(),
                trusted_keys: Vec::new(),
                credentials: *credentials,
            };
            rc.validate()
                .map_err(|e| anyhow::anyhow!("remote `{name}`: {e}"))?;
            c.remotes.insert(name.clone(), rc);
            if *default {
                c.default_remote = Some(name.clone());
            }
            config::write_one(file, &c)?;
            println!("remote {name} → {url} (in {})", file.display());
        }
        Sub::List => {
            let c = config::load(&dir)?;
            if c.remotes.is_empty() {
                println!("no remotes; `magpipe remote add NAME URL --default` adds one");
            }
            for (name, r) in &c.remotes {
                let mark = if c.default_remote.as_deref() == Some(name) {
                    "*"
                } else {
                    " "
                };
                let trust = match r.trusted_keys.len() {
                    0 => "trusts anyone".to_string(),
                    n => format!("trusts {n} key(s)"),
                };
                let mut at = r.url.clone();
                if let Some(e) = &r.endpoint {
                    at.push_str(&format!(" (endpoint {e})"));
                }
                if let Some(g) = &r.region {
                    at.push_str(&format!(" (region {g})"));
                }
                if let Some(c) = r.credentials {
                    at.push_str(&format!(" (credentials {})", c.name()));
                }
                println!("{mark} {name}\t{at}\t{trust}");
            }
        }
        Sub::Remove {
            name,
            local: from_local,
        } => {
            let file = if *from_local { &local } else { &shared };
            let mut c = config::read_one(file)?;
            if c.remotes.remove(name).is_none() {
                bail!("no remote `{name}` in {}", file.display());
            }
            if c.default_remote.as_deref() == Some(name) {
                c.default_remote = None;
            }
            config::write_one(file, &c)?;
            println!("removed remote {name}");
        }
        Sub::Trust { name, key } => {
            sign::check_public(key).map_err(anyhow::Error::msg)?;
            let file = [&local, &shared]
                .into_iter()
                .find(|f| {
                    config::read_one(f)
                        .map(|c| c.remotes.contains_key(name))
                        .unwrap_or(false)
                })
                .ok_or_else(|| anyhow::anyhow!("no remote `{name}`"))?;
            let mut c = config::read_one(file)?;
            let r = c.remotes.get_mut(name).expect("found above");
            if !r.trusted_keys.contains(key) {
                r.trusted_keys.push(key.clone());
            }
            config::write_one(file, &c)?;
            println!(
                "remote {name} now accepts records signed by {}",
                key.split(':').next().unwrap_or(key)
            );
        }
        Sub::Default => {
            let c = config::load(&dir)?;
            match c.default_remote {
                Some(d) => println!("{d}"),
                None => return Ok(ExitCode::from(1)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
