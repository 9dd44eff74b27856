//! The encrypted file store.
//! - Durable writes per second, 1 and 64 writers, beside a plain
//!   `write` + `fdatasync` loop on the same disk (target: 64 writers ≥ 20×
//!   the plain loop, by group commit).
//! - Sealing and opening 1 KiB, beside the raw `aes-gcm` crate (target:
//!   within 1.2×).
//! - Reopening a store of 1,000,000 job records: index rebuild with every
//!   record decrypted (target: under 2 s), and the index's memory per job
//!   (target: under 200 bytes).

// Benchmarks stop loudly and need no docs.
#![allow(clippy::panic, clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::io::Write;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sprinters_core::ports::{JobStore, PutJob};
use sprinters_core::testing::sample_record;
use sprinters_store::crypto::Cipher;
use sprinters_store::{FileJobStore, MasterKey};

const WRITES: u64 = 2048;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn durable_writes(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.throughput(Throughput::Elements(WRITES));
    let record_len = {
        let r = sample_record(1, "octo-org/app", 1);
        format!("{r:?}").len()
    };

    group.bench_function("plain_write_fdatasync_loop", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let mut file = std::fs::File::create(dir.path().join("plain.log")).unwrap();
            let payload = vec![7u8; record_len];
            let start = Instant::now();
            for _ in 0..iters * WRITES {
                file.write_all(&payload).unwrap();
                file.sync_data().unwrap();
            }
            start.elapsed()
        })
    });

    for writers in [1u64, 64] {
        group.bench_function(format!("durable_put_job_{writers}_writers"), |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let dir = tempfile::tempdir().unwrap();
                let store = FileJobStore::open_with_key(dir.path(), &MasterKey::generate())
                    .unwrap()
                    .0;
                let mut elapsed = Duration::ZERO;
                for i in 0..iters {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..writers)
                        .map(|w| {
                            let store = store.clone();
                            tokio::spawn(async move {
                                for n in 0..WRITES / writers {
                                    let id = i * 10_000_000 + w * 100_000 + n + 1;
                                    store
                                        .put_job(PutJob::create(sample_record(
                                            id,
                                            "octo-org/app",
                                            n,
                                        )))
                                        .await
                                        .unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    elapsed += start.elapsed();
                }
                elapsed
            })
        });
    }
    group.finish();
}

fn sealing(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal_1kib");
    group.throughput(Throughput::Bytes(1024));
    let record = vec![42u8; 1024];
    let aad = [9u8; 29];
    let key = [3u8; 32];
    let raw = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
    let ours = Cipher::new(&key);

    group.bench_function("raw_aes_gcm_seal", |b| {
        b.iter(|| {
            let nonce = Aes256Gcm::generate_nonce(&mut rand::thread_rng());
            raw.encrypt(
                &nonce,
                Payload {
                    msg: &record,
                    aad: &aad,
                },
            )
            .unwrap()
        })
    });
    group.bench_function("store_seal", |b| b.iter(|| ours.seal(&aad, &record)));

    let nonce = Aes256Gcm::generate_nonce(&mut rand::thread_rng());
    let sealed_raw = raw
        .encrypt(
            &nonce,
            Payload {
                msg: &record,
                aad: &aad,
            },
        )
        .unwrap();
    group.bench_function("raw_aes_gcm_open", |b| {
        b.iter(|| {
            raw.decrypt(
                &nonce,
                Payload {
                    msg: &sealed_raw,
                    aad: &aad,
                },
            )
            .unwrap()
        })
    });
    let (our_nonce, sealed) = ours.seal(&aad, &record);
    group.bench_function("store_open", |b| {
        b.iter(|| ours.open(&our_nonce, &aad, &sealed).unwrap())
    });
    group.finish();
}

const REOPEN_JOBS: u64 = 1_000_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn reopen(c: &mut Criterion) {
    if !std::env::args().any(|a| a.contains("reopen"))
        && std::env::args().any(|a| a.starts_with("store/") || a.starts_with("seal"))
    {
        // Filtered to other benchmarks: skip the million-record setup.
        return;
    }
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    rt.block_on(async {
        let store = FileJobStore::open_with_key(dir.path(), &key).unwrap().0;
        let tasks: Vec<_> = (0..64u64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0..REOPEN_JOBS / 64 {
                        let id = w * 1_000_000 + n + 1;
                        let mut r = sample_record(
                            id,
                            if n % 2 == 0 {
                                "octo-org/app"
                            } else {
                                "acme/api"
                            },
                            id,
                        );
                        r.state = sprinters_core::job::JobState::Cleaned;
                        store.put_job(PutJob::create(r)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let before = resident_bytes();
    let (store, report) = FileJobStore::open_with_key(dir.path(), &key).unwrap();
    let after = resident_bytes();
    println!(
        "store/reopen: {} frames, {} jobs; index memory {:.0} bytes per job (resident set {} MiB → {} MiB)",
        report.frames,
        store.job_count(),
        after.saturating_sub(before) as f64 / store.job_count() as f64,
        before >> 20,
        after >> 20
    );
    drop(store);

    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("reopen_1m_jobs", |b| {
        b.iter(|| {
            FileJobStore::open_with_key(dir.path(), &key)
                .unwrap()
                .0
                .job_count()
        })
    });
    group.finish();
}

criterion_group!(benches, durable_writes, sealing, reopen);
criterion_main!(benches);
