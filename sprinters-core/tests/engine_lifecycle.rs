//! The engine's launch path and its tolerance of duplicate, repeated and
//! out-of-order events.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use sprinters_core::engine::Handled;
use sprinters_core::events::Conclusion;
use sprinters_core::job::{EndReason, JobState};
use sprinters_core::ports::{InstanceState, JobStore, ListJobs};
use sprinters_core::testing::TestBed;

#[tokio::test]
async fn a_queued_job_of_ours_is_launched_once_with_a_durable_claim_first() {
    let bed = TestBed::new();
    let job = bed.job(1);
    assert_eq!(bed.send(job.queued()).await, Handled::Accepted(job.key));
    bed.settle().await;

    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Launched);
    assert_eq!(
        record.lease, None,
        "the claim is released once the launch is recorded"
    );
    assert_eq!(record.launches.len(), 1);
    let launch = &record.launches[0];
    let instance = bed
        .launcher
        .instance(launch.instance_id.as_ref().unwrap())
        .unwrap();
    assert_eq!(instance.info.state, InstanceState::Pending);
    assert_eq!(
        instance.info.job,
        Some(job.key),
        "the instance is tagged with its job"
    );
    assert_eq!(launch.runner_name, TestBed::runner(&job, 1));
    assert_eq!(
        launch.runner_id,
        Some(1),
        "the JIT runner's id is kept to remove it later"
    );
    assert_eq!(
        instance.idempotency_token,
        bed.engine_token(&job, 1),
        "the client token is derived from (job id, run attempt)"
    );
    assert_eq!(
        bed.registry.runners()[0].labels,
        job.labels,
        "the runner carries the job's labels"
    );
}

trait Token {
    fn engine_token(&self, job: &sprinters_core::testing::JobEvents, n: u32) -> String;
}
impl Token for TestBed {
    fn engine_token(&self, job: &sprinters_core::testing::JobEvents, n: u32) -> String {
        let controller = sprinters_core::labels::LabelSetKey::of(&["test-controller"]).get() as u32;
        format!(
            "sprinters-{controller:08x}-{}-{}-{n}-o",
            job.key.job_id, job.key.run_attempt
        )
    }
}

#[tokio::test]
async fn the_claim_is_written_before_any_api_call() {
    // The store refuses the write that records the job with its claim:
    // nothing may reach GitHub or EC2, and the webhook is not acknowledged.
    let bed = TestBed::new();
    bed.store.faults().fail_next("put_job", 1, || {
        sprinters_core::Error::unavailable("store down")
    });
    let job = bed.job(1);
    let refused = bed.engine.handle(bed.delivery("d-1", job.queued())).await;
    assert!(refused.is_err(), "GitHub redelivers an unanswered webhook");
    bed.settle().await;
    assert_eq!(bed.registry.jit_configs(), 0);
    assert_eq!(bed.launcher.launch_calls(), 0);
    assert!(bed.store.get_job(job.key).await.unwrap().is_none());

    // The redelivery succeeds.
    bed.engine
        .handle(bed.delivery("d-1", job.queued()))
        .await
        .unwrap();
    bed.settle().await;
    assert_eq!(bed.record(&job).await.state, JobState::Launched);
    assert_eq!(bed.launcher.alive().len(), 1);
}

/// A job that cannot launch at once (its slot taken) is queued, and the
/// claim its launch later takes is written before any API call too.
#[tokio::test]
async fn a_later_launch_claims_before_any_api_call() {
    let bed = TestBed::with_config(|c| c.limits.per_account = Some(1));
    let first = bed.job(1);
    bed.send(first.queued()).await;
    bed.settle().await;
    let job = bed.job(2);
    bed.send(job.queued()).await;
    assert_eq!(
        bed.record(&job).await.state,
        JobState::Queued,
        "waits for the slot"
    );

    bed.store.faults().fail_next("claim_job", 1, || {
        sprinters_core::Error::unavailable("store down")
    });
    let runner = TestBed::runner(&first, 1);
    bed.send(first.in_progress(&runner)).await;
    bed.send(first.completed(Conclusion::Success, Some(&runner)))
        .await;
    bed.settle().await;
    assert_eq!(bed.registry.jit_configs(), 1, "only the first job's");
    assert_eq!(bed.launcher.launch_calls(), 1);
    assert_eq!(bed.record(&job).await.state, JobState::Queued);

    // The next tick tries again and succeeds.
    bed.engine.process_due().await.unwrap();
    bed.settle().await;
    assert_eq!(bed.record(&job).await.state, JobState::Launched);
}

