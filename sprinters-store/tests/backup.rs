//! An online backup finishes while writers keep committing, and holds a
//! consistent store: every job of the copy opens, none is half there.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sprinters_core::ports::{JobStore, ListJobs, PutJob};
use sprinters_core::testing::sample_record;
use sprinters_store::{DATABASE_FILE, MasterKey, SqliteJobStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_constant_writes_finishes_and_opens() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let store = SqliteJobStore::open_with_key(&dir.path().join("live"), &key).unwrap();
    for id in 1..=500 {
        store
            .put_job(PutJob::create(sample_record(id, "octo/app", id)))
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = 1_000_000 * (w + 1) + n;
                    store
                        .put_job(PutJob::create(sample_record(id, "octo/app", id)))
                        .await
                        .unwrap();
                    written.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    while written.load(Ordering::Relaxed) < 16 {
        tokio::task::yield_now().await;
    }
    let copy = dir.path().join("restored");
    std::fs::create_dir(&copy).unwrap();
    let before = written.load(Ordering::Relaxed);
    let report = store.backup(copy.join(DATABASE_FILE)).await.unwrap();
    let after = written.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert!(after > before, "writes committed while the backup ran");
    assert!(report.pages > 0);
    let restored = SqliteJobStore::open_with_key(&copy, &key).unwrap();
    let count = restored.job_count().await.unwrap();
    assert!(
        count >= 500,
        "the copy holds what was there before: {count}"
    );
    // Every record in the copy opens whole.
    let page = restored.list_jobs(ListJobs::newest(100_000)).await.unwrap();
    assert_eq!(page.jobs.len() as u64, count);
}
