//! A Python environment by its content: the distributions installed beside an interpreter, read
//! from their `*.dist-info` folders without starting Python (name and version from `METADATA`,
//! the installed files from `RECORD`), remembered by the stat of each `RECORD` as raw files are.
//! What enters a key is where nothing depends on the environment's location: a `RECORD`'s lines
//! for files outside `site-packages` (entry-point scripts, whose first line names the venv's
//! path), byte-code caches (they embed times) and install metadata (`INSTALLER`,
//! `direct_url.json`) are left out of its hash.
//!
//! A lock file declared beside the interpreter (`env: {lock: …}`) is checked against what is
//! installed: a pin the environment does not satisfy is an error naming the package.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One installed distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dist {
    /// As written in `METADATA` (`scikit-learn`).
    pub name: String,
    pub version: String,
    /// blake3 of its `RECORD`'s location-independent lines.
    pub record: String,
}

/// The `site-packages` folders of the environment an interpreter at `program` belongs to: for
/// `<prefix>/bin/python…`, `<prefix>/lib*/python*/{site,dist}-packages`. Taken from the path as
/// written (a venv's `bin/python` links to the base interpreter; the venv is the environment).
pub fn site_packages(program: &Path) -> Vec<PathBuf> {
    let Some(bin) = program.parent() else {
        return Vec::new();
    };
    if bin.file_name().is_none_or(|n| n != "bin") {
        return Vec::new();
    }
    let Some(prefix) = bin.parent() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python"))
            })
            .collect();
        pythons.sort();
        for p in pythons {
            for sp in ["site-packages", "dist-packages"] {
                let d = p.join(sp);
                // lib64 is often a link to lib: the same folder once.
                let real = std::fs::canonicalize(&d).unwrap_or(d.clone());
                if d.is_dir() && !out.contains(&real) {
                    out.push(real);
                }
            }
        }
    }
    out
}

/// What was last read of one `RECORD`, by its stat.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct Cached {
    size: u64,
    mtime_ns: i128,
    ino: u64,
    dist: Dist,
}

/// Every distribution installed beside `program`, by normalized name (PEP 503).
pub fn installed(program: &Path, cache_dir: &Path) -> BTreeMap<String, Dist> {
    let dirs = site_packages(program);
    let mut out = BTreeMap::new();
    if dirs.is_empty() {
        return out;
    }
    let file = cache_dir.join("command-dists.json");
    let mut cache: BTreeMap<String, Cached> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut changed = false;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut infos: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "dist-info"))
            .collect();
        infos.sort();
        for info in infos {
            let record = info.join("RECORD");
            let Ok(m) = std::fs::metadata(&record) else {
                continue;
            };
            let id = record.display().to_string();
            let stat = (
                m.len(),
                i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                m.ino(),
            );
            let dist = match cache.get(&id) {
                Some(c) if (c.size, c.mtime_ns, c.ino) == stat => c.dist.clone(),
                _ => {
                    let Some(dist) = read_dist(&info) else {
                        continue;
                    };
                    // A distribution installed just now is read again next time (see
                    // `racily_clean`).
                    if !crate::store::racily_clean(&m) {
                        cache.insert(
                            id,
                            Cached {
                                size: stat.0,
                                mtime_ns: stat.1,
                                ino: stat.2,
                                dist: dist.clone(),
                            },
                        );
                        changed = true;
                    }
                    dist
                }
            };
            out.entry(normalize(&dist.name)).or_insert(dist);
        }
    }
    if changed
        && std::fs::create_dir_all(cache_dir).is_ok()
        && let Ok(text) = serde_json::to_vec(&cache)
    {
        let tmp = cache_dir.join(format!(".command-dists.{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &file);
        }
    }
    out
}

/// Name and version from `METADATA`, and the hash of `RECORD`'s location-independent lines.
fn read_dist(info: &Path) -> Option<Dist> {
    let meta = std::fs::read_to_string(info.join("METADATA")).ok()?;
    let field = |key: &str| {
        meta.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    let name = field("Name:")?;
    let version = field("Version:")?;
    let record = std::fs::read_to_string(info.join("RECORD")).ok()?;
    let info_name = info.file_name()?.to_str()?.to_string();
    let mut lines: Vec<&str> = record
        .lines()
        .filter(|l| {
            let path = record_path(l);
            !path.is_empty()
                && !path.starts_with("../")
                && !path.contains("__pycache__/")
                && !path.ends_with(".pyc")
                && ![
                    format!("{info_name}/RECORD"),
                    format!("{info_name}/INSTALLER"),
                    format!("{info_name}/REQUESTED"),
                    format!("{info_name}/direct_url.json"),
                ]
                .contains(&path.to_string())
        })
        .collect();
    lines.sort_unstable();
    let mut h = blake3::Hasher::new();
    for l in lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    Some(Dist {
        name,
        version,
        record: h.finalize().to_hex().to_string(),
    })
}

/// The path field of a `RECORD` line (a CSV row `path,hash,size`; a path with a comma is
/// quoted).
fn record_path(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix('"') {
        return rest.split_once('"').map_or(rest, |(p, _)| p);
    }
    line.split(',').next().unwrap_or_default()
}

/// PEP 503: lower case, runs of `-`, `_` and `.` as one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The `name==version` pins of a lock file in pip's requirements format (hashes, options,
/// comments and environment markers skipped).
pub fn pins(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or_default();
        let line = line.trim().trim_end_matches('\\').trim();
        if line.is_empty() || line.starts_with('-') {
            continue;
        }
        let spec = line.split(';').next().unwrap_or_default();
        let Some((name, version)) = spec.split_once("==") else {
            continue;
        };
        let name = name.split('[').next().unwrap_or_default().trim();
        let version = version.split_whitespace().next().unwrap_or_default();
        if !name.is_empty() && !version.is_empty() {
            out.push((normalize(name), version.to_string()));
        }
    }
    out
}

/// The first pin of `lock` that `installed` does not satisfy, in words.
pub fn unmet(lock: &str, installed: &BTreeMap<String, Dist>) -> Option<String> {
    pins(lock)
        .into_iter()
        .find_map(|(name, want)| match installed.get(&name) {
            Some(d) if d.version == want => None,
            Some(d) => Some(format!(
                "pins {name}=={want}, but {} is installed",
                d.version
            )),
            None => Some(format!("pins {name}=={want}, which is not installed")),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_and_pins_parse_as_pip_writes_them() {
        assert_eq!(normalize("Scikit_Learn"), "scikit-learn");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        let lock = "# comment\nnumpy==2.4.6 \\\n    --hash=sha256:89cd\nrequests[socks]==2.32.3 ; python_version >= '3.8'\n--require-hashes\nscipy>=1.0\n";
        assert_eq!(
            pins(lock),
            [
                ("numpy".to_string(), "2.4.6".to_string()),
                ("requests".to_string(), "2.32.3".to_string())
            ]
        );
    }

    #[test]
    fn record_paths_quoted_or_not() {
        assert_eq!(record_path("six.py,sha256=abc,123"), "six.py");
        assert_eq!(record_path("\"a,b.py\",sha256=abc,1"), "a,b.py");
    }
}
