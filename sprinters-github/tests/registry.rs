//! The registry and the delivery recovery through `octocrab` against the
//! GitHub stand-in, which checks the App's JWT and the installation tokens
//! as GitHub does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sprinters_core::ErrorKind;
use sprinters_core::domain::{
    InstallationId, JobId, JobKey, Repository, RunAttempt, RunId, RunnerName,
};
use sprinters_core::ports::{
    CancelRun, CreateJitRunner, GetJobStatus, GetRunOrigin, ListQueuedJobs, RemoteJobStatus,
    RemoveRunner, RunnerRegistry,
};
use sprinters_core::testing::{RegistryFixture, runner_registry};
use sprinters_core::time::{Clock, ManualClock, Timestamp};
use sprinters_github::testing::{GithubStandIn, StandInJob};
use sprinters_github::{DeliveryRecovery, GithubApp, GithubAppConfig, GithubRegistry};

const APP_ID: u64 = 123456;
const INSTALLATION: u64 = 4242;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn private_key() -> SecretString {
    SecretString::from(String::from_utf8(fixture("test-app-private-key.pem")).unwrap())
}

struct World {
    github: GithubStandIn,
    clock: Arc<ManualClock>,
    app: Arc<GithubApp>,
    registry: GithubRegistry,
}

async fn world() -> World {
    let github = GithubStandIn::start(APP_ID, &fixture("test-app-public-key.pem"))
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_system_time(
        std::time::SystemTime::now(),
    )));
    let config = GithubAppConfig::new(APP_ID, private_key())
        .api_url(github.uri())
        .unwrap();
    let app = Arc::new(GithubApp::with_clock(config, clock.clone()).unwrap());
    let registry = GithubRegistry::new(app.clone());
    World {
        github,
        clock,
        app,
        registry,
    }
}

fn repo() -> Repository {
    Repository::parse("octo-org/hello").unwrap()
}

fn queued(run_id: u64) -> StandInJob {
    StandInJob {
        repository: "octo-org/hello".to_owned(),
        run_id,
        run_attempt: 1,
        status: "queued".to_owned(),
        conclusion: None,
        runner_name: None,
        labels: vec!["sprinters:aws:ubuntu-latest".to_owned()],
    }
}

fn jit(name: &str) -> CreateJitRunner {
    CreateJitRunner::new(
        InstallationId::new(INSTALLATION),
        repo(),
        RunnerName::parse(name).unwrap(),
        vec!["sprinters:aws:ubuntu-latest".to_owned(), "pin-7".to_owned()],
    )
}

#[tokio::test]
async fn the_registry_passes_the_core_conformance_suite() {
    let w = world().await;
    w.github.set_job(901, queued(7001));
    runner_registry(
        &w.registry,
        &RegistryFixture {
            installation_id: InstallationId::new(INSTALLATION),
            repository: repo(),
            queued_job: JobKey::new(JobId::new(901), RunAttempt::FIRST),
            queued_run: RunId::new(7001),
            unknown_job: JobId::new(999_999),
        },
    )
    .await;
}

#[tokio::test]
async fn where_a_run_came_from_is_read_from_the_run_and_the_listing() {
    let w = world().await;
    w.github.set_job(902, queued(7002));
    w.github.set_job(903, queued(7003));
    w.github.set_public_run(7002, Some("stranger/hello"));
    w.github.set_public_run(7003, Some("octo-org/hello"));
    let origin = |run: u64| {
        w.registry.run_origin(GetRunOrigin::new(
            InstallationId::new(INSTALLATION),
            repo(),
            RunId::new(run),
        ))
    };
    let fork = origin(7002).await.unwrap();
    assert!(!fork.repository_private);
    assert!(fork.from_fork(&repo()));
    let own = origin(7003).await.unwrap();
    assert!(!own.repository_private);
    assert!(!own.from_fork(&repo()));
    assert!(!own.by_pull_request_target());
    w.github.set_run_event(7003, "pull_request_target");
    assert!(origin(7003).await.unwrap().by_pull_request_target());
    assert_eq!(
        *origin(7999).await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "an unknown run"
    );
    let listed = w
        .registry
        .list_queued_jobs(ListQueuedJobs::new(
            InstallationId::new(INSTALLATION),
            repo(),
        ))
        .await
        .unwrap();
    let of = |job: u64| {
        listed
            .jobs
            .iter()
            .find(|j| j.job.job_id == JobId::new(job))
            .and_then(|j| j.origin.clone())
            .unwrap()
    };
    assert!(of(902).from_fork(&repo()));
    assert!(!of(903).from_fork(&repo()));
}

