//! Owners' records: each sealed under the system data key (an owner spans
//! accounts), keyed by a keyed hash of the owner's account id, written by
//! compare-and-swap like jobs.

use rusqlite::{Row, params};
use sprinters_core::domain::OwnerId;
use sprinters_core::ports::{PutTenant, Version, Versioned};
use sprinters_core::tenant::TenantRecord;
use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

use super::keys::Keys;
use super::{SqliteJobStore, sql_error};
use crate::sealed::{self, Kind};

fn tenant_id(keys: &Keys, owner_id: OwnerId) -> [u8; 16] {
    keys.opaque("tenant", &owner_id.get().to_le_bytes())
}

fn open_tenant(keys: &Keys, row: &Row<'_>) -> Result<Option<Versioned<TenantRecord>>> {
    let read = |e| sql_error("reading a tenant row", e);
    let raw: Vec<u8> = row.get(0).map_err(read)?;
    let id = crate::rows::opaque_id(&raw, "tenant")?;
    let version: i64 = row.get(1).map_err(read)?;
    let key_id: u32 = row.get(2).map_err(read)?;
    let body: Vec<u8> = row.get(3).map_err(read)?;
    let aad = sealed::aad(Kind::Tenant, key_id, &id, version as u64);
    let Some(plaintext) = keys.open_body(key_id, &aad, &body, "a tenant record")? else {
        return Ok(None);
    };
    let record = crate::rows::tenant_record(&plaintext)?;
    // The id binds the body to its row: a body moved to another owner's
    // row fails authentication above; this catches a stale key.
    if tenant_id(keys, record.owner_id) != id {
        return Err(Error::integrity(
            "a tenant record sits under another owner's id",
        ));
    }
    Ok(Some(Versioned {
        value: record,
        version: version as u64,
    }))
}

impl SqliteJobStore {
    pub(super) async fn get_tenant_record(
        &self,
        owner_id: OwnerId,
    ) -> Result<Option<Versioned<TenantRecord>>> {
        self.read(move |conn, keys| {
            let id = tenant_id(keys, owner_id);
            let mut s = conn
                .prepare_cached("SELECT id, version, key_id, body FROM tenants WHERE id = ?1")
                .map_err(|e| sql_error("reading a tenant", e))?;
            let mut rows = s
                .query([&id[..]])
                .map_err(|e| sql_error("reading a tenant", e))?;
            match rows.next().map_err(|e| sql_error("reading a tenant", e))? {
                Some(row) => open_tenant(keys, row),
                None => Ok(None),
            }
        })
        .await
    }

    pub(super) async fn put_tenant_record(&self, request: PutTenant) -> Result<Version> {
        let owner_id = request.record.owner_id;
        let id = tenant_id(&self.inner.keys, owner_id);
        // Sealed bodies may hold external ids: wiped once written.
        let plaintext = Zeroizing::new(
            postcard::to_allocvec(&request.record)
                .map_err(|e| Error::integrity(format!("encoding a tenant record: {e}")))?,
        );
        let scope = self.inner.keys.scope_of(None);
        let expected = request.expected;
        self.write(move |w| {
            let current = w.version_of("tenants", &id)?;
            if current != expected {
                return Err(Error::conflict(format!(
                    "owner {owner_id} is at version {current:?}, not {expected:?}"
                )));
            }
            let version = current.unwrap_or(0) + 1;
            let (key_id, body) = w.seal(
                &scope,
                |key_id| sealed::aad(Kind::Tenant, key_id, &id, version).to_vec(),
                &plaintext,
            )?;
            w.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO tenants (id, version, key_id, body) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| s.execute(params![&id[..], version, key_id, body]))
                .map_err(|e| sql_error("writing a tenant", e))?;
            Ok(version)
        })
        .await
    }

    pub(super) async fn list_tenant_records(&self) -> Result<Vec<Versioned<TenantRecord>>> {
        self.read(move |conn, keys| {
            let mut s = conn
                .prepare_cached("SELECT id, version, key_id, body FROM tenants")
                .map_err(|e| sql_error("listing tenants", e))?;
            let mut rows = s.query([]).map_err(|e| sql_error("listing tenants", e))?;
            let mut records = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_error("listing tenants", e))? {
                records.extend(open_tenant(keys, row)?);
            }
            records.sort_by_key(|r| r.value.owner_id);
            Ok(records)
        })
        .await
    }

    pub(super) async fn delete_tenant_record(
        &self,
        owner_id: OwnerId,
        version: Version,
    ) -> Result<()> {
        let id = tenant_id(&self.inner.keys, owner_id);
        self.write(move |w| {
            let current = w.version_of("tenants", &id)?;
            match current {
                None => Ok(()),
                Some(v) if v != version => Err(Error::conflict(format!(
                    "owner {owner_id} is at version {v}, not {version}"
                ))),
                Some(_) => {
                    w.conn
                        .prepare_cached("DELETE FROM tenants WHERE id = ?1")
                        .and_then(|mut s| s.execute([&id[..]]))
                        .map_err(|e| sql_error("deleting a tenant", e))?;
                    Ok(())
                }
            }
        })
        .await
    }
}
