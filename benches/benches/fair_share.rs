//! One owner's flood against another owner's steady work, side by side in
//! one run: owner A holds 10,000 queued jobs over its cap of one instance
//! while owner B sends jobs one at a time; beside it, the same engine with
//! A idle. Targets: B's webhook-to-`RunInstances` p99 within 1.5x of the
//! run with A idle, and the control plane's idle CPU with A's backlog (a
//! tick every second, a reconciliation pass every minute) under 5% of one
//! core. Both engines keep their records in SQLite, the default store.

// Benchmarks stop loudly, print their figures, and need no docs.
#![allow(clippy::panic, clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sprinters_benches::{Rig, percentile};
use sprinters_core::ports::JobStore;
use sprinters_core::testing::{JobEvents, TestBed};
use sprinters_store::{MasterKey, SqliteJobStore};

const RIVAL: u64 = 5353;
const RIVAL_INSTALLATION: u64 = 8;

/// A's backlog: `FAIR_BACKLOG` overrides it.
fn backlog() -> u64 {
    std::env::var("FAIR_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A rig over a fresh SQLite store, owner B connected.
fn rig(dir: &std::path::Path) -> Rig {
    let store: Arc<dyn JobStore> =
        Arc::new(SqliteJobStore::open_with_key(dir, &MasterKey::generate()).unwrap());
    let bed = TestBed::new();
    bed.connect("rival-org", RIVAL, RIVAL_INSTALLATION, "210987654321");
    Rig::with_store(bed, store)
}

/// B's job `n`, pinned to its own label.
fn b_job(rig: &Rig, n: u64) -> JobEvents {
    rig.bed
        .job(n)
        .repository("rival-org/app")
        .owner(RIVAL, RIVAL_INSTALLATION)
        .labels(&["sprinters:aws:ubuntu-latest", &format!("{n}-1-build")])
}

/// A's flood: its cap set to one instance, then `n` queued jobs, each
/// pinned to its own label. One launches; the others wait for its slot.
async fn flood(rig: &Rig, n: u64) {
    let policy = serde_json::from_str(r#"{"max_instances": 1}"#).unwrap();
    rig.engine
        .set_owner_policy(
            TestBed::OWNER_ID,
            TestBed::INSTALLATION_ID,
            rig.bed.owner.clone(),
            Some(policy),
        )
        .await
        .unwrap();
    for i in 0..n {
        let id = 50_000_000 + i;
        let job = rig
            .bed
            .job(id)
            .labels(&["sprinters:aws:ubuntu-latest", &format!("{id}-1-build")]);
        rig.bed.tell_github(&job.queued());
        rig.handle(&format!("{id}-q"), job.queued()).await;
    }
}

/// B's lifecycles, one at a time: each job's queued-to-launch-call time.
async fn b_lifecycles(rig: &Rig, n: u64) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n as usize);
    for i in 0..n {
        v.push(rig.lifecycle_of(b_job(rig, 1 + i)).await);
    }
    v
}

fn fair_share(c: &mut Criterion) {
    let rt = runtime();
    let (idle_dir, flood_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let idle = rig(idle_dir.path());
    let flooded = rig(flood_dir.path());
    let n = backlog();
    let started = Instant::now();
    rt.block_on(flood(&flooded, n));
    println!(
        "fair_share/flood: {n} of A's jobs queued in {:.1} s; A's live instances {}",
        started.elapsed().as_secs_f64(),
        flooded.bed.launcher.alive().len()
    );

    let mut group = c.benchmark_group("fair_share");
    group.sample_size(10);
    for (name, rig) in [("a_idle", &idle), ("a_flooding", &flooded)] {
        group.bench_function(format!("tick/{name}"), |b| {
            b.to_async(&rt)
                .iter(|| async { rig.engine.process_due().await.unwrap() })
        });
    }
    group.finish();

    let mut p99s = Vec::new();
    for (name, rig) in [("a_idle", &idle), ("a_flooding", &flooded)] {
        let mut samples = rt.block_on(b_lifecycles(rig, 2_000));
        let p50 = percentile(&mut samples, 50.0);
        let p99 = percentile(&mut samples, 99.0);
        println!(
            "fair_share/b_queued_to_launch_call ({name}, 2000 jobs one at a time): p50 {:.1} µs, p99 {:.1} µs",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
        p99s.push(p99);
    }
    println!(
        "fair_share/b_p99_ratio: {:.2}x with A flooding (target at most 1.5x)",
        p99s[1].as_secs_f64() / p99s[0].as_secs_f64()
    );

    // The idle load with A's backlog: a minute of ticks, one a second on
    // the engine's clock (the full listing of due work comes every 10 s),
    // and one reconciliation pass. Wall time, an upper bound of CPU time.
    for (name, rig) in [("a_idle", &idle), ("a_flooding", &flooded)] {
        let mut busy = Duration::ZERO;
        for _ in 0..60 {
            rig.bed.advance(Duration::from_secs(1));
            let start = Instant::now();
            rt.block_on(rig.engine.process_due()).unwrap();
            busy += start.elapsed();
        }
        let start = Instant::now();
        rt.block_on(rig.engine.reconcile()).unwrap();
        let pass = start.elapsed();
        println!(
            "fair_share/idle_cpu ({name}): 60 ticks {:.1} ms, a reconcile pass {:.1} ms: {:.3}% of one core",
            busy.as_secs_f64() * 1e3,
            pass.as_secs_f64() * 1e3,
            (busy + pass).as_secs_f64() / 60.0 * 100.0
        );
    }
}

criterion_group!(benches, fair_share);
criterion_main!(benches);
