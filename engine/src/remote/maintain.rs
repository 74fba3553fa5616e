//! Keeping a remote: `verify --remote` (every record and object re-checked) and `gc --remote`
//! (what no pushed ref reaches, once older than the grace period).

use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use std::collections::{BTreeMap, BTreeSet};

use super::records::{Read, parse_name};
use super::{Remote, RemoteError, blob_key, hash_file};
use crate::store::Record;

/// What `gc --remote` removed (or would).
#[derive(Debug, Default, Clone, Serialize)]
pub struct RemoteGc {
    pub kept_records: usize,
    pub removed_records: usize,
    /// Of those, records signed by nobody in trusted_keys (`--untrusted`).
    pub removed_untrusted: usize,
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
    /// Sound records that no key of trusted_keys signed: a pull never takes them (`gc --remote
    /// --untrusted` drops them). Empty when the remote trusts anyone.
    pub untrusted: Vec<String>,
}

/// A record's file on the remote.
struct Listed {
    name: String,
    key: String,
    written: std::time::SystemTime,
}

/// Every record file under `ac/`, and the names that are no record's.
fn listed_records(names: Vec<(String, std::time::SystemTime)>) -> (Vec<Listed>, Vec<String>) {
    let mut records = Vec::new();
    let mut strays = Vec::new();
    for (name, written) in names {
        match parse_name(&name) {
            Ok((key, _)) => records.push(Listed {
                key: key.to_string(),
                name,
                written,
            }),
            Err(()) => strays.push(name),
        }
    }
    (records, strays)
}

/// The hashes of every file a record's outputs name, with their sizes.
fn record_blobs(r: &Record) -> Vec<(String, u64)> {
    r.outputs
        .values()
        .flat_map(|o| {
            if o.dir {
                o.files.iter().map(|f| (f.hash.clone(), f.size)).collect()
            } else {
                vec![(o.hash.clone(), o.size)]
            }
        })
        .collect()
}

