//! [`JobStore`]: durable job records, written with compare-and-swap so that
//! several replicas can share one store.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::domain::{AccountId, DeliveryId, JobKey, OwnerId};
use crate::job::{JobRecord, JobState};
use crate::labels::LabelSetKey;
use crate::ports::{Claim, SlotCaps};
use crate::tenant::TenantRecord;
use crate::time::Timestamp;

/// A record's version: starts at 1, goes up by one on every write.
pub type Version = u64;

/// A value and the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version, for the next compare-and-swap.
    pub version: Version,
}

/// Writes a job record if its version is still `expected`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PutJob {
    /// The record.
    pub record: JobRecord,
    /// `None`: create, failing with `Conflict` if it exists. `Some(v)`:
    /// replace, failing with `Conflict` unless the stored version is `v`.
    pub expected: Option<Version>,
    /// The delivery this write processes, recorded with it: the record is
    /// written and the delivery recorded together, or neither is. Already
    /// recorded, the put fails with `Duplicate` and writes nothing.
    pub delivery: Option<RecordDelivery>,
}

impl PutJob {
    /// Creates `record`.
    pub fn create(record: JobRecord) -> Self {
        Self {
            record,
            expected: None,
            delivery: None,
        }
    }

    /// Replaces the record read at `version`.
    pub fn replace(record: JobRecord, version: Version) -> Self {
        Self {
            record,
            expected: Some(version),
            delivery: None,
        }
    }

    /// Records `delivery` as processed by this write (see
    /// [`PutJob::delivery`]): one round trip where there were two.
    pub fn with_delivery(mut self, delivery: RecordDelivery) -> Self {
        self.delivery = Some(delivery);
        self
    }
}

/// Writes an owner's record if its version is still `expected`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PutTenant {
    /// The record.
    pub record: TenantRecord,
    /// `None`: create, failing with `Conflict` if it exists. `Some(v)`:
    /// replace, failing with `Conflict` unless the stored version is `v`.
    pub expected: Option<Version>,
}

impl PutTenant {
    /// Creates `record`.
    pub fn create(record: TenantRecord) -> Self {
        Self {
            record,
            expected: None,
        }
    }

    /// Replaces the record read at `version`.
    pub fn replace(record: TenantRecord, version: Version) -> Self {
        Self {
            record,
            expected: Some(version),
        }
    }
}

/// Claims a job for launching: granted when no other owner holds an
/// unexpired claim. The claim is written into the record's `lease`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimJob {
    /// The job.
    pub key: JobKey,
    /// The claiming replica.
    pub owner: String,
    /// The time the claim is judged at.
    pub now: Timestamp,
    /// How long the claim lasts.
    pub ttl: Duration,
    /// The caps the claim is held to, counted by the store with the claim
    /// (see [`SlotBook`](crate::ports::SlotBook)): none by default.
    pub caps: SlotCaps,
}

impl ClaimJob {
    /// Claims `key` for `owner` from `now` for `ttl`.
    pub fn new(key: JobKey, owner: impl Into<String>, now: Timestamp, ttl: Duration) -> Self {
        Self {
            key,
            owner: owner.into(),
            now,
            ttl,
            caps: SlotCaps::default(),
        }
    }

    /// Holds the claim to `caps`: it is refused with [`Claim::Full`] when
    /// the job holds no slot yet and one of them is reached.
    pub fn within(mut self, caps: SlotCaps) -> Self {
        self.caps = caps;
        self
    }
}

/// Where a page of history ends: the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobCursor {
    /// The last record's queue time.
    pub queued_at: Timestamp,
    /// The last record's key.
    pub key: JobKey,
}

impl JobCursor {
    /// The cursor just after `record`.
    pub fn after(record: &JobRecord) -> Self {
        Self {
            queued_at: record.queued_at,
            key: record.key,
        }
    }
}

