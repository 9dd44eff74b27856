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

/// This replica's id, kept in `dir/replica-id` (made once, mode 0600), and
/// the lock on `dir/replica.lock` that makes it this process's alone while
/// it is held. A replica restarted with the same data directory is the
/// same replica: it takes its own launch claims and the reconciler's lease
/// back at once instead of waiting them out. Two processes sharing one
/// data directory would share the id, so the second is refused.
pub fn replica_id(dir: &Path) -> Result<(String, std::fs::File), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let lock_path = dir.join("replica.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        return Err(format!(
            "another replica runs with the data directory {} (it holds {}): give each replica its own",
            dir.display(),
            lock_path.display()
        ));
    }
    let path = dir.join("replica-id");
    let valid =
        |id: &str| (8..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit());
    match std::fs::read_to_string(&path) {
        Ok(text) if valid(text.trim()) => return Ok((text.trim().to_owned(), lock)),
        Ok(_) => {
            return Err(format!(
                "{} does not hold a replica id (16 hex digits); delete it to make a new one",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    }
    let id = format!("{:016x}", fastrand::u64(..));
    std::fs::File::options()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(format!("{id}\n").as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    Ok((id, lock))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_replica_keeps_its_id_across_restarts_and_never_shares_it() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        create(&a).unwrap();
        create(&b).unwrap();
        let (id, lock) = replica_id(&a).unwrap();
        let err = replica_id(&a).unwrap_err();
        assert!(err.contains("another replica runs"), "{err}");
        drop(lock);
        let (again, _lock) = replica_id(&a).unwrap();
        assert_eq!(again, id, "restarted: the same replica");
        let (other, _other_lock) = replica_id(&b).unwrap();
        assert_ne!(other, id, "another data directory, another replica");
    }
}
