//! The in-memory [`JobStore`]: the model the conformance suite and the
//! durable stores' property tests compare against.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Faults, lock};
use crate::domain::{DeliveryId, JobId, JobKey, OwnerId, RunAttempt};
use crate::job::{JobRecord, Lease};
use crate::labels::LabelSetKey;
use crate::ports::{
    AcquireLease, Claim, ClaimJob, DeliveryRecorded, JobCursor, JobPage, JobStore, LeaseGrant,
    ListJobs, Purge, Purged, PutJob, PutTenant, RecordDelivery, ReleaseLease, SlotBook, Version,
    Versioned,
};
use crate::tenant::TenantRecord;
use crate::time::Timestamp;
use crate::{Error, Result};

/// Job records in memory, indexed by queue time and, while active, by label
/// set, so the engine's look-ups stay fast however long the history grows.
#[derive(Debug, Default)]
pub struct MemoryJobStore {
    state: Mutex<StoreState>,
    faults: Faults,
}

#[derive(Debug, Default)]
struct StoreState {
    jobs: HashMap<JobKey, (JobRecord, Version)>,
    newest_first: BTreeSet<(Timestamp, JobKey)>,
    active_by_label_set: HashMap<LabelSetKey, HashSet<JobKey>>,
    due: BTreeSet<(Timestamp, JobKey)>,
    deliveries: HashMap<DeliveryId, Timestamp>,
    leases: HashMap<String, (String, Timestamp)>,
    tenants: std::collections::BTreeMap<OwnerId, (TenantRecord, Version)>,
    slots: SlotBook,
}

impl StoreState {
    fn write(&mut self, record: JobRecord, version: Version) {
        let key = record.key;
        if let Some((old, _)) = self.jobs.get(&key) {
            self.newest_first.remove(&(old.queued_at, key));
            if let Some(at) = old.due_at() {
                self.due.remove(&(at, key));
            }
            if let Some(set) = self.active_by_label_set.get_mut(&old.label_set) {
                set.remove(&key);
                if set.is_empty() {
                    self.active_by_label_set.remove(&old.label_set);
                }
            }
        }
        self.newest_first.insert((record.queued_at, key));
        if let Some(at) = record.due_at() {
            self.due.insert((at, key));
        }
        if record.is_active() {
            self.active_by_label_set
                .entry(record.label_set)
                .or_default()
                .insert(key);
        }
        self.slots.record(&record);
        self.jobs.insert(key, (record, version));
    }

    fn remove(&mut self, key: JobKey) {
        self.slots.remove(key);
        if let Some((old, _)) = self.jobs.remove(&key) {
            self.newest_first.remove(&(old.queued_at, key));
            if let Some(at) = old.due_at() {
                self.due.remove(&(at, key));
            }
            if let Some(set) = self.active_by_label_set.get_mut(&old.label_set) {
                set.remove(&key);
            }
        }
    }
}

