//! Where a project's remotes are declared: `.magpipe/config.yaml` beside the pipeline file, which
//! is committed (no secrets: credentials come from the environment), and
//! `.magpipe/config.local.yaml`, which is not (a path on this machine, a private remote). Its
//! `export:` section says who publishes crates (`magpipe export crate`) and under which licence.
//!
//! ```yaml
//! default_remote: lab
//! remotes:
//!   lab:
//!     url: /shared/lab/magpipe-cache
//!     trusted_keys: ["ci@lab:Base64…"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RemoteError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    pub url: String,
    /// An S3-compatible server's address (`http://127.0.0.1:8333`); AWS itself needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The bucket's region (else `$AWS_REGION`, else us-east-1 with an endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Public keys (`name:base64`) whose records a pull accepts; empty: anyone's, said once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
    /// Where an S3 remote's credentials come from beyond the environment and `~/.aws`: nothing
    /// else unless this says so, so magpipe never calls a metadata service nobody configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

/// An S3 remote's other source of credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Credentials {
    /// The EC2 instance metadata service (169.254.169.254), for a remote used from AWS machines.
    Imds,
    /// No credentials: unsigned requests, for a public bucket (read-only).
    Anonymous,
}

impl Credentials {
    pub fn name(self) -> &'static str {
        match self {
            Credentials::Imds => "imds",
            Credentials::Anonymous => "anonymous",
        }
    }
}

impl std::str::FromStr for Credentials {
    type Err = String;
    fn from_str(s: &str) -> Result<Credentials, String> {
        match s {
            "imds" => Ok(Credentials::Imds),
            "anonymous" => Ok(Credentials::Anonymous),
            _ => Err(format!("`{s}`: credentials are `imds` or `anonymous`")),
        }
    }
}

impl RemoteConfig {
    /// The remote's URL, endpoint, region and credentials make sense together: a one-line
    /// reason naming what is wrong otherwise (checked by `remote add` and before every use, so a
    /// hand-edited file is held to the same rules).
    pub fn validate(&self) -> Result<(), String> {
        let url = self.url.as_str();
        if url.trim().is_empty() {
            return Err("an empty URL (a folder path, file://PATH or s3://BUCKET/PREFIX)".into());
        }
        if url.chars().any(char::is_control) {
            return Err(format!("{url:?}: a control character in the URL"));
        }
        let s3 = url.starts_with("s3://");
        if s3 {
            let rest = &url["s3://".len()..];
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket).map_err(|e| format!("{url}: {e}"))?;
            if prefix.split('/').any(|seg| seg == "." || seg == "..") {
                return Err(format!("{url}: `.` and `..` cannot be parts of the prefix"));
            }
        } else if let Some((scheme, _)) = url.split_once("://")
            && scheme != "file"
        {
            return Err(format!(
                "{url}: unknown scheme `{scheme}://` (a folder path, file://PATH or s3://BUCKET/PREFIX)"
            ));
        }
        if !s3 {
            for (what, set) in [
                ("--endpoint", self.endpoint.is_some()),
                ("--region", self.region.is_some()),
                ("--credentials", self.credentials.is_some()),
            ] {
                if set {
                    return Err(format!("{url}: {what} is for s3:// remotes only"));
                }
            }
        }
        if let Some(e) = &self.endpoint {
            check_endpoint(e)?;
            if self.credentials == Some(Credentials::Imds) {
                return Err(format!(
                    "endpoint {e}: the instance metadata service gives credentials for AWS itself, never for another server; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for it"
                ));
            }
        }
        if let Some(r) = &self.region
            && (r.is_empty()
                || !r
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        {
            return Err(format!(
                "region `{r}`: lowercase letters, digits and `-` (like eu-west-1)"
            ));
        }
        Ok(())
    }
}