/// A history query: newest first by queue time (jobs queued in the same
/// millisecond in an order of the store's own, stable across pages), filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListJobs {
    /// Only this owner's jobs (by GitHub account id: a login may change
    /// hands).
    pub owner_id: Option<OwnerId>,
    /// Only jobs in this account.
    pub account: Option<AccountId>,
    /// Only jobs with this label set.
    pub label_set: Option<LabelSetKey>,
    /// Only jobs in these states.
    pub states: Option<Vec<JobState>>,
    /// Only active jobs ([`JobRecord::is_active`]).
    pub active_only: bool,
    /// Only jobs due at or before this ([`JobRecord::due_at`]): what a tick
    /// must look at. Stores answer it from an index of due times, so its
    /// cost grows with what is due, not with the history.
    pub due_by: Option<Timestamp>,
    /// Only jobs due after this: what became due since an earlier tick
    /// looked (jobs due long ago and still waiting, say for a slot, are
    /// not read again each tick).
    pub due_after: Option<Timestamp>,
    /// Only jobs with spare runners ([`JobRecord::spare_runners`]). Stores
    /// answer it from an index of those jobs: a new job's look for a spare
    /// costs what is spare, not what runs.
    pub spares_only: bool,
    /// Only jobs queued at or after this.
    pub queued_from: Option<Timestamp>,
    /// Only jobs queued before this.
    pub queued_until: Option<Timestamp>,
    /// Start after this record.
    pub cursor: Option<JobCursor>,
    /// At most this many.
    pub limit: usize,
}

impl ListJobs {
    /// The newest `limit` jobs, unfiltered.
    pub fn newest(limit: usize) -> Self {
        Self {
            owner_id: None,
            account: None,
            label_set: None,
            states: None,
            active_only: false,
            due_by: None,
            due_after: None,
            spares_only: false,
            queued_from: None,
            queued_until: None,
            cursor: None,
            limit,
        }
    }

    /// Every active job, up to `limit`.
    pub fn active(limit: usize) -> Self {
        Self {
            active_only: true,
            ..Self::newest(limit)
        }
    }

    /// Every job due at or before `now` ([`JobRecord::due_at`]), up to
    /// `limit`.
    pub fn due(now: Timestamp, limit: usize) -> Self {
        Self {
            due_by: Some(now),
            ..Self::newest(limit)
        }
    }

    /// Every job due after `after` and at or before `now`, up to `limit`.
    pub fn due_since(after: Timestamp, now: Timestamp, limit: usize) -> Self {
        Self {
            due_after: Some(after),
            ..Self::due(now, limit)
        }
    }

    /// Whether `record` passes the filters and comes after the cursor (the
    /// limit aside). Stores may use it, or answer the same through their
    /// indexes.
    pub fn matches(&self, record: &JobRecord) -> bool {
        self.admits(record)
            && self
                .cursor
                .is_none_or(|c| (record.queued_at, record.key) < (c.queued_at, c.key))
    }

    /// Whether `record` passes every filter (owner, account, label set,
    /// states, activity, due time, spares, time window). A store that selects rows by clear
    /// index columns checks each decrypted record with this before
    /// returning it: a rewritten column must not hand one tenant's record
    /// to a query for another's.
    pub fn admits(&self, record: &JobRecord) -> bool {
        self.owner_id.is_none_or(|o| o == record.owner_id)
            && self
                .account
                .as_ref()
                .is_none_or(|a| record.account.as_ref() == Some(a))
            && self.label_set.is_none_or(|l| l == record.label_set)
            && self
                .states
                .as_ref()
                .is_none_or(|s| s.contains(&record.state))
            && (!self.active_only || record.is_active())
            && self
                .due_by
                .is_none_or(|t| record.due_at().is_some_and(|d| d <= t))
            && self
                .due_after
                .is_none_or(|t| record.due_at().is_some_and(|d| d > t))
            && (!self.spares_only || record.spare_runners() > 0)
            && self.queued_from.is_none_or(|t| record.queued_at >= t)
            && self.queued_until.is_none_or(|t| record.queued_at < t)
    }
}

/// A page of history.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct JobPage {
    /// The records, newest first.
    pub jobs: Vec<Versioned<JobRecord>>,
    /// Where the next page starts, if there may be one.
    pub next: Option<JobCursor>,
}

impl JobPage {
    /// A page.
    pub fn new(jobs: Vec<Versioned<JobRecord>>, next: Option<JobCursor>) -> Self {
        Self { jobs, next }
    }
}

/// Records that a delivery was processed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordDelivery {
    /// The delivery.
    pub id: DeliveryId,
    /// When it was received.
    pub received_at: Timestamp,
}

