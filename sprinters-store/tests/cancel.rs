//! Every future may be dropped at any await point (a request timeout, a
//! client that hung up, shutdown cutting a lease renewal). Here a put, a
//! claim, a lease renewal and the engine's handling of a webhook are each
//! dropped after N polls, N swept; then other writers still finish, the
//! engine shuts down, the store closes and reopens, and every write that
//! was acknowledged is there, whole.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sprinters_core::domain::{JobId, JobKey, RunAttempt};
use sprinters_core::ports::{AcquireLease, ClaimJob, JobStore, PutJob};
use sprinters_core::testing::{TestBed, sample_record};
use sprinters_core::time::Timestamp;
use sprinters_store::{MasterKey, SqliteJobStore};

/// Polls a future at most `polls` times, then drops it where it stands.
struct DropAfter<F: Future> {
    inner: Pin<Box<F>>,
    polls: usize,
}

impl<F: Future> Future for DropAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            return Poll::Ready(None);
        }
        self.polls -= 1;
        self.inner.as_mut().poll(cx).map(Some)
    }
}

fn drop_after<F: Future>(polls: usize, f: F) -> DropAfter<F> {
    DropAfter {
        inner: Box::pin(f),
        polls,
    }
}

/// A guard against a wedged store: the test fails instead of hanging. Not
/// a sleep: it only bounds a wait that should end at once.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} never finished: the store is wedged"))
}

fn key(id: u64) -> JobKey {
    JobKey::new(JobId::new(id), RunAttempt::FIRST)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_puts_claims_and_lease_renewals_leave_nothing_half_done() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
    let mut acknowledged = Vec::new();
    for n in 0..12usize {
        let base = (n as u64 + 1) * 1000;
        // The victims, each dropped after n polls.
        let put = drop_after(
            n,
            store.put_job(PutJob::create(sample_record(base, "octo/app", 1))),
        );
        let claim = drop_after(
            n,
            store.claim_job(ClaimJob::new(
                key(base - 1000 + 1),
                "replica-a",
                Timestamp::from_millis(n as u64),
                Duration::from_secs(60),
            )),
        );
        let renew = drop_after(
            n,
            store.acquire_lease(AcquireLease::new(
                "leader",
                "replica-a",
                Timestamp::from_millis(n as u64),
                Duration::from_secs(60),
            )),
        );
        // Bystanders writing at the same time.
        let bystanders: Vec<_> = (1..=4u64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let id = base + w;
                    store
                        .put_job(PutJob::create(sample_record(id, "octo/app", w)))
                        .await
                        .map(|_| id)
                })
            })
            .collect();
        let (put, _, _) = tokio::join!(put, claim, renew);
        if let Some(Ok(_)) = put {
            acknowledged.push(base);
        }
        for b in bystanders {
            acknowledged.push(within("a bystander's write", b).await.unwrap().unwrap());
        }
        // The store still takes writes and leases at once.
        let grant = within(
            "a lease renewal after a dropped one",
            store.acquire_lease(AcquireLease::new(
                "leader",
                "replica-a",
                Timestamp::from_millis(n as u64 + 1),
                Duration::from_secs(60),
            )),
        )
        .await
        .unwrap();
        assert!(grant.acquired, "round {n}: the lease is still ours");
    }
    // A dropped put either happened whole or not at all.
    for n in 0..12u64 {
        let id = (n + 1) * 1000;
        if let Some(found) = store.get_job(key(id)).await.unwrap() {
            assert_eq!(found.value, sample_record(id, "octo/app", 1));
        }
    }
    // Closing finishes (the writer thread ends) and the lock is free.
    drop(store);
    let store = within("reopening", async {
        loop {
            match SqliteJobStore::open_with_key(dir.path(), &master) {
                Ok(store) => break store,
                Err(e) if e.to_string().contains("another process") => {
                    tokio::task::yield_now().await
                }
                Err(e) => panic!("reopening: {e}"),
            }
        }
    })
    .await;
    for id in acknowledged {
        assert!(
            store.get_job(key(id)).await.unwrap().is_some(),
            "acknowledged write {id} is missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_webhook_leaves_the_engine_able_to_handle_the_next_and_shut_down() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteJobStore::open_with_key(dir.path(), &MasterKey::generate()).unwrap());
    let bed = TestBed::new();
    let engine = bed
        .builder()
        .source(bed.source.clone())
        .store(store.clone())
        .build()
        .unwrap();
    for n in 0..16u64 {
        let job = bed.job(100 + n);
        let dropped = drop_after(
            n as usize,
            engine.handle(bed.delivery(&format!("dropped-{n}"), job.queued())),
        );
        let _ = dropped.await;
        // The same delivery again: handled once, or found a duplicate.
        within(
            "handling the delivery again",
            engine.handle(bed.delivery(&format!("dropped-{n}"), job.queued())),
        )
        .await
        .unwrap();
        let next = bed.job(1000 + n);
        within(
            "the next webhook",
            engine.handle(bed.delivery(&format!("next-{n}"), next.queued())),
        )
        .await
        .unwrap();
        assert!(store.get_job(next.key).await.unwrap().is_some());
        assert!(
            store.get_job(job.key).await.unwrap().is_some(),
            "the redelivered webhook recorded its job"
        );
    }
    within("shutting the engine down", engine.shutdown()).await;
}
