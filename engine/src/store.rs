//! The artifact store, under `artifacts/` by default:
//!
//! ```text
//! objects/<b3>/<file>    outputs by content hash (read-only files)
//! records/<key>.json     key → outputs, with the key's pre-image; written last
//! refs/<variant>/<stage> the key a stage last had, for `status --explain`
//! tmp/                   stage outputs under construction
//! locks/<key>.lock       one writer per key across processes
//! locks/gc.lock          shared while a lease registers, exclusive while gc runs
//! leases/<host>-<pid>-…  what each running magpipe holds (see `lease`)
//! cache/sources.json     stat → hash cache of raw files
//! ```
//!
//! Writes are tmp → fsync → rename, the record after its objects, so a crash at any point leaves
//! at worst junk in `tmp/`, never a record that points at a missing or partial object.
//!
//! An output is copied into the store, never renamed: a program that left a process behind, or
//! a hard link, keeps a handle on the inode it wrote, and that inode must not become an object.
//! The copy is opened without following links and must be a regular file (or, for a folder
//! output, a folder of regular files); the store only ever changes the mode of its own copies.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
pub use crate::fsutil::file_safe;
use crate::fsutil::{fsync_dir, hostname, write_atomic};
use crate::key::PreImage;
use crate::lease::{GcLock, Lease};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutputRecord {
    pub file: String,
    /// The file's blake3, or for a folder the hash of its tree (see [`tree_hash`]).
    pub hash: String,
    /// Bytes; for a folder, of all its files.
    pub size: u64,
    /// A folder output: its files, by path inside the folder, in path order. (Absent from the
    /// records of file outputs, so those read and write as before.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dir: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<TreeFile>,
}

/// One file of a folder output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TreeFile {
    /// `/`-separated, relative to the folder.
    pub path: String,
    pub size: u64,
    pub hash: String,
}

