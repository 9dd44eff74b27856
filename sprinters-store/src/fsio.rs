//! The data directory's files: private modes, the directory lock, and
//! directory syncs that make new files durable.

use std::fs::File;
use std::path::Path;

use sprinters_core::{Error, Result};

/// Makes a directory's entries (new, renamed or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
        Error::unavailable(format!("syncing directory {}: {e}", dir.display())).with_source(e)
    })
}

/// Creates `dir` and its parents, mode 0700, unless it exists.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::unavailable(format!("creating {}: {e}", dir.display())).with_source(e))
}

/// Opens `path`, creating it with mode 0600 if missing; never truncates.
pub(crate) fn open_private_file(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::unavailable(format!("opening {}: {e}", path.display())).with_source(e))
}

/// Takes the data directory's lock (`dir/LOCK`) for as long as the returned
/// file is open: a second process fails at once, saying so.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let lock_path = dir.join("LOCK");
    let lock_file = open_private_file(&lock_path)?;
    if lock_file.try_lock().is_err() {
        return Err(Error::unavailable(format!(
            "another process has the store in {} open (it holds {}); stop it first",
            dir.display(),
            lock_path.display()
        )));
    }
    Ok(lock_file)
}

/// Creates `path`, mode 0600; fails if it exists (never overwrites).
pub(crate) fn create_private_file(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::config(format!("creating {}: {e}", path.display())).with_source(e))
}
