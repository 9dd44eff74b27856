//! [`StoredKeyProvider`]: an access key kept encrypted in a vault.

use std::sync::Arc;

use async_trait::async_trait;
use sprinters_core::ports::{CredentialProvider, Credentials, CredentialsRequest};
use sprinters_core::vault::CredentialVault;
use sprinters_core::{Error, Result};

/// Reads the account's access key from the vault on every call and keeps
/// no copy: the key is in clear only for the length of one launch, inside
/// a `SecretString` that is zeroed when dropped.
#[derive(Debug, Clone)]
pub struct StoredKeyProvider {
    vault: Arc<dyn CredentialVault>,
}

impl StoredKeyProvider {
    /// Keys from `vault` (the SQLite or PostgreSQL store, or any [`CredentialVault`]).
    pub fn new(vault: Arc<dyn CredentialVault>) -> Self {
        Self { vault }
    }
}

#[async_trait]
impl CredentialProvider for StoredKeyProvider {
    async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials> {
        let key = self
            .vault
            .access_key(request.owner_id, request.account.clone())
            .await?;
        let key = key.ok_or_else(|| {
            Error::not_found(format!(
                "no access key is stored for account {} of {} ({}); add one with \
                 `sprinters keys add-access-key --owner-id {} --account {}`",
                request.account, request.owner, request.owner_id, request.owner_id, request.account
            ))
        })?;
        Ok(Credentials {
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
            session_token: None,
            expires_at: None,
        })
    }
}
