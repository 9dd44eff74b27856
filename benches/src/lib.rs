#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
// A benchmark that goes wrong has nothing better to do than stop loudly.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod control_plane;
pub mod postgres;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use sprinters_core::Result;
use sprinters_core::domain::JobKey;
use sprinters_core::events::Conclusion;
use sprinters_core::ports::{
    CloudLauncher, DescribeInstance, InstanceInfo, LaunchRequest, Launched, ListOwned,
    OwnedInstances, TerminateRequest, Terminated,
};
use sprinters_core::testing::{HookedStore, TestBed};
use tokio::sync::oneshot;

/// A launcher that tells a waiter when `launch` was called for a job,
/// and when: the end of the latency the engine is responsible for.
#[derive(Debug)]
pub struct SignallingLauncher {
    inner: Arc<dyn CloudLauncher>,
    waiting: Mutex<HashMap<JobKey, oneshot::Sender<Instant>>>,
}

impl SignallingLauncher {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn CloudLauncher>) -> Self {
        Self {
            inner,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves with the instant `launch` is called for `job`.
    pub fn expect(&self, job: JobKey) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job, tx);
        rx
    }
}

#[async_trait]
impl CloudLauncher for SignallingLauncher {
    async fn launch(&self, request: LaunchRequest) -> Result<Launched> {
        let called = Instant::now();
        let tx = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request.job);
        let launched = self.inner.launch(request).await;
        if let Some(tx) = tx {
            let _ = tx.send(called);
        }
        launched
    }
    async fn terminate(&self, request: TerminateRequest) -> Result<Terminated> {
        self.inner.terminate(request).await
    }
    async fn list_owned(&self, request: ListOwned) -> Result<OwnedInstances> {
        self.inner.list_owned(request).await
    }
    async fn describe(&self, request: DescribeInstance) -> Result<InstanceInfo> {
        self.inner.describe(request).await
    }
}

type Waiters<T> = Arc<Mutex<HashMap<JobKey, oneshot::Sender<T>>>>;

/// The engine over in-memory adapters, with launches signalled.
#[derive(Debug)]
pub struct Rig {
    /// The bed whose adapters the engine uses.
    pub bed: TestBed,
    /// The engine, launching through [`Rig::launcher`].
    pub engine: sprinters_core::engine::Engine,
    /// The signalling launcher.
    pub launcher: Arc<SignallingLauncher>,
    recorded: Waiters<()>,
    writes: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

impl Rig {
    /// A fresh rig.
    pub fn new() -> Self {
        let bed = TestBed::new();
        let store = bed.store.clone();
        Self::with_store(bed, store)
    }

    /// A rig whose engine keeps its records in `store` (the durable file
    /// store, say) instead of the bed's in-memory one.
    pub fn with_store(bed: TestBed, store: Arc<dyn sprinters_core::ports::JobStore>) -> Self {
        let launcher = Arc::new(SignallingLauncher::new(bed.launcher.clone()));
        let recorded: Waiters<()> = Arc::default();
        let waiters = recorded.clone();
        // Tells a lifecycle when its instance is in the store (written, not
        // about to be: with a database the write takes a round trip, and a
        // completion arriving before it would find the launch in flight), so
        // it can go on the way GitHub would, without polling.
        let writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = writes.clone();
        let store = HookedStore::after_write(store, move |record| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if record.launches.iter().any(|l| l.instance_id.is_some()) {
                let tx = waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&record.key);
                if let Some(tx) = tx {
                    let _ = tx.send(());
                }
            }
            Ok(())
        });
        let engine = bed
            .builder()
            .launcher(launcher.clone())
            .store(Arc::new(store))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            bed,
            engine,
            launcher,
            recorded,
            writes,
        }
    }

    /// How many job records the engine has written.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One job's whole lifecycle: queued, launched, in progress, completed,
    /// cleaned. Returns the time from handing in `queued` to the launch call.
    pub async fn lifecycle(&self, job_id: u64) -> std::time::Duration {
        self.lifecycle_of(self.bed.job(job_id)).await
    }

    /// [`Rig::lifecycle`] of a job pinned with its own label
    /// (`<run>-<attempt>-build`), as the product recommends.
    pub async fn pinned_lifecycle(&self, job_id: u64) -> std::time::Duration {
        let pin = format!("{job_id}-1-build");
        self.lifecycle_of(
            self.bed
                .job(job_id)
                .labels(&["sprinters:aws:ubuntu-latest", &pin]),
        )
        .await
    }

    /// One lifecycle of `job`: the time from its `queued` webhook to its
    /// `RunInstances` call.
    pub async fn lifecycle_of(
        &self,
        job: sprinters_core::testing::JobEvents,
    ) -> std::time::Duration {
        let job_id = job.key.job_id.get();
        let launched = self.launcher.expect(job.key);
        let (tx, recorded) = oneshot::channel();
        self.recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.key, tx);
        let start = Instant::now();
        self.handle(&format!("{job_id}-q"), job.queued()).await;
        let called = tokio::time::timeout(std::time::Duration::from_secs(10), launched)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("job {job_id} was not launched within 10 s"));
        let latency = called.duration_since(start);
        let _ = recorded.await;
        let runner = TestBed::runner(&job, 1);
        self.handle(&format!("{job_id}-p"), job.in_progress(&runner))
            .await;
        self.handle(
            &format!("{job_id}-c"),
            job.completed(Conclusion::Success, Some(&runner)),
        )
        .await;
        latency
    }

    /// Hands the engine delivery `id` of `event`; panics on an error.
    pub async fn handle(&self, id: &str, event: sprinters_core::events::WorkflowJobEvent) {
        if let Err(e) = self.engine.handle(self.bed.delivery(id, event)).await {
            panic!("{e}");
        }
    }
}

/// The `p`-th percentile of `samples` (sorted in place).
pub fn percentile(samples: &mut [std::time::Duration], p: f64) -> std::time::Duration {
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len().saturating_sub(1)) as f64).round() as usize;
    samples.get(rank).copied().unwrap_or_default()
}
