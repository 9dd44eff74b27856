//! The reconciler, concurrency limits, graceful shutdown, the `run` loop,
//! and what reaches the logs.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use sprinters_core::domain::{
    AccountId, AvailabilityZone, InstanceId, InstanceType, JobId, JobKey, Region, RunAttempt,
    RunnerName,
};
use sprinters_core::events::Conclusion;
use sprinters_core::job::{EndReason, JobState};
use sprinters_core::memory::SimInstance;
use sprinters_core::ports::{InstanceInfo, InstanceState};
use sprinters_core::testing::TestBed;
use sprinters_core::time::Clock;

fn stray_instance(bed: &TestBed, id: &str, job: Option<JobKey>, controller: &str) -> SimInstance {
    let mut info = InstanceInfo::new(InstanceId::parse(id).unwrap(), InstanceState::Running);
    info.job = job;
    info.runner_name = job.map(|j| RunnerName::for_launch(j, 1));
    info.launched_at = Some(bed.clock.now());
    SimInstance {
        info,
        account: AccountId::parse("123456789012").unwrap(),
        region: Region::parse("us-east-1").unwrap(),
        availability_zone: AvailabilityZone::parse("us-east-1a").unwrap(),
        instance_type: InstanceType::parse("t3.large").unwrap(),
        controller_id: controller.into(),
        idempotency_token: id.into(),
    }
}

#[tokio::test]
async fn the_reconciler_ends_orphans_but_not_live_jobs_or_other_controllers() {
    let bed = TestBed::new();
    let live = bed.job(1);
    bed.send(live.queued()).await;
    bed.settle().await;
    let unknown_job = JobKey::new(JobId::new(404), RunAttempt::FIRST);
    bed.launcher.insert(stray_instance(
        &bed,
        "i-00000000000000a01",
        Some(unknown_job),
        "test-controller",
    ));
    bed.launcher.insert(stray_instance(
        &bed,
        "i-00000000000000a02",
        None,
        "test-controller",
    ));
    bed.launcher.insert(stray_instance(
        &bed,
        "i-00000000000000a03",
        Some(unknown_job),
        "another-controller",
    ));

    let report = bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert!(report.leader);
    assert_eq!(report.orphans_ended, 2);
    let alive: Vec<String> = bed
        .launcher
        .alive()
        .iter()
        .map(|i| i.info.instance_id.to_string())
        .collect();
    assert_eq!(alive.len(), 2, "{alive:?}");
    assert!(
        alive.contains(&"i-00000000000000a03".to_owned()),
        "never touches what another controller owns"
    );
    assert_eq!(
        bed.record(&live).await.state,
        JobState::Launched,
        "the live job's instance stays"
    );
}

#[tokio::test]
async fn the_reconciler_ends_instances_past_the_maximum_lifetime() {
    let bed = TestBed::with_config(|c| c.max_lifetime = Duration::from_secs(3600));
    let job = bed.job(1);
    bed.send(job.queued()).await;
    bed.settle().await;
    bed.send(job.in_progress(&TestBed::runner(&job, 1))).await;
    bed.advance(Duration::from_secs(3599));
    assert_eq!(bed.engine.reconcile().await.unwrap().expired_ended, 0);
    bed.advance(Duration::from_secs(2));
    assert_eq!(bed.engine.reconcile().await.unwrap().expired_ended, 1);
    assert!(bed.launcher.alive().is_empty());
    assert_eq!(
        bed.record(&job).await.launches[0].ended.map(|(_, r)| r),
        Some(EndReason::MaxLifetime)
    );
}

#[tokio::test]
async fn a_lost_completed_webhook_is_recovered_from_github() {
    let bed = TestBed::new();
    let job = bed.job(1);
    bed.send(job.queued()).await;
    bed.settle().await;
    let runner = TestBed::runner(&job, 1);
    // GitHub ran and finished the job; both webhooks were lost.
    bed.tell_github(&job.completed(Conclusion::Success, Some(&runner)));
    bed.advance(Duration::from_secs(599));
    assert_eq!(
        bed.engine.reconcile().await.unwrap().jobs_checked,
        0,
        "not yet waiting too long"
    );
    bed.advance(Duration::from_secs(2));
    let report = bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert_eq!(report.jobs_checked, 1);
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Cleaned);
    assert_eq!(record.conclusion, Some(Conclusion::Success));
    assert!(
        bed.launcher.alive().is_empty(),
        "its instance is ended: no orphan for days"
    );
}

