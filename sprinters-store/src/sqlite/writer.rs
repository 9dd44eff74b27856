//! The one writer: a thread that owns the writing connection and commits
//! every write waiting for it in one transaction (group commit: one WAL
//! sync for all of them). Each write runs under its own savepoint: one
//! that fails (a lost compare-and-swap, a damaged row, a panic) is rolled
//! back alone, with whatever it changed in the shared key state, and the
//! others commit.
//!
//! A caller hands its write over a bounded channel and awaits the answer;
//! dropping that future (a timeout, a client that hung up) leaves the
//! write to commit whole or not at all, and nothing shared half-done: the
//! transaction is the writer's, not the caller's.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};
use sprinters_core::{Error, Result};
use tokio::sync::oneshot;

use super::keys::Keys;
use super::spares::{LabelHash, SpareCounts};
use super::sql_error;
use crate::crypto::Cipher;
use crate::keyring::{BLOCK, SEALS_PER_KEY, encode, random_key, wrap_aad};
use crate::latency::SyncTimer;

/// At most this many writes share a transaction.
const MAX_BATCH: usize = 512;

/// Writes waiting for the writer at most; more are refused as retryable
/// (`Unavailable`) rather than queued without bound.
pub(crate) const QUEUE: usize = 4096;

/// The answer to one write, given the batch's fate: `Ok` once committed.
type Done = Box<dyn FnOnce(std::result::Result<(), &str>) + Send>;
/// One write, run inside the batch's transaction.
pub(crate) type Op = Box<dyn FnOnce(&mut Writer) -> Done + Send>;

/// A change to the shared key state made in the open transaction, undone
/// if it rolls back.
enum Undo {
    /// A scope's sealing state before the change.
    Sealing(String, Option<(u32, u64)>),
    /// A key created: forgotten again.
    Created(u32),
    /// A key destroyed: restored.
    Destroyed(u32, Arc<Cipher>),
    /// The master key before a rotation.
    Master(Arc<Cipher>),
    /// A label set's count of spares raised: lowered again.
    SpareRaised(LabelHash),
}

/// The writer's connection and sealing state.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) keys: Arc<Keys>,
    spares: Arc<SpareCounts>,
    /// Label sets that lost a spare in the open transaction: counted once
    /// it commits, forgotten if it rolls back.
    lowered: Vec<LabelHash>,
    /// Set by a write that removed rows without looking at them (a
    /// shredded account): the counts of spares are read again after it
    /// commits.
    pub(crate) recount_spares: bool,
    /// Per scope: the key new records use and the seals left of its block.
    sealing: HashMap<String, (u32, u64)>,
    undo: Vec<Undo>,
    /// Set when the batch itself failed (its BEGIN, a savepoint, its
    /// COMMIT): every write of it is rolled back.
    abort: Option<String>,
    /// Set by a write whose old pages must not outlive it in the WAL (a
    /// shredded account): the WAL is checkpointed and truncated after each
    /// commit until that succeeds.
    pub(crate) truncate_wal: bool,
}

/// Starts the writer thread; it stops once the sender is dropped, after
/// the writes already queued.
pub(crate) fn spawn(
    conn: Connection,
    checkpoints: Connection,
    keys: Arc<Keys>,
    spares: Arc<SpareCounts>,
    commits: Arc<AtomicU64>,
    timer: Arc<SyncTimer>,
) -> Result<(SyncSender<Op>, JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let writer = Writer {
        conn,
        keys,
        spares,
        lowered: Vec::new(),
        recount_spares: false,
        sealing: HashMap::new(),
        undo: Vec::new(),
        abort: None,
        truncate_wal: false,
    };
    let checkpointer = Checkpointer::spawn(checkpoints)?;
    let handle = std::thread::Builder::new()
        .name("sprinters-store-writer".into())
        .spawn(move || run(writer, rx, &commits, &timer, &checkpointer))
        .map_err(|e| Error::unavailable(format!("starting the store's writer: {e}")))?;
    Ok((tx, handle))
}

