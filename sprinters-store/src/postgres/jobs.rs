//! The `JobStore` on PostgreSQL: one row per job, compare-and-swap on its
//! `version`, the launch claim in two columns taken under a row lock.

use std::sync::LazyLock;

use async_trait::async_trait;
use deadpool_postgres::Client;
use sprinters_core::domain::{AccountId, DeliveryId, JobKey, OwnerId};
use sprinters_core::job::JobRecord;
use sprinters_core::ports::{
    AcquireLease, CapReached, Claim, ClaimJob, CountQueued, DeliveryRecorded, JobCursor, JobPage,
    JobStore, LeaseGrant, ListJobs, Purge, Purged, PutJob, RecordDelivery, ReleaseLease, SlotCap,
    Version, Versioned,
};
use sprinters_core::time::Timestamp;
use sprinters_core::{Error, Result};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PostgresJobStore;
use crate::rows::job_id_bytes;
use crate::rows::{self, millis};
use crate::sealed::{self, Kind};

/// A statement's parameters, built up clause by clause.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// Retention deletes this many rows per statement, so that a large purge
/// never holds many locks or one long transaction.
const PURGE_BATCH: i64 = 1000;

const COLUMNS: &str = "version, sealed_version, key_id, body, lease_owner, lease_expires";

/// The columns a write sets, computed from the record.
struct Columns {
    id: Vec<u8>,
    queued_at: i64,
    state: &'static str,
    active: bool,
    owner_h: Vec<u8>,
    account_h: Option<Vec<u8>>,
    label_h: Vec<u8>,
    lease_owner: Option<String>,
    lease_expires: Option<i64>,
    due_at: Option<i64>,
    repo_h: Vec<u8>,
    slot_until: Option<i64>,
    extra_slots: i32,
    spares: i32,
}

/// The statement of a put: `$1`..`$16` are the [`Columns`] (version and
/// sealed version both `$2`), then the expected version of a replace, then
/// the delivery's id and time. With a delivery it is one statement that
/// writes the record and records the delivery together (data-modifying
/// CTEs commit as one), unless the delivery is recorded already; it
/// answers (rows written, delivery seen before).
fn put_statement(replace: bool, delivery: bool) -> &'static str {
    // Built once: a put is on every job's launch path.
    static STATEMENTS: LazyLock<[String; 4]> = LazyLock::new(|| {
        [(false, false), (false, true), (true, false), (true, true)]
            .map(|(replace, delivery)| build_put_statement(replace, delivery))
    });
    &STATEMENTS[usize::from(replace) * 2 + usize::from(delivery)]
}

fn build_put_statement(replace: bool, delivery: bool) -> String {
    const SET: &str = "version = $2, sealed_version = $2, key_id = $3, body = $4, \
        queued_at = $5, state = $6, active = $7, owner_h = $8, account_h = $9, label_h = $10, \
        lease_owner = $11, lease_expires = $12, due_at = $13, repo_h = $14, slot_until = $15, \
        extra_slots = $16, spares = $17";
    const INSERT: &str = "INSERT INTO sprinters_jobs (id, version, sealed_version, key_id, \
        body, queued_at, state, active, owner_h, account_h, label_h, lease_owner, lease_expires, \
        due_at, repo_h, slot_until, extra_slots, spares)";
    let d = if replace { 19 } else { 18 };
    match (replace, delivery) {
        (false, false) => format!(
            "{INSERT} VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17) ON CONFLICT (id) DO NOTHING"
        ),
        (true, false) => format!("UPDATE sprinters_jobs SET {SET} WHERE id = $1 AND version = $18"),
        (replace, true) => {
            let write = if replace {
                format!(
                    "UPDATE sprinters_jobs SET {SET} WHERE id = $1 AND version = $18 \
                     AND NOT EXISTS (SELECT 1 FROM seen) RETURNING 1"
                )
            } else {
                // Typed: a SELECT's bare parameters would be taken as text.
                format!(
                    "{INSERT} SELECT $1::bytea, $2::bigint, $2::bigint, $3::integer, $4::bytea, \
                     $5::bigint, $6::text, $7::boolean, $8::bytea, $9::bytea, $10::bytea, \
                     $11::text, $12::bigint, $13::bigint, $14::bytea, $15::bigint, \
                     $16::integer, $17::integer \
                     WHERE NOT EXISTS (SELECT 1 FROM seen) \
                     ON CONFLICT (id) DO NOTHING RETURNING 1"
                )
            };
            format!(
                "WITH seen AS (SELECT 1 FROM sprinters_deliveries WHERE id = ${d}::bytea), \
                 written AS ({write}), \
                 recorded AS (INSERT INTO sprinters_deliveries (id, received_at) \
                   SELECT ${d}::bytea, ${e}::bigint FROM written ON CONFLICT (id) DO NOTHING) \
                 SELECT (SELECT count(*) FROM written), EXISTS (SELECT 1 FROM seen)",
                e = d + 1
            )
        }
    }
}

