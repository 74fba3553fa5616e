//! A shared cache of results, by key, as DVC's remotes and Bazel's remote cache share theirs: a
//! record and every object it names, pushed from the machine that computed them and pulled by
//! any other that computes the same key.
//!
//! ```text
//! cas/<blake3>        file contents (a folder output: each of its files), by hash
//! ac/<key>/<signer>.json  a record in its envelope, one per signer (records.rs): the record's
//!                     exact bytes, signer, signature
//! refs/<variant>/<stage>  the key the last push of that variant published (gc --remote's roots)
//! tmp/                a folder remote's writes in progress
//! ```
//!
//! A record is published only after every object it names is there, and create-only per key and
//! signer, so a reader sees a whole record with its objects, or nothing, and no pusher's record
//! can block another's. A pull re-hashes every byte before it
//! enters the store; a record that does not verify (a corrupted or missing object, a bad or
//! untrusted signature, a key that does not match its pre-image) is a miss with a warning, never
//! an error that stops a run, and never enters the store.

pub mod config;
pub mod folder;
mod maintain;
mod records;
pub mod s3;
pub mod sign;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::Serialize;

pub use maintain::{RemoteGc, RemoteReport};
use records::{ENVELOPE_FORMAT, Envelope, record_name};
pub use records::{Holding, Judged, signer_id};

use crate::store::{OutputRecord, Pulled, Record, Store, hash_file};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Config(String),
    /// The remote could not be reached at all (no connection, a folder not mounted): on
    /// `run --pull` a warning and a run that computes, as on an offline laptop.
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Store(#[from] crate::error::StoreError),
}

/// What a create-only write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    /// The name was taken: by the same content, since every name is a hash or a key.
    Existed,
}

/// Where a remote keeps its files: a folder, or an S3 bucket.
pub trait Backend: Send + Sync {
    /// Where it is, for messages.
    fn describe(&self) -> String;
    /// Reachable and readable, checked once before any transfer.
    fn check(&self) -> Result<(), RemoteError>;
    /// Safe to write to (an S3 server must honour create-only writes); checked before a push.
    fn check_writes(&self) -> Result<(), RemoteError> {
        Ok(())
    }
    fn exists(&self, key: &str) -> Result<bool, RemoteError>;
    fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError>;
    /// Streams `key` into `dest`; false when there is no such key.
    fn get_file(&self, key: &str, dest: &Path) -> Result<bool, RemoteError>;
    /// Create-only: a taken name is left as it is.
    fn put_file(&self, key: &str, src: &Path) -> Result<Put, RemoteError>;
    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<Put, RemoteError>;
    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError>;
    /// The names under `prefix` with when each was last written.
    fn list_times(&self, prefix: &str)
    -> Result<Vec<(String, std::time::SystemTime)>, RemoteError>;
    /// Writes `key` whether or not it exists (a ref: the last push wins).
    fn put_replace(&self, key: &str, bytes: &[u8]) -> Result<(), RemoteError>;
    fn delete(&self, key: &str) -> Result<(), RemoteError>;
}

/// A verified (signer `name:base64`, signature) pair.
type Signed = (String, String);

fn blob_key(hash: &str) -> String {
    format!("cas/{hash}")
}

/// `refs/<variant>/<stage>`: the key a push of that variant last published for the stage; what
/// `gc --remote` keeps, with everything upstream of it.
fn ref_key(variant: &str, stage: &str) -> String {
    format!(
        "refs/{}/{}",
        crate::fsutil::file_safe(variant),
        crate::fsutil::file_safe(stage)
    )
}

/// Every file of an output: (content hash, size, where the store has it).
fn blobs(store: &Store, o: &OutputRecord) -> Vec<(String, u64, PathBuf)> {
    let at = store.object_path(o);
    if o.dir {
        o.files
            .iter()
            .map(|f| (f.hash.clone(), f.size, at.join(&f.path)))
            .collect()
    } else {
        vec![(o.hash.clone(), o.size, at)]
    }
}

