//! The data directory: created 0700 when missing.

use std::path::Path;

/// Creates `dir` (and its parents) with mode 0700 unless it exists.
pub fn create(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))
}
