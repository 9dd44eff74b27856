//! [`TestBed`]: the engine over the in-memory adapters and a manual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::{
    AccountId, DeliveryId, InstallationId, JobId, JobKey, Owner, OwnerId, Repository, RunAttempt,
    RunId, RunnerName,
};
use crate::engine::{Engine, EngineBuilder, EngineConfig, Handled, Tenants};
use crate::events::{
    Conclusion, Delivery, Event, InstallationAction, InstallationEvent, WorkflowJobAction,
    WorkflowJobEvent,
};
use crate::job::JobRecord;
use crate::memory::{
    MemoryCredentials, MemoryEventSource, MemoryJobStore, MemoryLauncher, MemoryRegistry,
};
use crate::ports::{JobStatus, RemoteJobStatus};
use crate::time::{Clock, ManualClock};

use super::HookedStore;

/// The engine wired to in-memory adapters, for tests and benchmarks. The
/// owner `octo-org` (GitHub account id [`TestBed::OWNER_ID`], installation
/// [`TestBed::INSTALLATION_ID`]) has connected account `123456789012`.
#[derive(Debug)]
pub struct TestBed {
    /// The engine.
    pub engine: Engine,
    /// Its clock; advance it instead of sleeping.
    pub clock: Arc<ManualClock>,
    /// The store.
    pub store: Arc<MemoryJobStore>,
    /// The simulated EC2.
    pub launcher: Arc<MemoryLauncher>,
    /// The simulated GitHub.
    pub registry: Arc<MemoryRegistry>,
    /// The simulated STS.
    pub credentials: Arc<MemoryCredentials>,
    /// A queue the engine polls in `run`.
    pub source: Arc<MemoryEventSource>,
    /// The connected owner's login.
    pub owner: Owner,
    /// The owners served; connect more with [`TestBed::connect`].
    pub tenants: Tenants,
    /// Its account.
    pub account: AccountId,
    /// A repository of the owner.
    pub repository: Repository,
    deliveries: AtomicU64,
}

impl Default for TestBed {
    fn default() -> Self {
        Self::new()
    }
}

impl TestBed {
    /// The GitHub account id of `octo-org`, the bed's owner.
    pub const OWNER_ID: OwnerId = OwnerId::new(9919);
    /// Its installation of the App.
    pub const INSTALLATION_ID: InstallationId = InstallationId::new(4242);

    /// Connects `account` to another owner, bound to its ids.
    pub fn connect(&self, login: &str, owner_id: u64, installation_id: u64, account: &str) {
        self.tenants.connect(
            OwnerId::new(owner_id),
            InstallationId::new(installation_id),
            Owner::parse(login).unwrap(),
            AccountId::parse(account).unwrap(),
        );
    }

    /// A bed with the default configuration.
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// A bed whose configuration `adjust` changes first.
    pub fn with_config(adjust: impl FnOnce(&mut EngineConfig)) -> Self {
        Self::build(adjust, None)
    }

    /// A bed whose engine writes through `hook` (see [`HookedStore`]).
    pub fn with_store_hook(
        hook: impl FnMut(&JobRecord) -> crate::Result<()> + Send + 'static,
    ) -> Self {
        Self::build(|_| {}, Some(Box::new(hook)))
    }

    #[allow(clippy::type_complexity)]
    fn build(
        adjust: impl FnOnce(&mut EngineConfig),
        hook: Option<Box<dyn FnMut(&JobRecord) -> crate::Result<()> + Send>>,
    ) -> Self {
        let owner = Owner::parse("octo-org").unwrap();
        let account = AccountId::parse("123456789012").unwrap();
        let tenants = Tenants::new();
        tenants.connect(
            Self::OWNER_ID,
            Self::INSTALLATION_ID,
            owner.clone(),
            account.clone(),
        );
        let mut config = EngineConfig::new("test-controller", tenants.clone());
        config.replica_id = "replica-1".into();
        adjust(&mut config);

        let clock = Arc::new(ManualClock::default());
        let store = Arc::new(MemoryJobStore::new());
        let launcher = Arc::new(MemoryLauncher::new(clock.clone()));
        let registry = Arc::new(MemoryRegistry::new());
        let credentials = Arc::new(MemoryCredentials::new());
        let source = Arc::new(MemoryEventSource::new(clock.clone()));
        let engine = Engine::builder()
            .source(source.clone())
            .registry(registry.clone())
            .credentials(credentials.clone())
            .launcher(launcher.clone())
            .store(match hook {
                Some(hook) => Arc::new(HookedStore::new(store.clone(), hook)),
                None => store.clone(),
            })
            .clock(clock.clone())
            .config(config)
            .seed(7)
            .build()
            .unwrap();
        Self {
            engine,
            clock,
            store,
            launcher,
            registry,
            credentials,
            source,
            owner,
            tenants,
            account,
            repository: Repository::parse("octo-org/app").unwrap(),
            deliveries: AtomicU64::new(0),
        }
    }

