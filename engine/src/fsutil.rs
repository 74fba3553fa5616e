//! File-system helpers shared by the store and the executors: atomic writes that survive a
//! crash or a full disk, and this machine's name.

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
