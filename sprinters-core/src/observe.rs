//! [`EngineObserver`]: what the engine did, told to whoever counts it
//! (Prometheus, OpenTelemetry, an audit log) without the core knowing any
//! metrics system.
//!
//! Give one to [`EngineBuilder::observer`](crate::engine::EngineBuilder::observer):
//! the engine then tells it when it calls `RunInstances` for a job (with
//! how long the job had waited since its webhook), when it ends an
//! instance (and why), and the outcome of every call it makes to its
//! ports: GitHub, AWS credentials, EC2, the store and the event source
//! (each wrapped in an [`ObserveLayer`](crate::layers::ObserveLayer)).
//! Calls are inline on the launch path: an observer must be cheap and must
//! not block.

use std::fmt;
use std::time::Duration;

use crate::Error;
use crate::domain::JobKey;
use crate::job::EndReason;
use crate::ports::Market;

/// Receives what the engine did. Every method has an empty default, so an
/// observer implements only what it counts.
pub trait EngineObserver: Send + Sync + fmt::Debug + 'static {
    /// The engine is about to ask the launcher for an instance.
    fn launching(&self, event: &Launching) {
        let _ = event;
    }
    /// The engine ended an instance.
    fn instance_ended(&self, event: &InstanceEnded) {
        let _ = event;
    }
    /// A call to a port returned.
    fn port_call(&self, call: &PortCall<'_>) {
        let _ = call;
    }
    /// The engine removed an owner (its App was uninstalled): nothing
    /// launches for it any more and its instances were ended. A platform
    /// shreds here what it keeps of the owner's accounts.
    fn owner_removed(&self, event: &OwnerRemoved) {
        let _ = event;
    }
    /// This replica wrote a job into another state (`from` is `None` for
    /// a job it recorded first). Summed over replicas, the changes into a
    /// state count every job that reached it.
    fn job_state_changed(&self, from: Option<crate::job::JobState>, to: crate::job::JobState) {
        let _ = (from, to);
    }
    /// A reconciliation pass read the active jobs (on the leading replica
    /// only): how many are in each state, without a read of its own.
    fn active_jobs(&self, by_state: &std::collections::BTreeMap<crate::job::JobState, u64>) {
        let _ = by_state;
    }
}

/// An owner removed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OwnerRemoved {
    /// Its GitHub account id.
    pub owner_id: crate::domain::OwnerId,
    /// The accounts it had connected or configured (verified ones only).
    pub accounts: Vec<crate::domain::AccountId>,
}

/// A launch about to be made.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Launching {
    /// The job.
    pub job: JobKey,
    /// 1 for the job's first launch, 2 for a replacement, ...
    pub launch_number: u32,
    /// Spot or on-demand.
    pub market: Market,
    /// From the job's `queued` delivery being taken in to this call: the
    /// control plane's share of a job's wait.
    pub since_queued: Duration,
}

/// An instance ended.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct InstanceEnded {
    /// Why.
    pub reason: EndReason,
    /// False when it was already gone.
    pub was_running: bool,
}

/// The ports, as calls to them are named (by [`PortCall`] and the
/// [layers](crate::layers)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Api {
    /// The [`RunnerRegistry`](crate::ports::RunnerRegistry) (GitHub).
    Registry,
    /// The [`CredentialProvider`](crate::ports::CredentialProvider) (STS,
    /// the vault).
    Credentials,
    /// The [`CloudLauncher`](crate::ports::CloudLauncher) (EC2).
    Launcher,
    /// The [`JobStore`](crate::ports::JobStore).
    Store,
    /// The [`EventSource`](crate::ports::EventSource).
    Events,
    /// The [`CredentialVault`](crate::vault::CredentialVault).
    Vault,
}

impl Api {
    /// `registry`, `credentials`, `launcher`, `store`, `events` or `vault`,
    /// for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Registry => "registry",
            Api::Credentials => "credentials",
            Api::Launcher => "launcher",
            Api::Store => "store",
            Api::Events => "events",
            Api::Vault => "vault",
        }
    }
}

/// One call to a port.
#[derive(Debug)]
#[non_exhaustive]
pub struct PortCall<'a> {
    /// Which port.
    pub api: Api,
    /// The method, such as `launch` or `create_jit_runner`.
    pub operation: &'static str,
    /// How long it took.
    pub elapsed: Duration,
    /// The error, if it failed.
    pub error: Option<&'a Error>,
}

/// The observer of an engine built without one.
#[derive(Debug, Default)]
pub struct NoObserver;

impl EngineObserver for NoObserver {}

/// Several observers, each told everything in turn (metrics and an audit
/// log, say).
#[derive(Debug, Default, Clone)]
pub struct Observers(pub Vec<std::sync::Arc<dyn EngineObserver>>);

impl EngineObserver for Observers {
    fn launching(&self, event: &Launching) {
        self.0.iter().for_each(|o| o.launching(event));
    }
    fn instance_ended(&self, event: &InstanceEnded) {
        self.0.iter().for_each(|o| o.instance_ended(event));
    }
    fn port_call(&self, call: &PortCall<'_>) {
        self.0.iter().for_each(|o| o.port_call(call));
    }
    fn owner_removed(&self, event: &OwnerRemoved) {
        self.0.iter().for_each(|o| o.owner_removed(event));
    }
    fn job_state_changed(&self, from: Option<crate::job::JobState>, to: crate::job::JobState) {
        self.0.iter().for_each(|o| o.job_state_changed(from, to));
    }
    fn active_jobs(&self, by_state: &std::collections::BTreeMap<crate::job::JobState, u64>) {
        self.0.iter().for_each(|o| o.active_jobs(by_state));
    }
}
