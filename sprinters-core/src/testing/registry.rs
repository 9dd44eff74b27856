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

/// Runs every check of [`checks::runner_registry`](crate::testing::checks::runner_registry),
/// in this order (the last cancels the fixture's run).
pub async fn runner_registry(registry: &dyn RunnerRegistry, f: &RegistryFixture) {
    jit_runners_are_created_replaced_and_removed(registry, f).await;
    job_status_is_read_and_unknown_jobs_are_not_found(registry, f).await;
    queued_jobs_and_run_origins_are_read(registry, f).await;
    a_job_is_rerun_only_once_its_run_is_completed(registry, f).await;
}

/// A JIT runner is registered (its config hidden from `Debug`), registered
/// again under the same name (replaced, not refused), and removed twice
/// (removing one already gone succeeds).
///
/// Needs: `f.installation_id` and `f.repository`.
pub async fn jit_runners_are_created_replaced_and_removed(
    registry: &dyn RunnerRegistry,
    f: &RegistryFixture,
) {
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
}

/// The fixture's queued job is reported queued; an unknown job is
/// `NotFound`.
///
/// Needs: `f.queued_job` queued on the registry, `f.unknown_job` unknown.
pub async fn job_status_is_read_and_unknown_jobs_are_not_found(
    registry: &dyn RunnerRegistry,
    f: &RegistryFixture,
) {
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
}

/// The repository's queued jobs include the fixture's, none of them from a
/// fork, and the run's origin says the repository is private and no fork.
///
/// Needs: `f.queued_job` queued in `f.queued_run` of the private
/// `f.repository`.
pub async fn queued_jobs_and_run_origins_are_read(
    registry: &dyn RunnerRegistry,
    f: &RegistryFixture,
) {
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
}

/// GitHub re-runs a job only once its workflow run is completed: refused
/// (not retryable) while it runs, accepted once the run is cancelled.
///
/// Needs: `f.queued_job` in the run `f.queued_run`, still in progress; the
/// check cancels it.
pub async fn a_job_is_rerun_only_once_its_run_is_completed(
    registry: &dyn RunnerRegistry,
    f: &RegistryFixture,
) {
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
