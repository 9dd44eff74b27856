//! The `JobStore` on SQLite: one row per job, compare-and-swap on its
//! `version` checked by the one writer, the launch claim in two columns.

use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, Row, params};
use sprinters_core::domain::{DeliveryId, JobKey, OwnerId};
use sprinters_core::job::{JobRecord, Lease};
use sprinters_core::ports::{
    AcquireLease, Claim, ClaimJob, CountQueued, DeliveryRecorded, JobCursor, JobPage, JobStore,
    LeaseGrant, ListJobs, Purge, Purged, PutJob, PutTenant, RecordDelivery, ReleaseLease,
    SlotCounts, Version, Versioned,
};
use sprinters_core::tenant::TenantRecord;
use sprinters_core::time::Timestamp;
use sprinters_core::{Error, Result};

use super::keys::Keys;
use super::{SqliteJobStore, sql_error};
use crate::rows::job_id_bytes;
use crate::rows::{self, millis};
use crate::sealed::{self, Kind};

/// Retention deletes this many rows per transaction, so that a large purge
/// never holds the writer long.
const PURGE_BATCH: i64 = 1000;

const COLUMNS: &str = "version, sealed_version, key_id, body, lease_owner, lease_expires";

/// The clear columns a write sets, computed from the record.
struct Columns {
    id: [u8; 16],
    queued_at: i64,
    state: &'static str,
    active: bool,
    owner_h: [u8; 16],
    account_h: Option<[u8; 16]>,
    label_h: [u8; 16],
    lease_owner: Option<String>,
    lease_expires: Option<i64>,
    due_at: Option<i64>,
    repo_h: [u8; 16],
    slot_until: Option<i64>,
    extra_slots: i64,
    spares: i64,
}

pub(super) fn record_id(keys: &Keys, key: JobKey) -> [u8; 16] {
    keys.opaque("job", &job_id_bytes(key))
}

fn owner_h(keys: &Keys, owner: OwnerId) -> [u8; 16] {
    keys.opaque("owner", owner.to_string().as_bytes())
}

fn columns(keys: &Keys, record: &JobRecord) -> Result<Columns> {
    let labels = rows::label_set_bytes(&record.label_set)?;
    Ok(Columns {
        id: record_id(keys, record.key),
        queued_at: millis(record.queued_at),
        state: record.state.as_str(),
        active: record.is_active(),
        owner_h: owner_h(keys, record.owner_id),
        account_h: record
            .account
            .as_ref()
            .map(|a| keys.opaque("account", a.as_str().as_bytes())),
        label_h: keys.opaque("labels", &labels),
        lease_owner: record.lease.as_ref().map(|l| l.owner.clone()),
        lease_expires: record.lease.as_ref().map(|l| millis(l.expires_at)),
        due_at: record.due_at().map(millis),
        repo_h: repo_h(keys, record),
        slot_until: record.slot_until().map(millis),
        extra_slots: record.extra_slots() as i64,
        spares: record.spare_runners() as i64,
    })
}

/// The keyed hash of a job's repository, within its owner.
fn repo_h(keys: &Keys, record: &JobRecord) -> [u8; 16] {
    let name = format!("{}/{}", record.owner_id, record.repository_slot_key());
    keys.opaque("repository", name.as_bytes())
}