impl PostgresJobStore {
    fn record_id(&self, key: JobKey) -> Vec<u8> {
        self.inner.keys.opaque("job", &job_id_bytes(key))
    }

    /// A delivery id as the database keeps it: a keyed hash.
    fn delivery_id(&self, id: &DeliveryId) -> Vec<u8> {
        self.inner.keys.opaque("delivery", id.as_str().as_bytes())
    }

    fn columns(&self, record: &JobRecord) -> Result<Columns> {
        let keys = &self.inner.keys;
        let labels = rows::label_set_bytes(&record.label_set)?;
        Ok(Columns {
            id: self.record_id(record.key),
            queued_at: millis(record.queued_at),
            state: record.state.as_str(),
            active: record.is_active(),
            owner_h: keys.opaque("owner", record.owner_id.to_string().as_bytes()),
            account_h: record
                .account
                .as_ref()
                .map(|a| keys.opaque("account", a.as_str().as_bytes())),
            label_h: keys.opaque("labels", &labels),
            lease_owner: record.lease.as_ref().map(|l| l.owner.clone()),
            lease_expires: record.lease.as_ref().map(|l| millis(l.expires_at)),
            due_at: record.due_at().map(millis),
            repo_h: keys.opaque(
                "repository",
                format!("{}/{}", record.owner_id, record.repository_slot_key()).as_bytes(),
            ),
            slot_until: record.slot_until().map(millis),
            extra_slots: i32::try_from(record.extra_slots()).unwrap_or(i32::MAX),
            spares: i32::try_from(record.spare_runners()).unwrap_or(i32::MAX),
        })
    }

    /// The body of `record` sealed for `version`. The claim lives in its
    /// columns, so the body is sealed without it.
    async fn seal(
        &self,
        client: &Client,
        record: &JobRecord,
        id: &[u8],
        version: u64,
    ) -> Result<(u32, Vec<u8>)> {
        let plaintext = rows::job_plaintext(record)?;
        let record_id = rows::opaque_id(id, "job")?;
        let scope = self.inner.keys.scope_of(record.account.as_ref());
        self.inner
            .keys
            .seal(
                &self.inner.db,
                client,
                &scope,
                |key_id| sealed::aad(Kind::Job, key_id, &record_id, version).to_vec(),
                &plaintext,
            )
            .await
    }

    /// A row of [`COLUMNS`] back to a record; `None` when shredded.
    async fn open_row(
        &self,
        client: &Client,
        id: &[u8],
        row: &Row,
    ) -> Result<Option<Versioned<JobRecord>>> {
        let version: i64 = row.get(0);
        let sealed_version: i64 = row.get(1);
        let key_id: i32 = row.get(2);
        let body: &[u8] = row.get(3);
        let lease_owner: Option<String> = row.get(4);
        let lease_expires: Option<i64> = row.get(5);
        let record_id = rows::opaque_id(id, "job")?;
        let aad = sealed::aad(Kind::Job, key_id as u32, &record_id, sealed_version as u64);
        let Some(plaintext) = self
            .inner
            .keys
            .open_body(
                &self.inner.db,
                client,
                key_id as u32,
                &aad,
                body,
                "a job record",
            )
            .await?
        else {
            return Ok(None);
        };
        let record = rows::job_record(&plaintext, lease_owner, lease_expires)?;
        Ok(Some(Versioned {
            value: record,
            version: version as u64,
        }))
    }