impl RecordDelivery {
    /// Records `id`.
    pub fn new(id: DeliveryId, received_at: Timestamp) -> Self {
        Self { id, received_at }
    }
}

/// Whether a delivery was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryRecorded {
    /// True the first time an id is recorded, false for a duplicate.
    pub first: bool,
}

impl DeliveryRecorded {
    /// The outcome.
    pub fn new(first: bool) -> Self {
        Self { first }
    }
}

/// Takes or renews a named lease (leadership of the reconciler, say).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcquireLease {
    /// The lease's name.
    pub name: String,
    /// Who wants it.
    pub owner: String,
    /// The time it is judged at.
    pub now: Timestamp,
    /// How long it lasts.
    pub ttl: Duration,
}

impl AcquireLease {
    /// Acquires `name` for `owner`.
    pub fn new(
        name: impl Into<String>,
        owner: impl Into<String>,
        now: Timestamp,
        ttl: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            owner: owner.into(),
            now,
            ttl,
        }
    }
}

/// The state of a lease after an acquire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseGrant {
    /// Whether the caller holds it now.
    pub acquired: bool,
    /// Who holds it.
    pub holder: String,
    /// Until when.
    pub expires_at: Timestamp,
}

impl LeaseGrant {
    /// A grant.
    pub fn new(acquired: bool, holder: String, expires_at: Timestamp) -> Self {
        Self {
            acquired,
            holder,
            expires_at,
        }
    }
}

/// Gives up a lease, if the caller holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReleaseLease {
    /// The lease's name.
    pub name: String,
    /// Who gives it up.
    pub owner: String,
}

impl ReleaseLease {
    /// Releases `name` held by `owner`.
    pub fn new(name: impl Into<String>, owner: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            owner: owner.into(),
        }
    }
}

/// Counts an owner's jobs still queued (active, in [`JobState::Queued`]:
/// waiting for an instance), for the `max_queued` limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CountQueued {
    /// Whose jobs.
    pub owner_id: OwnerId,
    /// Counting stops here: the cost is bounded by the limit, never by
    /// the owner's backlog.
    pub at_most: u64,
}

impl CountQueued {
    /// Counts `owner_id`'s queued jobs up to `at_most`.
    pub fn new(owner_id: OwnerId, at_most: u64) -> Self {
        Self { owner_id, at_most }
    }
}

/// Retention: removes what is older than a cut-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purge {
    /// Inactive jobs queued before this are removed.
    pub before: Timestamp,
    /// Delivery ids received before this are removed: they are kept only
    /// as long as GitHub may redeliver them, a much shorter window than the
    /// history's retention.
    pub deliveries_before: Timestamp,
}

impl Purge {
    /// Purges inactive jobs queued, and deliveries received, before `before`.
    pub fn before(before: Timestamp) -> Self {
        Self {
            before,
            deliveries_before: before,
        }
    }

