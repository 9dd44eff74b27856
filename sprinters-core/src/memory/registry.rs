//! A simulated GitHub: just-in-time runners and job statuses.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::SecretString;

use super::{Faults, lock};
use crate::domain::{JobId, JobKey, Repository, RunId, RunnerName};
use crate::events::Conclusion;
use crate::ports::{
    CancelRun, CreateJitRunner, GetJobStatus, GetRunOrigin, JitRunner, JobStatus, ListQueuedJobs,
    QueuedJob, QueuedJobs, RemoteJobStatus, RemoveRunner, RerunJob, RunOrigin, RunnerRegistry,
};
use crate::{Error, Result};

/// A registered runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRunner {
    /// GitHub's id.
    pub id: u64,
    /// Its repository.
    pub repository: Repository,
    /// Its name.
    pub name: RunnerName,
    /// Its labels.
    pub labels: Vec<String>,
}

/// GitHub in memory: runners come and go, jobs have the status a test sets.
/// A JIT runner whose name exists replaces the old one, as the GitHub
/// adapter does after a 409.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    state: Mutex<GitHubState>,
    faults: Faults,
}

#[derive(Debug, Default)]
struct GitHubState {
    next_runner: u64,
    runners: HashMap<u64, SimRunner>,
    // (repository, name) → id: GitHub's runner names are unique per repository.
    by_name: HashMap<(Repository, RunnerName), u64>,
    jobs: HashMap<JobId, (Repository, RunId, JobKey, Vec<String>, JobStatus)>,
    jit_configs: u64,
    reruns: Vec<JobId>,
    /// The jobs whose status was asked, in order.
    statuses_asked: Vec<JobId>,
    cancelled: Vec<RunId>,
    // Runs of public repositories, and where each came from; any other
    // run is of a private repository, from itself.
    public_runs: HashMap<RunId, Option<Repository>>,
    /// The events that started runs, where not `push`.
    run_events: HashMap<RunId, String>,
    origin_lookups: u64,
}

impl GitHubState {
    /// A run's origin: public as set, private otherwise.
    fn origin(&self, run: RunId, repository: &Repository) -> RunOrigin {
        let origin = match self.public_runs.get(&run) {
            Some(head) => RunOrigin::new(false, head.clone()),
            None => RunOrigin::new(true, Some(repository.clone())),
        };
        match self.run_events.get(&run) {
            Some(event) => origin.with_event(event.clone()),
            None => origin,
        }
    }
}

impl MemoryRegistry {
    /// An empty GitHub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queued failures (`create_jit_runner`, `remove_runner`, `job_status`,
    /// `rerun_job`, `cancel_run`, `list_queued_jobs`).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Sets what GitHub reports about a job.
    pub fn set_job(
        &self,
        repository: Repository,
        run_id: RunId,
        job: JobKey,
        labels: Vec<String>,
        status: JobStatus,
    ) {
        lock(&self.state)
            .jobs
            .insert(job.job_id, (repository, run_id, job, labels, status));
    }

    /// The registered runners.
    pub fn runners(&self) -> Vec<SimRunner> {
        lock(&self.state).runners.values().cloned().collect()
    }

    /// The id of the runner named `name` in `repository`, as GitHub
    /// reports it in `workflow_job` events.
    pub fn runner_id(&self, repository: &Repository, name: &RunnerName) -> Option<u64> {
        lock(&self.state)
            .by_name
            .get(&(repository.clone(), name.clone()))
            .copied()
    }

    /// How many JIT configs were generated.
    pub fn jit_configs(&self) -> u64 {
        lock(&self.state).jit_configs
    }

    /// The jobs re-run, in order.
    pub fn reruns(&self) -> Vec<JobId> {
        lock(&self.state).reruns.clone()
    }

    /// The jobs whose status was asked, in the order asked.
    pub fn statuses_asked(&self) -> Vec<JobId> {
        lock(&self.state).statuses_asked.clone()
    }

    /// Makes `run_id` a run of a public repository whose head commit is in
    /// `head` (a fork's, or the repository itself; `None`: a deleted fork).
    pub fn set_public_run(&self, run_id: RunId, head: Option<Repository>) {
        lock(&self.state).public_runs.insert(run_id, head);
    }

    /// Marks run `run_id` as started by `event` (`pull_request_target`).
    pub fn set_run_event(&self, run_id: RunId, event: &str) {
        lock(&self.state)
            .run_events
            .insert(run_id, event.to_owned());
    }

    /// How many times a run's origin was asked for.
    pub fn origin_lookups(&self) -> u64 {
        lock(&self.state).origin_lookups
    }

    /// The runs cancelled, in order.
    pub fn cancelled(&self) -> Vec<RunId> {
        lock(&self.state).cancelled.clone()
    }
}

