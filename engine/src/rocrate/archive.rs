//! A crate as one zip file (what Zenodo and WorkflowHub take as an upload): written from a crate
//! folder, and opened back into a private folder for `verify` and `import`. The metadata file
//! goes first and sits at the root of the archive, as the RO-Crate spec's zip convention asks.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{CrateError, io};

const METADATA: &str = "ro-crate-metadata.json";

fn bad(zip: &Path, why: impl std::fmt::Display) -> CrateError {
    CrateError::Refused(format!("{}: {why}", zip.display()))
}

/// Every regular file under `dir`, as paths relative to it, the metadata file first and the rest
/// sorted (so two exports of one lineage give the same member order).
fn members(dir: &Path) -> Result<Vec<String>, CrateError> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<String>) -> Result<(), CrateError> {
        for e in std::fs::read_dir(at).map_err(io(at))? {
            let e = e.map_err(io(at))?;
            let path = e.path();
            let t = e.file_type().map_err(io(&path))?;
            if t.is_dir() {
                walk(root, &path, out)?;
            } else if t.is_file() {
                let rel = path.strip_prefix(root).expect("under root");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| (a != METADATA, a).cmp(&(b != METADATA, b)));
    Ok(out)
}

/// Writes the crate folder `dir` as the zip `zip`: beside it under a temporary name, then
/// renamed, so a crash never leaves a half archive under the name asked for.
pub fn write_zip(dir: &Path, zip: &Path) -> Result<u64, CrateError> {
    if zip.exists() {
        return Err(CrateError::Refused(format!(
            "{} exists: a crate is written to a new file",
            zip.display()
        )));
    }
    let parent = zip
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".magpipe-crate-")
        .suffix(".zip.tmp")
        .tempfile_in(parent)
        .map_err(io(parent))?;
    let mut w = zip::ZipWriter::new(tmp.reopen().map_err(io(tmp.path()))?);
    for rel in members(dir)? {
        let path = dir.join(&rel);
        let options = zip::write::FileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644)
            .large_file(std::fs::metadata(&path).map_err(io(&path))?.len() >= u32::MAX as u64);
        w.start_file(rel.as_str(), options)
            .map_err(|e| bad(zip, e))?;
        let mut f = File::open(&path).map_err(io(&path))?;
        std::io::copy(&mut f, &mut w).map_err(io(&path))?;
    }
    let mut f = w.finish().map_err(|e| bad(zip, e))?;
    f.flush().map_err(io(tmp.path()))?;
    f.sync_all().map_err(io(tmp.path()))?;
    let size = f.metadata().map_err(io(tmp.path()))?.len();
    // A temporary file is private (0600); a crate is made to be shared.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(io(tmp.path()))?;
    }
    tmp.persist_noclobber(zip).map_err(|e| io(zip)(e.error))?;
    Ok(size)
}

/// A crate ready to read: the folder given, or a zip unpacked into a private folder that lives
/// as long as this does.
pub struct Opened {
    pub dir: PathBuf,
    _unpacked: Option<tempfile::TempDir>,
}

/// Opens a crate folder as it is, or a crate zip by unpacking it. An archive member that would
/// land outside the folder (an absolute path, `..`), a link, a member whose bytes disagree with
/// the size its header declares, or an archive without the metadata file is refused, naming the
/// zip.
pub fn open(path: &Path) -> Result<Opened, CrateError> {
    let m = std::fs::metadata(path).map_err(io(path))?;
    if m.is_dir() {
        return Ok(Opened {
            dir: path.to_path_buf(),
            _unpacked: None,
        });
    }
    let file = File::open(path).map_err(io(path))?;
    let mut ar = zip::ZipArchive::new(file).map_err(|e| bad(path, format!("not a zip: {e}")))?;
    let tmp = tempfile::Builder::new()
        .prefix("magpipe-crate-")
        .tempdir()
        .map_err(io(&std::env::temp_dir()))?;
    fits(path, &mut ar, tmp.path())?;
    for i in 0..ar.len() {
        let mut m = ar.by_index(i).map_err(|e| bad(path, e))?;
        let name = m.name().to_string();
        let Some(rel) = m.enclosed_name().map(Path::to_path_buf) else {
            return Err(bad(
                path,
                format!("member `{name}` lands outside the crate"),
            ));
        };
        // A link in a crate could point anywhere on the reader's disk.
        if m.unix_mode()
            .is_some_and(|mode| mode & 0o170000 == 0o120000)
        {
            return Err(bad(path, format!("member `{name}` is a link")));
        }
        let dest = tmp.path().join(&rel);
        if m.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io(&dest))?;
            continue;
        }
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(io(p))?;
        }
        let declared = m.size();
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    bad(path, format!("member `{name}` appears twice"))
                }
                _ => io(&dest)(e),
            })?;
        // Never more than the header declares: an archive that inflates past it is refused
        // instead of filling the disk.
        let copied = std::io::copy(&mut (&mut m).take(declared + 1), &mut out)
            .map_err(|e| bad(path, format!("member `{name}`: {e}")))?;
        if copied != declared {
            return Err(bad(
                path,
                format!("member `{name}` holds {copied} bytes, its header says {declared}"),
            ));
        }
    }
    let root = crate_root(tmp.path())
        .ok_or_else(|| bad(path, format!("no {METADATA} at its root: not an RO-Crate")))?;
    Ok(Opened {
        dir: root,
        _unpacked: Some(tmp),
    })
}

/// Refuses an archive whose members declare more bytes than the unpacking folder's disk has
/// free, before any is written: a crate is unpacked whole, and members are held to what they
/// declare, so this bounds what opening a zip can take.
fn fits(zip: &Path, ar: &mut zip::ZipArchive<File>, dir: &Path) -> Result<(), CrateError> {
    let mut declared = 0u64;
    for i in 0..ar.len() {
        let m = ar.by_index_raw(i).map_err(|e| bad(zip, e))?;
        declared = declared.saturating_add(m.size());
    }
    let free = free_bytes(dir).map_err(io(dir))?;
    if declared > free {
        return Err(bad(
            zip,
            format!(
                "its members declare {declared} bytes, more than the {free} free in {}",
                dir.display()
            ),
        ));
    }
    Ok(())
}

fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The metadata file at the archive's root, or in its one top folder (how some tools zip a
/// folder).
fn crate_root(dir: &Path) -> Option<PathBuf> {
    if dir.join(METADATA).is_file() {
        return Some(dir.to_path_buf());
    }
    let mut entries = std::fs::read_dir(dir).ok()?.filter_map(Result::ok);
    let only = entries.next()?;
    if entries.next().is_some() || !only.path().join(METADATA).is_file() {
        return None;
    }
    Some(only.path())
}