    /// The history query for `request`: its SQL and parameters.
    pub(super) fn list_query(&self, request: &ListJobs) -> Result<(String, Params)> {
        let keys = &self.inner.keys;
        let mut clauses: Vec<String> = Vec::new();
        let mut params: Params = Vec::new();
        let mut bind = |clause: &str, value: Box<dyn ToSql + Sync + Send>| {
            params.push(value);
            clauses.push(clause.replace('?', &format!("${}", params.len())));
        };
        if let Some(owner) = &request.owner_id {
            let h = keys.opaque("owner", owner.to_string().as_bytes());
            bind("owner_h = ?", Box::new(h));
        }
        if let Some(account) = &request.account {
            bind(
                "account_h = ?",
                Box::new(keys.opaque("account", account.as_str().as_bytes())),
            );
        }
        if let Some(labels) = request.label_set {
            let bytes = rows::label_set_bytes(&labels)?;
            bind("label_h = ?", Box::new(keys.opaque("labels", &bytes)));
        }
        if let Some(states) = &request.states {
            let names: Vec<String> = states.iter().map(|s| s.as_str().to_owned()).collect();
            bind("state = ANY(?)", Box::new(names));
        }
        if let Some(from) = request.queued_from {
            bind("queued_at >= ?", Box::new(millis(from)));
        }
        if let Some(until) = request.queued_until {
            bind("queued_at < ?", Box::new(millis(until)));
        }
        if let Some(by) = request.due_by {
            bind("due_at <= ?", Box::new(millis(by)));
        }
        if let Some(after) = request.due_after {
            bind("due_at > ?", Box::new(millis(after)));
        }
        if let Some(cursor) = request.cursor {
            bind("queued_at <= ?", Box::new(millis(cursor.queued_at)));
            let n = params.len();
            params.push(Box::new(self.record_id(cursor.key)));
            clauses.push(format!("(queued_at, id) < (${n}, ${})", n + 1));
        }
        if request.active_only {
            clauses.push("active".to_owned());
        }
        if request.spares_only {
            // Repeats the partial index's condition, so that it can serve.
            clauses.push("spares > 0 AND active".to_owned());
        }
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        params.push(Box::new(limit));
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS}, id FROM sprinters_jobs {filter} \
             ORDER BY queued_at DESC, id DESC LIMIT ${}",
            params.len()
        );
        Ok((sql, params))
    }

    /// The plan PostgreSQL picks for the history page `request` asks for
    /// (`EXPLAIN`: nothing is read), so an operator or a test can see which
    /// index serves it.
    pub async fn explain_list(&self, request: &ListJobs) -> Result<String> {
        let (sql, params) = self.list_query(request)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.explain(&format!("EXPLAIN {sql}"), &refs).await
    }

    /// The lines of the plan `explain` (an `EXPLAIN` statement) answers.
    async fn explain(&self, explain: &str, params: &[&(dyn ToSql + Sync)]) -> Result<String> {
        let db = &self.inner.db;
        let client = db.client().await?;
        let rows = db.query(&client, explain, params).await?;
        let lines = rows
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::integrity(format!("reading a query plan: {e}")).with_source(e))?;
        Ok(lines.join("\n"))
    }

    /// The plan PostgreSQL picks for counting an owner's queued jobs
    /// (`EXPLAIN`: nothing is read).
    pub async fn explain_count_queued(&self, owner: OwnerId) -> Result<String> {
        let owner_h = self
            .inner
            .keys
            .opaque("owner", owner.to_string().as_bytes());
        self.explain(&format!("EXPLAIN {COUNT_QUEUED}"), &[&owner_h, &1i64])
            .await
    }

    /// The plan PostgreSQL picks for the rows a claim within caps counts
    /// for a job of `owner` in `account` (`EXPLAIN`: nothing is read).
    pub async fn explain_slot_count(&self, owner: OwnerId, account: &AccountId) -> Result<String> {
        let keys = &self.inner.keys;
        let owner_h = keys.opaque("owner", owner.to_string().as_bytes());
        let account_h = keys.opaque("account", account.as_str().as_bytes());
        let sql = format!(
            "EXPLAIN SELECT count(*) FROM (SELECT $1::bytea AS account_h, $2::bytea AS owner_h) j, \
             (SELECT $3::bigint AS p_now) p, sprinters_jobs s WHERE {}",
            super::schema::SLOT_HOLDERS
        );
        self.explain(&sql, &[&account_h, &owner_h, &0i64]).await
    }
}

