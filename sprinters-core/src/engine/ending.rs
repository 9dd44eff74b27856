//! Ending instances, and closing a job's record once nothing of it runs.

use super::Inner;
use crate::Result;
use crate::domain::JobKey;
use crate::job::{EndReason, JobRecord, JobState, Launch};
use crate::observe::InstanceEnded;
use crate::ports::{CredentialsRequest, RemoveRunner, TerminateRequest, Versioned};

/// What settling did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Nothing to change.
    No,
    /// Its cost or its state changed.
    Changed,
    /// It ran on another job's launch that was not read: settle it again.
    Unknown,
}

/// The launch of another job that a job ran on.
#[derive(Debug, Clone)]
struct RanOnElsewhere {
    launched_for: JobKey,
    number: u32,
    /// `None` when that job or launch is gone.
    launch: Option<Launch>,
}

impl Inner {
    /// Terminates the instance of launch `number` of job `launched_for` and
    /// records why; `taken_by` notes which job ran on it, when known.
    /// Idempotent: an ended launch stays ended.
    pub(super) async fn end_launch(
        &self,
        launched_for: JobKey,
        number: u32,
        reason: EndReason,
        taken_by: Option<JobKey>,
    ) -> Result<()> {
        let Some(current) = self.store.get_job(launched_for).await? else {
            return Ok(());
        };
        self.end_launch_from(current, number, reason, taken_by)
            .await
    }

    /// [`Inner::end_launch`] from the launching job's record as just read
    /// or written (a stale one costs a lost compare-and-swap, no more).
    pub(super) async fn end_launch_from(
        &self,
        current: Versioned<JobRecord>,
        number: u32,
        reason: EndReason,
        taken_by: Option<JobKey>,
    ) -> Result<()> {
        let record = &current.value;
        let Some(launch) = record.launches.iter().find(|l| l.number == number).cloned() else {
            return Ok(());
        };
        if launch.ended.is_some() {
            return Ok(());
        }
        // Whatever the job's state (a cancel may arrive mid-launch), a launch
        // under a live claim has not recorded its instance yet: ending it now
        // would leak that instance. The reconciler ends it once recorded.
        let in_flight = launch.instance_id.is_none()
            && record
                .lease
                .as_ref()
                .is_some_and(|l| l.expires_at > self.clock.now());
        if in_flight {
            return Ok(());
        }
        let mut terminated = None;
        if let (Some(instance_id), Some(account)) = (&launch.instance_id, &record.account) {
            let credentials = self
                .credentials
                .credentials(CredentialsRequest::new(
                    account.clone(),
                    record.owner_id,
                    record.owner().clone(),
                ))
                .await?;
            let request = TerminateRequest::new(
                account.clone(),
                credentials,
                launch.region.clone(),
                instance_id.clone(),
            );
            let outcome = self.launcher.terminate(request).await?;
            terminated = Some((instance_id.clone(), outcome.was_running));
        }
        if reason != EndReason::JobCompleted
            && let Some(runner_id) = launch.runner_id
        {
            // A JIT runner that ran its job removes itself; an idle one does not.
            let remove =
                RemoveRunner::new(record.installation_id, record.repository.clone(), runner_id);
            if let Err(e) = self.registry.remove_runner(remove).await {
                tracing::warn!(error = %e, runner = %launch.runner_name, "removing the runner failed");
            }
        }
        // The job's settling (below) needs the launch it ran on; when that
        // is another job's, it is read before the write, not after.
        let elsewhere = self.ran_on_elsewhere(&current.value).await?;
        let now = self.clock.now();
        let mut recorded = false;
        let mut settled = Settled::No;
        let updated = self
            .update_from(current, |r| {
                recorded = false;
                settled = Settled::No;
                let Some(l) = r.launches.iter_mut().find(|l| l.number == number) else {
                    return false;
                };
                if l.ended.is_none() {
                    l.ended = Some((now, reason));
                    if l.taken_by.is_none() {
                        l.taken_by = taken_by;
                    }
                    recorded = true;
                }
                // Settled in the same write: one round trip, and no crash
                // between the end and the settling can leave it Completed.
                settled = self.settle_in(r, elsewhere.as_ref());
                recorded || settled == Settled::Changed
            })
            .await?;
        // Two paths may end one launch at once (the completed webhook and the
        // reconciler): both terminate (idempotent), only the one that records
        // the end counts it, so the metric counts instances, not calls.
        if recorded && let Some((instance_id, was_running)) = terminated {
            self.observer.instance_ended(&InstanceEnded {
                reason,
                was_running,
            });
            tracing::info!(instance = %instance_id, reason = reason.as_str(), was_running, "instance ended");
        }
        if settled == Settled::Unknown {
            // It ran on a launch not read above (it changed meanwhile).
            return self.settle_from(updated).await;
        }
        Ok(())
    }

