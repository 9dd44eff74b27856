//! The reconciler: the safety net under lost events, crashes and clouds
//! that do things on their own.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::budget::{CallBudget, in_turns};
use super::supply::{Scope, scope, supplies};
use super::{Handled, Inner};
use crate::domain::{AccountId, JobKey, OwnerId, Region};
use crate::events::{Conclusion, WorkflowJobAction, WorkflowJobEvent};
use crate::job::{EndReason, JobRecord, JobState, Launch};
use crate::observe::InstanceEnded;
use crate::ports::{
    AcquireLease, CredentialsRequest, DescribeInstance, GetJobStatus, InstanceState, ListJobs,
    ListOwned, ListQueuedJobs, Purge, ReleaseLease, RemoteJobStatus, RerunJob, StateReason,
    TerminateRequest, Versioned,
};
use crate::time::Timestamp;
use crate::{ErrorKind, Result};

/// The named lease of the reconciler's leader: held by a running replica
/// (any one of them takes it within `leader_ttl`).
pub const LEADER_LEASE: &str = "sprinters/reconciler";

/// What one sweep lists: an owner's connection to an account, in a region.
type SweepTarget<'a> = (OwnerId, &'a AccountId, &'a Region);

/// How far back a repository counts as in use for the lost-`queued`
/// fallback, and how many of the newest jobs are looked at for it.
const RECENT: std::time::Duration = std::time::Duration::from_secs(3600);
const RECENT_JOBS: usize = 500;
/// How long after a job ended a re-run GitHub keeps refusing is asked
/// again: longer than any run lasts with its other jobs still going.
const RERUN_WINDOW: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 3600);
/// Jobs on runners that are none of ours, asked about per pass at most.
const FOREIGN_CHECKS_PER_PASS: usize = 20;

/// What one reconciliation pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// Whether this replica led the pass (only one replica reconciles).
    pub leader: bool,
    /// Instances no live job knows, terminated.
    pub orphans_ended: usize,
    /// Spare runners idle past the grace period, terminated.
    pub spares_ended: usize,
    /// Instances past the maximum lifetime, terminated.
    pub expired_ended: usize,
    /// Spot instances found reclaimed.
    pub reclaimed: usize,
    /// Jobs re-run after a spot reclaim.
    pub reruns: usize,
    /// Jobs waiting too long that were checked with GitHub.
    pub jobs_checked: usize,
    /// Instances whose runner never came online, ended (their jobs are
    /// launched again).
    pub unregistered_ended: usize,
    /// Queued jobs GitHub listed that the store had never seen (their
    /// `queued` webhook was lost), taken in.
    pub unseen_recovered: usize,
    /// Job records purged by retention.
    pub purged: usize,
    /// GitHub calls left for the next pass: their installation's budget
    /// for this one was spent.
    pub github_calls_deferred: usize,
}

impl Inner {
    pub(super) async fn reconcile(&self) -> Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        let now = self.clock.now();
        if !self.lead().await? {
            // Another replica counts the active jobs: none from here, not
            // even a count from when this one led.
            self.observer
                .active_jobs(&std::collections::BTreeMap::new());
            return Ok(report);
        }
        report.leader = true;

