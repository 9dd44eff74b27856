//! Reading and writing job records by compare-and-swap.

use super::Inner;
use crate::domain::{AccountId, JobKey};
use crate::events::WorkflowJobEvent;
use crate::job::{JobRecord, JobState};
use crate::labels::{JobLabels, LabelSetKey};
use crate::ports::{PutJob, Versioned};
use crate::time::Timestamp;
use crate::{ErrorKind, Result};

/// A compare-and-swap that keeps losing means something is badly wrong.
const MAX_CAS_ROUNDS: usize = 64;

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
        mut current: Versioned<JobRecord>,
        mut change: F,
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
                .store
                .put_job(PutJob::replace(record.clone(), current.version))
                .await
            {
                Ok(version) => {
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
    ) -> Result<(Versioned<JobRecord>, bool)>
    where
        F: FnMut(&mut JobRecord) -> bool + Send,
    {
        let key = fresh.key;
        match self.store.put_job(PutJob::create(fresh.clone())).await {
            Ok(version) => Ok((
                Versioned {
                    value: fresh,
                    version,
                },
                true,
            )),
            Err(e) if *e.kind() == ErrorKind::Conflict => match self.update(key, change).await? {
                Some(record) => Ok((record, false)),
                None => Err(crate::Error::conflict(format!(
                    "job {key} vanished while being written"
                ))),
            },
            Err(e) => Err(e),
        }
    }

    /// Creates `fresh` if the job has no record yet, otherwise applies
    /// `change` to the stored one. Returns the record and whether it was
    /// created.
    pub(super) async fn upsert<F>(
        &self,
        fresh: JobRecord,
        change: F,
    ) -> Result<(Versioned<JobRecord>, bool)>
    where
        F: FnMut(&mut JobRecord) -> bool + Send,
    {
        if let Some(current) = self.store.get_job(fresh.key).await? {
            return Ok((self.update_from(current, change).await?, false));
        }
        self.create_or_update(fresh, change).await
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
        installation_id: event.installation_id,
        name: event.name.clone(),
        labels: event.labels.clone(),
        label_set: LabelSetKey::of(&event.labels),
        spec: labels.map(|l| l.spec.clone()),
        account,
        state,
        message: None,
        launches: Vec::new(),
        ran_on: None,
        conclusion: None,
        queued_at: now,
        started_at: None,
        completed_at: None,
        failed_attempts: 0,
        next_attempt_at: None,
        lease: None,
        cost_micros: None,
        rerun_requested: false,
    }
}
