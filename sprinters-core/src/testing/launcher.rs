//! The [`CloudLauncher`] conformance suite.

use std::time::Duration;

use secrecy::SecretString;

use crate::ErrorKind;
use crate::domain::{
    AccountId, InstanceId, JobId, JobKey, Repository, RunAttempt, RunId, RunnerName,
};
use crate::labels::RunnerSpec;
use crate::ports::{
    CloudLauncher, Credentials, DescribeInstance, InstanceState, LaunchRequest, ListOwned, Market,
    TerminateRequest,
};

/// Where the suite launches.
#[derive(Debug, Clone)]
pub struct LauncherFixture {
    /// The account.
    pub account: AccountId,
    /// Credentials for it.
    pub credentials: Credentials,
    /// The controller id to tag with (unique per run keeps runs apart).
    pub controller_id: String,
    /// What to launch (its region is where the suite looks).
    pub spec: RunnerSpec,
}

fn request(f: &LauncherFixture, job: JobKey, token: &str) -> LaunchRequest {
    LaunchRequest::new(
        f.account.clone(),
        f.credentials.clone(),
        f.controller_id.clone(),
        job,
        RunId::new(4242),
        Repository::parse("conformance/launcher").unwrap(),
        RunnerName::for_launch(job, 1),
        f.spec.clone(),
        Market::OnDemand,
        token.to_owned(),
        // JIT configs are base64, and launchers may insist.
        SecretString::from("Y29uZm9ybWFuY2Utaml0LWNvbmZpZw==".to_owned()),
        Duration::from_secs(3600),
    )
}

/// Runs every check of [`checks::cloud_launcher`](crate::testing::checks::cloud_launcher).
/// Each launches (and terminates) its own instances, for jobs 777,001 to
/// 777,004 under the fixture's controller id.
pub async fn cloud_launcher(launcher: &dyn CloudLauncher, f: &LauncherFixture) {
    a_launch_is_idempotent_on_its_token(launcher, f).await;
    owned_instances_are_listed_by_controller_and_job(launcher, f).await;
    terminate_is_idempotent_and_describe_follows(launcher, f).await;
    unknown_instances_are_not_found_and_terminate_succeeds(launcher, f).await;
}

fn job(id: u64) -> JobKey {
    JobKey::new(JobId::new(id), RunAttempt::FIRST)
}

fn token(f: &LauncherFixture, job: JobKey) -> String {
    format!("conformance-{}-{}-1", f.controller_id, job.job_id)
}

fn list(f: &LauncherFixture, controller_id: String, job: Option<JobKey>) -> ListOwned {
    let mut q = ListOwned::new(
        f.account.clone(),
        f.credentials.clone(),
        f.spec.region.clone(),
        controller_id,
    );
    q.job = job;
    q
}

fn describe(f: &LauncherFixture, id: InstanceId) -> DescribeInstance {
    DescribeInstance::new(
        f.account.clone(),
        f.credentials.clone(),
        f.spec.region.clone(),
        id,
    )
}

fn terminate(f: &LauncherFixture, id: InstanceId) -> TerminateRequest {
    TerminateRequest::new(
        f.account.clone(),
        f.credentials.clone(),
        f.spec.region.clone(),
        id,
    )
}

/// The requested type is launched in the requested region; the same token
/// returns the first instance, another token starts another.
///
/// Needs: capacity for two instances of `f.spec`.
pub async fn a_launch_is_idempotent_on_its_token(
    launcher: &dyn CloudLauncher,
    f: &LauncherFixture,
) {
    let (a, b) = (job(777_001), job(777_002));
    let first = launcher.launch(request(f, a, &token(f, a))).await.unwrap();
    assert_eq!(
        first.instance_type, f.spec.instance_type,
        "the requested type is launched"
    );
    assert_eq!(first.region, f.spec.region);
    let again = launcher.launch(request(f, a, &token(f, a))).await.unwrap();
    assert_eq!(
        again.instance_id, first.instance_id,
        "the same token never starts a second instance"
    );
    let second = launcher.launch(request(f, b, &token(f, b))).await.unwrap();
    assert_ne!(second.instance_id, first.instance_id);
    for id in [first.instance_id, second.instance_id] {
        launcher.terminate(terminate(f, id)).await.unwrap();
    }
}

