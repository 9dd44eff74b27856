//! [`SqliteJobStore`]: the embedded default `JobStore` and credential
//! vault, on SQLite (bundled, WAL, `synchronous=FULL`).
//!
//! What the file holds is what the PostgreSQL store's database holds:
//! sealed record bodies (AES-256-GCM under per-account data keys, the key
//! ring wrapped by the master key) and the columns the queries need: keyed
//! hashes of the record id, owner, account and label set, the queue time,
//! the state, and the launch claim's holder and expiry.

mod jobs;
mod keys;
mod schema;
mod tenants;
mod vault;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use sprinters_core::domain::AccountId;
use sprinters_core::{Error, Result};
use tokio::sync::oneshot;

use crate::keys::{KeyProvider, MasterKey};
use crate::latency::{SyncLatency, SyncTimer};
use keys::Keys;
use writer::{Op, Outcome, Writer};

/// The database file in a data directory.
pub const DATABASE_FILE: &str = "sprinters.db";

/// Reader connections kept for reuse; more are opened under load.
const IDLE_READERS: usize = 8;

/// The encrypted job store of one data directory, on SQLite. Cheap to
/// clone; clones share the store. Only one process may open a directory
/// (a lock file says so at once); [`backup`] reads it beside that process.
#[derive(Clone)]
pub struct SqliteJobStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteJobStore {
    /// The directory: no key, no record.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteJobStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    dir: PathBuf,
    path: PathBuf,
    // Held for the store's lifetime: the directory lock.
    _lock: File,
    ops: Mutex<std::sync::mpsc::Sender<Op>>,
    readers: Mutex<Vec<Connection>>,
    pub(crate) keys: Arc<Keys>,
    commits: Arc<AtomicU64>,
    timer: Arc<SyncTimer>,
}

/// Maps a SQLite error: a busy or locked database and I/O are retryable
/// (`Unavailable`), a full disk says so, the rest is `Integrity`.
pub(crate) fn sql_error(doing: &str, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    let message = format!("{doing}: {e}");
    let error = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::SystemIoFailure) => {
            Error::unavailable(message)
        }
        Some(ErrorCode::DiskFull) => Error::unavailable(format!("{message} (the disk is full)")),
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            Error::unavailable(message)
        }
        _ => Error::integrity(message),
    };
    error.with_source(e)
}

fn configure(conn: &Connection) -> Result<()> {
    // WAL: readers never block the writer; FULL: a commit is on disk (the
    // WAL synced) before it is acknowledged. busy_timeout covers a backup
    // or a checkpoint holding a lock for a moment.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; \
         PRAGMA foreign_keys = OFF; PRAGMA trusted_schema = OFF;",
    )
    .map_err(|e| sql_error("configuring the database", e))
}

/// A data directory written by the hand-written log of earlier builds.
fn refuse_old_layout(dir: &Path) -> Result<()> {
    if dir.join("segments").exists() || dir.join("keyring.json").exists() {
        return Err(Error::config(format!(
            "{} holds the segment-log store of Sprinters before 0.2 (segments/, keyring.json), which this build no longer reads: \
             move it aside and start with an empty data directory (finished history is not carried over; active jobs are found again by the reconciler)",
            dir.display()
        )));
    }
    Ok(())
}

impl SqliteJobStore {
    /// Opens (or creates) the store in `dir` with the master key `keys`
    /// supplies. Fails fast if another process has it open, if the key
    /// does not open its key ring, or if the directory holds an older
    /// build's store.
    pub async fn open(dir: impl AsRef<Path>, keys: &dyn KeyProvider) -> Result<Self> {
        let master = keys.master_key().await?;
        let dir = dir.as_ref().to_owned();
        tokio::task::spawn_blocking(move || Self::open_with_key(&dir, &master))
            .await
            .map_err(|e| Error::unavailable(format!("opening the store: {e}")))?
    }

