//! A new job that can launch at once is written already claimed by this
//! replica, with its launch intent, in the one write that records it and
//! its delivery: a lone webhook costs one durable write before the
//! launch's API calls, not three (record, claim, intent).

use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::Instrument;

use super::launch::launch_intent;
use super::limits::{Place, Usage};
use super::records::Receipt;
use super::{Inner, job_span};
use crate::domain::JobKey;
use crate::job::{JobRecord, JobState, Lease};
use crate::ports::Versioned;
use crate::time::Timestamp;
use crate::{Error, Result};

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
            self.inner.limiter.unreserve(self.key);
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
    /// here and a slot is free (counted here: only when no other replica
    /// writes the store). `None` otherwise, and the job is recorded queued
    /// as before. Whether a spare runner covers it is read beside its
    /// write ([`Inner::arrive`]), not before: that read would be one more
    /// store round trip on every job's way to its launch.
    pub(super) fn launch_ticket(self: &Arc<Self>, record: &JobRecord) -> Option<LaunchTicket> {
        let key = record.key;
        let (Some(_), Some(account)) = (&record.spec, &record.account) else {
            return None;
        };
        if self.shutdown.is_cancelled() || self.tenant_refuses(record).is_some() {
            return None;
        }
        if !self
            .scheduled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
        {
            return None;
        }
        // Armed from here: whatever happens next, the slot and the task's
        // place are given back unless the launch starts.
        let ticket = LaunchTicket {
            inner: Arc::clone(self),
            key,
            armed: true,
        };
        let place = Place {
            owner: record.owner_id,
            account,
            repository: &record.repository,
        };
        let caps = self.caps_of(record.owner_id, &record.repository);
        // With a store other replicas write, a capped job is counted by
        // the store's claim: it takes the ordinary path (stored queued,
        // then claimed). Alone on its store, this engine's count decides.
        if (caps.any() && self.store.is_shared())
            || !self
                .limiter
                .try_acquire(key, &place, caps, Usage::default())
        {
            return None;
        }
        Some(ticket)
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

    /// Stores `record`, made by [`Inner::claimed_on_arrival`], and
    /// launches it, in a task of its own: the webhook handler waits for
    /// the write only, and a handler dropped at any await (a client that
    /// hangs up, a timeout) can leave neither a stored claim that nobody
    /// works on (it would hold the job for `claim_ttl`) nor a slot held.
    /// Returns the stored record and whether this write created it; when
    /// it did not, the ticket is given back and the caller goes on as for
    /// any stored job.
    pub(super) async fn arrive(
        self: &Arc<Self>,
        ticket: LaunchTicket,
        record: JobRecord,
        receipt: Option<&Receipt>,
    ) -> Result<(Versioned<JobRecord>, bool)> {
        let detached = receipt.map(Receipt::detached);
        let (tx, rx) = oneshot::channel();
        let this = Arc::clone(self);
        let span = job_span(record.key, &record.repository);
        self.tasks.spawn(
            async move {
                // The spare-runner check reads other jobs only: it runs
                // beside the write, and decides before any API call.
                let spare_check = record.clone();
                let now = this.clock.now();
                let (written, needed) = tokio::join!(
                    this.create_or_update(record, |_| false, detached.as_ref()),
                    this.needs_launch(&spare_check, now),
                );
                let (stored, created) = match written {
                    Ok(written) => written,
                    Err(e) => {
                        drop(ticket);
                        let _ = tx.send((Err(e), detached));
                        return;
                    }
                };
                if !created {
                    drop(ticket);
                    let _ = tx.send((Ok((stored, false)), detached));
                    return;
                }
                let _ = tx.send((Ok((stored.clone(), true)), detached));
                this.launch_arrived(ticket, stored, needed).await;
            }
            .instrument(span),
        );
        let (written, detached) = rx.await.map_err(|_| {
            Error::unavailable("the task writing a new job ended without an answer")
        })?;
        if let (Some(receipt), Some(detached)) = (receipt, &detached) {
            receipt.take_over(detached);
        }
        written
    }

    /// Launches `written`, the job just created with `ticket`, unless
    /// `needed` found a spare runner for it.
    async fn launch_arrived(
        &self,
        mut ticket: LaunchTicket,
        written: Versioned<JobRecord>,
        needed: Result<bool>,
    ) {
        let key = written.value.key;
        // The launch holds the slot from here, and gives it back itself.
        ticket.armed = false;
        let launched = match needed {
            Ok(false) => self.stand_down(written).await,
            Ok(true) => self.launch_claimed(written, 1, false).await.map(drop),
            // Launched as if no spare were there: the job is claimed, and
            // a spare left over is ended by the reconciler after its grace.
            Err(e) => {
                tracing::warn!(error = %e, "looking for a spare runner failed; launching");
                self.launch_claimed(written, 1, false).await.map(drop)
            }
        };
        match launched {
            // Its writes set what the job holds here.
            Ok(_) => self.limiter.unreserve(key),
            Err(e) => {
                tracing::warn!(error = %e, "launch step failed; it is retried when due");
                self.release_slot_if_idle(key).await;
            }
        }
        self.scheduled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    /// Gives back the claim of a job written to launch on arrival that a
    /// spare runner covers: queued again, without its launch intent (no
    /// API call was made for it, so there is no instance to look for).
    /// The tick takes it up again if the spare goes.
    async fn stand_down(&self, written: Versioned<JobRecord>) -> Result<()> {
        tracing::info!("a spare runner covers the job: no launch");
        let replica = self.config.replica_id.clone();
        self.update_from(written, |r| {
            let ours = r.lease.as_ref().is_some_and(|l| l.owner == replica);
            if !ours || r.state != JobState::Launching {
                return false;
            }
            r.launches
                .retain(|l| !(l.number == 1 && l.instance_id.is_none() && l.ended.is_none()));
            r.state = JobState::Queued;
            r.lease = None;
            true
        })
        .await
        .map(drop)
    }
}