#[tokio::test]
async fn a_jit_runner_carries_every_label_and_its_config_stays_secret() {
    let w = world().await;
    let runner = w
        .registry
        .create_jit_runner(jit("sprinters-77-1-1"))
        .await
        .unwrap();
    let (repository, name, labels) = w.github.runners()[&runner.runner_id].clone();
    assert_eq!(repository, "octo-org/hello");
    assert_eq!(name, "sprinters-77-1-1");
    assert_eq!(
        labels,
        ["sprinters:aws:ubuntu-latest", "pin-7"],
        "the pinning label too"
    );
    assert!(!format!("{runner:?}").contains(runner.encoded_jit_config.expose_secret()));
    assert!(
        w.github
            .requests()
            .iter()
            .any(|r| r == "POST /repos/octo-org/hello/actions/runners/generate-jitconfig")
    );
}

#[tokio::test]
async fn installation_tokens_are_shared_and_refreshed_before_they_expire() {
    let w = world().await;
    let calls = (0..8).map(|i| {
        w.registry
            .create_jit_runner(jit(&format!("sprinters-80-1-{i}")))
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(
        w.github.token_requests().get(&INSTALLATION),
        Some(&1),
        "eight calls, one token"
    );
    w.clock.advance(Duration::from_secs(54 * 60));
    w.registry
        .create_jit_runner(jit("sprinters-81-1-1"))
        .await
        .unwrap();
    assert_eq!(w.github.token_requests().get(&INSTALLATION), Some(&1));
    // 56 minutes in: inside the last 5 minutes whatever the stand-in's
    // rounding (it dates the token in whole seconds of the real clock, the
    // test clock started a moment earlier at millisecond precision; at
    // exactly 55 minutes the two could disagree by that second).
    w.clock.advance(Duration::from_secs(2 * 60));
    w.registry
        .create_jit_runner(jit("sprinters-82-1-1"))
        .await
        .unwrap();
    assert_eq!(
        w.github.token_requests().get(&INSTALLATION),
        Some(&2),
        "a new token 5 minutes before the old one expires"
    );
}

#[tokio::test]
async fn a_jwt_for_another_app_is_refused_as_permission_denied() {
    let w = world().await;
    // Another App id: the stand-in refuses the JWT, as GitHub would.
    let other = GithubAppConfig::new(APP_ID + 1, private_key())
        .api_url(w.github.uri())
        .unwrap();
    let registry = GithubRegistry::new(Arc::new(GithubApp::new(other).unwrap()));
    let err = registry
        .create_jit_runner(jit("sprinters-90-1-1"))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(w.github.runners().is_empty());
}

#[test]
fn a_key_that_is_not_pem_is_a_config_error() {
    let config = GithubAppConfig::new(APP_ID, SecretString::from("not a key".to_owned()));
    let err = GithubApp::new(config).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config);
    assert!(err.message().contains("PEM"), "{err}");
    assert!(!format!("{:?}", GithubAppConfig::new(APP_ID, private_key())).contains("PRIVATE KEY"));
}

#[tokio::test]
async fn rate_limits_become_rate_limited_with_the_wait() {
    let w = world().await;
    w.github.fail(
        "generate-jitconfig",
        403,
        &[
            ("x-ratelimit-remaining", "0"),
            (
                "x-ratelimit-reset",
                &(w.clock.now().as_millis() / 1000 + 120).to_string(),
            ),
        ],
        "API rate limit exceeded for installation ID 4242.",
        1,
    );
    let err = w
        .registry
        .create_jit_runner(jit("sprinters-91-1-1"))
        .await
        .unwrap_err();
    match err.kind() {
        ErrorKind::RateLimited {
            retry_after: Some(wait),
        } => {
            assert!((110..=120).contains(&wait.as_secs()), "{wait:?}")
        }
        other => panic!("{other:?}: {err}"),
    }
    assert!(err.is_retryable());

    w.github.fail(
        "generate-jitconfig",
        403,
        &[("retry-after", "30")],
        "You have exceeded a secondary rate limit.",
        1,
    );
    let err = w
        .registry
        .create_jit_runner(jit("sprinters-92-1-1"))
        .await
        .unwrap_err();
    assert_eq!(
        *err.kind(),
        ErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(30))
        }
    );
}

