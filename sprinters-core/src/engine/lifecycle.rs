//! What each `workflow_job` event does to a job. Every transition is
//! idempotent and only moves forward, so duplicates, redeliveries and
//! events out of order are harmless.

use super::records::{Receipt, new_record};
use super::{Handled, Inner, Refusal};
use crate::Result;
use crate::domain::{AccountId, JobKey, Repository};
use crate::events::{Conclusion, WorkflowJobAction, WorkflowJobEvent};
use crate::job::{EndReason, JobRecord, JobState, Launch};
use crate::labels::JobLabels;
use crate::ports::CancelRun;

impl Inner {
    /// Applies `event`. `receipt`, the delivery it came in, is recorded by
    /// the write that makes the event durable where nothing after that
    /// write would be lost in a crash; the caller records it otherwise.
    pub(super) async fn on_workflow_job(
        &self,
        event: WorkflowJobEvent,
        receipt: Option<&Receipt>,
    ) -> Result<Handled> {
        let labels = match self.parser.parse_job(&event.labels) {
            Ok(None) => return Ok(Handled::Ignored),
            Ok(Some(labels)) => labels,
            Err(e) => {
                let message = format!("invalid runs-on label `{}`: {e}", e.label());
                let handled = self.reject(&event, None, message, receipt).await?;
                self.cancel_run_of_tenant(&event);
                return Ok(handled);
            }
        };
        if event.action == WorkflowJobAction::Waiting {
            // Waiting for an approval: GitHub sends `queued` once approved.
            return Ok(Handled::Ignored);
        }
        let tenants = &self.config.tenants;
        let login = event.repository.owner();
        let resolve = || {
            tenants.resolve(
                event.owner_id,
                event.installation_id,
                login,
                labels.spec.account.as_ref(),
            )
        };
        let renamed = tenants.get(event.owner_id).is_some_and(|t| {
            t.installation_id == event.installation_id && t.login.as_str() != login.as_str()
        });
        let mut resolved = resolve();
        if matches!(resolved, Err(Refusal::Impostor(_))) && tenants.get(event.owner_id).is_some() {
            // A known owner through another installation: a reinstall another
            // replica took in and this one has not read yet. Only the owner's
            // own (signed) events get here, so strangers cause no reads.
            if let Some(current) = self.store.get_tenant(event.owner_id).await? {
                tenants.apply(&current.value);
            }
            resolved = resolve();
        }
        if renamed && resolved.is_ok() {
            // The id is the tenant; its display name follows, on every replica.
            let new = login.clone();
            self.save_tenant(event.owner_id, |r| {
                let changed = r.login.as_str() != new.as_str();
                r.login = new.clone();
                changed
            })
            .await?;
        }
        let account = match resolved {
            Ok(account) => account,
            // Decided from the directory alone: no call is made that would
            // let one customer probe another's account.
            Err(Refusal::Rejected(message)) => {
                let handled = self.reject(&event, Some(&labels), message, receipt).await?;
                self.cancel_run_of_tenant(&event);
                return Ok(handled);
            }
            // The ids do not match the owner the login names: nothing is
            // written, launched or ended.
            Err(Refusal::Impostor(reason)) => {
                tracing::warn!(owner_id = %event.owner_id, installation = %event.installation_id, %reason, "event ignored");
                return Ok(Handled::Ignored);
            }
        };
        // A suspended installation or a repository taken out of it stops
        // new launches; jobs already running still end as they should.
        if event.action == WorkflowJobAction::Queued
            && let Some(message) = self.tenant_refuses_job(
                event.owner_id,
                event.installation_id,
                &event.repository,
                Some(&account),
            )
        {
            return self.reject(&event, Some(&labels), message, receipt).await;
        }
        // What the label asks for, checked before any AWS call. A refused
        // job's run is cancelled: left queued on GitHub, the job could take
        // a runner launched for another job with the same labels (a fork's
        // pull request on one meant for the repository's own branches).
        if event.action == WorkflowJobAction::Queued
            && let Some(message) = self.policy_refuses(&event, &labels, &account).await?
        {
            let handled = self.reject(&event, Some(&labels), message, receipt).await?;
            self.cancel_refused_run(CancelRun::new(
                event.installation_id,
                event.repository.clone(),
                event.run_id,
            ));
            return Ok(handled);
        }
        match event.action {
            WorkflowJobAction::Queued => self.on_queued(&event, &labels, account, receipt).await,
            WorkflowJobAction::InProgress => {
                self.on_started(&event, &labels, account, receipt).await
            }
            WorkflowJobAction::Completed => {
                self.on_completed(&event, &labels, account, receipt).await
            }
            WorkflowJobAction::Waiting => Ok(Handled::Ignored),
        }
    }