#[async_trait]
impl JobStore for PostgresJobStore {
    async fn get_job(&self, key: JobKey) -> Result<Option<Versioned<JobRecord>>> {
        let db = &self.inner.db;
        let id = self.record_id(key);
        let client = db.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM sprinters_jobs WHERE id = $1");
        match db.query_opt(&client, &sql, &[&id]).await? {
            Some(row) => self.open_row(&client, &id, &row).await,
            None => Ok(None),
        }
    }

    async fn put_job(&self, request: PutJob) -> Result<Version> {
        let db = &self.inner.db;
        let record = &request.record;
        let c = self.columns(record)?;
        let version = request.expected.map_or(1, |v| v + 1);
        let client = db.client().await?;
        let (key_id, body) = self.seal(&client, record, &c.id, version).await?;
        let version_sql = version as i64;
        let key_id = key_id as i32;
        let expected = request.expected.map(|v| v as i64);
        let delivery = request
            .delivery
            .as_ref()
            .map(|d| (self.delivery_id(&d.id), millis(d.received_at)));
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &c.id,
            &version_sql,
            &key_id,
            &body,
            &c.queued_at,
            &c.state,
            &c.active,
            &c.owner_h,
            &c.account_h,
            &c.label_h,
            &c.lease_owner,
            &c.lease_expires,
            &c.due_at,
            &c.repo_h,
            &c.slot_until,
            &c.extra_slots,
            &c.spares,
        ];
        if let Some(expected) = &expected {
            params.push(expected);
        }
        if let Some((h, at)) = &delivery {
            params.push(h);
            params.push(at);
        }
        let sql = put_statement(expected.is_some(), delivery.is_some());
        let (written, duplicate) = if delivery.is_some() {
            let row = db.query_one(&client, sql, &params).await?;
            let written: i64 = row.get(0);
            (written == 1, row.get::<_, bool>(1))
        } else {
            (db.execute(&client, sql, &params).await? == 1, false)
        };
        if written {
            return Ok(version);
        }
        Err(match (request.delivery, request.expected) {
            (Some(d), _) if duplicate => {
                Error::duplicate(format!("delivery {} was processed already", d.id))
            }
            (_, None) => Error::conflict(format!("job {} already exists", record.key)),
            (_, Some(expected)) => Error::conflict(format!(
                "job {} is not at version {expected} (changed by another writer, or absent)",
                record.key
            )),
        })
    }

    async fn claim_job(&self, request: ClaimJob) -> Result<Claim> {
        let db = &self.inner.db;
        let id = self.record_id(request.key);
        let now = millis(request.now);
        let until = millis(request.now.saturating_add(request.ttl));
        let client = db.client().await?;
        if request.caps.any() {
            return self.claim_counted(&client, &request, &id, now, until).await;
        }
        for _ in 0..8 {
            if let Some(row) = db
                .query_opt(
                    &client,
                    claim_statement(),
                    &[&id, &request.owner, &now, &until],
                )
                .await?
            {
                return self.granted(&client, &id, &row).await;
            }
            // Not taken: absent, claimed by another, or locked by a write
            // in flight (a single statement: it is over in an instant).
            let held = db
                .query_opt(
                    &client,
                    "SELECT lease_owner, lease_expires FROM sprinters_jobs WHERE id = $1",
                    &[&id],
                )
                .await?;
            let Some(held) = held else {
                return Ok(Claim::Held);
            };
            let owner: Option<String> = held.get(0);
            let expires: Option<i64> = held.get(1);
            if owner.is_some_and(|o| o != request.owner) && expires.is_some_and(|e| e > now) {
                return Ok(Claim::Held);
            }
        }
        Ok(Claim::Held)
    }

    async fn list_jobs(&self, request: ListJobs) -> Result<JobPage> {
        let db = &self.inner.db;
        let (sql, params) = self.list_query(&request)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let client = db.client().await?;
        let rows = db.query(&client, &sql, &refs).await?;
        let full = rows.len() == request.limit && request.limit > 0;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in &rows {
            let id: Vec<u8> = row.get(6);
            // A shredded record (its account deleted) is no longer history.
            let Some(record) = self.open_row(&client, &id, row).await? else {
                continue;
            };
            last = Some(JobCursor::after(&record.value));
            // The clear columns chose the row; the sealed body decides. A
            // row whose columns were rewritten (owner_h of another tenant)
            // is never returned for a query it does not match.
            if request.admits(&record.value) {
                jobs.push(record);
            } else {
                tracing::error!(
                    job = %record.value.key,
                    "a row's clear columns disagree with its sealed record: left out of a history query"
                );
            }
        }
        let next = full.then_some(last).flatten();
        Ok(JobPage::new(jobs, next))
    }

    async fn get_tenant(
        &self,
        owner_id: sprinters_core::domain::OwnerId,
    ) -> Result<Option<Versioned<sprinters_core::tenant::TenantRecord>>> {
        self.get_tenant_record(owner_id).await
    }

    async fn put_tenant(&self, request: sprinters_core::ports::PutTenant) -> Result<u64> {
        self.put_tenant_record(request).await
    }

    async fn list_tenants(&self) -> Result<Vec<Versioned<sprinters_core::tenant::TenantRecord>>> {
        self.list_tenant_records().await
    }

    async fn delete_tenant(
        &self,
        owner_id: sprinters_core::domain::OwnerId,
        version: u64,
    ) -> Result<()> {
        self.delete_tenant_record(owner_id, version).await
    }

    async fn delivery_seen(&self, id: DeliveryId) -> Result<bool> {
        let db = &self.inner.db;
        let h = self.delivery_id(&id);
        let client = db.client().await?;
        Ok(db
            .query_opt(
                &client,
                "SELECT 1 FROM sprinters_deliveries WHERE id = $1",
                &[&h],
            )
            .await?
            .is_some())
    }

    async fn record_delivery(&self, request: RecordDelivery) -> Result<DeliveryRecorded> {
        let db = &self.inner.db;
        let h = self.delivery_id(&request.id);
        let client = db.client().await?;
        // The primary key de-duplicates: of two replicas recording one
        // delivery at once, exactly one inserts.
        let inserted = db
            .execute(
                &client,
                "INSERT INTO sprinters_deliveries (id, received_at) VALUES ($1, $2) \
                 ON CONFLICT (id) DO NOTHING",
                &[&h, &millis(request.received_at)],
            )
            .await?;
        Ok(DeliveryRecorded::new(inserted == 1))
    }

    async fn acquire_lease(&self, request: AcquireLease) -> Result<LeaseGrant> {
        let db = &self.inner.db;
        let now = millis(request.now);
        let until = millis(request.now.saturating_add(request.ttl));
        let client = db.client().await?;
        let granted = db
            .query_opt(
                &client,
                "INSERT INTO sprinters_leases (name, holder, expires_at) VALUES ($1, $2, $4) \
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
                 WHERE sprinters_leases.holder = EXCLUDED.holder OR sprinters_leases.expires_at <= $3 \
                 RETURNING holder, expires_at",
                &[&request.name, &request.owner, &now, &until],
            )
            .await?;
        let (acquired, row) = match granted {
            Some(row) => (true, row),
            None => (
                false,
                db.query_one(
                    &client,
                    "SELECT holder, expires_at FROM sprinters_leases WHERE name = $1",
                    &[&request.name],
                )
                .await?,
            ),
        };
        let expires: i64 = row.get(1);
        Ok(LeaseGrant::new(
            acquired,
            row.get(0),
            Timestamp::from_millis(expires.max(0) as u64),
        ))
    }

    async fn release_lease(&self, request: ReleaseLease) -> Result<()> {
        let db = &self.inner.db;
        let client = db.client().await?;
        db.execute(
            &client,
            "DELETE FROM sprinters_leases WHERE name = $1 AND holder = $2",
            &[&request.name, &request.owner],
        )
        .await?;
        Ok(())
    }

    async fn purge(&self, request: Purge) -> Result<Purged> {
        let db = &self.inner.db;
        let before = millis(request.before);
        let deliveries_before = millis(request.deliveries_before);
        let client = db.client().await?;
        let mut purged = Purged::default();
        // In batches: each statement is short, and concurrent writers skip
        // nothing (rows being written are skipped here, not waited for).
        loop {
            let n = db
                .execute(
                    &client,
                    "DELETE FROM sprinters_jobs WHERE id IN (SELECT id FROM sprinters_jobs \
                     WHERE NOT active AND queued_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    &[&before, &PURGE_BATCH],
                )
                .await?;
            purged.jobs += n as usize;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        loop {
            let n = db
                .execute(
                    &client,
                    "DELETE FROM sprinters_deliveries WHERE id IN (SELECT id FROM sprinters_deliveries \
                     WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    &[&deliveries_before, &PURGE_BATCH],
                )
                .await?;
            purged.deliveries += n as usize;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        Ok(purged)
    }

    async fn count_queued(&self, request: CountQueued) -> Result<u64> {
        let db = &self.inner.db;
        let owner_h = self
            .inner
            .keys
            .opaque("owner", request.owner_id.to_string().as_bytes());
        let at_most = i64::try_from(request.at_most).unwrap_or(i64::MAX);
        let client = db.client().await?;
        let row = db
            .query_opt(&client, COUNT_QUEUED, &[&owner_h, &at_most])
            .await?;
        let counted: i64 = row
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| Error::integrity(format!("counting queued jobs: {e}")).with_source(e))?
            .unwrap_or(0);
        Ok(counted.max(0) as u64)
    }
}

