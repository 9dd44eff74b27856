//! Runners are matched by label set: stolen runners, cancelled jobs and
//! spare runners.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sprinters_core::domain::RunnerName;
use sprinters_core::events::Conclusion;
use sprinters_core::job::{EndReason, JobState};
use sprinters_core::testing::TestBed;

#[tokio::test]
async fn the_runner_that_took_a_job_is_learned_from_in_progress() {
    let bed = TestBed::new();
    let (a, b) = (bed.job(1), bed.job(2));
    bed.send(a.queued()).await;
    bed.send(b.queued()).await;
    bed.settle().await;
    assert_eq!(bed.launcher.alive().len(), 2);

    // GitHub gives A's runner to B and B's runner to A (same labels).
    let (ra, rb) = (TestBed::runner(&a, 1), TestBed::runner(&b, 1));
    bed.send(b.in_progress(&ra)).await;
    bed.send(a.in_progress(&rb)).await;
    bed.settle().await;
    assert_eq!(bed.record(&a).await.ran_on, Some(rb.clone()));
    assert_eq!(bed.record(&a).await.launches[0].taken_by, Some(b.key));
    assert_eq!(
        bed.launcher.instances().len(),
        2,
        "a swap needs no new launch"
    );

    // Completing A ends the instance A ran on, which was launched for B.
    bed.send(a.completed(Conclusion::Success, Some(&rb))).await;
    bed.settle().await;
    let b_launch = bed.record(&b).await.launches[0].clone();
    assert_eq!(
        b_launch.ended.map(|(_, r)| r),
        Some(EndReason::JobCompleted)
    );
    let a_launch = bed.record(&a).await.launches[0].clone();
    assert!(a_launch.is_live(), "A's own instance still runs B");
    bed.send(b.completed(Conclusion::Success, Some(&ra))).await;
    bed.settle().await;
    assert!(bed.launcher.alive().is_empty());
    assert_eq!(bed.record(&a).await.state, JobState::Cleaned);
    assert_eq!(bed.record(&b).await.state, JobState::Cleaned);
}

#[tokio::test]
async fn a_job_whose_runner_was_stolen_still_gets_one() {
    let bed = TestBed::new();
    let victim = bed.job(1);
    bed.send(victim.queued()).await;
    bed.settle().await;
    // A job with the same labels whose queued event never arrived takes
    // the victim's runner.
    let thief = bed.job(2);
    bed.send(thief.in_progress(&TestBed::runner(&victim, 1)))
        .await;
    bed.settle().await;

    let record = bed.record(&victim).await;
    assert_eq!(
        record.launches.len(),
        2,
        "a replacement is launched for the victim"
    );
    assert_eq!(record.launches[0].taken_by, Some(thief.key));
    assert_eq!(record.launches[1].runner_name, TestBed::runner(&victim, 2));
    assert_eq!(bed.launcher.alive().len(), 2);
    assert_ne!(
        bed.launcher
            .instance(record.launches[1].instance_id.as_ref().unwrap())
            .unwrap()
            .idempotency_token,
        bed.launcher
            .instance(record.launches[0].instance_id.as_ref().unwrap())
            .unwrap()
            .idempotency_token,
        "the replacement is a new launch with its own token"
    );
    bed.send(victim.in_progress(&TestBed::runner(&victim, 2)))
        .await;
    bed.send(thief.completed(Conclusion::Success, Some(&TestBed::runner(&victim, 1))))
        .await;
    bed.send(victim.completed(Conclusion::Success, Some(&TestBed::runner(&victim, 2))))
        .await;
    bed.settle().await;
    assert!(bed.launcher.alive().is_empty());
}

#[tokio::test]
async fn a_spare_runner_is_terminated_after_the_grace_period() {
    let bed = TestBed::new();
    let job = bed.job(1);
    bed.send(job.queued()).await;
    bed.settle().await;
    bed.send(job.completed(Conclusion::Cancelled, None)).await;
    bed.settle().await;
    assert_eq!(bed.record(&job).await.state, JobState::Cancelled);
    assert_eq!(
        bed.launcher.alive().len(),
        1,
        "not ended at once: another job may take it"
    );

    bed.advance(Duration::from_secs(299));
    bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert_eq!(
        bed.launcher.alive().len(),
        1,
        "still within the grace period"
    );

    bed.advance(Duration::from_secs(2));
    let report = bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert_eq!(report.spares_ended, 1);
    assert!(bed.launcher.alive().is_empty());
    let record = bed.record(&job).await;
    assert_eq!(
        record.launches[0].ended.map(|(_, r)| r),
        Some(EndReason::Spare)
    );
    assert!(
        bed.registry.runners().is_empty(),
        "the idle runner is removed from GitHub"
    );
}