fn run(
    mut w: Writer,
    rx: Receiver<Op>,
    commits: &AtomicU64,
    timer: &SyncTimer,
    checkpointer: &Checkpointer,
) {
    // Checkpoints run beside the writer (below), not in it: SQLite's own
    // run inside whichever commit crosses the threshold, and that write's
    // caller waits for pages to be copied and the database file synced.
    w.conn.wal_hook(Some(note_wal_pages));
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        w.abort = w
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .err()
            .map(|e| format!("starting a write: {e}"));
        let dones: Vec<Done> = batch.into_iter().map(|op| op(&mut w)).collect();
        if w.abort.is_none()
            && let Err(e) = w.conn.execute_batch("COMMIT")
        {
            w.abort = Some(format!("committing: {e}"));
        }
        match w.abort.take() {
            None => {
                w.undo.clear();
                commits.fetch_add(1, Ordering::Relaxed);
                timer.record(started.elapsed());
                for h in std::mem::take(&mut w.lowered) {
                    w.spares.lower(&h);
                }
                if std::mem::take(&mut w.recount_spares)
                    && let Err(e) = w.spares.reload(&w.conn)
                {
                    // Left high: a count too high costs a read, never a spare.
                    tracing::warn!(error = %e, "recounting spare runners failed");
                }
                if w.truncate_wal {
                    w.truncate_wal = !checkpointer.truncate(&w.conn);
                }
                for done in dones {
                    done(Ok(()));
                }
                checkpointer.when_due(&w.conn);
            }
            Some(why) => {
                if !w.conn.is_autocommit() {
                    let _ = w.conn.execute_batch("ROLLBACK");
                }
                w.undo_to(0);
                w.lowered.clear();
                w.recount_spares = false;
                tracing::warn!(error = %why, "a store write failed: its batch was rolled back");
                for done in dones {
                    done(Err(&why));
                }
            }
        }
    }
}

/// The WAL reaches this many pages before the checkpointer is woken
/// (SQLite's own threshold).
const CHECKPOINT_PAGES: i32 = 1000;

/// ... and this many before the writer checkpoints itself: under writes
/// without a pause, a checkpoint beside them never catches up, and the
/// WAL restarts from its start only once one has.
const CHECKPOINT_PAGES_BUSY: i32 = 4 * CHECKPOINT_PAGES;

thread_local! {
    /// Pages in the WAL after the writer's last commit.
    static WAL_PAGES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn note_wal_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// A thread with a connection of its own that copies the WAL into the
/// database (a passive checkpoint: neither readers nor the writer wait for
/// it) when the writer asks.
struct Checkpointer {
    /// Taken on drop, so that the thread ends; it is then joined.
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Held by whoever checkpoints: SQLite refuses a second checkpoint at
    /// once (`SQLITE_BUSY`, no busy handler), and the writer's own (when
    /// the WAL is far overdue, and emptying it after a shred) must not be
    /// refused because a passive one was running beside it.
    running: Arc<Mutex<()>>,
    /// The WAL's pages when the checkpointer was last woken: it is woken
    /// once per [`CHECKPOINT_PAGES`] the WAL grows, not after every
    /// commit, or under steady writes its syncs of the database file
    /// would contend with every commit's sync of the WAL.
    woken_at: std::cell::Cell<i32>,
}

impl Checkpointer {
    fn spawn(conn: Connection) -> Result<Self> {
        let (wake, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let running = Arc::new(Mutex::new(()));
        let held = Arc::clone(&running);
        let thread = std::thread::Builder::new()
            .name("sprinters-store-checkpointer".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    let _running = held.lock().unwrap_or_else(|e| e.into_inner());
                    checkpoint(&conn);
                }
            })
            .map_err(|e| Error::unavailable(format!("starting the store's checkpointer: {e}")))?;
        Ok(Self {
            wake: Some(wake),
            thread: Some(thread),
            running,
            woken_at: std::cell::Cell::new(0),
        })
    }

    /// After a commit has been answered: wakes the checkpointer once the
    /// WAL is due, or checkpoints here once it is far overdue.
    fn when_due(&self, conn: &Connection) {
        let pages = WAL_PAGES.get();
        if pages < self.woken_at.get() {
            // The WAL restarted from its start.
            self.woken_at.set(0);
        }
        if pages >= CHECKPOINT_PAGES_BUSY {
            let _running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            checkpoint(conn);
            WAL_PAGES.set(0);
            self.woken_at.set(0);
        } else if pages >= self.woken_at.get() + CHECKPOINT_PAGES {
            if let Some(wake) = &self.wake {
                // Full: a checkpoint is asked for already.
                let _ = wake.try_send(());
            }
            self.woken_at.set(pages);
        }
    }

    /// Empties the WAL after a shred (see [`truncate_wal`]), never beside
    /// a passive checkpoint.
    fn truncate(&self, conn: &Connection) -> bool {
        let _running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        truncate_wal(conn)
    }
}

