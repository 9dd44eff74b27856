//! The credential vault: AWS access keys, sealed under the data key of
//! their own account, like every other record.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sprinters_core::Result;
use sprinters_core::domain::{AccountId, OwnerId};
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use zeroize::Zeroizing;

use crate::frame::Kind;
use crate::index::VaultEntry;
use crate::store::{FileJobStore, decode, encode, lock};

impl FileJobStore {
    fn vault_id(&self, owner: OwnerId, account: &AccountId) -> [u8; 16] {
        let mut name = owner.get().to_le_bytes().to_vec();
        name.extend_from_slice(account.as_str().as_bytes());
        self.inner.ids.id("vault", &name)
    }
}

#[async_trait]
impl CredentialVault for FileJobStore {
    async fn put_access_key(
        &self,
        owner: OwnerId,
        account: AccountId,
        key: StoredAccessKey,
    ) -> Result<()> {
        let record_id = self.vault_id(owner, &account);
        let plaintext = Zeroizing::new(encode(&(
            owner,
            &account,
            &key.access_key_id,
            key.secret_access_key.expose_secret(),
        ))?);
        let seq = {
            let mut index = lock(&self.inner.index);
            let slot = (owner, account);
            let version = index.vault.get(&slot).map_or(1, |e| e.version + 1);
            let (loc, seq, key_id) =
                self.write(Kind::Vault, Some(&slot.1), record_id, version, &plaintext)?;
            index.vault.insert(
                slot,
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

    async fn access_key(
        &self,
        owner: OwnerId,
        account: AccountId,
    ) -> Result<Option<StoredAccessKey>> {
        let Some(entry) = lock(&self.inner.index)
            .vault
            .get(&(owner, account))
            .copied()
        else {
            return Ok(None);
        };
        let plaintext = self.read_sealed(entry.loc, Kind::Vault, entry.version)?;
        let (_, _, access_key_id, secret): (OwnerId, AccountId, String, String) =
            decode(&plaintext, "vault")?;
        let secret = Zeroizing::new(secret);
        Ok(Some(StoredAccessKey {
            access_key_id,
            secret_access_key: SecretString::from(secret.as_str().to_owned()),
        }))
    }

    async fn delete_access_key(&self, owner: OwnerId, account: AccountId) -> Result<()> {
        let record_id = self.vault_id(owner, &account);
        let seq = {
            let mut index = lock(&self.inner.index);
            let slot = (owner, account);
            let Some(entry) = index.vault.get(&slot).copied() else {
                return Ok(());
            };
            let (_, seq, _) = self.write(
                Kind::VaultTombstone,
                None,
                record_id,
                entry.version + 1,
                &encode(&slot)?,
            )?;
            index.vault.remove(&slot);
            seq
        };
        self.inner.log.durable(seq).await
    }

    async fn accounts(&self) -> Result<Vec<(OwnerId, AccountId)>> {
        Ok(lock(&self.inner.index).vault.keys().cloned().collect())
    }
}
