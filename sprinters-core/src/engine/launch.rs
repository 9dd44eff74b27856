//! The launch of one job: claim, intent, credentials and JIT config
//! concurrently, `RunInstances`, record. Latency-critical: nothing here
//! waits on a timer.

use std::sync::Arc;

use secrecy::SecretString;
use tracing::Instrument;

use super::limits::{Caps, Place, Usage};
use super::supply::{plan, scope, supplies};
use super::{Inner, job_span};
use crate::domain::{InstanceId, JobKey, RunnerName};
use crate::job::{EndReason, JobRecord, JobState, Launch};
use crate::labels::{LabelSetKey, SpotMode};
use crate::observe::Launching;
use crate::ports::{
    CapReached, Claim, ClaimJob, CreateJitRunner, Credentials, CredentialsRequest, LaunchRequest,
    Launched, ListJobs, ListOwned, Market, RemoveRunner, Versioned,
};
use crate::time::Timestamp;
use crate::{Error, ErrorKind, Result};

/// How long a launch still retrying is remembered as attempted here.
const FORGET_WAITS_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Where a launch task's claim left the job.
enum Step {
    /// Launched, or found not to need a launch.
    Left,
    /// Another replica holds the job.
    Elsewhere,
    /// A cap is reached across the replicas: nothing was written.
    Full(CapReached),
}

/// Counts a launch task waiting for the next tick, however its future
/// ends.
struct Parked<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Parked<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How a launch attempt ended, short of an error.
enum Attempt {
    /// An instance runs for the job: started, or adopted.
    Done(Outcome),
    /// Cut short elsewhere, its instance not found: look again then.
    LookAgainAt(Timestamp),
}

/// What one launch attempt produced.
struct Outcome {
    launched: Launched,
    runner_id: Option<u64>,
    spot_fallback: bool,
}

impl Inner {
    pub(super) fn me(&self) -> Option<Arc<Inner>> {
        self.me.upgrade()
    }

