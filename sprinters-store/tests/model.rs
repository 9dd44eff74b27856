//! Property tests: random operation sequences, reopens and restores from
//! an online backup included, give the same answers from the SQLite store
//! as from the in-memory store, the model. And group commit.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use proptest::prelude::*;
use sprinters_core::domain::{DeliveryId, JobId, JobKey, RunAttempt};
use sprinters_core::job::JobState;
use sprinters_core::memory::MemoryJobStore;
use sprinters_core::ports::{
    AcquireLease, ClaimJob, JobStore, ListJobs, Purge, PutJob, RecordDelivery, ReleaseLease,
};
use sprinters_core::testing::sample_record;
use sprinters_core::time::Timestamp;
use sprinters_store::{MasterKey, SqliteJobStore};

#[derive(Debug, Clone)]
enum Op {
    Put {
        id: u64,
        version: Option<u64>,
        done: bool,
        /// A delivery recorded with the write.
        delivery: Option<u8>,
    },
    Claim {
        id: u64,
        owner: bool,
        at: u64,
    },
    Delivery {
        id: u8,
    },
    Lease {
        owner: bool,
        at: u64,
    },
    Release {
        owner: bool,
    },
    Purge {
        before: u64,
    },
    Reopen,
    /// Backs the store up online, then goes on from the backup.
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..6u64, prop::option::of(0..5u64), any::<bool>(), prop::option::of(0..4u8))
            .prop_map(|(id, version, done, delivery)| Op::Put { id, version, done, delivery }),
        2 => (1..6u64, any::<bool>(), 0..200u64).prop_map(|(id, owner, at)| Op::Claim { id, owner, at }),
        2 => (0..4u8).prop_map(|id| Op::Delivery { id }),
        1 => (any::<bool>(), 0..200u64).prop_map(|(owner, at)| Op::Lease { owner, at }),
        1 => any::<bool>().prop_map(|owner| Op::Release { owner }),
        1 => (0..8u64).prop_map(|before| Op::Purge { before }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Restore),
    ]
}

fn owner(b: bool) -> &'static str {
    if b { "replica-a" } else { "replica-b" }
}

/// Applies `op` to a store and describes the answer.
async fn apply(store: &dyn JobStore, op: &Op) -> String {
    let key = |id: u64| JobKey::new(JobId::new(id), RunAttempt::FIRST);
    match op {
        Op::Put {
            id,
            version,
            done,
            delivery,
        } => {
            let mut r = sample_record(*id, "octo/app", *id);
            if *done {
                r.state = JobState::Cleaned;
            }
            r.name = Some(format!("{version:?}"));
            let mut put = match version {
                None => PutJob::create(r),
                Some(v) => PutJob::replace(r, *v),
            };
            if let Some(d) = delivery {
                let d = DeliveryId::parse(&format!("d-{d}")).unwrap();
                put = put.with_delivery(RecordDelivery::new(d, Timestamp::from_millis(*id)));
            }
            format!(
                "{:?}",
                store.put_job(put).await.map_err(|e| e.kind().clone())
            )
        }
        Op::Claim { id, owner: o, at } => {
            let claim = ClaimJob::new(
                key(*id),
                owner(*o),
                Timestamp::from_millis(at * 1000),
                Duration::from_secs(30),
            );
            format!(
                "{:?}",
                store
                    .claim_job(claim)
                    .await
                    .map(|r| r.granted().map(|v| (v.version, v.value.lease)))
            )
        }
        Op::Delivery { id } => {
            let d = DeliveryId::parse(&format!("d-{id}")).unwrap();
            let seen = store.delivery_seen(d.clone()).await.unwrap();
            let first = store
                .record_delivery(RecordDelivery::new(
                    d,
                    Timestamp::from_millis(u64::from(*id)),
                ))
                .await
                .unwrap()
                .first;
            format!("{seen} {first}")
        }
        Op::Lease { owner: o, at } => {
            let l = AcquireLease::new(
                "leader",
                owner(*o),
                Timestamp::from_millis(at * 1000),
                Duration::from_secs(30),
            );
            format!("{:?}", store.acquire_lease(l).await.unwrap())
        }
        Op::Release { owner: o } => format!(
            "{:?}",
            store
                .release_lease(ReleaseLease::new("leader", owner(*o)))
                .await
                .is_ok()
        ),
        Op::Purge { before } => format!(
            "{:?}",
            store
                .purge(Purge::before(Timestamp::from_millis(*before)))
                .await
                .unwrap()
        ),
        Op::Reopen | Op::Restore => String::new(),
    }
}

async fn snapshot(store: &dyn JobStore) -> Vec<String> {
    let page = store.list_jobs(ListJobs::newest(100)).await.unwrap();
    page.jobs
        .iter()
        .map(|j| format!("{} v{} {:?}", j.value.key, j.version, j.value))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn the_sqlite_store_answers_like_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let root = tempfile::tempdir().unwrap();
            let mut dir = root.path().join("0");
            let key = MasterKey::generate();
            let model = MemoryJobStore::new();
            let mut store = SqliteJobStore::open_with_key(&dir, &key).unwrap();
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Op::Reopen => {
                        drop(store);
                        store = SqliteJobStore::open_with_key(&dir, &key).unwrap();
                    }
                    Op::Restore => {
                        let next = root.path().join(format!("{}", i + 1));
                        std::fs::create_dir(&next).unwrap();
                        store.backup(next.join(sprinters_store::DATABASE_FILE)).await.unwrap();
                        drop(store);
                        dir = next;
                        store = SqliteJobStore::open_with_key(&dir, &key).unwrap();
                    }
                    _ => {
                        let want = apply(&model, op).await;
                        let got = apply(&store, op).await;
                        prop_assert_eq!(got, want, "step {} {:?}", i, op);
                    }
                }
                prop_assert_eq!(snapshot(&store).await, snapshot(&model).await, "after step {} {:?}", i, op);
            }
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_syncs_and_every_acknowledged_write_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let store = SqliteJobStore::open_with_key(dir.path(), &key).unwrap();
    let writers: Vec<_> = (0..64u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..10u64 {
                    store
                        .put_job(PutJob::create(sample_record(w * 100 + n + 1, "o/r", n)))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let syncs = store.syncs();
    assert!(
        syncs * 4 <= 640,
        "64 concurrent writers must share commits, at least 4 writes a commit: {syncs} commits for 640 writes"
    );
    let latency = store.sync_latency();
    assert_eq!(latency.count(), syncs, "every sync is timed");
    assert!(latency.sum() > std::time::Duration::ZERO);
    drop(store);
    let store = SqliteJobStore::open_with_key(dir.path(), &key).unwrap();
    assert_eq!(store.job_count().await.unwrap(), 640);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_in_batches_and_keeps_what_is_active_or_recent() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteJobStore::open_with_key(dir.path(), &MasterKey::generate()).unwrap();
    let writers: Vec<_> = (0..16u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..300u64 {
                    let mut r = sample_record(w * 10_000 + n + 1, "octo/app", n);
                    // Every tenth job is still active: never purged.
                    if n % 10 != 0 {
                        r.state = JobState::Cleaned;
                    }
                    store.put_job(PutJob::create(r)).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let purged = store
        .purge(Purge::before(Timestamp::from_millis(250)))
        .await
        .unwrap();
    // 250 old jobs per writer, 25 of them active: more than one batch.
    assert_eq!(purged.jobs, 16 * 225);
    assert_eq!(store.job_count().await.unwrap(), 16 * 300 - 16 * 225);
}
