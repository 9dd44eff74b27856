//! Ending instances, and closing a job's record once nothing of it runs.

use super::Inner;
use crate::Result;
use crate::domain::JobKey;
use crate::job::{EndReason, JobRecord, JobState, Launch};
use crate::observe::InstanceEnded;
use crate::ports::{CredentialsRequest, RemoveRunner, TerminateRequest, Versioned};

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
        let now = self.clock.now();
        let mut recorded = false;
        let updated = self
            .update_from(current, |r| {
                recorded = false;
                let Some(l) = r.launches.iter_mut().find(|l| l.number == number) else {
                    return false;
                };
                if l.ended.is_some() {
                    return false;
                }
                l.ended = Some((now, reason));
                if l.taken_by.is_none() {
                    l.taken_by = taken_by;
                }
                recorded = true;
                true
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
        self.release_slot_if_idle_in(&updated.value);
        self.settle_from(updated).await
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
        let ran_on = self.launch_ran_on(&current.value).await?;
        let cost = ran_on
            .as_ref()
            .and_then(|l| self.cost_of(l, &current.value));
        let ran_on_ended = ran_on.as_ref().is_none_or(|l| l.ended.is_some());
        self.update_from(current, |r| {
            let mut changed = false;
            if r.cost_micros.is_none() && cost.is_some() {
                r.cost_micros = cost;
                changed = true;
            }
            let own_idle = r.launches.iter().any(Launch::is_idle);
            if r.state == JobState::Completed && ran_on_ended && !own_idle {
                r.state = JobState::Cleaned;
                changed = true;
            }
            changed
        })
        .await?;
        Ok(())
    }

    /// The launch whose runner ran `record`'s job (it may be another job's).
    async fn launch_ran_on(&self, record: &JobRecord) -> Result<Option<Launch>> {
        let Some((launched_for, number)) = record.ran_on.as_ref().and_then(|r| r.launch_ref())
        else {
            return Ok(None);
        };
        let owner = if launched_for == record.key {
            Some(record.clone())
        } else {
            self.store.get_job(launched_for).await?.map(|v| v.value)
        };
        Ok(owner.and_then(|o| o.launches.into_iter().find(|l| l.number == number)))
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