/// The stand-in holds an installation to its hourly REST limit, as GitHub
/// does; past it the client answers rate limited with the wait until the
/// window resets, without reading the answer as a permission refusal.
#[tokio::test]
async fn an_installations_hourly_limit_is_held_and_honoured() {
    let w = world().await;
    w.github.set_job(903, queued(7003));
    w.github.set_rate_limit(INSTALLATION, 2);
    let status = || {
        w.registry.job_status(GetJobStatus::new(
            InstallationId::new(INSTALLATION),
            repo(),
            JobId::new(903),
        ))
    };
    // The installation token's own request is the App's (its JWT), not
    // the installation's: both calls fit the limit of two.
    status().await.unwrap();
    status().await.unwrap();
    let err = status().await.expect_err("the hour's third request");
    match err.kind() {
        ErrorKind::RateLimited {
            retry_after: Some(wait),
        } => assert!(wait.as_secs() <= 3600, "{wait:?}"),
        other => panic!("{other:?}: {err}"),
    }
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_secondary_limit_is_read_as_rate_limited_with_githubs_wait() {
    let w = world().await;
    w.github.set_job(904, queued(7004));
    w.github.set_secondary_limit(INSTALLATION, 1);
    w.registry
        .create_jit_runner(jit("sprinters-904-1-1"))
        .await
        .unwrap();
    // Reading is not content-creating: not held to that limit.
    w.registry
        .job_status(GetJobStatus::new(
            InstallationId::new(INSTALLATION),
            repo(),
            JobId::new(904),
        ))
        .await
        .unwrap();
    let err = w
        .registry
        .create_jit_runner(jit("sprinters-904-1-2"))
        .await
        .expect_err("the minute's second runner");
    match err.kind() {
        ErrorKind::RateLimited {
            retry_after: Some(wait),
        } => assert!(wait.as_secs() >= 1 && wait.as_secs() <= 60, "{wait:?}"),
        other => panic!("{other:?}: {err}"),
    }
    assert!(err.message().contains("secondary rate limit"), "{err}");
}

#[tokio::test]
async fn refusals_name_the_missing_permission() {
    let w = world().await;
    w.github.fail(
        "generate-jitconfig",
        403,
        &[],
        "Resource not accessible by integration",
        1,
    );
    let err = w
        .registry
        .create_jit_runner(jit("sprinters-93-1-1"))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::PermissionDenied);
    assert!(err.message().contains("administration: write"), "{err}");

    w.github.set_job(902, queued(7002));
    w.github.fail(
        "/actions/jobs/902",
        403,
        &[],
        "Resource not accessible by integration",
        1,
    );
    let err = w
        .registry
        .job_status(GetJobStatus::new(
            InstallationId::new(INSTALLATION),
            repo(),
            JobId::new(902),
        ))
        .await
        .unwrap_err();
    assert!(err.message().contains("actions: read"), "{err}");

    w.github.fail(
        "/cancel",
        403,
        &[],
        "Resource not accessible by integration",
        1,
    );
    let err = w
        .registry
        .cancel_run(CancelRun::new(
            InstallationId::new(INSTALLATION),
            repo(),
            RunId::new(7002),
        ))
        .await
        .unwrap_err();
    assert!(err.message().contains("actions: write"), "{err}");
}

#[tokio::test]
async fn server_errors_are_retryable_and_the_client_retries_once() {
    let w = world().await;
    w.github.set_job(903, queued(7003));
    let ask = || GetJobStatus::new(InstallationId::new(INSTALLATION), repo(), JobId::new(903));
    w.github
        .fail("/actions/jobs/903", 502, &[], "Server Error", 1);
    let status = w.registry.job_status(ask()).await.unwrap();
    assert_eq!(
        status.status,
        RemoteJobStatus::Queued,
        "one 502 is retried by the client"
    );
    w.github
        .fail("/actions/jobs/903", 503, &[], "Server Error", 5);
    let err = w.registry.job_status(ask()).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
}

