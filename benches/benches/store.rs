//! The embedded store (SQLite), beside what the disk and SQLite allow, in
//! one run. Until 2026-12-04 the segment-log store it replaced ran beside
//! it here (`docs/store.md` has the figures and the commit to run again).
//! - Durable writes per second, 1 and 64 writers, beside a plain
//!   `write` + `fdatasync` loop on the same disk (target: 64 writers ≥ 20×
//!   the plain loop, by group commit), and what SQLite itself allows on
//!   the same disk: bare inserts, 64 per durable commit, into the store's
//!   own table and into a table with only a unique id.
//! - Sealing and opening 1 KiB, beside the raw `aes-gcm` crate (target:
//!   within 1.2×).
//! - Reopening a store of 1,000,000 job records, each written with its
//!   delivery (target: under 2 s), and the memory per stored job, measured
//!   in a fresh process that opens the store and reads the active jobs
//!   (target: under 200 bytes).

// Benchmarks stop loudly and need no docs.
#![allow(clippy::panic, clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::io::Write;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sprinters_core::domain::DeliveryId;
use sprinters_core::ports::{JobStore, ListJobs, PutJob, RecordDelivery};
use sprinters_core::testing::sample_record;
use sprinters_core::time::Timestamp;
use sprinters_store::crypto::Cipher;
use sprinters_store::{MasterKey, SqliteJobStore};

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
        group.bench_function(format!("sqlite_put_job_{writers}_writers"), |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let dir = tempfile::tempdir().unwrap();
                let store = open(dir.path(), &MasterKey::generate());
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
    sqlite_floors(&mut group, record_len);
    group.finish();
}

/// Rows per transaction in the SQLite floors: what 64 waiting writers give
/// the store's writer thread at best.
const FLOOR_BATCH: u64 = 64;

/// What SQLite itself allows on this disk, with no store around it: rows
/// inserted by one thread on one connection, `FLOOR_BATCH` per durable
/// commit (WAL, `synchronous=FULL`, as the store runs), no channel, no
/// savepoint, no version check, no sealing. `jobs` is the store's own
/// table with every index its migrations create (a queued job's row, as
/// `put_job` writes it, enters nine of them); `bare` is a table with only
/// the unique id. No store built on one SQLite writer can exceed the first.
fn sqlite_floors(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    record_len: usize,
) {
    for (name, table) in [("jobs_schema", "jobs"), ("bare_table", "bare")] {
        group.bench_function(format!("sqlite_floor_{name}_64_per_commit"), |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().unwrap();
                // The store creates its schema; then the file is ours alone.
                drop(SqliteJobStore::open_with_key(dir.path(), &MasterKey::generate()).unwrap());
                let conn =
                    rusqlite::Connection::open(dir.path().join(sprinters_store::DATABASE_FILE))
                        .unwrap();
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;                      CREATE TABLE bare (seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,                      body BLOB NOT NULL);",
                )
                .unwrap();
                let sql = if table == "jobs" {
                    "INSERT INTO jobs (id, version, sealed_version, key_id, body, queued_at,                      state, active, owner_h, account_h, label_h, lease_owner, lease_expires,                      due_at, repo_h, slot_until, extra_slots, spares)                      VALUES (?1, 1, 1, 1, ?2, ?3, 'queued', 1, ?4, NULL, ?5, NULL, NULL, ?3, ?6,                      NULL, 0, 0)"
                } else {
                    "INSERT INTO bare (id, body) VALUES (?1, ?2)"
                };
                // A sealed body: nonce, ciphertext, tag.
                let body: Vec<u8> = (0..record_len + 28).map(|_| fastrand::u8(..)).collect();
                let (owner_h, label_h, repo_h) = ([1u8; 16], [2u8; 16], [3u8; 16]);
                let start = Instant::now();
                for batch in 0..iters * WRITES / FLOOR_BATCH {
                    let tx = conn.unchecked_transaction().unwrap();
                    {
                        let mut insert = tx.prepare_cached(sql).unwrap();
                        for n in 0..FLOOR_BATCH {
                            let id: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
                            let at = (batch * FLOOR_BATCH + n) as i64;
                            if table == "jobs" {
                                insert
                                    .execute(rusqlite::params![
                                        &id[..],
                                        &body,
                                        at,
                                        &owner_h[..],
                                        &label_h[..],
                                        &repo_h[..]
                                    ])
                                    .unwrap();
                            } else {
                                insert.execute(rusqlite::params![&id[..], &body]).unwrap();
                            }
                        }
                    }
                    tx.commit().unwrap();
                }
                start.elapsed()
            })
        });
    }
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
/// Set in the child process that measures a fresh open: `dir:key`.
const MEASURE_ENV: &str = "SPRINTERS_BENCH_MEASURE_OPEN";

fn open(dir: &std::path::Path, key: &MasterKey) -> std::sync::Arc<dyn JobStore> {
    std::sync::Arc::new(SqliteJobStore::open_with_key(dir, key).unwrap())
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// In the child: opens the store, reads the active jobs (what every tick
/// does) and one old job, and prints the resident set's growth per job.
fn measure_open(spec: &str) {
    // A base64 key holds no colon; the directory might.
    let (dir, key) = spec.rsplit_once(':').unwrap();
    let dir = std::path::PathBuf::from(dir);
    let key = MasterKey::from_base64(key).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = resident_bytes();
    let store = open(&dir, &key);
    rt.block_on(async {
        store.list_jobs(ListJobs::active(10_000)).await.unwrap();
        store.list_jobs(ListJobs::newest(100)).await.unwrap();
    });
    let after = resident_bytes();
    println!(
        "store/sqlite_memory: {:.1} bytes per stored job in a fresh process (resident set {} KiB -> {} KiB, {} jobs with their deliveries)",
        after.saturating_sub(before) as f64 / REOPEN_JOBS as f64,
        before >> 10,
        after >> 10,
        REOPEN_JOBS
    );
}

fn fill(rt: &tokio::runtime::Runtime, store: std::sync::Arc<dyn JobStore>) {
    rt.block_on(async {
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
                        let delivery = RecordDelivery::new(
                            DeliveryId::parse(&format!("{id:08x}-7c2a-11ef-9d3e-5a1b2c3d4e5f"))
                                .unwrap(),
                            Timestamp::from_millis(id),
                        );
                        store
                            .put_job(PutJob::create(r).with_delivery(delivery))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn reopen(c: &mut Criterion) {
    if let Ok(spec) = std::env::var(MEASURE_ENV) {
        measure_open(&spec);
        std::process::exit(0);
    }
    if !std::env::args().any(|a| a.contains("reopen"))
        && std::env::args().any(|a| a.starts_with("store/") || a.starts_with("seal"))
    {
        // Filtered to other benchmarks: skip the million-record setup.
        return;
    }
    let rt = runtime();
    let key = MasterKey::generate();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    fill(&rt, open(dir.path(), &key));
    println!(
        "store/sqlite_fill: {REOPEN_JOBS} jobs with deliveries written by 64 writers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(MEASURE_ENV, format!("{}:{key_text}", dir.path().display()))
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    group.bench_function("sqlite_reopen_1m_jobs", |b| {
        b.iter(|| drop(open(dir.path(), &key)))
    });
    group.finish();
}

criterion_group!(benches, durable_writes, sealing, reopen);
criterion_main!(benches);
