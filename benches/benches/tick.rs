//! What an idle control plane costs with a year of history: the engine
//! over the SQLite store holding 1,000,000 finished and 10,000 running
//! jobs, beside the same engine over an empty store, in one run.
//! Targets: idle CPU under 2% of one core (a tick every second and a
//! reconciliation pass every minute), the queued-to-launch p99 within
//! 1.2x of the empty store's, and on the empty store the queued-to-launch
//! p50 within 1.5x of the path no launch can skip, measured on the same
//! disk and stand-ins: one durable write, then one JIT config request.

// Benchmarks stop loudly, print their figures, and need no docs.
#![allow(clippy::panic, clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sprinters_benches::{Rig, percentile};
use sprinters_core::domain::{DeliveryId, JobId, JobKey, RunAttempt, RunnerName};
use sprinters_core::job::{JobState, Lease};
use sprinters_core::ports::{CreateJitRunner, JobStore, PutJob, RecordDelivery, RunnerRegistry};
use sprinters_core::testing::{TestBed, sample_record};
use sprinters_store::{MasterKey, SqliteJobStore};

/// The history: `TICK_FINISHED` and `TICK_ACTIVE` override the sizes.
fn sizes() -> (u64, u64) {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (env("TICK_FINISHED", 1_000_000), env("TICK_ACTIVE", 10_000))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `finished` finished and `active` running jobs with 64 writers,
/// queued in the minutes before `now` (inside the retention, so that the
/// reconciler's purge keeps them).
fn fill(
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn JobStore>,
    now: u64,
    finished: u64,
    active: u64,
) {
    rt.block_on(async {
        let total = finished + active;
        let tasks: Vec<_> = (0..64u64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut n = w;
                    while n < total {
                        let id = 10_000_000 + n;
                        let repo = if n % 2 == 0 {
                            "octo-org/app"
                        } else {
                            "acme/api"
                        };
                        let mut r = sample_record(id, repo, now - (total - n));
                        r.state = if n < finished {
                            JobState::Cleaned
                        } else {
                            JobState::Running
                        };
                        store.put_job(PutJob::create(r)).await.unwrap();
                        n += 64;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn mean(f: impl Fn() -> Duration, n: u32) -> Duration {
    (0..n).map(|_| f()).sum::<Duration>() / n
}

fn idle_cost(c: &mut Criterion) {
    let rt = runtime();
    let key = MasterKey::generate();
    let (finished, active) = sizes();
    let empty_dir = tempfile::tempdir().unwrap();
    let loaded_dir = tempfile::tempdir().unwrap();
    let empty: Arc<dyn JobStore> =
        Arc::new(SqliteJobStore::open_with_key(empty_dir.path(), &key).unwrap());
    let loaded: Arc<dyn JobStore> =
        Arc::new(SqliteJobStore::open_with_key(loaded_dir.path(), &key).unwrap());
    let beds = [TestBed::new(), TestBed::new()];
    let now = sprinters_core::time::Clock::now(beds[1].clock.as_ref()).as_millis();
    let started = Instant::now();
    fill(&rt, loaded.clone(), now, finished, active);
    println!(
        "tick/fill: {finished} finished and {active} running jobs written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let history = format!("{}k_finished_{}k_running", finished / 1000, active / 1000);

    let mut group = c.benchmark_group("tick");
    group.sample_size(10);
    let rigs: Vec<(String, Rig, Arc<dyn JobStore>)> =
        [("empty_store".to_owned(), empty), (history, loaded)]
            .into_iter()
            .zip(beds)
            .map(|((name, store), bed)| (name, Rig::with_store(bed, store.clone()), store))
            .collect();
    for (name, rig, _) in &rigs {
        group.bench_function(format!("idle_tick/{name}"), |b| {
            b.to_async(&rt)
                .iter(|| async { rig.engine.process_due().await.unwrap() })
        });
        group.bench_function(format!("reconcile_pass/{name}"), |b| {
            b.to_async(&rt)
                .iter(|| async { rig.engine.reconcile().await.unwrap() })
        });
        // Wall time of each step, an upper bound of its CPU time: one tick
        // a second and one pass a minute make the idle load.
        let tick = mean(|| time(&rt, || rig.engine.process_due()), 200);
        let pass = mean(|| time(&rt, || rig.engine.reconcile()), 5);
        let per_second = tick + pass / 60;
        println!(
            "tick/idle_cpu ({name}): tick {:.1} µs, reconcile pass {:.1} ms: at most {:.3}% of one core",
            tick.as_secs_f64() * 1e6,
            pass.as_secs_f64() * 1e3,
            per_second.as_secs_f64() * 100.0
        );
    }
    group.finish();
    // The latencies, interleaved job by job (each store, then each floor on
    // it) so that every figure meets the same moments of this shared disk.
    // On a runtime worker, as the server's request handlers run: a task
    // spawned from there starts on the same thread, without waking one.
    let rigs = Arc::new(rigs);
    let on_worker = Arc::clone(&rigs);
    let samples = rt
        .block_on(rt.spawn(async move {
            let rigs = on_worker;
            let mut samples = vec![Latencies::default(); rigs.len()];
            for n in 0..2_000 {
                for ((_, rig, store), s) in rigs.iter().zip(samples.iter_mut()) {
                    s.launch.push(rig.lifecycle(1 + n).await);
                    let store = store.as_ref();
                    let registry = rig.bed.registry.as_ref();
                    let plain = sample_record(900_000 + n, "octo-org/app", now);
                    s.plain
                        .push(write_then_jit(store, registry, PutJob::create(plain)).await);
                    let launched = rig.bed.job(1 + n).key;
                    let same = as_on_arrival(store, launched, 1_900_000 + n).await;
                    s.same.push(write_then_jit(store, registry, same).await);
                }
            }
            samples
        }))
        .unwrap();
    for ((name, _, _), mut s) in rigs.iter().zip(samples) {
        let p50 = percentile(&mut s.launch, 50.0);
        println!(
            "tick/queued_to_launch_call ({name}, 2000 jobs one at a time): p50 {:.1} µs, p99 {:.1} µs",
            p50.as_secs_f64() * 1e6,
            percentile(&mut s.launch, 99.0).as_secs_f64() * 1e6
        );
        for (what, floor) in [
            ("the arrival write", &mut s.same),
            ("a bare queued record", &mut s.plain),
        ] {
            let floor_p50 = percentile(floor, 50.0);
            println!(
                "tick/one_write_then_jit ({name}, {what}): p50 {:.1} µs; queued-to-launch p50 is {:.2}x that",
                floor_p50.as_secs_f64() * 1e6,
                p50.as_secs_f64() / floor_p50.as_secs_f64()
            );
        }
    }
}

/// Queued-to-launch latencies of one store, and the floors beside them.
#[derive(Clone, Default)]
struct Latencies {
    launch: Vec<Duration>,
    /// One durable write of the record the engine writes on arrival, then
    /// one JIT request.
    same: Vec<Duration>,
    /// One durable write of a bare queued record, then one JIT request.
    plain: Vec<Duration>,
}

/// The path no launch can skip, on this disk and stand-in: one durable
/// write of a new job, then its JIT config request.
async fn write_then_jit(
    store: &dyn JobStore,
    registry: &dyn RunnerRegistry,
    put: PutJob,
) -> Duration {
    let r = &put.record;
    let jit = CreateJitRunner::new(
        r.installation_id,
        r.repository.clone(),
        RunnerName::for_launch(r.key, 1),
        r.labels.clone(),
    );
    let (key, start) = (r.key, Instant::now());
    let version = store.put_job(put).await.unwrap();
    registry.create_jit_runner(jit).await.unwrap();
    let took = start.elapsed();
    // Finished, so that the floors leave the engine's active jobs as they
    // found them.
    let mut done = store.get_job(key).await.unwrap().unwrap().value;
    done.state = JobState::Cleaned;
    done.launches.clear();
    done.lease = None;
    store.put_job(PutJob::replace(done, version)).await.unwrap();
    took
}

/// The write the engine made when job `launched` arrived, for a new job
/// `id`: its record as it was then (claimed, with its launch intent) and
/// its delivery, rebuilt from the record as it ended.
async fn as_on_arrival(store: &dyn JobStore, launched: JobKey, id: u64) -> PutJob {
    let mut r = store.get_job(launched).await.unwrap().unwrap().value;
    r.key = JobKey::new(JobId::new(id), RunAttempt::FIRST);
    r.state = JobState::Launching;
    r.started_at = None;
    r.completed_at = None;
    r.conclusion = None;
    r.ran_on = None;
    r.ran_on_launch = None;
    r.cost_micros = None;
    r.lease = Some(Lease {
        owner: "replica".into(),
        expires_at: r.queued_at.saturating_add(Duration::from_secs(60)),
    });
    for l in &mut r.launches {
        l.runner_name = RunnerName::for_launch(r.key, l.number);
        l.runner_id = None;
        l.instance_id = None;
        l.launched_at = None;
        l.taken_by = None;
        l.ended = None;
    }
    let delivery = RecordDelivery::new(DeliveryId::parse(&format!("{id}-q")).unwrap(), r.queued_at);
    PutJob::create(r).with_delivery(delivery)
}

fn time<F, T>(rt: &tokio::runtime::Runtime, step: impl Fn() -> F) -> Duration
where
    F: std::future::Future<Output = sprinters_core::Result<T>>,
{
    let start = Instant::now();
    rt.block_on(step()).unwrap();
    start.elapsed()
}

criterion_group!(benches, idle_cost);
criterion_main!(benches);
