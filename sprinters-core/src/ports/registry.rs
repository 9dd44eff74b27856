//! [`RunnerRegistry`]: the GitHub side of runners and jobs.

use std::fmt;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::Result;
use crate::domain::{InstallationId, JobId, JobKey, Repository, RunId, RunnerName};
use crate::events::Conclusion;

/// Registers a just-in-time runner that will take exactly one job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateJitRunner {
    /// The installation whose token is used.
    pub installation_id: InstallationId,
    /// The repository the runner serves.
    pub repository: Repository,
    /// Its name.
    pub runner_name: RunnerName,
    /// All of the job's labels, pinning labels included.
    pub labels: Vec<String>,
    /// The runner group (1 is the default group).
    pub runner_group_id: u64,
}

impl CreateJitRunner {
    /// A runner in the default group.
    pub fn new(
        installation_id: InstallationId,
        repository: Repository,
        runner_name: RunnerName,
        labels: Vec<String>,
    ) -> Self {
        Self {
            installation_id,
            repository,
            runner_name,
            labels,
            runner_group_id: 1,
        }
    }
}

/// A registered just-in-time runner.
#[derive(Clone)]
#[non_exhaustive]
pub struct JitRunner {
    /// GitHub's id of the runner.
    pub runner_id: u64,
    /// The encoded JIT configuration the runner starts with: a secret.
    pub encoded_jit_config: SecretString,
}

impl JitRunner {
    /// A runner and its config.
    pub fn new(runner_id: u64, encoded_jit_config: SecretString) -> Self {
        Self {
            runner_id,
            encoded_jit_config,
        }
    }
}

impl fmt::Debug for JitRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JitRunner")
            .field("runner_id", &self.runner_id)
            .field("encoded_jit_config", &"[REDACTED]")
            .finish()
    }
}

/// Removes a runner; one already gone is success.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoveRunner {
    /// The installation.
    pub installation_id: InstallationId,
    /// The repository it is registered on.
    pub repository: Repository,
    /// The runner.
    pub runner_id: u64,
}

impl RemoveRunner {
    /// Removes `runner_id` from `repository`.
    pub fn new(installation_id: InstallationId, repository: Repository, runner_id: u64) -> Self {
        Self {
            installation_id,
            repository,
            runner_id,
        }
    }
}

/// Looks a job up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetJobStatus {
    /// The installation.
    pub installation_id: InstallationId,
    /// The repository.
    pub repository: Repository,
    /// The job.
    pub job_id: JobId,
}

impl GetJobStatus {
    /// The status of `job_id`.
    pub fn new(installation_id: InstallationId, repository: Repository, job_id: JobId) -> Self {
        Self {
            installation_id,
            repository,
            job_id,
        }
    }
}

/// A job's status on GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemoteJobStatus {
    /// Waiting for a runner.
    Queued,
    /// Waiting for an approval.
    Waiting,
    /// Running.
    InProgress,
    /// Done.
    Completed,
}

/// What GitHub says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStatus {
    /// Its status.
    pub status: RemoteJobStatus,
    /// Its conclusion, once completed.
    pub conclusion: Option<Conclusion>,
    /// The runner that took it.
    pub runner_name: Option<RunnerName>,
    /// That runner's GitHub id: a runner is ours only with the id recorded
    /// when its JIT config was made.
    pub runner_id: Option<u64>,
}

impl JobStatus {
    /// A status.
    pub fn new(
        status: RemoteJobStatus,
        conclusion: Option<Conclusion>,
        runner_name: Option<RunnerName>,
    ) -> Self {
        Self {
            status,
            conclusion,
            runner_name,
            runner_id: None,
        }
    }

    /// With the runner's GitHub id.
    pub fn with_runner_id(mut self, runner_id: Option<u64>) -> Self {
        self.runner_id = runner_id;
        self
    }
}

/// Re-runs one job (GitHub creates a new run attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RerunJob {
    /// The installation.
    pub installation_id: InstallationId,
    /// The repository.
    pub repository: Repository,
    /// The job.
    pub job_id: JobId,
}

impl RerunJob {
    /// Re-runs `job_id`.
    pub fn new(installation_id: InstallationId, repository: Repository, job_id: JobId) -> Self {
        Self {
            installation_id,
            repository,
            job_id,
        }
    }
}

/// Cancels a workflow run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CancelRun {
    /// The installation.
    pub installation_id: InstallationId,
    /// The repository.
    pub repository: Repository,
    /// The run.
    pub run_id: RunId,
}

impl CancelRun {
    /// Cancels `run_id`.
    pub fn new(installation_id: InstallationId, repository: Repository, run_id: RunId) -> Self {
        Self {
            installation_id,
            repository,
            run_id,
        }
    }
}

/// Lists a repository's queued jobs, to recover from lost webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQueuedJobs {
    /// The installation.
    pub installation_id: InstallationId,
    /// The repository.
    pub repository: Repository,
}

impl ListQueuedJobs {
    /// The queued jobs of `repository`.
    pub fn new(installation_id: InstallationId, repository: Repository) -> Self {
        Self {
            installation_id,
            repository,
        }
    }
}

/// A job GitHub reports as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuedJob {
    /// The job and attempt.
    pub job: JobKey,
    /// Its run.
    pub run_id: RunId,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its name.
    pub name: Option<String>,
    /// Where its run came from, when the listing said.
    pub origin: Option<RunOrigin>,
}