    /// Records the job as Rejected with `message`; never retried.
    async fn reject(
        &self,
        event: &WorkflowJobEvent,
        labels: Option<&JobLabels>,
        message: String,
        receipt: Option<&Receipt>,
    ) -> Result<Handled> {
        let mut record = new_record(event, labels, None, JobState::Rejected, self.clock.now());
        record.message = Some(message.clone());
        let (stored, created) = self.upsert(record, |_| false, receipt).await?;
        if created {
            tracing::warn!(%message, "job rejected");
        }
        let message = stored.value.message.unwrap_or(message);
        Ok(Handled::Rejected {
            job: event.job,
            message,
        })
    }

    /// The launch whose runner `event` names, if that runner can be ours.
    /// The job's own launch is checked by the write that marks it taken;
    /// another job's must belong to the same owner and repository (the
    /// scope its JIT runner was registered in) and carry the event's
    /// GitHub runner id. A runner merely named like ours leads nowhere:
    /// anyone may register a self-hosted runner under any name.
    async fn runner_launch(&self, event: &WorkflowJobEvent) -> Result<Option<(JobKey, u32)>> {
        let Some(name) = &event.runner_name else {
            return Ok(None);
        };
        let Some((job, number)) = name.launch_ref() else {
            return Ok(None);
        };
        if job == event.job {
            return Ok(Some((job, number)));
        }
        let Some(record) = self.store.get_job(job).await? else {
            return Ok(None);
        };
        let r = &record.value;
        let ours = r.owner_id == event.owner_id
            && same_repository(&r.repository, &event.repository)
            && r.launches
                .iter()
                .any(|l| l.number == number && runner_id_matches(l, event.runner_id));
        if !ours {
            tracing::warn!(runner = %name, runner_id = ?event.runner_id, "a runner named like one of ours that is not: ignored");
            return Ok(None);
        }
        Ok(Some((job, number)))
    }

    async fn on_queued(
        &self,
        event: &WorkflowJobEvent,
        labels: &JobLabels,
        account: AccountId,
        receipt: Option<&Receipt>,
    ) -> Result<Handled> {
        let now = self.clock.now();
        let record = new_record(event, Some(labels), Some(account), JobState::Queued, now);
        // A job that can launch at once is stored claimed, with its launch
        // intent: one durable write before the launch's API calls.
        let ticket = match self.me() {
            Some(me) => me.launch_ticket(&record).map(|t| (me, t)),
            None => None,
        };
        // A launch lost to a crash after this write is started by
        // `process_due`: the delivery is recorded with the job.
        let (stored, created) = match ticket {
            Some((me, ticket)) => {
                let claimed = self.claimed_on_arrival(record, now);
                me.arrive(ticket, claimed, receipt).await?
            }
            None => self.create_or_update(record, |_| false, receipt).await?,
        };
        if created {
            tracing::info!(labels = ?event.labels, "job queued");
            if stored.value.state == JobState::Launching {
                return Ok(Handled::Accepted(event.job)); // its launch runs
            }
        }
        if stored.value.state.is_waiting() {
            // The launch task decides under its claim whether a spare
            // runner already covers the job; it starts from this read.
            self.schedule_launch_from(event.job, Some(stored.value));
        }
        Ok(Handled::Accepted(event.job))
    }

