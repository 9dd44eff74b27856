//! What a tick costs: it reads what is due, never the history.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sprinters_core::Result;
use sprinters_core::domain::{DeliveryId, JobKey, OwnerId};
use sprinters_core::job::{JobRecord, JobState};
use sprinters_core::ports::{
    AcquireLease, ClaimJob, DeliveryRecorded, JobPage, JobStore, LeaseGrant, ListJobs, Purge,
    Purged, PutJob, PutTenant, RecordDelivery, ReleaseLease, Version, Versioned,
};
use sprinters_core::tenant::TenantRecord;
use sprinters_core::testing::{TestBed, sample_record};
use sprinters_core::{Error, time::Clock};

/// Forwards to a store and counts the job records its reads return.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn JobStore>,
    read: AtomicUsize,
}

impl CountingStore {
    fn take(&self) -> usize {
        self.read.swap(0, Ordering::SeqCst)
    }
}

#[async_trait]
impl JobStore for CountingStore {
    async fn get_job(&self, key: JobKey) -> Result<Option<Versioned<JobRecord>>> {
        let record = self.inner.get_job(key).await?;
        self.read
            .fetch_add(usize::from(record.is_some()), Ordering::SeqCst);
        Ok(record)
    }
    async fn put_job(&self, request: PutJob) -> Result<Version> {
        self.inner.put_job(request).await
    }
    async fn claim_job(&self, request: ClaimJob) -> Result<Option<Versioned<JobRecord>>> {
        self.inner.claim_job(request).await
    }
    async fn list_jobs(&self, request: ListJobs) -> Result<JobPage> {
        let page = self.inner.list_jobs(request).await?;
        self.read.fetch_add(page.jobs.len(), Ordering::SeqCst);
        Ok(page)
    }
    async fn delivery_seen(&self, id: DeliveryId) -> Result<bool> {
        self.inner.delivery_seen(id).await
    }
    async fn record_delivery(&self, request: RecordDelivery) -> Result<DeliveryRecorded> {
        self.inner.record_delivery(request).await
    }
    async fn acquire_lease(&self, request: AcquireLease) -> Result<LeaseGrant> {
        self.inner.acquire_lease(request).await
    }
    async fn release_lease(&self, request: ReleaseLease) -> Result<()> {
        self.inner.release_lease(request).await
    }
    async fn get_tenant(&self, owner_id: OwnerId) -> Result<Option<Versioned<TenantRecord>>> {
        self.inner.get_tenant(owner_id).await
    }
    async fn put_tenant(&self, request: PutTenant) -> Result<Version> {
        self.inner.put_tenant(request).await
    }
    async fn list_tenants(&self) -> Result<Vec<Versioned<TenantRecord>>> {
        self.inner.list_tenants().await
    }
    async fn delete_tenant(&self, owner_id: OwnerId, version: Version) -> Result<()> {
        self.inner.delete_tenant(owner_id, version).await
    }
    async fn purge(&self, request: Purge) -> Result<Purged> {
        self.inner.purge(request).await
    }
}

/// With 1,000 finished jobs and 100 running ones stored, an idle tick reads
/// no record at all; a job backing off is not read before its time; once
/// due, the tick reads it and the active jobs of its own scope, and starts
/// its launch.
#[tokio::test]
async fn a_tick_reads_what_is_due_and_not_the_history() {
    let bed = TestBed::new();
    for n in 0..1_100u64 {
        let mut record = sample_record(50_000 + n, "history-org/app", 1_000 + n);
        record.state = if n < 1_000 {
            JobState::Cleaned
        } else {
            JobState::Running
        };
        bed.store.put_job(PutJob::create(record)).await.unwrap();
    }
    let store = Arc::new(CountingStore {
        inner: bed.store.clone(),
        read: AtomicUsize::new(0),
    });
    let engine = bed.builder().store(store.clone()).build().unwrap();

    engine.process_due().await.unwrap();
    assert_eq!(store.take(), 0, "an idle tick reads nothing");

    // One job fails to launch for a moment: it backs off.
    bed.launcher
        .faults()
        .fail_next("launch", 1, || Error::unavailable("try again"));
    let job = bed.job(1);
    bed.tell_github(&job.queued());
    engine
        .handle(bed.delivery("d-1", job.queued()))
        .await
        .unwrap();
    engine.drain().await;
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Queued);
    let retry_at = record.next_attempt_at.expect("backing off");
    store.take();

    engine.process_due().await.unwrap();
    assert_eq!(store.take(), 0, "a job backing off is not read");

    bed.advance(retry_at.since(bed.clock.now()) + Duration::from_millis(1));
    engine.process_due().await.unwrap();
    assert_eq!(
        store.take(),
        2,
        "the due job, then the active jobs of its scope (itself)"
    );
    engine.drain().await;
    assert_eq!(bed.record(&job).await.state, JobState::Launched);
}

/// A delivery's id is kept as long as GitHub can send it again (the
/// delivery window, 7 days by default), not for the history's 90 days: the
/// reconciler forgets it after the window and keeps the job.
#[tokio::test]
async fn delivery_ids_are_kept_for_the_redelivery_window_only() {
    let bed = TestBed::new();
    let job = bed.job(1);
    bed.tell_github(&job.queued());
    bed.engine
        .handle(bed.delivery("d-window", job.queued()))
        .await
        .unwrap();
    bed.engine.drain().await;
    let id = DeliveryId::parse("d-window").unwrap();
    assert!(bed.store.delivery_seen(id.clone()).await.unwrap());

    let window = bed.engine.config().delivery_window;
    bed.advance(window - Duration::from_secs(60));
    bed.engine.reconcile().await.unwrap();
    assert!(
        bed.store.delivery_seen(id.clone()).await.unwrap(),
        "kept inside the window"
    );
    bed.advance(Duration::from_secs(120));
    bed.engine.reconcile().await.unwrap();
    assert!(
        !bed.store.delivery_seen(id).await.unwrap(),
        "forgotten after the window"
    );
    assert!(
        bed.store.get_job(job.key).await.unwrap().is_some(),
        "the job's history is kept for its own retention"
    );
}
