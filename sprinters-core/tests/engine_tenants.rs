//! Tenants who do not trust each other: every event is checked against the
//! owner (GitHub account id and installation) it claims, and nothing of one
//! owner is ever matched with another's.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use secrecy::ExposeSecret;
use sprinters_core::ErrorKind;
use sprinters_core::domain::{AccountId, InstallationId, Owner, OwnerId, RunnerName};
use sprinters_core::engine::{Handled, Tenants};
use sprinters_core::events::{Conclusion, InstallationAction};
use sprinters_core::job::{EndReason, JobState};
use sprinters_core::ports::{JobStore, ListJobs};
use sprinters_core::tenant::ConnectionState;
use sprinters_core::testing::{JobEvents, TestBed};

/// The rival: another GitHub account with the App installed and an AWS
/// account of its own connected.
const RIVAL: u64 = 5353;
const RIVAL_INSTALLATION: u64 = 8;

fn with_rival() -> TestBed {
    let bed = TestBed::new();
    bed.connect("rival-org", RIVAL, RIVAL_INSTALLATION, "210987654321");
    bed
}

fn rival_job(bed: &TestBed, id: u64) -> JobEvents {
    bed.job(id)
        .repository("rival-org/app")
        .owner(RIVAL, RIVAL_INSTALLATION)
}

/// Owner A's job, launched and waiting for its runner.
async fn launched(bed: &TestBed) -> (JobEvents, RunnerName) {
    let a = bed.job(1);
    bed.send(a.queued()).await;
    bed.settle().await;
    assert_eq!(bed.launcher.alive().len(), 1);
    (a.clone(), TestBed::runner(&a, 1))
}

/// Nothing of A's job changed: its launch is free, its instance alive.
async fn untouched(bed: &TestBed, a: &JobEvents, version_before: u64) {
    let stored = bed.store.get_job(a.key).await.unwrap().unwrap();
    assert_eq!(stored.version, version_before, "A's record was not written");
    assert_eq!(stored.value.launches[0].taken_by, None);
    assert!(stored.value.launches[0].is_live());
    assert!(
        bed.launcher
            .alive()
            .iter()
            .any(|i| i.info.job == Some(a.key)),
        "A's instance still runs"
    );
}

#[tokio::test]
async fn a_runner_named_like_another_owners_changes_nothing_of_it() {
    let bed = with_rival();
    let (a, runner) = launched(&bed).await;
    let before = bed.store.get_job(a.key).await.unwrap().unwrap().version;

    // The rival registers a self-hosted runner under A's runner name in its
    // own repository, runs a job there and finishes it.
    let b = rival_job(&bed, 2);
    bed.send(b.queued()).await;
    bed.settle().await;
    bed.send(b.in_progress_on(&runner, 777_001)).await;
    bed.send(b.completed_on(Conclusion::Success, &runner, 777_001))
        .await;
    bed.settle().await;
    bed.engine.reconcile().await.unwrap();
    bed.settle().await;

    let alive: Vec<_> = bed.launcher.alive();
    assert!(
        alive
            .iter()
            .any(|i| i.info.job == Some(a.key) && i.account.as_str() == "123456789012"),
        "A's instance is not ended: {alive:?}"
    );
    let stored = bed.store.get_job(a.key).await.unwrap().unwrap();
    assert_eq!(stored.version, before, "A's record was not written");
    let theirs = bed.record(&b).await;
    assert_eq!(theirs.ran_on.as_ref(), Some(&runner), "the name is kept");
    assert_eq!(theirs.ran_on_launch, None, "but it leads to no launch");
}

#[tokio::test]
async fn another_repository_of_the_same_owner_cannot_take_a_runner_either() {
    let bed = TestBed::new();
    let (a, runner) = launched(&bed).await;
    let before = bed.store.get_job(a.key).await.unwrap().unwrap().version;
    let other = bed.job(2).repository("octo-org/other");
    bed.send(other.queued()).await;
    bed.settle().await;
    // GitHub would never hand a repository runner to another repository's
    // job; a runner there with the same name is someone else's.
    bed.send(other.in_progress_on(&runner, 888_001)).await;
    bed.settle().await;
    untouched(&bed, &a, before).await;
}

