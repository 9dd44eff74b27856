//! [`CloudLauncher`]: instances in the customer's account.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use super::Credentials;
use crate::Result;
use crate::domain::{
    AccountId, AvailabilityZone, InstanceId, InstanceType, JobKey, Region, Repository, RunId,
    RunnerName,
};
use crate::labels::RunnerSpec;
use crate::time::Timestamp;

/// Spot or on-demand, for one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Market {
    /// Spot capacity.
    Spot,
    /// On-demand capacity.
    OnDemand,
}

impl Market {
    /// `spot` or `on-demand`.
    pub fn as_str(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::OnDemand => "on-demand",
        }
    }
}

/// Launches one runner instance.
#[derive(Clone)]
#[non_exhaustive]
pub struct LaunchRequest {
    /// The customer's account.
    pub account: AccountId,
    /// Credentials for it.
    pub credentials: Credentials,
    /// The control plane's id, tagged on everything it launches.
    pub controller_id: String,
    /// The job the instance is launched for.
    pub job: JobKey,
    /// Its run.
    pub run_id: RunId,
    /// Its repository.
    pub repository: Repository,
    /// The runner's name.
    pub runner_name: RunnerName,
    /// The resolved label.
    pub spec: RunnerSpec,
    /// Spot or on-demand for this launch.
    pub market: Market,
    /// The same token for a retried call: it must not start a second
    /// instance (EC2's client token).
    pub idempotency_token: String,
    /// The runner's JIT config: a secret, only ever put in user data.
    pub jit_config: SecretString,
    /// The watchdog ends the instance after this long, whatever happens.
    pub max_lifetime: Duration,
}

impl LaunchRequest {
    /// A launch request; see the fields for what each means.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        account: AccountId,
        credentials: Credentials,
        controller_id: String,
        job: JobKey,
        run_id: RunId,
        repository: Repository,
        runner_name: RunnerName,
        spec: RunnerSpec,
        market: Market,
        idempotency_token: String,
        jit_config: SecretString,
        max_lifetime: Duration,
    ) -> Self {
        Self {
            account,
            credentials,
            controller_id,
            job,
            run_id,
            repository,
            runner_name,
            spec,
            market,
            idempotency_token,
            jit_config,
            max_lifetime,
        }
    }
}

impl fmt::Debug for LaunchRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchRequest")
            .field("account", &self.account)
            .field("credentials", &self.credentials)
            .field("controller_id", &self.controller_id)
            .field("job", &self.job)
            .field("run_id", &self.run_id)
            .field("repository", &self.repository)
            .field("runner_name", &self.runner_name)
            .field("spec", &self.spec)
            .field("market", &self.market)
            .field("idempotency_token", &self.idempotency_token)
            .field("jit_config", &"[REDACTED]")
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

/// What a launch produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Launched {
    /// The instance.
    pub instance_id: InstanceId,
    /// Its type.
    pub instance_type: InstanceType,
    /// Its region.
    pub region: Region,
    /// The zone it was placed in.
    pub availability_zone: Option<AvailabilityZone>,
    /// Whether it is spot capacity.
    pub spot: bool,
    /// When it was launched.
    pub launched_at: Timestamp,
    /// Its price per hour in millionths of a dollar, when the launcher knows.
    pub hourly_price_micros: Option<u64>,
}

impl Launched {
    /// A launched instance.
    pub fn new(
        instance_id: InstanceId,
        instance_type: InstanceType,
        region: Region,
        availability_zone: Option<AvailabilityZone>,
        spot: bool,
        launched_at: Timestamp,
    ) -> Self {
        Self {
            instance_id,
            instance_type,
            region,
            availability_zone,
            spot,
            launched_at,
            hourly_price_micros: None,
        }
    }
}

/// Ends an instance.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TerminateRequest {
    /// The account.
    pub account: AccountId,
    /// Credentials for it.
    pub credentials: Credentials,
    /// The region.
    pub region: Region,
    /// The instance.
    pub instance_id: InstanceId,
}

impl TerminateRequest {
    /// Terminates `instance_id`.
    pub fn new(
        account: AccountId,
        credentials: Credentials,
        region: Region,
        instance_id: InstanceId,
    ) -> Self {
        Self {
            account,
            credentials,
            region,
            instance_id,
        }
    }
}

/// What terminating did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Terminated {
    /// False when the instance was already gone (still a success).
    pub was_running: bool,
}

impl Terminated {
    /// The outcome.
    pub fn new(was_running: bool) -> Self {
        Self { was_running }
    }
}

/// Lists the instances this control plane owns in one account and region.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListOwned {
    /// The account.
    pub account: AccountId,
    /// Credentials for it.
    pub credentials: Credentials,
    /// The region.
    pub region: Region,
    /// Only instances tagged with this controller id.
    pub controller_id: String,
    /// Only the instances of this job, when given.
    pub job: Option<JobKey>,
}

impl ListOwned {
    /// Every instance of `controller_id` in the account and region that
    /// is not terminated yet.
    pub fn new(
        account: AccountId,
        credentials: Credentials,
        region: Region,
        controller_id: String,
    ) -> Self {
        Self {
            account,
            credentials,
            region,
            controller_id,
            job: None,
        }
    }