impl QueuedJob {
    /// A queued job.
    pub fn new(job: JobKey, run_id: RunId, labels: Vec<String>, name: Option<String>) -> Self {
        Self {
            job,
            run_id,
            labels,
            name,
            origin: None,
        }
    }

    /// With where its run came from.
    pub fn with_origin(mut self, origin: RunOrigin) -> Self {
        self.origin = Some(origin);
        self
    }
}

/// Asks where a run came from (`GET /repos/{owner}/{repo}/actions/runs/{run_id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetRunOrigin {
    /// The installation.
    pub installation_id: InstallationId,
    /// The repository.
    pub repository: Repository,
    /// The run.
    pub run_id: RunId,
}

impl GetRunOrigin {
    /// Where `run_id` of `repository` came from.
    pub fn new(installation_id: InstallationId, repository: Repository, run_id: RunId) -> Self {
        Self {
            installation_id,
            repository,
            run_id,
        }
    }
}

/// Where a run came from: its repository's visibility and the repository
/// its head commit is in (a fork's, for a pull request from a fork).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunOrigin {
    /// Whether the run's repository is private (internal ones are).
    pub repository_private: bool,
    /// The head repository; `None` when GitHub reports none (a fork
    /// deleted since), which counts as a fork.
    pub head_repository: Option<Repository>,
    /// The event that started it (`push`, `pull_request`, ...), when
    /// reported. A `pull_request_target` run's head is the repository
    /// itself whoever opened the pull request.
    pub event: Option<String>,
}

impl RunOrigin {
    /// A run of a repository, from `head_repository`.
    pub fn new(repository_private: bool, head_repository: Option<Repository>) -> Self {
        Self {
            repository_private,
            head_repository,
            event: None,
        }
    }

    /// This origin, started by `event`.
    pub fn with_event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// Whether `pull_request_target` started it: its head names no fork,
    /// though a fork's pull request may have.
    pub fn by_pull_request_target(&self) -> bool {
        self.event.as_deref() == Some("pull_request_target")
    }

    /// Whether the run came from somewhere other than `repository`.
    pub fn from_fork(&self, repository: &Repository) -> bool {
        !self.head_repository.as_ref().is_some_and(|head| {
            head.to_string()
                .eq_ignore_ascii_case(&repository.to_string())
        })
    }
}

/// The queued jobs of a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuedJobs {
    /// The jobs, in GitHub's order.
    pub jobs: Vec<QueuedJob>,
}

impl QueuedJobs {
    /// These jobs.
    pub fn new(jobs: Vec<QueuedJob>) -> Self {
        Self { jobs }
    }
}

/// Runners and jobs on GitHub.
///
/// # Implementing
///
/// Every call names the installation and repository it acts in; an
/// adapter acts with that installation's token only, so one owner's job
/// never reaches another's runners. `remove_runner` of a runner already
/// gone succeeds; a refusal the caller should not retry is
/// `PermissionDenied` or `Config`, a limit `RateLimited`.
///
/// ```
/// use async_trait::async_trait;
/// use sprinters_core::ports::{
///     CancelRun, CreateJitRunner, GetJobStatus, GetRunOrigin, JitRunner, JobStatus,
///     ListQueuedJobs, QueuedJobs, RemoveRunner, RerunJob, RunOrigin, RunnerRegistry,
/// };
/// use sprinters_core::{Error, Result};
///
/// #[derive(Debug)]
/// struct MyForge;
///
/// #[async_trait]
/// impl RunnerRegistry for MyForge {
///     async fn create_jit_runner(&self, request: CreateJitRunner) -> Result<JitRunner> {
///         Err(Error::unavailable(format!("cannot register {}", request.runner_name)))
///     }
///     async fn remove_runner(&self, _: RemoveRunner) -> Result<()> {
///         Ok(())
///     }
///     async fn job_status(&self, request: GetJobStatus) -> Result<JobStatus> {
///         Err(Error::not_found(format!("job {}", request.job_id)))
///     }
///     async fn rerun_job(&self, _: RerunJob) -> Result<()> {
///         Ok(())
///     }
///     async fn cancel_run(&self, _: CancelRun) -> Result<()> {
///         Ok(())
///     }
///     async fn list_queued_jobs(&self, _: ListQueuedJobs) -> Result<QueuedJobs> {
///         Ok(QueuedJobs::new(Vec::new()))
///     }
///     async fn run_origin(&self, _: GetRunOrigin) -> Result<RunOrigin> {
///         Ok(RunOrigin::new(true, None))
///     }
/// }
/// ```
///
/// Its tests run `sprinters_core::testing::runner_registry`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RunnerRegistry: Send + Sync + fmt::Debug + 'static {
    /// Registers a just-in-time runner and returns its encoded config.
    async fn create_jit_runner(&self, request: CreateJitRunner) -> Result<JitRunner>;
    /// Removes a runner; one already gone is success.
    async fn remove_runner(&self, request: RemoveRunner) -> Result<()>;
    /// A job's status, conclusion and runner.
    async fn job_status(&self, request: GetJobStatus) -> Result<JobStatus>;
    /// Re-runs a job.
    async fn rerun_job(&self, request: RerunJob) -> Result<()>;
    /// Cancels a run.
    async fn cancel_run(&self, request: CancelRun) -> Result<()>;
    /// The queued jobs of a repository.
    async fn list_queued_jobs(&self, request: ListQueuedJobs) -> Result<QueuedJobs>;
    /// Where a run came from (for `public_repositories = "no-forks"`).
    async fn run_origin(&self, request: GetRunOrigin) -> Result<RunOrigin>;
}
