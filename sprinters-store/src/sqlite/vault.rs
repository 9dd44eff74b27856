//! The credential vault: each access key sealed under the data key of its
//! own account, keyed by (owner, account), in `vault`.

use async_trait::async_trait;
use rusqlite::{Row, params};
use sprinters_core::domain::{AccountId, OwnerId};
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_core::{Error, Result};

use super::keys::Keys;
use super::{SqliteJobStore, sql_error};
use crate::rows;
use crate::sealed::{self, Kind};

type Slot = (OwnerId, AccountId);

fn vault_id(keys: &Keys, owner: OwnerId, account: &AccountId) -> [u8; 16] {
    let mut name = owner.get().to_le_bytes().to_vec();
    name.extend_from_slice(account.as_str().as_bytes());
    keys.opaque("vault", &name)
}

/// A row (`id, version, key_id, body`) back to its key; `None` when its
/// account's keys were destroyed.
fn open_key(keys: &Keys, row: &Row<'_>) -> Result<Option<(Slot, StoredAccessKey)>> {
    let read = |e| sql_error("reading a stored access key", e);
    let raw: Vec<u8> = row.get(0).map_err(read)?;
    let id = rows::opaque_id(&raw, "vault")?;
    let version: i64 = row.get(1).map_err(read)?;
    let key_id: u32 = row.get(2).map_err(read)?;
    let body: Vec<u8> = row.get(3).map_err(read)?;
    let aad = sealed::aad(Kind::Vault, key_id, &id, version as u64);
    let Some(plaintext) = keys.open_body(key_id, &aad, &body, "a stored access key")? else {
        return Ok(None);
    };
    let ((owner, account), key) = rows::access_key(&plaintext)?;
    if vault_id(keys, owner, &account) != id {
        return Err(Error::integrity(
            "a stored access key sits under another owner's id",
        ));
    }
    Ok(Some(((owner, account), key)))
}

#[async_trait]
impl CredentialVault for SqliteJobStore {
    async fn put_access_key(
        &self,
        owner: OwnerId,
        account: AccountId,
        key: StoredAccessKey,
    ) -> Result<()> {
        let keys = &self.inner.keys;
        let id = vault_id(keys, owner, &account);
        let account_h = keys.opaque("account", account.as_str().as_bytes());
        let plaintext = rows::access_key_plaintext(owner, &account, &key)?;
        let scope = keys.scope_of(Some(&account));
        self.write(move |w| {
            let current = w.version_of("vault", &id)?;
            // Versions bind each sealed key to its place.
            let version = current.map_or(1, |v| v + 1);
            let (key_id, body) = w.seal(
                &scope,
                |key_id| sealed::aad(Kind::Vault, key_id, &id, version).to_vec(),
                &plaintext,
            )?;
            w.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO vault (id, account_h, version, key_id, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![&id[..], &account_h[..], version, key_id, body])
                })
                .map_err(|e| sql_error("storing an access key", e))?;
            Ok(())
        })
        .await
    }

    async fn access_key(
        &self,
        owner: OwnerId,
        account: AccountId,
    ) -> Result<Option<StoredAccessKey>> {
        self.read(move |conn, keys| {
            let id = vault_id(keys, owner, &account);
            let mut s = conn
                .prepare_cached("SELECT id, version, key_id, body FROM vault WHERE id = ?1")
                .map_err(|e| sql_error("reading a stored access key", e))?;
            let mut rows = s
                .query([&id[..]])
                .map_err(|e| sql_error("reading a stored access key", e))?;
            match rows
                .next()
                .map_err(|e| sql_error("reading a stored access key", e))?
            {
                Some(row) => Ok(open_key(keys, row)?.map(|(_, key)| key)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn delete_access_key(&self, owner: OwnerId, account: AccountId) -> Result<()> {
        let id = vault_id(&self.inner.keys, owner, &account);
        self.write(move |w| {
            w.conn
                .prepare_cached("DELETE FROM vault WHERE id = ?1")
                .and_then(|mut s| s.execute([&id[..]]))
                .map_err(|e| sql_error("deleting a stored access key", e))?;
            Ok(())
        })
        .await
    }

    async fn accounts(&self) -> Result<Vec<(OwnerId, AccountId)>> {
        self.read(move |conn, keys| {
            let mut s = conn
                .prepare_cached("SELECT id, version, key_id, body FROM vault")
                .map_err(|e| sql_error("listing stored access keys", e))?;
            let mut rows = s
                .query([])
                .map_err(|e| sql_error("listing stored access keys", e))?;
            let mut accounts = Vec::new();
            while let Some(row) = rows
                .next()
                .map_err(|e| sql_error("listing stored access keys", e))?
            {
                if let Some((slot, _)) = open_key(keys, row)? {
                    accounts.push(slot);
                }
            }
            accounts.sort();
            Ok(accounts)
        })
        .await
    }
}