/// How many slots are held where `record`'s next launch would count, at
/// `now`: its own live launches included (its own next slot is not: a
/// claim counts only when it is not held).
fn slot_counts(conn: &Connection, keys: &Keys, record: &JobRecord, now: i64) -> Result<SlotCounts> {
    let account_h = record
        .account
        .as_ref()
        .map(|a| keys.opaque("account", a.as_str().as_bytes()));
    // Each half repeats a partial index's condition, so that each sum
    // reads its indexes only: the slots of next launches, then the extras.
    let sum = |place: &str| {
        format!(
            "(SELECT count(*) FROM jobs WHERE {place} AND slot_until IS NOT NULL \
             AND slot_until > ?4 AND active) + \
             (SELECT coalesce(sum(extra_slots), 0) FROM jobs WHERE {place} \
             AND extra_slots > 0 AND active)"
        )
    };
    let sql = format!(
        "SELECT {}, {}, {}",
        sum("account_h = ?1"),
        sum("owner_h = ?2 AND repo_h = ?3"),
        sum("owner_h = ?2")
    );
    let count = |e| sql_error("counting launch slots", e);
    let mut s = conn.prepare_cached(&sql).map_err(count)?;
    let (account, repository, owner): (i64, i64, i64) = s
        .query_row(
            params![
                account_h.as_ref().map(|a| &a[..]),
                &owner_h(keys, record.owner_id)[..],
                &repo_h(keys, record)[..],
                now,
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(count)?;
    Ok(SlotCounts {
        account: account as usize,
        repository: repository as usize,
        owner: owner as usize,
    })
}

/// A row of [`COLUMNS`] back to a record; `None` when shredded.
fn open_row(keys: &Keys, id: &[u8; 16], row: &Row<'_>) -> Result<Option<Versioned<JobRecord>>> {
    let read = |e| sql_error("reading a job row", e);
    let version: i64 = row.get(0).map_err(read)?;
    let sealed_version: i64 = row.get(1).map_err(read)?;
    let key_id: u32 = row.get(2).map_err(read)?;
    let body: Vec<u8> = row.get(3).map_err(read)?;
    let lease_owner: Option<String> = row.get(4).map_err(read)?;
    let lease_expires: Option<i64> = row.get(5).map_err(read)?;
    let aad = sealed::aad(Kind::Job, key_id, id, sealed_version as u64);
    let Some(plaintext) = keys.open_body(key_id, &aad, &body, "a job record")? else {
        return Ok(None);
    };
    Ok(Some(Versioned {
        value: rows::job_record(&plaintext, lease_owner, lease_expires)?,
        version: version as u64,
    }))
}

fn get_row(conn: &Connection, keys: &Keys, id: &[u8; 16]) -> Result<Option<Versioned<JobRecord>>> {
    let mut s = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))
        .map_err(|e| sql_error("reading a job", e))?;
    let mut rows = s
        .query([&id[..]])
        .map_err(|e| sql_error("reading a job", e))?;
    match rows.next().map_err(|e| sql_error("reading a job", e))? {
        Some(row) => open_row(keys, id, row),
        None => Ok(None),
    }
}

/// A row refused because `column` (`table.column`, unique or the primary
/// key) holds its value already; a constraint on anything else is not.
fn violates_key(e: &rusqlite::Error, column: &str) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, Some(message))
            if (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
                && message.ends_with(&format!(": {column}"))
    )
}

fn delivery_h(keys: &Keys, id: &DeliveryId) -> [u8; 16] {
    keys.opaque("delivery", id.as_str().as_bytes())
}

/// The history query for `request`: its SQL and parameters.
fn list_query(keys: &Keys, request: &ListJobs) -> Result<(String, Vec<Box<dyn ToSql + Send>>)> {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Send>> = Vec::new();
    if let Some(owner) = request.owner_id {
        clauses.push("owner_h = ?".into());
        params.push(Box::new(owner_h(keys, owner).to_vec()));
    }
    if let Some(account) = &request.account {
        clauses.push("account_h = ?".into());
        params.push(Box::new(
            keys.opaque("account", account.as_str().as_bytes()).to_vec(),
        ));
    }
    if let Some(labels) = request.label_set {
        let bytes = rows::label_set_bytes(&labels)?;
        clauses.push("label_h = ?".into());
        params.push(Box::new(keys.opaque("labels", &bytes).to_vec()));
    }
    if let Some(states) = &request.states {
        let marks = vec!["?"; states.len()].join(", ");
        clauses.push(format!("state IN ({marks})"));
        for s in states {
            params.push(Box::new(s.as_str()));
        }
    }
    if request.spares_only {
        // Repeats the partial index's condition, so that it can serve.
        clauses.push("spares > 0 AND active".into());
    }
    if let Some(from) = request.queued_from {
        clauses.push("queued_at >= ?".into());
        params.push(Box::new(millis(from)));
    }
    if let Some(until) = request.queued_until {
        clauses.push("queued_at < ?".into());
        params.push(Box::new(millis(until)));
    }
    if let Some(cursor) = request.cursor {
        clauses.push("(queued_at, id) < (?, ?)".into());
        params.push(Box::new(millis(cursor.queued_at)));
        params.push(Box::new(record_id(keys, cursor.key).to_vec()));
    }
    if request.active_only {
        clauses.push("active".into());
    }
    if let Some(by) = request.due_by {
        clauses.push("due_at <= ?".into());
        params.push(Box::new(millis(by)));
    }
    if let Some(after) = request.due_after {
        clauses.push("due_at > ?".into());
        params.push(Box::new(millis(after)));
    }
    params.push(Box::new(i64::try_from(request.limit).unwrap_or(i64::MAX)));
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    // The tick's two queries name their index: without statistics the
    // planner may walk the history in page order instead, and a named index
    // that cannot serve the query fails it rather than silently scanning.
    let index = if request.due_by.is_some() {
        "INDEXED BY jobs_due"
    } else if request.spares_only && request.label_set.is_some() {
        "INDEXED BY jobs_spares_by_labels"
    } else if request.active_only && request.label_set.is_some() {
        "INDEXED BY jobs_active_by_labels"
    } else {
        ""
    };
    Ok((
        format!(
            "SELECT {COLUMNS}, id FROM jobs {index} {filter} \
             ORDER BY queued_at DESC, id DESC LIMIT ?"
        ),
        params,
    ))
}

