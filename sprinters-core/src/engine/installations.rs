//! What `installation` and `installation_repositories` events do to a
//! tenant, and the check every launch makes against its tenant.

use super::tenants::Tenants;
use super::{Handled, Inner};
use crate::Result;
use crate::events::{InstallationAction, InstallationEvent};
use crate::job::{EndReason, JobRecord, JobState};
use crate::ports::ListJobs;

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
                if let Some(tenant) = tenants.get(owner_id) {
                    // A reinstall: same account, new installation.
                    tenants.rebind(owner_id, installation_id, event.owner.clone());
                    tracing::info!(owner_id = %owner_id, login = %tenant.login, installation = %installation_id, "installation of a connected owner renewed");
                    return Ok(Handled::Ignored);
                }
                match tenants.bind(&event.owner, owner_id, installation_id) {
                    Ok(true) => {
                        tracing::info!(owner_id = %owner_id, login = %event.owner, installation = %installation_id, "configured owner bound to its GitHub ids");
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(reason = %e, "installation not bound"),
                }
            }
            _ if !known => {
                tracing::warn!(owner_id = %owner_id, installation = %installation_id, login = %event.owner, "installation event for no connected owner: ignored");
            }
            InstallationAction::Deleted => self.disconnect_owner(tenants, event).await?,
            InstallationAction::Suspend | InstallationAction::Unsuspend => {
                let suspended = event.action == InstallationAction::Suspend;
                tenants.update(owner_id, installation_id, |t| t.suspended = suspended);
                tracing::info!(owner_id = %owner_id, login = %event.owner, suspended, "installation suspension changed");
            }
            InstallationAction::RepositoriesChanged => {
                tenants.update(owner_id, installation_id, |t| {
                    Tenants::mark_removed(t, &event.repositories_removed, true);
                    Tenants::mark_removed(t, &event.repositories_added, false);
                });
            }
        }
        Ok(Handled::Ignored)
    }

    /// The App was uninstalled: nothing launches for the owner any more,
    /// its waiting jobs are rejected and its live instances ended.
    async fn disconnect_owner(&self, tenants: &Tenants, event: InstallationEvent) -> Result<()> {
        let Some(tenant) = tenants.disconnect(event.owner_id) else {
            return Ok(());
        };
        tracing::warn!(owner_id = %tenant.owner_id, login = %tenant.login, "the App was uninstalled: owner disconnected");
        let mut query = ListJobs::active(1000);
        query.owner_id = Some(tenant.owner_id);
        let message = format!(
            "the Sprinters GitHub App was uninstalled from {}",
            tenant.login
        );
        for record in self.list_all(query).await? {
            let key = record.value.key;
            let written = self
                .update_from(record, |r| {
                    if !r.state.is_waiting() {
                        return false;
                    }
                    r.state = JobState::Rejected;
                    r.message = Some(message.clone());
                    true
                })
                .await?;
            for launch in written.value.launches.iter().filter(|l| l.is_live()) {
                if let Err(e) = self
                    .end_launch(key, launch.number, EndReason::Orphan, None)
                    .await
                {
                    tracing::warn!(error = %e, job = %key, "ending an instance of a disconnected owner failed; the reconciler will");
                }
            }
        }
        Ok(())
    }

    /// Why the tenant of `record` may not launch now, if it may not: it was
    /// disconnected, reinstalled under another installation, suspended, the
    /// repository was taken out, or the account is no longer connected.
    pub(super) fn tenant_refuses(&self, record: &JobRecord) -> Option<String> {
        let Some(tenant) = self.config.tenants.get(record.owner_id) else {
            return Some(format!(
                "{} is not connected to Sprinters any more",
                record.owner()
            ));
        };
        if tenant.installation_id != record.installation_id {
            return Some(format!(
                "installation {} that reported this job is no longer {}'s",
                record.installation_id, tenant.login
            ));
        }
        if tenant.suspended {
            return Some(format!(
                "the Sprinters GitHub App installation of {} is suspended; unsuspend it to launch runners",
                tenant.login
            ));
        }
        if tenant.repository_removed(&record.repository) {
            return Some(format!(
                "{} is no longer in the Sprinters GitHub App installation of {}",
                record.repository, tenant.login
            ));
        }
        match &record.account {
            Some(account) if !tenant.accounts.contains(account) => Some(format!(
                "AWS account {account} is no longer connected to {}",
                tenant.login
            )),
            _ => None,
        }
    }
}