#[tokio::test]
async fn a_queued_job_whose_only_webhook_was_lost_is_found_by_listing_github() {
    let bed = TestBed::new();
    let running = bed.job(1);
    bed.send(running.queued()).await;
    bed.settle().await;
    // Two more jobs queued in the same repository; neither webhook arrived.
    let lost = bed.job(2);
    bed.tell_github(&lost.queued());
    let hosted = bed.job(3).labels(&["ubuntu-latest"]);
    bed.tell_github(&hosted.queued());

    let report = bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert_eq!(report.unseen_recovered, 1, "{report:?}");
    let record = bed.record(&lost).await;
    assert_eq!(
        record.launches.len(),
        1,
        "the lost job was launched for: {record:?}"
    );
    assert_eq!(bed.launcher.alive().len(), 2);
    let again = bed.engine.reconcile().await.unwrap();
    assert_eq!(again.unseen_recovered, 0, "a job taken in once is known");
    assert_eq!(bed.launcher.alive().len(), 2, "and not launched twice");
}

#[tokio::test]
async fn a_job_that_never_got_a_runner_is_launched_again_by_the_due_pass() {
    let bed = TestBed::new();
    let job = bed.job(1);
    bed.send(job.queued()).await;
    bed.settle().await;
    // The instance dies without ever picking the job up (never booted).
    let id = bed.record(&job).await.launches[0]
        .instance_id
        .clone()
        .unwrap();
    bed.launcher.reclaim(&id);
    bed.advance(Duration::from_secs(30));
    bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    let record = bed.record(&job).await;
    assert_eq!(
        record.launches.len(),
        2,
        "a vanished idle instance is replaced"
    );
    assert_eq!(record.state, JobState::Launched);
    assert_eq!(bed.launcher.alive().len(), 1);
}

/// Lets the engine's background tasks run until they block. (Launch
/// tasks waiting for a slot never finish, so `settle` cannot be used.)
async fn let_tasks_run() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn concurrency_limits_queue_jobs_rather_than_drop_them() {
    let bed = TestBed::with_config(|c| c.limits.per_account = Some(2));
    let jobs: Vec<_> = (1..=5)
        .map(|i| bed.job(i).labels(&["sprinters:aws", &format!("pin-{i}")]))
        .collect();
    for j in &jobs {
        bed.send(j.queued()).await;
    }
    let mut served = Vec::new();
    while served.len() < jobs.len() {
        let_tasks_run().await;
        assert!(
            bed.launcher.alive().len() <= 2,
            "never more than the limit at once"
        );
        let mut progressed = false;
        for j in &jobs {
            if bed.record(j).await.state == JobState::Launched {
                let runner = TestBed::runner(j, 1);
                bed.send(j.in_progress(&runner)).await;
                bed.send(j.completed(Conclusion::Success, Some(&runner)))
                    .await;
                served.push(j.key);
                progressed = true;
            }
        }
        assert!(
            progressed,
            "jobs waiting for a slot were dropped: served {served:?}"
        );
    }
    bed.settle().await;
    for j in &jobs {
        assert_eq!(
            bed.record(j).await.state,
            JobState::Cleaned,
            "job {} was served",
            j.key
        );
    }
    assert_eq!(
        served[..2],
        [jobs[0].key, jobs[1].key],
        "the first two go first"
    );
    assert_eq!(bed.launcher.instances().len(), 5);
    assert_eq!(bed.engine.slots_held(), 0);
}

/// EC2 that answers `launch` only when the test adds permits to `gate`.
#[derive(Debug)]
struct SlowEc2 {
    inner: Arc<sprinters_core::memory::MemoryLauncher>,
    gate: Arc<tokio::sync::Semaphore>,
    entered: Arc<tokio::sync::Notify>,
}
#[async_trait::async_trait]
impl sprinters_core::ports::CloudLauncher for SlowEc2 {
    async fn launch(
        &self,
        r: sprinters_core::ports::LaunchRequest,
    ) -> sprinters_core::Result<sprinters_core::ports::Launched> {
        self.entered.notify_one();
        let _permit = self.gate.acquire().await;
        self.inner.launch(r).await
    }
    async fn terminate(
        &self,
        r: sprinters_core::ports::TerminateRequest,
    ) -> sprinters_core::Result<sprinters_core::ports::Terminated> {
        self.inner.terminate(r).await
    }
    async fn list_owned(
        &self,
        r: sprinters_core::ports::ListOwned,
    ) -> sprinters_core::Result<sprinters_core::ports::OwnedInstances> {
        self.inner.list_owned(r).await
    }
    async fn describe(
        &self,
        r: sprinters_core::ports::DescribeInstance,
    ) -> sprinters_core::Result<InstanceInfo> {
        self.inner.describe(r).await
    }
}

