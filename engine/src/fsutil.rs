//! File-system helpers shared by the store, its leases and the executors: atomic writes that
//! survive a crash or a full disk, this machine's name, names made safe as path components.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::StoreError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::io(path, e)
}

/// Makes a folder's entries (a rename into it) durable.
pub fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

/// tmp → write → fsync → rename → fsync the folder; a failed write leaves nothing behind.
pub fn write_atomic(dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("x"),
        std::process::id()
    ));
    let written = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(io(&tmp))
        .and_then(|()| fs::rename(&tmp, dest).map_err(io(dest)));
    if written.is_err() {
        // A full disk must not leave the half-written file behind to fill it further.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    fsync_dir(dir)
}

/// This machine's name, for lock files and job results.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A name that becomes one path component (a sweep's variant label carries `--set` values,
/// `paper+ingest.data_dir=/x`; a host name): percent-encode anything that could leave the
/// folder it names.
pub fn file_safe(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        let plain = c.is_ascii_alphanumeric() || "_-+=,@".contains(c) || (c == '.' && i > 0);
        if plain {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}