        let active = self.list_all(ListJobs::active(1000)).await?;
        let mut by_state = std::collections::BTreeMap::new();
        for job in &active {
            *by_state.entry(job.value.state).or_insert(0u64) += 1;
        }
        self.observer.active_jobs(&by_state);
        let mut budget = CallBudget::new(self.config.github_calls_per_pass)
            .pausing(self.github_pauses.clone(), self.config.reconcile_interval);
        self.end_expired_and_finished(&active, &mut report).await;
        self.end_spares(&active, &mut report).await;
        self.check_waiting(&active, &mut budget, &mut report).await;
        self.end_unregistered(&active, &mut budget, &mut report)
            .await;
        // The newest jobs, finished or not: repositories in use lately (for
        // lost `queued` webhooks), and the accounts and regions to sweep
        // even when nothing is active any more (a launch cut short by a
        // crash leaves an instance no record names).
        let recent = match self.store.list_jobs(ListJobs::newest(RECENT_JOBS)).await {
            Ok(page) => page.jobs,
            Err(e) => {
                tracing::warn!(error = %e, "listing recent jobs failed");
                Vec::new()
            }
        };
        self.find_unseen_queued(&active, &recent, &mut budget, &mut report)
            .await;
        self.retry_reruns(&active, &mut budget, &mut report).await;
        report.github_calls_deferred = budget.deferred();
        self.sweep_cloud(&active, &recent, &mut report).await;
        self.process_due().await?;
        let purged = self
            .store
            .purge(
                Purge::before(now.saturating_sub(self.config.retention))
                    .with_deliveries_before(now.saturating_sub(self.config.delivery_window)),
            )
            .await?;
        report.purged = purged.jobs;
        if report
            != (ReconcileReport {
                leader: true,
                ..Default::default()
            })
        {
            tracing::info!(?report, "reconciled");
        }
        Ok(report)
    }

    /// Shuffles `items` with the engine's generator (seeded in a
    /// simulation, so that a seed replays exactly).
    fn shuffle<T>(&self, items: &mut [T]) {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shuffle(items);
    }

    /// Takes or renews the reconciler's leadership: true while this
    /// replica holds it. One replica at a time leads; the lease lapses
    /// `leader_ttl` after its holder stops renewing it.
    pub(super) async fn lead(&self) -> Result<bool> {
        let lease = AcquireLease::new(
            LEADER_LEASE,
            self.config.replica_id.clone(),
            self.clock.now(),
            self.config.leader_ttl,
        );
        Ok(self.store.acquire_lease(lease).await?.acquired)
    }

    /// Gives leadership up (a clean shutdown), so another replica takes
    /// over at its next renewal rather than after `leader_ttl`.
    pub(super) async fn resign(&self) -> Result<()> {
        self.store
            .release_lease(ReleaseLease::new(
                LEADER_LEASE,
                self.config.replica_id.clone(),
            ))
            .await
    }

    /// Past the maximum lifetime, or serving a job that is over.
    async fn end_expired_and_finished(
        &self,
        active: &[Versioned<JobRecord>],
        report: &mut ReconcileReport,
    ) {
        let now = self.clock.now();
        // A job is over once it is finished, or no longer active at all.
        let unfinished: HashSet<JobKey> = active
            .iter()
            .filter(|r| !r.value.state.is_finished())
            .map(|r| r.value.key)
            .collect();
        for record in active {
            for l in record.value.launches.iter().filter(|l| l.is_live()) {
                let expired = l
                    .launched_at
                    .is_some_and(|t| now.since(t) > self.config.max_lifetime);
                let job_over = l.taken_by.is_some_and(|t| !unfinished.contains(&t));
                // A launch cut short (a crash) whose job then finished: no
                // instance to end here; the sweep ends one EC2 may have.
                let cut_short = l.instance_id.is_none() && !unfinished.contains(&record.value.key);
                let reason = if expired {
                    EndReason::MaxLifetime
                } else if job_over {
                    EndReason::JobCompleted
                } else if cut_short {
                    EndReason::LaunchFailed
                } else {
                    continue;
                };
                match self
                    .end_launch(record.value.key, l.number, reason, None)
                    .await
                {
                    Ok(()) if expired => report.expired_ended += 1,
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, runner = %l.runner_name, "ending an instance failed")
                    }
                }
            }
        }
    }

    /// Spare runners beyond what waiting jobs need, idle past the grace.
    async fn end_spares(&self, active: &[Versioned<JobRecord>], report: &mut ReconcileReport) {
        let now = self.clock.now();
        // Ordered, so that a simulation replays a seed exactly.
        let mut by_set: BTreeMap<Scope, Vec<Versioned<JobRecord>>> = BTreeMap::new();
        for r in active {
            by_set.entry(scope(&r.value)).or_default().push(r.clone());
        }
        for records in by_set.values() {
            // Spares first cover the waiting jobs that have no runner.
            let waiting_uncovered = records
                .iter()
                .map(|r| &r.value)
                .filter(|r| {
                    r.state.is_waiting() && !r.launches.iter().any(|l| supplies(r, l, now, None))
                })
                .count();
            // Idle runners of jobs that no longer wait, oldest idle first.
            let mut spares: Vec<(crate::time::Timestamp, JobKey, u32)> = records
                .iter()
                .map(|r| &r.value)
                .filter(|r| !r.state.is_waiting())
                .flat_map(|r| {
                    // Idle since its job stopped waiting: when another
                    // runner took it, not when it later completed there.
                    let since = r.started_at.or(r.completed_at);
                    r.launches
                        .iter()
                        .filter(|l| l.is_idle() && l.instance_id.is_some())
                        .map(move |l| (since.max(l.launched_at).unwrap_or(now), r.key, l.number))
                })
                .collect();
            spares.sort();
            let surplus = spares.len().saturating_sub(waiting_uncovered);
            for (since, key, number) in spares.into_iter().take(surplus) {
                if now.since(since) < self.config.idle_grace {
                    continue;
                }
                match self.end_launch(key, number, EndReason::Spare, None).await {
                    Ok(()) => report.spares_ended += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, job = %key, "ending a spare runner failed")
                    }
                }
            }
        }
    }

    /// Jobs waiting too long, and running jobs whose runner of ours is
    /// gone: GitHub may have sent events we never got.
    async fn check_waiting(
        &self,
        active: &[Versioned<JobRecord>],
        budget: &mut CallBudget,
        report: &mut ReconcileReport,
    ) {
        let now = self.clock.now();
        // Served: by a live launch whose instance we know, or that is in
        // flight. One cut short by a crash before its instance was recorded
        // does not count: nothing would notice that instance end.
        let served: HashSet<JobKey> = active
            .iter()
            .flat_map(|r| {
                let in_flight = r.value.lease.as_ref().is_some_and(|l| l.expires_at > now);
                r.value
                    .launches
                    .iter()
                    .filter(move |l| l.is_live() && (l.instance_id.is_some() || in_flight))
            })
            .filter_map(|l| l.taken_by)
            .collect();
        // Jobs on runners not ours cost a GitHub call each and nothing of
        // ours waits on them: a few a pass, so that one owner running many
        // jobs on its own runners never slows the pass for everyone.
        let mut foreign_checks = 0usize;
        // Least recently asked first: past a budget, the checks left over
        // are the first next pass, so each waits at most as many passes as
        // its installation's budget is exceeded (a random order could skip
        // one pass after pass).
        let mut asked = self
            .last_asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let keys: HashSet<JobKey> = active.iter().map(|r| r.value.key).collect();
        asked.retain(|key, _| keys.contains(key));
        let mut candidates: Vec<&JobRecord> = active.iter().map(|r| &r.value).collect();
        candidates.sort_by_key(|r| (asked.get(&r.key).copied(), r.queued_at, r.key));
        let mut due = Vec::new();
        for record in candidates {
            let waited_too_long = record.state.is_waiting()
                && now.since(record.queued_at) >= self.config.queued_timeout;
            // Its instance ended (the runner exits after its one job), so
            // the job is over: its `completed` webhook was lost.
            let runner_gone = record.state == JobState::Running
                && record.ran_on_launch.is_some()
                && !served.contains(&record.key);
            // On a runner that is none of our launches (a self-hosted one,
            // or one merely named like ours): no instance tells when it
            // ends, so GitHub is asked once it has run a while.
            let foreign_runner = record.state == JobState::Running
                && record.ran_on_launch.is_none()
                && record
                    .started_at
                    .is_some_and(|t| now.since(t) >= self.config.queued_timeout);
            // Failed by the engine, not concluded by GitHub: a runner of
            // ours may have taken it with its webhooks lost.
            let failed_open = record.awaits_conclusion()
                && now.since(record.queued_at) >= self.config.queued_timeout;
            let waited_too_long = waited_too_long || failed_open;
            if !waited_too_long && !runner_gone && !foreign_runner {
                continue;
            }
            if !waited_too_long && !runner_gone {
                if foreign_checks >= FOREIGN_CHECKS_PER_PASS {
                    continue;
                }
                foreign_checks += 1;
            }
            due.push(record);
        }
        // Owners in turn: one owner's many checks, each a GitHub call
        // awaited in order, do not all go before another owner's first.
        for record in in_turns(due, |r| r.installation_id) {
            if !budget.take(record.installation_id) {
                continue;
            }
            report.jobs_checked += 1;
            asked.insert(record.key, now);
            self.ask_github(record).await;
        }
        *self.last_asked.lock().unwrap_or_else(|e| e.into_inner()) = asked;
    }

    /// Applies what GitHub says about a job we think waits or runs: an
    /// event we never got.
    async fn ask_github(&self, record: &JobRecord) {
        let request = GetJobStatus::new(
            record.installation_id,
            record.repository.clone(),
            record.key.job_id,
        );
        let (action, conclusion, runner, runner_id) = match self.registry.job_status(request).await
        {
            Ok(status) => match status.status {
                RemoteJobStatus::Completed => (
                    WorkflowJobAction::Completed,
                    status.conclusion,
                    status.runner_name,
                    status.runner_id,
                ),
                RemoteJobStatus::InProgress
                    if record.state.is_waiting() || record.state == JobState::Failed =>
                {
                    (
                        WorkflowJobAction::InProgress,
                        None,
                        status.runner_name,
                        status.runner_id,
                    )
                }
                _ => return, // as we thought: process_due launches if it lacks a runner
            },
            Err(e) if *e.kind() == ErrorKind::NotFound => (
                WorkflowJobAction::Completed,
                Some(Conclusion::Cancelled),
                None,
                None,
            ),
            Err(e) => {
                tracing::warn!(error = %e, job = %record.key, "asking GitHub about a job failed");
                return;
            }
        };
        tracing::info!(job = %record.key, ?action, "recovered a missed event from GitHub");
        let event = WorkflowJobEvent {
            action,
            job: record.key,
            run_id: record.run_id,
            repository: record.repository.clone(),
            owner_id: record.owner_id,
            installation_id: record.installation_id,
            labels: record.labels.clone(),
            name: record.name.clone(),
            runner_name: runner,
            runner_id,
            conclusion,
            at: None,
            // Not queued: no policy is checked.
            repository_private: None,
        };
        if let Err(e) = self.on_workflow_job(event, None).await {
            tracing::warn!(error = %e, job = %record.key, "applying a recovered event failed");
        }
    }

    /// Runners that never came online: an instance up for longer than
    /// `boot_timeout` whose runner is still idle while a job it could run
    /// waits. GitHub hands a waiting job to an online idle runner with its
    /// labels at once, so such a runner is broken; its job, or the one it
    /// covered, is launched again. The waiting jobs of its label set are
    /// checked with GitHub first, in case the webhook saying the runner
    /// took one was lost.
    ///
    /// `active` is the pass's snapshot: each candidate is re-read before it
    /// is ended, after the checks with GitHub may have changed it.
    async fn end_unregistered(
        &self,
        active: &[Versioned<JobRecord>],
        budget: &mut CallBudget,
        report: &mut ReconcileReport,
    ) {
        let now = self.clock.now();
        let mut by_set: BTreeMap<Scope, Vec<&JobRecord>> = BTreeMap::new();
        for r in active {
            by_set.entry(scope(&r.value)).or_default().push(&r.value);
        }
        for records in by_set.values() {
            let stale: Vec<(JobKey, u32)> = records
                .iter()
                .flat_map(|r| {
                    r.launches
                        .iter()
                        .filter(|l| {
                            l.is_idle()
                                && l.instance_id.is_some()
                                && l.launched_at
                                    .is_some_and(|t| now.since(t) > self.config.boot_timeout)
                        })
                        .map(|l| (r.key, l.number))
                })
                .collect();
            let waiting: Vec<&&JobRecord> =
                records.iter().filter(|r| r.state.is_waiting()).collect();
            if stale.is_empty() || waiting.is_empty() {
                continue;
            }
            // Those waiting past `queued_timeout` were asked in this pass.
            // Past the budget, the runner is not judged this pass: a lost
            // pickup is not ruled out.
            let mut asked_all = true;
            for record in waiting
                .into_iter()
                .filter(|r| now.since(r.queued_at) < self.config.queued_timeout)
            {
                if !budget.take(record.installation_id) {
                    asked_all = false;
                    continue;
                }
                self.ask_github(record).await;
            }
            if !asked_all {
                continue;
            }
            for (key, number) in stale {
                let still_idle = match self.store.get_job(key).await {
                    Ok(Some(r)) => r
                        .value
                        .launches
                        .iter()
                        .any(|l| l.number == number && l.is_idle()),
                    _ => false,
                };
                if !still_idle {
                    continue;
                }
                tracing::warn!(job = %key, launch = number, "runner never came online; launching again");
                match self
                    .end_launch(key, number, EndReason::LaunchFailed, None)
                    .await
                {
                    Ok(()) => report.unregistered_ended += 1,
                    Err(e) => tracing::warn!(error = %e, job = %key, "ending a dead runner failed"),
                }
            }
        }
    }

    /// The fallback under lost `queued` webhooks of jobs never seen: asks
    /// GitHub for the queued jobs of each repository with jobs in flight
    /// (delivery recovery catches the rest) and takes in those the store
    /// does not know, as if their webhook had arrived.
    async fn find_unseen_queued(
        &self,
        active: &[Versioned<JobRecord>],
        newest: &[Versioned<JobRecord>],
        budget: &mut CallBudget,
        report: &mut ReconcileReport,
    ) {
        // The repositories with jobs in flight, and those with a job queued
        // in the last hour: a repository whose only new job lost its
        // webhook has nothing in flight.
        let scope = |r: &Versioned<JobRecord>| {
            (
                r.value.installation_id,
                r.value.owner_id,
                r.value.repository.clone(),
            )
        };
        let mut repositories: BTreeSet<_> = active.iter().map(scope).collect();
        let recent = self.clock.now().saturating_sub(RECENT);
        repositories.extend(
            newest
                .iter()
                .filter(|r| r.value.queued_at >= recent)
                .map(scope),
        );
        let mut repositories: Vec<_> = repositories.into_iter().collect();
        self.shuffle(&mut repositories);
        for (installation_id, owner_id, repository) in repositories {
            if !budget.take(installation_id) {
                continue;
            }
            let request = ListQueuedJobs::new(installation_id, repository.clone());
            let queued = match self.registry.list_queued_jobs(request).await {
                Ok(queued) => queued,
                Err(e) => {
                    tracing::warn!(error = %e, %repository, "listing queued jobs failed");
                    continue;
                }
            };
            for job in queued.jobs {
                match self.store.get_job(job.job).await {
                    Ok(None) => {}
                    Ok(Some(_)) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, job = %job.job, "reading a job failed");
                        continue;
                    }
                }
                let event = WorkflowJobEvent {
                    action: WorkflowJobAction::Queued,
                    job: job.job,
                    run_id: job.run_id,
                    repository: repository.clone(),
                    owner_id,
                    installation_id,
                    labels: job.labels,
                    name: job.name,
                    runner_name: None,
                    runner_id: None,
                    conclusion: None,
                    at: None,
                    repository_private: job.origin.as_ref().map(|o| o.repository_private),
                };
                if let Some(origin) = job.origin {
                    self.remember_origin(job.run_id, origin);
                }
                match self.on_workflow_job(event, None).await {
                    Ok(Handled::Ignored) => {}
                    Ok(_) => {
                        tracing::info!(job = %job.job, "took in a queued job whose webhook was lost");
                        report.unseen_recovered += 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, job = %job.job, "taking in a listed job failed")
                    }
                }
            }
        }
    }

    /// Compares what EC2 runs with what the store knows: ends orphans, and
    /// notices instances that went away on their own (spot reclaims).
    async fn sweep_cloud(
        &self,
        active: &[Versioned<JobRecord>],
        newest: &[Versioned<JobRecord>],
        report: &mut ReconcileReport,
    ) {
        // Each owner's connection to an account is swept with that
        // connection's own credentials, never another owner's.
        let mut targets: BTreeSet<(OwnerId, AccountId, Region)> = BTreeSet::new();
        let mut owners = HashMap::new();
        for r in active.iter().chain(newest).map(|r| &r.value) {
            if let Some(account) = &r.account {
                owners
                    .entry(r.owner_id)
                    .or_insert_with(|| r.owner().clone());
                if let Some(spec) = &r.spec {
                    targets.insert((r.owner_id, account.clone(), spec.region.clone()));
                }
                for l in &r.launches {
                    targets.insert((r.owner_id, account.clone(), l.region.clone()));
                }
            }
        }
        let now = self.clock.now();
        let snapshot: HashMap<JobKey, &JobRecord> =
            active.iter().map(|r| (r.value.key, &r.value)).collect();
        // The live launches of each target, grouped once: the pass stays
        // linear in the jobs and instances it looks at.
        let mut live: HashMap<SweepTarget<'_>, Vec<(&JobRecord, &Launch)>> = HashMap::new();
        for r in active.iter().map(|r| &r.value) {
            let Some(account) = &r.account else { continue };
            for l in r.launches.iter().filter(|l| l.is_live()) {
                live.entry((r.owner_id, account, &l.region))
                    .or_default()
                    .push((r, l));
            }
        }
        for (owner_id, account, region) in &targets {
            let (owner_id, account, region) = (*owner_id, account.clone(), region.clone());
            let Some(owner) = owners.get(&owner_id) else {
                continue;
            };
            let credentials = match self
                .credentials
                .credentials(CredentialsRequest::new(
                    account.clone(),
                    owner_id,
                    owner.clone(),
                ))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, %account, "no credentials to sweep the account");
                    continue;
                }
            };
            let query = ListOwned::new(
                account.clone(),
                credentials.clone(),
                region.clone(),
                self.config.controller_id.clone(),
            );
            let owned = match self.launcher.list_owned(query).await {
                Ok(o) => o.instances,
                Err(e) => {
                    tracing::warn!(error = %e, %account, %region, "listing instances failed");
                    continue;
                }
            };
            for instance in owned.iter().filter(|i| i.state.is_alive()) {
                let Some((job, runner)) = instance.job.zip(instance.runner_name.as_ref()) else {
                    // Ours by the controller tag, but no job tag: never a launch of ours.
                    self.end_orphan(
                        &account,
                        &credentials,
                        &region,
                        &instance.instance_id,
                        report,
                    )
                    .await;
                    continue;
                };
                // The snapshot vouches for most instances without a read;
                // one it cannot vouch for may belong to a job launched
                // since, so it is judged on a fresh read before it ends.
                let vouched = snapshot
                    .get(&job)
                    .is_some_and(|r| knows(r, runner, &instance.instance_id, now));
                let known = vouched
                    || match self.store.get_job(job).await {
                        Ok(Some(r)) => knows(&r.value, runner, &instance.instance_id, now),
                        Ok(None) => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading a job during the sweep failed");
                            true
                        }
                    };
                if !known {
                    self.end_orphan(
                        &account,
                        &credentials,
                        &region,
                        &instance.instance_id,
                        report,
                    )
                    .await;
                }
            }
            // Live launches whose instance EC2 no longer runs.
            let alive: HashMap<&crate::domain::InstanceId, &crate::ports::InstanceInfo> = owned
                .iter()
                .filter(|i| i.state.is_alive())
                .map(|i| (&i.instance_id, i))
                .collect();
            let launches = live
                .get(&(owner_id, &account, &region))
                .map_or(&[][..], Vec::as_slice);
            for &(r, l) in launches {
                let Some(id) = &l.instance_id else { continue };
                if let Some(instance) = alive.get(id) {
                    // EC2 boots an instance within a minute or two; one
                    // still pending long after never will: its job
                    // gets a new launch rather than waiting for the
                    // maximum lifetime.
                    // (A runner that took a job did boot, whatever
                    // EC2 last said.)
                    let stuck = instance.state == InstanceState::Pending
                        && l.is_idle()
                        && l.launched_at
                            .is_some_and(|t| now.since(t) > self.config.boot_timeout);
                    if stuck {
                        tracing::warn!(instance = %id, "instance never booted; launching again");
                        if let Err(e) = self
                            .end_launch(r.key, l.number, EndReason::LaunchFailed, None)
                            .await
                        {
                            tracing::warn!(error = %e, "ending a stuck instance failed");
                        }
                    }
                    continue;
                }
                let describe = DescribeInstance::new(
                    account.clone(),
                    credentials.clone(),
                    region.clone(),
                    id.clone(),
                );
                let reclaimed = matches!(
                    self.launcher.describe(describe).await,
                    Ok(info) if info.state_reason == Some(StateReason::SpotReclaimed)
                );
                let reason = if reclaimed {
                    report.reclaimed += 1;
                    EndReason::SpotReclaimed
                } else if l.taken_by.is_some() {
                    EndReason::JobCompleted
                } else {
                    EndReason::Spare
                };
                if let Err(e) = self.end_launch(r.key, l.number, reason, None).await {
                    tracing::warn!(error = %e, "recording a vanished instance failed");
                    continue;
                }
                if reclaimed && self.rerun_after_reclaim(r, l.taken_by).await {
                    report.reruns += 1;
                }
            }
        }
    }

    async fn end_orphan(
        &self,
        account: &AccountId,
        credentials: &crate::ports::Credentials,
        region: &Region,
        instance: &crate::domain::InstanceId,
        report: &mut ReconcileReport,
    ) {
        let request = TerminateRequest::new(
            account.clone(),
            credentials.clone(),
            region.clone(),
            instance.clone(),
        );
        match self.launcher.terminate(request).await {
            Ok(outcome) => {
                self.observer.instance_ended(&InstanceEnded {
                    reason: EndReason::Orphan,
                    was_running: outcome.was_running,
                });
                report.orphans_ended += 1;
                tracing::info!(%instance, "orphan instance ended");
            }
            Err(e) => tracing::warn!(error = %e, %instance, "ending an orphan failed"),
        }
    }

    /// Wants a re-run of the job a reclaimed `spot=rerun` instance ran, and
    /// asks GitHub at once: whether GitHub accepted it now.
    async fn rerun_after_reclaim(
        &self,
        launched_for: &JobRecord,
        taken_by: Option<JobKey>,
    ) -> bool {
        let wants_rerun = launched_for
            .spec
            .as_ref()
            .is_some_and(|s| s.spot == crate::labels::SpotMode::Rerun);
        let Some(job) = taken_by.filter(|_| wants_rerun) else {
            return false;
        };
        let mut wanted_now = false;
        let pending = match self
            .update(job, |r| {
                wanted_now = !r.rerun_requested && !r.rerun_pending;
                r.rerun_pending |= wanted_now;
                wanted_now
            })
            .await
        {
            Ok(Some(r)) if wanted_now => r.value,
            _ => return false,
        };
        self.ask_rerun(&pending).await
    }

    /// Asks GitHub again for each re-run it has not accepted yet (it
    /// refuses while the job's run is in progress), within the
    /// installation's budget; one still refused long after the job ended is
    /// given up, with a warning.
    async fn retry_reruns(
        &self,
        active: &[Versioned<JobRecord>],
        budget: &mut CallBudget,
        report: &mut ReconcileReport,
    ) {
        let now = self.clock.now();
        // A run with a job of ours still going is in progress: GitHub would
        // refuse, so it is not asked (a run's other jobs GitHub alone
        // knows of are found out by asking, within the budget).
        let running: HashSet<crate::domain::RunId> = active
            .iter()
            .filter(|r| !r.value.state.is_finished())
            .map(|r| r.value.run_id)
            .collect();
        let pending: Vec<&JobRecord> = active
            .iter()
            .map(|r| &r.value)
            .filter(|r| r.rerun_pending)
            .collect();
        for record in in_turns(pending, |r| r.installation_id) {
            let since = record.completed_at.unwrap_or(record.queued_at);
            let expired = now.since(since) >= RERUN_WINDOW;
            if !expired && running.contains(&record.run_id) {
                continue;
            }
            if expired {
                tracing::warn!(job = %record.key, "GitHub refused the re-run of a reclaimed job for 3 days; given up");
                if let Err(e) = self
                    .update(record.key, |r| {
                        std::mem::replace(&mut r.rerun_pending, false)
                    })
                    .await
                {
                    tracing::warn!(error = %e, "giving up a re-run failed");
                }
                continue;
            }
            if !budget.take(record.installation_id) {
                continue;
            }
            if self.ask_rerun(record).await {
                report.reruns += 1;
            }
        }
    }

    /// Asks GitHub to re-run `record`'s job; recorded done only once
    /// GitHub accepted it. Whether it did.
    async fn ask_rerun(&self, record: &JobRecord) -> bool {
        let job = record.key;
        let request = RerunJob::new(
            record.installation_id,
            record.repository.clone(),
            job.job_id,
        );
        match self.registry.rerun_job(request).await {
            Ok(()) => {
                tracing::info!(job = %job, "spot instance reclaimed; job re-run on on-demand");
                let done = self
                    .update(job, |r| {
                        let changed = r.rerun_pending || !r.rerun_requested;
                        r.rerun_pending = false;
                        r.rerun_requested = true;
                        changed
                    })
                    .await;
                if let Err(e) = done {
                    // Still pending: asked again next pass, when GitHub
                    // refuses it while the re-run's own run is in progress.
                    tracing::warn!(error = %e, job = %job, "recording an accepted re-run failed");
                }
                true
            }
            Err(e) => {
                tracing::info!(error = %e, job = %job, "GitHub has not re-run the reclaimed job yet (its run may be in progress); asked again next pass");
                false
            }
        }
    }
}

/// Whether `record` accounts for `instance` of `runner`: its launch of that
/// runner is live with that instance (or not yet recorded), or a launch
/// for it is in flight under a live claim.
fn knows(
    record: &JobRecord,
    runner: &crate::domain::RunnerName,
    instance: &crate::domain::InstanceId,
    now: Timestamp,
) -> bool {
    let in_flight = record.state == JobState::Launching
        && record.lease.as_ref().is_some_and(|l| l.expires_at > now);
    in_flight
        || record
            .launch_by_runner(runner)
            .is_some_and(|l| l.is_live() && l.instance_id.as_ref().is_none_or(|id| id == instance))
}
