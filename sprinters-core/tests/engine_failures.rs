//! Rejections, permission and capacity errors, spot fallback and re-runs,
//! transient errors with backoff, and crashes in the middle of a launch.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use sprinters_core::domain::AccountId;
use sprinters_core::engine::Handled;
use sprinters_core::events::Conclusion;
use sprinters_core::job::{EndReason, JobState};
use sprinters_core::ports::{JobStore, Market, MockRunnerRegistry};
use sprinters_core::testing::TestBed;
use sprinters_core::time::Clock;
use sprinters_core::{Error, ErrorKind};

#[tokio::test]
async fn a_label_error_is_rejected_with_its_message_and_never_retried() {
    let bed = TestBed::new();
    let job = bed.job(1).labels(&["sprinters:aws:spot=maybe"]);
    let handled = bed.send(job.queued()).await;
    let message = "invalid runs-on label `sprinters:aws:spot=maybe`: spot=maybe: expected one of false, true, auto, rerun";
    assert_eq!(
        handled,
        Handled::Rejected {
            job: job.key,
            message: message.into()
        }
    );
    bed.send(job.queued()).await;
    bed.engine.process_due().await.unwrap();
    bed.advance(Duration::from_secs(3600));
    bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Rejected);
    assert_eq!(record.message.as_deref(), Some(message));
    assert_eq!(bed.registry.jit_configs(), 0);
    assert_eq!(bed.launcher.launch_calls(), 0);
    assert_eq!(bed.credentials.calls(), 0);
}

#[tokio::test]
async fn an_account_the_owner_has_not_connected_is_rejected_without_any_call() {
    let bed = TestBed::new();
    let other = bed
        .job(1)
        .labels(&["sprinters:aws/999999999999:ubuntu-latest"]);
    let Handled::Rejected { message, .. } = bed.send(other.queued()).await else {
        panic!("not rejected")
    };
    assert!(
        message.contains("999999999999 is not connected to octo-org"),
        "{message}"
    );

    let stranger = bed.job(2).repository("intruder/app").owner(9999, 99);
    let Handled::Rejected { message, .. } = bed.send(stranger.queued()).await else {
        panic!("not rejected")
    };
    assert!(
        message.contains("intruder has no AWS account connected"),
        "{message}"
    );

    // Even naming the connected account of another owner is refused.
    let probe = bed
        .job(3)
        .repository("intruder/app")
        .owner(9999, 99)
        .labels(&["sprinters:aws/123456789012"]);
    assert!(matches!(
        bed.send(probe.queued()).await,
        Handled::Rejected { .. }
    ));
    bed.settle().await;
    assert_eq!(
        bed.credentials.calls(),
        0,
        "the account is never even probed"
    );
    assert_eq!(bed.launcher.launch_calls(), 0);

    // Naming one's own connected account is fine.
    let own = bed.job(4).labels(&["sprinters:aws/123456789012"]);
    assert_eq!(bed.send(own.queued()).await, Handled::Accepted(own.key));
}

/// EC2 refusing the customer's role a permission fails the job for good and
/// cancels its run: it can never run as asked.
#[tokio::test]
async fn a_permission_ec2_refuses_cancels_the_run() {
    let bed = TestBed::new();
    bed.launcher.faults().fail_next("launch", 1, || {
        Error::permission_denied("not allowed to call ec2:RunInstances")
    });
    let job = bed.job(1);
    bed.send(job.queued()).await;
    bed.settle().await;
    assert_eq!(bed.record(&job).await.state, JobState::Failed);
    assert_eq!(bed.registry.cancelled(), [job.run_id]);
}