#[tokio::test]
async fn a_runner_with_the_right_name_and_another_runner_id_is_not_ours() {
    let bed = TestBed::new();
    let (a, runner) = launched(&bed).await;
    let before = bed.store.get_job(a.key).await.unwrap().unwrap().version;
    let b = bed.job(2);
    bed.send(b.queued()).await;
    bed.settle().await;
    let ours = bed.record(&a).await.launches[0].runner_id.unwrap();
    bed.send(b.in_progress_on(&runner, ours + 1000)).await;
    bed.settle().await;
    untouched(&bed, &a, before).await;

    // With GitHub's id of the runner, the same event is a stolen runner.
    bed.send(b.in_progress_on(&runner, ours)).await;
    bed.settle().await;
    assert_eq!(bed.record(&a).await.launches[0].taken_by, Some(b.key));
}

#[tokio::test]
async fn a_job_whose_own_runner_id_differs_does_not_take_its_launch() {
    let bed = TestBed::new();
    let (a, runner) = launched(&bed).await;
    let ours = bed.record(&a).await.launches[0].runner_id.unwrap();
    bed.send(a.in_progress_on(&runner, ours + 5)).await;
    bed.settle().await;
    let record = bed.record(&a).await;
    assert_eq!(record.state, JobState::Running);
    assert_eq!(record.launches[0].taken_by, None, "not its launch's runner");
    assert_eq!(record.ran_on_launch, None);
}

#[tokio::test]
async fn a_spare_of_one_owner_never_covers_another_owners_job() {
    let bed = with_rival();
    // A's job is cancelled before pickup: its runner is a spare for A.
    let (a, _) = launched(&bed).await;
    bed.send(a.completed(Conclusion::Cancelled, None)).await;
    bed.settle().await;
    assert_eq!(bed.launcher.alive().len(), 1, "the spare idles");

    // The rival's job with the same labels gets a launch of its own, in
    // its own account, at once.
    let b = rival_job(&bed, 2);
    bed.send(b.queued()).await;
    bed.settle().await;
    let record = bed.record(&b).await;
    assert_eq!(record.state, JobState::Launched, "{record:?}");
    assert_eq!(record.launches.len(), 1);
    let theirs: Vec<_> = bed
        .launcher
        .alive()
        .into_iter()
        .filter(|i| i.info.job == Some(b.key))
        .collect();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].account.as_str(), "210987654321");
    assert_ne!(record.label_set, bed.record(&a).await.label_set);
}

#[tokio::test]
async fn a_spare_of_one_repository_never_covers_another_repositorys_job() {
    let bed = TestBed::new();
    let (a, _) = launched(&bed).await;
    bed.send(a.completed(Conclusion::Cancelled, None)).await;
    bed.settle().await;
    let b = bed.job(2).repository("octo-org/other");
    bed.send(b.queued()).await;
    bed.settle().await;
    assert_eq!(bed.record(&b).await.state, JobState::Launched);
    assert_eq!(bed.launcher.launch_calls(), 2);

    // Within one repository the spare does cover a job.
    let c = bed.job(3);
    bed.send(c.queued()).await;
    bed.settle().await;
    assert_eq!(bed.launcher.launch_calls(), 2, "A's spare serves C");
}

#[tokio::test]
async fn a_login_reused_with_other_ids_launches_nothing() {
    let bed = TestBed::new();
    // octo-org renamed itself; a stranger registered the login and installed
    // the App: its events carry its own account and installation ids.
    let stranger = bed.job(1).owner(9999, 99);
    assert_eq!(bed.send(stranger.queued()).await, Handled::Ignored);
    // The right account id through another installation is refused too.
    let odd = bed.job(2).owner(TestBed::OWNER_ID.get(), 99);
    assert_eq!(bed.send(odd.queued()).await, Handled::Ignored);
    bed.settle().await;
    assert_eq!(bed.launcher.launch_calls(), 0);
    assert_eq!(bed.registry.jit_configs(), 0);
    assert!(
        bed.store
            .list_jobs(ListJobs::newest(10))
            .await
            .unwrap()
            .jobs
            .is_empty(),
        "nothing recorded"
    );
}

