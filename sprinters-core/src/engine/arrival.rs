//! A new job that can launch at once is written already claimed by this
//! replica, with its launch intent, in the one write that records it and
//! its delivery: a lone webhook costs one durable write before the
//! launch's API calls, not three (record, claim, intent).

use std::sync::Arc;

use tracing::Instrument;

use super::launch::launch_intent;
use super::{Inner, job_span};
use crate::Result;
use crate::domain::JobKey;
use crate::job::{JobRecord, JobState, Lease};
use crate::ports::Versioned;
use crate::time::Timestamp;

/// This replica's launch slot and launch task for one new job, taken
/// before the job's first write. Given back if the write does not happen
/// (an error, or the future dropped at any await); handed to the launch
/// task if it does.
pub(super) struct LaunchTicket {
    inner: Arc<Inner>,
    key: JobKey,
    armed: bool,
}

impl Drop for LaunchTicket {
    fn drop(&mut self) {
        if self.armed {
            self.inner.limiter.release(self.key);
            self.inner
                .scheduled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.key);
        }
    }
}

impl Inner {
    /// A ticket to launch `record`, a job not stored yet, at once: when
    /// the engine runs, the tenant allows it, no launch task of it runs
    /// here, a slot is free and no spare runner is there for it. `None`
    /// otherwise, and the job is recorded queued as before.
    pub(super) async fn launch_ticket(
        self: &Arc<Self>,
        record: &JobRecord,
        now: Timestamp,
    ) -> Result<Option<LaunchTicket>> {
        let key = record.key;
        let (Some(_), Some(account)) = (&record.spec, &record.account) else {
            return Ok(None);
        };
        if self.shutdown.is_cancelled() || self.tenant_refuses(record).is_some() {
            return Ok(None);
        }
        if !self
            .scheduled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
        {
            return Ok(None);
        }
        // Armed from here: whatever happens next, the slot and the task's
        // place are given back unless the launch starts.
        let ticket = LaunchTicket {
            inner: Arc::clone(self),
            key,
            armed: true,
        };
        if !self.limiter.try_acquire(key, account, &record.repository) {
            return Ok(None);
        }
        if !self.needs_launch(record, now).await? {
            return Ok(None);
        }
        Ok(Some(ticket))
    }

    /// `record` as written with `ticket`: claimed by this replica, with
    /// the intent of its first launch.
    pub(super) fn claimed_on_arrival(&self, mut record: JobRecord, now: Timestamp) -> JobRecord {
        if let Some(spec) = &record.spec {
            record.launches.push(launch_intent(record.key, spec, 1));
        }
        record.state = JobState::Launching;
        record.lease = Some(Lease {
            owner: self.config.replica_id.clone(),
            expires_at: now.saturating_add(self.config.claim_ttl),
        });
        record
    }

    /// Starts the launch of `written`, the job just created as
    /// [`Inner::claimed_on_arrival`] made it, with `ticket`.
    pub(super) fn launch_arrived(&self, mut ticket: LaunchTicket, written: Versioned<JobRecord>) {
        let Some(this) = self.me() else { return };
        let key = written.value.key;
        ticket.armed = false;
        let span = job_span(key, &written.value.repository);
        self.tasks.spawn(
            async move {
                match this.launch_claimed(written, 1, false).await {
                    Ok(record) => this.release_slot_if_idle_in(&record),
                    Err(e) => {
                        tracing::warn!(error = %e, "launch step failed; it is retried when due");
                        this.release_slot_if_idle(key).await;
                    }
                }
                this.scheduled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
            }
            .instrument(span),
        );
    }
}
