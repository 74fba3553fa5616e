//! A remote in a folder: a shared file system (NFS, Lustre) or a local disk. Every write goes to
//! a temporary file in the remote's own `tmp/`, is synced, then hard-linked into place: `link`
//! is atomic and fails with "exists" when the name is taken, so a create-only write needs no
//! lock, a reader sees a whole file or none, and two writers of one name leave one copy.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Backend, Put, RemoteError};

pub struct Folder {
    root: PathBuf,
}

impl Folder {
    pub fn new(root: &Path) -> Folder {
        Folder {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn err(&self, path: &Path, e: std::io::Error) -> RemoteError {
        RemoteError::Io(format!("{}: {e}", path.display()))
    }

    /// A fresh temporary name in the remote's `tmp/` (same file system as the final name).
    fn temp(&self) -> Result<PathBuf, RemoteError> {
        let dir = self.root.join("tmp");
        fs::create_dir_all(&dir).map_err(|e| self.err(&dir, e))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(dir.join(
            format!(
                "{}-{}-{nanos}-{:?}.part",
                crate::fsutil::hostname(),
                std::process::id(),
                std::thread::current().id()
            )
            .replace(['(', ')'], ""),
        ))
    }

    /// Links a finished temporary file to `key` unless the name is taken.
    fn publish(&self, tmp: &Path, key: &str) -> Result<Put, RemoteError> {
        let dest = self.path(key);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| self.err(parent, e))?;
        }
        let _ = fs::set_permissions(tmp, fs::Permissions::from_mode(0o444));
        let mut linked = fs::hard_link(tmp, &dest);
        // A concurrent gc may have removed the record folder, empty, since it was made.
        if matches!(&linked, Err(e) if e.kind() == std::io::ErrorKind::NotFound)
            && let Some(parent) = dest.parent()
        {
            linked = fs::create_dir_all(parent).and_then(|()| fs::hard_link(tmp, &dest));
        }
        let _ = fs::remove_file(tmp);
        match linked {
            Ok(()) => {
                if let Some(parent) = dest.parent() {
                    let _ = File::open(parent).and_then(|d| d.sync_all());
                }
                Ok(Put::Created)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Put::Existed),
            Err(e) => Err(self.err(&dest, e)),
        }
    }
}

impl Backend for Folder {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn check(&self) -> Result<(), RemoteError> {
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(RemoteError::Io(format!(
                "{} is not a folder",
                self.root.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RemoteError::Unreachable(
                format!("{}: no such folder", self.root.display()),
            )),
            Err(e) => Err(self.err(&self.root, e)),
        }
    }

    fn exists(&self, key: &str) -> Result<bool, RemoteError> {
        let p = self.path(key);
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        let p = self.path(key);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    fn get_file(&self, key: &str, dest: &Path) -> Result<bool, RemoteError> {
        let p = self.path(key);
        match fs::copy(&p, dest) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<Put, RemoteError> {
        if self.exists(key)? {
            return Ok(Put::Existed);
        }
        let tmp = self.temp()?;
        let copied = fs::copy(src, &tmp)
            .and_then(|_| File::open(&tmp)?.sync_all())
            .map_err(|e| self.err(&tmp, e));
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.publish(&tmp, key)
    }

    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<Put, RemoteError> {
        if self.exists(key)? {
            return Ok(Put::Existed);
        }
        let tmp = self.temp()?;
        let written = File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(bytes)?;
                f.sync_all()
            })
            .map_err(|e| self.err(&tmp, e));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.publish(&tmp, key)
    }

    fn list_times(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, RemoteError> {
        let mut out = Vec::new();
        for name in self.list(prefix)? {
            let p = self.path(&name);
            match fs::symlink_metadata(&p).and_then(|m| m.modified()) {
                Ok(t) => out.push((name, t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err(&p, e)),
            }
        }
        Ok(out)
    }

    fn put_replace(&self, key: &str, bytes: &[u8]) -> Result<(), RemoteError> {
        let tmp = self.temp()?;
        let dest = self.path(key);
        let written = File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(bytes)?;
                f.sync_all()
            })
            .and_then(|()| {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::rename(&tmp, &dest)
            })
            .map_err(|e| self.err(&dest, e));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    fn delete(&self, key: &str) -> Result<(), RemoteError> {
        let p = self.path(key);
        match fs::remove_file(&p) {
            Ok(()) => {
                // A key's record folder goes with its last record (it fails while not empty).
                if key.starts_with("ac/")
                    && let Some(parent) = p.parent().filter(|d| *d != self.root.join("ac"))
                {
                    let _ = fs::remove_dir(parent);
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        let dir = self.path(prefix);
        let mut out = Vec::new();
        let mut todo = vec![dir.clone()];
        while let Some(d) = todo.pop() {
            let entries = match fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err(&d, e)),
            };
            for e in entries {
                let e = e.map_err(|e| self.err(&d, e))?;
                let p = e.path();
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    todo.push(p);
                } else if let Ok(rel) = p.strip_prefix(&self.root) {
                    out.push(rel.to_string_lossy().to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}
