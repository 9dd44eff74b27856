//! The ports the simulated control plane sees: the in-memory adapters
//! behind a layer that, from the seed, fails calls the way GitHub, EC2 and
//! STS fail (5xx, throttling) and crashes the control plane at await
//! points, before or after a call took effect; and GitHub's rate limit,
//! counted per installation as GitHub counts it.
//!
//! Decisions come from a hash of (seed, operation, subject, how many times
//! that subject was asked), not from one shared stream: the engine may
//! interleave its calls differently and still meet the same faults.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::domain::{DeliveryId, InstallationId, JobKey};
use crate::job::JobRecord;
use crate::ports::{
    AcquireLease, CancelRun, Claim, ClaimJob, CloudLauncher, CreateJitRunner, CredentialProvider,
    Credentials, CredentialsRequest, DeliveryRecorded, DescribeInstance, GetJobStatus,
    InstanceInfo, JitRunner, JobPage, JobStatus, JobStore, LaunchRequest, Launched, LeaseGrant,
    ListJobs, ListOwned, ListQueuedJobs, OwnedInstances, Purge, Purged, PutJob, QueuedJobs,
    RecordDelivery, ReleaseLease, RemoveRunner, RerunJob, RunnerRegistry, TerminateRequest,
    Terminated, Version, Versioned,
};
use crate::time::{Clock, Timestamp};
use crate::{Error, Result};

/// What a call meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Fail,
    CrashBefore,
    CrashAfter,
}

/// The dice of one simulation, and its crash switch.
#[derive(Debug)]
pub(crate) struct Chaos {
    seed: u64,
    /// Per mille of calls that fail, that crash the control plane.
    fail: u64,
    crash: u64,
    asked: Mutex<HashMap<(&'static str, u64), u64>>,
    crashed: AtomicBool,
    pub(crate) crash_signal: Notify,
    pub(crate) crashes: std::sync::atomic::AtomicU64,
    pub(crate) failures: std::sync::atomic::AtomicU64,
    /// The store answers that no other replica writes it: the engine's
    /// own count then decides the one-write path of a capped job.
    pub(crate) exclusive_store: bool,
    /// GitHub's limit per installation, scaled down to calls a minute
    /// (GitHub: 5,000 an hour, and a secondary limit of 80
    /// content-creating requests a minute); `None`: no limit.
    pub(crate) github_per_minute: Option<u64>,
    /// The minute each installation is in (when it ends) and its calls.
    github_minutes: Mutex<HashMap<InstallationId, (Timestamp, u64)>>,
    /// The wait last told to each installation: its end, and the
    /// incarnation (crash count) told.
    github_told: Mutex<HashMap<InstallationId, (Timestamp, u64)>>,
    /// Calls GitHub refused for the rate limit.
    pub(crate) rate_limited: std::sync::atomic::AtomicU64,
    /// Calls made while GitHub's `retry-after`, told to this incarnation
    /// of the control plane, still ran: each one a call it should not have
    /// made (a restarted control plane learns it again, once).
    pub(crate) ignored_waits: std::sync::atomic::AtomicU64,
}

impl Chaos {
    pub(crate) fn new(seed: u64, fail_per_mille: u64, crash_per_mille: u64) -> Self {
        Self {
            seed,
            fail: fail_per_mille,
            crash: crash_per_mille,
            asked: Mutex::new(HashMap::new()),
            crashed: AtomicBool::new(false),
            crash_signal: Notify::new(),
            crashes: Default::default(),
            failures: Default::default(),
            exclusive_store: false,
            github_per_minute: None,
            github_minutes: Mutex::default(),
            github_told: Mutex::default(),
            rate_limited: Default::default(),
            ignored_waits: Default::default(),
        }
    }

    /// GitHub's answer to a call of `installation` at `now` past its limit:
    /// 403 with `retry-after` until its minute ends ("Rate limits for the
    /// REST API", GitHub docs). Refused calls count too, as at GitHub, so
    /// a client that does not wait stays refused.
    pub(crate) fn github_limit(&self, installation: InstallationId, now: Timestamp) -> Result<()> {
        // A control plane that crashed makes no more calls (`call` holds
        // them): none is counted, none told to its successor.
        let Some(limit) = self.github_per_minute.filter(|_| !self.crashed()) else {
            return Ok(());
        };
        let mut minutes = self
            .github_minutes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (end, used) = minutes.entry(installation).or_insert((now, 0));
        if *end <= now {
            *end = now.saturating_add(Duration::from_secs(60));
            *used = 0;
        }
        *used += 1;
        if *used <= limit {
            return Ok(());
        }
        let wait = (*end, self.crashes.load(Ordering::SeqCst));
        let mut told = self.github_told.lock().unwrap_or_else(|e| e.into_inner());
        if told.insert(installation, wait) == Some(wait) {
            self.ignored_waits.fetch_add(1, Ordering::Relaxed);
        }
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        Err(Error::rate_limited(
            Some(end.since(now).max(Duration::from_secs(1))),
            format!("installation {installation} exceeded a secondary rate limit"),
        ))
    }

