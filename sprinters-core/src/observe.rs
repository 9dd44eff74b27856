//! [`EngineObserver`]: what the engine did, told to whoever counts it
//! (Prometheus, OpenTelemetry, an audit log) without the core knowing any
//! metrics system.
//!
//! Give one to [`EngineBuilder::observer`](crate::engine::EngineBuilder::observer):
//! the engine then tells it when it calls `RunInstances` for a job (with
//! how long the job had waited since its webhook), when it ends an
//! instance (and why), and the outcome of every call it makes to the
//! GitHub, AWS-credentials and EC2 ports. Calls are inline on the launch
//! path: an observer must be cheap and must not block.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::JobKey;
use crate::job::EndReason;
use crate::ports::{
    CancelRun, CloudLauncher, CreateJitRunner, CredentialProvider, Credentials, CredentialsRequest,
    DescribeInstance, DynCloudLauncher, DynCredentialProvider, DynRunnerRegistry, GetJobStatus,
    GetRunOrigin, InstanceInfo, JitRunner, JobStatus, LaunchRequest, Launched, ListOwned,
    ListQueuedJobs, Market, OwnedInstances, QueuedJobs, RemoveRunner, RerunJob, RunOrigin,
    RunnerRegistry, TerminateRequest, Terminated,
};
use crate::{Error, Result};

/// Receives what the engine did. Every method has an empty default, so an
/// observer implements only what it counts.
pub trait EngineObserver: Send + Sync + fmt::Debug + 'static {
    /// The engine is about to ask the launcher for an instance.
    fn launching(&self, event: &Launching) {
        let _ = event;
    }
    /// The engine ended an instance.
    fn instance_ended(&self, event: &InstanceEnded) {
        let _ = event;
    }
    /// A call to a port returned.
    fn port_call(&self, call: &PortCall<'_>) {
        let _ = call;
    }
    /// The engine removed an owner (its App was uninstalled): nothing
    /// launches for it any more and its instances were ended. A platform
    /// shreds here what it keeps of the owner's accounts.
    fn owner_removed(&self, event: &OwnerRemoved) {
        let _ = event;
    }
    /// This replica wrote a job into another state (`from` is `None` for
    /// a job it recorded first). Summed over replicas, the changes into a
    /// state count every job that reached it.
    fn job_state_changed(&self, from: Option<crate::job::JobState>, to: crate::job::JobState) {
        let _ = (from, to);
    }
    /// A reconciliation pass read the active jobs (on the leading replica
    /// only): how many are in each state, without a read of its own.
    fn active_jobs(&self, by_state: &std::collections::BTreeMap<crate::job::JobState, u64>) {
        let _ = by_state;
    }
}

/// An owner removed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OwnerRemoved {
    /// Its GitHub account id.
    pub owner_id: crate::domain::OwnerId,
    /// The accounts it had connected or configured (verified ones only).
    pub accounts: Vec<crate::domain::AccountId>,
}

/// A launch about to be made.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Launching {
    /// The job.
    pub job: JobKey,
    /// 1 for the job's first launch, 2 for a replacement, ...
    pub launch_number: u32,
    /// Spot or on-demand.
    pub market: Market,
    /// From the job's `queued` delivery being taken in to this call: the
    /// control plane's share of a job's wait.
    pub since_queued: Duration,
}

/// An instance ended.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct InstanceEnded {
    /// Why.
    pub reason: EndReason,
    /// False when it was already gone.
    pub was_running: bool,
}

/// The external APIs behind the ports the engine calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Api {
    /// The [`RunnerRegistry`] (GitHub).
    Registry,
    /// The [`CredentialProvider`] (STS,
    /// the vault).
    Credentials,
    /// The [`CloudLauncher`] (EC2).
    Launcher,
}

impl Api {
    /// `registry`, `credentials` or `launcher`, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Registry => "registry",
            Api::Credentials => "credentials",
            Api::Launcher => "launcher",
        }
    }
}

/// One call to a port.
#[derive(Debug)]
#[non_exhaustive]
pub struct PortCall<'a> {
    /// Which port.
    pub api: Api,
    /// The method, such as `launch` or `create_jit_runner`.
    pub operation: &'static str,
    /// How long it took.
    pub elapsed: Duration,
    /// The error, if it failed.
    pub error: Option<&'a Error>,
}

/// The observer of an engine built without one.
#[derive(Debug, Default)]
pub struct NoObserver;

impl EngineObserver for NoObserver {}

/// Several observers, each told everything in turn (metrics and an audit
/// log, say).
#[derive(Debug, Default, Clone)]
pub struct Observers(pub Vec<std::sync::Arc<dyn EngineObserver>>);

