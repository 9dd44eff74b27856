//! [`CredentialProvider`]s for customer accounts: an assumed role (the
//! default), a stored access key, or the ambient chain; and
//! [`CredentialChain`] to serve each account from whichever has it.

mod ambient;
mod assume_role;
mod cache;
mod stored_key;

use std::sync::Arc;

use async_trait::async_trait;
use sprinters_core::ports::{CredentialProvider, Credentials, CredentialsRequest};
use sprinters_core::{Error, ErrorKind, Result};

pub use ambient::AmbientProvider;
pub use assume_role::{AssumeRoleProvider, AssumeRoleProviderBuilder, CustomerRole};
pub use stored_key::StoredKeyProvider;

/// Asks each provider in turn; a provider that does not know the account
/// (`NotFound`) passes it on, any other error stops the chain.
#[derive(Debug, Clone)]
pub struct CredentialChain {
    providers: Vec<Arc<dyn CredentialProvider>>,
}

impl CredentialChain {
    /// The providers, in the order they are asked.
    pub fn new(providers: Vec<Arc<dyn CredentialProvider>>) -> Self {
        Self { providers }
    }
}

#[async_trait]
impl CredentialProvider for CredentialChain {
    async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials> {
        let mut reasons = Vec::new();
        for provider in &self.providers {
            match provider.credentials(request.clone()).await {
                Err(e) if *e.kind() == ErrorKind::NotFound => reasons.push(e.message().to_owned()),
                other => return other,
            }
        }
        Err(Error::not_found(format!(
            "no credentials for account {}: {}",
            request.account,
            if reasons.is_empty() {
                "no provider is configured".to_owned()
            } else {
                reasons.join("; ")
            }
        )))
    }
}
