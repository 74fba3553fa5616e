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
        Ok(text) if text.trim().is_empty() => Ok(ProjectConfig::default()),
        Ok(text) => serde_yaml::from_str(&text)
            .map_err(|e| RemoteError::Config(format!("{}: {e}", path.display()))),
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
