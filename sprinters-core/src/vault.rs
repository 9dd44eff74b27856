//! [`CredentialVault`]: stored AWS access keys, the alternative to an
//! assumed role. The store crate keeps them encrypted; the AWS crate's
//! stored-key credential provider reads them through this trait, so
//! neither adapter depends on the other.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::Result;
use crate::domain::{AccountId, OwnerId};

/// An access key of one AWS account. `Debug` shows the key id only.
#[derive(Clone)]
pub struct StoredAccessKey {
    /// The access key id (not a secret on its own).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
}

impl fmt::Debug for StoredAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .finish()
    }
}

/// Access keys by connection: one owner's (GitHub account id's) key to one
/// AWS account. Two owners connecting the same account each have their own
/// key, and one never gets the other's.
///
/// # Implementing
///
/// Keys are sealed at rest and scoped to the (owner, account) connection.
/// Its tests run `sprinters_core::testing::credential_vault`;
/// `MemoryVault` below is the smallest one.
#[async_trait]
pub trait CredentialVault: Send + Sync + fmt::Debug + 'static {
    /// Stores (or replaces) the key of `owner`'s connection to `account`.
    async fn put_access_key(
        &self,
        owner: OwnerId,
        account: AccountId,
        key: StoredAccessKey,
    ) -> Result<()>;
    /// The key of `owner`'s connection to `account`, if one is stored.
    async fn access_key(
        &self,
        owner: OwnerId,
        account: AccountId,
    ) -> Result<Option<StoredAccessKey>>;
    /// Forgets that key; forgetting an absent key succeeds.
    async fn delete_access_key(&self, owner: OwnerId, account: AccountId) -> Result<()>;
    /// The connections with a stored key, in order.
    async fn accounts(&self) -> Result<Vec<(OwnerId, AccountId)>>;
}

/// A vault in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryVault {
    keys: Mutex<BTreeMap<(OwnerId, AccountId), StoredAccessKey>>,
}

impl MemoryVault {
    /// An empty vault.
    pub fn new() -> Self {
        Self::default()
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, BTreeMap<(OwnerId, AccountId), StoredAccessKey>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl CredentialVault for MemoryVault {
    async fn put_access_key(
        &self,
        owner: OwnerId,
        account: AccountId,
        key: StoredAccessKey,
    ) -> Result<()> {
        self.keys().insert((owner, account), key);
        Ok(())
    }
    async fn access_key(
        &self,
        owner: OwnerId,
        account: AccountId,
    ) -> Result<Option<StoredAccessKey>> {
        Ok(self.keys().get(&(owner, account)).cloned())
    }
    async fn delete_access_key(&self, owner: OwnerId, account: AccountId) -> Result<()> {
        self.keys().remove(&(owner, account));
        Ok(())
    }
    async fn accounts(&self) -> Result<Vec<(OwnerId, AccountId)>> {
        Ok(self.keys().keys().cloned().collect())
    }
}