    /// Launch tasks waiting for a slot: here, or at the store (until the
    /// next tick).
    #[cfg(feature = "testing")]
    pub(super) fn parked(&self) -> usize {
        self.limiter.waiting()
            + self
                .parked_for_tick
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Launches for `key` if it still needs a runner. Errors are recorded on
    /// the job, or left for the next tick when the store itself failed.
    pub(super) async fn launch_job(self: &Arc<Self>, key: JobKey, known: Option<JobRecord>) {
        // Only the account and repository are used before the claim, which
        // reads the current record: a known one, however recent, will do.
        let record = match known {
            Some(record) => record,
            None => match self.store.get_job(key).await {
                Ok(Some(r)) => r.value,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(job = %key, error = %e, "reading job before launch failed");
                    return;
                }
            },
        };
        let span = job_span(key, &record.repository);
        async {
            let Some(account) = record.account.clone() else {
                return;
            };
            // Wait for a slot, unless the engine is shutting down: nothing
            // has been claimed yet, so the job simply stays queued.
            let place = Place {
                owner: record.owner_id,
                account: &account,
                repository: &record.repository,
            };
            let caps = || self.caps_of(record.owner_id, &record.repository);
            // A slot per instance: a job whose runner another job took
            // holds that one and needs another; a resumed launch has one.
            let usage = Usage::of(&record);
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.limiter.acquire(key, &place, caps, usage) => {}
                }
                match self.claim_and_launch(key, caps()).await {
                    // The record as this task left it: no read to decide.
                    // Its writes set what the job holds here.
                    Ok(Step::Left) => self.limiter.unreserve(key),
                    Ok(Step::Elsewhere) => self.release_slot_if_idle(key).await,
                    // Other replicas hold the slots: this one's reservation
                    // goes back (another owner's job in the account may fit
                    // under its own caps), and it asks again on the next
                    // tick, when one may have freed anywhere.
                    Ok(Step::Full(reached)) => {
                        tracing::debug!(%reached, "launch waits for a slot held elsewhere");
                        let tick = self.ticked.notified();
                        tokio::pin!(tick);
                        tick.as_mut().enable();
                        // The other waiters for that place wait for the
                        // tick too, rather than each asking the store.
                        self.limiter.full_until_tick(reached.cap, &place);
                        self.limiter.unreserve(key);
                        let _parked = Parked::new(&self.parked_for_tick);
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return,
                            _ = tick => continue,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "launch step failed; it is retried when due");
                        self.release_slot_if_idle(key).await;
                    }
                }
                break;
            }
        }
        .instrument(span)
        .await;
    }

    /// Claims `key` within `caps`, counted by the store across replicas,
    /// and launches it if it still needs a runner.
    async fn claim_and_launch(&self, key: JobKey, caps: Caps) -> Result<Step> {
        let now = self.clock.now();
        let claim = ClaimJob::new(
            key,
            self.config.replica_id.clone(),
            now,
            self.config.claim_ttl,
        )
        .within(caps);
        let claimed = match self.store.claim_job(claim).await? {
            Claim::Granted(claimed) => claimed,
            Claim::Full(reached) => return Ok(Step::Full(reached)),
            _ => return Ok(Step::Elsewhere), // another replica holds it
        };
        Ok(match self.launch_if_needed(claimed, now).await? {
            Some(_) => Step::Left,
            None => Step::Elsewhere,
        })
    }

    /// Returns the job's record as last written or read here; `None` when
    /// another replica took it over.
    async fn launch_if_needed(
        &self,
        claimed: Versioned<JobRecord>,
        now: Timestamp,
    ) -> Result<Option<JobRecord>> {
        let key = claimed.value.key;
        let record = claimed.value.clone();
        let due = record.next_attempt_at.is_none_or(|t| t <= now);
        let still_needed =
            record.state.is_waiting() && due && self.needs_launch(&record, now).await?;
        if !still_needed {
            return self.release_claim(claimed).await;
        }
        let (Some(spec), Some(_)) = (&record.spec, &record.account) else {
            return self.release_claim(claimed).await;
        };
        // The tenant may have changed since the job was queued: uninstalled,
        // suspended, the repository or the account taken out; or its
        // policy, which a waiting job is held to again.
        let by_policy = self.policy_refuses_record(&record);
        if by_policy.is_some() && self.tenant_refuses(&record).is_none() {
            // As on arrival: a refused job left queued could take a runner.
            self.cancel_refused_run(crate::ports::CancelRun::new(
                record.installation_id,
                record.repository.clone(),
                record.run_id,
            ));
        }
        if let Some(message) = self.tenant_refuses(&record).or(by_policy) {
            tracing::warn!(%message, "launch refused");
            let written = self
                .update_from(claimed, |r| {
                    if !r.state.is_waiting() {
                        return false;
                    }
                    r.state = JobState::Rejected;
                    r.message = Some(message.clone());
                    r.lease = None;
                    true
                })
                .await?;
            return Ok(Some(written.value));
        }

        // The intent is durable before any API call: after a crash, a
        // pending launch tells the next attempt to look for its instance.
        let pending = record
            .launches
            .iter()
            .find(|l| l.instance_id.is_none() && l.ended.is_none())
            .map(|l| l.number);
        let number = pending.unwrap_or(record.launches.len() as u32 + 1);
        let intent = launch_intent(key, spec, number);
        let replica = self.config.replica_id.clone();
        let written = self
            .update_from(claimed, |r| {
                // A lapsed claim's slot may be another job's by now.
                let now = self.clock.now();
                let ours = r
                    .lease
                    .as_ref()
                    .is_some_and(|l| l.owner == replica && l.expires_at > now);
                if !ours || !r.state.is_waiting() {
                    return false;
                }
                r.state = JobState::Launching;
                if !r.launches.iter().any(|l| l.number == number) {
                    r.launches.push(intent.clone());
                }
                true
            })
            .await?;
        if written.value.state != JobState::Launching {
            return Ok(Some(written.value));
        }
        self.launch_claimed(written, number, pending.is_some())
            .await
            .map(Some)
    }

    /// Launch `number` of the job in `written`, claimed by this replica
    /// with its intent recorded: the API calls, then the outcome's write.
    pub(super) async fn launch_claimed(
        &self,
        written: Versioned<JobRecord>,
        number: u32,
        resumed: bool,
    ) -> Result<JobRecord> {
        let record = written.value.clone();
        let (Some(spec), Some(account)) = (record.spec.clone(), record.account.clone()) else {
            return Err(Error::integrity(format!(
                "job {} was claimed for a launch without a spec or account",
                record.key
            )));
        };
        let runner_name = RunnerName::for_launch(record.key, number);
        tracing::info!(runner = %runner_name, launch = number, "launching");
        let outcome = self
            .launch_instance(&record, &spec, account, number, &runner_name, resumed)
            .await;
        let over = match &outcome {
            Ok(Attempt::Done(_)) => true,
            Ok(Attempt::LookAgainAt(_)) => false,
            Err(e) => !e.is_retryable(),
        };
        if over {
            self.forget_resumed_wait(record.key, number);
        }
        match outcome {
            Ok(Attempt::Done(outcome)) => self.record_launched(written, number, outcome).await,
            Ok(Attempt::LookAgainAt(at)) => self.look_again_at(written, at).await,
            Err(e) => self.record_failure(written, number, e).await,
        }
    }

    /// Releases the claim of a launch that waits for an earlier attempt's
    /// instance, due again at `at`. Not a failed attempt: a run of
    /// restarts must not use up the job's retries.
    async fn look_again_at(
        &self,
        written: Versioned<JobRecord>,
        at: Timestamp,
    ) -> Result<JobRecord> {
        tracing::info!(
            look_again_in_ms = at.since(self.clock.now()).as_millis() as u64,
            "the earlier attempt's instance is not found yet; looking again before launching anew"
        );
        let replica = self.config.replica_id.clone();
        let updated = self
            .update_from(written, |r| {
                if !r.state.is_waiting() || r.lease.as_ref().is_none_or(|l| l.owner != replica) {
                    return false;
                }
                r.state = JobState::Queued;
                r.lease = None;
                r.next_attempt_at = Some(at);
                true
            })
            .await?;
        Ok(updated.value)
    }

    async fn launch_instance(
        &self,
        record: &JobRecord,
        spec: &crate::labels::RunnerSpec,
        account: crate::domain::AccountId,
        number: u32,
        runner_name: &RunnerName,
        resumed: bool,
    ) -> Result<Attempt> {
        let key = record.key;
        let owner = record.owner().clone();
        let credentials_request = CredentialsRequest::new(account.clone(), record.owner_id, owner);
        let jit_request = CreateJitRunner {
            runner_group_id: self.config.runner_group_id,
            ..CreateJitRunner::new(
                record.installation_id,
                record.repository.clone(),
                runner_name.clone(),
                record.labels.clone(),
            )
        };

        if !resumed {
            self.attempting_here(key, number);
        }
        let (credentials, jit) = if resumed {
            // An earlier attempt may have reached EC2 before it could record
            // the instance: adopt it rather than start a second one.
            let credentials = self.credentials.credentials(credentials_request).await?;
            if let Some(found) = self
                .find_launched(record, &account, &credentials, runner_name)
                .await?
            {
                tracing::info!(instance = %found.instance_id, "adopted the instance of an earlier attempt");
                self.forget_resumed_wait(key, number);
                return Ok(Attempt::Done(Outcome {
                    launched: found,
                    runner_id: None,
                    spot_fallback: false,
                }));
            }
            // Its `RunInstances` may still be on the way: creating the JIT
            // runner again replaces the earlier one, whose config that
            // instance would run. Look once more after the window.
            if let Some(at) = self.wait_once_for_in_flight(key, number) {
                return Ok(Attempt::LookAgainAt(at));
            }
            let jit = self.registry.create_jit_runner(jit_request).await?;
            (credentials, jit)
        } else {
            // The two slow calls of the launch path, side by side.
            let (credentials, jit) = tokio::join!(
                self.credentials.credentials(credentials_request),
                self.registry.create_jit_runner(jit_request),
            );
            match (credentials, jit) {
                (Ok(c), Ok(j)) => (c, j),
                (Err(e), Ok(j)) => {
                    if !e.is_retryable() {
                        self.discard_runner(record, j.runner_id).await;
                    }
                    return Err(e);
                }
                (_, Err(e)) => return Err(e),
            }
        };

        let market = if spec.spot.wants_spot()
            && !(spec.spot == SpotMode::Rerun && key.run_attempt.get() > 1)
        {
            Market::Spot
        } else {
            // A re-run of a `spot=rerun` job goes on-demand: the spot
            // instance of its earlier attempt was reclaimed.
            Market::OnDemand
        };
        let request = |market: Market| {
            LaunchRequest::new(
                account.clone(),
                credentials.clone(),
                self.config.controller_id.clone(),
                key,
                record.run_id,
                record.repository.clone(),
                runner_name.clone(),
                spec.clone(),
                market,
                self.idempotency_token(key, number, market),
                SecretString::from(
                    secrecy::ExposeSecret::expose_secret(&jit.encoded_jit_config).to_owned(),
                ),
                self.config.max_lifetime,
            )
        };
        self.observer.launching(&Launching {
            job: key,
            launch_number: number,
            market,
            since_queued: self.clock.now().since(record.queued_at),
        });
        let first = self.launcher.launch(request(market)).await;
        let (launched, spot_fallback) = match first {
            Err(e)
                if *e.kind() == ErrorKind::CapacityUnavailable
                    && market == Market::Spot
                    && spec.spot.falls_back() =>
            {
                tracing::info!(error = %e, "no spot capacity; falling back to on-demand");
                (self.launcher.launch(request(Market::OnDemand)).await, true)
            }
            other => (other, false),
        };
        match launched {
            Ok(launched) => Ok(Attempt::Done(Outcome {
                launched,
                runner_id: Some(jit.runner_id),
                spot_fallback,
            })),
            // The token was used with other parameters (this attempt's new
            // JIT config): an earlier attempt's `RunInstances` went through
            // although the look-up above missed it (a request still in
            // flight when its process died, or EC2's listing lagging).
            // Its instance is this launch's.
            Err(e) if resumed && *e.kind() == ErrorKind::Conflict => {
                match self
                    .find_launched(record, &account, &credentials, runner_name)
                    .await?
                {
                    Some(found) => {
                        self.forget_resumed_wait(key, number);
                        tracing::info!(instance = %found.instance_id, "adopted the instance of an earlier attempt");
                        Ok(Attempt::Done(Outcome {
                            launched: found,
                            runner_id: None,
                            spot_fallback: false,
                        }))
                    }
                    None => Err(e),
                }
            }
            Err(e) => {
                if !e.is_retryable() {
                    self.discard_runner(record, jit.runner_id).await;
                }
                // The customer's account refused what the job asks (its
                // role lacks a permission, or the label names an image,
                // subnet or type that cannot be): the job can never run as
                // asked, and its run ends now. Not for the platform's own
                // faults (STS, GitHub), which would end every tenant's runs.
                if matches!(
                    e.kind(),
                    ErrorKind::PermissionDenied | ErrorKind::Config | ErrorKind::InvalidLabel
                ) {
                    self.cancel_refused_run(crate::ports::CancelRun::new(
                        record.installation_id,
                        record.repository.clone(),
                        record.run_id,
                    ));
                }
                Err(e)
            }
        }
    }

    /// The first time a resumed launch whose earlier attempt was not made
    /// in this process (a crash, another replica) finds no instance: when
    /// to look again, `in_flight_window` later. `None` once that has
    /// passed, or when the earlier attempt was made here (it got its
    /// answer, or timed out: that case is not covered).
    fn wait_once_for_in_flight(&self, key: JobKey, number: u32) -> Option<Timestamp> {
        let now = self.clock.now();
        let window = self.config.in_flight_window;
        let look_again_at = {
            let mut waits = self.resumed_waits.lock().unwrap_or_else(|e| e.into_inner());
            // Launches that never came back (their job ended meanwhile).
            waits.retain(|_, at| now.since(*at) < FORGET_WAITS_AFTER);
            *waits
                .entry((key, number))
                .or_insert_with(|| now.saturating_add(window))
        };
        if now >= look_again_at {
            self.attempting_here(key, number);
            return None;
        }
        Some(look_again_at)
    }

    /// Marks launch `number` of `key` as attempted by this process: it
    /// gets its calls' answers, so a retry has nothing in flight to wait
    /// for.
    fn attempting_here(&self, key: JobKey, number: u32) {
        self.resumed_waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((key, number), self.clock.now());
    }

    fn forget_resumed_wait(&self, key: JobKey, number: u32) {
        self.resumed_waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(key, number));
    }

    /// Whether `record`'s job needs a launch of its own: no idle runner of
    /// its own and none spare in its label set. Spares are rare, so the
    /// common case reads only the jobs that hold one (the store's index of
    /// them), never the label set's running or waiting jobs.
    pub(super) async fn needs_launch(&self, record: &JobRecord, now: Timestamp) -> Result<bool> {
        let key = record.key;
        if record
            .launches
            .iter()
            .any(|l| supplies(record, l, now, Some(key)))
        {
            return Ok(false);
        }
        let mut query = ListJobs::active(1000);
        query.label_set = Some(record.label_set);
        query.spares_only = true;
        let within = scope(record);
        let spares: usize = self
            .list_all(query)
            .await?
            .iter()
            .filter(|r| scope(&r.value) == within)
            .map(|r| {
                r.value
                    .launches
                    .iter()
                    .filter(|l| supplies(&r.value, l, now, Some(key)))
                    .count()
            })
            .sum();
        if spares == 0 {
            return Ok(true);
        }
        // Spares go to the longest-waiting jobs first: decide with everything,
        // the job itself included (a new job's write may still be on its way).
        let mut active = self.active_in(record).await?;
        if !active.iter().any(|r| r.value.key == key) {
            active.push(Versioned {
                value: record.clone(),
                version: 0,
            });
        }
        Ok(plan(&active, now, Some(key)).contains(&key))
    }

    /// Removes a JIT runner that will never start, so it does not linger
    /// on GitHub. A retry replaces it by name anyway, so only permanent
    /// failures need this.
    async fn discard_runner(&self, record: &JobRecord, runner_id: u64) {
        let remove =
            RemoveRunner::new(record.installation_id, record.repository.clone(), runner_id);
        if let Err(e) = self.registry.remove_runner(remove).await {
            tracing::warn!(error = %e, "removing the unused runner failed");
        }
    }

    /// An instance of this job's runner that an earlier attempt launched.
    async fn find_launched(
        &self,
        record: &JobRecord,
        account: &crate::domain::AccountId,
        credentials: &Credentials,
        runner_name: &RunnerName,
    ) -> Result<Option<Launched>> {
        let Some(spec) = &record.spec else {
            return Ok(None);
        };
        let query = ListOwned::new(
            account.clone(),
            credentials.clone(),
            spec.region.clone(),
            self.config.controller_id.clone(),
        )
        .for_job(record.key);
        let owned = self.launcher.list_owned(query).await?;
        Ok(owned
            .instances
            .into_iter()
            .find(|i| i.state.is_alive() && i.runner_name.as_ref() == Some(runner_name))
            .map(|i| {
                Launched::new(
                    i.instance_id,
                    spec.instance_type.clone(),
                    spec.region.clone(),
                    spec.availability_zone.clone(),
                    i.spot,
                    i.launched_at.unwrap_or_else(|| self.clock.now()),
                )
            }))
    }

    /// The EC2 client token of launch `number` of `key` on `market`: the
    /// same inputs always give the same token, so a retried call returns
    /// the instance the first one started.
    pub(super) fn idempotency_token(&self, key: JobKey, number: u32, market: Market) -> String {
        let controller = LabelSetKey::of(&[self.config.controller_id.as_str()]).get() as u32;
        let m = match market {
            Market::Spot => 's',
            Market::OnDemand => 'o',
        };
        format!(
            "sprinters-{controller:08x}-{}-{}-{number}-{m}",
            key.job_id, key.run_attempt
        )
    }

    async fn record_launched(
        &self,
        written: Versioned<JobRecord>,
        number: u32,
        outcome: Outcome,
    ) -> Result<JobRecord> {
        let Outcome {
            launched,
            runner_id,
            spot_fallback,
        } = outcome;
        let instance_id: InstanceId = launched.instance_id.clone();
        let updated = self
            .update_from(written, |r| {
                let Some(l) = r.launches.iter_mut().find(|l| l.number == number) else {
                    return false;
                };
                l.instance_id = Some(launched.instance_id.clone());
                l.availability_zone = launched
                    .availability_zone
                    .clone()
                    .or(l.availability_zone.take());
                l.instance_type = launched.instance_type.clone();
                l.region = launched.region.clone();
                l.spot = launched.spot;
                l.spot_fallback = spot_fallback;
                l.hourly_price_micros = launched.hourly_price_micros;
                l.launched_at = Some(launched.launched_at);
                if runner_id.is_some() {
                    l.runner_id = runner_id;
                }
                if r.state.rank() < JobState::Launched.rank() {
                    r.state = JobState::Launched;
                }
                r.lease = None;
                r.failed_attempts = 0;
                r.next_attempt_at = None;
                r.message = None;
                true
            })
            .await?;
        tracing::info!(instance = %instance_id, spot = launched.spot, spot_fallback, "launched");
        // The job finished on this launch's runner before the instance was
        // recorded (its webhooks overtook this write): the completed
        // webhook could not end an instance it did not know. End it now,
        // not at the reconciler's next pass.
        let key = updated.value.key;
        if updated.value.state.is_finished() && updated.value.ran_on_launch == Some((key, number)) {
            let ended = self
                .end_launch_from(updated.clone(), number, EndReason::JobCompleted, Some(key))
                .await;
            if let Err(e) = ended {
                tracing::warn!(error = %e, "ending the instance of a job that finished during its launch failed; the reconciler will");
            }
        }
        Ok(updated.value)
    }

    async fn record_failure(
        &self,
        written: Versioned<JobRecord>,
        number: u32,
        error: Error,
    ) -> Result<JobRecord> {
        let record = written.value.clone();
        let now = self.clock.now();
        let policy = self.config.retry;
        let failed = record.failed_attempts + 1;
        let retry = error.is_retryable() && failed < policy.max_attempts;
        let delay = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            policy.delay(failed, error.retry_after(), &mut rng)
        };
        let message = if retry {
            format!("launch attempt {failed} failed, retrying: {error}")
        } else if error.is_retryable() {
            format!("launch failed after {failed} attempts: {error}")
        } else {
            format!("launch failed: {error}")
        };
        let updated = self
            .update_from(written, |r| {
                if !r.state.is_waiting() {
                    r.lease = None;
                    return true;
                }
                r.failed_attempts = failed;
                r.message = Some(message.clone());
                r.lease = None;
                if retry {
                    r.state = JobState::Queued;
                    r.next_attempt_at = Some(now.saturating_add(delay));
                } else {
                    r.state = JobState::Failed;
                    r.completed_at = Some(now);
                    r.next_attempt_at = None;
                    if let Some(l) = r
                        .launches
                        .iter_mut()
                        .find(|l| l.number == number && l.instance_id.is_none())
                    {
                        l.ended = Some((now, EndReason::LaunchFailed));
                    }
                }
                true
            })
            .await?;
        if retry {
            tracing::warn!(error = %error, attempt = failed, retry_in_ms = delay.as_millis() as u64, "launch failed; retrying");
        } else {
            tracing::error!(error = %error, "launch failed for good");
        }
        Ok(updated.value)
    }

    /// Gives up the claim just taken: the job needs no launch (yet).
    async fn release_claim(&self, claimed: Versioned<JobRecord>) -> Result<Option<JobRecord>> {
        let replica = self.config.replica_id.clone();
        let updated = self
            .update_from(claimed, |r| {
                if r.lease.as_ref().is_some_and(|l| l.owner == replica) {
                    r.lease = None;
                    true
                } else {
                    false
                }
            })
            .await?;
        Ok(Some(updated.value))
    }

    /// A job keeps a slot for each live instance it launched.
    pub(super) async fn release_slot_if_idle(&self, key: JobKey) {
        match self.store.get_job(key).await {
            Ok(Some(r)) => {
                self.limiter.seen(&r.value, r.version);
                self.limiter.unreserve(key);
            }
            Ok(None) => self.limiter.release(key),
            Err(e) => {
                // What it held stays counted until a tick reads it again.
                tracing::warn!(error = %e, "reading job to release its slot failed");
                self.limiter.unreserve(key);
            }
        }
    }
}

/// The intent of launch `number` of `key`, recorded before any API call:
/// after a crash, a pending launch tells the next attempt to look for its
/// instance.
pub(super) fn launch_intent(key: JobKey, spec: &crate::labels::RunnerSpec, number: u32) -> Launch {
    Launch {
        number,
        runner_name: RunnerName::for_launch(key, number),
        runner_id: None,
        instance_id: None,
        region: spec.region.clone(),
        availability_zone: spec.availability_zone.clone(),
        instance_type: spec.instance_type.clone(),
        spot: false,
        spot_fallback: false,
        hourly_price_micros: None,
        launched_at: None,
        taken_by: None,
        ended: None,
    }
}
