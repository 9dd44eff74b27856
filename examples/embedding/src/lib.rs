//! What the three programs share: the engine over the in-memory adapters of
//! `sprinters_core::memory` (a GitHub, an STS and an EC2 that live in the
//! process), for the programs that are about another port, and a queued job
//! to give it.
//!
//! | program | shows |
//! |---|---|
//! | `src/bin/embed_engine.rs` | the engine with the default adapters: the GitHub App, STS, EC2, the SQLite store, behind an axum webhook route |
//! | `src/bin/sqs_event_source.rs` | an `EventSource` of your own, over SQS ([`sqs`]) |
//! | `src/bin/custom_layer.rs` | a layer of your own around the ports |

pub mod sqs;

use std::sync::Arc;

use sprinters_core::domain::{
    AccountId, DeliveryId, InstallationId, InvalidValue, JobId, JobKey, Owner, OwnerId, Repository,
    RunAttempt, RunId,
};
use sprinters_core::engine::{Engine, EngineBuilder, EngineConfig, Tenants};
use sprinters_core::events::{Delivery, Event, WorkflowJobAction, WorkflowJobEvent};
use sprinters_core::memory::{MemoryCredentials, MemoryJobStore, MemoryLauncher, MemoryRegistry};
use sprinters_core::ports::{
    DynCloudLauncher, DynCredentialProvider, DynJobStore, DynRunnerRegistry,
};
use sprinters_core::time::{Clock, SystemClock};

/// The owner the in-memory engine serves: `octo-org`, GitHub account id 1,
/// installation 10, AWS account `123456789012`.
pub const OWNER_ID: OwnerId = OwnerId::new(1);
const INSTALLATION_ID: InstallationId = InstallationId::new(10);

/// The in-memory ports, to wrap before they go into the engine.
#[derive(Debug)]
pub struct MemoryPorts {
    /// A GitHub in the process.
    pub registry: DynRunnerRegistry,
    /// An STS in the process.
    pub credentials: DynCredentialProvider,
    /// An EC2 in the process.
    pub launcher: DynCloudLauncher,
    /// A store in memory.
    pub store: DynJobStore,
}

/// Fresh in-memory ports.
pub fn memory_ports() -> MemoryPorts {
    MemoryPorts {
        registry: Arc::new(MemoryRegistry::new()),
        credentials: Arc::new(MemoryCredentials::new()),
        launcher: Arc::new(MemoryLauncher::new(Arc::new(SystemClock))),
        store: Arc::new(MemoryJobStore::new()),
    }
}

/// An engine builder with `ports`, serving `octo-org`.
pub fn engine_over(ports: MemoryPorts) -> Result<EngineBuilder, InvalidValue> {
    let tenants = Tenants::new();
    tenants.connect(
        OWNER_ID,
        INSTALLATION_ID,
        Owner::parse("octo-org")?,
        AccountId::parse("123456789012")?,
    );
    Ok(Engine::builder()
        .registry(ports.registry)
        .credentials(ports.credentials)
        .launcher(ports.launcher)
        .store(ports.store)
        .clock(Arc::new(SystemClock) as Arc<dyn Clock>)
        .config(EngineConfig::new("embedding-example", tenants)))
}

/// An engine over fresh in-memory ports.
pub fn memory_engine() -> Result<EngineBuilder, InvalidValue> {
    engine_over(memory_ports())
}

/// `workflow_job.queued` for job `id` of `octo-org/app`, labelled
/// `sprinters:aws:ubuntu-latest`.
pub fn queued_job(id: u64) -> Result<Delivery, InvalidValue> {
    let job = JobKey::new(JobId::new(id), RunAttempt::FIRST);
    Ok(Delivery {
        id: DeliveryId::parse(&format!("queued-{id}"))?,
        received_at: SystemClock.now(),
        event: Event::WorkflowJob(WorkflowJobEvent {
            action: WorkflowJobAction::Queued,
            job,
            run_id: RunId::new(id * 100),
            repository: Repository::parse("octo-org/app")?,
            owner_id: OWNER_ID,
            installation_id: INSTALLATION_ID,
            labels: vec!["sprinters:aws:ubuntu-latest".to_owned()],
            name: Some("build".to_owned()),
            runner_name: None,
            runner_id: None,
            conclusion: None,
            at: None,
            repository_private: Some(true),
        }),
    })
}