#[tokio::test]
async fn credentials_and_jit_config_are_fetched_concurrently() {
    // Each side waits for the other: a sequential engine would deadlock,
    // and paused time turns the deadlock into a timeout at once.
    #[derive(Debug)]
    struct Gated<T> {
        inner: T,
        barrier: Arc<tokio::sync::Barrier>,
    }
    #[async_trait::async_trait]
    impl sprinters_core::ports::CredentialProvider
        for Gated<sprinters_core::memory::MemoryCredentials>
    {
        async fn credentials(
            &self,
            r: sprinters_core::ports::CredentialsRequest,
        ) -> sprinters_core::Result<sprinters_core::ports::Credentials> {
            self.barrier.wait().await;
            self.inner.credentials(r).await
        }
    }
    #[async_trait::async_trait]
    impl sprinters_core::ports::RunnerRegistry for Gated<sprinters_core::memory::MemoryRegistry> {
        async fn create_jit_runner(
            &self,
            r: sprinters_core::ports::CreateJitRunner,
        ) -> sprinters_core::Result<sprinters_core::ports::JitRunner> {
            self.barrier.wait().await;
            self.inner.create_jit_runner(r).await
        }
        async fn remove_runner(
            &self,
            r: sprinters_core::ports::RemoveRunner,
        ) -> sprinters_core::Result<()> {
            self.inner.remove_runner(r).await
        }
        async fn job_status(
            &self,
            r: sprinters_core::ports::GetJobStatus,
        ) -> sprinters_core::Result<sprinters_core::ports::JobStatus> {
            self.inner.job_status(r).await
        }
        async fn rerun_job(
            &self,
            r: sprinters_core::ports::RerunJob,
        ) -> sprinters_core::Result<()> {
            self.inner.rerun_job(r).await
        }
        async fn cancel_run(
            &self,
            r: sprinters_core::ports::CancelRun,
        ) -> sprinters_core::Result<()> {
            self.inner.cancel_run(r).await
        }
        async fn list_queued_jobs(
            &self,
            r: sprinters_core::ports::ListQueuedJobs,
        ) -> sprinters_core::Result<sprinters_core::ports::QueuedJobs> {
            self.inner.list_queued_jobs(r).await
        }
        async fn run_origin(
            &self,
            r: sprinters_core::ports::GetRunOrigin,
        ) -> sprinters_core::Result<sprinters_core::ports::RunOrigin> {
            self.inner.run_origin(r).await
        }
    }

    let bed = TestBed::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let engine = bed
        .builder()
        .registry(Arc::new(Gated {
            inner: sprinters_core::memory::MemoryRegistry::new(),
            barrier: barrier.clone(),
        }))
        .credentials(Arc::new(Gated {
            inner: sprinters_core::memory::MemoryCredentials::new(),
            barrier,
        }))
        .build()
        .unwrap();
    let job = bed.job(1);
    engine
        .handle(bed.delivery("d-1", job.queued()))
        .await
        .unwrap();
    tokio::time::pause();
    tokio::time::timeout(Duration::from_secs(3600), engine.drain())
        .await
        .expect("credentials and JIT config must be requested at the same time");
    assert_eq!(bed.record(&job).await.state, JobState::Launched);
}

