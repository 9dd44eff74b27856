//! [`GithubRegistry`]: the [`RunnerRegistry`] on GitHub's REST API.

use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use sprinters_core::domain::{JobId, JobKey, Repository, RunAttempt, RunId, RunnerName};
use sprinters_core::events::Conclusion;
use sprinters_core::ports::{
    CancelRun, CreateJitRunner, GetJobStatus, GetRunOrigin, JitRunner, JobStatus, ListQueuedJobs,
    QueuedJob, QueuedJobs, RemoteJobStatus, RemoveRunner, RerunJob, RunOrigin, RunnerRegistry,
};
use sprinters_core::{Error, ErrorKind, Result};

use crate::app::GithubApp;

const ADMINISTRATION_WRITE: &str = "administration: write";
const ACTIONS_READ: &str = "actions: read";
const ACTIONS_WRITE: &str = "actions: write";

/// Just-in-time runners, job status, re-runs and cancels through a GitHub
/// App's installations.
#[derive(Debug, Clone)]
pub struct GithubRegistry {
    app: Arc<GithubApp>,
}

impl GithubRegistry {
    /// The registry of `app`.
    pub fn new(app: Arc<GithubApp>) -> Self {
        Self { app }
    }
}

#[derive(Deserialize)]
struct JitConfig {
    runner: RunnerId,
    encoded_jit_config: String,
}

#[derive(Deserialize)]
struct RunnerId {
    id: u64,
}

#[derive(Deserialize)]
struct Runners {
    #[serde(default)]
    runners: Vec<NamedRunner>,
}

#[derive(Deserialize)]
struct NamedRunner {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct Job {
    id: u64,
    run_id: u64,
    #[serde(default = "first_attempt")]
    run_attempt: u32,
    status: String,
    conclusion: Option<String>,
    runner_name: Option<String>,
    runner_id: Option<u64>,
    #[serde(default)]
    labels: Vec<String>,
    name: Option<String>,
}

fn first_attempt() -> u32 {
    1
}

#[derive(Deserialize)]
struct Jobs {
    #[serde(default)]
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
struct Runs {
    #[serde(default)]
    workflow_runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    id: u64,
    #[serde(default)]
    repository: Option<RunRepository>,
    #[serde(default)]
    head_repository: Option<RunRepository>,
    #[serde(default)]
    event: Option<String>,
}

#[derive(Deserialize)]
struct RunRepository {
    full_name: String,
    #[serde(default)]
    private: Option<bool>,
}

impl Run {
    /// Where the run came from; a repository whose visibility is not
    /// reported counts as public, and a head repository GitHub does not
    /// name (a fork deleted since) as a fork.
    fn origin(&self) -> RunOrigin {
        let private = self
            .repository
            .as_ref()
            .and_then(|r| r.private)
            .unwrap_or(false);
        let head = self
            .head_repository
            .as_ref()
            .and_then(|r| Repository::parse(&r.full_name).ok());
        let origin = RunOrigin::new(private, head);
        match &self.event {
            Some(event) => origin.with_event(event.clone()),
            None => origin,
        }
    }
}

fn repo_path(repository: &Repository) -> String {
    format!("/repos/{}/{}", repository.owner(), repository.name())
}

fn remote_status(status: &str) -> RemoteJobStatus {
    match status {
        "in_progress" => RemoteJobStatus::InProgress,
        "completed" => RemoteJobStatus::Completed,
        "waiting" => RemoteJobStatus::Waiting,
        // queued, requested, pending: no runner yet.
        _ => RemoteJobStatus::Queued,
    }
}

impl GithubRegistry {
    async fn generate(&self, request: &CreateJitRunner) -> Result<JitRunner> {
        let body = json!({
            "name": request.runner_name.as_str(),
            "runner_group_id": request.runner_group_id,
            "labels": request.labels,
            "work_folder": "_work",
        });
        let reply = self
            .app
            .as_installation(
                request.installation_id,
                Method::POST,
                &format!(
                    "{}/actions/runners/generate-jitconfig",
                    repo_path(&request.repository)
                ),
                Some(&body),
                ADMINISTRATION_WRITE,
            )
            .await?;
        let config: JitConfig = reply.json("generate-jitconfig")?;
        Ok(JitRunner::new(
            config.runner.id,
            SecretString::from(config.encoded_jit_config),
        ))
    }

    /// The id of the runner named `name` on the repository, if any.
    async fn find_runner(&self, request: &CreateJitRunner) -> Result<Option<u64>> {
        let reply = self
            .app
            .as_installation(
                request.installation_id,
                Method::GET,
                &format!(
                    "{}/actions/runners?name={}&per_page=100",
                    repo_path(&request.repository),
                    request.runner_name
                ),
                None,
                ADMINISTRATION_WRITE,
            )
            .await?;
        let runners: Runners = reply.json("a runner listing")?;
        Ok(runners
            .runners
            .into_iter()
            .find(|r| r.name == request.runner_name.as_str())
            .map(|r| r.id))
    }
}

#[async_trait]
impl RunnerRegistry for GithubRegistry {
    async fn create_jit_runner(&self, request: CreateJitRunner) -> Result<JitRunner> {
        match self.generate(&request).await {
            // A runner of this name exists: registered by an earlier try of
            // this very launch (the name encodes job, attempt and launch)
            // whose config never reached an instance. Replace it.
            Err(e) if *e.kind() == ErrorKind::Conflict => {
                if let Some(id) = self.find_runner(&request).await? {
                    self.remove_runner(RemoveRunner::new(
                        request.installation_id,
                        request.repository.clone(),
                        id,
                    ))
                    .await?;
                }
                self.generate(&request).await
            }
            other => other,
        }
    }