    /// [`SqliteJobStore::open`] with the key in hand (blocking).
    pub fn open_with_key(dir: &Path, master: &MasterKey) -> Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Error::unavailable(format!("creating {}: {e}", dir.display())).with_source(e)
            })?;
        refuse_old_layout(dir)?;
        let lock_path = dir.join("LOCK");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| {
                Error::unavailable(format!("opening {}: {e}", lock_path.display())).with_source(e)
            })?;
        if lock_file.try_lock().is_err() {
            return Err(Error::unavailable(format!(
                "another process has the store in {} open (it holds {}); stop it first",
                dir.display(),
                lock_path.display()
            )));
        }
        let path = dir.join(DATABASE_FILE);
        // Created 0600 before SQLite sees it: its WAL and shared-memory
        // files take the database file's mode.
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                Error::unavailable(format!("creating {}: {e}", path.display())).with_source(e)
            })?;
        let conn = Connection::open(&path)
            .map_err(|e| sql_error(&format!("opening {}", path.display()), e))?;
        configure(&conn)?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| sql_error("starting to open the store", e))?;
        let opened = schema::migrate(&conn).and_then(|()| Keys::open(&conn, master));
        let keys = match opened {
            Ok(keys) => keys,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        conn.execute_batch("COMMIT")
            .map_err(|e| sql_error("opening the store", e))?;
        let keys = Arc::new(keys);
        let commits = Arc::new(AtomicU64::new(0));
        let timer = Arc::new(SyncTimer::default());
        let ops = writer::spawn(conn, keys.clone(), commits.clone(), timer.clone())?;
        Ok(SqliteJobStore {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                path,
                _lock: lock_file,
                ops: Mutex::new(ops),
                readers: Mutex::new(Vec::new()),
                keys,
                commits,
                timer,
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// How many transactions committed since open: with concurrent
    /// writers, far fewer than the writes (group commit).
    pub fn syncs(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// How long those transactions took to commit, as a histogram.
    pub fn sync_latency(&self) -> SyncLatency {
        self.inner.timer.snapshot()
    }

    /// How many job records the store holds (a count over the table).
    pub async fn job_count(&self) -> Result<u64> {
        self.read(|conn, _| {
            conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
                .map_err(|e| sql_error("counting jobs", e))
        })
        .await
    }

    /// Runs `f` on the writer thread inside the next batch's transaction.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Outcome<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(writer::op(f, tx))
            .map_err(|_| Error::unavailable("the store's writer has stopped"))?;
        rx.await
            .map_err(|_| Error::unavailable("the store's writer has stopped"))?
    }

    /// Runs `f` on a reader connection, on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Keys) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.reader()?;
            let result = f(&conn, &inner.keys);
            let mut idle = inner.readers.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::unavailable(format!("reading the store: {e}")))?
    }

    /// Re-wraps every data key under `new`, without rewriting any record.
    /// Open the store with `new` from then on.
    pub async fn rotate_master_key(&self, new: &MasterKey) -> Result<()> {
        let new = Cipher::new(new.bytes());
        self.write(move |w| {
            let rows: Vec<(u32, String, String)> = {
                let mut s = w
                    .conn
                    .prepare("SELECT id, scope, wrapped FROM data_keys WHERE wrapped IS NOT NULL")
                    .map_err(|e| sql_error("reading the data keys", e))?;
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .and_then(|rows| rows.collect())
                    .map_err(|e| sql_error("reading the data keys", e))?
            };
            for (id, scope, wrapped) in rows {
                let raw = w.keys.unwrap_raw(id, &scope, &wrapped)?;
                let (n, ct) = new.seal(&crate::keyring::wrap_aad(id, &scope), raw.as_ref());
                w.conn
                    .execute(
                        "UPDATE data_keys SET wrapped = ?2 WHERE id = ?1",
                        rusqlite::params![id, crate::keyring::encode(&n, &ct)],
                    )
                    .map_err(|e| sql_error("re-wrapping a data key", e))?;
            }
            let (n, ct) = new.seal(b"check", crate::keyring::CHECK);
            let index = w.keys.index_key_sealed_by(&new);
            w.conn
                .execute(
                    "UPDATE keyring SET check_sealed = ?1, index_key_sealed = ?2 WHERE id = 1",
                    rusqlite::params![crate::keyring::encode(&n, &ct), index],
                )
                .map_err(|e| sql_error("re-wrapping the key ring", e))?;
            w.set_master(new);
            Ok(Ok(()))
        })
        .await
    }

    /// Starts a new data key for `account` (`None`: records of no account).
    /// New writes use it; older records stay readable under their key.
    pub async fn rotate_data_key(&self, account: Option<&AccountId>) -> Result<()> {
        let scope = self.inner.keys.scope_of(account);
        self.write(move |w| w.rotate(&scope).map(|_| Ok(()))).await
    }

    /// Crypto-shredding: destroys every data key of `account` and deletes
    /// its job records and stored access keys: nobody can read them any
    /// more, even from a backup of the file. Returns the job records
    /// deleted.
    pub async fn delete_account(&self, account: &AccountId) -> Result<usize> {
        let scope = self.inner.keys.scope_of(Some(account));
        let account_h = self
            .inner
            .keys
            .opaque("account", account.as_str().as_bytes())
            .to_vec();
        self.write(move |w| {
            let ids: Vec<u32> = {
                let mut s = w
                    .conn
                    .prepare("SELECT id FROM data_keys WHERE scope = ?1 AND wrapped IS NOT NULL")
                    .map_err(|e| sql_error("reading the data keys", e))?;
                s.query_map([&scope], |r| r.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(|e| sql_error("reading the data keys", e))?
            };
            w.conn
                .execute(
                    "UPDATE data_keys SET wrapped = NULL, active = 0 WHERE scope = ?1",
                    [&scope],
                )
                .map_err(|e| sql_error("destroying data keys", e))?;
            let jobs = w
                .conn
                .execute("DELETE FROM jobs WHERE account_h = ?1", [&account_h])
                .map_err(|e| sql_error("deleting an account's jobs", e))?;
            w.conn
                .execute("DELETE FROM vault WHERE account_h = ?1", [&account_h])
                .map_err(|e| sql_error("deleting an account's access keys", e))?;
            for id in ids {
                w.destroy_key(id);
            }
            w.forget_scope(&scope);
            tracing::info!(jobs, "account's data keys destroyed");
            Ok(Ok(jobs))
        })
        .await
    }

    /// An online copy of the whole store into `to` (which must not exist),
    /// through SQLite's backup API while the store keeps serving. The copy
    /// is as encrypted as the store; it opens with the same master key.
    pub async fn backup(&self, to: impl AsRef<Path>) -> Result<BackupReport> {
        let from = self.inner.path.clone();
        let to = to.as_ref().to_owned();
        tokio::task::spawn_blocking(move || backup_file(&from, &to))
            .await
            .map_err(|e| Error::unavailable(format!("backing up the store: {e}")))?
    }
}

/// What a backup copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// Database pages copied.
    pub pages: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Copies the store in `data_dir` to `to` (blocking) while another process
/// (`serve`) has it open: SQLite's online backup, page by page, restarting
/// where a write changed a page already copied. Needs no key: it copies
/// ciphertext. `to` must not exist.
pub fn backup(data_dir: &Path, to: &Path) -> Result<BackupReport> {
    refuse_old_layout(data_dir)?;
    backup_file(&data_dir.join(DATABASE_FILE), to)
}

fn backup_file(from: &Path, to: &Path) -> Result<BackupReport> {
    use std::os::unix::fs::OpenOptionsExt;
    if !from.exists() {
        return Err(Error::not_found(format!(
            "no store at {} (is --data-dir right?)",
            from.display()
        )));
    }
    // Created here, 0600 and new: a backup never overwrites a file, and
    // is never readable by others.
    File::options()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| {
            Error::config(format!("creating the backup {}: {e}", to.display())).with_source(e)
        })?;
    let source = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error(&format!("opening {}", from.display()), e))?;
    source
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| sql_error("configuring the backup", e))?;
    let mut dest =
        Connection::open(to).map_err(|e| sql_error(&format!("opening {}", to.display()), e))?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut dest)
            .map_err(|e| sql_error("starting the backup", e))?;
        backup
            .run_to_completion(256, std::time::Duration::from_millis(5), None)
            .map_err(|e| sql_error("copying the store", e))?;
    }
    let pages: u64 = dest
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| sql_error("reading the backup", e))?;
    let size: u64 = dest
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| sql_error("reading the backup", e))?;
    drop(dest);
    File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::unavailable(format!("syncing {}: {e}", to.display())))?;
    Ok(BackupReport {
        pages,
        bytes: pages * size,
    })
}

impl Inner {
    fn reader(&self) -> Result<Connection> {
        if let Some(conn) = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_error("opening a reader", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| sql_error("configuring a reader", e))?;
        Ok(conn)
    }
}

use crate::crypto::Cipher;

pub(crate) fn millis(t: sprinters_core::time::Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}