#[tokio::test]
async fn a_renamed_owner_keeps_working_under_its_new_login() {
    let bed = TestBed::new();
    let renamed = bed.job(1).repository("octo-renamed/app");
    assert!(matches!(
        bed.send(renamed.queued()).await,
        Handled::Accepted(_)
    ));
    bed.settle().await;
    assert_eq!(bed.launcher.launch_calls(), 1);
    let tenant = bed.tenants.get(TestBed::OWNER_ID).unwrap();
    assert_eq!(tenant.login.as_str(), "octo-renamed", "the display name");
}

#[tokio::test]
async fn a_suspended_installation_rejects_new_jobs_until_unsuspended() {
    let bed = TestBed::new();
    let (owner, id, installation) = (
        "octo-org",
        TestBed::OWNER_ID.get(),
        TestBed::INSTALLATION_ID.get(),
    );
    bed.send_installation(
        InstallationAction::Suspend,
        owner,
        id,
        installation,
        &[],
        &[],
    )
    .await;
    let Handled::Rejected { message, .. } = bed.send(bed.job(1).queued()).await else {
        panic!("not rejected")
    };
    assert!(message.contains("suspended"), "{message}");
    bed.send_installation(
        InstallationAction::Unsuspend,
        owner,
        id,
        installation,
        &[],
        &[],
    )
    .await;
    assert!(matches!(
        bed.send(bed.job(2).queued()).await,
        Handled::Accepted(_)
    ));
    bed.settle().await;
    assert_eq!(bed.launcher.launch_calls(), 1);
}

#[tokio::test]
async fn installation_events_of_another_installation_change_nothing() {
    let bed = with_rival();
    // The rival's signed event names octo-org's login: its ids are its own.
    for action in [InstallationAction::Suspend, InstallationAction::Deleted] {
        bed.send_installation(action, "octo-org", RIVAL, RIVAL_INSTALLATION + 1, &[], &[])
            .await;
        bed.send_installation(action, "octo-org", TestBed::OWNER_ID.get(), 77, &[], &[])
            .await;
    }
    let tenant = bed.tenants.get(TestBed::OWNER_ID).unwrap();
    assert!(!tenant.suspended);
    assert!(matches!(
        bed.send(bed.job(1).queued()).await,
        Handled::Accepted(_)
    ));
}

#[tokio::test]
async fn uninstalling_the_app_disconnects_the_owner_and_ends_its_instances() {
    let bed = with_rival();
    let (a, _) = launched(&bed).await;
    let b = rival_job(&bed, 2);
    bed.send(b.queued()).await;
    bed.settle().await;
    assert_eq!(bed.launcher.alive().len(), 2);

    bed.send_installation(
        InstallationAction::Deleted,
        "octo-org",
        TestBed::OWNER_ID.get(),
        TestBed::INSTALLATION_ID.get(),
        &[],
        &[],
    )
    .await;
    bed.settle().await;
    let record = bed.record(&a).await;
    assert_eq!(record.state, JobState::Rejected);
    assert!(
        record.message.as_deref().unwrap().contains("uninstalled"),
        "{record:?}"
    );
    assert_eq!(
        record.launches[0].ended.map(|(_, r)| r),
        Some(EndReason::Orphan)
    );
    let alive = bed.launcher.alive();
    assert_eq!(alive.len(), 1, "only the rival's instance runs");
    assert_eq!(alive[0].info.job, Some(b.key));
    assert!(bed.tenants.get(TestBed::OWNER_ID).is_none());
    // Nothing launches for the owner any more.
    let Handled::Rejected { .. } = bed.send(bed.job(3).queued()).await else {
        panic!("not rejected")
    };
    bed.settle().await;
    assert_eq!(bed.launcher.alive().len(), 1);
}