#[tokio::test]
async fn a_spare_runner_is_kept_for_a_queued_job_with_the_same_labels() {
    let bed = TestBed::new();
    let cancelled = bed.job(1);
    bed.send(cancelled.queued()).await;
    bed.settle().await;
    bed.send(cancelled.completed(Conclusion::Cancelled, None))
        .await;
    let next = bed.job(2);
    bed.send(next.queued()).await;
    bed.settle().await;
    assert_eq!(
        bed.launcher.instances().len(),
        1,
        "the spare covers the new job: no launch"
    );
    let waiting = bed.record(&next).await;
    assert_eq!(waiting.state, JobState::Queued);
    // Its arrival wrote it claimed, with a launch intent, while the spare
    // check ran beside that write: both are gone again, and GitHub was
    // never asked for a runner (a pending intent would send the next
    // attempt looking for an instance that was never started).
    assert!(waiting.launches.is_empty(), "{:?}", waiting.launches);
    assert!(waiting.lease.is_none());
    assert_eq!(bed.registry.runners().len(), 1, "the spare's runner only");

    bed.advance(Duration::from_secs(600));
    bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert_eq!(
        bed.launcher.alive().len(),
        1,
        "a spare a waiting job needs is not ended"
    );

    let spare = TestBed::runner(&cancelled, 1);
    bed.send(next.in_progress(&spare)).await;
    bed.send(next.completed(Conclusion::Success, Some(&spare)))
        .await;
    bed.settle().await;
    assert!(bed.launcher.alive().is_empty());
    assert_eq!(bed.record(&next).await.state, JobState::Cleaned);
}

#[tokio::test]
async fn pinned_jobs_do_not_share_runners() {
    let bed = TestBed::new();
    let cancelled = bed.job(1).labels(&["sprinters:aws", "run-1-build"]);
    bed.send(cancelled.queued()).await;
    bed.settle().await;
    bed.send(cancelled.completed(Conclusion::Cancelled, None))
        .await;
    let other = bed.job(2).labels(&["sprinters:aws", "run-2-build"]);
    bed.send(other.queued()).await;
    bed.settle().await;
    assert_eq!(
        bed.launcher.instances().len(),
        2,
        "a different pinning label needs its own runner"
    );
    assert_eq!(bed.record(&other).await.state, JobState::Launched);
}

#[tokio::test]
async fn a_runner_that_is_not_ours_is_recorded_and_nothing_else() {
    let bed = TestBed::new();
    let job = bed.job(1);
    bed.send(job.queued()).await;
    bed.settle().await;
    let foreign = RunnerName::parse("hosted-runner-7").unwrap();
    bed.send(job.in_progress(&foreign)).await;
    bed.send(job.completed(Conclusion::Success, Some(&foreign)))
        .await;
    bed.settle().await;
    let record = bed.record(&job).await;
    assert_eq!(record.ran_on, Some(foreign));
    assert_eq!(
        record.state,
        JobState::Completed,
        "its own runner is still up, so not yet cleaned"
    );
    bed.advance(Duration::from_secs(301));
    bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert!(
        bed.launcher.alive().is_empty(),
        "the unused runner is a spare and ends"
    );
    assert_eq!(bed.record(&job).await.state, JobState::Cleaned);
}

#[tokio::test]
async fn a_runner_never_looks_idle_while_its_job_runs() {
    // Were a job's own runner written as idle while the job runs, a job
    // queued at that moment would count it as a spare and wait in vain.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let bed = TestBed::with_store_hook(move |r| {
        let own_idle = r
            .ran_on
            .as_ref()
            .and_then(|n| r.launch_by_runner(n))
            .is_some_and(|l| l.is_idle());
        if !r.state.is_waiting() && own_idle {
            log.lock().unwrap().push(format!("{} {:?}", r.key, r.state));
        }
        Ok(())
    });
    for id in 1..=3 {
        let job = bed.job(id);
        bed.send(job.queued()).await;
        bed.settle().await;
        let runner = TestBed::runner(&job, 1);
        bed.send(job.in_progress(&runner)).await;
        bed.send(job.completed(Conclusion::Success, Some(&runner)))
            .await;
    }
    // A completed event whose in_progress was lost, too.
    let job = bed.job(4);
    bed.send(job.queued()).await;
    bed.settle().await;
    bed.send(job.completed(Conclusion::Success, Some(&TestBed::runner(&job, 1))))
        .await;
    bed.settle().await;
    assert_eq!(
        *seen.lock().unwrap(),
        Vec::<String>::new(),
        "records written with a running job's runner idle"
    );
}