impl Remote {
    /// Checks everything the remote holds: every record (its envelope, its signature if any, the
    /// signer it is filed under, its key against its pre-image) and every object a record names,
    /// downloaded into `scratch` and re-hashed; a damaged object is reported with every record
    /// that names it. Records no trusted key signed are listed apart: not damage, but never
    /// taken.
    pub fn verify(&self, scratch: &Path) -> Result<RemoteReport, RemoteError> {
        let mut rep = RemoteReport::default();
        let (records, strays) =
            listed_records(self.backend.list_times("ac").map_err(|e| self.err(e))?);
        rep.problems
            .extend(strays.iter().map(|n| format!("{n}: not a record's name")));
        // Each object with its size and every record that names it.
        let mut blobs: BTreeMap<String, (u64, Vec<String>)> = Default::default();
        for l in &records {
            rep.records += 1;
            let what = format!("record {} ({})", crate::stale::short(&l.key), l.name);
            match self.read_at(&l.name, &l.key)? {
                Ok(r) => {
                    let signer = r.signed.as_ref().map(|(k, _)| k.as_str());
                    if let Err(why) = self.trusts(signer) {
                        rep.untrusted.push(format!(
                            "record {} of `{}`: {why}",
                            crate::stale::short(&l.key),
                            r.record.stage
                        ));
                    }
                    let owner = format!(
                        "record {} ({}, {})",
                        crate::stale::short(&l.key),
                        r.record.stage,
                        signer.map_or("unsigned", |k| k.rsplit_once(':').map_or(k, |(n, _)| n))
                    );
                    for (h, n) in record_blobs(&r.record) {
                        let e = blobs.entry(h).or_insert((n, Vec::new()));
                        if !e.1.contains(&owner) {
                            e.1.push(owner.clone());
                        }
                    }
                }
                // Deleted between the listing and the read (a concurrent gc): nothing to check.
                Err(super::Miss::Absent) => rep.records -= 1,
                Err(m) => rep.problems.push(format!("{what}: {m}")),
            }
        }
        std::fs::create_dir_all(scratch)
            .map_err(|e| RemoteError::Io(format!("{}: {e}", scratch.display())))?;
        let checked: Vec<Result<Option<String>, RemoteError>> = blobs
            .par_iter()
            .map(|(hash, (size, owners))| {
                let dest = scratch.join(hash);
                let found = self
                    .backend
                    .get_file(&blob_key(hash), &dest)
                    .map_err(|e| self.err(e))?;
                let short = crate::stale::short(hash);
                let owners = owners.join(", ");
                let problem = if !found {
                    Some(format!(
                        "object {short} is missing; it is named by {owners}"
                    ))
                } else {
                    let (h, n) = hash_file(&dest)?;
                    (h != *hash || n != *size).then(|| {
                        format!("object {short} does not hash to its name; it is named by {owners}")
                    })
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
    /// its objects before its record, so `grace` must outlast the longest push. With
    /// `untrusted`, records no key of trusted_keys signed go too, whatever reaches them: a pull
    /// never takes them.
    pub fn gc(
        &self,
        grace: std::time::Duration,
        dry_run: bool,
        untrusted: bool,
    ) -> Result<RemoteGc, RemoteError> {
        if untrusted && self.trusted.is_empty() {
            return Err(self.err(RemoteError::Config(format!(
                "lists no trusted_keys, so every record is trusted; `magpipe remote trust {} KEY` first",
                self.name
            ))));
        }
        let now = std::time::SystemTime::now();
        let old =
            |t: &std::time::SystemTime| now.duration_since(*t).map(|d| d >= grace).unwrap_or(false);
        let mut rep = RemoteGc::default();
        let (records, _) = listed_records(self.backend.list_times("ac").map_err(|e| self.err(e))?);
        // With --untrusted every record is read to judge its signer; the walk below then takes
        // the kept ones from here instead of asking the remote again.
        let (dropped, mut read) = if untrusted {
            self.untrusted_records(&records)?
        } else {
            Default::default()
        };
        // The records of each key that stay, to walk from.
        let mut by_key: BTreeMap<&str, Vec<&Listed>> = BTreeMap::new();
        for l in records.iter().filter(|l| !dropped.contains(&l.name)) {
            by_key.entry(&l.key).or_default().push(l);
        }
        // Roots: every ref's key, and every young record's (a push in progress keeps what it
        // names and its upstream chain, as a ref does); then upstream through `upstream` keys.
        let mut todo: Vec<String> = Vec::new();
        for (name, _) in self.backend.list_times("refs").map_err(|e| self.err(e))? {
            if let Some(b) = self.backend.get_bytes(&name).map_err(|e| self.err(e))? {
                todo.push(String::from_utf8_lossy(&b).trim().to_string());
            }
        }
        todo.extend(
            records
                .iter()
                .filter(|l| !old(&l.written) && !dropped.contains(&l.name))
                .map(|l| l.key.clone()),
        );
        let mut keep: BTreeSet<String> = Default::default();
        let mut blobs_kept: BTreeSet<String> = Default::default();
        while let Some(k) = todo.pop() {
            if !keep.insert(k.clone()) {
                continue;
            }
            for l in by_key.get(k.as_str()).into_iter().flatten() {
                let r = match read.remove(&l.name) {
                    Some(r) => Ok(r),
                    None if untrusted => continue,
                    None => self.read_at(&l.name, &l.key)?,
                };
                if let Ok(r) = r {
                    blobs_kept.extend(record_blobs(&r.record).into_iter().map(|(h, _)| h));
                    todo.extend(r.record.upstream.values().cloned());
                }
            }
        }
        for l in &records {
            let drop_untrusted = dropped.contains(&l.name);
            if !drop_untrusted {
                if keep.contains(&l.key) && old(&l.written) {
                    rep.kept_records += 1;
                    continue;
                }
                if !old(&l.written) {
                    rep.kept_young += 1;
                    continue;
                }
            }
            rep.removed_records += 1;
            rep.removed_untrusted += usize::from(drop_untrusted);
            if !dry_run {
                self.backend.delete(&l.name).map_err(|e| self.err(e))?;
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

    /// The names of the records that are sound but signed by nobody in trusted_keys, and the
    /// sound records of trusted signers, read.
    fn untrusted_records(
        &self,
        records: &[Listed],
    ) -> Result<(BTreeSet<String>, BTreeMap<String, Read>), RemoteError> {
        let mut untrusted = BTreeSet::new();
        let mut trusted = BTreeMap::new();
        for l in records {
            let Ok(r) = self.read_at(&l.name, &l.key)? else {
                continue;
            };
            if self
                .trusts(r.signed.as_ref().map(|(k, _)| k.as_str()))
                .is_err()
            {
                untrusted.insert(l.name.clone());
            } else {
                trusted.insert(l.name.clone(), r);
            }
        }
        Ok((untrusted, trusted))
    }
}