impl SlowEc2 {
    /// The bed's engine launching through a gated EC2: the gate to open and
    /// the signal that a launch is waiting at it.
    fn engine(
        bed: &TestBed,
    ) -> (
        sprinters_core::engine::Engine,
        Arc<tokio::sync::Semaphore>,
        Arc<tokio::sync::Notify>,
    ) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let entered = Arc::new(tokio::sync::Notify::new());
        let slow = SlowEc2 {
            inner: bed.launcher.clone(),
            gate: gate.clone(),
            entered: entered.clone(),
        };
        let engine = bed.builder().launcher(Arc::new(slow)).build().unwrap();
        (engine, gate, entered)
    }
}

#[tokio::test]
async fn shutdown_finishes_in_flight_launches_and_starts_no_new_ones() {
    let bed = TestBed::with_config(|c| c.limits.per_account = Some(1));
    let (engine, gate, entered) = SlowEc2::engine(&bed);
    let (first, second) = (
        bed.job(1).labels(&["sprinters", "a"]),
        bed.job(2).labels(&["sprinters", "b"]),
    );
    engine
        .handle(bed.delivery("d1", first.queued()))
        .await
        .unwrap();
    entered.notified().await; // the first launch is inside RunInstances
    engine
        .handle(bed.delivery("d2", second.queued()))
        .await
        .unwrap(); // waits for a slot

    let shutting_down = tokio::spawn({
        let engine = engine.clone();
        async move { engine.shutdown().await }
    });
    tokio::task::yield_now().await;
    assert!(
        !shutting_down.is_finished(),
        "shutdown waits for the launch in flight"
    );
    gate.add_permits(10);
    shutting_down.await.unwrap();

    assert_eq!(
        bed.record(&first).await.state,
        JobState::Launched,
        "the in-flight launch finished"
    );
    let waiting = bed.record(&second).await;
    assert_eq!(
        waiting.state,
        JobState::Queued,
        "the waiting job stays queued for the next start"
    );
    assert!(waiting.lease.is_none() && waiting.launches.is_empty());
    assert_eq!(bed.launcher.instances().len(), 1);
}

/// Starts `engine.run` in the background; send on the channel to stop it.
fn spawn_run(
    engine: sprinters_core::engine::Engine,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<sprinters_core::Result<()>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        engine
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, running)
}

#[tokio::test]
async fn run_takes_deliveries_from_a_pull_source_and_acknowledges_them() {
    let bed = TestBed::new();
    let jobs: Vec<_> = (1..=3).map(|i| bed.job(i)).collect();
    for (i, j) in jobs.iter().enumerate() {
        bed.source.push(bed.delivery(&format!("q-{i}"), j.queued()));
    }
    let (stop, running) = spawn_run(bed.engine.clone());
    bed.source.wait_acked(3).await;
    bed.settle().await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    for j in &jobs {
        assert_eq!(bed.record(j).await.state, JobState::Launched);
    }
    assert_eq!(bed.source.in_flight(), 0, "all acknowledged");
}