/// What a push did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PushReport {
    /// The key this push signed with, if the user has one.
    pub signer: Option<String>,
    /// Pulled records whose signature no longer matches their bytes: not pushed.
    pub left_out: usize,
    /// Pulled records pushed on with the signature they came with, by signer (`unsigned` for
    /// those that came without): not this user's work, and not said to be.
    pub relayed: std::collections::BTreeMap<String, usize>,
    pub records: usize,
    pub records_existing: usize,
    pub objects: usize,
    pub objects_existing: usize,
    pub bytes: u64,
}

/// Why a record on the remote was not taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Miss {
    Absent,
    Unsigned,
    Untrusted(String),
    BadSignature(String),
    /// The record is damaged, or is not the one its name says.
    BadRecord(String),
    /// An object it names is not on the remote.
    MissingObject(String),
    /// An object's bytes do not hash to its name.
    CorruptObject(String),
    /// The remote holds several records of the key and takes none of them: why, for each.
    Several(Vec<Miss>),
}

impl Miss {
    /// Why none of several records was taken (`Absent` for none, the one miss for one).
    fn all(mut misses: Vec<Miss>) -> Miss {
        match misses.len() {
            0 => Miss::Absent,
            1 => misses.pop().expect("one"),
            _ => Miss::Several(misses),
        }
    }
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Absent => write!(f, "not on the remote"),
            Miss::Unsigned => write!(f, "unsigned, and the remote trusts only its trusted_keys"),
            Miss::Untrusted(k) => write!(f, "signed by {k}, which is not among trusted_keys"),
            Miss::BadSignature(k) => write!(f, "its signature by {k} does not verify"),
            Miss::BadRecord(why) => write!(f, "a damaged record: {why}"),
            Miss::MissingObject(h) => write!(f, "its object {h} is missing on the remote"),
            Miss::CorruptObject(h) => {
                write!(f, "its object {h} on the remote does not hash to its name")
            }
            Miss::Several(all) => {
                write!(f, "{} records, none taken: ", all.len())?;
                for (i, m) in all.iter().enumerate() {
                    write!(f, "{}{m}", if i > 0 { "; " } else { "" })?;
                }
                Ok(())
            }
        }
    }
}

/// A remote as one command uses it.
pub struct Remote {
    pub name: String,
    backend: Box<dyn Backend>,
    trusted: Vec<String>,
    said_open: AtomicBool,
}