#[async_trait]
impl RunnerRegistry for MemoryRegistry {
    async fn create_jit_runner(&self, request: CreateJitRunner) -> Result<JitRunner> {
        self.faults.check("create_jit_runner")?;
        let mut s = lock(&self.state);
        let name_key = (request.repository.clone(), request.runner_name.clone());
        if let Some(old) = s.by_name.remove(&name_key) {
            s.runners.remove(&old);
        }
        s.next_runner += 1;
        s.jit_configs += 1;
        let id = s.next_runner;
        s.by_name.insert(name_key, id);
        s.runners.insert(
            id,
            SimRunner {
                id,
                repository: request.repository,
                name: request.runner_name,
                labels: request.labels,
            },
        );
        Ok(JitRunner::new(
            id,
            SecretString::from(format!("SECRET-JIT-CONFIG-{id}")),
        ))
    }

    async fn remove_runner(&self, request: RemoveRunner) -> Result<()> {
        self.faults.check("remove_runner")?;
        let mut s = lock(&self.state);
        // Only through its own repository; not while it runs a job: GitHub
        // answers 422 ("Delete a self-hosted runner from a repository").
        let Some(runner) = s
            .runners
            .get(&request.runner_id)
            .filter(|r| r.repository == request.repository)
        else {
            return Ok(());
        };
        let busy = s.jobs.values().any(|(repo, _, _, _, status)| {
            *repo == runner.repository
                && status.status == RemoteJobStatus::InProgress
                && status.runner_name.as_ref() == Some(&runner.name)
        });
        if busy {
            return Err(Error::conflict(format!(
                "runner {} is busy and cannot be removed yet: it is still running a job",
                runner.name
            )));
        }
        if let Some(r) = s.runners.remove(&request.runner_id) {
            s.by_name.remove(&(r.repository, r.name));
        }
        Ok(())
    }

    async fn job_status(&self, request: GetJobStatus) -> Result<JobStatus> {
        self.faults.check("job_status")?;
        let mut s = lock(&self.state);
        s.statuses_asked.push(request.job_id);
        match s.jobs.get(&request.job_id) {
            Some((repo, _, _, _, status)) if *repo == request.repository => Ok(status.clone()),
            _ => Err(Error::not_found(format!(
                "job {} of {} does not exist",
                request.job_id, request.repository
            ))),
        }
    }

    async fn rerun_job(&self, request: RerunJob) -> Result<()> {
        self.faults.check("rerun_job")?;
        let mut s = lock(&self.state);
        // GitHub refuses to re-run a job while its workflow run is not
        // completed: 403 Forbidden (re-running makes a new attempt of the
        // whole run; cli/cli#9221 shows the API's answer).
        let run = s.jobs.get(&request.job_id).map(|(_, run, ..)| *run);
        let in_progress = run.is_some_and(|run| {
            s.jobs.values().any(|(_, r, _, _, status)| {
                *r == run && status.status != RemoteJobStatus::Completed
            })
        });
        if in_progress {
            return Err(Error::permission_denied(format!(
                "job {} cannot be re-run: its workflow run is not completed",
                request.job_id
            )));
        }
        s.reruns.push(request.job_id);
        Ok(())
    }

    async fn cancel_run(&self, request: CancelRun) -> Result<()> {
        self.faults.check("cancel_run")?;
        let mut s = lock(&self.state);
        s.cancelled.push(request.run_id);
        for (_, run, _, _, status) in s.jobs.values_mut() {
            if *run == request.run_id && status.status != RemoteJobStatus::Completed {
                *status = JobStatus::new(
                    RemoteJobStatus::Completed,
                    Some(Conclusion::Cancelled),
                    None,
                );
            }
        }
        Ok(())
    }

    async fn list_queued_jobs(&self, request: ListQueuedJobs) -> Result<QueuedJobs> {
        self.faults.check("list_queued_jobs")?;
        let s = lock(&self.state);
        let mut jobs: Vec<QueuedJob> = s
            .jobs
            .values()
            .filter(|(repo, ..)| *repo == request.repository)
            .filter(|(.., status)| status.status == RemoteJobStatus::Queued)
            .map(|(repo, run, key, labels, _)| {
                let origin = s.origin(*run, repo);
                QueuedJob::new(*key, *run, labels.clone(), None).with_origin(origin)
            })
            .collect();
        jobs.sort_by_key(|j| j.job);
        Ok(QueuedJobs { jobs })
    }

    async fn run_origin(&self, request: GetRunOrigin) -> Result<RunOrigin> {
        self.faults.check("run_origin")?;
        let mut s = lock(&self.state);
        s.origin_lookups += 1;
        Ok(s.origin(request.run_id, &request.repository))
    }
}