/// A tenant's job that can never run (a malformed label, an account its
/// owner has not connected) is rejected and its run cancelled, so the user
/// sees it end at once; a stranger's run is left alone.
#[tokio::test]
async fn a_job_that_can_never_run_has_its_run_cancelled() {
    let bed = TestBed::new();
    let malformed = bed.job(1).labels(&["sprinters:aws:root=io2/3000/150"]);
    assert!(matches!(
        bed.send(malformed.queued()).await,
        Handled::Rejected { .. }
    ));
    let unconnected = bed.job(2).labels(&["sprinters:aws/210987654321"]);
    assert!(matches!(
        bed.send(unconnected.queued()).await,
        Handled::Rejected { .. }
    ));
    let stranger = bed
        .job(3)
        .repository("intruder/app")
        .owner(9999, 99)
        .labels(&["sprinters:aws:root=io2/3000/150"]);
    assert!(matches!(
        bed.send(stranger.queued()).await,
        Handled::Rejected { .. }
    ));
    bed.settle().await;
    assert_eq!(
        bed.registry.cancelled(),
        [malformed.run_id, unconnected.run_id]
    );
    assert_eq!(bed.credentials.calls(), 0);
}

#[tokio::test]
async fn a_permission_error_fails_fast_with_what_to_grant() {
    let bed = TestBed::new();
    bed.credentials
        .deny(AccountId::parse("123456789012").unwrap());
    let job = bed.job(1);
    bed.send(job.queued()).await;
    bed.settle().await;
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Failed);
    let message = record.message.unwrap();
    assert!(
        message.starts_with("launch failed: permission_denied"),
        "{message}"
    );
    assert!(
        message.contains("sts:ExternalId"),
        "says what the trust policy needs: {message}"
    );
    assert!(
        bed.registry.cancelled().is_empty(),
        "STS refusing may be the platform's fault: no tenant's run is cancelled for it"
    );
    bed.advance(Duration::from_secs(3600));
    bed.engine.process_due().await.unwrap();
    bed.settle().await;
    assert_eq!(bed.credentials.calls(), 1, "not retried");
    assert!(
        bed.registry.runners().is_empty(),
        "the unusable JIT runner is removed"
    );
}

#[tokio::test]
async fn no_spot_capacity_falls_back_to_on_demand_with_spot_auto() {
    let bed = TestBed::new();
    bed.launcher.set_spot_capacity(false);
    let job = bed.job(1).labels(&["sprinters:aws:spot=auto"]);
    bed.send(job.queued()).await;
    bed.settle().await;
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Launched);
    let launch = &record.launches[0];
    assert!(
        !launch.spot && launch.spot_fallback,
        "recorded as a spot-to-on-demand fallback"
    );
    assert_eq!(bed.launcher.instances().len(), 1);
}

#[tokio::test]
async fn no_spot_capacity_fails_with_spot_true() {
    let bed = TestBed::new();
    bed.launcher.set_spot_capacity(false);
    let job = bed.job(1).labels(&["sprinters:aws:spot=true"]);
    bed.send(job.queued()).await;
    bed.settle().await;
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Failed);
    assert!(record.message.unwrap().contains("no spot capacity"));
    assert!(bed.launcher.instances().is_empty());
}

#[tokio::test]
async fn a_reclaimed_spot_rerun_job_is_rerun_on_on_demand() {
    let bed = TestBed::new();
    let job = bed.job(1).labels(&["sprinters:aws:spot=rerun"]);
    bed.send(job.queued()).await;
    bed.settle().await;
    let runner = TestBed::runner(&job, 1);
    bed.send(job.in_progress(&runner)).await;
    let record = bed.record(&job).await;
    let instance = record.launches[0].instance_id.clone().unwrap();
    assert!(record.launches[0].spot);
    bed.launcher.reclaim(&instance);

    // The reclaim is seen while the job's run is in progress, and GitHub
    // refuses to re-run a job of a run in progress: the re-run waits.
    let report = bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert_eq!((report.reclaimed, report.reruns), (1, 0));
    assert!(
        bed.registry.reruns().is_empty(),
        "refused while in progress"
    );
    let record = bed.record(&job).await;
    assert!(record.rerun_pending && !record.rerun_requested);

    // GitHub fails the job (its runner is gone) and the run completes: the
    // next pass asks again, and GitHub accepts.
    bed.send(job.completed(Conclusion::Failure, Some(&runner)))
        .await;
    bed.settle().await;
    let report = bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert_eq!(report.reruns, 1);
    assert_eq!(bed.registry.reruns(), vec![job.key.job_id]);
    let record = bed.record(&job).await;
    assert!(record.rerun_requested && !record.rerun_pending);
    assert_eq!(
        record.launches[0].ended.map(|(_, r)| r),
        Some(EndReason::SpotReclaimed)
    );
    bed.engine.reconcile().await.unwrap();
    assert_eq!(bed.registry.reruns().len(), 1, "asked once only");

    // GitHub queues attempt 2, which launches on-demand.
    let rerun = bed.job(1).labels(&["sprinters:aws:spot=rerun"]).attempt(2);
    bed.send(rerun.queued()).await;
    bed.settle().await;
    let launch = &bed.record(&rerun).await.launches[0];
    assert!(!launch.spot, "the re-run is on-demand");
    let token = bed
        .launcher
        .instance(launch.instance_id.as_ref().unwrap())
        .unwrap()
        .idempotency_token;
    assert!(
        token.ends_with(&format!("-1-2-1-{}", &Market::OnDemand.as_str()[..1])),
        "{token}"
    );
}

