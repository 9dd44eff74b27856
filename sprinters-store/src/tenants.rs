//! Tenant records: one sealed frame per owner, under the system data key
//! (an owner spans accounts), written by compare-and-swap like jobs.

use sprinters_core::domain::OwnerId;
use sprinters_core::ports::{PutTenant, Version, Versioned};
use sprinters_core::tenant::TenantRecord;
use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

use crate::frame::Kind;
use crate::index::VaultEntry;
use crate::store::{FileJobStore, decode, encode, lock};

impl FileJobStore {
    fn tenant_id(&self, owner_id: OwnerId) -> [u8; 16] {
        self.inner.ids.id("tenant", &owner_id.get().to_le_bytes())
    }

    fn read_tenant(&self, entry: VaultEntry) -> Result<TenantRecord> {
        let plaintext = self.read_sealed(entry.loc, Kind::Tenant, entry.version)?;
        decode(&plaintext, "tenant")
    }

    pub(crate) async fn get_tenant_record(
        &self,
        owner_id: OwnerId,
    ) -> Result<Option<Versioned<TenantRecord>>> {
        let Some(entry) = lock(&self.inner.index).tenants.get(&owner_id).copied() else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: self.read_tenant(entry)?,
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
            let current = index.tenants.get(&owner_id).map(|e| e.version);
            if current != request.expected {
                return Err(Error::conflict(format!(
                    "owner {owner_id} is at version {current:?}, not {:?}",
                    request.expected
                )));
            }
            let version = current.unwrap_or(0) + 1;
            let (loc, seq, key_id) =
                self.write(Kind::Tenant, None, record_id, version, &plaintext)?;
            index.tenants.insert(
                owner_id,
                VaultEntry {
                    loc,
                    version,
                    key_id,
                },
            );
            (seq, version)
        };
        self.inner.log.durable(seq).await?;
        Ok(version)
    }

    pub(crate) async fn list_tenant_records(&self) -> Result<Vec<Versioned<TenantRecord>>> {
        let entries: Vec<VaultEntry> = lock(&self.inner.index).tenants.values().copied().collect();
        entries
            .into_iter()
            .map(|entry| {
                Ok(Versioned {
                    value: self.read_tenant(entry)?,
                    version: entry.version,
                })
            })
            .collect()
    }

    pub(crate) async fn delete_tenant_record(
        &self,
        owner_id: OwnerId,
        version: Version,
    ) -> Result<()> {
        let record_id = self.tenant_id(owner_id);
        let seq = {
            let mut index = lock(&self.inner.index);
            let Some(entry) = index.tenants.get(&owner_id).copied() else {
                return Ok(());
            };
            if entry.version != version {
                return Err(Error::conflict(format!(
                    "owner {owner_id} is at version {}, not {version}",
                    entry.version
                )));
            }
            let (_, seq, _) = self.write(
                Kind::TenantTombstone,
                None,
                record_id,
                entry.version + 1,
                &encode(&owner_id)?,
            )?;
            index.tenants.remove(&owner_id);
            seq
        };
        self.inner.log.durable(seq).await
    }
}