/// The content hash of a folder: blake3 over its files' paths, sizes and hashes in path order,
/// so renaming, moving, resizing or editing any file changes it, and nothing else does.
pub fn tree_hash(files: &[TreeFile]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"magpipe tree v1\n");
    for f in files {
        h.update(f.path.as_bytes());
        h.update(b"\0");
        h.update(f.size.to_string().as_bytes());
        h.update(b"\0");
        h.update(f.hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// The files under `dir` (recursively), sorted by path, unhashed: plain files and folders only,
/// since a link or a device in an output would make its content depend on what lies outside it.
pub fn tree_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let mut todo = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, d)) = todo.pop() {
        for e in fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let name = e.file_name().to_string_lossy().to_string();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let t = e.file_type().map_err(io(&e.path()))?;
            if t.is_dir() {
                todo.push((rel, e.path()));
            } else if t.is_file() {
                out.push((rel, e.path()));
            } else {
                return Err(StoreError::NotPlain {
                    path: e.path(),
                    what: file_type_name(&t),
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Hashes every file of a folder: its [`TreeFile`]s in path order.
pub fn hash_tree(dir: &Path) -> Result<Vec<TreeFile>, StoreError> {
    use rayon::prelude::*;
    tree_files(dir)?
        .par_iter()
        .map(|(rel, p)| {
            let (hash, size) = hash_file(p)?;
            Ok(TreeFile {
                path: rel.clone(),
                size,
                hash,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    /// The stage name that produced it (informational: names are not part of the key).
    pub stage: String,
    pub preimage: PreImage,
    pub outputs: BTreeMap<String, OutputRecord>,
    pub started_unix: f64,
    pub seconds: f64,
    pub magpipe_version: String,
    pub summary: String,
    pub facts: serde_json::Value,
    /// The git commit magpipe was built from (`-dirty` if the tree had changes).
    #[serde(default)]
    pub git_commit: String,
    /// slot → key of the record that produced the input, so lineage follows the exact chain even
    /// after the stage upstream has moved on.
    #[serde(default)]
    pub upstream: BTreeMap<String, String>,
    /// raw-file name (as in the pre-image) → the path it was read from.
    #[serde(default)]
    pub source_paths: BTreeMap<String, String>,
    /// How the stage ran when not in-process (the Slurm jobs, their nodes and logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecInfo>,
    /// Where this store got the record from, when it was pulled rather than computed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<Pulled>,
}

impl Record {
    /// Names that come from outside (a remote, a crate) become paths in the store: each
    /// output's file and folder files must be plain relative paths (no `..`, no root, nothing
    /// empty) and each hash 64 hex digits, or a record could reach outside the store.
    pub fn check_paths(&self) -> Result<(), String> {
        let plain = |p: &str| {
            !p.is_empty()
                && !p.starts_with('/')
                && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
                && !p.contains('\0')
        };
        let hash = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
        for (name, o) in &self.outputs {
            if !plain(&o.file) || !hash(&o.hash) {
                return Err(format!("output `{name}` names an unsafe path or hash"));
            }
            for f in &o.files {
                if !plain(&f.path) || !hash(&f.hash) {
                    return Err(format!("output `{name}` lists an unsafe file path or hash"));
                }
            }
        }
        Ok(())
    }
}

/// A record pulled from a remote: which, and who signed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pulled {
    pub remote: String,
    pub url: String,
    /// The public key (`name:base64`) whose signature verified, if it was signed.
    pub signer: Option<String>,
    /// That signature, so a push onward carries it instead of re-signing another's work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    pub pulled_unix: f64,
}

/// How a stage ran, kept in its record when that was not in-process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExecInfo {
    pub executor: String,
    /// Every attempt, the successful one last.
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    pub job_id: String,
    pub state: String,
    pub exit_code: String,
    pub node: String,
    pub log: String,
}

pub struct Store {
    pub root: PathBuf,
    sources: Mutex<SourceCache>,
    /// Held by a process that uses the store's contents while it runs (see `lease`).
    lease: Mutex<Option<Lease>>,
}

#[derive(Default, Serialize, Deserialize)]
struct SourceCache {
    entries: HashMap<PathBuf, StatHash>,
    #[serde(skip)]
    dirty: bool,
}

/// What an object's metadata looked like when it was last known intact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ObjectStat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

impl ObjectStat {
    fn of(m: &fs::Metadata) -> ObjectStat {
        ObjectStat {
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            ino: m.ino(),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
struct StatHash {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    hash: String,
}

/// fsyncs every folder of a tree, so the entries of its subfolders survive a crash too.
fn fsync_tree(dir: &Path) -> Result<(), StoreError> {
    for e in fs::read_dir(dir).map_err(io(dir))?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            fsync_tree(&e.path())?;
        }
    }
    fsync_dir(dir)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::io(path, e)
}

/// What a file type is, in words, for an error.
pub fn file_type_name(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a Unix socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a plain file"
    }
}

/// Copies a regular file to `dest` (a new file, fsynced, read-only), opening the source
/// without following a link and without blocking on a FIFO: whatever else `src` is, it is
/// refused with what it is.
fn copy_plain(src: &Path, dest: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut from = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(src)
    {
        Ok(f) => f,
        // A link (ELOOP), a socket (ENXIO): say what is there, not the errno.
        Err(e) => {
            return Err(match fs::symlink_metadata(src) {
                Ok(m) if !m.is_file() => StoreError::NotPlain {
                    path: src.to_path_buf(),
                    what: file_type_name(&m.file_type()),
                },
                _ => StoreError::io(src, e),
            });
        }
    };
    let m = from.metadata().map_err(io(src))?;
    if !m.is_file() {
        return Err(StoreError::NotPlain {
            path: src.to_path_buf(),
            what: file_type_name(&m.file_type()),
        });
    }
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io(dest))?;
    // copy_file_range underneath: in the kernel, a reflink where the file system has them.
    std::io::copy(&mut from, &mut to).map_err(io(dest))?;
    to.sync_all().map_err(io(dest))?;
    let mut perm = to.metadata().map_err(io(dest))?.permissions();
    // Objects are shared by every record that has these bytes: keep users' tools from editing
    // them in place through a path printed by `magpipe artifact`.
    perm.set_readonly(true);
    to.set_permissions(perm).map_err(io(dest))?;
    Ok(())
}

/// Hashes a file's bytes with blake3.
pub fn hash_file(path: &Path) -> Result<(String, u64), StoreError> {
    let mut h = blake3::Hasher::new();
    // Memory-mapped and multi-threaded: outputs run to tens of MB, and reading them back through
    // a buffer was a tenth of the ingest stage's time.
    h.update_mmap_rayon(path).map_err(io(path))?;
    Ok((h.finalize().to_hex().to_string(), h.count()))
}

impl Store {
    /// Opens a store without creating anything: read-only commands never touch the disk.
    pub fn open(root: &Path) -> Store {
        let cache_path = root.join("cache").join("sources.json");
        let entries = fs::read(&cache_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<SourceCache>(&b).ok())
            .unwrap_or_default();
        Store {
            root: root.to_path_buf(),
            sources: Mutex::new(entries),
            lease: Mutex::new(None),
        }
    }

    /// Takes a lease for this process's lifetime (`run`, `audit`, `forecast`): from now on every
    /// record this store finds complete and every object and record it commits is held against
    /// `gc` until the store is dropped or the process dies. A second call keeps the first lease.
    pub fn begin_lease(&self, what: &str) -> Result<(), StoreError> {
        let mut l = self.lease.lock().expect("lease lock");
        if l.is_none() {
            *l = Some(Lease::take(&self.root, what)?);
        }
        Ok(())
    }

    /// Holds records this process will read against gc (a no-op without a lease); whatever gc
    /// removed before this call is missing, and the reader's own checks say so.
    pub fn hold_records(&self, keys: &[&str]) -> Result<(), StoreError> {
        self.pin("record", keys).map(drop)
    }

    /// Registers `names` in the lease, if any, and returns the shared gc lock to hold while the
    /// step they protect runs (nothing without a lease: read-only commands take no lock).
    fn pin(&self, kind: &str, names: &[&str]) -> Result<Option<GcLock>, StoreError> {
        let l = self.lease.lock().expect("lease lock");
        let Some(lease) = l.as_ref() else {
            return Ok(None);
        };
        let guard = GcLock::shared(&self.root)?;
        lease.hold(kind, names)?;
        Ok(Some(guard))
    }

    fn dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let d = self.root.join(name);
        fs::create_dir_all(&d).map_err(io(&d))?;
        Ok(d)
    }

    pub fn object_path(&self, o: &OutputRecord) -> PathBuf {
        self.root.join("objects").join(&o.hash).join(&o.file)
    }

    pub fn record_path(&self, key: &str) -> PathBuf {
        self.root.join("records").join(format!("{key}.json"))
    }

    pub fn record(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let p = self.record_path(key);
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Record {
                    path: p,
                    msg: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(p, e)),
        }
    }

    /// A record whose objects are all present and intact (a cache hit), if any. A corrupted
    /// object is moved to `tmp/corrupt/` and the record does not count, so the stage reruns and
    /// recreates it: a run never hands a damaged object to the next stage.
    pub fn complete_record(&self, key: &str) -> Result<Option<Record>, StoreError> {
        // Held before it is checked, so a gc that starts after the check keeps it.
        let _gc = self.pin("record", &[key])?;
        let Some(r) = self.record(key)? else {
            return Ok(None);
        };
        for o in r.outputs.values() {
            if !self.object_ok(o)? {
                return Ok(None);
            }
        }
        Ok(Some(r))
    }

    /// Whether the store holds this output intact (re-hashed when its stat changed).
    pub fn has_object(&self, o: &OutputRecord) -> Result<bool, StoreError> {
        self.object_ok(o)
    }

    fn stat_path(&self, o: &OutputRecord) -> PathBuf {
        self.root
            .join("objects")
            .join(&o.hash)
            .join(format!(".{}.stat", o.file))
    }

    /// Whether an object is present with the recorded bytes. Its stat (size, times, inode) is
    /// kept beside it at commit; only when that changed is the object re-hashed, so a cached run
    /// stays a handful of `stat` calls.
    fn object_ok(&self, o: &OutputRecord) -> Result<bool, StoreError> {
        if o.dir {
            return self.tree_ok(o);
        }
        let p = self.object_path(o);
        let m = match fs::metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io(&p, e)),
        };
        let now = ObjectStat::of(&m);
        if m.len() == o.size
            && fs::read(self.stat_path(o))
                .ok()
                .and_then(|b| serde_json::from_slice::<ObjectStat>(&b).ok())
                == Some(now.clone())
        {
            return Ok(true);
        }
        if m.len() == o.size && hash_file(&p)?.0 == o.hash {
            let _ = fs::write(self.stat_path(o), serde_json::to_vec(&now).expect("stat"));
            return Ok(true);
        }
        let quarantine = self.dir("tmp")?.join("corrupt");
        let _ = fs::create_dir_all(&quarantine);
        let aside = quarantine.join(format!("{}-{}", &o.hash[..16], o.file));
        tracing::warn!(object = %p.display(), aside = %aside.display(), "corrupted object moved aside; its stage reruns");
        if fs::rename(&p, &aside).is_err() {
            fs::remove_file(&p).map_err(io(&p))?;
        }
        let _ = fs::remove_file(self.stat_path(o));
        Ok(false)
    }

    /// [`Self::object_ok`] for a folder: every recorded file present with its size, re-hashed
    /// only when its stat changed since commit; any difference (a file changed, missing or
    /// added) moves the whole folder aside.
    fn tree_ok(&self, o: &OutputRecord) -> Result<bool, StoreError> {
        let root = self.object_path(o);
        if !root.is_dir() {
            return Ok(false);
        }
        let stats: Option<BTreeMap<String, ObjectStat>> = fs::read(self.stat_path(o))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let present = tree_files(&root);
        let mut ok = matches!(&present, Ok(files) if files.len() == o.files.len()
            && files.iter().zip(&o.files).all(|((rel, _), f)| rel == &f.path));
        let mut now = BTreeMap::new();
        if ok {
            for f in &o.files {
                let p = root.join(&f.path);
                let Ok(m) = fs::metadata(&p) else {
                    ok = false;
                    break;
                };
                let st = ObjectStat::of(&m);
                let same_stat = stats.as_ref().and_then(|s| s.get(&f.path)) == Some(&st);
                if m.len() != f.size || (!same_stat && hash_file(&p)?.0 != f.hash) {
                    ok = false;
                    break;
                }
                now.insert(f.path.clone(), st);
            }
        }
        if ok {
            if stats.as_ref() != Some(&now) {
                let _ = fs::write(self.stat_path(o), serde_json::to_vec(&now).expect("stat"));
            }
            return Ok(true);
        }
        let quarantine = self.dir("tmp")?.join("corrupt");
        let _ = fs::create_dir_all(&quarantine);
        let aside = quarantine.join(format!("{}-{}", &o.hash[..16], o.file));
        tracing::warn!(object = %root.display(), aside = %aside.display(), "corrupted folder moved aside; its stage reruns");
        if fs::rename(&root, &aside).is_err() {
            fs::remove_dir_all(&root).map_err(io(&root))?;
        }
        let _ = fs::remove_file(self.stat_path(o));
        Ok(false)
    }

    /// Copies one finished folder output into `objects/<tree hash>/<folder>`, its files fsynced
    /// and read-only (its folders stay writable, so `gc` can remove them).
    pub fn commit_dir(&self, scratch_dir: &Path, folder: &str) -> Result<OutputRecord, StoreError> {
        let m = fs::symlink_metadata(scratch_dir).map_err(io(scratch_dir))?;
        if !m.is_dir() {
            return Err(StoreError::NotPlain {
                path: scratch_dir.to_path_buf(),
                what: file_type_name(&m.file_type()),
            });
        }
        let staging = self.staging()?;
        let committed = self.commit_tree(scratch_dir, &staging, folder);
        let _ = fs::remove_dir_all(&staging);
        committed
    }

    fn commit_tree(
        &self,
        scratch_dir: &Path,
        staging: &Path,
        folder: &str,
    ) -> Result<OutputRecord, StoreError> {
        let copy = staging.join(folder);
        for (rel, src) in tree_files(scratch_dir)? {
            let dest = copy.join(&rel);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io(parent))?;
            }
            copy_plain(&src, &dest)?;
        }
        fs::create_dir_all(&copy).map_err(io(&copy))?;
        let files = hash_tree(&copy)?;
        let hash = tree_hash(&files);
        fsync_tree(&copy)?;
        let dest = self.place(&copy, &hash, folder)?;
        let mut stats = BTreeMap::new();
        for f in &files {
            if let Ok(m) = fs::metadata(dest.join(&f.path)) {
                stats.insert(f.path.clone(), ObjectStat::of(&m));
            }
        }
        let out = OutputRecord {
            file: folder.to_string(),
            hash,
            size: files.iter().map(|f| f.size).sum(),
            dir: true,
            files,
        };
        let _ = fs::write(
            self.stat_path(&out),
            serde_json::to_vec(&stats).expect("stat"),
        );
        Ok(out)
    }

    /// Renames a staged copy (a file or a folder) to `objects/<hash>/<name>`, held against gc
    /// from before it appears; when the object is there already (the same bytes, committed
    /// before or meanwhile by another process) the copy is left for the caller to remove.
    fn place(&self, staged: &Path, hash: &str, name: &str) -> Result<PathBuf, StoreError> {
        let objects = self.dir("objects")?;
        let dest = objects.join(hash).join(name);
        let _gc = self.pin("object", &[hash])?;
        if dest.exists() {
            return Ok(dest);
        }
        // An output declared in a subfolder (`sub/x.txt`) has its folders in the object.
        let parent = dest.parent().expect("inside objects/");
        fs::create_dir_all(parent).map_err(io(parent))?;
        match fs::rename(staged, &dest) {
            Ok(()) => {}
            Err(_) if dest.exists() => return Ok(dest),
            Err(e) => return Err(StoreError::io(&dest, e)),
        }
        fsync_dir(parent)?;
        fsync_dir(&objects)?;
        Ok(dest)
    }

    /// A fresh folder under `tmp/` for building what is committed next (remove it after).
    pub fn staging(&self) -> Result<PathBuf, StoreError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let d = self
            .dir("tmp")?
            .join(format!("commit-{}-{nanos}-{n}", std::process::id()));
        fs::create_dir_all(&d).map_err(io(&d))?;
        Ok(d)
    }

    /// A fresh folder for a stage to write its outputs into, removed when dropped: whichever way
    /// the stage ends (an error, a panic, a full disk at commit), its scratch does not stay.
    pub fn scratch(&self, key: &str) -> Result<Scratch, StoreError> {
        let tmp = self.dir("tmp")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let d = tmp.join(format!("{}-{}-{nanos}", &key[..16], std::process::id()));
        fs::create_dir_all(&d).map_err(io(&d))?;
        Ok(Scratch(d))
    }

    /// Copies one finished output into `objects/`, returning its record.
    pub fn commit_object(
        &self,
        scratch_file: &Path,
        file: &str,
    ) -> Result<OutputRecord, StoreError> {
        let staging = self.staging()?;
        let copy = staging.join(file);
        let committed = self.commit_copy(scratch_file, &copy, file);
        let _ = fs::remove_dir_all(&staging);
        committed
    }

    fn commit_copy(
        &self,
        scratch_file: &Path,
        copy: &Path,
        file: &str,
    ) -> Result<OutputRecord, StoreError> {
        if let Some(parent) = copy.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        copy_plain(scratch_file, copy)?;
        let (hash, size) = hash_file(copy)?;
        self.place_file(copy, file, hash, size)
    }

    /// Renames a staged, hashed, read-only file into `objects/` and keeps its stat beside it.
    fn place_file(
        &self,
        staged: &Path,
        file: &str,
        hash: String,
        size: u64,
    ) -> Result<OutputRecord, StoreError> {
        let dest = self.place(staged, &hash, file)?;
        let out = OutputRecord {
            file: file.to_string(),
            hash,
            size,
            dir: false,
            files: Vec::new(),
        };
        if let Ok(m) = fs::metadata(&dest) {
            let _ = fs::write(
                self.stat_path(&out),
                serde_json::to_vec(&ObjectStat::of(&m)).expect("stat"),
            );
        }
        Ok(out)
    }

    /// Commits a file this process wrote itself into its own staging folder (a pull's download)
    /// and has already hashed: synced, made read-only and renamed into `objects/`, not copied
    /// and hashed a second time. Never for a program's output, which is copied (see the top).
    pub fn commit_downloaded(
        &self,
        staged: &Path,
        file: &str,
        hash: &str,
        size: u64,
    ) -> Result<OutputRecord, StoreError> {
        let f = File::open(staged).map_err(io(staged))?;
        f.sync_all().map_err(io(staged))?;
        let mut perm = f.metadata().map_err(io(staged))?.permissions();
        perm.set_readonly(true);
        f.set_permissions(perm).map_err(io(staged))?;
        self.place_file(staged, file, hash.to_string(), size)
    }

    /// Writes a record atomically; it is what makes a stage's outputs count as done.
    pub fn write_record(&self, r: &Record) -> Result<(), StoreError> {
        let _gc = self.pin("record", &[&r.key])?;
        let dir = self.dir("records")?;
        let dest = self.record_path(&r.key);
        let bytes = serde_json::to_vec_pretty(r).expect("record serialises");
        write_atomic(&dir, &dest, &bytes)
    }

    pub fn ref_path(&self, variant: Option<&str>, stage: &str) -> PathBuf {
        self.root
            .join("refs")
            .join(file_safe(variant.unwrap_or("default")))
            .join(file_safe(stage))
    }

    pub fn read_ref(&self, variant: Option<&str>, stage: &str) -> Option<String> {
        fs::read_to_string(self.ref_path(variant, stage))
            .ok()
            .map(|s| s.trim().to_string())
    }

    pub fn write_ref(
        &self,
        variant: Option<&str>,
        stage: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        if self.read_ref(variant, stage).as_deref() == Some(key) {
            return Ok(());
        }
        let p = self.ref_path(variant, stage);
        let dir = p.parent().expect("ref has a folder").to_path_buf();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_atomic(&dir, &p, format!("{key}\n").as_bytes())
    }

    /// Takes the per-key lock, waiting while another process holds it.
    /// The complete record of `key` (`Hit`), or the key's lock for computing it (`Miss`):
    /// checked, locked, and checked again under the lock, since another process may have
    /// finished the key while this one waited. `force` skips the checks.
    pub fn claim(&self, key: &str, force: bool) -> Result<Claim, StoreError> {
        if !force && let Some(r) = self.complete_record(key)? {
            return Ok(Claim::Hit(Box::new(r)));
        }
        let lock = self.lock(key)?;
        if !force && let Some(r) = self.complete_record(key)? {
            return Ok(Claim::Hit(Box::new(r)));
        }
        Ok(Claim::Miss(lock))
    }

    pub fn lock(&self, key: &str) -> Result<KeyLock, StoreError> {
        let dir = self.dir("locks")?;
        let path = dir.join(format!("{key}.lock"));
        loop {
            let f = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            f.lock().map_err(io(&path))?;
            // The holder before us may have removed the file after we opened it; a lock on an
            // unlinked file excludes nobody, so retry on the file that is there now.
            let ours = f.metadata().map_err(io(&path))?.ino();
            match fs::metadata(&path) {
                Ok(m) if m.ino() == ours => {
                    let mut f = f;
                    // A holder removes its lock file on the way out, so a file that still names
                    // one was left by a process that died holding it (the kernel released the
                    // flock); say so, and take it over.
                    let mut before = String::new();
                    let _ = std::io::Read::read_to_string(&mut f, &mut before);
                    let stale = Some(before.trim().to_string()).filter(|b| !b.is_empty());
                    let _ = f.set_len(0);
                    let _ = std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0));
                    let _ = writeln!(f, "pid {} host {}", std::process::id(), hostname());
                    return Ok(KeyLock {
                        path,
                        _file: f,
                        stale,
                    });
                }
                _ => continue,
            }
        }
    }

    /// The blake3 of a raw file, from the stat cache when size, times and inode are unchanged.
    pub fn source_hash(&self, path: &Path) -> Result<(String, u64), StoreError> {
        let abs = fs::canonicalize(path).map_err(io(path))?;
        let m = fs::metadata(&abs).map_err(io(path))?;
        let stat = |hash: String| StatHash {
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            ino: m.ino(),
            hash,
        };
        {
            let cache = self.sources.lock().expect("source cache lock");
            if let Some(e) = cache.entries.get(&abs)
                && *e == stat(e.hash.clone())
            {
                return Ok((e.hash.clone(), e.size));
            }
        }
        let racy = racily_clean(&m);
        let (hash, size) = hash_file(&abs)?;
        let mut cache = self.sources.lock().expect("source cache lock");
        // A racy file is not remembered: a rewrite in the same clock tick would leave every stat
        // the same. Only a change to the entries is saved.
        let changed = if racy {
            cache.entries.remove(&abs).is_some()
        } else {
            cache.entries.insert(abs, stat(hash.clone()));
            true
        };
        cache.dirty |= changed;
        Ok((hash, size))
    }

    /// Persists the stat cache (only after a successful run, so a failed one leaves no trace).
    pub fn save_source_cache(&self) -> Result<(), StoreError> {
        let mut cache = self.sources.lock().expect("source cache lock");
        if !cache.dirty {
            return Ok(());
        }
        let dir = self.dir("cache")?;
        let bytes = serde_json::to_vec(&*cache).expect("cache serialises");
        write_atomic(&dir, &dir.join("sources.json"), &bytes)?;
        cache.dirty = false;
        Ok(())
    }

    /// Removes a stage's checkpoints once its record is written.
    pub fn remove_checkpoints(&self, dir: &Path) {
        let _ = fs::remove_dir_all(dir);
    }
}

