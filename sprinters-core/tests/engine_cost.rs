//! What a tick costs: it reads what is due, never the history.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sprinters_core::Result;
use sprinters_core::domain::{DeliveryId, JobKey, OwnerId};
use sprinters_core::events::Conclusion;
use sprinters_core::job::{JobRecord, JobState};
use sprinters_core::ports::{
    AcquireLease, Claim, ClaimJob, DeliveryRecorded, JobPage, JobStore, LeaseGrant, ListJobs,
    Purge, Purged, PutJob, PutTenant, RecordDelivery, ReleaseLease, Version, Versioned,
};
use sprinters_core::tenant::TenantRecord;
use sprinters_core::testing::{TestBed, sample_record};
use sprinters_core::{Error, time::Clock};

/// Forwards to a store and counts the job records its reads return, and
/// its durable writes.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn JobStore>,
    read: AtomicUsize,
    written: AtomicUsize,
    /// What `is_shared` answers, if not the inner store's answer.
    shared: Option<bool>,
}

impl CountingStore {
    fn new(inner: Arc<dyn JobStore>) -> Self {
        Self {
            inner,
            read: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            shared: None,
        }
    }

    fn take(&self) -> usize {
        self.read.swap(0, Ordering::SeqCst)
    }

    fn writes(&self) -> usize {
        self.written.load(Ordering::SeqCst)
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
        self.written.fetch_add(1, Ordering::SeqCst);
        self.inner.put_job(request).await
    }
    async fn claim_job(&self, request: ClaimJob) -> Result<Claim> {
        self.written.fetch_add(1, Ordering::SeqCst);
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
        self.written.fetch_add(1, Ordering::SeqCst);
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

    fn is_shared(&self) -> bool {
        self.shared.unwrap_or_else(|| self.inner.is_shared())
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
    let store = Arc::new(CountingStore::new(bed.store.clone()));
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

/// A lone `queued` webhook costs one durable write before the launch's
/// API calls: the job, its delivery, its launch claim and its launch
/// intent go to the store together (they were three writes, one after
/// another). A crash after it resumes the launch as any claimed one.
#[tokio::test]
async fn a_lone_webhook_costs_one_durable_write_before_its_launch() {
    let bed = TestBed::new();
    let store = Arc::new(CountingStore::new(bed.store.clone()));
    assert_eq!(writes_before_the_jit_call(&bed, store).await, 1);
}

/// Under a cap, a new job keeps that one write on a store only this engine
/// writes (its own count is exact); on a store other replicas write, it is
/// stored queued and then claimed within the caps, counted by the store.
#[tokio::test]
async fn a_capped_job_is_stored_claimed_at_once_only_when_no_other_replica_writes_the_store() {
    for (shared, expected) in [(false, 1), (true, 3)] {
        let bed = TestBed::with_config(|c| c.limits.per_account = Some(5));
        let mut store = CountingStore::new(bed.store.clone());
        store.shared = Some(shared);
        let writes = writes_before_the_jit_call(&bed, Arc::new(store)).await;
        assert_eq!(writes, expected, "shared store: {shared}");
    }
}

/// Sends job 1's `queued` webhook through an engine on `store`: the
/// store's durable writes when GitHub is first asked for a JIT config.
/// The launch then resumes once, its JIT call having failed.
async fn writes_before_the_jit_call(bed: &TestBed, store: Arc<CountingStore>) -> usize {
    let engine = bed.builder().store(store.clone()).build().unwrap();
    let at_jit = Arc::new(AtomicUsize::new(usize::MAX));
    {
        // Read at the moment GitHub is asked for the JIT config: the
        // first API call (credentials go alongside it).
        let (store, at_jit) = (store.clone(), at_jit.clone());
        bed.registry
            .faults()
            .fail_next("create_jit_runner", 1, move || {
                at_jit.store(store.writes(), Ordering::SeqCst);
                Error::unavailable("measured; try again")
            });
    }
    let job = bed.job(1);
    bed.tell_github(&job.queued());
    engine
        .handle(bed.delivery("d-1", job.queued()))
        .await
        .unwrap();
    engine.drain().await;
    assert!(
        bed.store
            .delivery_seen(DeliveryId::parse("d-1").unwrap())
            .await
            .unwrap(),
        "the delivery went with the first write"
    );

    let record = bed.record(&job).await;
    let retry_at = record.next_attempt_at.expect("backing off");
    bed.advance(retry_at.since(bed.clock.now()) + Duration::from_millis(1));
    engine.process_due().await.unwrap();
    engine.drain().await;
    let record = bed.record(&job).await;
    assert_eq!(record.state, JobState::Launched);
    assert_eq!(record.launches.len(), 1, "one launch, resumed");
    at_jit.load(Ordering::SeqCst)
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

/// The reconciler's GitHub calls are budgeted per installation and pass:
/// one owner with many jobs to check spends its own budget, another
/// owner's job is still checked in the same pass, and the checks left over
/// are made in later passes.
#[tokio::test]
async fn each_installation_has_its_own_budget_of_github_calls_per_pass() {
    let bed = TestBed::with_config(|c| c.github_calls_per_pass = 3);
    bed.connect("other-org", 777, 778, "210987654321");
    let busy: Vec<_> = (1..=10).map(|n| bed.job(n)).collect();
    let other = bed.job(100).repository("other-org/app").owner(777, 778);
    for job in busy.iter().chain([&other]) {
        bed.send(job.queued()).await;
        // GitHub ran and finished it; both webhooks were lost.
        let runner = TestBed::runner(job, 1);
        bed.tell_github(&job.completed(Conclusion::Success, Some(&runner)));
    }
    bed.settle().await;
    bed.advance(bed.engine.config().queued_timeout + Duration::from_secs(1));

    let report = bed.engine.reconcile().await.unwrap();
    bed.settle().await;
    assert_eq!(
        report.jobs_checked, 4,
        "3 of the busy owner's, 1 of the other's"
    );
    assert!(report.github_calls_deferred >= 7, "{report:?}");
    assert!(
        bed.record(&other).await.state.is_finished(),
        "the other owner is not kept waiting behind the busy one"
    );

    for _ in 0..3 {
        bed.engine.reconcile().await.unwrap();
        bed.settle().await;
    }
    for job in &busy {
        assert!(
            bed.record(job).await.state.is_finished(),
            "checked in a later pass"
        );
    }
}

/// Owners take turns in a pass: another owner's job, queued after ten of
/// a busy owner's, is asked about second, not eleventh (each call is
/// awaited in order, so a long backlog would delay it by as many calls).
#[tokio::test]
async fn a_pass_asks_about_the_owners_jobs_in_turn() {
    let bed = TestBed::new();
    bed.connect("other-org", 777, 778, "210987654321");
    let busy: Vec<_> = (1..=10).map(|n| bed.job(n)).collect();
    let other = bed.job(100).repository("other-org/app").owner(777, 778);
    for job in busy.iter().chain([&other]) {
        bed.send(job.queued()).await;
        let runner = TestBed::runner(job, 1);
        bed.tell_github(&job.completed(Conclusion::Success, Some(&runner)));
    }
    bed.settle().await;
    bed.advance(bed.engine.config().queued_timeout + Duration::from_secs(1));
    let report = bed.engine.reconcile().await.unwrap();
    assert_eq!(report.jobs_checked, 11);
    let asked: Vec<u64> = bed
        .registry
        .statuses_asked()
        .iter()
        .map(|j| j.get())
        .collect();
    assert_eq!(asked[..3], [1, 100, 2], "in turn: {asked:?}");
}

/// An owner's backlog over its cap: the jobs wait for a slot in their
/// launch tasks, which a freed slot wakes, so a tick reads no scope for
/// them; and after the tick that first lists them as due, the ticks that
/// follow list only what became due since, not the backlog again, until
/// the periodic full listing.
#[tokio::test]
async fn a_tick_reads_no_scope_of_a_job_whose_launch_waits_here() {
    let bed = TestBed::new();
    let store = Arc::new(CountingStore::new(bed.store.clone()));
    let engine = bed.builder().store(store.clone()).build().unwrap();
    engine
        .set_owner_policy(
            TestBed::OWNER_ID,
            TestBed::INSTALLATION_ID,
            bed.owner.clone(),
            Some(serde_json::from_str(r#"{"max_instances": 1}"#).unwrap()),
        )
        .await
        .unwrap();
    for n in 1..=50u64 {
        let job = bed.job(n).labels(&["sprinters:aws", &format!("pin-{n}")]);
        bed.tell_github(&job.queued());
        engine
            .handle(bed.delivery(&format!("d-{n}"), job.queued()))
            .await
            .unwrap();
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(bed.launcher.alive().len(), 1);
    store.take();
    engine.process_due().await.unwrap();
    let read = store.take();
    assert_eq!(
        read,
        49 + 1,
        "the 49 listed as due, and the one slot holder looked up (has its job ended elsewhere?); no scope of theirs"
    );
    for second in 1..10 {
        bed.advance(Duration::from_secs(1));
        engine.process_due().await.unwrap();
        // The backlog is due since its jobs were queued, before the
        // window (the last tick, less 5 s) begins.
        assert_eq!(
            store.take(),
            1,
            "tick {second} s later: the slot holder only"
        );
    }
    bed.advance(Duration::from_secs(1));
    engine.process_due().await.unwrap();
    assert_eq!(store.take(), 49 + 1, "the full listing, 10 s on");
}