    /// Once a finished job's instance is ended: its estimated cost, and
    /// Completed → Cleaned when nothing of it runs any more.
    pub(super) async fn settle(&self, key: JobKey) -> Result<()> {
        match self.store.get_job(key).await? {
            Some(current) => self.settle_from(current).await,
            None => Ok(()),
        }
    }

    async fn settle_from(&self, current: Versioned<JobRecord>) -> Result<()> {
        if !current.value.state.is_finished() {
            return Ok(());
        }
        let elsewhere = self.ran_on_elsewhere(&current.value).await?;
        self.update_from(current, |r| {
            self.settle_in(r, elsewhere.as_ref()) == Settled::Changed
        })
        .await?;
        Ok(())
    }

    /// Settles `r` in place: its cost, and Cleaned once the launch it ran on
    /// is ended and none of its own is idle. `elsewhere` is the launch it ran
    /// on when that is another job's, as read before.
    fn settle_in(&self, r: &mut JobRecord, elsewhere: Option<&RanOnElsewhere>) -> Settled {
        if !r.state.is_finished() {
            return Settled::No;
        }
        let ran_on = match r.ran_on_launch {
            None => None,
            Some((launched_for, number)) if launched_for == r.key => {
                r.launches.iter().find(|l| l.number == number).cloned()
            }
            Some(at) => match elsewhere {
                Some(e) if (e.launched_for, e.number) == at => e.launch.clone(),
                _ => return Settled::Unknown,
            },
        };
        let mut changed = false;
        let cost = ran_on.as_ref().and_then(|l| self.cost_of(l, r));
        if r.cost_micros.is_none() && cost.is_some() {
            r.cost_micros = cost;
            changed = true;
        }
        let ran_on_ended = ran_on.as_ref().is_none_or(|l| l.ended.is_some());
        let own_idle = r.launches.iter().any(Launch::is_idle);
        if r.state == JobState::Completed && ran_on_ended && !own_idle {
            r.state = JobState::Cleaned;
            changed = true;
        }
        if changed {
            Settled::Changed
        } else {
            Settled::No
        }
    }

    /// The launch of another job that `record`'s job ran on, read now;
    /// `None` when it ran on its own or on none, or is not finished.
    async fn ran_on_elsewhere(&self, record: &JobRecord) -> Result<Option<RanOnElsewhere>> {
        if !record.state.is_finished() {
            return Ok(None);
        }
        let Some((launched_for, number)) = record.ran_on_launch else {
            return Ok(None);
        };
        if launched_for == record.key {
            return Ok(None);
        }
        let launch = self
            .store
            .get_job(launched_for)
            .await?
            .and_then(|v| v.value.launches.into_iter().find(|l| l.number == number));
        Ok(Some(RanOnElsewhere {
            launched_for,
            number,
            launch,
        }))
    }

    /// Price per hour times the time from launch to the job's end.
    fn cost_of(&self, launch: &Launch, record: &JobRecord) -> Option<u64> {
        let hourly = launch.hourly_price_micros.or_else(|| {
            let on_demand = self.config.prices.hourly_micros(&launch.instance_type)?;
            Some(if launch.spot {
                (on_demand as f64 * self.config.spot_price_ratio).round() as u64
            } else {
                on_demand
            })
        })?;
        let ran = record.completed_at?.since(launch.launched_at?);
        Some((u128::from(hourly) * ran.as_millis() / 3_600_000) as u64)
    }
}
