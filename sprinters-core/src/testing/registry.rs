//! The [`RunnerRegistry`] conformance suite.

use secrecy::ExposeSecret;

use crate::ErrorKind;
use crate::domain::{InstallationId, JobId, JobKey, Repository, RunId, RunnerName};
use crate::ports::{
    CancelRun, CreateJitRunner, GetJobStatus, GetRunOrigin, ListQueuedJobs, RemoteJobStatus,
    RemoveRunner, RerunJob, RunnerRegistry,
};

/// What the registry under test knows.
#[derive(Debug, Clone)]
pub struct RegistryFixture {
    /// The installation.
    pub installation_id: InstallationId,
    /// A repository of it.
    pub repository: Repository,
    /// A job the registry reports as queued in that repository.
    pub queued_job: JobKey,
    /// Its run.
    pub queued_run: RunId,
    /// A job id the registry does not know.
    pub unknown_job: JobId,
}

/// Runs every check.
pub async fn runner_registry(registry: &dyn RunnerRegistry, f: &RegistryFixture) {
    let name = RunnerName::parse("sprinters-conformance-1-1").unwrap();
    let labels = vec![
        "sprinters:aws:ubuntu-latest".to_owned(),
        "pin-conformance".to_owned(),
    ];
    let request = CreateJitRunner::new(
        f.installation_id,
        f.repository.clone(),
        name.clone(),
        labels,
    );
    let runner = registry.create_jit_runner(request.clone()).await.unwrap();
    assert!(
        !runner.encoded_jit_config.expose_secret().is_empty(),
        "a JIT config is returned"
    );
    let debug = format!("{runner:?}");
    assert!(
        !debug.contains(runner.encoded_jit_config.expose_secret()),
        "Debug hides the JIT config: {debug}"
    );
    let again = registry.create_jit_runner(request).await.unwrap();
    assert!(
        again.runner_id > 0,
        "a runner with an existing name is replaced, not refused"
    );

    let remove = |id| RemoveRunner::new(f.installation_id, f.repository.clone(), id);
    registry
        .remove_runner(remove(again.runner_id))
        .await
        .unwrap();
    registry
        .remove_runner(remove(again.runner_id))
        .await
        .unwrap();

    let status = registry
        .job_status(GetJobStatus::new(
            f.installation_id,
            f.repository.clone(),
            f.queued_job.job_id,
        ))
        .await
        .unwrap();
    assert_eq!(status.status, RemoteJobStatus::Queued);
    let err = registry
        .job_status(GetJobStatus::new(
            f.installation_id,
            f.repository.clone(),
            f.unknown_job,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        *err.kind(),
        ErrorKind::NotFound,
        "an unknown job is NotFound"
    );

    let queued = registry
        .list_queued_jobs(ListQueuedJobs::new(f.installation_id, f.repository.clone()))
        .await
        .unwrap();
    assert!(
        queued
            .jobs
            .iter()
            .any(|j| j.job.job_id == f.queued_job.job_id),
        "the queued job is listed"
    );
    for listed in queued.jobs.iter().filter_map(|j| j.origin.as_ref()) {
        assert!(
            !listed.from_fork(&f.repository),
            "a run of the repository itself is no fork"
        );
    }
    let origin = registry
        .run_origin(GetRunOrigin::new(
            f.installation_id,
            f.repository.clone(),
            f.queued_run,
        ))
        .await
        .unwrap();
    assert!(
        origin.repository_private,
        "the fixture's repository is private"
    );
    assert!(!origin.from_fork(&f.repository));

    // GitHub re-runs a job only once its workflow run is completed.
    let rerun = || {
        registry.rerun_job(RerunJob::new(
            f.installation_id,
            f.repository.clone(),
            f.queued_job.job_id,
        ))
    };
    let refused = rerun().await.expect_err("its run is in progress");
    assert!(!refused.is_retryable(), "{refused}");
    registry
        .cancel_run(CancelRun::new(
            f.installation_id,
            f.repository.clone(),
            f.queued_run,
        ))
        .await
        .unwrap();
    rerun().await.unwrap();
}