#[tokio::test]
async fn jobs_that_are_not_ours_are_ignored_and_leave_no_record() {
    let bed = TestBed::new();
    let job = bed.job(1).labels(&["ubuntu-latest"]);
    assert_eq!(bed.send(job.queued()).await, Handled::Ignored);
    bed.settle().await;
    assert!(bed.store.is_empty());
    assert_eq!(bed.launcher.launch_calls(), 0);
}

#[tokio::test]
async fn duplicate_deliveries_and_redeliveries_never_launch_twice() {
    let bed = TestBed::new();
    let job = bed.job(1);
    assert_eq!(
        bed.send_as("same", job.queued()).await,
        Handled::Accepted(job.key)
    );
    assert_eq!(bed.send_as("same", job.queued()).await, Handled::Duplicate);
    // GitHub's "redeliver" sends the same event under a new delivery id.
    bed.send_as("redelivered", job.queued()).await;
    bed.settle().await;
    bed.send_as("late-redelivery", job.queued()).await;
    bed.engine.process_due().await.unwrap();
    bed.settle().await;
    assert_eq!(bed.launcher.instances().len(), 1);
    assert_eq!(bed.registry.jit_configs(), 1);
    assert_eq!(bed.record(&job).await.launches.len(), 1);
}

/// Each event is answered `Duplicate` the second time under one delivery
/// id, whether its first write recorded the delivery (queued, started and
/// completed on its own runner) or it was recorded after (on a runner
/// another job launched, an event not ours), and the duplicate writes
/// nothing.
#[tokio::test]
async fn every_event_delivered_twice_is_a_duplicate_that_writes_nothing() {
    let bed = TestBed::new();
    let (a, b, c) = (bed.job(1), bed.job(2), bed.job(4));
    let versions = || async {
        let mut v = Vec::new();
        for job in [&a, &b, &c] {
            v.push(bed.store.get_job(job.key).await.unwrap().map(|r| r.version));
        }
        v
    };
    assert_eq!(
        bed.send_as("a-q", a.queued()).await,
        Handled::Accepted(a.key)
    );
    assert_eq!(bed.send_as("a-q", a.queued()).await, Handled::Duplicate);
    bed.send_as("b-q", b.queued()).await;
    bed.send_as("c-q", c.queued()).await;
    bed.settle().await;
    assert_eq!(bed.launcher.instances().len(), 3);

    let a_runner = TestBed::runner(&a, 1);
    let c_runner = TestBed::runner(&c, 1);
    let events = [
        ("b-started-on-a", b.in_progress(&a_runner)),
        ("c-started", c.in_progress(&c_runner)),
        ("not-ours", bed.job(3).labels(&["ubuntu-latest"]).queued()),
        (
            "c-completed",
            c.completed(Conclusion::Success, Some(&c_runner)),
        ),
        (
            "b-completed-on-a",
            b.completed(Conclusion::Success, Some(&a_runner)),
        ),
    ];
    for (id, event) in events {
        let first = bed.send_as(id, event.clone()).await;
        assert_ne!(first, Handled::Duplicate, "{id}: the first time");
        bed.settle().await;
        let before = versions().await;
        assert_eq!(bed.send_as(id, event).await, Handled::Duplicate, "{id}");
        bed.settle().await;
        assert_eq!(versions().await, before, "{id}: a duplicate writes nothing");
    }
    // b's own runner is a spare now, so b stays Completed until it ends.
    assert_eq!(bed.record(&b).await.state, JobState::Completed);
    assert_eq!(bed.record(&c).await.state, JobState::Cleaned);
    assert_eq!(
        bed.launcher.instances().len(),
        3,
        "no launch for a duplicate"
    );
}

#[tokio::test]
async fn concurrent_duplicates_still_launch_once() {
    let bed = TestBed::new();
    let job = bed.job(1);
    let sends = (0..16).map(|i| {
        bed.engine
            .handle(bed.delivery(&format!("d-{i}"), job.queued()))
    });
    for r in futures::future::join_all(sends).await {
        r.unwrap();
    }
    bed.settle().await;
    assert_eq!(bed.launcher.instances().len(), 1);
}