#[tokio::test]
async fn a_reclaimed_spot_job_without_rerun_is_not_rerun() {
    let bed = TestBed::new();
    let job = bed.job(1).labels(&["sprinters:aws:spot=auto"]);
    bed.send(job.queued()).await;
    bed.settle().await;
    bed.send(job.in_progress(&TestBed::runner(&job, 1))).await;
    let instance = bed.record(&job).await.launches[0]
        .instance_id
        .clone()
        .unwrap();
    bed.launcher.reclaim(&instance);
    let report = bed.engine.reconcile().await.unwrap();
    assert_eq!((report.reclaimed, report.reruns), (1, 0));
    assert!(bed.registry.reruns().is_empty());
}

#[tokio::test]
async fn a_rate_limited_installation_waits_the_time_github_named_and_no_other_does() {
    let bed = TestBed::new();
    bed.connect("rival-org", 5353, 8, "210987654321");
    bed.registry.faults().fail_next("create_jit_runner", 1, || {
        Error::rate_limited(
            Some(Duration::from_secs(120)),
            "You have exceeded a secondary rate limit",
        )
    });
    let first = bed.job(1);
    bed.send(first.queued()).await;
    bed.settle().await;
    let record = bed.record(&first).await;
    assert_eq!(record.state, JobState::Queued);
    let wait = record.next_attempt_at.unwrap().since(bed.clock.now());
    assert!(wait >= Duration::from_secs(120), "{wait:?}");

    // The installation's next job, a minute into the pause, does not call
    // GitHub; it waits for the pause's end too.
    bed.advance(Duration::from_secs(60));
    let second = bed.job(2);
    bed.send(second.queued()).await;
    bed.settle().await;
    assert_eq!(bed.registry.jit_configs(), 0, "no call during the pause");
    let wait = bed.record(&second).await.next_attempt_at.unwrap();
    assert!(wait.since(bed.clock.now()) >= Duration::from_secs(60));

    // Another owner's installation is not paused.
    let rival = bed.job(3).repository("rival-org/app").owner(5353, 8);
    bed.send(rival.queued()).await;
    bed.settle().await;
    assert_eq!(bed.record(&rival).await.state, JobState::Launched);

    bed.advance(Duration::from_secs(60));
    bed.engine.process_due().await.unwrap();
    bed.settle().await;
    assert_eq!(bed.record(&first).await.state, JobState::Launched);
    assert_eq!(bed.record(&second).await.state, JobState::Launched);
}

