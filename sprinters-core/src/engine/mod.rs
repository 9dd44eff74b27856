//! The engine: turns job events into one ephemeral instance per job, and
//! cleans up whatever did not go to plan.
//!
//! Rules it keeps, whatever the order, number or loss of events:
//!
//! 1. **At most one launch per (job, run attempt)**: a durable claim in the
//!    store first, a launch intent recorded before any API call, and an EC2
//!    client token derived from the job, so a retried `RunInstances` returns
//!    the same instance. A launch that may have reached EC2 before a crash
//!    looks the instance up by its tags before launching again.
//! 2. **Runners are matched by label set, not by job**: supply (idle
//!    runners) and demand (waiting jobs) are counted per label set; a job
//!    whose runner was taken by another gets the other's runner or a new
//!    one; a spare runner is ended after a grace period unless a job takes it.
//! 3. **No orphan lives long**: [`Engine::reconcile`] ends instances with no
//!    live job, spares past the grace period and anything past the maximum
//!    lifetime, and asks GitHub about jobs waiting too long.
//! 4. **Secrets never leave their lane**: JIT configs and credentials stay in
//!    `secrecy` types; they are in no log line, `Debug` output or record.
//! 5. **Fail loudly, lose nothing**: label, permission and configuration
//!    errors are recorded on the job with their message; transient errors
//!    are retried here, once, with capped exponential backoff and jitter
//!    (the AWS and GitHub clients retry their own calls underneath).
//!
//! Every state change is a compare-and-swap on the job's record, so the
//! engine is safe to run on several replicas sharing one store.

mod admin;
mod arrival;
mod budget;
mod config;
mod ending;
mod github_limits;
mod installations;
mod launch;
mod lifecycle;
mod limits;
mod policy;
mod reconcile;
mod records;
mod supply;
mod tenants;
mod turns;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use config::{EngineConfig, Limits, PriceTable, RetryPolicy};
pub use reconcile::{LEADER_LEASE, ReconcileReport};
pub use tenants::{Refusal, Tenant, Tenants};

use crate::domain::{JobKey, Repository};
use crate::events::{Delivery, Event};
use crate::labels::LabelParser;
use crate::layers::{LayerExt, ObserveLayer};
use crate::observe::{EngineObserver, NoObserver};
use crate::ports::{
    Ack, DynCloudLauncher, DynCredentialProvider, DynEventSource, DynJobStore, DynRunnerRegistry,
    Poll, RecordDelivery,
};
use crate::time::{Clock, SystemClock};
use crate::{Error, ErrorKind, Result};
use limits::Limiter;
use records::Receipt;

/// What [`Engine::handle`] did with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handled {
    /// A queued job of ours was recorded; its launch runs in the background.
    Accepted(JobKey),
    /// A job of ours moved on (started, completed).
    Updated(JobKey),
    /// A job of ours was rejected: its label is invalid or names an account
    /// its owner has not connected.
    Rejected {
        /// The job.
        job: JobKey,
        /// What the user must fix.
        message: String,
    },
    /// Not ours, or an event the engine does not act on.
    Ignored,
    /// This delivery was already processed.
    Duplicate,
}