#[tokio::test]
async fn run_retries_on_its_tick_without_any_new_event() {
    let bed = TestBed::new();
    bed.launcher
        .faults()
        .fail_next("launch", 1, || sprinters_core::Error::unavailable("blip"));
    let job = bed.job(1);
    bed.source.push(bed.delivery("q", job.queued()));
    let (stop, running) = spawn_run(bed.engine.clone());
    bed.source.wait_acked(1).await;
    bed.settle().await;
    assert_eq!(bed.record(&job).await.state, JobState::Queued);
    // Drive the clock past the backoff, one tick at a time.
    for _ in 0..10 {
        while bed.clock.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        bed.advance(Duration::from_secs(1));
        tokio::task::yield_now().await;
        bed.settle().await;
        if bed.record(&job).await.state == JobState::Launched {
            break;
        }
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(bed.record(&job).await.state, JobState::Launched);
}

#[tokio::test]
async fn a_job_cancelled_while_its_launch_is_in_flight_leaks_no_instance() {
    let bed = TestBed::new();
    let (engine, gate, entered) = SlowEc2::engine(&bed);
    let job = bed.job(1);
    engine
        .handle(bed.delivery("q", job.queued()))
        .await
        .unwrap();
    entered.notified().await;
    // Cancelled before pickup, and even reported on its own runner, while
    // RunInstances has not answered yet.
    let runner = TestBed::runner(&job, 1);
    engine
        .handle(bed.delivery("c", job.completed(Conclusion::Cancelled, Some(&runner))))
        .await
        .unwrap();
    gate.add_permits(1);
    engine.drain().await;

    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Cancelled);
    assert!(
        record.launches[0].instance_id.is_some(),
        "the instance is recorded, not forgotten"
    );
    // The launch task, recording an instance for a job already finished on
    // its runner, ends it at once: no reconciler pass (a minute) needed.
    assert!(
        bed.launcher.alive().is_empty(),
        "ended as soon as it was recorded: nothing waits for the reconciler"
    );
    assert_eq!(
        record.launches[0].ended.map(|(_, reason)| reason),
        Some(EndReason::JobCompleted),
        "ended as the runner of a finished job"
    );
    let report = engine.reconcile().await.unwrap();
    assert_eq!(report.orphans_ended, 0, "nothing left to find");
}

/// EC2 whose `list_owned` first runs `before_listing`: to change the store
/// between the reconciler's snapshot and its sweep.
struct ListingHook {
    inner: Arc<sprinters_core::memory::MemoryLauncher>,
    before_listing: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for ListingHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListingHook")
    }
}

#[async_trait::async_trait]
impl sprinters_core::ports::CloudLauncher for ListingHook {
    async fn launch(
        &self,
        r: sprinters_core::ports::LaunchRequest,
    ) -> sprinters_core::Result<sprinters_core::ports::Launched> {
        self.inner.launch(r).await
    }
    async fn terminate(
        &self,
        r: sprinters_core::ports::TerminateRequest,
    ) -> sprinters_core::Result<sprinters_core::ports::Terminated> {
        self.inner.terminate(r).await
    }
    async fn list_owned(
        &self,
        r: sprinters_core::ports::ListOwned,
    ) -> sprinters_core::Result<sprinters_core::ports::OwnedInstances> {
        let hook = self.before_listing.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.inner.list_owned(r).await
    }
    async fn describe(
        &self,
        r: sprinters_core::ports::DescribeInstance,
    ) -> sprinters_core::Result<InstanceInfo> {
        self.inner.describe(r).await
    }
}

#[tokio::test]
async fn the_sweep_never_ends_an_instance_of_a_job_launched_after_its_snapshot() {
    use sprinters_core::ports::{JobStore, PutJob};
    let bed = TestBed::new();
    // One job the snapshot knows, so the sweep visits the account.
    let known = bed.job(1);
    bed.send(known.queued()).await;
    bed.settle().await;

    // Between the snapshot and the listing, another replica launches job 2
    // and records it: its instance is running and its record is fresh.
    let late = JobKey::new(JobId::new(2), RunAttempt::FIRST);
    let late_instance = stray_instance(&bed, "i-00000000000000b02", Some(late), "test-controller");
    let mut record = bed.record(&known).await;
    record.key = late;
    record.launches[0].runner_name = RunnerName::for_launch(late, 1);
    record.launches[0].instance_id = Some(late_instance.info.instance_id.clone());
    let (store, launcher) = (bed.store.clone(), bed.launcher.clone());
    let hook: Box<dyn FnOnce() + Send> = Box::new(move || {
        launcher.insert(late_instance);
        futures::executor::block_on(store.put_job(PutJob::create(record))).unwrap();
    });
    let engine = bed
        .builder()
        .launcher(Arc::new(ListingHook {
            inner: bed.launcher.clone(),
            before_listing: std::sync::Mutex::new(Some(hook)),
        }))
        .build()
        .unwrap();

    let report = engine.reconcile().await.unwrap();
    assert_eq!(
        report.orphans_ended, 0,
        "a job unknown to the snapshot is read afresh, not ended"
    );
    assert_eq!(bed.launcher.alive().len(), 2);
}

