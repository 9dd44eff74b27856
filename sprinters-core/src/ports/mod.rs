//! The five ports: object-safe async traits the engine drives, used as
//! `Arc<dyn Port>`. Every call takes and returns a struct, so fields can be
//! added without breaking adapters or callers.
//!
//! | port | job |
//! |---|---|
//! | [`EventSource`] | deliveries of job and installation events, acknowledged once durably taken in |
//! | [`RunnerRegistry`] | just-in-time runners, runner removal, job status, re-run and cancel |
//! | [`CredentialProvider`] | short-lived credentials for an AWS account |
//! | [`CloudLauncher`] | launch with an idempotency token, terminate, list what we own, describe |
//! | [`JobStore`] | job records with versions, delivery de-duplication, leases, history, retention |

mod credentials;
mod events;
mod launcher;
mod registry;
mod slots;
mod store;

pub use credentials::{CredentialProvider, Credentials, CredentialsRequest};
pub use events::{Ack, EventSource, Poll, Polled};
pub use launcher::{
    CloudLauncher, DescribeInstance, InstanceInfo, InstanceState, LaunchRequest, Launched,
    ListOwned, Market, OwnedInstances, StateReason, TerminateRequest, Terminated,
};
pub use registry::{
    CancelRun, CreateJitRunner, GetJobStatus, GetRunOrigin, JitRunner, JobStatus, ListQueuedJobs,
    QueuedJob, QueuedJobs, RemoteJobStatus, RemoveRunner, RerunJob, RunOrigin, RunnerRegistry,
};
pub use slots::{CapReached, Claim, SlotBook, SlotCap, SlotCaps, SlotCounts};
pub use store::{
    AcquireLease, ClaimJob, CountQueued, DeliveryRecorded, JobCursor, JobPage, JobStore,
    LeaseGrant, ListJobs, Purge, Purged, PutJob, PutTenant, RecordDelivery, ReleaseLease, Version,
    Versioned,
};

#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub use credentials::MockCredentialProvider;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub use events::MockEventSource;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub use launcher::MockCloudLauncher;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub use registry::MockRunnerRegistry;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub use store::MockJobStore;

use std::sync::Arc;

/// A shared [`EventSource`].
pub type DynEventSource = Arc<dyn EventSource>;
/// A shared [`RunnerRegistry`].
pub type DynRunnerRegistry = Arc<dyn RunnerRegistry>;
/// A shared [`CredentialProvider`].
pub type DynCredentialProvider = Arc<dyn CredentialProvider>;
/// A shared [`CloudLauncher`].
pub type DynCloudLauncher = Arc<dyn CloudLauncher>;
/// A shared [`JobStore`].
pub type DynJobStore = Arc<dyn JobStore>;

// Every port must stay object-safe and shareable across tasks.
const _: fn() = || {
    fn assert_send_sync<T: ?Sized + Send + Sync + 'static>() {}
    assert_send_sync::<dyn EventSource>();
    assert_send_sync::<dyn RunnerRegistry>();
    assert_send_sync::<dyn CredentialProvider>();
    assert_send_sync::<dyn CloudLauncher>();
    assert_send_sync::<dyn JobStore>();
};