/// How long the engine waits before polling again after a poll failed or
/// came back empty.
const POLL_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The engine. Cheap to clone: clones share everything.
///
/// Built from the five ports, a configuration and the owners it serves;
/// here over the in-memory adapters (the README embeds it with the
/// default GitHub, AWS and SQLite adapters):
///
/// ```
/// use std::sync::Arc;
/// use sprinters_core::domain::{AccountId, InstallationId, Owner, OwnerId};
/// use sprinters_core::engine::{Engine, EngineConfig, Tenants};
/// use sprinters_core::memory::{MemoryCredentials, MemoryJobStore, MemoryLauncher, MemoryRegistry};
/// use sprinters_core::time::SystemClock;
///
/// # fn main() -> sprinters_core::Result<()> {
/// let tenants = Tenants::new();
/// let account = AccountId::parse("123456789012")?;
/// tenants.connect(OwnerId::new(1), InstallationId::new(10), Owner::parse("octo-org")?, account);
/// let engine = Engine::builder()
///     .registry(Arc::new(MemoryRegistry::new()))
///     .credentials(Arc::new(MemoryCredentials::new()))
///     .launcher(Arc::new(MemoryLauncher::new(Arc::new(SystemClock))))
///     .store(Arc::new(MemoryJobStore::new()))
///     .config(EngineConfig::new("my-platform", tenants))
///     .build()?;
/// // engine.handle(delivery) for each webhook; engine.run(shutdown) for the rest.
/// # let _ = engine;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    // The engine's own `Arc`, for the tasks it spawns.
    me: Weak<Inner>,
    source: Option<DynEventSource>,
    registry: DynRunnerRegistry,
    credentials: DynCredentialProvider,
    launcher: DynCloudLauncher,
    store: DynJobStore,
    clock: Arc<dyn Clock>,
    /// Installations GitHub rate-limited, until when (the registry above
    /// is gated by it; the reconciler's budget reads it).
    github_pauses: Arc<github_limits::Pauses>,
    observer: Arc<dyn EngineObserver>,
    config: EngineConfig,
    parser: LabelParser,
    limiter: Limiter,
    /// Notified each tick: launches refused a slot by the store's count
    /// (held by other replicas) ask again then.
    ticked: tokio::sync::Notify,
    /// Launch tasks waiting for the next tick.
    parked_for_tick: std::sync::atomic::AtomicUsize,
    /// What the ticks have listed of the due work.
    due_listing: Mutex<supply::DueListing>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    // Jobs with a launch task in this replica, so that one job never has
    // two tasks here (the claim guards across replicas).
    scheduled: Mutex<HashSet<JobKey>>,
    // Launches that may call `RunInstances` again, and from when they may
    // (see `EngineConfig::in_flight_window`): those attempted here at
    // once, those cut short elsewhere after the window. Each goes when
    // its launch is recorded or fails for good (or after an hour).
    resumed_waits: Mutex<std::collections::HashMap<(JobKey, u32), crate::time::Timestamp>>,
    // When the reconciler last asked GitHub about each active job, so
    // that a budget of calls goes round them in turn.
    last_asked: Mutex<std::collections::HashMap<JobKey, crate::time::Timestamp>>,
    // Where runs of public repositories came from, asked once per run.
    run_origins: Mutex<std::collections::HashMap<crate::domain::RunId, crate::ports::RunOrigin>>,
    // Runs cancelled because the policy refused a job of theirs.
    cancelled_runs: Mutex<HashSet<crate::domain::RunId>>,
    rng: Mutex<fastrand::Rng>,
}

/// Builds an [`Engine`] from its ports and configuration.
#[derive(Debug, Default)]
pub struct EngineBuilder {
    source: Option<DynEventSource>,
    registry: Option<DynRunnerRegistry>,
    credentials: Option<DynCredentialProvider>,
    launcher: Option<DynCloudLauncher>,
    store: Option<DynJobStore>,
    clock: Option<Arc<dyn Clock>>,
    observer: Option<Arc<dyn EngineObserver>>,
    config: Option<EngineConfig>,
    parser: Option<LabelParser>,
    seed: Option<u64>,
}