impl MemoryJobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queued failures, by operation name (`get_job`, `put_job`,
    /// `claim_job`, `list_jobs`, `record_delivery`, ...).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// How many job records it holds.
    pub fn len(&self) -> usize {
        lock(&self.state).jobs.len()
    }

    /// Whether it holds no job record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl JobStore for MemoryJobStore {
    async fn get_job(&self, key: JobKey) -> Result<Option<Versioned<JobRecord>>> {
        self.faults.check("get_job")?;
        Ok(lock(&self.state).jobs.get(&key).map(|(r, v)| Versioned {
            value: r.clone(),
            version: *v,
        }))
    }

    async fn put_job(&self, request: PutJob) -> Result<Version> {
        self.faults.check("put_job")?;
        let mut s = lock(&self.state);
        let key = request.record.key;
        if let Some(d) = &request.delivery
            && s.deliveries.contains_key(&d.id)
        {
            return Err(Error::duplicate(format!(
                "delivery {} was processed already",
                d.id
            )));
        }
        let current = s.jobs.get(&key).map(|(_, v)| *v);
        let version = match (request.expected, current) {
            (None, None) => 1,
            (Some(expected), Some(current)) if expected == current => current + 1,
            (None, Some(_)) => return Err(Error::conflict(format!("job {key} already exists"))),
            (Some(expected), current) => {
                return Err(Error::conflict(format!(
                    "job {key} is at version {}, not {expected}",
                    current.map_or_else(|| "none".to_owned(), |v| v.to_string())
                )));
            }
        };
        if let Some(d) = request.delivery {
            s.deliveries.insert(d.id, d.received_at);
        }
        s.write(request.record, version);
        Ok(version)
    }

    async fn claim_job(&self, request: ClaimJob) -> Result<Claim> {
        self.faults.check("claim_job")?;
        let mut s = lock(&self.state);
        let Some((record, version)) = s.jobs.get(&request.key).cloned() else {
            return Ok(Claim::Held);
        };
        if let Some(lease) = &record.lease
            && lease.owner != request.owner
            && lease.expires_at > request.now
        {
            return Ok(Claim::Held);
        }
        if let Some(reached) = s.slots.full(&record, request.caps, request.now) {
            return Ok(Claim::Full(reached));
        }
        let mut record = record;
        record.lease = Some(Lease {
            owner: request.owner,
            expires_at: request.now.saturating_add(request.ttl),
        });
        let version = version + 1;
        s.write(record.clone(), version);
        Ok(Claim::Granted(Versioned {
            value: record,
            version,
        }))
    }

    async fn list_jobs(&self, request: ListJobs) -> Result<JobPage> {
        self.faults.check("list_jobs")?;
        let s = lock(&self.state);
        let limit = request.limit;
        // The indexed queries pick candidates in no useful order; they are
        // sorted newest first, as every page is.
        let candidates: Option<Vec<JobKey>> = match (request.due_by, request.active_only) {
            // The tick's query: what is due, from its own index.
            (Some(by), _) => {
                let from = request.due_after.map_or(Timestamp::EPOCH, |t| {
                    t.saturating_add(std::time::Duration::from_millis(1))
                });
                let first = (from, JobKey::new(JobId::new(0), RunAttempt::FIRST));
                Some(
                    s.due
                        .range(first..)
                        .take_while(|(at, _)| *at <= by)
                        .map(|(_, k)| *k)
                        .collect(),
                )
            }
            // The engine's hot query: the active jobs of one label set.
            (None, true) if request.label_set.is_some() => Some(
                request
                    .label_set
                    .and_then(|set| s.active_by_label_set.get(&set))
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect(),
            ),
            _ => None,
        };
        let mut jobs: Vec<Versioned<JobRecord>> = match candidates {
            Some(keys) => {
                let mut v: Vec<_> = keys
                    .iter()
                    .filter_map(|k| s.jobs.get(k))
                    .filter(|(r, _)| request.matches(r))
                    .map(|(r, v)| Versioned {
                        value: r.clone(),
                        version: *v,
                    })
                    .collect();
                v.sort_by_key(|j| std::cmp::Reverse((j.value.queued_at, j.value.key)));
                v.truncate(limit.saturating_add(1));
                v
            }
            None => s
                .newest_first
                .iter()
                .rev()
                .filter_map(|(_, k)| s.jobs.get(k))
                .filter(|(r, _)| request.matches(r))
                .take(limit.saturating_add(1))
                .map(|(r, v)| Versioned {
                    value: r.clone(),
                    version: *v,
                })
                .collect(),
        };
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last().map(|j| JobCursor::after(&j.value))
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }

    async fn delivery_seen(&self, id: DeliveryId) -> Result<bool> {
        self.faults.check("delivery_seen")?;
        Ok(lock(&self.state).deliveries.contains_key(&id))
    }

    async fn record_delivery(&self, request: RecordDelivery) -> Result<DeliveryRecorded> {
        self.faults.check("record_delivery")?;
        let mut s = lock(&self.state);
        let first = !s.deliveries.contains_key(&request.id);
        if first {
            s.deliveries.insert(request.id, request.received_at);
        }
        Ok(DeliveryRecorded { first })
    }

    async fn acquire_lease(&self, request: AcquireLease) -> Result<LeaseGrant> {
        self.faults.check("acquire_lease")?;
        let mut s = lock(&self.state);
        let expires_at = request.now.saturating_add(request.ttl);
        match s.leases.get(&request.name) {
            Some((holder, until)) if holder != &request.owner && *until > request.now => {
                Ok(LeaseGrant::new(false, holder.clone(), *until))
            }
            _ => {
                s.leases
                    .insert(request.name, (request.owner.clone(), expires_at));
                Ok(LeaseGrant::new(true, request.owner, expires_at))
            }
        }
    }

    async fn release_lease(&self, request: ReleaseLease) -> Result<()> {
        self.faults.check("release_lease")?;
        let mut s = lock(&self.state);
        if s.leases
            .get(&request.name)
            .is_some_and(|(h, _)| h == &request.owner)
        {
            s.leases.remove(&request.name);
        }
        Ok(())
    }

    async fn get_tenant(&self, owner_id: OwnerId) -> Result<Option<Versioned<TenantRecord>>> {
        self.faults.check("get_tenant")?;
        Ok(lock(&self.state)
            .tenants
            .get(&owner_id)
            .map(|(r, v)| Versioned {
                value: r.clone(),
                version: *v,
            }))
    }

    async fn put_tenant(&self, request: PutTenant) -> Result<Version> {
        self.faults.check("put_tenant")?;
        let mut s = lock(&self.state);
        let owner_id = request.record.owner_id;
        let current = s.tenants.get(&owner_id).map(|(_, v)| *v);
        if current != request.expected {
            return Err(Error::conflict(format!(
                "owner {owner_id} is at version {current:?}, not {:?}",
                request.expected
            )));
        }
        let version = current.unwrap_or(0) + 1;
        s.tenants.insert(owner_id, (request.record, version));
        Ok(version)
    }

    async fn list_tenants(&self) -> Result<Vec<Versioned<TenantRecord>>> {
        self.faults.check("list_tenants")?;
        Ok(lock(&self.state)
            .tenants
            .values()
            .map(|(r, v)| Versioned {
                value: r.clone(),
                version: *v,
            })
            .collect())
    }

    async fn delete_tenant(&self, owner_id: OwnerId, version: Version) -> Result<()> {
        self.faults.check("delete_tenant")?;
        let mut s = lock(&self.state);
        match s.tenants.get(&owner_id) {
            None => Ok(()),
            Some((_, v)) if *v == version => {
                s.tenants.remove(&owner_id);
                Ok(())
            }
            Some((_, v)) => Err(Error::conflict(format!(
                "owner {owner_id} is at version {v}, not {version}"
            ))),
        }
    }

    async fn purge(&self, request: Purge) -> Result<Purged> {
        self.faults.check("purge")?;
        let mut s = lock(&self.state);
        let old: Vec<JobKey> = s
            .jobs
            .values()
            .filter(|(r, _)| !r.is_active() && r.queued_at < request.before)
            .map(|(r, _)| r.key)
            .collect();
        for key in &old {
            s.remove(*key);
        }
        let before = s.deliveries.len();
        s.deliveries
            .retain(|_, at| *at >= request.deliveries_before);
        Ok(Purged::new(old.len(), before - s.deliveries.len()))
    }
}
