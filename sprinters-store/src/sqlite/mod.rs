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
mod spares;
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

use crate::fsio;
use crate::keys::{KeyProvider, MasterKey};
use crate::latency::{SyncLatency, SyncTimer};
use keys::Keys;
use writer::{Op, Writer};

/// The database file in a data directory.
pub const DATABASE_FILE: &str = "sprinters.db";

/// Reader connections kept for reuse; more are opened under load.
const IDLE_READERS: usize = 8;

/// The encrypted job store of one data directory, on SQLite. Cheap to
/// clone; clones share the store. Only one process may open a directory
/// (a lock file says so at once); [`backup`] reads it beside that process.
///
/// ```no_run
/// use std::sync::Arc;
/// use sprinters_core::ports::DynJobStore;
/// use sprinters_store::{FileKeyProvider, SqliteJobStore};
///
/// # async fn open() -> sprinters_core::Result<()> {
/// // The master key file (mode 0600) seals every account's data keys.
/// let keys = FileKeyProvider::new("/var/lib/sprinters/master.key");
/// let store = SqliteJobStore::open("/var/lib/sprinters", &keys).await?;
/// let jobs: DynJobStore = Arc::new(store.clone()); // and the vault: Arc::new(store)
/// # let _ = jobs;
/// # Ok(())
/// # }
/// ```
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
    /// To the writer; taken on drop so that the writer stops.
    ops: Option<std::sync::mpsc::SyncSender<Op>>,
    writer: Option<std::thread::JoinHandle<()>>,
    // Held for the store's lifetime: the directory lock. Dropped after the
    // writer has stopped (fields drop after `Drop::drop`).
    _lock: File,
    readers: Mutex<Vec<Connection>>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) spares: Arc<spares::SpareCounts>,
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
    // or a checkpoint holding a lock for a moment. secure_delete: deleted
    // rows and destroyed keys are overwritten with zeros in the file, not
    // left in free space for anyone with the file and the master key.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; \
         PRAGMA secure_delete = ON; PRAGMA foreign_keys = OFF; PRAGMA trusted_schema = OFF;",
    )
    .map_err(|e| sql_error("configuring the database", e))
}