    /// A builder prefilled with this bed's adapters, clock and configuration
    /// (store hook excepted), for a test that swaps one port.
    pub fn builder(&self) -> EngineBuilder {
        Engine::builder()
            .registry(self.registry.clone())
            .credentials(self.credentials.clone())
            .launcher(self.launcher.clone())
            .store(self.store.clone())
            .clock(self.clock.clone())
            .config(self.engine.config().clone())
    }

    /// Events of job `id` (attempt 1) in the bed's repository, labelled
    /// `sprinters:aws:ubuntu-latest` unless changed.
    pub fn job(&self, id: u64) -> JobEvents {
        JobEvents {
            key: JobKey::new(JobId::new(id), RunAttempt::FIRST),
            run_id: RunId::new(id * 100),
            repository: self.repository.clone(),
            owner_id: Self::OWNER_ID,
            installation_id: Self::INSTALLATION_ID,
            labels: vec!["sprinters:aws:ubuntu-latest".to_owned()],
            public: false,
        }
    }

    /// Delivers `event` under a fresh delivery id.
    pub async fn send(&self, event: WorkflowJobEvent) -> Handled {
        let n = self.deliveries.fetch_add(1, Ordering::Relaxed);
        self.send_as(&format!("delivery-{n}"), event).await
    }

    /// Delivers `event` under delivery id `id`. The simulated GitHub
    /// learns the job's status from it too, as the real one would know it.
    pub async fn send_as(&self, id: &str, event: WorkflowJobEvent) -> Handled {
        self.tell_github(&event);
        self.engine.handle(self.delivery(id, event)).await.unwrap()
    }

    /// Sets the simulated GitHub's view of a job without delivering anything
    /// (an event GitHub sent that was lost on the way).
    pub fn tell_github(&self, event: &WorkflowJobEvent) {
        let event = &self.with_runner_id(event.clone());
        let status = match event.action {
            WorkflowJobAction::Queued | WorkflowJobAction::Waiting => RemoteJobStatus::Queued,
            WorkflowJobAction::InProgress => RemoteJobStatus::InProgress,
            WorkflowJobAction::Completed => RemoteJobStatus::Completed,
        };
        self.registry.set_job(
            event.repository.clone(),
            event.run_id,
            event.job,
            event.labels.clone(),
            JobStatus::new(status, event.conclusion, event.runner_name.clone())
                .with_runner_id(event.runner_id),
        );
    }

    /// Delivers an `installation` or `installation_repositories` event:
    /// `action` on installation `installation_id` of the account `owner_id`
    /// whose login is `login`; `removed` and `added` repositories for
    /// [`InstallationAction::RepositoriesChanged`].
    pub async fn send_installation(
        &self,
        action: InstallationAction,
        login: &str,
        owner_id: u64,
        installation_id: u64,
        removed: &[&str],
        added: &[&str],
    ) -> Handled {
        let n = self.deliveries.fetch_add(1, Ordering::Relaxed);
        let repositories = |names: &[&str]| {
            names
                .iter()
                .map(|r| Repository::parse(r).unwrap())
                .collect()
        };
        let event = InstallationEvent {
            action,
            installation_id: InstallationId::new(installation_id),
            owner: Owner::parse(login).unwrap(),
            owner_id: OwnerId::new(owner_id),
            repositories_removed: repositories(removed),
            repositories_added: repositories(added),
        };
        let delivery = Delivery {
            id: DeliveryId::parse(&format!("installation-{n}")).unwrap(),
            received_at: self.clock.now(),
            event: Event::Installation(event),
        };
        self.engine.handle(delivery).await.unwrap()
    }

    /// A delivery of `event` under `id`, received now.
    pub fn delivery(&self, id: &str, event: WorkflowJobEvent) -> Delivery {
        Delivery {
            id: DeliveryId::parse(id).unwrap(),
            received_at: self.clock.now(),
            event: Event::WorkflowJob(self.with_runner_id(event)),
        }
    }