    async fn remove_runner(&self, request: RemoveRunner) -> Result<()> {
        let path = format!(
            "{}/actions/runners/{}",
            repo_path(&request.repository),
            request.runner_id
        );
        match self
            .app
            .as_installation(
                request.installation_id,
                Method::DELETE,
                &path,
                None,
                ADMINISTRATION_WRITE,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if *e.kind() == ErrorKind::NotFound => Ok(()),
            // 422: the runner is still running a job; try again later.
            Err(e) if *e.kind() == ErrorKind::Config => Err(Error::conflict(format!(
                "runner {} is busy and cannot be removed yet: {}",
                request.runner_id,
                e.message()
            ))),
            Err(e) => Err(e),
        }
    }

    async fn job_status(&self, request: GetJobStatus) -> Result<JobStatus> {
        let reply = self
            .app
            .as_installation(
                request.installation_id,
                Method::GET,
                &format!(
                    "{}/actions/jobs/{}",
                    repo_path(&request.repository),
                    request.job_id
                ),
                None,
                ACTIONS_READ,
            )
            .await?;
        let job: Job = reply.json("a job")?;
        Ok(JobStatus::new(
            remote_status(&job.status),
            job.conclusion.as_deref().and_then(Conclusion::parse),
            job.runner_name
                .as_deref()
                .and_then(|n| RunnerName::parse(n).ok()),
        )
        .with_runner_id(job.runner_id.filter(|id| *id != 0)))
    }

    async fn rerun_job(&self, request: RerunJob) -> Result<()> {
        self.app
            .as_installation(
                request.installation_id,
                Method::POST,
                &format!(
                    "{}/actions/jobs/{}/rerun",
                    repo_path(&request.repository),
                    request.job_id
                ),
                Some(&json!({})),
                ACTIONS_WRITE,
            )
            .await?;
        Ok(())
    }

    async fn cancel_run(&self, request: CancelRun) -> Result<()> {
        let result = self
            .app
            .as_installation(
                request.installation_id,
                Method::POST,
                &format!(
                    "{}/actions/runs/{}/cancel",
                    repo_path(&request.repository),
                    request.run_id
                ),
                None,
                ACTIONS_WRITE,
            )
            .await;
        match result {
            // 409: the run already finished; there is nothing to cancel.
            Err(e) if *e.kind() == ErrorKind::Conflict => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn list_queued_jobs(&self, request: ListQueuedJobs) -> Result<QueuedJobs> {
        let repo = repo_path(&request.repository);
        let mut jobs = Vec::new();
        // A run stays `in_progress` while later jobs of it wait for runners.
        for status in ["queued", "in_progress"] {
            let reply = self
                .app
                .as_installation(
                    request.installation_id,
                    Method::GET,
                    &format!("{repo}/actions/runs?status={status}&per_page=100"),
                    None,
                    ACTIONS_READ,
                )
                .await?;
            let runs: Runs = reply.json("a run listing")?;
            for run in runs.workflow_runs {
                let origin = run.origin();
                let reply = self
                    .app
                    .as_installation(
                        request.installation_id,
                        Method::GET,
                        &format!(
                            "{repo}/actions/runs/{}/jobs?filter=latest&per_page=100",
                            run.id
                        ),
                        None,
                        ACTIONS_READ,
                    )
                    .await?;
                let listed: Jobs = reply.json("a job listing")?;
                jobs.extend(
                    listed
                        .jobs
                        .into_iter()
                        .filter(|j| remote_status(&j.status) == RemoteJobStatus::Queued)
                        .filter_map(|j| {
                            let attempt = RunAttempt::new(j.run_attempt).ok()?;
                            Some(
                                QueuedJob::new(
                                    JobKey::new(JobId::new(j.id), attempt),
                                    RunId::new(j.run_id),
                                    j.labels,
                                    j.name,
                                )
                                .with_origin(origin.clone()),
                            )
                        }),
                );
            }
        }
        Ok(QueuedJobs::new(jobs))
    }

    async fn run_origin(&self, request: GetRunOrigin) -> Result<RunOrigin> {
        let reply = self
            .app
            .as_installation(
                request.installation_id,
                Method::GET,
                &format!(
                    "{}/actions/runs/{}",
                    repo_path(&request.repository),
                    request.run_id
                ),
                None,
                ACTIONS_READ,
            )
            .await?;
        let run: Run = reply.json("a workflow run")?;
        Ok(run.origin())
    }
}