    /// A number in 0..1000 for the `n`-th time `op` is asked about
    /// `subject`.
    pub(crate) fn roll(&self, op: &'static str, subject: impl Hash) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        subject.hash(&mut h);
        let subject = h.finish();
        let n = {
            let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
            let n = asked.entry((op, subject)).or_insert(0);
            *n += 1;
            *n
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, op, subject, n).hash(&mut h);
        h.finish() % 1000
    }

    fn draw(&self, op: &'static str, subject: impl Hash, can_fail: bool) -> Fault {
        if self.crashed() {
            return Fault::CrashBefore;
        }
        let roll = self.roll(op, subject);
        if roll < self.crash {
            if roll.is_multiple_of(2) {
                Fault::CrashBefore
            } else {
                Fault::CrashAfter
            }
        } else if can_fail && roll < self.crash + self.fail {
            Fault::Fail
        } else {
            Fault::None
        }
    }

    pub(crate) fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    fn crash_now(&self) {
        if !self.crashed.swap(true, Ordering::SeqCst) {
            self.crashes.fetch_add(1, Ordering::Relaxed);
        }
        self.crash_signal.notify_waiters();
    }

    /// The control plane restarted: calls go through again.
    pub(crate) fn restart(&self) {
        self.crashed.store(false, Ordering::SeqCst);
    }

    async fn call<T>(
        &self,
        op: &'static str,
        subject: impl Hash,
        error: impl FnOnce() -> Option<Error>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let error = error();
        match self.draw(op, subject, error.is_some()) {
            Fault::None => call.await,
            Fault::Fail => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(error.unwrap_or_else(|| Error::unavailable("injected")))
            }
            Fault::CrashBefore => {
                self.crash_now();
                std::future::pending().await
            }
            Fault::CrashAfter => {
                let _ = call.await;
                self.crash_now();
                std::future::pending().await
            }
        }
    }
}

fn github_down() -> Option<Error> {
    Some(Error::unavailable("GitHub answered 502 Bad Gateway"))
}

fn ec2_throttled() -> Option<Error> {
    Some(Error::rate_limited(None, "EC2 RequestLimitExceeded"))
}

/// A port of the simulated control plane.
#[derive(Debug)]
pub(crate) struct Chaotic<P: ?Sized> {
    pub(crate) chaos: Arc<Chaos>,
    pub(crate) inner: Arc<P>,
}

/// The simulated GitHub: the in-memory registry, its faults and its rate
/// limit.
#[derive(Debug)]
pub(crate) struct ChaoticGithub {
    pub(crate) chaos: Arc<Chaos>,
    pub(crate) inner: Arc<dyn RunnerRegistry>,
    pub(crate) clock: Arc<dyn Clock>,
}

#[async_trait]
impl RunnerRegistry for ChaoticGithub {
    async fn create_jit_runner(&self, request: CreateJitRunner) -> Result<JitRunner> {
        self.chaos
            .github_limit(request.installation_id, self.clock.now())?;
        let subject = request.runner_name.to_string();
        let call = self.inner.create_jit_runner(request);
        self.chaos.call("jit", subject, github_down, call).await
    }
    async fn remove_runner(&self, request: RemoveRunner) -> Result<()> {
        self.chaos
            .github_limit(request.installation_id, self.clock.now())?;
        let subject = request.runner_id;
        let call = self.inner.remove_runner(request);
        self.chaos
            .call("remove_runner", subject, github_down, call)
            .await
    }
    async fn job_status(&self, request: GetJobStatus) -> Result<JobStatus> {
        self.chaos
            .github_limit(request.installation_id, self.clock.now())?;
        let subject = request.job_id;
        let call = self.inner.job_status(request);
        self.chaos
            .call("job_status", subject, github_down, call)
            .await
    }
    async fn rerun_job(&self, request: RerunJob) -> Result<()> {
        self.chaos
            .github_limit(request.installation_id, self.clock.now())?;
        let subject = request.job_id;
        let call = self.inner.rerun_job(request);
        self.chaos.call("rerun", subject, github_down, call).await
    }
    async fn cancel_run(&self, request: CancelRun) -> Result<()> {
        self.chaos
            .github_limit(request.installation_id, self.clock.now())?;
        let subject = request.run_id;
        let call = self.inner.cancel_run(request);
        self.chaos.call("cancel", subject, github_down, call).await
    }
    async fn list_queued_jobs(&self, request: ListQueuedJobs) -> Result<QueuedJobs> {
        self.chaos
            .github_limit(request.installation_id, self.clock.now())?;
        let subject = request.repository.to_string();
        let call = self.inner.list_queued_jobs(request);
        self.chaos.call("queued", subject, github_down, call).await
    }
    async fn run_origin(
        &self,
        request: crate::ports::GetRunOrigin,
    ) -> Result<crate::ports::RunOrigin> {
        self.chaos
            .github_limit(request.installation_id, self.clock.now())?;
        let subject = request.run_id;
        let call = self.inner.run_origin(request);
        self.chaos.call("origin", subject, github_down, call).await
    }
}

