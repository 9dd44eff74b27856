//! `sprinters serve` end to end through real HTTP on loopback: signed
//! webhooks, the durable SQLite store, and the real AWS SDK and octocrab
//! clients talking to in-process stand-ins for STS, EC2 and GitHub.
//!
//! Targets (README): with stand-ins that answer at once, at least 2,000
//! full job lifecycles per second, and webhook-to-`RunInstances` p99 under
//! 5 ms at a steady 500 jobs/s; with every stand-in call taking 20 ms,
//! webhook-to-`RunInstances` at most 1.1 times the unavoidable path
//! (`AssumeRole` ‖ JIT config, then `RunInstances`), measured side by side.

#![allow(clippy::panic, clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sprinters_benches::control_plane::ControlPlaneRig;
use sprinters_benches::{Rig, percentile};
use sprinters_core::testing::TestBed;

/// Client streams at once, each a keep-alive connection.
const STREAMS: u64 = 64;
/// Lifecycles per stream per iteration.
const PER_STREAM: u64 = 8;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn lifecycles(c: &mut Criterion) {
    let rt = runtime();
    let rig = Arc::new(rt.block_on(ControlPlaneRig::start(Duration::ZERO)));
    let mut group = c.benchmark_group("control_plane");
    group.throughput(Throughput::Elements(STREAMS * PER_STREAM));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("full_lifecycles_64_streams", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let rig = rig.clone();
            async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let streams: Vec<_> = (0..STREAMS)
                        .map(|_| {
                            let rig = rig.clone();
                            tokio::spawn(async move {
                                let mut connection = rig.connect().await;
                                for _ in 0..PER_STREAM {
                                    rig.lifecycle(&mut connection).await;
                                }
                            })
                        })
                        .collect();
                    for stream in streams {
                        stream.await.unwrap();
                    }
                    elapsed += start.elapsed();
                }
                elapsed
            }
        })
    });

    // Where a lifecycle's CPU goes, measured beside it on the same rig:
    // its parts alone, 64 at a time like the lifecycles.
    let baseline = Arc::new(rt.block_on(rig.baseline()));
    group.throughput(Throughput::Elements(STREAMS * PER_STREAM));
    group.bench_function("part_signed_ping_webhook", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let rig = rig.clone();
            async move {
                concurrently(iters, &rig, |rig| async move {
                    let mut connection = rig.connect().await;
                    for _ in 0..PER_STREAM {
                        rig.ping(&mut connection).await;
                    }
                })
                .await
            }
        })
    });
    group.bench_function("part_sdk_run_instances", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (rig, baseline) = (rig.clone(), baseline.clone());
            async move {
                concurrently(iters, &rig, move |rig| {
                    let baseline = baseline.clone();
                    async move {
                        for _ in 0..PER_STREAM {
                            rig.run_instances_alone(&baseline).await;
                        }
                    }
                })
                .await
            }
        })
    });
    group.bench_function("part_engine_on_the_sqlite_store", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let dir = tempfile::tempdir().unwrap();
            let store = sprinters_store::SqliteJobStore::open_with_key(
                dir.path(),
                &sprinters_store::MasterKey::generate(),
            )
            .unwrap();
            let engine = Arc::new(Rig::with_store(TestBed::new(), Arc::new(store)));
            let mut elapsed = Duration::ZERO;
            for i in 0..iters {
                let start = Instant::now();
                let streams: Vec<_> = (0..STREAMS)
                    .map(|s| {
                        let engine = engine.clone();
                        tokio::spawn(async move {
                            for n in 0..PER_STREAM {
                                engine
                                    .pinned_lifecycle(1 + i * 1_000_000 + s * 1_000 + n)
                                    .await;
                            }
                        })
                    })
                    .collect();
                for stream in streams {
                    stream.await.unwrap();
                }
                elapsed += start.elapsed();
            }
            elapsed
        })
    });
    group.finish();
    drop(baseline);

    // Open loop: a queued webhook every 2 ms, whatever the control plane
    // is doing, each job on its own connection as GitHub sends them.
    let samples = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        let mut jobs = Vec::new();
        for _ in 0..3000 {
            tick.tick().await;
            let rig = rig.clone();
            jobs.push(tokio::spawn(async move {
                let mut connection = rig.connect().await;
                rig.lifecycle(&mut connection).await
            }));
        }
        let mut samples = Vec::with_capacity(jobs.len());
        for job in jobs {
            samples.push(job.await.unwrap());
        }
        samples
    });
    report("steady 500 jobs/s, stand-ins answer at once", samples);
    let rig = Arc::into_inner(rig).unwrap();
    rt.block_on(rig.stop());
}

/// `iters` rounds of [`STREAMS`] concurrent runs of `stream`, timed.
async fn concurrently<F, Fut>(iters: u64, rig: &Arc<ControlPlaneRig>, stream: F) -> Duration
where
    F: Fn(Arc<ControlPlaneRig>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut elapsed = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let tasks: Vec<_> = (0..STREAMS)
            .map(|_| tokio::spawn(stream(rig.clone())))
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        elapsed += start.elapsed();
    }
    elapsed
}

fn report(label: &str, mut samples: Vec<Duration>) {
    let p50 = percentile(&mut samples, 50.0);
    let p99 = percentile(&mut samples, 99.0);
    println!(
        "control_plane/webhook_to_run_instances ({label}, {} jobs): p50 {:.2} ms, p99 {:.2} ms",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}

/// Every stand-in call takes 20 ms: the control plane against the
/// unavoidable path, with the same clients and stand-ins, in one run.
fn slow_apis(c: &mut Criterion) {
    let rt = runtime();
    let rig = Arc::new(rt.block_on(ControlPlaneRig::start(Duration::from_millis(20))));
    let baseline = Arc::new(rt.block_on(rig.baseline()));
    let mut group = c.benchmark_group("control_plane_20ms_apis");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("webhook_to_run_instances", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let rig = rig.clone();
            async move {
                let mut connection = rig.connect().await;
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rig.lifecycle(&mut connection).await;
                }
                total
            }
        })
    });
    group.bench_function("unavoidable_path", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (rig, baseline) = (rig.clone(), baseline.clone());
            async move {
                let mut total = Duration::ZERO;
                for n in 0..iters {
                    total += rig.unavoidable_path(&baseline, n + 1).await;
                }
                total
            }
        })
    });
    group.finish();

    // Percentiles, the two interleaved so that both see the same machine.
    let (ours, floor) = rt.block_on(async {
        let mut connection = rig.connect().await;
        let (mut ours, mut floor) = (Vec::new(), Vec::new());
        for n in 0..200 {
            ours.push(rig.lifecycle(&mut connection).await);
            floor.push(rig.unavoidable_path(&baseline, 10_000 + n).await);
        }
        (ours, floor)
    });
    let (mut ours, mut floor) = (ours, floor);
    let (p50, floor50) = (percentile(&mut ours, 50.0), percentile(&mut floor, 50.0));
    report("every stand-in call 20 ms", ours.clone());
    println!(
        "control_plane/unavoidable_path (every stand-in call 20 ms, {} runs): p50 {:.2} ms, p99 {:.2} ms; \
         control plane / unavoidable at p50: {:.3}x",
        floor.len(),
        floor50.as_secs_f64() * 1e3,
        percentile(&mut floor, 99.0).as_secs_f64() * 1e3,
        p50.as_secs_f64() / floor50.as_secs_f64()
    );
    drop(baseline);
    let rig = Arc::into_inner(rig).unwrap();
    rt.block_on(rig.stop());
}

criterion_group!(benches, lifecycles, slow_apis);
criterion_main!(benches);