    async fn on_started(
        &self,
        event: &WorkflowJobEvent,
        labels: &JobLabels,
        account: AccountId,
        receipt: Option<&Receipt>,
    ) -> Result<Handled> {
        let now = event.at.unwrap_or_else(|| self.clock.now());
        let runner = event.runner_name.clone();
        let mut fresh = new_record(event, Some(labels), Some(account), JobState::Running, now);
        fresh.started_at = Some(now);
        fresh.ran_on = runner.clone();
        let launch = self.runner_launch(event).await?;
        let own = launch.filter(|(k, _)| *k == event.job);
        let other = launch.filter(|(k, _)| *k != event.job);
        fresh.ran_on_launch = other;
        // Another job's runner must be marked taken below, which nothing
        // repairs after a crash: that delivery is recorded at the end.
        let receipt = receipt.filter(|_| launch.is_none() || own.is_some());
        let (stored, _) = self
            .upsert(
                fresh,
                |r| {
                    // Its own runner is marked taken in the same write: for a
                    // moment in between, it would look like an idle spare and
                    // a job queued meanwhile would wait for it in vain.
                    let took_own = own.is_some_and(|(_, n)| take_own(r, n, event));
                    // Failed is the engine's verdict; a runner taking the job
                    // is GitHub's fact, and wins.
                    if r.state.rank() >= JobState::Running.rank() && r.state != JobState::Failed {
                        return took_own;
                    }
                    r.state = JobState::Running;
                    r.started_at = Some(now);
                    r.ran_on = runner.clone();
                    if !took_own {
                        r.ran_on_launch = other;
                    }
                    r.next_attempt_at = None;
                    r.message = None;
                    true
                },
                receipt,
            )
            .await?;
        tracing::info!(runner = ?stored.value.ran_on, "job started");

        let Some((launched_for, number)) = other else {
            return Ok(Handled::Updated(event.job));
        };
        let taker = event.job;
        {
            self.update(launched_for, |r| mark_taken(r, number, taker))
                .await?;
            // Another job's runner took this one: that job may now lack one.
            tracing::info!(launched_for = %launched_for, "runner taken by another job with the same labels");
            self.rebalance(&stored.value).await?;
        }
        Ok(Handled::Updated(event.job))
    }