#[tokio::test]
async fn transient_errors_retry_with_capped_exponential_backoff_and_jitter() {
    let bed = TestBed::with_config(|c| {
        c.retry.base = Duration::from_secs(2);
        c.retry.max = Duration::from_secs(8);
        c.retry.max_attempts = 10;
    });
    bed.launcher.faults().fail_next("launch", 5, || {
        Error::rate_limited(None, "RequestLimitExceeded")
    });
    let job = bed.job(1);
    bed.send(job.queued()).await;
    bed.settle().await;

    let mut delays = Vec::new();
    for attempt in 1..=5u32 {
        let record = bed.record(&job).await;
        assert_eq!(record.state, JobState::Queued, "attempt {attempt}");
        assert_eq!(record.failed_attempts, attempt);
        let delay = record.next_attempt_at.unwrap().since(bed.clock.now());
        let ceiling = Duration::from_secs(2u64 << (attempt - 1)).min(Duration::from_secs(8));
        assert!(
            delay >= ceiling / 2 && delay <= ceiling,
            "attempt {attempt}: {delay:?} not in [{:?}, {ceiling:?}]",
            ceiling / 2
        );
        delays.push(delay);

        // Not before the delay...
        bed.advance(delay - Duration::from_millis(1));
        bed.engine.process_due().await.unwrap();
        bed.settle().await;
        assert_eq!(
            bed.record(&job).await.failed_attempts,
            attempt,
            "no retry before the backoff"
        );
        // ...and right after it.
        bed.advance(Duration::from_millis(1));
        bed.engine.process_due().await.unwrap();
        bed.settle().await;
    }
    assert_eq!(bed.record(&job).await.state, JobState::Launched);
    assert_eq!(bed.launcher.instances().len(), 1);
    assert_eq!(
        bed.record(&job).await.launches.len(),
        1,
        "every retry reuses the same launch"
    );
    let distinct: std::collections::HashSet<_> =
        delays.iter().map(|d| d.as_millis() % 1000).collect();
    assert!(distinct.len() > 1, "jitter spreads the delays: {delays:?}");
}

#[tokio::test]
async fn retries_stop_after_max_attempts_and_the_job_fails_with_the_reason() {
    let bed = TestBed::with_config(|c| c.retry.max_attempts = 3);
    bed.launcher
        .faults()
        .fail_next("launch", 10, || Error::unavailable("EC2 is down"));
    let job = bed.job(1);
    bed.send(job.queued()).await;
    bed.settle().await;
    for _ in 0..5 {
        bed.advance(Duration::from_secs(600));
        bed.engine.process_due().await.unwrap();
        bed.settle().await;
    }
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Failed);
    assert_eq!(record.failed_attempts, 3);
    assert_eq!(
        record.message.as_deref(),
        Some("launch failed after 3 attempts: unavailable: EC2 is down")
    );
}

/// A bed whose store fails the first write that records an instance: the
/// crash window between `RunInstances` answering and the store knowing.
fn crashing_before_the_instance_is_recorded() -> TestBed {
    let armed = std::sync::atomic::AtomicBool::new(true);
    TestBed::with_store_hook(move |record| {
        let records_instance = record.launches.iter().any(|l| l.instance_id.is_some());
        if records_instance && armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::unavailable("crashed before recording the instance"));
        }
        Ok(())
    })
}

#[tokio::test]
async fn a_launch_that_reached_ec2_before_a_crash_is_adopted_not_repeated() {
    // Fails the one write that records the instance: the crash window
    // between `RunInstances` answering and the store knowing.
    let bed = crashing_before_the_instance_is_recorded();
    let engine = bed.engine.clone();
    let job = bed.job(1);
    engine
        .handle(bed.delivery("d", job.queued()))
        .await
        .unwrap();
    engine.drain().await;
    let record = bed.record(&job).await;
    assert_eq!(
        record.state,
        JobState::Launching,
        "the intent is durable, the result is not"
    );
    assert_eq!(record.launches[0].instance_id, None);
    assert_eq!(bed.launcher.instances().len(), 1, "RunInstances did run");

    // While the claim holds, nobody else launches.
    engine.process_due().await.unwrap();
    engine.drain().await;
    assert_eq!(bed.launcher.launch_calls(), 1);

    // Once it lapses, the next attempt finds the instance by its tags.
    bed.advance(Duration::from_secs(301));
    engine.process_due().await.unwrap();
    engine.drain().await;
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Launched);
    assert_eq!(
        bed.launcher.instances().len(),
        1,
        "exactly one instance for the job"
    );
    assert_eq!(
        bed.launcher.launch_calls(),
        1,
        "adopted without calling RunInstances again"
    );
    assert_eq!(
        bed.registry.jit_configs(),
        1,
        "and without a second runner that would orphan the first"
    );
    assert_eq!(
        record.launches[0].instance_id.as_ref(),
        Some(&bed.launcher.instances()[0].info.instance_id)
    );
}

