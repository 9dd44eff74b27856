//! Tenant records: one sealed frame per owner, under the system data key
//! (an owner spans accounts), written by compare-and-swap like jobs.

use sprinters_core::domain::OwnerId;
use sprinters_core::ports::{PutTenant, Version, Versioned};
use sprinters_core::tenant::TenantRecord;
use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

use crate::frame::Kind;
use crate::index::VaultEntry;
use crate::store::{FileJobStore, encode, lock};

impl FileJobStore {
    fn tenant_id(&self, owner_id: OwnerId) -> [u8; 16] {
        self.inner.ids.id("tenant", &owner_id.get().to_le_bytes())
    }

    // Records are kept decoded in the index (opened once, at replay or
    // write): the engine lists them every tick without touching the disk.
    pub(crate) async fn get_tenant_record(
        &self,
        owner_id: OwnerId,
    ) -> Result<Option<Versioned<TenantRecord>>> {
        Ok(lock(&self.inner.index)
            .tenants
            .get(&owner_id)
            .map(|(entry, record)| Versioned {
                value: record.clone(),
                version: entry.version,
            }))
    }

    pub(crate) async fn put_tenant_record(&self, request: PutTenant) -> Result<Version> {
        let owner_id = request.record.owner_id;
        let record_id = self.tenant_id(owner_id);
        // Sealed bodies may hold external ids: wiped once written.
        let plaintext = Zeroizing::new(encode(&request.record)?);
        let (seq, version) = {
            let mut index = lock(&self.inner.index);
            let current = index.tenants.get(&owner_id).map(|(e, _)| e.version);
            if current != request.expected {
                return Err(Error::conflict(format!(
                    "owner {owner_id} is at version {current:?}, not {:?}",
                    request.expected
                )));
            }
            let version = current.unwrap_or(0) + 1;
            let (loc, seq, key_id) =
                self.write(Kind::Tenant, None, record_id, version, &plaintext)?;
            let entry = VaultEntry {
                loc,
                version,
                key_id,
            };
            index.tenants.insert(owner_id, (entry, request.record));
            (seq, version)
        };
        self.inner.log.durable(seq).await?;
        Ok(version)
    }

    pub(crate) async fn list_tenant_records(&self) -> Result<Vec<Versioned<TenantRecord>>> {
        Ok(lock(&self.inner.index)
            .tenants
            .values()
            .map(|(entry, record)| Versioned {
                value: record.clone(),
                version: entry.version,
            })
            .collect())
    }

    pub(crate) async fn delete_tenant_record(
        &self,
        owner_id: OwnerId,
        version: Version,
    ) -> Result<()> {
        let record_id = self.tenant_id(owner_id);
        let seq = {
            let mut index = lock(&self.inner.index);
            let Some(current) = index.tenants.get(&owner_id).map(|(e, _)| e.version) else {
                return Ok(());
            };
            if current != version {
                return Err(Error::conflict(format!(
                    "owner {owner_id} is at version {current}, not {version}"
                )));
            }
            let (_, seq, _) = self.write(
                Kind::TenantTombstone,
                None,
                record_id,
                current + 1,
                &encode(&owner_id)?,
            )?;
            index.tenants.remove(&owner_id);
            seq
        };
        self.inner.log.durable(seq).await
    }
}
