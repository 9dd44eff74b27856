//! Reading and writing job records by compare-and-swap, and recording the
//! delivery being handled with the write that processes it.

use std::sync::atomic::{AtomicBool, Ordering};

use super::Inner;
use crate::domain::{AccountId, JobKey};
use crate::events::WorkflowJobEvent;
use crate::job::{JobRecord, JobState};
use crate::labels::{JobLabels, LabelSetKey};
use crate::ports::{PutJob, RecordDelivery, Versioned};
use crate::time::Timestamp;
use crate::{ErrorKind, Result};

/// A compare-and-swap that keeps losing means something is badly wrong.
const MAX_CAS_ROUNDS: usize = 64;

/// The delivery being handled. A handler hands it to the write whose
/// success makes the delivery's effect durable, if what follows that
/// write is repaired without the delivery (by `process_due` or the
/// reconciler); otherwise [`super::Engine::handle`] records it after.
#[derive(Debug)]
pub(super) struct Receipt {
    delivery: RecordDelivery,
    recorded: AtomicBool,
}

impl Receipt {
    pub(super) fn new(delivery: RecordDelivery) -> Self {
        Self {
            delivery,
            recorded: AtomicBool::new(false),
        }
    }

    /// Whether a write has recorded the delivery.
    pub(super) fn recorded(&self) -> bool {
        self.recorded.load(Ordering::Acquire)
    }

    /// A receipt for the same delivery, for a write made in another task;
    /// [`Receipt::take_over`] tells this one whether that write recorded it.
    pub(super) fn detached(&self) -> Self {
        Self::new(self.delivery.clone())
    }

    /// Marks this receipt recorded if `detached`, made from it, was.
    pub(super) fn take_over(&self, detached: &Receipt) {
        if detached.recorded() {
            self.recorded.store(true, Ordering::Release);
        }
    }

    pub(super) fn into_delivery(self) -> RecordDelivery {
        self.delivery
    }
}

impl Inner {
    /// Applies `change` to the stored record until the write wins. `change`
    /// returns whether it changed anything; nothing is written otherwise.
    /// Returns the record as stored afterwards, `None` if it does not exist.
    pub(super) async fn update<F>(
        &self,
        key: JobKey,
        change: F,
    ) -> Result<Option<Versioned<JobRecord>>>
    where
        F: FnMut(&mut JobRecord) -> bool + Send,
    {
        match self.store.get_job(key).await? {
            Some(current) => self.update_from(current, change).await.map(Some),
            None => Ok(None),
        }
    }

    /// Like [`Inner::update`], starting from a version just read, so the
    /// common case costs one write and no read.
    pub(super) async fn update_from<F>(
        &self,
        current: Versioned<JobRecord>,
        change: F,
    ) -> Result<Versioned<JobRecord>>
    where
        F: FnMut(&mut JobRecord) -> bool + Send,
    {
        self.update_recording(current, change, None).await
    }

    /// Writes `request`, recording `receipt`'s delivery with it when given.
    async fn put(&self, request: PutJob, receipt: Option<&Receipt>) -> Result<u64> {
        match receipt {
            Some(receipt) if !receipt.recorded() => {
                let request = request.with_delivery(receipt.delivery.clone());
                let version = self.store.put_job(request).await?;
                receipt.recorded.store(true, Ordering::Release);
                Ok(version)
            }
            _ => self.store.put_job(request).await,
        }
    }

