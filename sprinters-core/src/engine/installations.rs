//! What `installation` and `installation_repositories` events do to a
//! tenant, and the check every launch makes against its tenant.

use super::{Handled, Inner};
use crate::domain::{AccountId, InstallationId, OwnerId, Repository};
use crate::events::{InstallationAction, InstallationEvent};
use crate::job::JobRecord;
use crate::{Error, Result};

impl Inner {
    /// Applies an installation event. Each acts only on the owner bound to
    /// the event's account id *and* installation id: GitHub signs the event,
    /// but a login in it proves nothing.
    pub(super) async fn on_installation(&self, event: InstallationEvent) -> Result<Handled> {
        let tenants = &self.config.tenants;
        let (owner_id, installation_id) = (event.owner_id, event.installation_id);
        let known = tenants
            .get(owner_id)
            .is_some_and(|t| t.installation_id == installation_id);
        match event.action {
            InstallationAction::Created => {
                if let Some(known) = tenants.get(owner_id) {
                    // A reinstall: same account, a new installation, which
                    // starts unsuspended with all its repositories. GitHub
                    // numbers installations upwards: an older one is a
                    // replayed event.
                    if installation_id < known.installation_id {
                        tracing::warn!(owner_id = %owner_id, installation = %installation_id, "an older installation's created event: ignored");
                        return Ok(Handled::Ignored);
                    }
                    let login = event.owner.clone();
                    self.save_tenant(owner_id, |r| {
                        r.installation_id = installation_id;
                        r.login = login.clone();
                        r.suspended = false;
                        r.uninstalled = false;
                        r.removed_repositories.clear();
                        true
                    })
                    .await?;
                    tracing::info!(owner_id = %owner_id, installation = %installation_id, "installation of a connected owner renewed");
                    return Ok(Handled::Ignored);
                }
                match self
                    .bind_owner(&event.owner, owner_id, installation_id)
                    .await
                {
                    Ok(true) => {
                        tracing::info!(owner_id = %owner_id, login = %event.owner, installation = %installation_id, "configured owner bound to its GitHub ids");
                    }
                    Ok(false) => {}
                    Err(e) if e.kind() == &crate::ErrorKind::Config => {
                        tracing::warn!(reason = %e, "installation not bound");
                    }
                    Err(e) => return Err(e),
                }
            }
            // An uninstall is acted on again if an earlier try was cut
            // short (the owner is still known then).
            _ if !known => {
                tracing::warn!(owner_id = %owner_id, installation = %installation_id, login = %event.owner, "installation event for no connected owner: ignored");
            }
            InstallationAction::Deleted => {
                let message = format!(
                    "the Sprinters GitHub App was uninstalled from {}",
                    event.owner
                );
                self.remove_owner(owner_id, &message).await?;
            }
            InstallationAction::Suspend | InstallationAction::Unsuspend => {
                let suspended = event.action == InstallationAction::Suspend;
                self.save_tenant(owner_id, |r| {
                    r.installation_id == installation_id && {
                        r.suspended = suspended;
                        true
                    }
                })
                .await?;
                tracing::info!(owner_id = %owner_id, login = %event.owner, suspended, "installation suspension changed");
            }
            InstallationAction::RepositoriesChanged => {
                self.save_tenant(owner_id, |r| {
                    if r.installation_id != installation_id {
                        return false;
                    }
                    let lower = |r: &crate::domain::Repository| r.to_string().to_ascii_lowercase();
                    let removed: Vec<String> =
                        event.repositories_removed.iter().map(lower).collect();
                    let added: Vec<String> = event.repositories_added.iter().map(lower).collect();
                    r.removed_repositories
                        .retain(|x| !added.contains(&lower(x)));
                    for repo in &event.repositories_removed {
                        if !r
                            .removed_repositories
                            .iter()
                            .any(|x| lower(x) == lower(repo))
                        {
                            r.removed_repositories.push(repo.clone());
                        }
                    }
                    !removed.is_empty() || !added.is_empty()
                })
                .await?;
            }
        }
        Ok(Handled::Ignored)
    }

    /// Binds a configured login to the ids GitHub reports for it, and keeps
    /// the binding in the store: after a restart it holds without asking
    /// GitHub again. A seed pinned to another id is a `Config` error.
    pub(super) async fn bind_owner(
        &self,
        login: &crate::domain::Owner,
        owner_id: crate::domain::OwnerId,
        installation_id: crate::domain::InstallationId,
    ) -> Result<bool> {
        match self.config.tenants.bind(login, owner_id, installation_id) {
            Ok(true) => {
                self.save_tenant(owner_id, |_| true).await?;
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(reason) => Err(Error::config(reason)),
        }
    }

    /// Why the tenant of `record` may not launch now, if it may not.
    pub(super) fn tenant_refuses(&self, record: &JobRecord) -> Option<String> {
        self.tenant_refuses_job(
            record.owner_id,
            record.installation_id,
            &record.repository,
            record.account.as_ref(),
        )
    }

    /// Why the owner `owner_id` may not launch a job of `repository`
    /// reported by `installation_id` in `account` now, if it may not: it was
    /// disconnected, reinstalled under another installation, uninstalled,
    /// suspended, the repository was taken out, or the account is no longer
    /// connected.
    pub(super) fn tenant_refuses_job(
        &self,
        owner_id: OwnerId,
        installation_id: InstallationId,
        repository: &Repository,
        account: Option<&AccountId>,
    ) -> Option<String> {
        let Some(tenant) = self.config.tenants.get(owner_id) else {
            return Some(format!(
                "{} is not connected to Sprinters any more",
                repository.owner()
            ));
        };
        if tenant.installation_id != installation_id {
            return Some(format!(
                "installation {installation_id} that reported this job is no longer {}'s",
                tenant.login
            ));
        }
        if tenant.uninstalled {
            return Some(format!(
                "the Sprinters GitHub App was uninstalled from {}",
                tenant.login
            ));
        }
        if tenant.suspended {
            return Some(format!(
                "the Sprinters GitHub App installation of {} is suspended; unsuspend it to launch runners",
                tenant.login
            ));
        }
        if tenant.repository_removed(repository) {
            return Some(format!(
                "{repository} is no longer in the Sprinters GitHub App installation of {}",
                tenant.login
            ));
        }
        match account {
            Some(account) if !tenant.accounts().contains(account) => Some(format!(
                "AWS account {account} is no longer connected to {}",
                tenant.login
            )),
            _ => None,
        }
    }
}