/// Two replicas on one store: one leads the reconciler at a time; when the
/// leader stops renewing (it died), the other leads within `leader_ttl`;
/// a leader that shuts down cleanly hands over at once.
#[tokio::test]
async fn leadership_is_held_by_one_replica_and_moves_when_it_lapses() {
    let bed = TestBed::new();
    let replica = |id: &str| {
        let mut config = bed.engine.config().clone();
        config.replica_id = id.into();
        bed.builder().config(config).build().unwrap()
    };
    let a = replica("replica-a");
    let b = replica("replica-b");
    assert!(a.leads().await.unwrap());
    assert!(!b.leads().await.unwrap(), "one leader at a time");
    assert!(!b.reconcile().await.unwrap().leader, "b does not reconcile");
    let ttl = bed.engine.config().leader_ttl;
    bed.advance(ttl / 2);
    assert!(a.leads().await.unwrap(), "a renews");
    bed.advance(ttl / 2 + std::time::Duration::from_millis(1));
    assert!(!b.leads().await.unwrap(), "renewed: still a's");
    bed.advance(ttl);
    assert!(b.leads().await.unwrap(), "a stopped renewing: b takes over");
    assert!(!a.leads().await.unwrap());

    // b shuts down cleanly: a leads at once.
    let run = b.run(async {});
    run.await.unwrap();
    assert!(a.leads().await.unwrap(), "b resigned on shutdown");
}

/// A slot is held by the replica that launched the job; when another
/// replica ends the job's instance (it took the `completed` webhook), the
/// launching replica frees the slot at its next tick, so its limit does
/// not fill up with jobs that are over.
#[tokio::test]
async fn a_slot_is_freed_when_another_replica_ends_the_job() {
    let bed = TestBed::with_config(|c| c.limits.per_account = Some(1));
    let a = bed.engine.clone();
    let mut config = a.config().clone();
    config.replica_id = "replica-b".into();
    let b = bed.builder().config(config).build().unwrap();

    let first = bed.job(1);
    bed.tell_github(&first.queued());
    a.handle(bed.delivery("d-1", first.queued())).await.unwrap();
    a.drain().await;
    assert_eq!(a.slots_held(), 1);
    let runner = TestBed::runner(&first, 1);
    for (id, event) in [
        ("d-2", first.in_progress(&runner)),
        ("d-3", first.completed(Conclusion::Success, Some(&runner))),
    ] {
        bed.tell_github(&event);
        b.handle(bed.delivery(id, event)).await.unwrap();
    }
    b.drain().await;
    assert_eq!(bed.record(&first).await.state, JobState::Cleaned);
    assert_eq!(a.slots_held(), 1, "a has not looked yet");

    let second = bed.job(2);
    bed.tell_github(&second.queued());
    a.handle(bed.delivery("d-4", second.queued()))
        .await
        .unwrap();
    a.process_due().await.unwrap();
    // A leaked slot would leave the launch waiting for ever: fail instead.
    tokio::time::timeout(Duration::from_secs(10), a.drain())
        .await
        .expect("the second job's launch got a slot");
    assert_eq!(
        bed.record(&second).await.state,
        JobState::Launched,
        "the slot the first job held is free again"
    );
}

/// Waits for what can finish now: launches waiting for a slot stay waiting
/// (the paused runtime moves its own time on only when nothing can run).
async fn settle(engine: &sprinters_core::engine::Engine) {
    let _ = tokio::time::timeout(Duration::from_secs(1), engine.drain()).await;
}