/// As GitHub: a runner running a job cannot be deleted (422), and a
/// runner is deleted only through its own repository.
#[tokio::test]
async fn a_busy_runner_or_another_repositorys_is_not_deleted() {
    let w = world().await;
    let runner = w
        .registry
        .create_jit_runner(jit("sprinters-95-1-1"))
        .await
        .unwrap();
    let mut job = queued(7005);
    job.status = "in_progress".to_owned();
    job.runner_name = Some("sprinters-95-1-1".to_owned());
    w.github.set_job(905, job.clone());
    let remove = |repository: Repository| {
        RemoveRunner::new(
            InstallationId::new(INSTALLATION),
            repository,
            runner.runner_id,
        )
    };
    let busy = w
        .registry
        .remove_runner(remove(repo()))
        .await
        .expect_err("it runs a job");
    assert_eq!(*busy.kind(), ErrorKind::Conflict, "{busy}");
    assert!(busy.to_string().contains("still running a job"), "{busy}");
    // Through another repository it is not found (which removing treats
    // as gone): it stays.
    w.registry
        .remove_runner(remove(Repository::parse("octo-org/other").unwrap()))
        .await
        .unwrap();
    assert_eq!(w.github.runners().len(), 1);
    job.status = "completed".to_owned();
    w.github.set_job(905, job);
    w.registry.remove_runner(remove(repo())).await.unwrap();
    assert!(w.github.runners().is_empty());
}

#[tokio::test]
async fn removing_a_runner_that_is_gone_succeeds() {
    let w = world().await;
    let runner = w
        .registry
        .create_jit_runner(jit("sprinters-94-1-1"))
        .await
        .unwrap();
    let remove = || RemoveRunner::new(InstallationId::new(INSTALLATION), repo(), runner.runner_id);
    w.registry.remove_runner(remove()).await.unwrap();
    w.registry.remove_runner(remove()).await.unwrap();
    assert!(w.github.runners().is_empty());
}

