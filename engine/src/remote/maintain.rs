//! Keeping a remote: `verify --remote` (every record and object re-checked) and `gc --remote`
//! (what no pushed ref reaches, once older than the grace period).

use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use super::{Remote, RemoteError, blob_key, hash_file};

/// What `gc --remote` removed (or would).
#[derive(Debug, Default, Clone, Serialize)]
pub struct RemoteGc {
    pub kept_records: usize,
    pub removed_records: usize,
    pub removed_objects: usize,
    pub removed_unfinished: usize,
    /// Unreached but younger than the grace period.
    pub kept_young: usize,
}

/// What `verify --remote` found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RemoteReport {
    pub records: usize,
    pub objects: usize,
    pub bytes: u64,
    pub problems: Vec<String>,
}

impl Remote {
    /// Checks everything the remote holds: every record (its envelope, its signature if any, its
    /// key against its pre-image) and every object a record names, downloaded into `scratch` and
    /// re-hashed. Trust is not checked: this is about damage, not about who pushed.
    pub fn verify(&self, scratch: &Path) -> Result<RemoteReport, RemoteError> {
        let mut rep = RemoteReport::default();
        let mut blobs: std::collections::BTreeMap<String, (u64, String)> = Default::default();
        let keys = self.backend.list("ac").map_err(|e| self.err(e))?;
        for k in &keys {
            let Some(key) = k.strip_prefix("ac/").and_then(|n| n.strip_suffix(".json")) else {
                rep.problems.push(format!("{k}: not a record's name"));
                continue;
            };
            rep.records += 1;
            match self.read_record(key, false)? {
                Ok((r, _)) => {
                    for o in r.outputs.values() {
                        let parts: Vec<(String, u64)> = if o.dir {
                            o.files.iter().map(|f| (f.hash.clone(), f.size)).collect()
                        } else {
                            vec![(o.hash.clone(), o.size)]
                        };
                        for (h, n) in parts {
                            let owner =
                                format!("record {} ({})", crate::stale::short(key), r.stage);
                            blobs.entry(h).or_insert((n, owner));
                        }
                    }
                }
                Err(m) => rep
                    .problems
                    .push(format!("record {}: {m}", crate::stale::short(key))),
            }
        }
        std::fs::create_dir_all(scratch)
            .map_err(|e| RemoteError::Io(format!("{}: {e}", scratch.display())))?;
        let checked: Vec<Result<Option<String>, RemoteError>> = blobs
            .par_iter()
            .map(|(hash, (size, owner))| {
                let dest = scratch.join(hash);
                let found = self
                    .backend
                    .get_file(&blob_key(hash), &dest)
                    .map_err(|e| self.err(e))?;
                let short = crate::stale::short(hash);
                let problem = if !found {
                    Some(format!("object {short} of {owner} is missing"))
                } else {
                    let (h, n) = hash_file(&dest)?;
                    (h != *hash || n != *size)
                        .then(|| format!("object {short} of {owner} does not hash to its name"))
                };
                let _ = std::fs::remove_file(&dest);
                Ok(problem)
            })
            .collect();
        for c in checked {
            if let Some(p) = c? {
                rep.problems.push(p);
            }
        }
        rep.objects = blobs.len();
        rep.bytes = blobs.values().map(|(n, _)| n).sum();
        Ok(rep)
    }

    /// Removes what no pushed ref of any variant reaches (records, then the objects only they
    /// named, then unfinished uploads) and is older than `grace`. A push in progress publishes
    /// its objects before its record, so `grace` must outlast the longest push.
    pub fn gc(&self, grace: std::time::Duration, dry_run: bool) -> Result<RemoteGc, RemoteError> {
        let now = std::time::SystemTime::now();
        let old =
            |t: &std::time::SystemTime| now.duration_since(*t).map(|d| d >= grace).unwrap_or(false);
        let mut rep = RemoteGc::default();
        // Roots: every ref's key; then upstream through each record's `upstream` keys.
        let mut todo: Vec<String> = Vec::new();
        for (name, _) in self.backend.list_times("refs").map_err(|e| self.err(e))? {
            if let Some(b) = self.backend.get_bytes(&name).map_err(|e| self.err(e))? {
                todo.push(String::from_utf8_lossy(&b).trim().to_string());
            }
        }
        let mut keep: std::collections::BTreeSet<String> = Default::default();
        let mut blobs_kept: std::collections::BTreeSet<String> = Default::default();
        // A young record (a push in progress) keeps what it names and its upstream chain, as
        // a ref does: found first, so the closure below covers both.
        let mut young: Vec<String> = Vec::new();
        let listed = self.backend.list_times("ac").map_err(|e| self.err(e))?;
        for (name, t) in &listed {
            if !old(t)
                && let Some(k) = name
                    .strip_prefix("ac/")
                    .and_then(|n| n.strip_suffix(".json"))
            {
                todo.push(k.to_string());
            }
        }
        while let Some(k) = todo.pop() {
            if !keep.insert(k.clone()) {
                continue;
            }
            if let Ok((r, _)) = self.read_record(&k, false)? {
                for o in r.outputs.values() {
                    if o.dir {
                        blobs_kept.extend(o.files.iter().map(|f| f.hash.clone()));
                    } else {
                        blobs_kept.insert(o.hash.clone());
                    }
                }
                todo.extend(r.upstream.values().cloned());
            }
        }
        for (name, t) in listed {
            let key = name
                .strip_prefix("ac/")
                .and_then(|n| n.strip_suffix(".json"))
                .unwrap_or_default();
            if keep.contains(key) && old(&t) {
                rep.kept_records += 1;
                continue;
            }
            if !old(&t) {
                rep.kept_young += 1;
                young.push(key.to_string());
                continue;
            }
            rep.removed_records += 1;
            if !dry_run {
                self.backend.delete(&name).map_err(|e| self.err(e))?;
            }
        }
        for (name, t) in self.backend.list_times("cas").map_err(|e| self.err(e))? {
            let hash = name.strip_prefix("cas/").unwrap_or_default();
            if blobs_kept.contains(hash) {
                continue;
            }
            if !old(&t) {
                rep.kept_young += 1;
                continue;
            }
            rep.removed_objects += 1;
            if !dry_run {
                self.backend.delete(&name).map_err(|e| self.err(e))?;
            }
        }
        for (name, t) in self.backend.list_times("tmp").map_err(|e| self.err(e))? {
            if old(&t) {
                rep.removed_unfinished += 1;
                if !dry_run {
                    self.backend.delete(&name).map_err(|e| self.err(e))?;
                }
            }
        }
        Ok(rep)
    }
}
