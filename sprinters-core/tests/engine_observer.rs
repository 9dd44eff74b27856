//! An engine observer hears of every launch (with the job's wait), every
//! ended instance (with why) and every port call (with its error), the
//! store's included.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sprinters_core::events::Conclusion;
use std::collections::BTreeMap;

use sprinters_core::job::{EndReason, JobState};
use sprinters_core::observe::{Api, EngineObserver, InstanceEnded, Launching, Observers, PortCall};
use sprinters_core::testing::TestBed;

#[derive(Debug, Default)]
struct Recorder {
    launches: Mutex<Vec<(u32, Duration)>>,
    ended: Mutex<Vec<(EndReason, bool)>>,
    calls: Mutex<Vec<(Api, &'static str, Option<String>)>>,
    states: Mutex<Vec<(Option<JobState>, JobState)>>,
    active: Mutex<Option<BTreeMap<JobState, u64>>>,
}

impl EngineObserver for Recorder {
    fn launching(&self, event: &Launching) {
        let mut launches = self.launches.lock().unwrap();
        launches.push((event.launch_number, event.since_queued));
    }
    fn instance_ended(&self, event: &InstanceEnded) {
        let mut ended = self.ended.lock().unwrap();
        ended.push((event.reason, event.was_running));
    }
    fn job_state_changed(&self, from: Option<JobState>, to: JobState) {
        self.states.lock().unwrap().push((from, to));
    }
    fn active_jobs(&self, by_state: &BTreeMap<JobState, u64>) {
        *self.active.lock().unwrap() = Some(by_state.clone());
    }
    fn port_call(&self, call: &PortCall<'_>) {
        let kind = call.error.map(|e| e.kind().as_str().to_owned());
        self.calls
            .lock()
            .unwrap()
            .push((call.api, call.operation, kind));
    }
}

#[tokio::test]
async fn the_observer_hears_launches_ends_and_port_calls() {
    let bed = TestBed::new();
    let recorder = Arc::new(Recorder::default());
    let engine = bed.builder().observer(recorder.clone()).build().unwrap();
    bed.registry.faults().fail_next("create_jit_runner", 1, || {
        sprinters_core::Error::unavailable("GitHub is down")
    });

    let job = bed.job(1);
    bed.tell_github(&job.queued());
    engine
        .handle(bed.delivery("d-1", job.queued()))
        .await
        .unwrap();
    engine.drain().await;
    assert!(
        recorder.launches.lock().unwrap().is_empty(),
        "no launch without a JIT config"
    );
    assert!(
        recorder.calls.lock().unwrap().contains(&(
            Api::Registry,
            "create_jit_runner",
            Some("unavailable".into())
        )),
        "{:?}",
        recorder.calls.lock().unwrap()
    );

    // The retry, after its backoff: the wait counts from the webhook.
    bed.advance(Duration::from_secs(90));
    engine.process_due().await.unwrap();
    engine.drain().await;
    let launches = recorder.launches.lock().unwrap().clone();
    assert_eq!(launches.len(), 1, "{launches:?}");
    assert_eq!(launches[0].0, 1, "the job's first launch");
    assert!(
        launches[0].1 >= Duration::from_secs(90),
        "waited since queued: {launches:?}"
    );
    assert!(
        recorder
            .calls
            .lock()
            .unwrap()
            .contains(&(Api::Launcher, "launch", None))
    );
    assert!(
        recorder
            .calls
            .lock()
            .unwrap()
            .contains(&(Api::Credentials, "credentials", None))
    );
    // The store's calls too (through the same layer as the others).
    assert!(
        recorder
            .calls
            .lock()
            .unwrap()
            .contains(&(Api::Store, "put_job", None)),
        "{:?}",
        recorder.calls.lock().unwrap()
    );

    let runner = TestBed::runner(&job, 1);
    for (id, event) in [
        ("d-2", job.in_progress(&runner)),
        ("d-3", job.completed(Conclusion::Success, Some(&runner))),
    ] {
        bed.tell_github(&event);
        engine.handle(bed.delivery(id, event)).await.unwrap();
    }
    engine.drain().await;
    assert_eq!(
        *recorder.ended.lock().unwrap(),
        vec![(EndReason::JobCompleted, true)]
    );
    assert!(
        recorder
            .calls
            .lock()
            .unwrap()
            .contains(&(Api::Launcher, "terminate", None))
    );
}

/// An end that reaches EC2 but not the store (a crash between the two) is
/// ended again later; the observer hears of the instance once, from the end
/// that was recorded, so the metric counts instances rather than calls.
#[tokio::test]
async fn an_instance_ended_twice_is_heard_of_once() {
    let bed = TestBed::new();
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hook_armed = armed.clone();
    let store = Arc::new(sprinters_core::testing::HookedStore::new(
        bed.store.clone(),
        move |record| {
            let records_end = record.launches.iter().any(|l| l.ended.is_some());
            if records_end && hook_armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(sprinters_core::Error::unavailable(
                    "crashed after terminating",
                ));
            }
            Ok(())
        },
    ));
    let recorder = Arc::new(Recorder::default());
    let engine = bed
        .builder()
        .store(store)
        .observer(recorder.clone())
        .build()
        .unwrap();