    async fn on_completed(
        &self,
        event: &WorkflowJobEvent,
        labels: &JobLabels,
        account: AccountId,
        receipt: Option<&Receipt>,
    ) -> Result<Handled> {
        let now = event.at.unwrap_or_else(|| self.clock.now());
        let state = match event.conclusion {
            Some(Conclusion::Cancelled) => JobState::Cancelled,
            _ => JobState::Completed,
        };
        let runner = event.runner_name.clone();
        let launch = self.runner_launch(event).await?;
        let own = launch.filter(|(k, _)| *k == event.job);
        let other = launch.filter(|(k, _)| *k != event.job);
        // On its own runner, the reconciler ends the instance and settles
        // the job if a crash cuts this short (the launch is marked taken by
        // a finished job in the first write); otherwise the delivery is
        // recorded at the end.
        let receipt = receipt.filter(|_| own.is_some());
        let mut fresh = new_record(event, Some(labels), Some(account), state, now);
        fresh.completed_at = Some(now);
        fresh.conclusion = event.conclusion;
        fresh.ran_on = runner.clone();
        fresh.ran_on_launch = other;
        let (stored, _) = self
            .upsert(
                fresh,
                |r| {
                    // As in `on_started`: never let its own runner look idle.
                    let took_own = own.is_some_and(|(_, n)| take_own(r, n, event));
                    let ran_after_failing = r.state == JobState::Failed && runner.is_some();
                    if r.state.is_finished() && !ran_after_failing {
                        // Failed by the engine and now concluded by GitHub
                        // (cancelled, or timed out in the queue): nothing
                        // more to wait for.
                        if r.awaits_conclusion() && event.conclusion.is_some() {
                            r.conclusion = event.conclusion;
                            r.completed_at = Some(now);
                            return true;
                        }
                        // Already over (say, recovered from GitHub): still learn
                        // the runner, so its instance is ended below.
                        if r.ran_on.is_none() && runner.is_some() {
                            r.ran_on = runner.clone();
                            if !took_own {
                                r.ran_on_launch = other;
                            }
                            return true;
                        }
                        return took_own;
                    }
                    r.state = state;
                    r.conclusion = event.conclusion;
                    r.completed_at = Some(now);
                    if ran_after_failing {
                        r.message = None;
                    }
                    if r.ran_on.is_none() {
                        r.ran_on = runner.clone();
                        if !took_own {
                            r.ran_on_launch = other;
                        }
                    }
                    r.next_attempt_at = None;
                    true
                },
                receipt,
            )
            .await?;
        tracing::info!(conclusion = ?event.conclusion, "job finished");

        // End the instance the job ran on (the runner exits after one job,
        // and the instance shuts itself down; this makes sure of it).
        // Only a runner checked to be ours leads to a launch.
        let ran_on = stored.value.ran_on_launch;
        // The completion is durable by now: an instance that will not end
        // yet (EC2 down) is the reconciler's to end, not a reason to have
        // GitHub deliver the webhook again.
        let ended = match ran_on {
            // Its own runner: the record just written is the one to end.
            Some((launched_for, number)) if launched_for == event.job => Some(
                self.end_launch_from(
                    stored.clone(),
                    number,
                    EndReason::JobCompleted,
                    Some(event.job),
                )
                .await,
            ),
            Some((launched_for, number)) => Some(
                self.end_launch(
                    launched_for,
                    number,
                    EndReason::JobCompleted,
                    Some(event.job),
                )
                .await,
            ),
            None => None,
        };
        if let Some(Err(e)) = ended {
            tracing::warn!(error = %e, "ending the finished job's instance failed; the reconciler will");
        }
        // The job's own idle runners are now spares: a waiting job with the
        // same labels may take them; the reconciler ends them after the grace.
        // (`end_launch` already settled the job when it ran on its own runner.)
        if ran_on.is_none_or(|(launched_for, _)| launched_for != event.job) {
            self.settle(event.job).await?;
        }
        Ok(Handled::Updated(event.job))
    }
}

/// Marks the job's own launch `number` taken by it, if the event's runner
/// is that launch's: GitHub's runner id must be the one recorded when the
/// JIT runner was created (a launch adopted after a crash lost it, and
/// learns it here, within its own job).
fn take_own(record: &mut JobRecord, number: u32, event: &WorkflowJobEvent) -> bool {
    let Some(launch) = record.launches.iter_mut().find(|l| l.number == number) else {
        return false;
    };
    if !runner_id_matches(launch, event.runner_id) {
        tracing::warn!(runner = ?event.runner_name, runner_id = ?event.runner_id, "a runner named like this job's own has another runner id: ignored");
        return false;
    }
    if launch.runner_id.is_none() {
        launch.runner_id = event.runner_id;
    }
    let took = mark_taken(record, number, event.job);
    if took && record.ran_on_launch.is_none() {
        record.ran_on_launch = Some((event.job, number));
    }
    took
}

/// Whether the runner GitHub reports (`runner_id`) is `launch`'s.
fn runner_id_matches(launch: &Launch, runner_id: Option<u64>) -> bool {
    match (launch.runner_id, runner_id) {
        (Some(recorded), Some(reported)) => recorded == reported,
        // Adopted after a crash: the id was lost with the attempt that
        // created the runner; the owner and repository still match.
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// Marks launch `number` of `record` as taken by `taker`, if it was free.
fn mark_taken(record: &mut JobRecord, number: u32, taker: JobKey) -> bool {
    match record.launches.iter_mut().find(|l| l.number == number) {
        Some(l) if l.taken_by.is_none() => {
            l.taken_by = Some(taker);
            true
        }
        _ => false,
    }
}

/// Repositories compared as GitHub does: without case.
fn same_repository(a: &Repository, b: &Repository) -> bool {
    a.to_string().eq_ignore_ascii_case(&b.to_string())
}