impl Drop for Checkpointer {
    /// Stops the thread and waits for it, however the writer ended (a
    /// panic included): its connection is closed before the directory
    /// lock goes.
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn checkpoint(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "checkpointing the WAL failed: tried again after a later write");
    }
}

/// Copies the WAL into the database and empties it; false when readers
/// holding an older snapshot kept it from finishing (tried again after the
/// next commit).
fn truncate_wal(conn: &Connection) -> bool {
    let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    match busy {
        Ok(0) => true,
        Ok(_) => {
            tracing::warn!(
                "the WAL could not be emptied after a shred (readers were busy): tried again after the next write"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "emptying the WAL after a shred failed: tried again after the next write");
            false
        }
    }
}

/// Wraps a write's closure into an [`Op`] answering on `tx`.
pub(crate) fn op<T: Send + 'static>(
    f: impl FnOnce(&mut Writer) -> Result<T> + Send + 'static,
    tx: oneshot::Sender<Result<T>>,
) -> Op {
    Box::new(move |w: &mut Writer| -> Done {
        let outcome = w.run_one(f);
        Box::new(move |committed| {
            // The caller may have gone (a dropped future): nothing waits.
            let _ = tx.send(match (outcome, committed) {
                (Ok(_), Err(why)) => Err(Error::unavailable(format!(
                    "the store could not write: {why}"
                ))),
                (outcome, _) => outcome,
            });
        })
    })
}

