//! [`FileJobStore`]: the `JobStore` on local files.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use sprinters_core::domain::{AccountId, DeliveryId, JobKey};
use sprinters_core::job::{JobRecord, Lease};
use sprinters_core::ports::{
    AcquireLease, CapReached, Claim, ClaimJob, DeliveryRecorded, JobCursor, JobPage, JobStore,
    LeaseGrant, ListJobs, Purge, Purged, PutJob, RecordDelivery, ReleaseLease, Version, Versioned,
};
use sprinters_core::time::Timestamp;
use sprinters_core::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

use crate::frame::{self, End, Kind};
use crate::index::{Index, JobEntry, LeaseEntry, Summary, VaultEntry};
use crate::keyring::{KeyRing, OpaqueIds, OpenFailure};
use crate::keys::{KeyProvider, MasterKey};
use crate::latency::SyncLatency;
use crate::log::{Loc, Log, segment_name};

/// Retention compacts once the log is this big and mostly dead.
const COMPACT_AFTER_BYTES: u64 = 16 << 20;

/// The encrypted, append-only job store of one data directory. Cheap to
/// clone; clones share the store. Only one process may open a directory.
#[derive(Clone)]
pub struct FileJobStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for FileJobStore {
    /// The directory and the number of jobs: no key, no record.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJobStore")
            .field("dir", &self.inner.dir)
            .field("jobs", &self.job_count())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    // Held for the store's lifetime: the directory lock.
    _lock: File,
    pub(crate) keyring: Mutex<KeyRing>,
    pub(crate) ids: OpaqueIds,
    pub(crate) index: Mutex<Index>,
    pub(crate) log: Log,
}

/// What opening a store found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// Frames read.
    pub frames: usize,
    /// Records skipped because their account's key was destroyed.
    pub shredded: usize,
    /// Bytes of a torn last write cut off the end.
    pub torn_bytes: u64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| Error::integrity(format!("encoding a record: {e}")))
}

/// The summary the index needs, then the record, in one buffer.
fn encode_job(summary: &Summary, record: &JobRecord) -> Result<Vec<u8>> {
    let buf = postcard::to_extend(summary, Vec::with_capacity(512))
        .and_then(|buf| postcard::to_extend(record, buf))
        .map_err(|e| Error::integrity(format!("encoding a record: {e}")))?;
    Ok(buf)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], at: &str) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::integrity(format!("{at}: undecodable record: {e}")))
}

pub(crate) fn job_id_bytes(key: JobKey) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&key.job_id.get().to_le_bytes());
    b[8..].copy_from_slice(&key.run_attempt.get().to_le_bytes());
    b
}

fn at(loc: Loc) -> String {
    format!(
        "segment {} offset {}",
        segment_name(loc.segment),
        loc.offset
    )
}

impl FileJobStore {
    /// Opens (or creates) the store in `dir` with the master key `keys`
    /// supplies. Fails fast if another process has it open, or if the key
    /// does not open its key ring; rebuilds the index, cutting off a torn
    /// last write with a warning.
    pub async fn open(dir: impl AsRef<Path>, keys: &dyn KeyProvider) -> Result<Self> {
        let master = keys.master_key().await?;
        let dir = dir.as_ref().to_owned();
        tokio::task::spawn_blocking(move || Self::open_with_key(&dir, &master).map(|(s, _)| s))
            .await
            .map_err(|e| Error::unavailable(format!("opening the store: {e}")))?
    }