#[async_trait]
impl CredentialProvider for Chaotic<dyn CredentialProvider> {
    async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials> {
        let subject = request.account.to_string();
        let call = self.inner.credentials(request);
        let down = || Some(Error::unavailable("STS timed out"));
        self.chaos.call("sts", subject, down, call).await
    }
}

#[async_trait]
impl CloudLauncher for Chaotic<dyn CloudLauncher> {
    async fn launch(&self, request: LaunchRequest) -> Result<Launched> {
        let subject = request.idempotency_token.clone();
        let call = self.inner.launch(request);
        self.chaos
            .call("launch", subject, ec2_throttled, call)
            .await
    }
    async fn terminate(&self, request: TerminateRequest) -> Result<Terminated> {
        let subject = request.instance_id.to_string();
        let call = self.inner.terminate(request);
        self.chaos
            .call("terminate", subject, ec2_throttled, call)
            .await
    }
    async fn list_owned(&self, request: ListOwned) -> Result<OwnedInstances> {
        let subject = request.job;
        let call = self.inner.list_owned(request);
        self.chaos
            .call("list_owned", subject, ec2_throttled, call)
            .await
    }
    async fn describe(&self, request: DescribeInstance) -> Result<InstanceInfo> {
        let subject = request.instance_id.to_string();
        let call = self.inner.describe(request);
        self.chaos
            .call("describe", subject, ec2_throttled, call)
            .await
    }
}

/// The store does not fail (the embedded store refuses writes only on
/// a broken disk), but the control plane may crash around any write.
#[async_trait]
impl JobStore for Chaotic<dyn JobStore> {
    async fn get_job(&self, key: JobKey) -> Result<Option<Versioned<JobRecord>>> {
        self.inner.get_job(key).await
    }
    async fn put_job(&self, request: PutJob) -> Result<Version> {
        let subject = (request.record.key, request.expected);
        let call = self.inner.put_job(request);
        self.chaos.call("put_job", subject, || None, call).await
    }
    async fn claim_job(&self, request: ClaimJob) -> Result<Claim> {
        let subject = request.key;
        let call = self.inner.claim_job(request);
        self.chaos.call("claim_job", subject, || None, call).await
    }
    async fn list_jobs(&self, request: ListJobs) -> Result<JobPage> {
        self.inner.list_jobs(request).await
    }
    async fn delivery_seen(&self, id: DeliveryId) -> Result<bool> {
        self.inner.delivery_seen(id).await
    }
    async fn record_delivery(&self, request: RecordDelivery) -> Result<DeliveryRecorded> {
        let subject = request.id.to_string();
        let call = self.inner.record_delivery(request);
        self.chaos
            .call("record_delivery", subject, || None, call)
            .await
    }
    async fn acquire_lease(&self, request: AcquireLease) -> Result<LeaseGrant> {
        self.inner.acquire_lease(request).await
    }
    async fn release_lease(&self, request: ReleaseLease) -> Result<()> {
        self.inner.release_lease(request).await
    }
    async fn get_tenant(
        &self,
        owner_id: crate::domain::OwnerId,
    ) -> Result<Option<Versioned<crate::tenant::TenantRecord>>> {
        self.inner.get_tenant(owner_id).await
    }
    async fn put_tenant(&self, request: crate::ports::PutTenant) -> Result<Version> {
        self.inner.put_tenant(request).await
    }
    async fn list_tenants(&self) -> Result<Vec<Versioned<crate::tenant::TenantRecord>>> {
        self.inner.list_tenants().await
    }
    async fn delete_tenant(
        &self,
        owner_id: crate::domain::OwnerId,
        version: Version,
    ) -> Result<()> {
        self.inner.delete_tenant(owner_id, version).await
    }
    async fn purge(&self, request: Purge) -> Result<Purged> {
        self.inner.purge(request).await
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared() && !self.chaos.exclusive_store
    }
}