    /// [`Inner::update_from`] whose first write also records `receipt`'s
    /// delivery (failing with `Duplicate` if it was processed already).
    async fn update_recording<F>(
        &self,
        mut current: Versioned<JobRecord>,
        mut change: F,
        receipt: Option<&Receipt>,
    ) -> Result<Versioned<JobRecord>>
    where
        F: FnMut(&mut JobRecord) -> bool + Send,
    {
        let key = current.value.key;
        for _ in 0..MAX_CAS_ROUNDS {
            let mut record = current.value.clone();
            if !change(&mut record) {
                return Ok(current);
            }
            match self
                .put(PutJob::replace(record.clone(), current.version), receipt)
                .await
            {
                Ok(version) => {
                    // A launch ended: its slot frees here at once.
                    self.limiter.seen(&record, version);
                    if record.state != current.value.state {
                        self.observer
                            .job_state_changed(Some(current.value.state), record.state);
                    }
                    return Ok(Versioned {
                        value: record,
                        version,
                    });
                }
                Err(e) if *e.kind() == ErrorKind::Conflict => {
                    current = match self.store.get_job(key).await? {
                        Some(c) => c,
                        None => {
                            return Err(crate::Error::conflict(format!(
                                "job {key} vanished while being written"
                            )));
                        }
                    };
                }
                Err(e) => return Err(e),
            }
        }
        Err(crate::Error::conflict(format!(
            "job {key}: gave up after {MAX_CAS_ROUNDS} lost compare-and-swaps"
        )))
    }

    /// [`Inner::upsert`] for an event that usually is a job's first (its
    /// `queued`): the create is tried first, saving the read; a record that
    /// exists already is updated as `upsert` would.
    pub(super) async fn create_or_update<F>(
        &self,
        fresh: JobRecord,
        change: F,
        receipt: Option<&Receipt>,
    ) -> Result<(Versioned<JobRecord>, bool)>
    where
        F: FnMut(&mut JobRecord) -> bool + Send,
    {
        let key = fresh.key;
        match self.put(PutJob::create(fresh.clone()), receipt).await {
            Ok(version) => {
                self.limiter.seen(&fresh, version);
                self.observer.job_state_changed(None, fresh.state);
                Ok((
                    Versioned {
                        value: fresh,
                        version,
                    },
                    true,
                ))
            }
            Err(e) if *e.kind() == ErrorKind::Conflict => match self.store.get_job(key).await? {
                Some(current) => Ok((
                    self.update_recording(current, change, receipt).await?,
                    false,
                )),
                None => Err(crate::Error::conflict(format!(
                    "job {key} vanished while being written"
                ))),
            },
            Err(e) => Err(e),
        }
    }

    /// Creates `fresh` if the job has no record yet, otherwise applies
    /// `change` to the stored one. Returns the record and whether it was
    /// created. The first write records `receipt`'s delivery, if given.
    pub(super) async fn upsert<F>(
        &self,
        fresh: JobRecord,
        change: F,
        receipt: Option<&Receipt>,
    ) -> Result<(Versioned<JobRecord>, bool)>
    where
        F: FnMut(&mut JobRecord) -> bool + Send,
    {
        if let Some(current) = self.store.get_job(fresh.key).await? {
            return Ok((
                self.update_recording(current, change, receipt).await?,
                false,
            ));
        }
        self.create_or_update(fresh, change, receipt).await
    }
}

/// A new record for the job an event is about.
pub(super) fn new_record(
    event: &WorkflowJobEvent,
    labels: Option<&JobLabels>,
    account: Option<AccountId>,
    state: JobState,
    now: Timestamp,
) -> JobRecord {
    JobRecord {
        key: event.job,
        run_id: event.run_id,
        repository: event.repository.clone(),
        owner_id: event.owner_id,
        installation_id: event.installation_id,
        name: event.name.clone(),
        labels: event.labels.clone(),
        label_set: LabelSetKey::scoped(event.owner_id, &event.repository, &event.labels),
        spec: labels.map(|l| l.spec.clone()),
        account,
        state,
        message: None,
        launches: Vec::new(),
        ran_on: None,
        ran_on_launch: None,
        conclusion: None,
        queued_at: now,
        started_at: None,
        completed_at: None,
        failed_attempts: 0,
        next_attempt_at: None,
        lease: None,
        cost_micros: None,
        rerun_requested: false,
        rerun_pending: false,
    }
}
