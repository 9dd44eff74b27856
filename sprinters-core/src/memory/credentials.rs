//! A simulated STS: credentials for any account, except those told to deny.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use secrecy::SecretString;

use super::{Faults, lock};
use crate::domain::AccountId;
use crate::ports::{CredentialProvider, Credentials, CredentialsRequest};
use crate::{Error, Result};

/// Hands out fake temporary credentials; [`MemoryCredentials::deny`] makes an
/// account answer `PermissionDenied` as a missing trust would.
#[derive(Debug, Default)]
pub struct MemoryCredentials {
    denied: Mutex<HashSet<AccountId>>,
    calls: AtomicU64,
    faults: Faults,
}

impl MemoryCredentials {
    /// Credentials for every account.
    pub fn new() -> Self {
        Self::default()
    }

    /// `account` answers `PermissionDenied` from now on.
    pub fn deny(&self, account: AccountId) {
        lock(&self.denied).insert(account);
    }

    /// How many times credentials were asked for.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Queued failures (operation `credentials`).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

#[async_trait]
impl CredentialProvider for MemoryCredentials {
    async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.faults.check("credentials")?;
        if lock(&self.denied).contains(&request.account) {
            return Err(Error::permission_denied(format!(
                "cannot assume the Sprinters role in account {}: its trust policy must allow the platform account with the agreed sts:ExternalId",
                request.account
            )));
        }
        Ok(Credentials {
            access_key_id: format!("ASIAMEMORY{}", request.account),
            secret_access_key: SecretString::from(format!("memory-secret-{}", request.account)),
            session_token: Some(SecretString::from("memory-session-token".to_owned())),
            expires_at: None,
        })
    }
}
