//! Every port implemented for `Arc<T>`, `Box<T>` and [`Layered`]: written
//! once per port, by one macro, so a port's methods are listed in one
//! place and a new method cannot be forwarded by one wrapper and not the
//! others (a missing one fails to compile).

use futures::future::BoxFuture;

use super::{Call, Layer, Layered};
use crate::Result;
use crate::domain::{AccountId, DeliveryId, JobKey, OwnerId};
use crate::job::JobRecord;
use crate::observe::Api;
use crate::ports::{
    Ack, AcquireLease, CancelRun, Claim, ClaimJob, CloudLauncher, CountQueued, CreateJitRunner,
    CredentialProvider, Credentials, CredentialsRequest, DeliveryRecorded, DescribeInstance,
    EventSource, GetJobStatus, GetRunOrigin, InstanceInfo, JitRunner, JobPage, JobStatus, JobStore,
    LaunchRequest, Launched, LeaseGrant, ListJobs, ListOwned, ListQueuedJobs, OwnedInstances, Poll,
    Polled, Purge, Purged, PutJob, PutTenant, QueuedJobs, RecordDelivery, ReleaseLease,
    RemoveRunner, RerunJob, RunOrigin, RunnerRegistry, TerminateRequest, Terminated, Version,
    Versioned,
};
use crate::tenant::TenantRecord;
use crate::vault::{CredentialVault, StoredAccessKey};

/// `forward!(Trait, Api::X, { async fn m(&self, a: A) -> R; ... } { fn s(&self) -> S; ... })`:
/// the async methods go through the layer, the plain ones straight to the
/// inner port.
///
/// The methods are written as `async_trait` expands them, returning the
/// inner port's boxed future itself: every call through an `Arc<dyn Port>`
/// resolves to the `Arc<T>` impl, and an `async fn` there would box a
/// second future on every port call of the engine.
macro_rules! forward {
    (
        $port:ident, $api:expr,
        { $( async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )* }
        { $( fn $plain:ident(&self) -> $pret:ty; )* }
    ) => {
        impl<T: ?Sized + $port> $port for std::sync::Arc<T> {
            $( fn $name<'life0, 'async_trait>(&'life0 self $(, $arg: $ty)*) -> BoxFuture<'async_trait, $ret>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                (**self).$name($($arg),*)
            } )*
            $( fn $plain(&self) -> $pret {
                (**self).$plain()
            } )*
        }

        impl<T: ?Sized + $port> $port for Box<T> {
            $( fn $name<'life0, 'async_trait>(&'life0 self $(, $arg: $ty)*) -> BoxFuture<'async_trait, $ret>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                (**self).$name($($arg),*)
            } )*
            $( fn $plain(&self) -> $pret {
                (**self).$plain()
            } )*
        }

        impl<T: ?Sized + $port, L: Layer> $port for Layered<T, L> {
            $( fn $name<'life0, 'async_trait>(&'life0 self $(, $arg: $ty)*) -> BoxFuture<'async_trait, $ret>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                let call = Call::new($api, stringify!($name));
                self.layer.wrap(call, self.inner.$name($($arg),*))
            } )*
            $( fn $plain(&self) -> $pret {
                self.inner.$plain()
            } )*
        }
    };
}

forward!(EventSource, Api::Events, {
    async fn poll(&self, request: Poll) -> Result<Polled>;
    async fn ack(&self, request: Ack) -> Result<()>;
} {});

forward!(RunnerRegistry, Api::Registry, {
    async fn create_jit_runner(&self, request: CreateJitRunner) -> Result<JitRunner>;
    async fn remove_runner(&self, request: RemoveRunner) -> Result<()>;
    async fn job_status(&self, request: GetJobStatus) -> Result<JobStatus>;
    async fn rerun_job(&self, request: RerunJob) -> Result<()>;
    async fn cancel_run(&self, request: CancelRun) -> Result<()>;
    async fn list_queued_jobs(&self, request: ListQueuedJobs) -> Result<QueuedJobs>;
    async fn run_origin(&self, request: GetRunOrigin) -> Result<RunOrigin>;
} {});

forward!(CredentialProvider, Api::Credentials, {
    async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials>;
} {});

forward!(CloudLauncher, Api::Launcher, {
    async fn launch(&self, request: LaunchRequest) -> Result<Launched>;
    async fn terminate(&self, request: TerminateRequest) -> Result<Terminated>;
    async fn list_owned(&self, request: ListOwned) -> Result<OwnedInstances>;
    async fn describe(&self, request: DescribeInstance) -> Result<InstanceInfo>;
} {});

forward!(JobStore, Api::Store, {
    async fn get_job(&self, key: JobKey) -> Result<Option<Versioned<JobRecord>>>;
    async fn put_job(&self, request: PutJob) -> Result<Version>;
    async fn claim_job(&self, request: ClaimJob) -> Result<Claim>;
    async fn list_jobs(&self, request: ListJobs) -> Result<JobPage>;
    async fn delivery_seen(&self, id: DeliveryId) -> Result<bool>;
    async fn record_delivery(&self, request: RecordDelivery) -> Result<DeliveryRecorded>;
    async fn acquire_lease(&self, request: AcquireLease) -> Result<LeaseGrant>;
    async fn release_lease(&self, request: ReleaseLease) -> Result<()>;
    async fn get_tenant(&self, owner_id: OwnerId) -> Result<Option<Versioned<TenantRecord>>>;
    async fn put_tenant(&self, request: PutTenant) -> Result<Version>;
    async fn list_tenants(&self) -> Result<Vec<Versioned<TenantRecord>>>;
    async fn delete_tenant(&self, owner_id: OwnerId, version: Version) -> Result<()>;
    async fn purge(&self, request: Purge) -> Result<Purged>;
    async fn count_queued(&self, request: CountQueued) -> Result<u64>;
} {
    fn is_shared(&self) -> bool;
});

forward!(CredentialVault, Api::Vault, {
    async fn put_access_key(&self, owner: OwnerId, account: AccountId, key: StoredAccessKey) -> Result<()>;
    async fn access_key(&self, owner: OwnerId, account: AccountId) -> Result<Option<StoredAccessKey>>;
    async fn delete_access_key(&self, owner: OwnerId, account: AccountId) -> Result<()>;
    async fn accounts(&self) -> Result<Vec<(OwnerId, AccountId)>>;
} {});