/// How recent a change must be for its stat to prove nothing: file systems keep times in ticks of
/// up to 2 s (FAT, some NFS servers; ext4 with small inodes keeps seconds), and a file rewritten
/// in place within one tick of being hashed keeps its size, inode and times.
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a file changed too recently (or, by a skewed clock, in the future) for its stat to
/// stand for its bytes later: git's "racily clean" entries, which it likewise re-hashes.
pub(crate) fn racily_clean(m: &fs::Metadata) -> bool {
    let changed = [(m.mtime(), m.mtime_nsec()), (m.ctime(), m.ctime_nsec())]
        .into_iter()
        .map(|(s, ns)| std::time::Duration::new(s.max(0) as u64, ns.clamp(0, 999_999_999) as u32))
        .max()
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.checked_sub(changed).is_none_or(|age| age < RACY_WINDOW)
}

/// A stage's scratch folder under `tmp/`; see [`Store::scratch`].
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Scratch {
    /// Moves the folder to `to` (same file system: under the store's root) instead of removing it.
    pub fn keep(self, to: &Path) -> std::io::Result<()> {
        let from = self.0.clone();
        std::mem::forget(self);
        fs::rename(&from, to)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Held while a stage with this key runs; removed on drop.
/// What [`Store::claim`] found.
pub enum Claim {
    /// The key is done: its record, with every object present.
    Hit(Box<Record>),
    /// The key is this process's to compute; the lock is held until dropped.
    Miss(KeyLock),
}

pub struct KeyLock {
    path: PathBuf,
    _file: File,
    /// What a dead holder's lock file said (`pid N host H`), when this lock was taken over.
    pub stale: Option<String>,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock, so a waiter notices (inode check) and retries.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_changed_within_the_racy_window_is_hashed_again_not_remembered() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("store"));
        let f = d.path().join("ar.npz");
        fs::write(&f, b"first").unwrap();
        let (h1, _) = s.source_hash(&f).unwrap();
        let abs = fs::canonicalize(&f).unwrap();
        let cached = |s: &Store| s.sources.lock().unwrap().entries.contains_key(&abs);
        assert!(
            !cached(&s),
            "a file changed just now was remembered by its stat"
        );
        assert!(
            !s.sources.lock().unwrap().dirty,
            "the cache is saved again though nothing in it changed"
        );
        // Same size, same mtime: on a file system with coarse times nothing else would differ.
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        fs::write(&f, b"again").unwrap();
        File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let (h2, _) = s.source_hash(&f).unwrap();
        assert_ne!(h1, h2);
        // Once its times are older than the window, its stat stands for its bytes.
        std::thread::sleep(RACY_WINDOW + std::time::Duration::from_millis(100));
        s.source_hash(&f).unwrap();
        assert!(cached(&s));
    }

    #[test]
    fn ref_paths_stay_inside_the_store_whatever_the_variant_label() {
        let s = Store::open(Path::new("/s"));
        for label in [
            "../../etc",
            "paper+ingest.data_dir=/x/../..",
            "..",
            "a/b",
            "é/",
        ] {
            let p = s.ref_path(Some(label), "train");
            assert_eq!(p.parent().unwrap().parent().unwrap(), Path::new("/s/refs"));
            assert!(
                p.components().all(|c| c != std::path::Component::ParentDir),
                "{p:?}"
            );
        }
        assert_eq!(
            s.ref_path(Some("paper+train.seed=9"), "train"),
            Path::new("/s/refs/paper+train.seed=9/train")
        );
    }
}
