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
use sprinters_core::job::JobState;
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
    // Jobs to claim, one per round.
    for id in 1..=12 {
        store
            .put_job(PutJob::create(sample_record(id, "octo/app", id)))
            .await
            .unwrap();
    }
    let mut acknowledged = Vec::new();
    for n in 0..12usize {
        let base = (n as u64 + 1) * 1000;
        let at = Timestamp::from_millis(n as u64);
        let lease = format!("leader-{n}");
        // The victims, each dropped after n polls. One poll hands a write
        // to the writer; none leaves it undone.
        let put = drop_after(
            n,
            store.put_job(PutJob::create(sample_record(base, "octo/app", 1))),
        );
        let claim = drop_after(
            n,
            store.claim_job(ClaimJob::new(
                key(n as u64 + 1),
                "replica-a",
                at,
                Duration::from_secs(60),
            )),
        );
        let renew = drop_after(
            n,
            store.acquire_lease(AcquireLease::new(
                lease.clone(),
                "replica-a",
                at,
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
        let _ = tokio::join!(put, claim, renew);
        for b in bystanders {
            acknowledged.push(within("a bystander's write", b).await.unwrap().unwrap());
        }
        // Another replica asks for the lease: a write queued after the
        // dropped ones, so they are settled when it is answered.
        let other = within(
            "a lease request after the dropped ones",
            store.acquire_lease(AcquireLease::new(
                lease,
                "replica-b",
                at,
                Duration::from_secs(60),
            )),
        )
        .await
        .unwrap();
        let put = store.get_job(key(base)).await.unwrap();
        let claimed = store.get_job(key(n as u64 + 1)).await.unwrap().unwrap();
        if n == 0 {
            // Never polled: nothing was asked.
            assert!(other.acquired, "round 0: the lease was free");
            assert!(put.is_none());
            assert!(claimed.value.lease.is_none());
        } else {
            // Handed over on the first poll: done whole, though dropped.
            assert!(
                !other.acquired,
                "round {n}: the dropped renewal took the lease"
            );
            assert_eq!(other.holder, "replica-a");
            assert_eq!(put.unwrap().value, sample_record(base, "octo/app", 1));
            assert_eq!(
                claimed.value.lease.map(|l| l.owner).as_deref(),
                Some("replica-a"),
                "round {n}: the dropped claim was taken"
            );
            assert_eq!(claimed.version, 2, "claimed once");
            acknowledged.push(base);
        }
    }
    // Closing waits for the writer, then frees the lock: reopening works
    // at once.
    drop(store);
    let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
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
    // Every job launches now, on the next tick: none is left held by a
    // claim that a dropped handler stored and nobody works on (it would
    // wait out `claim_ttl`; the test's clock does not move).
    engine.process_due().await.unwrap();
    within("the launches", engine.drain()).await;
    for n in 0..16u64 {
        for job in [bed.job(100 + n), bed.job(1000 + n)] {
            let record = store.get_job(job.key).await.unwrap().unwrap().value;
            assert_eq!(record.state, JobState::Launched, "job {}", job.key);
        }
    }
    within("shutting the engine down", engine.shutdown()).await;
}