/// Two replicas on one store with a cap of two per account, three jobs
/// arriving at each: never more than two live instances in the account,
/// though each replica alone would allow two; a job over the cap waits,
/// queued, and launches once a slot frees, whichever replica frees it;
/// every job launches once. The cap is counted by the store's claim: each
/// replica's own count would let four instances run.
#[tokio::test(start_paused = true)]
async fn replicas_sharing_a_store_hold_one_cap_between_them() {
    let bed = TestBed::with_config(|c| c.limits.per_account = Some(2));
    let a = bed.engine.clone();
    let mut config = a.config().clone();
    config.replica_id = "replica-b".into();
    let b = bed.builder().config(config).build().unwrap();
    let replicas = [&a, &b];
    let jobs: Vec<_> = (1..=6).map(|n| bed.job(n)).collect();
    for (n, job) in jobs.iter().enumerate() {
        bed.tell_github(&job.queued());
        let replica = replicas[n % 2];
        replica
            .handle(bed.delivery(&format!("q-{n}"), job.queued()))
            .await
            .unwrap();
        settle(replica).await;
    }
    let mut done = 0;
    for round in 0..10 {
        for replica in replicas {
            replica.process_due().await.unwrap();
            settle(replica).await;
        }
        let alive = bed.launcher.alive().len();
        assert!(alive <= 2, "round {round}: {alive} live instances");
        // Every job with an instance runs and completes, each webhook at the
        // other replica.
        for (n, job) in jobs.iter().enumerate() {
            if bed.record(job).await.state != JobState::Launched {
                continue;
            }
            let runner = TestBed::runner(job, 1);
            let replica = replicas[(n + 1) % 2];
            for (id, event) in [
                (format!("p-{n}"), job.in_progress(&runner)),
                (
                    format!("c-{n}"),
                    job.completed(Conclusion::Success, Some(&runner)),
                ),
            ] {
                bed.tell_github(&event);
                replica.handle(bed.delivery(&id, event)).await.unwrap();
            }
            settle(replica).await;
            done += 1;
        }
        if done == jobs.len() {
            break;
        }
    }
    assert_eq!(done, jobs.len(), "every job launched in turn");
    for job in &jobs {
        assert_eq!(bed.record(job).await.state, JobState::Cleaned);
    }
    assert_eq!(bed.launcher.launch_calls(), 6, "each job launched once");
    // A launch refused a slot asks again on its replica's next tick: none
    // is left waiting.
    for replica in replicas {
        replica.process_due().await.unwrap();
        let drained = tokio::time::timeout(Duration::from_secs(1), replica.drain()).await;
        assert!(drained.is_ok(), "a launch task still waits");
    }
    // A replica counts the instances it launched until it sees them end;
    // those another replica ended free their slots on its next tick.
    for (n, replica) in replicas.into_iter().enumerate() {
        let job = bed.job(10 + n as u64);
        bed.tell_github(&job.queued());
        replica
            .handle(bed.delivery(&format!("late-{n}"), job.queued()))
            .await
            .unwrap();
        settle(replica).await;
        replica.process_due().await.unwrap();
        settle(replica).await;
        assert_eq!(
            bed.record(&job).await.state,
            JobState::Launched,
            "replica {n}"
        );
    }
}

/// A cap counts instances, not jobs: a job whose runner another job took
/// (same labels) still has that instance running, and its next launch waits
/// for a slot like any other job's, on the replica that launched it and on
/// one that did not.
#[tokio::test(start_paused = true)]
async fn a_job_whose_runner_another_took_waits_for_a_slot_like_any_other() {
    for relaunching_elsewhere in [false, true] {
        let bed = TestBed::with_config(|c| c.limits.per_account = Some(1));
        let a = bed.engine.clone();
        let mut config = a.config().clone();
        config.replica_id = "replica-b".into();
        let b = bed.builder().config(config).build().unwrap();
        let (victim, thief) = (bed.job(1), bed.job(2));
        bed.tell_github(&victim.queued());
        a.handle(bed.delivery("q", victim.queued())).await.unwrap();
        settle(&a).await;
        assert_eq!(bed.launcher.alive().len(), 1);

        // A job of the same labels, its `queued` lost, takes the runner.
        let stolen = TestBed::runner(&victim, 1);
        let handler = if relaunching_elsewhere { &b } else { &a };
        bed.tell_github(&thief.in_progress(&stolen));
        handler
            .handle(bed.delivery("p", thief.in_progress(&stolen)))
            .await
            .unwrap();
        for replica in [&a, &b] {
            settle(replica).await;
        }
        if relaunching_elsewhere {
            b.process_due().await.unwrap();
            settle(&b).await;
        }
        let case = if relaunching_elsewhere {
            "elsewhere"
        } else {
            "here"
        };
        assert_eq!(
            bed.launcher.alive().len(),
            1,
            "{case}: the thief's instance holds the one slot"
        );
        assert_eq!(
            bed.record(&victim).await.launches.len(),
            1,
            "{case}: not launched again yet"
        );

        // The thief's job ends on it: the slot frees, the victim launches.
        let done = thief.completed(Conclusion::Success, Some(&stolen));
        bed.tell_github(&done);
        handler.handle(bed.delivery("c", done)).await.unwrap();
        for replica in [&a, &b] {
            replica.process_due().await.unwrap();
            settle(replica).await;
        }
        let record = bed.record(&victim).await;
        assert_eq!(record.launches.len(), 2, "{case}: launched again");
        assert_eq!(bed.launcher.alive().len(), 1);
        for replica in [&a, &b] {
            replica.shutdown().await;
        }
    }
}

