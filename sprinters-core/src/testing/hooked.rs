//! [`HookedStore`]: a job store that lets a test see, or fail, every write.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::Result;
use crate::domain::{DeliveryId, JobKey};
use crate::job::JobRecord;
use crate::ports::{
    AcquireLease, Claim, ClaimJob, DeliveryRecorded, JobPage, JobStore, LeaseGrant, ListJobs,
    Purge, Purged, PutJob, RecordDelivery, ReleaseLease, Version, Versioned,
};

type Hook = Box<dyn FnMut(&JobRecord) -> Result<()> + Send>;

/// Wraps a store; `hook` sees every record about to be written by
/// `put_job` and may fail the write (a crash at that point), or, made with
/// [`HookedStore::after_write`], every record once it is written.
pub struct HookedStore {
    inner: Arc<dyn JobStore>,
    hook: Mutex<Hook>,
    after: bool,
}

impl HookedStore {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn JobStore>,
        hook: impl FnMut(&JobRecord) -> Result<()> + Send + 'static,
    ) -> Self {
        Self {
            inner,
            hook: Mutex::new(Box::new(hook)),
            after: false,
        }
    }

    /// Wraps `inner`; `hook` sees each record once `put_job` has stored it
    /// (what a test waits on to know a write is durable; its error is
    /// ignored, the write being done).
    pub fn after_write(
        inner: Arc<dyn JobStore>,
        hook: impl FnMut(&JobRecord) -> Result<()> + Send + 'static,
    ) -> Self {
        Self {
            after: true,
            ..Self::new(inner, hook)
        }
    }

    fn see(&self, record: &JobRecord) -> Result<()> {
        (self.hook.lock().unwrap_or_else(|e| e.into_inner()))(record)
    }
}

impl fmt::Debug for HookedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookedStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl JobStore for HookedStore {
    async fn get_job(&self, key: JobKey) -> Result<Option<Versioned<JobRecord>>> {
        self.inner.get_job(key).await
    }
    async fn put_job(&self, request: PutJob) -> Result<Version> {
        if self.after {
            let record = request.record.clone();
            let version = self.inner.put_job(request).await?;
            let _ = self.see(&record);
            return Ok(version);
        }
        self.see(&request.record)?;
        self.inner.put_job(request).await
    }
    async fn claim_job(&self, request: ClaimJob) -> Result<Claim> {
        self.inner.claim_job(request).await
    }
    async fn list_jobs(&self, request: ListJobs) -> Result<JobPage> {
        self.inner.list_jobs(request).await
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
    async fn get_tenant(
        &self,
        owner_id: crate::domain::OwnerId,
    ) -> Result<Option<Versioned<crate::tenant::TenantRecord>>> {
        self.inner.get_tenant(owner_id).await
    }
    async fn put_tenant(&self, request: crate::ports::PutTenant) -> Result<Version> {
        self.inner.put_tenant(request).await
    }
    async fn list_tenants(&self) -> Result<Vec<Versioned<crate::tenant::TenantRecord>>> {
        self.inner.list_tenants().await
    }
    async fn delete_tenant(
        &self,
        owner_id: crate::domain::OwnerId,
        version: Version,
    ) -> Result<()> {
        self.inner.delete_tenant(owner_id, version).await
    }
    async fn purge(&self, request: Purge) -> Result<Purged> {
        self.inner.purge(request).await
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
}
