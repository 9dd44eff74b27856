//! The [`CredentialProvider`] conformance suite.

use secrecy::ExposeSecret;

use crate::domain::{AccountId, Owner, OwnerId};
use crate::ports::{CredentialProvider, CredentialsRequest};
use crate::time::Timestamp;

/// An account the provider can serve.
#[derive(Debug, Clone)]
pub struct CredentialsFixture {
    /// The account.
    pub account: AccountId,
    /// On whose behalf: the owner's GitHub account id.
    pub owner_id: OwnerId,
    /// Its login.
    pub owner: Owner,
    /// The time now, to check expiries against.
    pub now: Timestamp,
}

/// Runs every check.
pub async fn credential_provider(provider: &dyn CredentialProvider, f: &CredentialsFixture) {
    let request = CredentialsRequest::new(f.account.clone(), f.owner_id, f.owner.clone());
    let first = provider.credentials(request.clone()).await.unwrap();
    assert!(!first.access_key_id.is_empty(), "an access key id");
    let secret = first.secret_access_key.expose_secret();
    assert!(!secret.is_empty(), "a secret access key");
    let debug = format!("{first:?}");
    assert!(!debug.contains(secret), "Debug hides the secret: {debug}");
    if let Some(token) = &first.session_token {
        assert!(
            !debug.contains(token.expose_secret()),
            "Debug hides the session token"
        );
    }
    if let Some(expires) = first.expires_at {
        assert!(expires > f.now, "credentials are not already expired");
    }
    let second = provider.credentials(request).await.unwrap();
    assert!(!second.access_key_id.is_empty(), "asking again works");
}