impl EngineObserver for Observers {
    fn launching(&self, event: &Launching) {
        self.0.iter().for_each(|o| o.launching(event));
    }
    fn instance_ended(&self, event: &InstanceEnded) {
        self.0.iter().for_each(|o| o.instance_ended(event));
    }
    fn port_call(&self, call: &PortCall<'_>) {
        self.0.iter().for_each(|o| o.port_call(call));
    }
    fn owner_removed(&self, event: &OwnerRemoved) {
        self.0.iter().for_each(|o| o.owner_removed(event));
    }
    fn job_state_changed(&self, from: Option<crate::job::JobState>, to: crate::job::JobState) {
        self.0.iter().for_each(|o| o.job_state_changed(from, to));
    }
    fn active_jobs(&self, by_state: &std::collections::BTreeMap<crate::job::JobState, u64>) {
        self.0.iter().for_each(|o| o.active_jobs(by_state));
    }
}

/// The ports of an engine, each wrapped so that its calls reach `observer`.
pub(crate) fn observe_ports(
    observer: &std::sync::Arc<dyn EngineObserver>,
    registry: DynRunnerRegistry,
    credentials: DynCredentialProvider,
    launcher: DynCloudLauncher,
) -> (DynRunnerRegistry, DynCredentialProvider, DynCloudLauncher) {
    use std::sync::Arc;
    let registry = Observed {
        inner: registry,
        observer: observer.clone(),
    };
    let credentials = Observed {
        inner: credentials,
        observer: observer.clone(),
    };
    let launcher = Observed {
        inner: launcher,
        observer: observer.clone(),
    };
    (
        Arc::new(registry),
        Arc::new(credentials),
        Arc::new(launcher),
    )
}

/// A port whose calls are timed and told to an observer.
#[derive(Debug)]
struct Observed<P> {
    inner: P,
    observer: std::sync::Arc<dyn EngineObserver>,
}

impl<P> Observed<P> {
    async fn call<T>(
        &self,
        api: Api,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let result = call.await;
        self.observer.port_call(&PortCall {
            api,
            operation,
            elapsed: started.elapsed(),
            error: result.as_ref().err(),
        });
        result
    }
}

#[async_trait]
impl RunnerRegistry for Observed<DynRunnerRegistry> {
    async fn create_jit_runner(&self, request: CreateJitRunner) -> Result<JitRunner> {
        let call = self.inner.create_jit_runner(request);
        self.call(Api::Registry, "create_jit_runner", call).await
    }
    async fn remove_runner(&self, request: RemoveRunner) -> Result<()> {
        let call = self.inner.remove_runner(request);
        self.call(Api::Registry, "remove_runner", call).await
    }
    async fn job_status(&self, request: GetJobStatus) -> Result<JobStatus> {
        let call = self.inner.job_status(request);
        self.call(Api::Registry, "job_status", call).await
    }
    async fn rerun_job(&self, request: RerunJob) -> Result<()> {
        let call = self.inner.rerun_job(request);
        self.call(Api::Registry, "rerun_job", call).await
    }
    async fn cancel_run(&self, request: CancelRun) -> Result<()> {
        let call = self.inner.cancel_run(request);
        self.call(Api::Registry, "cancel_run", call).await
    }
    async fn list_queued_jobs(&self, request: ListQueuedJobs) -> Result<QueuedJobs> {
        let call = self.inner.list_queued_jobs(request);
        self.call(Api::Registry, "list_queued_jobs", call).await
    }
    async fn run_origin(&self, request: GetRunOrigin) -> Result<RunOrigin> {
        let call = self.inner.run_origin(request);
        self.call(Api::Registry, "run_origin", call).await
    }
}

#[async_trait]
impl CredentialProvider for Observed<DynCredentialProvider> {
    async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials> {
        let call = self.inner.credentials(request);
        self.call(Api::Credentials, "credentials", call).await
    }
}

#[async_trait]
impl CloudLauncher for Observed<DynCloudLauncher> {
    async fn launch(&self, request: LaunchRequest) -> Result<Launched> {
        let call = self.inner.launch(request);
        self.call(Api::Launcher, "launch", call).await
    }
    async fn terminate(&self, request: TerminateRequest) -> Result<Terminated> {
        let call = self.inner.terminate(request);
        self.call(Api::Launcher, "terminate", call).await
    }
    async fn list_owned(&self, request: ListOwned) -> Result<OwnedInstances> {
        let call = self.inner.list_owned(request);
        self.call(Api::Launcher, "list_owned", call).await
    }
    async fn describe(&self, request: DescribeInstance) -> Result<InstanceInfo> {
        let call = self.inner.describe(request);
        self.call(Api::Launcher, "describe", call).await
    }
}
