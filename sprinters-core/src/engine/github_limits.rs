//! [`RateLimitGate`]: GitHub's rate limits held per installation.
//!
//! GitHub limits each installation (its primary hourly limit, and
//! secondary limits on bursts and content-creating requests), and asks
//! integrations not to call again before the time it names: "If you
//! continue to make requests while you are rate limited, this may result in
//! the banning of your integration" ("Rate limits for the REST API" and
//! "Best practices for using the REST API", GitHub docs). So one refused
//! call pauses its installation: until the time GitHub named (a minute when
//! it named none, as the docs ask for secondary limits), every call of that
//! installation is refused here at once, without reaching GitHub, and the
//! reconciler leaves that installation's checks for a later pass. Other
//! installations are not touched: one owner's burst never pauses another's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::InstallationId;
use crate::ports::{
    CancelRun, CreateJitRunner, DynRunnerRegistry, GetJobStatus, GetRunOrigin, JitRunner,
    JobStatus, ListQueuedJobs, QueuedJobs, RemoveRunner, RerunJob, RunOrigin, RunnerRegistry,
};
use crate::time::{Clock, Timestamp};
use crate::{Error, ErrorKind, Result};

/// How long an installation pauses when GitHub did not say.
const UNSTATED_WAIT: Duration = Duration::from_secs(60);

/// Until when each installation is paused.
#[derive(Debug)]
pub(crate) struct Pauses {
    clock: Arc<dyn Clock>,
    until: Mutex<HashMap<InstallationId, Timestamp>>,
}

impl Pauses {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            until: Mutex::default(),
        }
    }

    /// How long `installation` is still paused, if it is.
    pub(crate) fn remaining(&self, installation: InstallationId) -> Option<Duration> {
        self.remaining_after(installation, Duration::ZERO)
    }

    /// How long `installation` is paused, with `extra` after the pause's
    /// end: the reconciler resumes that long after launches do, so that
    /// its checks, which can wait, do not spend the first minute after a
    /// pause and starve the launches into the next one.
    pub(crate) fn remaining_after(
        &self,
        installation: InstallationId,
        extra: Duration,
    ) -> Option<Duration> {
        let now = self.clock.now();
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let end = until.get(&installation)?.saturating_add(extra);
        (end > now).then(|| end.since(now))
    }

    /// Pauses `installation` when `error` is GitHub's rate limit.
    pub(super) fn note(&self, installation: InstallationId, error: &Error) {
        if let ErrorKind::RateLimited { retry_after } = error.kind() {
            let end = self
                .clock
                .now()
                .saturating_add(retry_after.unwrap_or(UNSTATED_WAIT));
            let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
            // Pauses long over go (one entry per installation at most).
            let over = self.clock.now().saturating_sub(Duration::from_secs(3600));
            until.retain(|_, end| *end > over);
            let held = until.entry(installation).or_insert(end);
            *held = (*held).max(end);
        }
    }
}

/// A registry whose calls wait out their installation's rate limit.
#[derive(Debug)]
pub(crate) struct RateLimitGate {
    inner: DynRunnerRegistry,
    pauses: Arc<Pauses>,
}

impl RateLimitGate {
    pub(crate) fn new(inner: DynRunnerRegistry, pauses: Arc<Pauses>) -> Self {
        Self { inner, pauses }
    }

    async fn call<T>(
        &self,
        installation: InstallationId,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        if let Some(wait) = self.pauses.remaining(installation) {
            return Err(Error::rate_limited(
                Some(wait),
                format!(
                    "GitHub rate-limited installation {installation}: no call for {}s more",
                    wait.as_secs().max(1)
                ),
            ));
        }
        let result = call.await;
        if let Err(e) = &result {
            self.pauses.note(installation, e);
        }
        result
    }
}

#[async_trait]
impl RunnerRegistry for RateLimitGate {
    async fn create_jit_runner(&self, request: CreateJitRunner) -> Result<JitRunner> {
        let installation = request.installation_id;
        self.call(installation, self.inner.create_jit_runner(request))
            .await
    }

    async fn remove_runner(&self, request: RemoveRunner) -> Result<()> {
        let installation = request.installation_id;
        self.call(installation, self.inner.remove_runner(request))
            .await
    }

    async fn job_status(&self, request: GetJobStatus) -> Result<JobStatus> {
        let installation = request.installation_id;
        self.call(installation, self.inner.job_status(request))
            .await
    }

    async fn rerun_job(&self, request: RerunJob) -> Result<()> {
        let installation = request.installation_id;
        self.call(installation, self.inner.rerun_job(request)).await
    }

    async fn cancel_run(&self, request: CancelRun) -> Result<()> {
        let installation = request.installation_id;
        self.call(installation, self.inner.cancel_run(request))
            .await
    }

    async fn list_queued_jobs(&self, request: ListQueuedJobs) -> Result<QueuedJobs> {
        let installation = request.installation_id;
        self.call(installation, self.inner.list_queued_jobs(request))
            .await
    }

    async fn run_origin(&self, request: GetRunOrigin) -> Result<RunOrigin> {
        let installation = request.installation_id;
        self.call(installation, self.inner.run_origin(request))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ManualClock;

    #[test]
    fn a_limit_without_a_stated_wait_pauses_for_a_minute_and_other_errors_not_at_all() {
        let clock = Arc::new(ManualClock::default());
        let pauses = Pauses::new(clock.clone() as Arc<dyn Clock>);
        let (a, b) = (InstallationId::new(1), InstallationId::new(2));
        pauses.note(a, &Error::rate_limited(None, "secondary rate limit"));
        pauses.note(b, &Error::unavailable("502 Bad Gateway"));
        assert_eq!(pauses.remaining(a), Some(UNSTATED_WAIT));
        assert_eq!(pauses.remaining(b), None, "only a rate limit pauses");
        clock.advance(UNSTATED_WAIT);
        assert_eq!(pauses.remaining(a), None);
    }
}