impl SqliteJobStore {
    /// Runs `delete` (parameters: the cut-off, the batch size) until it
    /// deletes less than a batch: each batch is one write of its own, so
    /// other writes go on between them. Returns the rows deleted.
    async fn delete_in_batches(&self, delete: &'static str, before: i64) -> Result<usize> {
        let mut deleted = 0;
        loop {
            let n = self
                .write(move |w| {
                    w.conn
                        .prepare_cached(delete)
                        .and_then(|mut s| s.execute(params![before, PURGE_BATCH]))
                        .map_err(|e| sql_error("purging", e))
                })
                .await?;
            deleted += n;
            if n < PURGE_BATCH as usize {
                return Ok(deleted);
            }
        }
    }

    /// The plan SQLite picks for the history page `request` asks for
    /// (`EXPLAIN QUERY PLAN`: nothing is read), so an operator or a test
    /// can see which index serves it.
    pub async fn explain_list(&self, request: &ListJobs) -> Result<String> {
        let request = request.clone();
        self.read(move |conn, keys| {
            let (sql, params) = list_query(keys, &request)?;
            let mut s = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .map_err(|e| sql_error("explaining a query", e))?;
            let lines: Vec<String> = s
                .query_map(rusqlite::params_from_iter(params.iter()), |r| r.get(3))
                .and_then(|rows| rows.collect())
                .map_err(|e| sql_error("explaining a query", e))?;
            Ok(lines.join("\n"))
        })
        .await
    }
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn get_job(&self, key: JobKey) -> Result<Option<Versioned<JobRecord>>> {
        self.read(move |conn, keys| get_row(conn, keys, &record_id(keys, key)))
            .await
    }

