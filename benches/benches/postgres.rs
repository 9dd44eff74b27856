//! Job lifecycles per second with one and with three replicas sharing one
//! PostgreSQL database (on this machine, beside the benchmark), and the
//! database round trips one lifecycle costs. Run with
//! `scripts/bench-postgres`, which starts the server.
//! Target: three replicas do at least 0.9 times what one does.

#![allow(clippy::panic, clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sprinters_benches::postgres::{Replicas, fresh_database};

/// Jobs in flight at once, over all replicas.
const CONCURRENCY: u64 = 48;
const PER_STREAM: u64 = 4;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `CONCURRENCY` streams of `PER_STREAM` lifecycles, the streams
/// dealt round-robin to the replicas; returns the wall time.
async fn burst(replicas: &Arc<Replicas>, round: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|s| {
            let replicas = replicas.clone();
            tokio::spawn(async move {
                let rig = &replicas.rigs[s as usize % replicas.rigs.len()];
                for n in 0..PER_STREAM {
                    rig.lifecycle(1 + round * 1_000_000 + s * 1_000 + n).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    start.elapsed()
}

fn lifecycles(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("postgres");
    group.throughput(Throughput::Elements(CONCURRENCY * PER_STREAM));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for n in [1usize, 3] {
        let replicas = rt.block_on(async {
            let url = fresh_database().await;
            Arc::new(Replicas::start(&url, n, 16).await)
        });
        let mut round = 0u64;
        let before = replicas.round_trips();
        let mut done = 0u64;
        group.bench_function(
            format!("lifecycles_{n}_replica{}", if n == 1 { "" } else { "s" }),
            |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let replicas = replicas.clone();
                    let start_round = round;
                    round += iters;
                    done += iters * CONCURRENCY * PER_STREAM;
                    async move {
                        let mut total = Duration::ZERO;
                        for i in 0..iters {
                            total += burst(&replicas, start_round + i).await;
                        }
                        total
                    }
                })
            },
        );
        let trips = replicas.round_trips() - before;
        println!(
            "postgres/{n} replica(s): {done} lifecycles, {trips} statements, {:.1} round trips per lifecycle",
            trips as f64 / done.max(1) as f64
        );
    }
    group.finish();
}

criterion_group!(benches, lifecycles);
criterion_main!(benches);
