//! [`CredentialProvider`]: short-lived AWS credentials for an account.

use std::fmt;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::Result;
use crate::domain::{AccountId, Owner, OwnerId};
use crate::time::Timestamp;

/// Which account, on whose behalf. A connection is one owner's to one
/// account: providers key roles, external ids, stored keys and caches on
/// both, so an owner naming another owner's account gets nothing of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CredentialsRequest {
    /// The customer's AWS account.
    pub account: AccountId,
    /// The GitHub owner the credentials are for: the tenant.
    pub owner_id: OwnerId,
    /// Its login, a display name (it names the STS session).
    pub owner: Owner,
}

impl CredentialsRequest {
    /// Credentials for `account` on behalf of the owner `owner_id`, whose
    /// login is `owner`.
    pub fn new(account: AccountId, owner_id: OwnerId, owner: Owner) -> Self {
        Self {
            account,
            owner_id,
            owner,
        }
    }
}

/// AWS credentials. The secret parts are [`SecretString`]s: `Debug` shows
/// only the access key id.
#[derive(Clone)]
pub struct Credentials {
    /// The access key id (not a secret on its own).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The session token of temporary credentials.
    pub session_token: Option<SecretString>,
    /// When they stop working, if they do.
    pub expires_at: Option<Timestamp>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Gets credentials for a customer's account: an assumed role, a stored
/// access key, or the ambient chain. Implementations cache and refresh;
/// the engine asks on every launch.
///
/// # Implementing
///
/// Key everything on the connection, the owner *and* the account: an owner
/// that names another owner's account must get nothing, and a cache keyed
/// on the account alone would hand it the other's credentials.
///
/// ```
/// use std::collections::HashMap;
/// use async_trait::async_trait;
/// use sprinters_core::domain::{AccountId, OwnerId};
/// use sprinters_core::ports::{CredentialProvider, Credentials, CredentialsRequest};
/// use sprinters_core::{Error, Result};
///
/// #[derive(Debug)]
/// struct FromMyVault {
///     keys: HashMap<(OwnerId, AccountId), Credentials>,
/// }
///
/// #[async_trait]
/// impl CredentialProvider for FromMyVault {
///     async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials> {
///         self.keys
///             .get(&(request.owner_id, request.account.clone()))
///             .cloned()
///             .ok_or_else(|| {
///                 Error::permission_denied(format!(
///                     "{} has not connected account {}",
///                     request.owner, request.account
///                 ))
///             })
///     }
/// }
/// ```
///
/// Its tests run `sprinters_core::testing::credential_provider`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CredentialProvider: Send + Sync + fmt::Debug + 'static {
    /// Credentials valid for at least the next few minutes.
    async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials>;
}