/// The same crash, but the resumed launch's look-up misses the instance (a
/// `RunInstances` still in flight when its process died, or a lagging
/// listing): its own `RunInstances` carries the same client token with a
/// new JIT config, EC2 refuses it (IdempotentParameterMismatch), and the
/// engine adopts the first instance instead of failing the attempt.
#[tokio::test]
async fn a_launch_whose_token_ec2_refuses_as_reused_adopts_the_first_instance() {
    let bed = crashing_before_the_instance_is_recorded();
    let engine = bed.engine.clone();
    let job = bed.job(1);
    engine
        .handle(bed.delivery("d", job.queued()))
        .await
        .unwrap();
    engine.drain().await;
    assert_eq!(bed.launcher.instances().len(), 1, "RunInstances did run");

    // Both look-ups miss it, the second after the in-flight window.
    bed.launcher.lag_next_listings(2);
    bed.advance(Duration::from_secs(301));
    engine.process_due().await.unwrap();
    engine.drain().await;
    bed.advance(engine.config().in_flight_window + Duration::from_secs(1));
    engine.process_due().await.unwrap();
    engine.drain().await;
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Launched, "{:?}", record.message);
    assert_eq!(
        record.failed_attempts, 0,
        "a launch recorded clears its failures"
    );
    assert_eq!(
        bed.launcher.instances().len(),
        1,
        "exactly one instance for the job"
    );
    assert_eq!(
        record.launches[0].instance_id.as_ref(),
        Some(&bed.launcher.instances()[0].info.instance_id)
    );
}

/// A launch cut short whose `RunInstances` is still on its way when the
/// launch resumes (the look-up misses it): the resumed launch waits out the
/// in-flight window and looks again, rather than replacing the JIT runner
/// whose config that instance runs, and adopts the instance when it shows.
#[tokio::test]
async fn a_resumed_launch_waits_for_an_instance_still_on_its_way() {
    let bed = crashing_before_the_instance_is_recorded();
    let engine = bed.engine.clone();
    let job = bed.job(1);
    engine
        .handle(bed.delivery("d", job.queued()))
        .await
        .unwrap();
    engine.drain().await;
    assert_eq!(bed.registry.jit_configs(), 1);

    bed.launcher.lag_next_listings(1);
    bed.advance(Duration::from_secs(301));
    engine.process_due().await.unwrap();
    engine.drain().await;
    assert_eq!(
        bed.registry.jit_configs(),
        1,
        "the earlier attempt's runner is not replaced yet"
    );
    let waiting = bed.record(&job).await;
    assert_eq!(waiting.state, JobState::Queued);
    assert_eq!(waiting.failed_attempts, 0, "waiting is no failed attempt");

    bed.advance(engine.config().in_flight_window + Duration::from_secs(1));
    engine.process_due().await.unwrap();
    engine.drain().await;
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Launched, "{:?}", record.message);
    assert_eq!(bed.registry.jit_configs(), 1, "its runner kept");
    assert_eq!(bed.launcher.instances().len(), 1);
    assert_eq!(bed.launcher.launch_calls(), 1, "RunInstances once");
}

/// A launch cut short (the instance exists, the store never heard of it)
/// whose job then ran and finished elsewhere: once nothing is active any
/// more, the sweep still looks in the account and ends the instance.
#[tokio::test]
async fn an_instance_a_crash_left_unrecorded_is_ended_once_nothing_is_active() {
    let bed = crashing_before_the_instance_is_recorded();
    let engine = bed.engine.clone();
    let job = bed.job(1);
    engine
        .handle(bed.delivery("d-1", job.queued()))
        .await
        .unwrap();
    engine.drain().await;
    let runner = TestBed::runner(&job, 1);
    for (id, event) in [
        ("d-2", job.in_progress(&runner)),
        (
            "d-3",
            job.completed(sprinters_core::events::Conclusion::Success, Some(&runner)),
        ),
    ] {
        bed.tell_github(&event);
        engine.handle(bed.delivery(id, event)).await.unwrap();
    }
    engine.drain().await;
    assert!(bed.launcher.instances()[0].info.state.is_alive());

    // The claim lapses; the launch is closed, then the sweep finds the
    // instance although no job is active.
    bed.advance(Duration::from_secs(301));
    engine.reconcile().await.unwrap();
    engine.reconcile().await.unwrap();
    let record = bed.record(&job).await;
    assert!(!record.is_active(), "{record:?}");
    assert!(
        !bed.launcher.instances()[0].info.state.is_alive(),
        "the unrecorded instance is ended"
    );
}

