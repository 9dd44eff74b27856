//! The App's installation on a login: how a configured owner is bound to
//! GitHub's immutable ids.

use http::Method;
use serde::Deserialize;
use sprinters_core::domain::{InstallationId, Owner, OwnerId};
use sprinters_core::{ErrorKind, Result};

use crate::GithubApp;

/// An installation of the App, as GitHub reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Installation {
    /// The installation.
    pub installation_id: InstallationId,
    /// The account it is installed on: the tenant.
    pub owner_id: OwnerId,
    /// That account's login now.
    pub login: Owner,
}

#[derive(Deserialize)]
struct InstallationBody {
    id: u64,
    account: AccountBody,
}

#[derive(Deserialize)]
struct AccountBody {
    login: String,
    id: u64,
}

impl GithubApp {
    /// The App's installation on `login`, asked with the App's JWT:
    /// `GET /orgs/{org}/installation`, then `GET /users/{user}/installation`
    /// (GitHub answers 404 for a login of the other kind). `None` when the
    /// App is not installed there.
    pub async fn installation_of(&self, login: &Owner) -> Result<Option<Installation>> {
        for kind in ["orgs", "users"] {
            let path = format!("/{kind}/{login}/installation");
            match self.as_app(Method::GET, &path, None).await {
                Ok(reply) => {
                    let body: InstallationBody = reply.json("an installation look-up")?;
                    let found = Owner::parse(&body.account.login).map_err(|e| {
                        sprinters_core::Error::unavailable(format!(
                            "GitHub answered {path} with an invalid login: {e}"
                        ))
                    })?;
                    return Ok(Some(Installation {
                        installation_id: InstallationId::new(body.id),
                        owner_id: OwnerId::new(body.account.id),
                        login: found,
                    }));
                }
                Err(e) if *e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}