    /// Purges deliveries received before `before` instead.
    pub fn with_deliveries_before(mut self, before: Timestamp) -> Self {
        self.deliveries_before = before;
        self
    }
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purged {
    /// Job records removed.
    pub jobs: usize,
    /// Delivery ids removed.
    pub deliveries: usize,
}

impl Purged {
    /// The counts.
    pub fn new(jobs: usize, deliveries: usize) -> Self {
        Self { jobs, deliveries }
    }
}

/// The page size of [`JobStore::count_queued`]'s default.
const PAGE_FOR_COUNT: usize = 500;

/// Durable job records. Every write is a compare-and-swap on the record's
/// version, so concurrent writers (tasks or replicas) never lose an update.
///
/// # Implementing
///
/// The hard parts are atomicity and tenancy: `put_job` is a compare-and-
/// swap whose delivery is recorded with the write or not at all;
/// `claim_job` counts slots and takes the claim in one step across every
/// writer; every read returns only records that match the query's owner
/// (check the decrypted record, not only a clear column). Start from the
/// conformance suite, `sprinters_core::testing::job_store`, and its checks
/// one by one in `sprinters_core::testing::checks::job_store`; the SQLite
/// and PostgreSQL stores of `sprinters-store` are two full ones. To change
/// what a store does around each call (time it, bound it), wrap it in a
/// [layer](crate::layers) instead:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sprinters_core::layers::{LayerExt, TimeoutLayer};
/// use sprinters_core::memory::MemoryJobStore;
/// use sprinters_core::ports::DynJobStore;
///
/// let store: DynJobStore =
///     Arc::new(MemoryJobStore::new()).layer(TimeoutLayer::new(Duration::from_secs(5)));
/// assert!(store.is_shared());
/// ```
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait JobStore: Send + Sync + fmt::Debug + 'static {
    /// A job record and its version.
    async fn get_job(&self, key: JobKey) -> Result<Option<Versioned<JobRecord>>>;
    /// Creates or replaces a record by compare-and-swap; returns the new
    /// version. With a [`PutJob::delivery`], the delivery is checked first
    /// (`Duplicate` when recorded), then the version (`Conflict`), and
    /// recorded only with the write. After a crash a store may have kept
    /// the write without the delivery (it is then processed again, which
    /// the engine tolerates), never the delivery without the write.
    async fn put_job(&self, request: PutJob) -> Result<Version>;
    /// Claims a job for launching: [`Claim::Held`] when it does not exist
    /// or another owner holds an unexpired claim, [`Claim::Full`] when a cap
    /// of [`ClaimJob::caps`] is reached. Re-claiming one's own claim renews
    /// it. The count and the claim are one atomic step across every writer
    /// of the store: two claims never both take the last slot.
    async fn claim_job(&self, request: ClaimJob) -> Result<Claim>;
    /// A page of history, newest first.
    async fn list_jobs(&self, request: ListJobs) -> Result<JobPage>;
    /// Whether a delivery was already recorded.
    async fn delivery_seen(&self, id: DeliveryId) -> Result<bool>;
    /// Records a processed delivery; `first` is false for a duplicate.
    async fn record_delivery(&self, request: RecordDelivery) -> Result<DeliveryRecorded>;
    /// Takes or renews a named lease.
    async fn acquire_lease(&self, request: AcquireLease) -> Result<LeaseGrant>;
    /// Gives up a named lease held by the caller.
    async fn release_lease(&self, request: ReleaseLease) -> Result<()>;
    /// An owner's record and its version.
    async fn get_tenant(&self, owner_id: OwnerId) -> Result<Option<Versioned<TenantRecord>>>;
    /// Creates or replaces an owner's record by compare-and-swap; returns
    /// the new version.
    async fn put_tenant(&self, request: PutTenant) -> Result<Version>;
    /// Every owner's record (a few thousand at most: read every tick).
    async fn list_tenants(&self) -> Result<Vec<Versioned<TenantRecord>>>;
    /// Deletes an owner's record if its version is still `version`
    /// (`Conflict` otherwise); nothing if it does not exist.
    async fn delete_tenant(&self, owner_id: OwnerId, version: Version) -> Result<()>;
    /// Removes inactive jobs and deliveries older than the cut-off.
    async fn purge(&self, request: Purge) -> Result<Purged>;
    /// How many of an owner's jobs are queued, up to
    /// [`CountQueued::at_most`], across every writer of the store. The
    /// default pages through [`JobStore::list_jobs`] (reading each record);
    /// a database counts an index instead.
    async fn count_queued(&self, request: CountQueued) -> Result<u64> {
        if request.at_most == 0 {
            return Ok(0);
        }
        let mut query = ListJobs::active(PAGE_FOR_COUNT);
        query.owner_id = Some(request.owner_id);
        query.states = Some(vec![JobState::Queued]);
        let mut counted = 0u64;
        loop {
            let page = self.list_jobs(query.clone()).await?;
            counted += page.jobs.len() as u64;
            match page.next {
                Some(cursor) if counted < request.at_most => query.cursor = Some(cursor),
                _ => return Ok(counted.min(request.at_most)),
            }
        }
    }
    /// Whether another engine may write the store at the same time
    /// (replicas on one database, or engines sharing one in-memory store):
    /// the engine then leaves caps to the store's count in
    /// [`JobStore::claim_job`] alone. A store only one process can open (an
    /// embedded file, locked) answers `false`, and the engine's own count
    /// decides at once, so that a new job is stored already claimed in one
    /// write; two engines must then not share it. When in doubt, `true`.
    fn is_shared(&self) -> bool {
        true
    }
}