/// An owner's queued jobs, up to a limit, through the partial index
/// `sprinters_jobs_queued_by_owner`.
const COUNT_QUEUED: &str = "SELECT count(*) FROM (SELECT 1 FROM sprinters_jobs \
     WHERE owner_h = $1 AND state = 'queued' AND active LIMIT $2) q";

/// One statement: lock the row unless another writer has it, take the
/// claim if it is free, ours or lapsed, and return the record.
fn claim_statement() -> &'static str {
    static STATEMENT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH free AS (SELECT id FROM sprinters_jobs WHERE id = $1 \
               AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires <= $3) \
               FOR UPDATE SKIP LOCKED) \
             UPDATE sprinters_jobs j SET lease_owner = $2, lease_expires = $4, \
               due_at = GREATEST(j.due_at, $4), \
               slot_until = GREATEST(COALESCE(j.slot_until, 0), $4), version = j.version + 1 \
             FROM free WHERE j.id = free.id RETURNING {}",
            COLUMNS
                .split(", ")
                .map(|c| format!("j.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    &STATEMENT
}

impl PostgresJobStore {
    /// The claimed record, from a row of [`COLUMNS`].
    async fn granted(&self, client: &Client, id: &[u8], row: &Row) -> Result<Claim> {
        Ok(match self.open_row(client, id, row).await? {
            Some(record) => Claim::Granted(record),
            None => Claim::Held, // shredded
        })
    }

    /// A claim within caps: one statement, `sprinters_claim_within` (the
    /// schema's migrations 5 and 6), which counts under advisory locks of the
    /// job's account and owner and claims, or names the cap reached.
    async fn claim_counted(
        &self,
        client: &Client,
        request: &ClaimJob,
        id: &Vec<u8>,
        now: i64,
        until: i64,
    ) -> Result<Claim> {
        let db = &self.inner.db;
        let cap = |c: Option<usize>| c.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let caps = [
            cap(request.caps.per_account),
            cap(request.caps.per_repository),
            cap(request.caps.per_owner),
        ];
        for _ in 0..8 {
            let row = db
                .query_one(
                    client,
                    "SELECT * FROM sprinters_claim_within($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        id,
                        &request.owner,
                        &now,
                        &until,
                        &caps[0],
                        &caps[1],
                        &caps[2],
                    ],
                )
                .await?;
            let outcome: &str = row.get(6);
            match outcome {
                "granted" => return self.granted(client, id, &row).await,
                "absent" | "taken" => return Ok(Claim::Held),
                "full" => {
                    let (cap, limit) = match row.get::<_, Option<&str>>(7) {
                        Some("account") => (SlotCap::Account, request.caps.per_account),
                        Some("repository") => (SlotCap::Repository, request.caps.per_repository),
                        _ => (SlotCap::Owner, request.caps.per_owner),
                    };
                    let held: i64 = row.get(8);
                    return Ok(Claim::Full(CapReached::new(
                        cap,
                        limit.unwrap_or(0),
                        held as usize,
                    )));
                }
                // Locked by a write in flight: over in an instant.
                _ => continue,
            }
        }
        Ok(Claim::Held)
    }
}
