//! Leases: how a running magpipe tells `gc` what it has made, is writing and will read.
//!
//! Every process that uses the store's contents while it runs (`run`, `audit`, `forecast`) holds
//! a lease: a file `leases/<host>-<pid>-<nanos>.lease` it keeps an exclusive `flock` on for its
//! whole life, and to which it appends each record key and object hash it validates or commits
//! (`record <key>`, `object <hash>`). `gc` treats every key and hash of a live lease as a root.
//! The kernel drops the flock when the process dies, however it dies, so a lease left by a killed
//! process is recognised as stale (gc can lock it) and removed instead of blocking gc forever.
//!
//! Registration and the step it protects (checking that a record is complete; renaming an object
//! into `objects/`) happen under a shared lock on `locks/gc.lock`, and gc holds that lock
//! exclusively from reading the leases to its last removal: a key is either registered before gc
//! reads the leases, or the record it names is checked after gc has finished removing.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::fsutil::hostname;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::io(path, e)
}

/// One process's lease on the store; the file is removed when it is dropped.
pub struct Lease {
    path: PathBuf,
    file: File,
}

impl Lease {
    /// Takes a new lease under `root/leases/`, for `what` (`run`, `audit`, …).
    pub fn take(root: &Path, what: &str) -> Result<Lease, StoreError> {
        let dir = root.join("leases");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let host = hostname();
        let name = format!(
            "{}-{}-{nanos}",
            crate::fsutil::file_safe(&host),
            std::process::id()
        );
        let path = dir.join(format!("{name}.lease"));
        // Made under another name, locked, then renamed: gc reads `*.lease` only, so it never
        // sees a lease before its flock is held (and would take it for a dead one). Opened
        // close-on-exec (Rust's default), so no program magpipe starts inherits the flock and
        // keeps a dead run's lease alive.
        let making = dir.join(format!("{name}.making"));
        let mut file = fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&making)
            .map_err(io(&making))?;
        file.lock().map_err(io(&making))?;
        writeln!(
            file,
            "magpipe lease pid {} host {host} for {what}",
            std::process::id()
        )
        .map_err(io(&making))?;
        fs::rename(&making, &path).map_err(io(&path))?;
        Ok(Lease { path, file })
    }

    /// Appends `record <key>` / `object <hash>` lines. Unsynced: gc reads them through the same
    /// page cache, and after a crash the lease is stale anyway.
    pub fn hold(&self, kind: &str, names: &[&str]) -> Result<(), StoreError> {
        let mut text = String::new();
        for n in names {
            text.push_str(kind);
            text.push(' ');
            text.push_str(n);
            text.push('\n');
        }
        (&self.file)
            .write_all(text.as_bytes())
            .map_err(io(&self.path))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// What the live leases hold, as gc reads them.
#[derive(Debug, Default)]
pub struct Held {
    pub records: Vec<String>,
    pub objects: Vec<String>,
    /// Leases of live processes.
    pub live: usize,
    /// Leases of processes that died holding them (removed unless a dry run).
    pub stale: usize,
}

/// Reads every lease; a lease whose flock can be taken belongs to a dead process and is removed
/// (kept on a dry run). Call with the gc lock held exclusively.
pub fn read_all(root: &Path, dry_run: bool) -> Result<Held, StoreError> {
    let dir = root.join("leases");
    let mut held = Held::default();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(held),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    for e in entries.flatten() {
        let path = e.path();
        match path.extension().and_then(|x| x.to_str()) {
            Some("lease") => {}
            // A lease its process did not finish making: removed once nobody holds it.
            Some("making") => {
                if !dry_run
                    && let Ok(f) = File::open(&path)
                    && f.try_lock().is_ok()
                {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            _ => continue,
        }
        // Read-write: on NFS, flock is emulated with POSIX locks, which need it for an
        // exclusive lock.
        let file = match fs::OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            // Its owner finished between the listing and the open.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        match file.try_lock() {
            Ok(()) => {
                held.stale += 1;
                if !dry_run {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(&path, e)),
        }
        held.live += 1;
        let text = fs::read_to_string(&path).map_err(io(&path))?;
        for line in text.lines().skip(1) {
            match line.split_once(' ') {
                Some(("record", k)) => held.records.push(k.to_string()),
                Some(("object", h)) => held.objects.push(h.to_string()),
                _ => {}
            }
        }
    }
    Ok(held)
}

/// A lock on `locks/gc.lock`: shared while a lease registers and acts, exclusive while gc runs.
pub struct GcLock {
    _file: File,
}

impl GcLock {
    pub fn shared(root: &Path) -> Result<GcLock, StoreError> {
        let f = Self::open(root)?;
        f.lock_shared().map_err(io(&root.join("locks")))?;
        Ok(GcLock { _file: f })
    }

    pub fn exclusive(root: &Path) -> Result<GcLock, StoreError> {
        let f = Self::open(root)?;
        f.lock().map_err(io(&root.join("locks")))?;
        Ok(GcLock { _file: f })
    }

    fn open(root: &Path) -> Result<File, StoreError> {
        let dir = root.join("locks");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("gc.lock");
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))
    }
}