#[tokio::test]
async fn a_repository_taken_out_of_the_installation_launches_nothing() {
    let bed = TestBed::new();
    let id = TestBed::OWNER_ID.get();
    bed.send_installation(
        InstallationAction::RepositoriesChanged,
        "octo-org",
        id,
        TestBed::INSTALLATION_ID.get(),
        &["octo-org/app"],
        &[],
    )
    .await;
    let Handled::Rejected { message, .. } = bed.send(bed.job(1).queued()).await else {
        panic!("not rejected")
    };
    assert!(message.contains("no longer in"), "{message}");
    assert!(matches!(
        bed.send(bed.job(2).repository("octo-org/web").queued())
            .await,
        Handled::Accepted(_)
    ));
    bed.send_installation(
        InstallationAction::RepositoriesChanged,
        "octo-org",
        id,
        TestBed::INSTALLATION_ID.get(),
        &[],
        &["octo-org/app"],
    )
    .await;
    assert!(matches!(
        bed.send(bed.job(3).queued()).await,
        Handled::Accepted(_)
    ));
}

#[tokio::test]
async fn a_configured_login_is_bound_by_its_installation_and_then_only_by_its_id() {
    let bed = TestBed::new();
    let acct = sprinters_core::domain::AccountId::parse("333333333333").unwrap();
    let login = sprinters_core::domain::Owner::parse("new-org").unwrap();
    bed.tenants.seed(login.clone(), acct, None);
    let job = bed.job(1).repository("new-org/app").owner(6000, 60);
    assert_eq!(
        bed.send(job.queued()).await,
        Handled::Ignored,
        "not bound yet: nothing launches on a login's word"
    );
    bed.send_installation(InstallationAction::Created, "new-org", 6000, 60, &[], &[])
        .await;
    assert_eq!(bed.tenants.owner_id_of(&login), Some(OwnerId::new(6000)));
    assert!(matches!(
        bed.send(
            bed.job(2)
                .repository("new-org/app")
                .owner(6000, 60)
                .queued()
        )
        .await,
        Handled::Accepted(_)
    ));
    // Another account that later holds the login installs the App: the
    // binding stays, and its jobs launch nothing.
    bed.send_installation(InstallationAction::Created, "new-org", 7000, 70, &[], &[])
        .await;
    assert_eq!(bed.tenants.owner_id_of(&login), Some(OwnerId::new(6000)));
    assert_eq!(
        bed.send(
            bed.job(3)
                .repository("new-org/app")
                .owner(7000, 70)
                .queued()
        )
        .await,
        Handled::Ignored
    );
}

/// A second replica over the bed's store and adapters, with a directory of
/// its own (what another process would have).
fn second_replica(bed: &TestBed) -> (sprinters_core::engine::Engine, Tenants) {
    let tenants = Tenants::new();
    let mut config = bed.engine.config().clone();
    config.tenants = tenants.clone();
    config.replica_id = "replica-2".into();
    let engine = bed.builder().config(config).build().unwrap();
    (engine, tenants)
}

fn account(s: &str) -> AccountId {
    AccountId::parse(s).unwrap()
}

