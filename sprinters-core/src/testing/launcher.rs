//! The [`CloudLauncher`] conformance suite.

use std::time::Duration;

use secrecy::SecretString;

use crate::ErrorKind;
use crate::domain::{AccountId, JobId, JobKey, Repository, RunAttempt, RunId, RunnerName};
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

/// Runs every check: launch, idempotent launch, ownership listing,
/// describe, idempotent terminate.
pub async fn cloud_launcher(launcher: &dyn CloudLauncher, f: &LauncherFixture) {
    let job = JobKey::new(JobId::new(777_001), RunAttempt::FIRST);
    let other = JobKey::new(JobId::new(777_002), RunAttempt::FIRST);
    let token = format!("conformance-{}-777001-1", f.controller_id);

    let first = launcher.launch(request(f, job, &token)).await.unwrap();
    assert_eq!(
        first.instance_type, f.spec.instance_type,
        "the requested type is launched"
    );
    assert_eq!(first.region, f.spec.region);
    let again = launcher.launch(request(f, job, &token)).await.unwrap();
    assert_eq!(
        again.instance_id, first.instance_id,
        "the same token never starts a second instance"
    );
    let second = launcher
        .launch(request(f, other, &format!("{token}-other")))
        .await
        .unwrap();
    assert_ne!(second.instance_id, first.instance_id);

    let list = |job: Option<JobKey>| {
        let mut q = ListOwned::new(
            f.account.clone(),
            f.credentials.clone(),
            f.spec.region.clone(),
            f.controller_id.clone(),
        );
        q.job = job;
        launcher.list_owned(q)
    };
    let owned = list(None).await.unwrap();
    let ids: Vec<_> = owned
        .instances
        .iter()
        .map(|i| i.instance_id.clone())
        .collect();
    assert!(
        ids.contains(&first.instance_id) && ids.contains(&second.instance_id),
        "both are listed as ours: {ids:?}"
    );
    let mine = list(Some(job)).await.unwrap();
    assert_eq!(
        mine.instances.len(),
        1,
        "listing by job finds exactly that job's instance"
    );
    let info = &mine.instances[0];
    assert_eq!(info.instance_id, first.instance_id);
    assert_eq!(info.job, Some(job), "the job is read back from the tags");
    assert_eq!(
        info.runner_name,
        Some(RunnerName::for_launch(job, 1)),
        "the runner is read back from the tags"
    );

    let strangers = {
        let q = ListOwned::new(
            f.account.clone(),
            f.credentials.clone(),
            f.spec.region.clone(),
            format!("{}-someone-else", f.controller_id),
        );
        launcher.list_owned(q).await.unwrap()
    };
    assert!(
        strangers.instances.is_empty(),
        "another controller's listing does not see ours"
    );

    let describe = |id| {
        DescribeInstance::new(
            f.account.clone(),
            f.credentials.clone(),
            f.spec.region.clone(),
            id,
        )
    };
    let described = launcher
        .describe(describe(first.instance_id.clone()))
        .await
        .unwrap();
    assert!(
        described.state.is_alive(),
        "a new instance is pending or running: {:?}",
        described.state
    );

    let terminate = |id| {
        TerminateRequest::new(
            f.account.clone(),
            f.credentials.clone(),
            f.spec.region.clone(),
            id,
        )
    };
    assert!(
        launcher
            .terminate(terminate(first.instance_id.clone()))
            .await
            .unwrap()
            .was_running
    );
    let twice = launcher
        .terminate(terminate(first.instance_id.clone()))
        .await
        .unwrap();
    assert!(
        !twice.was_running,
        "terminating twice succeeds and says it was already gone"
    );
    let after = launcher.describe(describe(first.instance_id.clone())).await;
    match after {
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
    let alive: Vec<_> = list(None)
        .await
        .unwrap()
        .instances
        .into_iter()
        .filter(|i| i.state.is_alive())
        .map(|i| i.instance_id)
        .collect();
    assert!(
        !alive.contains(&first.instance_id),
        "a terminated instance is not alive in the listing"
    );
    launcher
        .terminate(terminate(second.instance_id))
        .await
        .unwrap();

    let unknown = crate::domain::InstanceId::parse("i-0fffffffffffffff0").unwrap();
    let err = launcher
        .describe(describe(unknown.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        *err.kind(),
        ErrorKind::NotFound,
        "describing an unknown instance is NotFound"
    );
    assert!(
        !launcher
            .terminate(terminate(unknown))
            .await
            .unwrap()
            .was_running,
        "terminating an unknown instance succeeds"
    );
}