/// S3's bucket naming rules: 3–63 lowercase letters, digits, `.` and `-`, starting and ending
/// with a letter or digit.
fn check_bucket(b: &str) -> Result<(), String> {
    if b.is_empty() {
        return Err("no bucket (s3://BUCKET/PREFIX)".into());
    }
    let ok_chars = b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&b.len())
        || !ok_chars
        || !ends(b.chars().next())
        || !ends(b.chars().last())
    {
        return Err(format!(
            "`{b}` is not a bucket name (3–63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// An endpoint is `http://HOST[:PORT]` or `https://HOST[:PORT]`, optionally with a final `/`.
fn check_endpoint(e: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("endpoint `{e}`: {why}"));
    let Some(rest) = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
    else {
        return if e.contains("://") {
            bad("the scheme must be http:// or https://")
        } else {
            bad(&format!("no scheme; write http://{e} (or https://)"))
        };
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) || authority.chars().any(char::is_whitespace) {
        return bad("only a scheme, a host and a port (http://HOST:PORT)");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest)) if !h.is_empty() => (h, rest.strip_prefix(':')),
            _ => return bad("an IPv6 host is written [ADDRESS]"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    {
        return bad("no host, or a host with characters a host name cannot have");
    }
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return bad(&format!("port `{p}` is not a number from 1 to 65535"));
    }
    let parsed = url::Url::parse(e).map_err(|why| format!("endpoint `{e}`: {why}"))?;
    if parsed.host_str().is_none_or(str::is_empty) || parsed.as_str().parse::<http::Uri>().is_err()
    {
        return bad("not an address an HTTP client can reach");
    }
    Ok(())
}

/// A config file's text (`path` for messages).
pub fn parse(path: &Path, text: &str) -> Result<ProjectConfig, RemoteError> {
    if text.trim().is_empty() {
        return Ok(ProjectConfig::default());
    }
    serde_yaml::from_str(text).map_err(|e| {
        RemoteError::Config(format!(
            "{}: {}",
            path.display(),
            e.to_string().replace('\n', " ")
        ))
    })
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_remote: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remotes: BTreeMap<String, RemoteConfig>,
    /// Licence, authors and publisher of exported crates (`magpipe export crate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<CrateMeta>,
}

/// Who publishes the crate and under which licence: the `export:` section of
/// `.magpipe/config.yaml`, or flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrateMeta {
    /// An SPDX licence id (`CC-BY-4.0`) or a licence's URL; a crate without one is refused, as
    /// the RO-Crate profiles require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<Person>,
    /// The organisation that publishes the results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<Organization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the project lives (its repository), for the workflow and its tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub name: String,
    /// An ORCID or other URL that identifies the person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    pub name: String,
    pub url: String,
}

/// The committed file and the local one, for a project whose pipeline file lies in `dir`.
pub fn files(dir: &Path) -> (PathBuf, PathBuf) {
    let d = dir.join(".magpipe");
    (d.join("config.yaml"), d.join("config.local.yaml"))
}

fn read(path: &Path) -> Result<ProjectConfig, RemoteError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProjectConfig::default()),
        Err(e) => Err(RemoteError::Config(format!("{}: {e}", path.display()))),
    }
}

/// One file, for `remote add/remove` to edit.
pub fn read_one(path: &Path) -> Result<ProjectConfig, RemoteError> {
    read(path)
}

pub fn write_one(path: &Path, c: &ProjectConfig) -> Result<(), RemoteError> {
    let dir = path.parent().expect("a config file lies in .magpipe/");
    std::fs::create_dir_all(dir)
        .map_err(|e| RemoteError::Config(format!("{}: {e}", dir.display())))?;
    let text = format!(
        "# magpipe's remotes (`magpipe remote add/remove`); credentials never go here.\n{}",
        serde_yaml::to_string(c).expect("serialises")
    );
    crate::fsutil::write_atomic(dir, path, text.as_bytes())
        .map_err(|e| RemoteError::Config(e.to_string()))
}

/// The project's configuration: the committed file, then the local one over it (a remote of the
/// same name is replaced whole).
pub fn load(dir: &Path) -> Result<ProjectConfig, RemoteError> {
    let (shared, local) = files(dir);
    let mut c = read(&shared)?;
    let l = read(&local)?;
    c.remotes.extend(l.remotes);
    if l.export.is_some() {
        c.export = l.export;
    }
    if l.default_remote.is_some() {
        c.default_remote = l.default_remote;
    }
    if let Some(d) = &c.default_remote
        && !c.remotes.contains_key(d)
    {
        return Err(RemoteError::Config(format!(
            "{}: default_remote `{d}` is not among the remotes ({})",
            shared.display(),
            names(&c)
        )));
    }
    Ok(c)
}

pub fn names(c: &ProjectConfig) -> String {
    if c.remotes.is_empty() {
        "none; `magpipe remote add NAME URL` adds one".into()
    } else {
        c.remotes.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}