#[tokio::test]
async fn a_connection_made_at_run_time_launches_only_once_verified_on_every_replica() {
    let bed = TestBed::new();
    let (replica, replica_tenants) = second_replica(&bed);
    let owner = OwnerId::new(7000);
    let login = Owner::parse("newco").unwrap();
    let opened = bed
        .engine
        .open_connection(
            owner,
            InstallationId::new(70),
            login.clone(),
            account("444444444444"),
        )
        .await
        .unwrap();
    assert_eq!(opened.state, ConnectionState::Pending);
    assert_eq!(opened.external_id.secret().expose_secret().len(), 64);
    let again = bed
        .engine
        .open_connection(
            owner,
            InstallationId::new(70),
            login.clone(),
            account("444444444444"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        *again.kind(),
        ErrorKind::Conflict,
        "one connection per account"
    );

    let job = |id: u64| bed.job(id).repository("newco/app").owner(7000, 70);
    let Handled::Rejected { message, .. } = bed.send(job(1).queued()).await else {
        panic!("a pending connection launches nothing")
    };
    assert!(message.contains("no AWS account connected"), "{message}");

    // Verified through the first replica; the second sees it after a tick.
    bed.engine
        .confirm_connection(
            owner,
            &account("444444444444"),
            "arn:aws:iam::444444444444:role/r",
            &opened.external_id,
        )
        .await
        .unwrap();
    assert!(replica_tenants.get(owner).is_none());
    replica.sync_tenants().await.unwrap();
    let seen = replica_tenants.get(owner).unwrap();
    assert_eq!(seen.accounts(), vec![account("444444444444")]);
    assert_eq!(
        seen.connection(&account("444444444444"))
            .unwrap()
            .external_id,
        opened.external_id,
        "the same external id on every replica"
    );
    let delivery = bed.delivery("replica-2-queued", job(2).queued());
    assert!(matches!(
        replica.handle(delivery).await.unwrap(),
        Handled::Accepted(_)
    ));
    replica.drain().await;
    let alive = bed.launcher.alive();
    assert_eq!(alive.len(), 1);
    assert_eq!(alive[0].account.as_str(), "444444444444");

    // Disconnected through the second replica: the instance ends, and the
    // first replica launches nothing there after its next tick.
    let closed = replica
        .close_connection(owner, &account("444444444444"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.state, ConnectionState::Connected, "as it was");
    assert!(bed.launcher.alive().is_empty(), "its instance is ended");
    bed.engine.sync_tenants().await.unwrap();
    let Handled::Rejected { .. } = bed.send(job(3).queued()).await else {
        panic!("a closed connection launches nothing")
    };
}

#[tokio::test]
async fn a_binding_kept_in_the_store_holds_after_a_restart_whoever_has_the_login() {
    let bed = TestBed::new();
    let login = Owner::parse("acme").unwrap();
    bed.tenants
        .seed(login.clone(), account("555555555555"), None);
    assert!(
        bed.engine
            .bind_owner(&login, OwnerId::new(8000), InstallationId::new(80))
            .await
            .unwrap()
    );
    // A restart: a fresh directory seeded from the same configuration.
    let (replica, tenants) = second_replica(&bed);
    tenants.seed(login.clone(), account("555555555555"), None);
    replica.sync_tenants().await.unwrap();
    assert_eq!(tenants.owner_id_of(&login), Some(OwnerId::new(8000)));
    assert!(tenants.unbound().is_empty(), "bound without asking GitHub");
    // acme renamed itself and a stranger took the login: nothing for it.
    let stranger = bed.job(1).repository("acme/app").owner(9000, 90);
    let delivery = bed.delivery("stranger-queued", stranger.queued());
    assert_eq!(replica.handle(delivery).await.unwrap(), Handled::Ignored);
}

#[tokio::test]
async fn a_configured_owner_that_reinstalls_the_app_is_bound_again_by_its_id_only() {
    let bed = TestBed::new();
    let login = Owner::parse("acme").unwrap();
    bed.tenants
        .seed(login.clone(), account("555555555555"), None);
    bed.engine
        .bind_owner(&login, OwnerId::new(8000), InstallationId::new(80))
        .await
        .unwrap();
    bed.send_installation(InstallationAction::Deleted, "acme", 8000, 80, &[], &[])
        .await;
    assert!(bed.tenants.get(OwnerId::new(8000)).unwrap().uninstalled);
    let Handled::Rejected { message, .. } = bed
        .send(bed.job(1).repository("acme/app").owner(8000, 80).queued())
        .await
    else {
        panic!("an uninstalled owner launches nothing")
    };
    assert!(message.contains("uninstalled"), "{message}");
    // Someone else installs the App under the login: nothing, here and
    // after a restart (the binding is in the store, pinned to the id).
    bed.send_installation(InstallationAction::Created, "acme", 9000, 90, &[], &[])
        .await;
    assert!(bed.tenants.get(OwnerId::new(9000)).is_none());
    let (replica, tenants) = second_replica(&bed);
    tenants.seed(login.clone(), account("555555555555"), None);
    replica.sync_tenants().await.unwrap();
    assert_eq!(tenants.owner_id_of(&login), Some(OwnerId::new(8000)));
    assert!(
        !replica
            .bind_owner(&login, OwnerId::new(9000), InstallationId::new(90))
            .await
            .unwrap(),
        "GitHub's answer for the login binds nothing any more"
    );
    // The owner itself reinstalls: bound again, with its configured account.
    bed.send_installation(InstallationAction::Created, "acme", 8000, 81, &[], &[])
        .await;
    let tenant = bed.tenants.get(OwnerId::new(8000)).unwrap();
    assert_eq!(tenant.installation_id, InstallationId::new(81));
    assert_eq!(tenant.accounts(), vec![account("555555555555")]);
}