    /// [`FileJobStore::open`] with the key in hand (blocking), also saying
    /// what was found.
    pub fn open_with_key(dir: &Path, master: &MasterKey) -> Result<(Self, OpenReport)> {
        crate::fsio::create_private_dir(dir)?;
        let lock_file = crate::fsio::lock_dir(dir)?;
        let ring = KeyRing::open_or_create(dir, master)?;
        let (log, listed) = Log::open(dir)?;
        let mut index = Index::default();
        let mut report = OpenReport::default();
        let mut versions: HashMap<[u8; 16], u64> = HashMap::new();
        let last = listed.len();
        for (i, segment) in listed.iter().enumerate() {
            let name = segment_name(*segment);
            let bytes = log.read_segment(*segment)?;
            let (frames, end) = frame::scan(&bytes, &name, i + 1 == last)?;
            for f in frames {
                report.frames += 1;
                let loc = Loc {
                    segment: *segment,
                    offset: f.offset,
                    len: f.len,
                };
                if f.kind != Kind::DeliveryPurge
                    && let Some(prev) = versions.get(&f.record_id)
                    && f.version <= *prev
                {
                    return Err(Error::integrity(format!(
                        "{}: version {} after version {prev} of the same record: an old frame was replayed",
                        at(loc),
                        f.version
                    )));
                }
                versions.insert(f.record_id, f.version);
                let plaintext = match ring.open(f.key_id, f.nonce, f.aad, f.ciphertext) {
                    Ok(p) => Zeroizing::new(p),
                    Err(OpenFailure::Shredded) => {
                        report.shredded += 1;
                        continue;
                    }
                    Err(OpenFailure::Unauthentic) => {
                        return Err(Error::integrity(format!(
                            "{}: record fails authentication",
                            at(loc)
                        )));
                    }
                };
                apply(&mut index, &mut versions, &f, loc, &plaintext)?;
            }
            if let End::Torn(at_offset) = end {
                report.torn_bytes = bytes.len() as u64 - at_offset;
                tracing::warn!(
                    segment = %name,
                    offset = at_offset,
                    bytes = report.torn_bytes,
                    "cutting off a torn last write (the process stopped mid-write; it was never acknowledged)"
                );
                log.truncate_active(at_offset)?;
            }
        }
        let active: Vec<JobEntry> = index.jobs.values().filter(|e| e.active).copied().collect();
        let ids = ring.opaque_ids();
        let store = FileJobStore {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                _lock: lock_file,
                keyring: Mutex::new(ring),
                ids,
                index: Mutex::new(index),
                log,
            }),
        };
        // The slots held, from the active jobs only (a few thousand): the
        // summaries replayed above do not say.
        for entry in active {
            match store.read_job(entry) {
                Ok(record) => lock(&store.inner.index).slots.record(&record),
                Err(e) if *e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok((store, report))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// How many job records the index holds.
    pub fn job_count(&self) -> usize {
        lock(&self.inner.index).jobs.len()
    }

    /// How many `fdatasync` calls acknowledged writes since open: with
    /// concurrent writers, far fewer than the writes (group commit).
    pub fn syncs(&self) -> u64 {
        self.inner.log.syncs()
    }

    /// How long those syncs took (write + `fdatasync`), as a histogram.
    pub fn sync_latency(&self) -> SyncLatency {
        self.inner.log.sync_latency()
    }

    /// Re-wraps every data key under `new`, without rewriting any record.
    /// Open the store with `new` from then on.
    pub fn rotate_master_key(&self, new: &MasterKey) -> Result<()> {
        lock(&self.inner.keyring).rotate_master(new)
    }

    /// Starts a new data key for `account` (`None`: records of no account).
    /// New writes use it; [`FileJobStore::compact`] re-seals older records.
    pub fn rotate_data_key(&self, account: Option<&AccountId>) -> Result<()> {
        let mut ring = lock(&self.inner.keyring);
        let scope = ring.scope_of(account);
        ring.rotate(&scope).map(|_| ())
    }

    /// Crypto-shredding: destroys every data key of `account`. Its job
    /// records and its stored access key can no longer be read by anyone;
    /// the next compaction removes them from disk. Returns how many job
    /// records became unreadable.
    pub fn delete_account(&self, account: &AccountId) -> Result<usize> {
        let mut index = lock(&self.inner.index);
        let mut ring = lock(&self.inner.keyring);
        let scope = ring.scope_of(Some(account));
        ring.destroy(&scope)?;
        let doomed: Vec<JobKey> = index
            .jobs
            .iter()
            .filter(|(_, e)| ring.scope_of_key(e.key_id) == Some(scope.as_str()))
            .map(|(k, _)| *k)
            .collect();
        for key in &doomed {
            index.remove_job(*key);
        }
        index.vault.retain(|(_, a), _| a != account);
        tracing::info!(jobs = doomed.len(), "account's data keys destroyed");
        Ok(doomed.len())
    }

    pub(crate) fn read_sealed(
        &self,
        loc: Loc,
        expect: Kind,
        version: u64,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let bytes = self.inner.log.read(loc)?;
        let f = frame::decode_one(&bytes, &segment_name(loc.segment), loc.offset)?;
        if f.kind != expect || f.version != version {
            return Err(Error::integrity(format!(
                "{}: not the record the index expects",
                at(loc)
            )));
        }
        let ring = lock(&self.inner.keyring);
        match ring.open(f.key_id, f.nonce, f.aad, f.ciphertext) {
            Ok(p) => Ok(Zeroizing::new(p)),
            Err(OpenFailure::Shredded) => Err(Error::not_found("the record's account was deleted")),
            Err(OpenFailure::Unauthentic) => Err(Error::integrity(format!(
                "{}: record fails authentication",
                at(loc)
            ))),
        }
    }

    fn read_job(&self, entry: JobEntry) -> Result<JobRecord> {
        let plaintext = self.read_sealed(entry.loc, Kind::Job, entry.version)?;
        let (_, rest) = postcard::take_from_bytes::<Summary>(&plaintext)
            .map_err(|e| Error::integrity(format!("{}: undecodable record: {e}", at(entry.loc))))?;
        decode(rest, &at(entry.loc))
    }

    /// Reads a job by its index entry; a compaction may have moved it
    /// meanwhile, so a vanished segment is looked up again once.
    fn read_current(&self, key: JobKey, entry: JobEntry) -> Result<Option<Versioned<JobRecord>>> {
        match self.read_job(entry) {
            Ok(value) => Ok(Some(Versioned {
                value,
                version: entry.version,
            })),
            Err(e) if *e.kind() == ErrorKind::NotFound => {
                let Some(entry) = lock(&self.inner.index).jobs.get(&key).copied() else {
                    return Ok(None);
                };
                Ok(Some(Versioned {
                    value: self.read_job(entry)?,
                    version: entry.version,
                }))
            }
            Err(e) => Err(e),
        }
    }

    /// Seals and appends one frame (not yet durable).
    pub(crate) fn write(
        &self,
        kind: Kind,
        account: Option<&AccountId>,
        record_id: [u8; 16],
        version: u64,
        plaintext: &[u8],
    ) -> Result<(Loc, u64, u32)> {
        let mut ring = lock(&self.inner.keyring);
        let scope = ring.scope_of(account);
        let (bytes, key_id) = ring.seal_frame(kind, &scope, record_id, version, plaintext)?;
        drop(ring);
        let (loc, seq) = self.inner.log.append(&bytes)?;
        Ok((loc, seq, key_id))
    }
}

/// Applies one opened frame to the index being rebuilt.
fn apply(
    index: &mut Index,
    versions: &mut HashMap<[u8; 16], u64>,
    f: &frame::Frame<'_>,
    loc: Loc,
    plaintext: &[u8],
) -> Result<()> {
    let here = at(loc);
    match f.kind {
        Kind::Job => {
            let (summary, _) = postcard::take_from_bytes::<Summary>(plaintext)
                .map_err(|e| Error::integrity(format!("{here}: undecodable record: {e}")))?;
            index.put_job(&summary, loc, f.version, f.key_id);
        }
        Kind::JobTombstone => {
            let key: JobKey = decode(plaintext, &here)?;
            index.remove_job(key);
            // A purged job may be recorded again later, from version 1.
            versions.remove(&f.record_id);
        }
        Kind::Delivery => {
            let received: Timestamp = decode(plaintext, &here)?;
            index
                .deliveries
                .insert(f.record_id, (received, loc, f.key_id));
        }
        Kind::DeliveryPurge => {
            let before: Timestamp = decode(plaintext, &here)?;
            // A purged delivery id may be recorded again, from version 1.
            index.deliveries.retain(|id, (at, _, _)| {
                let keep = *at >= before;
                if !keep {
                    versions.remove(id);
                }
                keep
            });
            index.delivery_purges = f.version;
        }
        Kind::Lease => {
            let (name, holder): (String, Option<(String, Timestamp)>) = decode(plaintext, &here)?;
            index.leases.insert(
                name,
                LeaseEntry {
                    holder,
                    version: f.version,
                    loc,
                },
            );
        }
        Kind::Vault => {
            let (owner, account, _, _): (
                sprinters_core::domain::OwnerId,
                AccountId,
                String,
                String,
            ) = decode(plaintext, &here)?;
            index.vault.insert(
                (owner, account),
                VaultEntry {
                    loc,
                    version: f.version,
                    key_id: f.key_id,
                },
            );
        }
        Kind::VaultTombstone => {
            let slot: (sprinters_core::domain::OwnerId, AccountId) = decode(plaintext, &here)?;
            index.vault.remove(&slot);
            versions.remove(&f.record_id);
        }
        Kind::Tenant => {
            let record = crate::rows::tenant_record(plaintext)
                .map_err(|e| Error::integrity(format!("{here}: {}", e.message())))?;
            let entry = VaultEntry {
                loc,
                version: f.version,
                key_id: f.key_id,
            };
            index.tenants.insert(record.owner_id, (entry, record));
        }
        Kind::TenantTombstone => {
            let owner_id: sprinters_core::domain::OwnerId = decode(plaintext, &here)?;
            index.tenants.remove(&owner_id);
            versions.remove(&f.record_id);
        }
    }
    Ok(())
}

#[async_trait]
impl JobStore for FileJobStore {
    async fn get_job(&self, key: JobKey) -> Result<Option<Versioned<JobRecord>>> {
        let entry = {
            let index = lock(&self.inner.index);
            let Some(entry) = index.jobs.get(&key).copied() else {
                return Ok(None);
            };
            if let Some(value) = index.hot(key, entry.version) {
                return Ok(Some(Versioned {
                    value,
                    version: entry.version,
                }));
            }
            entry
        };
        self.read_current(key, entry)
    }

    async fn put_job(&self, request: PutJob) -> Result<Version> {
        match self.put_job_unless(request, |_| None).await? {
            Ok(version) => Ok(version),
            Err(reached) => Err(Error::conflict(format!("unexpected cap: {reached}"))),
        }
    }

    async fn claim_job(&self, request: ClaimJob) -> Result<Claim> {
        for _ in 0..64 {
            let Some(current) = self.get_job(request.key).await? else {
                return Ok(Claim::Held);
            };
            if let Some(lease) = &current.value.lease
                && lease.owner != request.owner
                && lease.expires_at > request.now
            {
                return Ok(Claim::Held);
            }
            let before = current.value.clone();
            let mut record = current.value;
            record.lease = Some(Lease {
                owner: request.owner.clone(),
                expires_at: request.now.saturating_add(request.ttl),
            });
            // Counted under the index lock that the write takes: two claims
            // never both see the last slot free.
            let full = |index: &Index| index.slots.full(&before, request.caps, request.now);
            match self
                .put_job_unless(PutJob::replace(record.clone(), current.version), full)
                .await
            {
                Ok(Ok(version)) => {
                    return Ok(Claim::Granted(Versioned {
                        value: record,
                        version,
                    }));
                }
                Ok(Err(reached)) => return Ok(Claim::Full(reached)),
                Err(e) if *e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!(
            "job {}: claim kept losing to other writers",
            request.key
        )))
    }

    async fn list_jobs(&self, request: ListJobs) -> Result<JobPage> {
        let mut selected = lock(&self.inner.index).select(&request);
        let next = if selected.len() > request.limit {
            selected.truncate(request.limit);
            selected.last().map(|(key, e)| JobCursor {
                queued_at: e.queued_at,
                key: *key,
            })
        } else {
            None
        };
        let mut jobs = Vec::with_capacity(selected.len());
        for (key, entry) in selected {
            let hot = lock(&self.inner.index).hot(key, entry.version);
            let record = match hot {
                Some(value) => Some(Versioned {
                    value,
                    version: entry.version,
                }),
                None => self.read_current(key, entry)?,
            };
            // The index chose it; the sealed record decides.
            jobs.extend(record.filter(|r| request.admits(&r.value)));
        }
        Ok(JobPage::new(jobs, next))
    }

    async fn delivery_seen(&self, id: DeliveryId) -> Result<bool> {
        let record_id = self.inner.ids.id("delivery", id.as_str().as_bytes());
        Ok(lock(&self.inner.index).deliveries.contains_key(&record_id))
    }

    async fn record_delivery(&self, request: RecordDelivery) -> Result<DeliveryRecorded> {
        let record_id = self
            .inner
            .ids
            .id("delivery", request.id.as_str().as_bytes());
        let plaintext = encode(&request.received_at)?;
        let seq = {
            let mut index = lock(&self.inner.index);
            if index.deliveries.contains_key(&record_id) {
                return Ok(DeliveryRecorded::new(false));
            }
            let (loc, seq, key_id) = self.write(Kind::Delivery, None, record_id, 1, &plaintext)?;
            index
                .deliveries
                .insert(record_id, (request.received_at, loc, key_id));
            seq
        };
        self.inner.log.durable(seq).await?;
        Ok(DeliveryRecorded::new(true))
    }

    async fn acquire_lease(&self, request: AcquireLease) -> Result<LeaseGrant> {
        let record_id = self.inner.ids.id("lease", request.name.as_bytes());
        let expires_at = request.now.saturating_add(request.ttl);
        let seq = {
            let mut index = lock(&self.inner.index);
            let entry = index.leases.get(&request.name).cloned();
            if let Some(LeaseEntry {
                holder: Some((holder, until)),
                ..
            }) = &entry
                && holder != &request.owner
                && *until > request.now
            {
                return Ok(LeaseGrant::new(false, holder.clone(), *until));
            }
            let version = entry.map_or(1, |e| e.version + 1);
            let holder = Some((request.owner.clone(), expires_at));
            let plaintext = encode(&(&request.name, &holder))?;
            let (loc, seq, _) = self.write(Kind::Lease, None, record_id, version, &plaintext)?;
            index.leases.insert(
                request.name.clone(),
                LeaseEntry {
                    holder,
                    version,
                    loc,
                },
            );
            seq
        };
        self.inner.log.durable(seq).await?;
        Ok(LeaseGrant::new(true, request.owner, expires_at))
    }

    async fn release_lease(&self, request: ReleaseLease) -> Result<()> {
        let record_id = self.inner.ids.id("lease", request.name.as_bytes());
        let seq = {
            let mut index = lock(&self.inner.index);
            let Some(entry) = index.leases.get(&request.name).cloned() else {
                return Ok(());
            };
            if entry
                .holder
                .as_ref()
                .is_none_or(|(h, _)| h != &request.owner)
            {
                return Ok(());
            }
            let holder: Option<(String, Timestamp)> = None;
            let plaintext = encode(&(&request.name, &holder))?;
            let version = entry.version + 1;
            let (loc, seq, _) = self.write(Kind::Lease, None, record_id, version, &plaintext)?;
            index.leases.insert(
                request.name,
                LeaseEntry {
                    holder,
                    version,
                    loc,
                },
            );
            seq
        };
        self.inner.log.durable(seq).await
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

    async fn purge(&self, request: Purge) -> Result<Purged> {
        let (jobs, deliveries, seq) = {
            let mut index = lock(&self.inner.index);
            let expired = index.expired(request.before);
            let mut seq = 0;
            for (key, entry) in &expired {
                let record_id = self.inner.ids.id("job", &job_id_bytes(*key));
                let (_, s, _) = self.write(
                    Kind::JobTombstone,
                    None,
                    record_id,
                    entry.version + 1,
                    &encode(key)?,
                )?;
                index.remove_job(*key);
                seq = s;
            }
            let before = index.deliveries.len();
            let stale = index
                .deliveries
                .values()
                .any(|(at, _, _)| *at < request.deliveries_before);
            if stale {
                let version = index.delivery_purges + 1;
                let record_id = self.inner.ids.id("delivery purge", b"");
                let (_, s, _) = self.write(
                    Kind::DeliveryPurge,
                    None,
                    record_id,
                    version,
                    &encode(&request.deliveries_before)?,
                )?;
                index
                    .deliveries
                    .retain(|_, (at, _, _)| *at >= request.deliveries_before);
                index.delivery_purges = version;
                seq = s;
            }
            (expired.len(), before - index.deliveries.len(), seq)
        };
        if seq > 0 {
            self.inner.log.durable(seq).await?;
        }
        // Retention frees disk once most of the log is dead: tombstones,
        // old versions, purged history.
        let (live, total) = (
            lock(&self.inner.index).live_bytes(),
            self.inner.log.total_bytes(),
        );
        if total > COMPACT_AFTER_BYTES && total > 2 * live {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.compact())
                .await
                .map_err(|e| Error::unavailable(format!("compacting: {e}")))??;
        }
        Ok(Purged::new(jobs, deliveries))
    }

    /// Only this process opens the directory (it is locked).
    fn is_shared(&self) -> bool {
        false
    }
}

impl FileJobStore {
    /// `put_job`, unless `refuse` (asked under the index lock, after the
    /// version check) names a cap reached.
    async fn put_job_unless(
        &self,
        request: PutJob,
        refuse: impl FnOnce(&Index) -> Option<CapReached>,
    ) -> Result<std::result::Result<Version, CapReached>> {
        let record = &request.record;
        let key = record.key;
        let summary = Summary::of(record);
        let plaintext = Zeroizing::new(encode_job(&summary, record)?);
        let record_id = self.inner.ids.id("job", &job_id_bytes(key));
        let delivery = match &request.delivery {
            Some(d) => Some((
                self.inner.ids.id("delivery", d.id.as_str().as_bytes()),
                encode(&d.received_at)?,
                d,
            )),
            None => None,
        };
        let (version, seq) = {
            let mut index = lock(&self.inner.index);
            if let Some((id, _, d)) = &delivery
                && index.deliveries.contains_key(id)
            {
                return Err(Error::duplicate(format!(
                    "delivery {} was processed already",
                    d.id
                )));
            }
            let current = index.jobs.get(&key).map(|e| e.version);
            let version = match (request.expected, current) {
                (None, None) => 1,
                (Some(expected), Some(current)) if expected == current => current + 1,
                (None, Some(_)) => {
                    return Err(Error::conflict(format!("job {key} already exists")));
                }
                (Some(expected), current) => {
                    return Err(Error::conflict(format!(
                        "job {key} is at version {}, not {expected}",
                        current.map_or_else(|| "none".to_owned(), |v| v.to_string())
                    )));
                }
            };
            if let Some(reached) = refuse(&index) {
                return Ok(Err(reached));
            }
            let (loc, seq, key_id) = self.write(
                Kind::Job,
                record.account.as_ref(),
                record_id,
                version,
                &plaintext,
            )?;
            index.put_job(&summary, loc, version, key_id);
            index.slots.record(record);
            index.keep_hot(version, record);
            // After the record in the log: a torn tail can lose the
            // delivery (processed again), never keep it without the record.
            let seq = match &delivery {
                Some((id, plaintext, d)) => {
                    let (loc, seq, key_id) = self.write(Kind::Delivery, None, *id, 1, plaintext)?;
                    index.deliveries.insert(*id, (d.received_at, loc, key_id));
                    seq
                }
                None => seq,
            };
            (version, seq)
        };
        self.inner.log.durable(seq).await?;
        Ok(Ok(version))
    }
}
