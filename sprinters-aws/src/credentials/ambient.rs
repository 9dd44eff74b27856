//! [`AmbientProvider`]: the SDK's default credential chain, for a platform
//! that runs inside the customer's own account.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use secrecy::SecretString;
use sprinters_core::domain::AccountId;
use sprinters_core::ports::{CredentialProvider, Credentials, CredentialsRequest};
use sprinters_core::time::{Clock, SystemClock, Timestamp};
use sprinters_core::{Error, Result};

use super::cache::CredentialCache;

/// Credentials of the environment (variables, profile, web identity, ECS,
/// instance role), for the one account the platform itself runs in. Any
/// other account is refused, so a misrouted job cannot launch in the
/// platform's account by accident.
#[derive(Debug)]
pub struct AmbientProvider {
    account: AccountId,
    chain: SharedCredentialsProvider,
    cache: CredentialCache,
}

impl AmbientProvider {
    /// The SDK's default chain, serving `account`.
    pub async fn load(account: AccountId) -> Self {
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .build()
            .await;
        Self::from_provider(account, SharedCredentialsProvider::new(chain))
    }

    /// Any SDK credential provider, serving `account`.
    pub fn from_provider(account: AccountId, chain: SharedCredentialsProvider) -> Self {
        Self::with_clock(account, chain, Arc::new(SystemClock))
    }

    /// As [`from_provider`](Self::from_provider), with expiries checked
    /// against `clock`.
    pub fn with_clock(
        account: AccountId,
        chain: SharedCredentialsProvider,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            account,
            chain,
            cache: CredentialCache::new(clock, Duration::from_secs(300)),
        }
    }
}

#[async_trait]
impl CredentialProvider for AmbientProvider {
    async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials> {
        if request.account != self.account {
            return Err(Error::not_found(format!(
                "the ambient credentials serve account {} only, not {}",
                self.account, request.account
            )));
        }
        self.cache
            .get(&(request.owner_id, request.account.clone()), || async {
                let c = self.chain.provide_credentials().await.map_err(|e| {
                    Error::permission_denied(format!(
                        "no credentials in the environment for account {}: {e}",
                        self.account
                    ))
                    .with_source(e)
                })?;
                Ok(Credentials {
                    access_key_id: c.access_key_id().to_owned(),
                    secret_access_key: SecretString::from(c.secret_access_key().to_owned()),
                    session_token: c.session_token().map(|t| SecretString::from(t.to_owned())),
                    expires_at: c.expiry().map(Timestamp::from_system_time),
                })
            })
            .await
    }
}