/// A pull source that answers every poll at once: with one delivery (a
/// busy queue) or with nothing (a short poll). Counts its answers; a poll
/// dropped before it answered is not one.
#[derive(Debug, Default)]
struct Prompt {
    busy: bool,
    answered: std::sync::atomic::AtomicU64,
}

impl Prompt {
    fn answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl sprinters_core::ports::EventSource for Prompt {
    async fn poll(
        &self,
        _: sprinters_core::ports::Poll,
    ) -> sprinters_core::Result<sprinters_core::ports::Polled> {
        tokio::task::yield_now().await;
        let n = self
            .answered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let deliveries = if self.busy {
            vec![sprinters_core::events::Delivery {
                id: sprinters_core::domain::DeliveryId::parse(&format!("busy-{n}")).unwrap(),
                received_at: sprinters_core::time::Timestamp::from_millis(0),
                event: sprinters_core::events::Event::Ping,
            }]
        } else {
            Vec::new()
        };
        Ok(sprinters_core::ports::Polled::new(deliveries))
    }
    async fn ack(&self, _: sprinters_core::ports::Ack) -> sprinters_core::Result<()> {
        Ok(())
    }
}

/// Counts reconciliation passes (each tells the observer the active jobs).
#[derive(Debug, Default)]
struct Passes(std::sync::atomic::AtomicU64);

impl sprinters_core::observe::EngineObserver for Passes {
    fn active_jobs(&self, _: &std::collections::BTreeMap<JobState, u64>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The tick (due launches, reconciliation, owners) runs on time even when
/// every poll answers at once: a busy source does not reset its timer.
#[tokio::test]
async fn a_source_that_always_has_work_does_not_starve_the_tick() {
    let bed = TestBed::new();
    let passes = Arc::new(Passes::default());
    let busy = Arc::new(Prompt {
        busy: true,
        ..Prompt::default()
    });
    let engine = bed
        .builder()
        .source(busy.clone())
        .observer(passes.clone())
        .build()
        .unwrap();
    let interval = engine.config().reconcile_interval + Duration::from_secs(1);
    let (stop, running) = spawn_run(engine);
    let count = || passes.0.load(std::sync::atomic::Ordering::SeqCst);
    // The loop runs (its tick is set) once the source has been polled.
    while busy.answered() == 0 {
        tokio::task::yield_now().await;
    }
    // Each step is a reconciliation interval: a tick that is not reset by
    // the polls fires in every one of them, and reconciles.
    for step in 1..=20 {
        bed.advance(interval);
        for _ in 0..10_000 {
            if count() >= step {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert!(
        count() >= 20,
        "{} of 20 reconciliation passes ran while the source was busy",
        count()
    );
}

/// After an empty answer the engine waits a second before it polls again
/// (on its clock, across ticks): a source that answers at once with
/// nothing does not spin the loop.
#[tokio::test]
async fn an_empty_poll_is_not_repeated_at_once() {
    let bed = TestBed::new();
    let empty = Arc::new(Prompt::default());
    // Ticks every 300 ms, so that a tick falls inside the one-second pause.
    let mut config = bed.engine.config().clone();
    config.tick_interval = Duration::from_millis(300);
    let engine = bed
        .builder()
        .source(empty.clone())
        .config(config)
        .build()
        .unwrap();
    let (stop, running) = spawn_run(engine);
    let polls = || empty.answered();
    for _ in 0..1_000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(polls(), 1, "one poll, then a wait on the clock");
    // Half the pause, then a tick (which drops the waiting poll): still no
    // second poll before the pause is over.
    bed.advance(Duration::from_millis(500));
    for _ in 0..1_000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(polls(), 1, "the wait is a deadline, not restarted");
    bed.advance(Duration::from_millis(600));
    for _ in 0..1_000 {
        if polls() >= 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(polls(), 2, "polled again once the pause is over");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}
