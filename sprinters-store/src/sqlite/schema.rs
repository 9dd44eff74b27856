//! The schema, versioned by SQLite's `user_version`: each migration runs
//! once, in the transaction that opens the store.

use rusqlite::Connection;
use sprinters_core::{Error, Result};

use super::sql_error;

/// The migrations, in order; a migration is never edited once released,
/// only followed by a new one. The columns mirror the PostgreSQL store's:
/// sealed bodies, keyed hashes, and only what the queries need in clear.
///
/// Jobs live in a rowid table: a new record is appended to its last page
/// (the opaque id is random, and a table ordered by it would rewrite a
/// random page of bodies for every insert); only the small unique index on
/// the id takes random inserts.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE keyring (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    check_sealed TEXT NOT NULL,
    index_key_sealed TEXT NOT NULL
);
CREATE TABLE data_keys (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    wrapped TEXT,
    reserved INTEGER NOT NULL,
    active INTEGER NOT NULL
);
CREATE UNIQUE INDEX data_keys_one_active ON data_keys (scope) WHERE active;

CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    sealed_version INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    body BLOB NOT NULL,
    queued_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    active INTEGER NOT NULL,
    owner_h BLOB NOT NULL,
    account_h BLOB,
    label_h BLOB NOT NULL,
    lease_owner TEXT,
    lease_expires INTEGER
);
CREATE INDEX jobs_newest ON jobs (queued_at DESC, id DESC);
CREATE INDEX jobs_by_owner ON jobs (owner_h, queued_at DESC, id DESC);
CREATE INDEX jobs_by_account ON jobs (account_h, queued_at DESC, id DESC);
CREATE INDEX jobs_by_labels ON jobs (label_h, queued_at DESC, id DESC);
CREATE INDEX jobs_active ON jobs (queued_at DESC, id DESC) WHERE active;
CREATE INDEX jobs_purgeable ON jobs (queued_at) WHERE NOT active;

CREATE TABLE deliveries (
    id BLOB PRIMARY KEY,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX deliveries_by_age ON deliveries (received_at);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE vault (
    id BLOB PRIMARY KEY,
    account_h BLOB NOT NULL,
    version INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    body BLOB NOT NULL
);

CREATE TABLE tenants (
    id BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    body BLOB NOT NULL
);
"#,
    ),
    (
        2,
        // The index of due work, so that a tick reads what is due and not
        // the history; the active jobs of a label set by their own index,
        // so that planning one scope never walks its finished jobs. A
        // waiting job written before this migration is marked due at once
        // (its exact time is sealed in its body): the tick looks at it
        // until its next write sets the column.
        r#"
ALTER TABLE jobs ADD COLUMN due_at INTEGER;
UPDATE jobs SET due_at = COALESCE(lease_expires, 0)
    WHERE state IN ('queued', 'launching', 'launched');
CREATE INDEX jobs_due ON jobs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX jobs_active_by_labels ON jobs (label_h, queued_at DESC, id DESC) WHERE active;
"#,
    ),
    (
        3,
        // Launch slots, counted by a claim within caps: until when a job
        // holds one (its claim's expiry, or for ever while it has a live
        // launch), and its repository. A row written before this
        // migration is taken to hold a slot if it is active past queued
        // (an over-count until its next write; counts skip inactive rows)
        // and counts per account and owner, not per repository, until then.
        r#"
ALTER TABLE jobs ADD COLUMN repo_h BLOB;
ALTER TABLE jobs ADD COLUMN slot_until INTEGER;
UPDATE jobs SET slot_until =
    CASE WHEN state = 'queued' THEN lease_expires ELSE 9223372036854775807 END
    WHERE active;
CREATE INDEX jobs_slots_by_account ON jobs (account_h, slot_until) WHERE slot_until IS NOT NULL;
CREATE INDEX jobs_slots_by_owner ON jobs (owner_h, slot_until) WHERE slot_until IS NOT NULL;
"#,
    ),
    (
        4,
        // Slots are counted per launch, not per job: the live launches a
        // job holds beyond the slot of its next one (a runner another job
        // took, and the job launched again). A row written before this
        // migration holds one slot as before, until its next write.
        r#"
ALTER TABLE jobs ADD COLUMN extra_slots INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_extra_slots_by_account ON jobs (account_h) WHERE extra_slots > 0;
CREATE INDEX jobs_extra_slots_by_owner ON jobs (owner_h) WHERE extra_slots > 0;
"#,
    ),
    (
        5,
        // Spare runners per label set: a new job's look for one reads the
        // jobs that have any, never the label set's running jobs. A row
        // written before this migration shows none until its next write
        // (a spare missed costs a launch; the reconciler ends the spare).
        r#"
ALTER TABLE jobs ADD COLUMN spares INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_spares_by_labels ON jobs (label_h, queued_at DESC, id DESC)
    WHERE spares > 0 AND active;
"#,
    ),
    (
        6,
        // An owner's queued jobs, counted for `max_queued` up to the limit:
        // never its finished history, never its running jobs.
        r#"
CREATE INDEX jobs_queued_by_owner ON jobs (owner_h) WHERE state = 'queued' AND active;
"#,
    ),
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies what is missing, in `conn`'s open transaction. A file written by
/// a newer build is refused rather than written to.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sql_error("reading the schema version", e))?;
    if current > LATEST {
        return Err(Error::config(format!(
            "the store's schema is at version {current}, newer than this build's {LATEST}: upgrade Sprinters before opening it"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        conn.execute_batch(sql)
            .map_err(|e| sql_error(&format!("applying migration {version}"), e))?;
        conn.pragma_update(None, "user_version", version)
            .map_err(|e| sql_error(&format!("recording migration {version}"), e))?;
        tracing::info!(version, "store schema migration applied");
    }
    Ok(())
}