    let job = bed.job(1);
    bed.tell_github(&job.queued());
    engine
        .handle(bed.delivery("d-1", job.queued()))
        .await
        .unwrap();
    engine.drain().await;
    let runner = TestBed::runner(&job, 1);
    for (id, event) in [
        ("d-2", job.in_progress(&runner)),
        ("d-3", job.completed(Conclusion::Success, Some(&runner))),
    ] {
        bed.tell_github(&event);
        engine.handle(bed.delivery(id, event)).await.unwrap();
    }
    engine.drain().await;
    assert!(
        !armed.load(std::sync::atomic::Ordering::SeqCst),
        "the first end reached EC2 and failed to record"
    );
    assert!(
        recorder.ended.lock().unwrap().is_empty(),
        "nothing recorded yet"
    );

    engine.reconcile().await.unwrap();
    let ended = recorder.ended.lock().unwrap().clone();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].0, EndReason::JobCompleted);
    let record = bed.record(&job).await;
    assert!(record.launches[0].ended.is_some(), "{record:?}");
}

#[tokio::test]
async fn the_observer_hears_every_state_change_and_the_leaders_count_of_active_jobs() {
    let bed = TestBed::new();
    let recorder = Arc::new(Recorder::default());
    // Through `Observers`, which must pass every kind of event on.
    let fan_out = Observers(vec![recorder.clone() as Arc<dyn EngineObserver>]);
    let engine = bed.builder().observer(Arc::new(fan_out)).build().unwrap();
    let send = |id: &str, e| {
        bed.tell_github(&e);
        engine.handle(bed.delivery(id, e))
    };
    let (a, b) = (bed.job(1), bed.job(2).labels(&["sprinters:aws", "pin-2"]));
    send("a-q", a.queued()).await.unwrap();
    send("b-q", b.queued()).await.unwrap();
    engine.drain().await;
    let runner = TestBed::runner(&a, 1);
    send("a-s", a.in_progress(&runner)).await.unwrap();
    send("a-c", a.completed(Conclusion::Success, Some(&runner)))
        .await
        .unwrap();
    engine.drain().await;
    let into = |job_state: JobState| {
        recorder
            .states
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, to)| *to == job_state)
            .count()
    };
    assert_eq!(into(JobState::Launching), 2, "both recorded claimed");
    assert_eq!(into(JobState::Launched), 2);
    assert_eq!(into(JobState::Running), 1);
    assert_eq!(into(JobState::Cleaned), 1);
    assert!(
        recorder
            .states
            .lock()
            .unwrap()
            .iter()
            .all(|(from, to)| from != &Some(*to)),
        "only changes are told"
    );

    engine.reconcile().await.unwrap();
    assert_eq!(
        recorder.active.lock().unwrap().clone().unwrap(),
        BTreeMap::from([(JobState::Launched, 1)]),
        "the active jobs, counted by the pass"
    );

    // Another replica leads from now on: this one's count goes.
    let other = bed
        .builder()
        .config({
            let mut c = bed.engine.config().clone();
            c.replica_id = "replica-2".into();
            c
        })
        .build()
        .unwrap();
    sprinters_core::ports::JobStore::release_lease(
        bed.store.as_ref(),
        sprinters_core::ports::ReleaseLease::new(
            sprinters_core::engine::LEADER_LEASE,
            engine.config().replica_id.clone(),
        ),
    )
    .await
    .unwrap();
    assert!(other.leads().await.unwrap());
    engine.reconcile().await.unwrap();
    assert_eq!(
        recorder.active.lock().unwrap().clone().unwrap(),
        BTreeMap::new(),
        "a replica that does not lead counts nothing"
    );
}
