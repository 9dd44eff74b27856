//! The engine over in-memory adapters on this machine's cores.
//! Targets: at least 20,000 full job lifecycles per second, and the time
//! from a queued delivery to the launch call under 200 µs at p99.

// Benchmarks stop loudly, print their percentiles, and need no docs.
#![allow(clippy::panic, clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sprinters_benches::{Rig, percentile};

/// Jobs in flight at once, like a busy organisation's burst.
const CONCURRENCY: u64 = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn lifecycles(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(CONCURRENCY * 16));
    group.sample_size(20);
    for (name, pinned) in [
        ("full_lifecycles_pinned_labels", true),
        ("full_lifecycles_shared_labels", false),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let rig = Arc::new(Rig::new());
                let mut elapsed = Duration::ZERO;
                for i in 0..iters {
                    let start = Instant::now();
                    let streams = (0..CONCURRENCY).map(|s| {
                        let rig = rig.clone();
                        tokio::spawn(async move {
                            for n in 0..16 {
                                let id = 1 + i * 1_000_000 + s * 1_000 + n;
                                if pinned {
                                    rig.pinned_lifecycle(id).await;
                                } else {
                                    rig.lifecycle(id).await;
                                }
                            }
                        })
                    });
                    for stream in futures_join(streams).await {
                        stream.unwrap_or_else(|e| panic!("{e}"));
                    }
                    elapsed += start.elapsed();
                }
                elapsed
            })
        });
    }
    group.finish();
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await);
    }
    out
}

/// Queued delivery to launch call, one job at a time on an idle engine,
/// and at steady load beside 63 other streams; p50/p99 printed after.
fn queued_to_launch(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("engine");
    group.bench_function("queued_to_launch_call", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let rig = Rig::new();
            let mut total = Duration::ZERO;
            for i in 0..iters {
                total += rig.lifecycle(1 + i).await;
            }
            total
        })
    });
    group.finish();

    for (label, streams) in [
        ("idle engine", 1u64),
        ("64 concurrent streams", CONCURRENCY),
    ] {
        let samples = rt.block_on(async {
            let rig = Arc::new(Rig::new());
            let per_stream = 20_000 / streams;
            let tasks: Vec<_> = (0..streams)
                .map(|s| {
                    let rig = rig.clone();
                    tokio::spawn(async move {
                        let mut v = Vec::with_capacity(per_stream as usize);
                        for n in 0..per_stream {
                            v.push(rig.lifecycle(1 + s * 1_000_000 + n).await);
                        }
                        v
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap_or_else(|e| panic!("{e}")));
            }
            all
        });
        let mut samples = samples;
        let p50 = percentile(&mut samples, 50.0);
        let p99 = percentile(&mut samples, 99.0);
        println!(
            "engine/queued_to_launch_call ({label}, {} jobs): p50 {:.1} µs, p99 {:.1} µs",
            samples.len(),
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
}

criterion_group!(benches, lifecycles, queued_to_launch);
criterion_main!(benches);
