//! The credential vault: AWS access keys, sealed under the data key of
//! their own account, like every other record.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sprinters_core::Result;
use sprinters_core::domain::AccountId;
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use zeroize::Zeroizing;

use crate::frame::Kind;
use crate::index::VaultEntry;
use crate::store::{FileJobStore, decode, encode, lock};

#[async_trait]
impl CredentialVault for FileJobStore {
    async fn put_access_key(&self, account: AccountId, key: StoredAccessKey) -> Result<()> {
        let record_id = self.inner.ids.id("vault", account.as_str().as_bytes());
        let plaintext = Zeroizing::new(encode(&(
            &account,
            &key.access_key_id,
            key.secret_access_key.expose_secret(),
        ))?);
        let seq = {
            let mut index = lock(&self.inner.index);
            let version = index.vault.get(&account).map_or(1, |e| e.version + 1);
            let (loc, seq, key_id) =
                self.write(Kind::Vault, Some(&account), record_id, version, &plaintext)?;
            index.vault.insert(
                account,
                VaultEntry {
                    loc,
                    version,
                    key_id,
                },
            );
            seq
        };
        self.inner.log.durable(seq).await
    }

    async fn access_key(&self, account: AccountId) -> Result<Option<StoredAccessKey>> {
        let Some(entry) = lock(&self.inner.index).vault.get(&account).copied() else {
            return Ok(None);
        };
        let plaintext = self.read_sealed(entry.loc, Kind::Vault, entry.version)?;
        let (_, access_key_id, secret): (AccountId, String, String) = decode(&plaintext, "vault")?;
        let secret = Zeroizing::new(secret);
        Ok(Some(StoredAccessKey {
            access_key_id,
            secret_access_key: SecretString::from(secret.as_str().to_owned()),
        }))
    }

    async fn delete_access_key(&self, account: AccountId) -> Result<()> {
        let record_id = self.inner.ids.id("vault", account.as_str().as_bytes());
        let seq = {
            let mut index = lock(&self.inner.index);
            let Some(entry) = index.vault.get(&account).copied() else {
                return Ok(());
            };
            let (_, seq, _) = self.write(
                Kind::VaultTombstone,
                None,
                record_id,
                entry.version + 1,
                &encode(&account)?,
            )?;
            index.vault.remove(&account);
            seq
        };
        self.inner.log.durable(seq).await
    }

    async fn accounts(&self) -> Result<Vec<AccountId>> {
        Ok(lock(&self.inner.index).vault.keys().cloned().collect())
    }
}