impl EngineBuilder {
    /// The pull source that [`Engine::run`] polls (none for push-only use).
    pub fn source(mut self, source: DynEventSource) -> Self {
        self.source = Some(source);
        self
    }
    /// GitHub runners and jobs.
    pub fn registry(mut self, registry: DynRunnerRegistry) -> Self {
        self.registry = Some(registry);
        self
    }
    /// AWS credentials.
    pub fn credentials(mut self, credentials: DynCredentialProvider) -> Self {
        self.credentials = Some(credentials);
        self
    }
    /// EC2.
    pub fn launcher(mut self, launcher: DynCloudLauncher) -> Self {
        self.launcher = Some(launcher);
        self
    }
    /// The job store.
    pub fn store(mut self, store: DynJobStore) -> Self {
        self.store = Some(store);
        self
    }
    /// The clock (the system clock by default).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Told of launches, ended instances and every call to the registry,
    /// credentials and launcher ports (for metrics); none by default.
    pub fn observer(mut self, observer: Arc<dyn EngineObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
    /// The configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = Some(config);
        self
    }
    /// The label parser (prefix `sprinters`, region `us-east-1` by default).
    pub fn labels(mut self, parser: LabelParser) -> Self {
        self.parser = Some(parser);
        self
    }
    /// Seeds the backoff jitter, for reproducible tests and simulations.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The engine, or a `Config` error naming what is missing or wrong.
    pub fn build(self) -> Result<Engine> {
        let missing = |port: &str| Error::config(format!("the engine needs a {port}"));
        let config = self.config.ok_or_else(|| missing("configuration"))?;
        config.validate()?;
        let rng = self
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let registry = self.registry.ok_or_else(|| missing("runner registry"))?;
        let credentials = self
            .credentials
            .ok_or_else(|| missing("credential provider"))?;
        let launcher = self.launcher.ok_or_else(|| missing("cloud launcher"))?;
        let store = self.store.ok_or_else(|| missing("job store"))?;
        let mut source = self.source;
        let (observer, registry, credentials, launcher, store) = match self.observer {
            Some(observer) => {
                let observe = ObserveLayer::new(observer.clone());
                source = source.map(|s| s.layer(observe.clone()) as DynEventSource);
                (
                    observer,
                    registry.layer(observe.clone()) as DynRunnerRegistry,
                    credentials.layer(observe.clone()) as DynCredentialProvider,
                    launcher.layer(observe.clone()) as DynCloudLauncher,
                    store.layer(observe) as DynJobStore,
                )
            }
            None => (
                Arc::new(NoObserver) as Arc<dyn EngineObserver>,
                registry,
                credentials,
                launcher,
                store,
            ),
        };
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        // Outside the observer: a call refused here never reached GitHub.
        let github_pauses = Arc::new(github_limits::Pauses::new(clock.clone()));
        let registry: DynRunnerRegistry = Arc::new(github_limits::RateLimitGate::new(
            registry,
            github_pauses.clone(),
        ));
        Ok(Engine {
            inner: Arc::new_cyclic(|me| Inner {
                me: me.clone(),
                source,
                registry,
                credentials,
                launcher,
                store,
                clock,
                github_pauses,
                observer,
                limiter: Limiter::new(config.limits),
                ticked: tokio::sync::Notify::new(),
                parked_for_tick: std::sync::atomic::AtomicUsize::new(0),
                due_listing: Mutex::default(),
                parser: self.parser.unwrap_or_default(),
                config,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                scheduled: Mutex::new(HashSet::new()),
                resumed_waits: Mutex::new(std::collections::HashMap::new()),
                last_asked: Mutex::new(std::collections::HashMap::new()),
                run_origins: Mutex::new(std::collections::HashMap::new()),
                cancelled_runs: Mutex::new(HashSet::new()),
                rng: Mutex::new(rng),
            }),
        })
    }
}

impl Engine {
    /// A builder.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Takes one delivery in. Returns once its effect is durable in the
    /// store; launches run in the background, so a webhook handler can
    /// answer GitHub at once. Safe to call again with the same delivery.
    pub async fn handle(&self, delivery: Delivery) -> Result<Handled> {
        let inner = &self.inner;
        // No look-up first: the delivery is recorded with the write that
        // processes it, which fails with `Duplicate` if it was processed
        // already. A duplicate that writes nothing is found out below.
        let id = delivery.id.clone();
        let receipt = Receipt::new(RecordDelivery::new(delivery.id, delivery.received_at));
        let handled = match delivery.event {
            Event::WorkflowJob(event) => {
                let span = job_span(event.job, &event.repository);
                inner
                    .on_workflow_job(event, Some(&receipt))
                    .instrument(span)
                    .await
            }
            Event::Installation(event) => inner.on_installation(event).await,
            _ => Ok(Handled::Ignored),
        };
        let handled = match handled {
            Ok(handled) => handled,
            Err(e) if *e.kind() == ErrorKind::Duplicate => {
                tracing::debug!(delivery = %id, "duplicate delivery");
                return Ok(Handled::Duplicate);
            }
            Err(e) => return Err(e),
        };
        // Otherwise recorded only once processed: a crash before this line
        // means the delivery is processed again, which every transition
        // tolerates.
        if !receipt.recorded()
            && !inner
                .store
                .record_delivery(receipt.into_delivery())
                .await?
                .first
        {
            tracing::debug!(delivery = %id, "duplicate delivery");
            return Ok(Handled::Duplicate);
        }
        Ok(handled)
    }