impl Writer {
    /// Runs one write under its own savepoint: kept if it succeeds, rolled
    /// back alone (its key-state changes too) if it fails or panics.
    fn run_one<T>(&mut self, f: impl FnOnce(&mut Writer) -> Result<T>) -> Result<T> {
        if let Some(why) = &self.abort {
            return Err(Error::unavailable(format!(
                "the store could not write: {why}"
            )));
        }
        if let Err(e) = self.run_cached("SAVEPOINT write") {
            let why = format!("starting a write: {e}");
            self.abort = Some(why.clone());
            return Err(Error::unavailable(why));
        }
        let mark = self.undo.len();
        let lowered = self.lowered.len();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(self)))
            .unwrap_or_else(|_| Err(Error::integrity("a store write panicked; rolled back")));
        let settled = match &result {
            Ok(_) => self.run_cached("RELEASE write"),
            Err(_) => {
                self.undo_to(mark);
                self.lowered.truncate(lowered);
                self.run_cached("ROLLBACK TO write")
                    .and_then(|()| self.run_cached("RELEASE write"))
            }
        };
        if let Err(e) = settled {
            self.abort = Some(match &result {
                Ok(_) => format!("settling a write: {e}"),
                Err(failed) => format!("settling a write that failed ({failed}): {e}"),
            });
        }
        result
    }

    /// Runs a statement without parameters or rows, prepared once per
    /// connection: every write's savepoint would otherwise be parsed anew.
    fn run_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    /// The version of row `id` of `table` (`jobs`, `tenants`, `vault`) in
    /// the open transaction: the one writer's compare-and-swap reads it.
    pub(crate) fn version_of(&self, table: &'static str, id: &[u8; 16]) -> Result<Option<u64>> {
        self.conn
            .prepare_cached(&format!("SELECT version FROM {table} WHERE id = ?1"))
            .and_then(|mut s| s.query_row([&id[..]], |r| r.get(0)).optional())
            .map_err(|e| sql_error(&format!("reading a version in {table}"), e))
    }

    /// Seals `plaintext` under the current data key of `scope` (created or
    /// rotated in the open transaction as needed): the key's id and `nonce
    /// || ciphertext`, bound to `aad(key id)`.
    pub(crate) fn seal(
        &mut self,
        scope: &str,
        aad: impl Fn(u32) -> Vec<u8>,
        plaintext: &[u8],
    ) -> Result<(u32, Vec<u8>)> {
        let (id, cipher) = self.sealing_key(scope)?;
        Ok((id, cipher.seal_body(&aad(id), plaintext)))
    }

    fn sealing_key(&mut self, scope: &str) -> Result<(u32, Arc<Cipher>)> {
        if let Some((id, left)) = self.sealing.get(scope).copied()
            && left > 0
            && let Some(Some(cipher)) = self.keys.cipher(id)
        {
            self.sealing.insert(scope.to_owned(), (id, left - 1));
            return Ok((id, cipher));
        }
        let active: Option<(u32, u64)> = self
            .conn
            .query_row(
                "SELECT id, reserved FROM data_keys WHERE scope = ?1 AND active",
                [scope],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| sql_error("reading a data key", e))?;
        if let Some((id, reserved)) = active
            && let Some(Some(cipher)) = self.keys.cipher(id)
            && reserved + BLOCK <= SEALS_PER_KEY
        {
            self.conn
                .execute(
                    "UPDATE data_keys SET reserved = reserved + ?2 WHERE id = ?1",
                    params![id, BLOCK],
                )
                .map_err(|e| sql_error("reserving seals of a data key", e))?;
            self.set_sealing(scope, (id, BLOCK - 1));
            return Ok((id, cipher));
        }
        self.rotate(scope)
    }

    fn set_sealing(&mut self, scope: &str, to: (u32, u64)) {
        let previous = self.sealing.insert(scope.to_owned(), to);
        // Remembered so that a rollback restores the block's count too.
        self.undo.push(Undo::Sealing(scope.to_owned(), previous));
    }

    /// Retires the scope's active key and starts a new one.
    pub(crate) fn rotate(&mut self, scope: &str) -> Result<(u32, Arc<Cipher>)> {
        self.conn
            .execute(
                "UPDATE data_keys SET active = 0 WHERE scope = ?1 AND active",
                [scope],
            )
            .map_err(|e| sql_error("retiring a data key", e))?;
        // One writer: the next id cannot be taken by anyone else.
        let id: u32 = self
            .conn
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM data_keys", [], |r| {
                r.get(0)
            })
            .map_err(|e| sql_error("numbering a data key", e))?;
        let raw = random_key();
        let (n, ct) = self.keys.master().seal(&wrap_aad(id, scope), raw.as_ref());
        self.conn
            .execute(
                "INSERT INTO data_keys (id, scope, wrapped, reserved, active) VALUES (?1, ?2, ?3, ?4, 1)",
                params![id, scope, encode(&n, &ct), BLOCK],
            )
            .map_err(|e| sql_error("storing a data key", e))?;
        let cipher = Arc::new(Cipher::new(&raw));
        // Known before the commit, so that no reader ever meets a row
        // sealed under a key it does not have.
        self.keys.insert(id, Some(cipher.clone()));
        self.undo.push(Undo::Created(id));
        self.set_sealing(scope, (id, BLOCK - 1));
        Ok((id, cipher))
    }

    /// A row of label set `h` gained a spare runner in this write: counted
    /// at once, so that no reader misses it once it commits.
    pub(crate) fn spare_raised(&mut self, h: LabelHash) {
        self.spares.raise(h);
        self.undo.push(Undo::SpareRaised(h));
    }

    /// A row of label set `h` lost its spare runners in this write: counted
    /// once the write commits.
    pub(crate) fn spare_lowered(&mut self, h: LabelHash) {
        self.lowered.push(h);
    }

    /// Forgets the sealing state of `scope` (its keys were destroyed).
    pub(crate) fn forget_scope(&mut self, scope: &str) {
        if let Some(previous) = self.sealing.remove(scope) {
            self.undo
                .push(Undo::Sealing(scope.to_owned(), Some(previous)));
        }
    }

    /// Marks data key `id` destroyed for readers at once (its rows are
    /// being deleted in the open transaction).
    pub(crate) fn destroy_key(&mut self, id: u32) {
        if let Some(Some(cipher)) = self.keys.cipher(id) {
            self.keys.insert(id, None);
            self.undo.push(Undo::Destroyed(id, cipher));
        }
    }

    /// Wraps new keys with `master` from now on (the rows were re-wrapped
    /// in the open transaction).
    pub(crate) fn set_master(&mut self, master: Cipher) {
        self.undo.push(Undo::Master(self.keys.master()));
        self.keys.set_master(Arc::new(master));
    }

    /// Undoes the key-state changes made since the undo list had `mark`
    /// entries, newest first.
    fn undo_to(&mut self, mark: usize) {
        while self.undo.len() > mark
            && let Some(change) = self.undo.pop()
        {
            match change {
                Undo::Sealing(scope, Some(p)) => {
                    self.sealing.insert(scope, p);
                }
                Undo::Sealing(scope, None) => {
                    self.sealing.remove(&scope);
                }
                Undo::Created(id) => self.keys.forget(id),
                Undo::Destroyed(id, cipher) => self.keys.insert(id, Some(cipher)),
                Undo::Master(cipher) => self.keys.set_master(cipher),
                Undo::SpareRaised(h) => self.spares.lower(&h),
            }
        }
    }
}
