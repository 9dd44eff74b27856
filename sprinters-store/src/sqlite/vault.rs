//! The credential vault: each access key sealed under the data key of its
//! own account, keyed by (owner, account), in `vault`.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};
use secrecy::{ExposeSecret, SecretString};
use sprinters_core::domain::{AccountId, OwnerId};
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_core::{Error, Result};
use zeroize::Zeroizing;

use super::keys::Keys;
use super::{SqliteJobStore, sql_error};
use crate::frame::{self, Kind};

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
    let id: [u8; 16] = raw
        .as_slice()
        .try_into()
        .map_err(|_| Error::integrity("a vault id in the store is not 16 bytes"))?;
    let version: i64 = row.get(1).map_err(read)?;
    let key_id: u32 = row.get(2).map_err(read)?;
    let body: Vec<u8> = row.get(3).map_err(read)?;
    let aad = frame::aad(Kind::Vault, key_id, &id, version as u64);
    let Some(plaintext) = keys.open_body(key_id, &aad, &body, "a stored access key")? else {
        return Ok(None);
    };
    let (owner, account, access_key_id, secret): (OwnerId, AccountId, String, String) =
        postcard::from_bytes(&plaintext)
            .map_err(|e| Error::integrity(format!("a stored access key is undecodable: {e}")))?;
    let secret = Zeroizing::new(secret);
    if vault_id(keys, owner, &account) != id {
        return Err(Error::integrity(
            "a stored access key sits under another owner's id",
        ));
    }
    Ok(Some((
        (owner, account),
        StoredAccessKey {
            access_key_id,
            secret_access_key: SecretString::from(secret.as_str().to_owned()),
        },
    )))
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
        let plaintext = Zeroizing::new(
            postcard::to_allocvec(&(
                owner,
                &account,
                &key.access_key_id,
                key.secret_access_key.expose_secret(),
            ))
            .map_err(|e| Error::integrity(format!("encoding an access key: {e}")))?,
        );
        let scope = keys.scope_of(Some(&account));
        self.write(move |w| {
            let current: Option<u64> = w
                .conn
                .prepare_cached("SELECT version FROM vault WHERE id = ?1")
                .and_then(|mut s| s.query_row([&id[..]], |r| r.get(0)).optional())
                .map_err(|e| sql_error("reading a stored access key", e))?;
            // Versions bind each sealed key to its place.
            let version = current.map_or(1, |v| v + 1);
            let (key_id, body) = w.seal(
                &scope,
                |key_id| frame::aad(Kind::Vault, key_id, &id, version).to_vec(),
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
            Ok(Ok(()))
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
            Ok(Ok(()))
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