    /// `event` with the id of its runner as GitHub reports it, when the
    /// event names a runner registered in its repository and sets no id.
    pub fn with_runner_id(&self, mut event: WorkflowJobEvent) -> WorkflowJobEvent {
        if event.runner_id.is_none()
            && let Some(name) = &event.runner_name
        {
            event.runner_id = self.registry.runner_id(&event.repository, name);
        }
        event
    }

    /// Waits for every background launch and clean-up to finish.
    pub async fn settle(&self) {
        self.engine.drain().await;
    }

    /// Moves the clock on.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// The stored record of `job`.
    pub async fn record(&self, job: &JobEvents) -> JobRecord {
        use crate::ports::JobStore;
        self.store
            .get_job(job.key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("job {} has no record", job.key))
            .value
    }

    /// The runner of launch `n` of `job`.
    pub fn runner(job: &JobEvents, n: u32) -> RunnerName {
        RunnerName::for_launch(job.key, n)
    }
}

/// Builds the `workflow_job` events of one job.
#[derive(Debug, Clone)]
pub struct JobEvents {
    /// The job and attempt.
    pub key: JobKey,
    /// Its run.
    pub run_id: RunId,
    /// Its repository.
    pub repository: Repository,
    /// Its owner's GitHub account id.
    pub owner_id: OwnerId,
    /// The installation that reports it.
    pub installation_id: InstallationId,
    /// Its labels.
    pub labels: Vec<String>,
    /// Whether its repository is public (private by default).
    pub public: bool,
}

impl JobEvents {
    /// Of a public repository.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// With these labels.
    pub fn labels(mut self, labels: &[&str]) -> Self {
        self.labels = labels.iter().map(|l| (*l).to_owned()).collect();
        self
    }

    /// At run attempt `n`.
    pub fn attempt(mut self, n: u32) -> Self {
        self.key = JobKey::new(self.key.job_id, RunAttempt::new(n).unwrap());
        self
    }

    /// In `repository`.
    pub fn repository(mut self, repository: &str) -> Self {
        self.repository = Repository::parse(repository).unwrap();
        self
    }

    /// Of the owner with GitHub account id `owner_id`, reported by
    /// installation `installation_id` (what its events carry, whatever the
    /// repository's login says).
    pub fn owner(mut self, owner_id: u64, installation_id: u64) -> Self {
        self.owner_id = OwnerId::new(owner_id);
        self.installation_id = InstallationId::new(installation_id);
        self
    }

    /// `in_progress` on a runner named `runner` whose GitHub id is
    /// `runner_id` (a runner someone else registered under that name).
    pub fn in_progress_on(&self, runner: &RunnerName, runner_id: u64) -> WorkflowJobEvent {
        WorkflowJobEvent {
            runner_id: Some(runner_id),
            ..self.in_progress(runner)
        }
    }

    /// `completed` on a runner named `runner` whose GitHub id is `runner_id`.
    pub fn completed_on(
        &self,
        conclusion: Conclusion,
        runner: &RunnerName,
        runner_id: u64,
    ) -> WorkflowJobEvent {
        WorkflowJobEvent {
            runner_id: Some(runner_id),
            ..self.completed(conclusion, Some(runner))
        }
    }

    fn event(&self, action: WorkflowJobAction) -> WorkflowJobEvent {
        WorkflowJobEvent {
            action,
            job: self.key,
            run_id: self.run_id,
            repository: self.repository.clone(),
            owner_id: self.owner_id,
            installation_id: self.installation_id,
            labels: self.labels.clone(),
            name: Some(format!("build-{}", self.key.job_id)),
            runner_name: None,
            runner_id: None,
            conclusion: None,
            at: None,
            repository_private: Some(!self.public),
        }
    }

    /// `queued`.
    pub fn queued(&self) -> WorkflowJobEvent {
        self.event(WorkflowJobAction::Queued)
    }

    /// `in_progress` on `runner`.
    pub fn in_progress(&self, runner: &RunnerName) -> WorkflowJobEvent {
        WorkflowJobEvent {
            runner_name: Some(runner.clone()),
            ..self.event(WorkflowJobAction::InProgress)
        }
    }

    /// `completed` with `conclusion`, on `runner` if it was picked up.
    pub fn completed(
        &self,
        conclusion: Conclusion,
        runner: Option<&RunnerName>,
    ) -> WorkflowJobEvent {
        WorkflowJobEvent {
            runner_name: runner.cloned(),
            conclusion: Some(conclusion),
            ..self.event(WorkflowJobAction::Completed)
        }
    }
}