#[tokio::test]
async fn out_of_order_events_never_move_a_job_backwards() {
    let bed = TestBed::new();
    // completed before in_progress, in_progress before queued.
    let job = bed.job(1);
    bed.send(job.queued()).await;
    bed.settle().await;
    let runner = TestBed::runner(&job, 1);
    bed.send(job.completed(Conclusion::Success, Some(&runner)))
        .await;
    bed.send(job.in_progress(&runner)).await;
    bed.send(job.queued()).await;
    bed.settle().await;
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Cleaned);
    assert_eq!(record.conclusion, Some(Conclusion::Success));
    assert_eq!(
        bed.launcher.instances().len(),
        1,
        "no relaunch after completion"
    );
    assert!(bed.launcher.alive().is_empty());

    // A job seen first in progress (its queued event was lost) is not launched for.
    let late = bed.job(2);
    let other_runner = sprinters_core::domain::RunnerName::parse("someone-elses-runner").unwrap();
    bed.send(late.in_progress(&other_runner)).await;
    bed.send(late.queued()).await;
    bed.settle().await;
    assert_eq!(bed.record(&late).await.state, JobState::Running);
    assert_eq!(bed.launcher.instances().len(), 1);
}

#[tokio::test]
async fn completed_ends_the_instance_and_records_the_history() {
    let bed = TestBed::new();
    let job = bed.job(1).labels(&[
        "sprinters:aws:eu-central-1b:ubuntu-24.04-arm:c7g.xlarge",
        "pin-1",
    ]);
    bed.send(job.queued()).await;
    bed.settle().await;
    bed.advance(Duration::from_secs(20));
    let runner = TestBed::runner(&job, 1);
    bed.send(job.in_progress(&runner)).await;
    bed.advance(Duration::from_secs(3600 - 20));
    bed.send(job.completed(Conclusion::Failure, Some(&runner)))
        .await;
    bed.settle().await;

    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Cleaned);
    assert_eq!(record.conclusion, Some(Conclusion::Failure));
    assert_eq!(record.duration(), Some(Duration::from_secs(3600 - 20)));
    let launch = &record.launches[0];
    assert_eq!(launch.instance_type.as_str(), "c7g.xlarge");
    assert_eq!(
        launch.availability_zone.as_ref().unwrap().as_str(),
        "eu-central-1b"
    );
    assert!(!launch.spot);
    assert_eq!(launch.ended.map(|(_, r)| r), Some(EndReason::JobCompleted));
    assert_eq!(
        record.cost_micros,
        Some(145_000),
        "one hour of c7g.xlarge at $0.145"
    );
    let instance = bed
        .launcher
        .instance(launch.instance_id.as_ref().unwrap())
        .unwrap();
    assert_eq!(instance.info.state, InstanceState::Terminated);
    assert_eq!(instance.availability_zone.as_str(), "eu-central-1b");

    let history = bed.store.list_jobs(ListJobs::newest(10)).await.unwrap();
    assert_eq!(history.jobs.len(), 1);
    assert!(!history.jobs[0].value.is_active());
}

#[tokio::test]
async fn store_failures_surface_as_errors_and_change_nothing() {
    let bed = TestBed::new();
    bed.store.faults().fail_next("put_job", 1, || {
        sprinters_core::Error::unavailable("disk full")
    });
    let job = bed.job(1);
    let err = bed
        .engine
        .handle(bed.delivery("d-1", job.queued()))
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert!(bed.store.is_empty());
    // The delivery was not recorded as seen, so the retry is processed.
    assert_eq!(
        bed.send_as("d-1", job.queued()).await,
        Handled::Accepted(job.key)
    );
    bed.settle().await;
    assert_eq!(bed.launcher.instances().len(), 1);
}
