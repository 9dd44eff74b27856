//! What a workflow author may ask for: the platform's policy, each owner's
//! over it, each repository's narrowing, all checked before any AWS call.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sprinters_core::domain::{Owner, Repository};
use sprinters_core::engine::Handled;
use sprinters_core::engine::Tenants;
use sprinters_core::events::Conclusion;
use sprinters_core::job::JobState;
use sprinters_core::policy::{OwnerPolicy, PublicRepositories};
use sprinters_core::testing::{JobEvents, TestBed};

fn policy(json: &str) -> OwnerPolicy {
    serde_json::from_str(json).unwrap()
}

async fn set(bed: &TestBed, json: &str) {
    bed.engine
        .set_owner_policy(
            TestBed::OWNER_ID,
            TestBed::INSTALLATION_ID,
            bed.owner.clone(),
            Some(policy(json)),
        )
        .await
        .unwrap();
}

/// No call of any kind reached AWS or asked GitHub for a runner.
fn nothing_called(bed: &TestBed) {
    assert!(bed.launcher.alive().is_empty(), "no instance");
    assert_eq!(bed.credentials.calls(), 0, "no credentials asked for");
    assert_eq!(bed.registry.jit_configs(), 0, "no runner registered");
}

/// Sends `job`'s `queued` and returns the rejection's message, checked
/// to be what the job's record says.
async fn rejected_with(bed: &TestBed, job: &JobEvents) -> String {
    let handled = bed.send(job.queued()).await;
    bed.settle().await;
    match handled {
        Handled::Rejected { message, .. } => {
            let record = bed.record(job).await;
            assert_eq!(record.state, JobState::Rejected);
            assert_eq!(record.message.as_deref(), Some(message.as_str()));
            message
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn an_instance_type_outside_the_owners_patterns_is_rejected_before_any_aws_call() {
    let bed = TestBed::new();
    set(&bed, r#"{"instance_types": ["t3.*", "c7i.*"]}"#).await;
    let job = bed
        .job(1)
        .labels(&["sprinters:aws:ubuntu-latest:p5.48xlarge"]);
    let message = rejected_with(&bed, &job).await;
    assert_eq!(
        message,
        "instance type p5.48xlarge is not allowed for octo-org (allowed: t3.*, c7i.*)"
    );
    nothing_called(&bed);

    // An allowed type launches.
    let ok = bed
        .job(2)
        .labels(&["sprinters:aws:ubuntu-latest:c7i.large"]);
    assert!(matches!(bed.send(ok.queued()).await, Handled::Accepted(_)));
    bed.settle().await;
    assert_eq!(bed.launcher.alive().len(), 1);
}

#[tokio::test]
async fn the_platform_default_applies_until_the_owner_sets_its_own() {
    let bed = TestBed::with_config(|c| c.policy.max_vcpus = 4);
    let big = bed
        .job(1)
        .labels(&["sprinters:aws:ubuntu-latest:m7i.2xlarge"]);
    let message = rejected_with(&bed, &big).await;
    assert_eq!(
        message,
        "instance type m7i.2xlarge has 8 vCPUs, more than the 4 allowed for octo-org (max_vcpus)"
    );
    set(&bed, r#"{"max_vcpus": 8}"#).await;
    let again = bed
        .job(2)
        .labels(&["sprinters:aws:ubuntu-latest:m7i.2xlarge"]);
    assert!(matches!(
        bed.send(again.queued()).await,
        Handled::Accepted(_)
    ));
    assert_eq!(
        bed.engine.owner_policy(TestBed::OWNER_ID),
        Some(policy(r#"{"max_vcpus": 8}"#))
    );
    // Kept in the store: the owner's record carries it.
    let stored = sprinters_core::ports::JobStore::get_tenant(bed.store.as_ref(), TestBed::OWNER_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value.policy, Some(policy(r#"{"max_vcpus": 8}"#)));
}

#[tokio::test]
async fn a_label_named_subnet_or_group_is_refused_unless_the_policy_lists_it() {
    let bed = TestBed::new();
    let sg = bed
        .job(1)
        .labels(&["sprinters:aws:ubuntu-latest:sg-0123abcd"]);
    let message = rejected_with(&bed, &sg).await;
    assert_eq!(
        message,
        "security group sg-0123abcd is not allowed for octo-org (allowed: none)"
    );
    nothing_called(&bed);
    set(&bed, r#"{"security_groups": ["sg-0123abcd"]}"#).await;
    let listed = bed
        .job(2)
        .labels(&["sprinters:aws:ubuntu-latest:sg-0123abcd"]);
    assert!(matches!(
        bed.send(listed.queued()).await,
        Handled::Accepted(_)
    ));
}

#[tokio::test]
async fn a_repository_may_use_only_the_accounts_its_policy_names() {
    let bed = TestBed::new();
    set(
        &bed,
        r#"{"repositories": {"app": {"accounts": ["210987654321"]}}}"#,
    )
    .await;
    let job = bed.job(1);
    let message = rejected_with(&bed, &job).await;
    assert_eq!(
        message,
        format!(
            "AWS account {} is not allowed for octo-org/app (allowed: 210987654321)",
            bed.account
        )
    );
    // Another repository of the owner keeps every account.
    let other = bed.job(2).repository("octo-org/api");
    assert!(matches!(
        bed.send(other.queued()).await,
        Handled::Accepted(_)
    ));
}

#[tokio::test]
async fn public_repositories_are_denied_by_default_and_allowed_by_policy() {
    let bed = TestBed::new();
    assert_eq!(
        bed.engine
            .effective_policy(TestBed::OWNER_ID)
            .base
            .public_repositories,
        PublicRepositories::Deny
    );
    let public = bed.job(1).public();
    let message = rejected_with(&bed, &public).await;
    assert_eq!(
        message,
        "octo-org/app is public, and octo-org does not run public repositories' jobs on self-hosted runners (public_repositories = deny)"
    );
    nothing_called(&bed);
    assert_eq!(bed.registry.origin_lookups(), 0, "deny asks GitHub nothing");
    assert_eq!(
        bed.registry.cancelled(),
        [public.run_id],
        "its run is cancelled: left queued, the job could take another's runner"
    );

    set(&bed, r#"{"public_repositories": "allow"}"#).await;
    let allowed = bed.job(2).public();
    assert!(matches!(
        bed.send(allowed.queued()).await,
        Handled::Accepted(_)
    ));
}

#[tokio::test]
async fn no_forks_runs_the_repositorys_own_runs_and_refuses_forks_asking_once_per_run() {
    let bed = TestBed::new();
    set(&bed, r#"{"public_repositories": "no-forks"}"#).await;
    let repo = Repository::parse("octo-org/app").unwrap();

    // A run from the repository itself: two jobs, one question.
    let own = bed.job(1).public();
    bed.registry.set_public_run(own.run_id, Some(repo.clone()));
    assert!(matches!(bed.send(own.queued()).await, Handled::Accepted(_)));
    let mut sibling = bed.job(2).public();
    sibling.run_id = own.run_id;
    assert!(matches!(
        bed.send(sibling.queued()).await,
        Handled::Accepted(_)
    ));
    assert_eq!(bed.registry.origin_lookups(), 1, "asked once per run");

    // A run from a stranger's fork.
    let fork = bed.job(3).public();
    bed.registry.set_public_run(
        fork.run_id,
        Some(Repository::parse("stranger/app").unwrap()),
    );
    let message = rejected_with(&bed, &fork).await;
    assert!(message.contains("comes from a fork"), "{message}");
    assert!(
        message.contains("public_repositories = no-forks"),
        "{message}"
    );
    assert_eq!(
        bed.registry.cancelled(),
        [fork.run_id],
        "the fork's run is cancelled, the repository's own is not"
    );

    // A run whose fork was deleted (GitHub names no head repository).
    let gone = bed.job(4).public();
    bed.registry.set_public_run(gone.run_id, None);
    assert!(matches!(
        bed.send(gone.queued()).await,
        Handled::Rejected { .. }
    ));

    // A pull_request_target run: its head is the repository itself, but
    // it runs for any pull request, a stranger's included.
    let target = bed.job(5).public();
    bed.registry
        .set_public_run(target.run_id, Some(repo.clone()));
    bed.registry
        .set_run_event(target.run_id, "pull_request_target");
    let message = rejected_with(&bed, &target).await;
    assert!(message.contains("pull_request_target"), "{message}");
}

#[tokio::test]
async fn a_bad_policy_is_refused_by_name_and_changes_nothing() {
    let bed = TestBed::new();
    set(&bed, r#"{"max_vcpus": 8}"#).await;
    let bad = policy(r#"{"repositories": {"octo-org/app": {}}}"#);
    let e = bed
        .engine
        .set_owner_policy(
            TestBed::OWNER_ID,
            TestBed::INSTALLATION_ID,
            Owner::parse("octo-org").unwrap(),
            Some(bad),
        )
        .await
        .unwrap_err();
    assert!(e.message().contains("octo-org/app"), "{e}");
    assert_eq!(
        bed.engine.owner_policy(TestBed::OWNER_ID),
        Some(policy(r#"{"max_vcpus": 8}"#))
    );
}

#[tokio::test]
async fn a_policy_set_on_one_replica_holds_on_another_within_a_tick() {
    let bed = TestBed::new();
    let other = second_replica(&bed);
    set(&bed, r#"{"instance_types": ["t3.*"]}"#).await;
    other.sync_tenants().await.unwrap();
    let job = bed
        .job(1)
        .labels(&["sprinters:aws:ubuntu-latest:c7i.large"]);
    let delivery = bed.delivery("on-the-other", job.queued());
    assert!(matches!(
        other.handle(delivery).await.unwrap(),
        Handled::Rejected { .. }
    ));
}

async fn let_tasks_run() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

/// Jobs of distinct label sets, so that no job takes another's runner.
fn pinned(bed: &TestBed, ids: std::ops::RangeInclusive<u64>, repo: &str) -> Vec<JobEvents> {
    ids.map(|i| {
        bed.job(i)
            .repository(repo)
            .labels(&["sprinters:aws", &format!("pin-{i}")])
    })
    .collect()
}

/// Runs every job to its end, `at_once` at a time at most, finishing each
/// as soon as it launched; the order they were served in.
async fn serve_all(bed: &TestBed, jobs: &[JobEvents], at_once: usize) -> Vec<u64> {
    let mut served = Vec::new();
    while served.len() < jobs.len() {
        let_tasks_run().await;
        assert!(
            bed.launcher.alive().len() <= at_once,
            "never more than {at_once} at once"
        );
        let mut progressed = false;
        for j in jobs {
            if bed.record(j).await.state == JobState::Launched {
                let runner = TestBed::runner(j, 1);
                bed.send(j.in_progress(&runner)).await;
                bed.send(j.completed(Conclusion::Success, Some(&runner)))
                    .await;
                served.push(j.key.job_id.get());
                progressed = true;
            }
        }
        assert!(progressed, "waiting jobs were dropped: served {served:?}");
    }
    bed.settle().await;
    served
}

#[tokio::test]
async fn an_owners_instance_cap_queues_its_jobs_and_launches_them_as_slots_free() {
    let bed = TestBed::new();
    set(&bed, r#"{"max_instances": 2}"#).await;
    let jobs = pinned(&bed, 1..=5, "octo-org/app");
    for j in &jobs {
        assert!(matches!(bed.send(j.queued()).await, Handled::Accepted(_)));
    }
    let served = serve_all(&bed, &jobs, 2).await;
    assert_eq!(served[..2], [1, 2], "the first two go first");
    assert_eq!(bed.launcher.instances().len(), 5, "every job launched once");
}

#[tokio::test]
async fn a_repositorys_cap_holds_it_alone() {
    let bed = TestBed::new();
    set(&bed, r#"{"repositories": {"app": {"max_instances": 1}}}"#).await;
    let app = pinned(&bed, 1..=3, "octo-org/app");
    let api = pinned(&bed, 11..=12, "octo-org/api");
    for j in app.iter().chain(&api) {
        bed.send(j.queued()).await;
    }
    let_tasks_run().await;
    let alive = bed.launcher.alive();
    assert_eq!(alive.len(), 3, "one of app's and both of api's: {alive:?}");
    let all: Vec<JobEvents> = app.iter().chain(&api).cloned().collect();
    serve_all(&bed, &all, 3).await;
    assert_eq!(bed.launcher.instances().len(), 5);
}

#[tokio::test]
async fn beyond_max_queued_a_job_is_rejected_with_the_reason() {
    let bed = TestBed::new();
    set(&bed, r#"{"max_instances": 1, "max_queued": 2}"#).await;
    let jobs = pinned(&bed, 1..=4, "octo-org/app");
    for j in &jobs[..3] {
        assert!(matches!(bed.send(j.queued()).await, Handled::Accepted(_)));
        let_tasks_run().await;
    }
    // One runs, two wait: the fourth is one too many.
    match bed.send(jobs[3].queued()).await {
        Handled::Rejected { message, .. } => assert_eq!(
            message,
            "octo-org has 2 jobs queued, waiting for an instance: the most its policy allows (max_queued = 2)"
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(bed.record(&jobs[3]).await.state, JobState::Rejected);
    serve_all(&bed, &jobs[..3], 1).await;
}

/// A job let in before is not refused at the limit when its `queued`
/// event comes again (under a new delivery id): it is one of the queued
/// jobs counted, and refusing it would cancel its run.
#[tokio::test]
async fn a_repeated_queued_event_at_max_queued_is_not_refused() {
    let bed = TestBed::new();
    set(&bed, r#"{"max_instances": 1, "max_queued": 2}"#).await;
    let jobs = pinned(&bed, 1..=3, "octo-org/app");
    for j in &jobs {
        assert!(matches!(bed.send(j.queued()).await, Handled::Accepted(_)));
        let_tasks_run().await;
    }
    let again = bed.send(jobs[2].queued()).await;
    assert!(
        !matches!(again, Handled::Rejected { .. }),
        "a waiting job was refused: {again:?}"
    );
    let_tasks_run().await;
    assert_eq!(bed.record(&jobs[2]).await.state, JobState::Queued);
    assert!(bed.registry.cancelled().is_empty(), "no run cancelled");
    serve_all(&bed, &jobs, 1).await;
}

/// `max_queued` counts the owner's queued jobs in the store: jobs queued
/// through another replica count too.
#[tokio::test]
async fn max_queued_holds_across_replicas() {
    let bed = TestBed::new();
    let other = second_replica(&bed);
    set(&bed, r#"{"max_instances": 1, "max_queued": 2}"#).await;
    other.sync_tenants().await.unwrap();
    let jobs = pinned(&bed, 1..=4, "octo-org/app");
    // One runs and one waits through this replica, one waits through the
    // other: each replica alone has at most one waiting.
    for (n, j) in jobs[..3].iter().enumerate() {
        let handled = if n == 2 {
            other
                .handle(bed.delivery(&format!("other-{n}"), j.queued()))
                .await
                .unwrap()
        } else {
            bed.send(j.queued()).await
        };
        assert!(matches!(handled, Handled::Accepted(_)), "{handled:?}");
        let_tasks_run().await;
    }
    match bed.send(jobs[3].queued()).await {
        Handled::Rejected { message, .. } => {
            assert!(message.contains("max_queued = 2"), "{message}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A second replica on `bed`'s store, with a directory of its own.
fn second_replica(bed: &TestBed) -> sprinters_core::engine::Engine {
    let tenants = Tenants::new();
    tenants.connect(
        TestBed::OWNER_ID,
        TestBed::INSTALLATION_ID,
        bed.owner.clone(),
        bed.account.clone(),
    );
    let mut config = bed.engine.config().clone();
    config.tenants = tenants;
    config.replica_id = "replica-2".into();
    bed.builder().config(config).build().unwrap()
}

#[tokio::test]
async fn raising_a_cap_lets_waiting_jobs_go_at_once() {
    let bed = TestBed::new();
    set(&bed, r#"{"max_instances": 1}"#).await;
    let jobs = pinned(&bed, 1..=3, "octo-org/app");
    for j in &jobs {
        bed.send(j.queued()).await;
    }
    let_tasks_run().await;
    assert_eq!(bed.launcher.alive().len(), 1);
    set(&bed, r#"{"max_instances": 3}"#).await;
    let_tasks_run().await;
    assert_eq!(bed.launcher.alive().len(), 3, "no slot had to free first");
    serve_all(&bed, &jobs, 3).await;
}

#[tokio::test]
async fn a_waiting_job_is_held_to_a_policy_changed_while_it_waited() {
    let bed = TestBed::new();
    set(&bed, r#"{"max_instances": 1}"#).await;
    let jobs = pinned(&bed, 1..=2, "octo-org/app");
    for j in &jobs {
        bed.send(j.queued()).await;
    }
    let_tasks_run().await;
    assert_eq!(bed.launcher.alive().len(), 1, "the second waits");

    // t3.large, the jobs' type, is no longer allowed.
    set(&bed, r#"{"max_instances": 1, "instance_types": ["m7i.*"]}"#).await;
    let runner = TestBed::runner(&jobs[0], 1);
    bed.send(jobs[0].in_progress(&runner)).await;
    bed.send(jobs[0].completed(Conclusion::Success, Some(&runner)))
        .await;
    bed.settle().await;
    let second = bed.record(&jobs[1]).await;
    assert_eq!(second.state, JobState::Rejected);
    assert_eq!(
        second.message.as_deref(),
        Some("instance type t3.large is not allowed for octo-org (allowed: m7i.*)")
    );
    assert_eq!(bed.launcher.instances().len(), 1, "never launched");
    assert_eq!(bed.registry.cancelled(), [jobs[1].run_id]);
}

/// Owner A floods: forty jobs over its cap of one. Owner B's jobs, in its
/// own account, launch on arrival however long A's backlog; A's backlog
/// still goes, one at a time.
#[tokio::test]
async fn one_owners_backlog_over_its_cap_delays_no_other_owner() {
    let bed = TestBed::new();
    bed.connect("rival-org", 5353, 8, "210987654321");
    set(&bed, r#"{"max_instances": 1}"#).await;
    let flood = pinned(&bed, 1..=40, "octo-org/app");
    for j in &flood {
        assert!(matches!(bed.send(j.queued()).await, Handled::Accepted(_)));
    }
    let_tasks_run().await;
    assert_eq!(bed.launcher.alive().len(), 1, "A is held to its cap");
    for n in 0..5 {
        let b = bed
            .job(100 + n)
            .repository("rival-org/app")
            .owner(5353, 8)
            .labels(&["sprinters:aws", &format!("pin-b{n}")]);
        bed.send(b.queued()).await;
        let_tasks_run().await;
        assert_eq!(
            bed.record(&b).await.state,
            JobState::Launched,
            "B's job {n} launched on arrival"
        );
    }
    // A's one instance ends: the next of its backlog launches.
    let mut launched = Vec::new();
    for j in &flood {
        if bed.record(j).await.state == JobState::Launched {
            launched.push(j.clone());
        }
    }
    assert_eq!(launched.len(), 1);
    let runner = TestBed::runner(&launched[0], 1);
    bed.send(launched[0].in_progress(&runner)).await;
    bed.send(launched[0].completed(Conclusion::Success, Some(&runner)))
        .await;
    let_tasks_run().await;
    let mut next = 0;
    for j in &flood {
        next += usize::from(bed.record(j).await.state == JobState::Launched);
    }
    assert_eq!(next, 1, "the next of A's backlog launched");
}

/// Two owners share one AWS account capped at one instance. Owner A
/// queued six jobs before owner B queued three: as A's instances end, the
/// freed slot goes to the owners in turn, so B's jobs launch second,
/// fourth and sixth instead of after all of A's.
#[tokio::test]
async fn owners_sharing_an_account_take_its_slots_in_turn() {
    let bed = TestBed::with_config(|c| c.limits.per_account = Some(1));
    bed.connect("rival-org", 5353, 8, "123456789012");
    let a = pinned(&bed, 1..=6, "octo-org/app");
    let b: Vec<JobEvents> = (101..=103)
        .map(|i| {
            bed.job(i)
                .repository("rival-org/app")
                .owner(5353, 8)
                .labels(&["sprinters:aws", &format!("pin-{i}")])
        })
        .collect();
    for j in a.iter().chain(&b) {
        assert!(matches!(bed.send(j.queued()).await, Handled::Accepted(_)));
        let_tasks_run().await;
    }
    let all: Vec<JobEvents> = a.iter().chain(&b).cloned().collect();
    let served = serve_all(&bed, &all, 1).await;
    let owners: String = served
        .iter()
        .map(|id| if *id > 100 { 'B' } else { 'A' })
        .collect();
    assert_eq!(owners, "ABABABAAA", "served in turn: {served:?}");
    assert_eq!(bed.launcher.instances().len(), 9, "every job launched once");
}