    /// Only the instances launched for `job`.
    pub fn for_job(mut self, job: JobKey) -> Self {
        self.job = Some(job);
        self
    }
}

/// Describes one instance.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DescribeInstance {
    /// The account.
    pub account: AccountId,
    /// Credentials for it.
    pub credentials: Credentials,
    /// The region.
    pub region: Region,
    /// The instance.
    pub instance_id: InstanceId,
}

impl DescribeInstance {
    /// Describes `instance_id`.
    pub fn new(
        account: AccountId,
        credentials: Credentials,
        region: Region,
        instance_id: InstanceId,
    ) -> Self {
        Self {
            account,
            credentials,
            region,
            instance_id,
        }
    }
}

/// An instance's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceState {
    /// Booting.
    Pending,
    /// Running.
    Running,
    /// Being terminated.
    ShuttingDown,
    /// Gone.
    Terminated,
    /// Stopping.
    Stopping,
    /// Stopped.
    Stopped,
}

impl InstanceState {
    /// Whether it still costs money and may run a job.
    pub fn is_alive(self) -> bool {
        matches!(self, InstanceState::Pending | InstanceState::Running)
    }
}

/// Why an instance changed state, when EC2 says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateReason {
    /// EC2 reclaimed the spot capacity.
    SpotReclaimed,
    /// The instance shut itself down.
    InstanceInitiatedShutdown,
    /// Someone (we) asked for it.
    UserInitiated,
    /// Something else, as EC2 put it.
    Other(String),
}

/// One instance we own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceInfo {
    /// The instance.
    pub instance_id: InstanceId,
    /// Its state.
    pub state: InstanceState,
    /// The job it was launched for (from its tags).
    pub job: Option<JobKey>,
    /// Its runner (from its tags).
    pub runner_name: Option<RunnerName>,
    /// When it was launched.
    pub launched_at: Option<Timestamp>,
    /// Whether it is spot capacity.
    pub spot: bool,
    /// Why it last changed state.
    pub state_reason: Option<StateReason>,
}

impl InstanceInfo {
    /// An instance.
    pub fn new(instance_id: InstanceId, state: InstanceState) -> Self {
        Self {
            instance_id,
            state,
            job: None,
            runner_name: None,
            launched_at: None,
            spot: false,
            state_reason: None,
        }
    }
}

/// The instances a [`ListOwned`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OwnedInstances {
    /// Every page of them.
    pub instances: Vec<InstanceInfo>,
}

impl OwnedInstances {
    /// These instances.
    pub fn new(instances: Vec<InstanceInfo>) -> Self {
        Self { instances }
    }
}

/// Instances in the customer's account.
///
/// # Implementing
///
/// What the engine relies on: `launch` with the same
/// [`LaunchRequest::idempotency_token`] never starts a second instance (EC2's
/// `ClientToken`), and tags what it starts with the controller id so that
/// `list_owned` finds it after a crash; `terminate` of an instance already
/// gone succeeds; errors say whether to retry (their [`ErrorKind`](crate::ErrorKind):
/// `CapacityUnavailable`, `RateLimited`, `Unavailable`, ...).
///
/// ```
/// use async_trait::async_trait;
/// use sprinters_core::ports::{
///     CloudLauncher, DescribeInstance, InstanceInfo, LaunchRequest, Launched, ListOwned,
///     OwnedInstances, TerminateRequest, Terminated,
/// };
/// use sprinters_core::{Error, Result};
///
/// #[derive(Debug)]
/// struct MyCloud;
///
/// #[async_trait]
/// impl CloudLauncher for MyCloud {
///     async fn launch(&self, request: LaunchRequest) -> Result<Launched> {
///         // Start one instance for `request.spec`, idempotent on the token.
///         Err(Error::unavailable(format!("no capacity for {}", request.job)))
///     }
///     async fn terminate(&self, request: TerminateRequest) -> Result<Terminated> {
///         let _ = request;
///         Ok(Terminated::new(false))
///     }
///     async fn list_owned(&self, request: ListOwned) -> Result<OwnedInstances> {
///         let _ = request;
///         Ok(OwnedInstances::new(Vec::new()))
///     }
///     async fn describe(&self, request: DescribeInstance) -> Result<InstanceInfo> {
///         Err(Error::not_found(format!("{}", request.instance_id)))
///     }
/// }
/// ```
///
/// Its tests run `sprinters_core::testing::cloud_launcher`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CloudLauncher: Send + Sync + fmt::Debug + 'static {
    /// Launches an instance; the same idempotency token never starts two.
    async fn launch(&self, request: LaunchRequest) -> Result<Launched>;
    /// Terminates an instance; one already gone is success.
    async fn terminate(&self, request: TerminateRequest) -> Result<Terminated>;
    /// The instances this control plane owns and that are not terminated
    /// yet, every page of them.
    async fn list_owned(&self, request: ListOwned) -> Result<OwnedInstances>;
    /// One instance; `NotFound` when EC2 does not know it.
    async fn describe(&self, request: DescribeInstance) -> Result<InstanceInfo>;
}
