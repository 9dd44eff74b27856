//! The encrypted file store.
//! - Durable writes per second, 1 and 64 writers, beside a plain
//!   `write` + `fdatasync` loop on the same disk (target: 64 writers ≥ 20×
//!   the plain loop, by group commit).
//! - Sealing and opening 1 KiB, beside the raw `aes-gcm` crate (target:
//!   within 1.2×).

// Benchmarks stop loudly and need no docs.
#![allow(clippy::panic, clippy::unwrap_used, missing_docs)]

use std::io::Write;
use std::sync::Arc;
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
    let _ = Arc::new(());
}

criterion_group!(benches, durable_writes, sealing);
criterion_main!(benches);
