//! The configured owners: bound to GitHub's ids at start (and whenever an
//! unbound one installs the App), and the credentials of their connections.

use std::sync::Arc;

use async_trait::async_trait;
use sprinters_aws::{AssumeRoleProvider, CustomerRole};
use sprinters_core::engine::{Engine, Tenants};
use sprinters_core::ports::{CredentialProvider, Credentials, CredentialsRequest};
use sprinters_core::tenant::ConnectionState;
use sprinters_core::{Error, Result};
use sprinters_github::GithubApp;

use crate::config::{AccountConfig, AccountCredentials};

/// The directory the TOML's `[[accounts]]` seed: each login waits for its
/// binding to the account id GitHub reports for it.
pub(crate) fn seed(accounts: &[AccountConfig]) -> Tenants {
    let tenants = Tenants::new();
    for a in accounts {
        tenants.seed(
            a.github_owner.clone(),
            a.aws_account_id.clone(),
            a.github_owner_id,
        );
    }
    tenants
}

/// Binds every configured login not bound yet to the App's installation on
/// it, as GitHub reports it. A login the App is not installed on stays
/// unbound (its `installation.created` binds it); a failure is logged and
/// tried again on the next call.
pub(crate) async fn bind_configured(github: &GithubApp, engine: &Engine) {
    for login in engine.tenants().unbound() {
        match github.installation_of(&login).await {
            Ok(Some(found)) => match engine
                .bind_owner(&login, found.owner_id, found.installation_id)
                .await
            {
                Ok(_) => tracing::info!(
                    %login,
                    owner_id = %found.owner_id,
                    installation = %found.installation_id,
                    "configured owner bound to its GitHub ids"
                ),
                Err(e) => tracing::warn!(%login, error = %e, "configured owner not bound"),
            },
            Ok(None) => tracing::warn!(
                %login,
                "the GitHub App is not installed on this configured owner; its jobs launch nothing until it is"
            ),
            Err(e) => {
                tracing::warn!(%login, error = %e, "looking up the App's installation failed; tried again later")
            }
        }
    }
}

/// Credentials for the connections the TOML configures, found by the owner
/// id the configured login was bound to and the account: an owner naming an
/// account it did not connect (another owner's) gets nothing, whatever
/// provider holds that account's credentials.
#[derive(Debug)]
pub(crate) struct ConfiguredCredentials {
    pub(crate) tenants: Tenants,
    pub(crate) accounts: Vec<AccountConfig>,
    pub(crate) roles: Arc<AssumeRoleProvider>,
    /// Stored keys and the ambient chain, each holding one owner's account.
    pub(crate) others: Arc<dyn CredentialProvider>,
}

#[async_trait]
impl CredentialProvider for ConfiguredCredentials {
    async fn credentials(&self, request: CredentialsRequest) -> Result<Credentials> {
        let connection = self.accounts.iter().find(|a| {
            a.aws_account_id == request.account
                && self.tenants.owner_id_of(&a.github_owner) == Some(request.owner_id)
        });
        match connection.map(|c| &c.credentials) {
            // A connection made at run time, once verified.
            None => {
                let role = self
                    .tenants
                    .get(request.owner_id)
                    .and_then(|t| t.connection(&request.account).cloned())
                    // A closing connection still serves: what runs there is
                    // ended with its credentials.
                    .filter(|c| {
                        matches!(
                            c.state,
                            ConnectionState::Connected | ConnectionState::Closing
                        )
                    })
                    .and_then(|c| Some((c.role_arn?, c.external_id)));
                let Some((role_arn, external_id)) = role else {
                    return Err(Error::not_found(format!(
                        "AWS account {} is not connected to {} ({})",
                        request.account, request.owner, request.owner_id
                    )));
                };
                let role =
                    CustomerRole::new(&request.account, &role_arn, external_id.secret().clone())?;
                self.roles
                    .connect(request.owner_id, request.account.clone(), role);
                self.roles.credentials(request).await
            }
            Some(AccountCredentials::Role(role)) => {
                self.roles
                    .connect(request.owner_id, request.account.clone(), role.clone());
                self.roles.credentials(request).await
            }
            Some(AccountCredentials::Vault | AccountCredentials::Ambient) => {
                self.others.credentials(request).await
            }
        }
    }
}