/// What a controller launched is listed as its own, by controller and by
/// job, with the job and runner read back from the tags; another
/// controller's listing does not see it.
///
/// Needs: capacity for one instance; no other controller named
/// `<controller_id>-someone-else`.
pub async fn owned_instances_are_listed_by_controller_and_job(
    launcher: &dyn CloudLauncher,
    f: &LauncherFixture,
) {
    let j = job(777_003);
    let launched = launcher.launch(request(f, j, &token(f, j))).await.unwrap();
    let owned = launcher
        .list_owned(list(f, f.controller_id.clone(), None))
        .await
        .unwrap();
    let ids: Vec<_> = owned
        .instances
        .iter()
        .map(|i| i.instance_id.clone())
        .collect();
    assert!(
        ids.contains(&launched.instance_id),
        "listed as ours: {ids:?}"
    );
    let mine = launcher
        .list_owned(list(f, f.controller_id.clone(), Some(j)))
        .await
        .unwrap();
    assert_eq!(
        mine.instances.len(),
        1,
        "listing by job finds exactly that job's instance"
    );
    let info = &mine.instances[0];
    assert_eq!(info.instance_id, launched.instance_id);
    assert_eq!(info.job, Some(j), "the job is read back from the tags");
    assert_eq!(
        info.runner_name,
        Some(RunnerName::for_launch(j, 1)),
        "the runner is read back from the tags"
    );
    let stranger = format!("{}-someone-else", f.controller_id);
    let strangers = launcher.list_owned(list(f, stranger, None)).await.unwrap();
    assert!(
        strangers.instances.is_empty(),
        "another controller's listing does not see ours"
    );
    launcher
        .terminate(terminate(f, launched.instance_id))
        .await
        .unwrap();
}

/// A new instance is alive; terminating it says it was running, twice says
/// it was gone; afterwards it is shutting down, terminated or not found,
/// and not alive in the listing.
///
/// Needs: capacity for one instance.
pub async fn terminate_is_idempotent_and_describe_follows(
    launcher: &dyn CloudLauncher,
    f: &LauncherFixture,
) {
    let j = job(777_004);
    let launched = launcher.launch(request(f, j, &token(f, j))).await.unwrap();
    let id = launched.instance_id;
    let described = launcher.describe(describe(f, id.clone())).await.unwrap();
    assert!(
        described.state.is_alive(),
        "a new instance is pending or running: {:?}",
        described.state
    );
    assert!(
        launcher
            .terminate(terminate(f, id.clone()))
            .await
            .unwrap()
            .was_running
    );
    let twice = launcher.terminate(terminate(f, id.clone())).await.unwrap();
    assert!(
        !twice.was_running,
        "terminating twice succeeds and says it was already gone"
    );
    match launcher.describe(describe(f, id.clone())).await {
        Ok(i) => assert!(
            matches!(
                i.state,
                InstanceState::ShuttingDown | InstanceState::Terminated
            ),
            "terminated: {:?}",
            i.state
        ),
        Err(e) => assert_eq!(*e.kind(), ErrorKind::NotFound),
    }
    let owned = launcher
        .list_owned(list(f, f.controller_id.clone(), None))
        .await
        .unwrap();
    let alive = owned
        .instances
        .iter()
        .any(|i| i.instance_id == id && i.state.is_alive());
    assert!(!alive, "a terminated instance is not alive in the listing");
}

/// Describing an instance EC2 does not know is `NotFound`; terminating it
/// succeeds and says it was not running.
///
/// Needs: nothing but the port.
pub async fn unknown_instances_are_not_found_and_terminate_succeeds(
    launcher: &dyn CloudLauncher,
    f: &LauncherFixture,
) {
    let unknown = InstanceId::parse("i-0fffffffffffffff0").unwrap();
    let err = launcher
        .describe(describe(f, unknown.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        *err.kind(),
        ErrorKind::NotFound,
        "describing an unknown instance is NotFound"
    );
    assert!(
        !launcher
            .terminate(terminate(f, unknown))
            .await
            .unwrap()
            .was_running,
        "terminating an unknown instance succeeds"
    );
}