    async fn put_job(&self, request: PutJob) -> Result<Version> {
        let keys = self.inner.keys.clone();
        let c = columns(&keys, &request.record)?;
        let plaintext = rows::job_plaintext(&request.record)?;
        let scope = keys.scope_of(request.record.account.as_ref());
        let delivery = request.delivery.as_ref().map(|d| {
            (
                delivery_h(&keys, &d.id),
                millis(d.received_at),
                d.id.clone(),
            )
        });
        let key = request.record.key;
        let expected = request.expected;
        self.write(move |w| {
            // A delivery seen already, and a create of a job that exists,
            // are refused by the tables' keys: no lookup before either (a
            // create is the common write, and the writer is one thread). A
            // refused create has sealed its body by then; the seal stays
            // counted against the key, which only retires it sooner.
            if let Some((h, at, id)) = &delivery {
                w.conn
                    .prepare_cached("INSERT INTO deliveries (id, received_at) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![&h[..], at]))
                    .map_err(|e| {
                        if violates_key(&e, "deliveries.id") {
                            Error::duplicate(format!("delivery {id} was processed already"))
                        } else {
                            sql_error("recording a delivery", e)
                        }
                    })?;
            }
            let row: Option<(u64, Vec<u8>, bool)> = match expected {
                None => None,
                Some(_) => w
                    .conn
                    .prepare_cached(
                        "SELECT version, label_h, spares > 0 AND active FROM jobs WHERE id = ?1",
                    )
                    .and_then(|mut s| {
                        s.query_row([&c.id[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                            .optional()
                    })
                    .map_err(|e| sql_error("reading a job's version", e))?,
            };
            let current = row.as_ref().map(|(v, _, _)| *v);
            if let Some(v) = expected
                && current != Some(v)
            {
                return Err(Error::conflict(format!(
                    "job {key} is not at version {v} (changed by another writer, or absent)"
                )));
            }
            let version = expected.map_or(1, |v| v + 1);
            let (key_id, body) = w.seal(
                &scope,
                |key_id| sealed::aad(Kind::Job, key_id, &c.id, version).to_vec(),
                &plaintext,
            )?;
            // A replace updates the row in place; a create appends one.
            let sql = if expected.is_some() {
                "UPDATE jobs SET version = ?2, sealed_version = ?2, key_id = ?3, body = ?4, \
                 queued_at = ?5, state = ?6, active = ?7, owner_h = ?8, account_h = ?9, \
                 label_h = ?10, lease_owner = ?11, lease_expires = ?12, due_at = ?13, \
                 repo_h = ?14, slot_until = ?15, extra_slots = ?16, spares = ?17 WHERE id = ?1"
            } else {
                "INSERT INTO jobs (id, version, sealed_version, key_id, body, queued_at, state, \
                 active, owner_h, account_h, label_h, lease_owner, lease_expires, due_at, \
                 repo_h, slot_until, extra_slots, spares) \
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                 ?16, ?17)"
            };
            w.conn
                .prepare_cached(sql)
                .and_then(|mut s| {
                    s.execute(params![
                        &c.id[..],
                        version,
                        key_id,
                        body,
                        c.queued_at,
                        c.state,
                        c.active,
                        &c.owner_h[..],
                        c.account_h.as_ref().map(|a| &a[..]),
                        &c.label_h[..],
                        c.lease_owner,
                        c.lease_expires,
                        c.due_at,
                        &c.repo_h[..],
                        c.slot_until,
                        c.extra_slots,
                        c.spares,
                    ])
                })
                .map_err(|e| {
                    if expected.is_none() && violates_key(&e, "jobs.id") {
                        Error::conflict(format!("job {key} already exists"))
                    } else {
                        sql_error("writing a job", e)
                    }
                })?;
            // Last, once nothing in this write can fail any more.
            let had = row
                .filter(|(_, _, spare)| *spare)
                .and_then(|(_, h, _)| <[u8; 16]>::try_from(h).ok());
            let has = (c.spares > 0 && c.active).then_some(c.label_h);
            if had != has {
                if let Some(h) = had {
                    w.spare_lowered(h);
                }
                if let Some(h) = has {
                    w.spare_raised(h);
                }
            }
            Ok(version)
        })
        .await
    }

    async fn claim_job(&self, request: ClaimJob) -> Result<Claim> {
        let id = record_id(&self.inner.keys, request.key);
        let now = millis(request.now);
        let until = request.now.saturating_add(request.ttl);
        // The one writer counts and claims in one transaction: no other
        // claim runs in between.
        self.write(move |w| {
            let Some(mut record) = get_row(&w.conn, &w.keys, &id)? else {
                return Ok(Claim::Held);
            };
            let taken = record
                .value
                .lease
                .as_ref()
                .is_some_and(|l| l.owner != request.owner && millis(l.expires_at) > now);
            if taken {
                return Ok(Claim::Held);
            }
            if request.caps.any() && !record.value.holds_slot(request.now) {
                let counts = slot_counts(&w.conn, &w.keys, &record.value, now)?;
                if let Some(reached) = request.caps.reached(counts) {
                    return Ok(Claim::Full(reached));
                }
            }
            record.version += 1;
            record.value.lease = Some(Lease {
                owner: request.owner.clone(),
                expires_at: until,
            });
            let due_at = record.value.due_at().map(millis);
            let slot_until = record.value.slot_until().map(millis);
            w.conn
                .prepare_cached(
                    "UPDATE jobs SET lease_owner = ?2, lease_expires = ?3, due_at = ?4, \
                     slot_until = ?5, version = version + 1 WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        &id[..],
                        request.owner,
                        millis(until),
                        due_at,
                        slot_until
                    ])
                })
                .map_err(|e| sql_error("claiming a job", e))?;
            Ok(Claim::Granted(record))
        })
        .await
    }

    async fn list_jobs(&self, request: ListJobs) -> Result<JobPage> {
        // A new job's look for a spare runner: nearly always none, known
        // without a read.
        if request.spares_only
            && let Some(labels) = request.label_set
        {
            let h = self
                .inner
                .keys
                .opaque("labels", &rows::label_set_bytes(&labels)?);
            if self.inner.spares.none_for(&h) {
                return Ok(JobPage::new(Vec::new(), None));
            }
        }
        self.read(move |conn, keys| {
            let (sql, params) = list_query(keys, &request)?;
            let mut s = conn
                .prepare_cached(&sql)
                .map_err(|e| sql_error("listing jobs", e))?;
            let mut rows = s
                .query(rusqlite::params_from_iter(params.iter()))
                .map_err(|e| sql_error("listing jobs", e))?;
            let mut jobs = Vec::new();
            let mut seen = 0;
            let mut last = None;
            while let Some(row) = rows.next().map_err(|e| sql_error("listing jobs", e))? {
                seen += 1;
                let raw: Vec<u8> = row.get(6).map_err(|e| sql_error("listing jobs", e))?;
                let id = rows::opaque_id(&raw, "job")?;
                // A shredded record (its account deleted) is no longer history.
                let Some(record) = open_row(keys, &id, row)? else {
                    continue;
                };
                last = Some(JobCursor::after(&record.value));
                // The clear columns chose the row; the sealed body decides.
                if request.admits(&record.value) {
                    jobs.push(record);
                } else {
                    tracing::error!(
                        job = %record.value.key,
                        "a row's clear columns disagree with its sealed record: left out of a history query"
                    );
                }
            }
            let full = seen == request.limit && request.limit > 0;
            Ok(JobPage::new(jobs, full.then_some(last).flatten()))
        })
        .await
    }

    async fn delivery_seen(&self, id: DeliveryId) -> Result<bool> {
        let h = delivery_h(&self.inner.keys, &id);
        self.read(move |conn, _| {
            conn.prepare_cached("SELECT 1 FROM deliveries WHERE id = ?1")
                .and_then(|mut s| s.exists([&h[..]]))
                .map_err(|e| sql_error("reading a delivery", e))
        })
        .await
    }

    async fn record_delivery(&self, request: RecordDelivery) -> Result<DeliveryRecorded> {
        let h = delivery_h(&self.inner.keys, &request.id);
        let at = millis(request.received_at);
        self.write(move |w| {
            let n = w
                .conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO deliveries (id, received_at) VALUES (?1, ?2)",
                )
                .and_then(|mut s| s.execute(params![&h[..], at]))
                .map_err(|e| sql_error("recording a delivery", e))?;
            Ok(DeliveryRecorded::new(n == 1))
        })
        .await
    }