/// A data directory written by the hand-written log of earlier builds.
fn refuse_old_layout(dir: &Path) -> Result<()> {
    if dir.join("segments").exists() || dir.join("keyring.json").exists() {
        return Err(Error::config(format!(
            "{} holds the segment-log store of earlier builds (segments/, keyring.json), which the SQLite store does not read: \
             move it aside and start with an empty data directory (its history is not carried over)",
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
        refuse_old_layout(dir)?;
        fsio::create_private_dir(dir)?;
        let lock_file = fsio::lock_dir(dir)?;
        let path = dir.join(DATABASE_FILE);
        // Created 0600 before SQLite sees it: its WAL and shared-memory
        // files take the database file's mode.
        fsio::open_private_file(&path)?;
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
        // The writer runs a dozen statements per kind of write; rusqlite's
        // default cache of 16 would evict and re-parse them.
        conn.set_prepared_statement_cache_capacity(64);
        let keys = Arc::new(keys);
        let spares = Arc::new(spares::SpareCounts::load(&conn)?);
        let commits = Arc::new(AtomicU64::new(0));
        let timer = Arc::new(SyncTimer::default());
        // The checkpointer's own connection: it writes the database file,
        // never a transaction.
        let checkpoints = Connection::open(&path)
            .map_err(|e| sql_error(&format!("opening {}", path.display()), e))?;
        configure(&checkpoints)?;
        let (ops, writer) = writer::spawn(
            conn,
            checkpoints,
            keys.clone(),
            spares.clone(),
            commits.clone(),
            timer.clone(),
        )?;
        Ok(SqliteJobStore {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                path,
                ops: Some(ops),
                writer: Some(writer),
                _lock: lock_file,
                readers: Mutex::new(Vec::new()),
                keys,
                spares,
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
        f: impl FnOnce(&mut Writer) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let ops = self
            .inner
            .ops
            .as_ref()
            .ok_or_else(|| Error::unavailable("the store is closing"))?;
        ops.try_send(writer::op(f, tx)).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => Error::unavailable(format!(
                "the store is overloaded: {} writes are waiting",
                writer::QUEUE
            )),
            std::sync::mpsc::TrySendError::Disconnected(_) => {
                Error::unavailable("the store's writer has stopped")
            }
        })?;
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
            Ok(())
        })
        .await
    }

    /// Starts a new data key for `account` (`None`: records of no account).
    /// New writes use it; older records stay readable under their key.
    pub async fn rotate_data_key(&self, account: Option<&AccountId>) -> Result<()> {
        let scope = self.inner.keys.scope_of(account);
        self.write(move |w| w.rotate(&scope).map(|_| ())).await
    }

    /// Starts new data keys for every scope that has one: new records use
    /// them, older ones stay readable. Returns the keys retired.
    pub async fn rotate_data_keys(&self) -> Result<u64> {
        self.write(move |w| {
            let scopes: Vec<String> = {
                let mut s = w
                    .conn
                    .prepare("SELECT scope FROM data_keys WHERE active")
                    .map_err(|e| sql_error("reading the data keys", e))?;
                s.query_map([], |r| r.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(|e| sql_error("reading the data keys", e))?
            };
            for scope in &scopes {
                w.rotate(scope)?;
            }
            Ok(scopes.len() as u64)
        })
        .await
    }

    /// Crypto-shredding: destroys every data key of `account` and deletes
    /// its job records and stored access keys, zeroing them in the file
    /// and emptying the WAL: nobody can read them any more from the file
    /// or a backup taken afterwards (a backup taken before still holds the
    /// keys, wrapped by the master key). Returns the job records deleted.
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
            // The WAL still holds the pages as they were: emptied once
            // this commits.
            w.truncate_wal = true;
            w.recount_spares = true;
            w.forget_scope(&scope);
            tracing::info!(jobs, "account's data keys destroyed");
            Ok(jobs)
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

/// Copies the store in `data_dir` to `to` (blocking), while another process
/// (`serve`) has it open or not: SQLite's online backup, every page in one
/// step under one read snapshot. Needs no key: it copies ciphertext. `to`
/// must not exist.
pub fn backup(data_dir: &Path, to: &Path) -> Result<BackupReport> {
    refuse_old_layout(data_dir)?;
    backup_file(&data_dir.join(DATABASE_FILE), to)
}

fn backup_file(from: &Path, to: &Path) -> Result<BackupReport> {
    if !from.exists() {
        return Err(Error::not_found(format!(
            "no store at {} (is --data-dir right?)",
            from.display()
        )));
    }
    // Created here, 0600 and new: a backup never overwrites a file, and
    // is never readable by others.
    fsio::create_private_file(to)?;
    let copied = copy_database(from, to);
    if copied.is_err() {
        // Nothing half-copied stays behind to be taken for a backup.
        let _ = std::fs::remove_file(to);
    }
    copied
}

fn copy_database(from: &Path, to: &Path) -> Result<BackupReport> {
    use rusqlite::backup::StepResult;
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
        // All pages in one step, under one read snapshot: a copy made in
        // steps restarts whenever the writer commits, and behind a busy
        // serve might never finish. Busy: the writer holds the lock for
        // an instant (a checkpoint); asked again.
        let mut done = false;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(30) {
            match backup
                .step(-1)
                .map_err(|e| sql_error("copying the store", e))?
            {
                StepResult::Done => {
                    done = true;
                    break;
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        if !done {
            return Err(Error::unavailable(format!(
                "{} stayed locked for 30 s: try the backup again",
                from.display()
            )));
        }
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
    // The new file's directory entry too.
    let parent = to.parent().filter(|p| !p.as_os_str().is_empty());
    fsio::sync_dir(parent.unwrap_or(Path::new(".")))?;
    Ok(BackupReport {
        pages,
        bytes: pages * size,
    })
}

impl Drop for Inner {
    /// Stops the writer once it has committed what was queued, and only
    /// then lets the directory lock go: another process never writes while
    /// this one's writer still does. The wait is the last batch's commit.
    fn drop(&mut self) {
        drop(self.ops.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use sprinters_core::ports::{JobStore, PutJob};
    use sprinters_core::testing::sample_record;

    fn account_record(id: u64, account: &str) -> sprinters_core::job::JobRecord {
        let mut r = sample_record(id, "octo/app", id);
        r.account = AccountId::parse(account).ok();
        r
    }

    /// SQLite's automatic checkpoint is off on the writer's connection:
    /// checkpoints run beside it, and the writer makes one itself when
    /// they fall behind. Written one at a time or by many writers at once,
    /// the WAL stays within a few thousand pages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_without_automatic_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
        let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
        let frame = 4096 + 24;
        let mut largest = 0;
        for id in 0..1_500u64 {
            store
                .put_job(PutJob::create(account_record(id, "111111111111")))
                .await
                .unwrap();
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        assert!(
            largest < 6_000 * frame,
            "written one at a time, the WAL grew to {} pages",
            largest / frame
        );
        let writers: Vec<_> = (0..32u64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0..200u64 {
                        let id = 10_000 + w * 1_000 + n;
                        store
                            .put_job(PutJob::create(account_record(id, "111111111111")))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        assert!(
            largest < 6_000 * frame,
            "written by 32 at once, the WAL grew to {} pages",
            largest / frame
        );
    }

    /// A data key seals at most `SEALS_PER_KEY` bodies (5 in tests): the
    /// next seal of its scope takes a new key, and every body sealed under
    /// the retired ones still opens, before and after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_data_key_is_retired_at_its_seal_limit_and_still_opens_old_records() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let account = AccountId::parse("111111111111").unwrap();
        let jobs = 3 * crate::keyring::SEALS_PER_KEY + 1;
        let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
        let scope = store.inner.keys.scope_of(Some(&account));
        for id in 1..=jobs {
            store
                .put_job(PutJob::create(account_record(id, account.as_str())))
                .await
                .unwrap();
        }
        let keys_of_scope = |store: &SqliteJobStore| {
            let conn = rusqlite::Connection::open(store.inner.path.clone()).unwrap();
            conn.query_row(
                "SELECT COUNT(*), SUM(active) FROM data_keys WHERE scope = ?1",
                [&scope],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .unwrap()
        };
        assert_eq!(
            keys_of_scope(&store),
            (4, 1),
            "{jobs} seals at 5 a key: four keys, one of them active"
        );
        let job = |id| {
            sprinters_core::domain::JobKey::new(
                sprinters_core::domain::JobId::new(id),
                sprinters_core::domain::RunAttempt::FIRST,
            )
        };
        for id in 1..=jobs {
            assert!(store.get_job(job(id)).await.unwrap().is_some(), "job {id}");
        }
        drop(store);
        let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
        for id in 1..=jobs {
            assert!(
                store.get_job(job(id)).await.unwrap().is_some(),
                "job {id} after a reopen"
            );
        }
    }

    /// A write that changes the key state and then fails (or panics) is
    /// rolled back alone: its key is forgotten, the writes beside it in
    /// the batch commit, and everything reads back after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_is_rolled_back_alone_with_its_key_changes() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
        let account = AccountId::parse("111111111111").unwrap();
        let scope = store.inner.keys.scope_of(Some(&account));
        let doomed = {
            let scope = scope.clone();
            store.write(move |w| {
                let (id, _) = w.rotate(&scope)?;
                w.conn
                    .execute(
                        "INSERT INTO leases (name, holder, expires_at) VALUES ('x', 'y', 1)",
                        [],
                    )
                    .map_err(|e| sql_error("test", e))?;
                Err::<u32, _>(Error::integrity(format!("failing after creating key {id}")))
            })
        };
        let panicking = {
            let scope = scope.clone();
            store.write(move |w| -> Result<()> {
                w.rotate(&scope)?;
                panic!("a bug in a write");
            })
        };
        let beside = store.put_job(PutJob::create(account_record(1, "111111111111")));
        let (doomed, panicking, beside) = tokio::join!(doomed, panicking, beside);
        assert!(doomed.unwrap_err().to_string().contains("failing after"));
        assert!(panicking.unwrap_err().to_string().contains("panicked"));
        beside.unwrap();
        // Only the key the successful write made is known and stored.
        let stored: u32 = store
            .read(|conn, _| {
                conn.query_row("SELECT count(*) FROM data_keys", [], |r| r.get(0))
                    .map_err(|e| sql_error("test", e))
            })
            .await
            .unwrap();
        assert_eq!(stored, 1, "the failed writes' keys were rolled back");
        let leases: u32 = store
            .read(|conn, _| {
                conn.query_row("SELECT count(*) FROM leases", [], |r| r.get(0))
                    .map_err(|e| sql_error("test", e))
            })
            .await
            .unwrap();
        assert_eq!(leases, 0, "the failed write's row was rolled back");
        store
            .put_job(PutJob::create(account_record(2, "111111111111")))
            .await
            .unwrap();
        drop(store);
        let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
        for id in [1, 2] {
            let key = sprinters_core::domain::JobKey::new(
                sprinters_core::domain::JobId::new(id),
                sprinters_core::domain::RunAttempt::FIRST,
            );
            assert!(store.get_job(key).await.unwrap().is_some(), "job {id}");
        }
    }
}