#[tokio::test]
async fn the_jit_runner_is_registered_with_every_label_of_the_job() {
    let bed = TestBed::new();
    let mut registry = MockRunnerRegistry::new();
    registry
        .expect_create_jit_runner()
        .withf(|r| {
            r.labels == ["sprinters:aws:ubuntu-latest", "42-1-build"]
                && r.runner_name.as_str() == "sprinters-7-1-1"
                && r.runner_group_id == 3
        })
        .times(1)
        .returning(|_| {
            Ok(sprinters_core::ports::JitRunner::new(
                99,
                "SECRET-JIT".to_owned().into(),
            ))
        });
    let mut config = bed.engine.config().clone();
    config.runner_group_id = 3;
    let engine = bed
        .builder()
        .registry(Arc::new(registry))
        .config(config)
        .build()
        .unwrap();
    let job = bed
        .job(7)
        .labels(&["sprinters:aws:ubuntu-latest", "42-1-build"]);
    engine
        .handle(bed.delivery("d", job.queued()))
        .await
        .unwrap();
    engine.drain().await;
    let record = bed.store.get_job(job.key).await.unwrap().unwrap().value;
    assert_eq!(record.launches[0].runner_id, Some(99));
}

#[tokio::test]
async fn the_engine_refuses_to_build_without_its_ports() {
    let err = sprinters_core::engine::Engine::builder()
        .build()
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("configuration"), "{err}");
    let bed = TestBed::new();
    let err = sprinters_core::engine::Engine::builder()
        .config(bed.engine.config().clone())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("runner registry"), "{err}");
}

/// A job the engine failed for good can still be run by a runner of ours
/// (another job's idle one): while GitHub has not concluded it, the
/// reconciler asks about it, so a lost `in_progress` and `completed` do
/// not leave it Failed. Once GitHub concludes it, it is no longer active.
#[tokio::test]
async fn a_failed_job_that_ran_anyway_is_learned_from_github_when_its_webhooks_are_lost() {
    let bed = TestBed::new();
    bed.credentials
        .deny(AccountId::parse("123456789012").unwrap());
    let failed = bed.job(1);
    bed.send(failed.queued()).await;
    bed.settle().await;
    let record = bed.record(&failed).await;
    assert_eq!(record.state, JobState::Failed);
    assert!(record.is_active(), "GitHub has not concluded it yet");

    // GitHub gave it to a runner and finished it; both webhooks were lost.
    let runner = TestBed::runner(&bed.job(2), 1);
    bed.tell_github(&failed.completed(Conclusion::Success, Some(&runner)));
    bed.advance(bed.engine.config().queued_timeout + Duration::from_secs(1));
    let report = bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert_eq!(report.jobs_checked, 1);
    let record = bed.record(&failed).await;
    assert!(
        matches!(record.state, JobState::Completed | JobState::Cleaned),
        "GitHub's fact wins: {:?}",
        record.state
    );
    assert_eq!(record.conclusion, Some(Conclusion::Success));
    assert!(!record.is_active());

    // Another failed job GitHub cancels (say, queued too long): concluded,
    // it stays Failed with its reason and is no longer asked about.
    let cancelled = bed.job(3);
    bed.send(cancelled.queued()).await;
    bed.settle().await;
    bed.tell_github(&cancelled.completed(Conclusion::Cancelled, None));
    bed.advance(bed.engine.config().queued_timeout + Duration::from_secs(1));
    bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    let record = bed.record(&cancelled).await;
    assert_eq!(record.state, JobState::Failed);
    assert!(record.message.is_some(), "the reason is kept");
    assert_eq!(record.conclusion, Some(Conclusion::Cancelled));
    assert!(!record.is_active());
    assert_eq!(bed.engine.reconcile().await.unwrap().jobs_checked, 0);
}