    /// Runs until `shutdown` completes: polls the event source (if any),
    /// starts due launches every tick and reconciles every interval. On
    /// shutdown it stops taking work and finishes in-flight launches.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let inner = &self.inner;
        inner.recover().await?;
        tokio::pin!(shutdown);
        let work = async {
            let mut next_reconcile = inner.clock.now();
            // One tick timer across polls: a source that answers more often
            // than a tick (a busy queue) must not keep resetting it.
            let mut tick = inner.clock.sleep(inner.config.tick_interval);
            // After a poll that failed or came back empty, the next waits
            // until this moment (a deadline, so a tick in between does not
            // cut the wait short): a source that answers at once must not
            // spin the loop.
            let mut poll_after: Option<crate::time::Timestamp> = None;
            loop {
                let poll = async {
                    if let Some(at) = poll_after {
                        inner.clock.sleep(at.since(inner.clock.now())).await;
                    }
                    match &inner.source {
                        Some(source) => source.poll(Poll::new(64)).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = &mut shutdown => break,
                    polled = poll => {
                        let took = match polled {
                            Ok(polled) if polled.deliveries.is_empty() => false,
                            Ok(polled) => {
                                self.take_in(polled.deliveries).await;
                                true
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "polling the event source failed");
                                false
                            }
                        };
                        poll_after = (!took).then(|| inner.clock.now().saturating_add(POLL_PAUSE));
                    }
                    _ = &mut tick => {
                        tick = inner.clock.sleep(inner.config.tick_interval);
                        // Owners connected, changed or removed through
                        // another replica, seen within a tick.
                        if let Err(e) = inner.sync_tenants().await {
                            tracing::warn!(error = %e, "reading the owners' records failed");
                        }
                        if let Err(e) = inner.process_due().await {
                            tracing::warn!(error = %e, "starting due launches failed");
                        }
                        if inner.clock.now() >= next_reconcile {
                            if let Err(e) = inner.reconcile().await {
                                tracing::warn!(error = %e, "reconciling failed");
                            }
                            next_reconcile = inner.clock.now().saturating_add(inner.config.reconcile_interval);
                        }
                    }
                }
            }
        };
        // Leadership is renewed beside the work, every third of its TTL, so
        // that a long pass (a slow cloud API) never lets it lapse.
        let heartbeat = async {
            loop {
                if let Err(e) = inner.lead().await {
                    tracing::warn!(error = %e, "renewing the reconciler's leadership failed");
                }
                inner.clock.sleep(inner.config.leader_ttl / 3).await;
            }
        };
        tokio::select! {
            () = work => {}
            () = heartbeat => {}
        }
        self.shutdown().await;
        if let Err(e) = inner.resign().await {
            tracing::warn!(error = %e, "giving up the reconciler's leadership failed");
        }
        Ok(())
    }

    async fn take_in(&self, deliveries: Vec<crate::events::Delivery>) {
        let Some(source) = &self.inner.source else {
            return;
        };
        let mut done = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let id = delivery.id.clone();
            match self.handle(delivery).await {
                Ok(_) => done.push(id),
                // Not acknowledged: the source delivers it again.
                Err(e) => tracing::warn!(delivery = %id, error = %e, "delivery not taken in"),
            }
        }
        if !done.is_empty()
            && let Err(e) = source.ack(Ack::new(done)).await
        {
            tracing::warn!(error = %e, "acknowledging deliveries failed");
        }
    }

    /// What [`Engine::run`] does first: restores the concurrency slots of
    /// jobs with live instances and starts the launches that are due. Call
    /// it after a restart when driving the engine without `run`.
    pub async fn recover(&self) -> Result<()> {
        self.inner.recover().await
    }

    /// Takes or renews the reconciler's leadership; true while this
    /// replica leads. Work that must run on one replica at a time (the
    /// webhook-log recovery of `serve`, say) runs when this is true.
    pub async fn leads(&self) -> Result<bool> {
        self.inner.lead().await
    }

    /// One reconciliation pass (what `run` does every interval).
    pub async fn reconcile(&self) -> Result<ReconcileReport> {
        self.inner.reconcile().await
    }

    /// Starts the launches that are due: retries whose backoff has passed,
    /// claims that lapsed, waiting jobs with no runner.
    pub async fn process_due(&self) -> Result<()> {
        self.inner.process_due().await
    }

    /// Waits until every background task of this engine has finished.
    pub async fn drain(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.tasks.reopen();
    }

    /// Waits until every background task has finished or waits for a
    /// launch slot: for a deterministic run on a current-thread runtime
    /// with no timers (it yields until then).
    #[cfg(feature = "testing")]
    pub(crate) async fn until_idle(&self) {
        // A waiter woken (a slot freed, a tick) still counts as parked
        // until it runs: yield to every ready task before looking.
        loop {
            for _ in 0..16 {
                tokio::task::yield_now().await;
            }
            if self.inner.tasks.len() <= self.inner.parked() {
                return;
            }
        }
    }

    /// Stops starting new launches and waits for the ones in flight.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// How many concurrency slots this replica counts: one per live
    /// instance it knows of, and one per launch under way.
    pub fn slots_held(&self) -> usize {
        self.inner.limiter.held()
    }
}

/// The span every line about one job is logged in.
pub(crate) fn job_span(job: JobKey, repository: &Repository) -> tracing::Span {
    tracing::info_span!(
        "job",
        job_id = job.job_id.get(),
        run_attempt = job.run_attempt.get(),
        repository = %repository,
    )
}
