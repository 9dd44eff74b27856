//! Owners' records on PostgreSQL: each sealed under the system data key in
//! `sprinters_tenants`, keyed by a keyed hash of the owner's account id,
//! written by compare-and-swap so replicas never lose a change.

use sprinters_core::domain::OwnerId;
use sprinters_core::ports::{PutTenant, Version, Versioned};
use sprinters_core::tenant::TenantRecord;
use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

use super::PostgresJobStore;
use crate::sealed::{self, Kind};

impl PostgresJobStore {
    fn tenant_id(&self, owner_id: OwnerId) -> [u8; 16] {
        let id = self
            .inner
            .keys
            .opaque("tenant", &owner_id.get().to_le_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&id[..16]);
        out
    }

    async fn open_tenant(
        &self,
        client: &deadpool_postgres::Client,
        row: &tokio_postgres::Row,
    ) -> Result<Option<Versioned<TenantRecord>>> {
        let raw: &[u8] = row.get(0);
        let id = crate::rows::opaque_id(raw, "tenant")?;
        let version: i64 = row.get(1);
        let key_id: i32 = row.get(2);
        let body: &[u8] = row.get(3);
        let aad = sealed::aad(Kind::Tenant, key_id as u32, &id, version as u64);
        let Some(plaintext) = self
            .inner
            .keys
            .open_body(
                &self.inner.db,
                client,
                key_id as u32,
                &aad,
                body,
                "a tenant record",
            )
            .await?
        else {
            return Ok(None);
        };
        let record = crate::rows::tenant_record(&plaintext)?;
        // The id binds the body to its row: a body moved to another owner's
        // row fails authentication above; this catches a stale key.
        if self.tenant_id(record.owner_id) != id {
            return Err(Error::integrity(
                "a tenant record sits under another owner's id",
            ));
        }
        Ok(Some(Versioned {
            value: record,
            version: version as u64,
        }))
    }

    pub(super) async fn get_tenant_record(
        &self,
        owner_id: OwnerId,
    ) -> Result<Option<Versioned<TenantRecord>>> {
        let db = &self.inner.db;
        let id = self.tenant_id(owner_id);
        let client = db.client().await?;
        match db
            .query_opt(
                &client,
                "SELECT id, version, key_id, body FROM sprinters_tenants WHERE id = $1",
                &[&id.as_slice()],
            )
            .await?
        {
            Some(row) => self.open_tenant(&client, &row).await,
            None => Ok(None),
        }
    }

    pub(super) async fn put_tenant_record(&self, request: PutTenant) -> Result<Version> {
        let db = &self.inner.db;
        let owner_id = request.record.owner_id;
        let id = self.tenant_id(owner_id);
        let plaintext = Zeroizing::new(
            postcard::to_allocvec(&request.record)
                .map_err(|e| Error::integrity(format!("encoding a tenant record: {e}")))?,
        );
        let version = request.expected.unwrap_or(0) + 1;
        let scope = self.inner.keys.scope_of(None);
        let client = db.client().await?;
        let (key_id, body) = self
            .inner
            .keys
            .seal(
                db,
                &client,
                &scope,
                |key_id| sealed::aad(Kind::Tenant, key_id, &id, version).to_vec(),
                &plaintext,
            )
            .await?;
        let (version, key_id) = (version as i64, key_id as i32);
        let written = match request.expected {
            None => {
                db.execute(
                    &client,
                    "INSERT INTO sprinters_tenants (id, version, key_id, body) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                    &[&id.as_slice(), &version, &key_id, &body],
                )
                .await?
            }
            Some(expected) => {
                db.execute(
                    &client,
                    "UPDATE sprinters_tenants SET version = $2, key_id = $3, body = $4 \
                     WHERE id = $1 AND version = $5",
                    &[&id.as_slice(), &version, &key_id, &body, &(expected as i64)],
                )
                .await?
            }
        };
        if written != 1 {
            return Err(Error::conflict(format!(
                "owner {owner_id} is not at version {:?}",
                request.expected
            )));
        }
        Ok(version as u64)
    }

    pub(super) async fn list_tenant_records(&self) -> Result<Vec<Versioned<TenantRecord>>> {
        let db = &self.inner.db;
        let client = db.client().await?;
        let rows = db
            .query(
                &client,
                "SELECT id, version, key_id, body FROM sprinters_tenants",
                &[],
            )
            .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.extend(self.open_tenant(&client, row).await?);
        }
        records.sort_by_key(|r| r.value.owner_id);
        Ok(records)
    }

    pub(super) async fn delete_tenant_record(
        &self,
        owner_id: OwnerId,
        version: Version,
    ) -> Result<()> {
        let db = &self.inner.db;
        let id = self.tenant_id(owner_id);
        let client = db.client().await?;
        let deleted = db
            .execute(
                &client,
                "DELETE FROM sprinters_tenants WHERE id = $1 AND version = $2",
                &[&id.as_slice(), &(version as i64)],
            )
            .await?;
        if deleted == 0
            && db
                .query_opt(
                    &client,
                    "SELECT 1 FROM sprinters_tenants WHERE id = $1",
                    &[&id.as_slice()],
                )
                .await?
                .is_some()
        {
            return Err(Error::conflict(format!(
                "owner {owner_id} is not at version {version}"
            )));
        }
        Ok(())
    }
}
