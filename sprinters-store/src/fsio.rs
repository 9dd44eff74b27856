//! Durable file operations: a metadata file changes by write-to-temp,
//! fsync, rename, fsync of the directory, so a crash leaves the old or the
//! new version, never a mix.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use sprinters_core::{Error, Result};

/// Replaces `path` with `bytes` atomically and durably.
pub(crate) fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what: &str, e: std::io::Error| {
        Error::unavailable(format!("{what} {}: {e}", path.display())).with_source(e)
    };
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("creating a temporary file for", e))?;
    file.write_all(bytes).map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming into", e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes a directory's entries (new, renamed or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
        Error::unavailable(format!("syncing directory {}: {e}", dir.display())).with_source(e)
    })
}
