//! The credential vault on PostgreSQL: each access key sealed under the
//! data key of its own account, in `sprinters_vault`.

use async_trait::async_trait;
use sprinters_core::domain::{AccountId, OwnerId};
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_core::{Error, Result};

use super::PostgresJobStore;
use crate::rows;
use crate::sealed::{self, Kind};

impl PostgresJobStore {
    fn vault_id(&self, owner: OwnerId, account: &AccountId) -> [u8; 16] {
        let mut name = owner.get().to_le_bytes().to_vec();
        name.extend_from_slice(account.as_str().as_bytes());
        let id = self.inner.keys.opaque("vault", &name);
        let mut out = [0u8; 16];
        out.copy_from_slice(&id[..16]);
        out
    }

    async fn open_key(
        &self,
        client: &deadpool_postgres::Client,
        id: [u8; 16],
        row: &tokio_postgres::Row,
    ) -> Result<Option<((OwnerId, AccountId), StoredAccessKey)>> {
        let version: i64 = row.get(0);
        let key_id: i32 = row.get(1);
        let body: &[u8] = row.get(2);
        let aad = sealed::aad(Kind::Vault, key_id as u32, &id, version as u64);
        let Some(plaintext) = self
            .inner
            .keys
            .open_body(
                &self.inner.db,
                client,
                key_id as u32,
                &aad,
                body,
                "a stored access key",
            )
            .await?
        else {
            return Ok(None);
        };
        rows::access_key(&plaintext).map(Some)
    }
}

#[async_trait]
impl CredentialVault for PostgresJobStore {
    async fn put_access_key(
        &self,
        owner: OwnerId,
        account: AccountId,
        key: StoredAccessKey,
    ) -> Result<()> {
        let db = &self.inner.db;
        let id = self.vault_id(owner, &account);
        let account_h = self
            .inner
            .keys
            .opaque("account", account.as_str().as_bytes());
        let plaintext = rows::access_key_plaintext(owner, &account, &key)?;
        let scope = self.inner.keys.scope_of(Some(&account));
        let client = db.client().await?;
        // Versions bind each sealed key to its place; replacing one is a
        // compare-and-swap like any record.
        for _ in 0..8 {
            let current = db
                .query_opt(
                    &client,
                    "SELECT version FROM sprinters_vault WHERE id = $1",
                    &[&id.as_slice()],
                )
                .await?
                .map(|r| r.get::<_, i64>(0));
            let version = current.map_or(1, |v| v + 1);
            let (key_id, body) = self
                .inner
                .keys
                .seal(
                    db,
                    &client,
                    &scope,
                    |key_id| sealed::aad(Kind::Vault, key_id, &id, version as u64).to_vec(),
                    &plaintext,
                )
                .await?;
            let written = match current {
                None => {
                    db.execute(
                        &client,
                        "INSERT INTO sprinters_vault (id, account_h, version, key_id, body) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                        &[
                            &id.as_slice(),
                            &account_h,
                            &version,
                            &(key_id as i32),
                            &body,
                        ],
                    )
                    .await?
                }
                Some(old) => {
                    db.execute(
                        &client,
                        "UPDATE sprinters_vault SET version = $3, key_id = $4, body = $5 \
                         WHERE id = $1 AND account_h = $2 AND version = $6",
                        &[
                            &id.as_slice(),
                            &account_h,
                            &version,
                            &(key_id as i32),
                            &body,
                            &old,
                        ],
                    )
                    .await?
                }
            };
            if written == 1 {
                return Ok(());
            }
        }
        Err(Error::conflict(format!(
            "the access key of account {account} kept changing while being stored"
        )))
    }

    async fn access_key(
        &self,
        owner: OwnerId,
        account: AccountId,
    ) -> Result<Option<StoredAccessKey>> {
        let db = &self.inner.db;
        let id = self.vault_id(owner, &account);
        let client = db.client().await?;
        let Some(row) = db
            .query_opt(
                &client,
                "SELECT version, key_id, body FROM sprinters_vault WHERE id = $1",
                &[&id.as_slice()],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(self.open_key(&client, id, &row).await?.map(|(_, key)| key))
    }

    async fn delete_access_key(&self, owner: OwnerId, account: AccountId) -> Result<()> {
        let db = &self.inner.db;
        let id = self.vault_id(owner, &account);
        let client = db.client().await?;
        db.execute(
            &client,
            "DELETE FROM sprinters_vault WHERE id = $1",
            &[&id.as_slice()],
        )
        .await?;
        Ok(())
    }

    async fn accounts(&self) -> Result<Vec<(OwnerId, AccountId)>> {
        let db = &self.inner.db;
        let client = db.client().await?;
        let rows = db
            .query(
                &client,
                "SELECT version, key_id, body, id FROM sprinters_vault",
                &[],
            )
            .await?;
        let mut accounts = Vec::with_capacity(rows.len());
        for row in &rows {
            let raw: &[u8] = row.get(3);
            let id = rows::opaque_id(raw, "vault")?;
            if let Some((account, _)) = self.open_key(&client, id, row).await? {
                accounts.push(account);
            }
        }
        accounts.sort();
        Ok(accounts)
    }
}