#[tokio::test]
async fn failed_deliveries_are_redelivered_once_each() {
    let w = world().await;
    let now = w.clock.now().as_millis() / 1000;
    // Delivered fine.
    w.github.log_delivery("guid-ok", now - 100, 200);
    // Failed, then redelivered successfully already.
    w.github.log_delivery("guid-recovered", now - 90, 503);
    w.github.log_delivery("guid-recovered", now - 80, 202);
    // Failed twice: redeliver the latest attempt.
    w.github.log_delivery("guid-lost", now - 70, 502);
    let latest = w.github.log_delivery("guid-lost", now - 60, 504);
    // Failed, but before the window.
    w.github.log_delivery("guid-ancient", now - 10_000, 500);
    // Enough successful noise to need a second page.
    for i in 0..150 {
        w.github
            .log_delivery(&format!("guid-noise-{i}"), now - 50, 202);
    }
    let recovery = DeliveryRecovery::new(w.app.clone(), w.clock.clone());
    let since = w.clock.now().saturating_sub(Duration::from_secs(3600));
    let report = recovery.recover_since(since).await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(report.redelivered, 1);
    assert_eq!(report.scanned, 155);
    assert_eq!(w.github.redelivered(), [latest]);
    assert!(
        w.github.requests().iter().any(|r| r.contains("cursor=100")),
        "the second page was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_runs_on_the_clock_until_shutdown() {
    let w = world().await;
    let now = w.clock.now().as_millis() / 1000;
    w.github.log_delivery("guid-lost", now - 60, 500);
    let recovery = Arc::new(DeliveryRecovery::new(w.app.clone(), w.clock.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let recovery = recovery.clone();
        tokio::spawn(async move {
            recovery
                .run(Duration::from_secs(300), Duration::from_secs(3600), async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    // The first pass runs at once, then the loop waits on the clock.
    while w.clock.sleepers() == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        w.github.redelivered().len(),
        1,
        "the first pass redelivered"
    );
    w.github.log_delivery("guid-lost-later", now, 502);
    w.clock.advance(Duration::from_secs(300));
    while w.clock.sleepers() == 0 || w.github.redelivered().len() < 2 {
        tokio::task::yield_now().await;
    }
    stop.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(
        w.github.redelivered().len(),
        2,
        "the second pass, five minutes later, redelivered only the new failure"
    );
}

#[tokio::test]
async fn a_pass_reads_the_whole_window_however_many_pages() {
    let w = world().await;
    let now = w.clock.now().as_millis() / 1000;
    // The oldest delivery of the window failed; 1,200 newer ones (twelve
    // pages) came after it.
    let lost = w.github.log_delivery("guid-lost-early", now - 3000, 502);
    for i in 0..1200 {
        w.github
            .log_delivery(&format!("guid-noise-{i}"), now - 100, 202);
    }
    let recovery = DeliveryRecovery::new(w.app.clone(), w.clock.clone());
    let since = w.clock.now().saturating_sub(Duration::from_secs(3600));
    let report = recovery.recover_since(since).await.unwrap();
    assert_eq!(report.scanned, 1201, "{report:?}");
    assert_eq!(w.github.redelivered(), [lost]);
    assert_eq!(report.left, 0);
    assert_eq!(report.resume_from, w.clock.now());
}

#[tokio::test]
async fn failures_over_the_cap_are_left_for_the_next_pass_not_skipped() {
    let w = world().await;
    let now = w.clock.now().as_millis() / 1000;
    let lost: Vec<u64> = (0..5u64)
        .map(|i| {
            w.github
                .log_delivery(&format!("guid-lost-{i}"), now - 500 + i * 10, 500)
        })
        .collect();
    let recovery = DeliveryRecovery::new(w.app.clone(), w.clock.clone()).max_redeliveries(2);
    let mut since = w.clock.now().saturating_sub(Duration::from_secs(3600));
    let first = recovery.recover_since(since).await.unwrap();
    assert_eq!((first.failed, first.redelivered, first.left), (5, 2, 3));
    assert_eq!(w.github.redelivered(), lost[..2], "the oldest first");
    // The checkpoint stops at the first failure not redelivered.
    assert_eq!(
        first.resume_from,
        Timestamp::from_millis((now - 500 + 20) * 1000)
    );
    for _ in 0..3 {
        since = recovery.recover_since(since).await.unwrap().resume_from;
    }
    let mut all = w.github.redelivered();
    all.sort_unstable();
    assert_eq!(all, lost, "every failed delivery was redelivered once");
}

#[tokio::test(start_paused = true)]
async fn github_that_never_answers_fails_retryable_after_the_timeout() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            held.push(socket);
        }
    });
    let clock = Arc::new(ManualClock::new(Timestamp::from_system_time(
        std::time::SystemTime::now(),
    )));
    let config = GithubAppConfig::new(APP_ID, private_key())
        .api_url(format!("http://{addr}"))
        .unwrap()
        .request_timeout(Duration::from_secs(20));
    let app = Arc::new(GithubApp::with_clock(config, clock).unwrap());
    let registry = GithubRegistry::new(app);
    let started = tokio::time::Instant::now();
    // Two calls for one installation: the second waits for the token the
    // first is fetching, inside its own bound.
    let (first, second) = tokio::join!(
        registry.create_jit_runner(jit("sprinters-95-1-1")),
        registry.create_jit_runner(jit("sprinters-96-1-1")),
    );
    let err = first.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("did not answer within 20s"),
        "{err}"
    );
    assert!(second.unwrap_err().is_retryable());
    // One bound for the wait, the token request and the call together.
    assert!(
        started.elapsed() <= Duration::from_secs(21),
        "{:?}",
        started.elapsed()
    );
    silent.abort();
}

#[tokio::test]
async fn a_refused_redelivery_is_passed_over_and_a_failed_one_retried_next_pass() {
    let w = world().await;
    let now = w.clock.now().as_millis() / 1000;
    let refused = w.github.log_delivery("guid-too-old", now - 300, 500);
    let flaky = w.github.log_delivery("guid-flaky", now - 200, 500);
    let last = w.github.log_delivery("guid-last", now - 100, 500);
    w.github.fail(
        &format!("/deliveries/{refused}/attempts"),
        422,
        &[],
        "Validation Failed",
        1,
    );
    // The client retries a 5xx once: both attempts fail.
    w.github.fail(
        &format!("/deliveries/{flaky}/attempts"),
        502,
        &[],
        "Bad Gateway",
        2,
    );
    let recovery = DeliveryRecovery::new(w.app.clone(), w.clock.clone());
    let since = w.clock.now().saturating_sub(Duration::from_secs(3600));
    let first = recovery.recover_since(since).await.unwrap();
    assert_eq!(
        (first.redelivered, first.skipped, first.left),
        (0, 1, 2),
        "{first:?}"
    );
    assert_eq!(
        first.resume_from,
        Timestamp::from_millis((now - 200) * 1000),
        "the next pass starts at the delivery that failed"
    );
    let second = recovery.recover_since(first.resume_from).await.unwrap();
    assert_eq!((second.redelivered, second.left), (2, 0), "{second:?}");
    assert_eq!(w.github.redelivered(), [flaky, last]);
}