    async fn acquire_lease(&self, request: AcquireLease) -> Result<LeaseGrant> {
        let now = millis(request.now);
        let until = request.now.saturating_add(request.ttl);
        self.write(move |w| {
            let held: Option<(String, i64)> = w
                .conn
                .prepare_cached("SELECT holder, expires_at FROM leases WHERE name = ?1")
                .and_then(|mut s| {
                    s.query_row([&request.name], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(|e| sql_error("reading a lease", e))?;
            if let Some((holder, expires)) = held
                && holder != request.owner
                && expires > now
            {
                return Ok(LeaseGrant::new(
                    false,
                    holder,
                    Timestamp::from_millis(expires.max(0) as u64),
                ));
            }
            w.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![request.name, request.owner, millis(until)]))
                .map_err(|e| sql_error("writing a lease", e))?;
            Ok(LeaseGrant::new(true, request.owner, until))
        })
        .await
    }

    async fn release_lease(&self, request: ReleaseLease) -> Result<()> {
        self.write(move |w| {
            w.conn
                .prepare_cached("DELETE FROM leases WHERE name = ?1 AND holder = ?2")
                .and_then(|mut s| s.execute(params![request.name, request.owner]))
                .map_err(|e| sql_error("releasing a lease", e))?;
            Ok(())
        })
        .await
    }

    async fn get_tenant(&self, owner_id: OwnerId) -> Result<Option<Versioned<TenantRecord>>> {
        self.get_tenant_record(owner_id).await
    }

    async fn put_tenant(&self, request: PutTenant) -> Result<Version> {
        self.put_tenant_record(request).await
    }

    async fn list_tenants(&self) -> Result<Vec<Versioned<TenantRecord>>> {
        self.list_tenant_records().await
    }

    async fn delete_tenant(&self, owner_id: OwnerId, version: Version) -> Result<()> {
        self.delete_tenant_record(owner_id, version).await
    }

    async fn purge(&self, request: Purge) -> Result<Purged> {
        let before = millis(request.before);
        let jobs = self
            .delete_in_batches(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
                 WHERE NOT active AND queued_at < ?1 LIMIT ?2)",
                before,
            )
            .await?;
        let deliveries = self
            .delete_in_batches(
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
                 WHERE received_at < ?1 LIMIT ?2)",
                millis(request.deliveries_before),
            )
            .await?;
        Ok(Purged::new(jobs, deliveries))
    }

    async fn count_queued(&self, request: CountQueued) -> Result<u64> {
        let owner_h = owner_h(&self.inner.keys, request.owner_id);
        let at_most = i64::try_from(request.at_most).unwrap_or(i64::MAX);
        self.read(move |conn, _| {
            conn.prepare_cached(
                "SELECT count(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_queued_by_owner \
                 WHERE owner_h = ?1 AND state = 'queued' AND active LIMIT ?2)",
            )
            .and_then(|mut s| s.query_row(params![&owner_h[..], at_most], |r| r.get(0)))
            .map_err(|e| sql_error("counting queued jobs", e))
        })
        .await
    }

    /// Only this process opens the directory (it is locked).
    fn is_shared(&self) -> bool {
        false
    }
}