impl Remote {
    /// The remote `name` of the project's configuration (`None`: `$MAGPIPE_REMOTE`, else the
    /// default remote). `Ok(None)` when none is chosen and none is the default.
    pub fn open(project_dir: &Path, name: Option<&str>) -> Result<Option<Remote>, RemoteError> {
        let c = config::load(project_dir)?;
        let env = std::env::var("MAGPIPE_REMOTE")
            .ok()
            .filter(|s| !s.is_empty());
        let from_env = name.is_none() && env.is_some();
        let Some(name) = name
            .map(str::to_string)
            .or(env)
            .or(c.default_remote.clone())
        else {
            return Ok(None);
        };
        let rc = c.remotes.get(&name).ok_or_else(|| {
            let from = if from_env {
                " (from MAGPIPE_REMOTE)"
            } else {
                ""
            };
            let hint = crate::suggest::did_you_mean(&name, c.remotes.keys().map(String::as_str));
            RemoteError::Config(format!(
                "no remote `{name}`{from}{hint}; remotes: {}",
                config::names(&c)
            ))
        })?;
        rc.validate()
            .map_err(|e| RemoteError::Config(format!("remote `{name}`: {e}")))?;
        for k in &rc.trusted_keys {
            sign::check_public(k)
                .map_err(|e| RemoteError::Config(format!("remote `{name}`: trusted_keys: {e}")))?;
        }
        let backend = backend_for(project_dir, &name, rc)?;
        Ok(Some(Remote {
            name,
            backend,
            trusted: rc.trusted_keys.clone(),
            said_open: AtomicBool::new(false),
        }))
    }

    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, self.backend.describe())
    }

    /// Every error names the remote it is about.
    fn err(&self, e: RemoteError) -> RemoteError {
        let named = |m: String| {
            if m.starts_with("remote `") {
                m
            } else {
                format!("remote `{}`: {m}", self.name)
            }
        };
        match e {
            RemoteError::Io(m) => RemoteError::Io(named(m)),
            RemoteError::Config(m) => RemoteError::Config(named(m)),
            RemoteError::Unreachable(m) => RemoteError::Unreachable(named(m)),
            RemoteError::Key(m) => RemoteError::Key(named(m)),
            RemoteError::Store(e) => RemoteError::Io(named(e.to_string())),
        }
    }

    /// Reachable, for reading.
    pub fn check(&self) -> Result<(), RemoteError> {
        self.backend.check().map_err(|e| self.err(e))
    }

    /// Reachable, and safe to write to: an S3 server must honour create-only writes. Only
    /// commands that write call it, so read-only credentials can still pull.
    pub fn check_writes(&self) -> Result<(), RemoteError> {
        self.check()?;
        self.backend.check_writes().map_err(|e| self.err(e))
    }

    /// Before a push (and before a `run --push` computes anything): without a signing key the
    /// records go unsigned, which a remote listing trusted_keys never lets anyone pull. That is
    /// an error there unless `unsigned_ok`; elsewhere the warning to show.
    pub fn check_signing(&self, unsigned_ok: bool) -> Result<Option<String>, RemoteError> {
        if sign::Signer::load().map_err(|e| self.err(e))?.is_some() || unsigned_ok {
            return Ok(None);
        }
        if self.trusted.is_empty() {
            return Ok(Some(format!(
                "pushing unsigned records to remote `{}`: anyone could have written them, and a pull that trusts keys will not take them (`magpipe key generate you@lab` makes a signing key)",
                self.name
            )));
        }
        Err(self.err(RemoteError::Key(
            "takes only records signed by its trusted_keys, and you have no signing key: `magpipe key generate you@lab` makes one (and `magpipe remote trust` adds its public half), or push --unsigned to push them anyway"
                .into(),
        )))
    }

    /// Uploads records and everything they name: objects first (those the remote lacks), then
    /// each record, create-only. `progress` is told the bytes of each object sent.
    pub fn push(
        &self,
        store: &Store,
        records: &[Record],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<PushReport, RemoteError> {
        let signer = sign::Signer::load().map_err(|e| self.err(e))?;
        let mut report = PushReport::default();
        let mut all: Vec<(String, u64, PathBuf)> = Vec::new();
        for r in records {
            for o in r.outputs.values() {
                if !store.has_object(o)? {
                    return Err(self.err(RemoteError::Io(format!(
                        "stage `{}`: its output `{}` is missing or damaged in the store; run it again before pushing",
                        r.stage, o.file
                    ))));
                }
                all.extend(blobs(store, o));
            }
        }
        all.sort();
        all.dedup_by(|a, b| a.0 == b.0);
        let sent: Vec<Result<(Put, u64), RemoteError>> = all
            .par_iter()
            .map(|(hash, size, path)| {
                let put = self
                    .backend
                    .put_file(&blob_key(hash), path)
                    .map_err(|e| self.err(e))?;
                progress(*size);
                Ok((put, *size))
            })
            .collect();
        for s in sent {
            match s? {
                (Put::Created, n) => {
                    report.objects += 1;
                    report.bytes += n;
                }
                (Put::Existed, _) => report.objects_existing += 1,
            }
        }
        for r in records {
            let mut r = r.clone();
            // Where this copy came from is this store's business, not the remote's.
            let pulled = r.pulled.take();
            let text = serde_json::to_string_pretty(&r).expect("a record serialises");
            // A pulled record travels on with the signature it came with, never re-signed as
            // this user's work; one whose signature no longer covers these bytes is left out.
            let (signer, signature) = match &pulled {
                Some(p) => match (&p.signer, &p.signature) {
                    (Some(k), Some(sig)) if sign::verify(k, text.as_bytes(), sig) => {
                        *report.relayed.entry(k.clone()).or_default() += 1;
                        (Some(k.clone()), Some(sig.clone()))
                    }
                    (None, _) => {
                        *report.relayed.entry("unsigned".into()).or_default() += 1;
                        (None, None)
                    }
                    _ => {
                        report.left_out += 1;
                        continue;
                    }
                },
                None => (
                    signer.as_ref().map(sign::Signer::public),
                    signer.as_ref().map(|s| s.sign(text.as_bytes())),
                ),
            };
            let name = record_name(&r.key, signer.as_deref());
            let env = Envelope {
                format: ENVELOPE_FORMAT.into(),
                signature,
                signer,
                record: text,
                pushed_unix: crate::time::now_unix(),
                pushed_from: crate::fsutil::hostname(),
            };
            let bytes = serde_json::to_vec_pretty(&env).expect("an envelope serialises");
            match self
                .backend
                .put_bytes(&name, &bytes)
                .map_err(|e| self.err(e))?
            {
                Put::Created => report.records += 1,
                Put::Existed => report.records_existing += 1,
            }
        }
        // An object that was already there may have been old enough for a concurrent
        // `gc --remote` to take it meanwhile: put back any that went, so the records just
        // published keep everything they name.
        for (hash, _, path) in &all {
            if !self
                .backend
                .exists(&blob_key(hash))
                .map_err(|e| self.err(e))?
            {
                self.backend
                    .put_file(&blob_key(hash), path)
                    .map_err(|e| self.err(e))?;
            }
        }
        report.signer = signer.as_ref().map(sign::Signer::public);
        Ok(report)
    }

    /// Records which key each pushed stage of `variant` has now, so `gc --remote` keeps them
    /// (the last push of a variant wins).
    pub fn push_refs(&self, variant: &str, refs: &[(String, String)]) -> Result<(), RemoteError> {
        for (stage, key) in refs {
            self.backend
                .put_replace(&ref_key(variant, stage), key.as_bytes())
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Whether a pull would take a record of `key`: one is there, readable, signed as it says
    /// and by a trusted key (its objects are checked when it is pulled). `Ok(Ok(signer))` names
    /// whose record it would take; `Ok(Err(Miss::Absent))` when there is none; another miss says
    /// why a pull would refuse what is there.
    pub fn takable(&self, key: &str) -> Result<Result<Option<String>, Miss>, RemoteError> {
        Ok(self
            .candidates(key)?
            .map(|c| c.into_iter().next().and_then(|(_, s)| s.map(|(k, _)| k))))
    }

    /// Once per command, for the first record taken from a remote that trusts anyone: the note
    /// to show the user.
    pub fn open_trust_note(&self) -> Option<String> {
        (self.trusted.is_empty() && !self.said_open.swap(true, Ordering::Relaxed)).then(|| {
            format!(
                "remote `{}` lists no trusted_keys, so records are taken whoever signed them (`magpipe remote trust {} KEY` restricts them)",
                self.name, self.name
            )
        })
    }

    /// Brings the record `key` and its objects into the store, each object re-hashed before it
    /// enters. `Ok(Err(miss))` when the remote has no usable record; the store is then as it was
    /// (objects already verified and committed stay: they are correct by their hash).
    pub fn fetch(
        &self,
        store: &Store,
        key: &str,
        expect: &dyn Fn(&Record) -> Result<(), String>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Result<Record, Miss>, RemoteError> {
        let candidates = match self.candidates(key)? {
            Ok(c) => c,
            Err(m) => return Ok(Err(m)),
        };
        // The best record whose objects are all sound; a damaged one gives way to the next.
        let mut misses = Vec::new();
        for (rec, signed) in candidates {
            match self.fetch_one(store, rec, signed, expect, progress)? {
                Ok(rec) => return Ok(Ok(rec)),
                Err(m) => misses.push(m),
            }
        }
        Ok(Err(Miss::all(misses)))
    }

    /// One record's objects into the store, then the record, marked as pulled.
    fn fetch_one(
        &self,
        store: &Store,
        mut rec: Record,
        signed: Option<Signed>,
        expect: &dyn Fn(&Record) -> Result<(), String>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Result<Record, Miss>, RemoteError> {
        if let Err(why) = expect(&rec) {
            return Ok(Err(Miss::BadRecord(why)));
        }
        let (signer, signature) = signed.unzip();
        for o in rec.outputs.values() {
            if store.has_object(o)? {
                continue;
            }
            if let Err(m) = self.fetch_object(store, o, progress)? {
                return Ok(Err(m));
            }
        }
        rec.pulled = Some(Pulled {
            remote: self.name.clone(),
            url: self.backend.describe(),
            signer,
            signature,
            pulled_unix: crate::time::now_unix(),
        });
        store.write_record(&rec)?;
        Ok(Ok(rec))
    }

    /// One output: its file(s) into the store's staging, each checked against its hash, then
    /// committed as the stage would have committed it.
    fn fetch_object(
        &self,
        store: &Store,
        o: &OutputRecord,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Result<(), Miss>, RemoteError> {
        let staging = store.staging()?;
        let result = (|| {
            let root = staging.join("pull");
            // A folder output may hold no file at all.
            let folder = if o.dir { root.clone() } else { staging.clone() };
            std::fs::create_dir_all(&folder)
                .map_err(|e| RemoteError::Io(format!("{}: {e}", folder.display())))?;
            let parts: Vec<(String, String, u64)> = if o.dir {
                o.files
                    .iter()
                    .map(|f| (f.path.clone(), f.hash.clone(), f.size))
                    .collect()
            } else {
                vec![(o.file.clone(), o.hash.clone(), o.size)]
            };
            let got: Vec<Result<Result<(), Miss>, RemoteError>> = parts
                .par_iter()
                .map(|(rel, hash, size)| {
                    let dest = root.join(rel);
                    if let Some(p) = dest.parent() {
                        std::fs::create_dir_all(p)
                            .map_err(|e| RemoteError::Io(format!("{}: {e}", p.display())))?;
                    }
                    if !self
                        .backend
                        .get_file(&blob_key(hash), &dest)
                        .map_err(|e| self.err(e))?
                    {
                        return Ok(Err(Miss::MissingObject(crate::stale::short(hash).into())));
                    }
                    let (h, n) = hash_file(&dest)?;
                    if &h != hash || n != *size {
                        return Ok(Err(Miss::CorruptObject(crate::stale::short(hash).into())));
                    }
                    progress(n);
                    Ok(Ok(()))
                })
                .collect();
            for g in got {
                if let Err(m) = g? {
                    return Ok(Err(m));
                }
            }
            // A file was hashed as it came in; a folder's tree hash is checked as it commits.
            let committed = if o.dir {
                store.commit_dir(&root, &o.file)?
            } else {
                store.commit_downloaded(&root.join(&o.file), &o.file, &o.hash, o.size)?
            };
            if committed.hash != o.hash {
                return Ok(Err(Miss::CorruptObject(
                    crate::stale::short(&o.hash).into(),
                )));
            }
            Ok(Ok(()))
        })();
        let _ = std::fs::remove_dir_all(&staging);
        result
    }
}

/// The backend a URL names: a folder (a path, or `file://`; relative paths from the project)
/// or an S3 bucket (`s3://bucket/prefix`).
fn backend_for(
    project_dir: &Path,
    name: &str,
    rc: &config::RemoteConfig,
) -> Result<Box<dyn Backend>, RemoteError> {
    let url = rc.url.as_str();
    let named = |e: RemoteError| match e {
        RemoteError::Config(m) => RemoteError::Config(format!("remote `{name}`: {m}")),
        e => e,
    };
    if let Some(rest) = url.strip_prefix("file://") {
        return Ok(Box::new(folder::Folder::new(Path::new(rest))));
    }
    if url.starts_with("s3://") {
        let s = s3::S3::new(&s3::S3Settings {
            url: url.to_string(),
            endpoint: rc.endpoint.clone(),
            region: rc.region.clone(),
            credentials: rc.credentials,
        })
        .map_err(named)?;
        return Ok(Box::new(s));
    }
    if url.contains("://") {
        return Err(RemoteError::Config(format!(
            "remote `{name}`: {url}: unknown scheme (a folder path, file://PATH or s3://BUCKET/PREFIX)"
        )));
    }
    Ok(Box::new(folder::Folder::new(&project_dir.join(url))))
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.describe())
    }
}
