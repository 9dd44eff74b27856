//! Owners and their connections changed at run time: kept in the store
//! (so every replica sees a change within a tick), then in the directory.

use super::{Engine, Inner, Tenants};
use crate::domain::{AccountId, InstallationId, Owner, OwnerId};
use crate::job::{EndReason, JobState};
use crate::ports::{ListJobs, PutTenant};
use crate::tenant::{Connection, ConnectionState, TenantRecord};
use crate::{Error, ErrorKind, Result};

/// How often a write of an owner's record is tried against concurrent
/// writers before giving up.
const TRIES: usize = 8;

impl Inner {
    /// Changes the owner's record in the store with `change` (which says
    /// whether it changed anything), by compare-and-swap, then the
    /// directory. An owner the store does not hold yet is written from the
    /// directory. `None` when the owner is unknown.
    pub(super) async fn save_tenant(
        &self,
        owner_id: OwnerId,
        mut change: impl FnMut(&mut TenantRecord) -> bool + Send,
    ) -> Result<Option<TenantRecord>> {
        for _ in 0..TRIES {
            let (mut record, expected) = match self.store.get_tenant(owner_id).await? {
                Some(stored) => (stored.value, Some(stored.version)),
                None => match self.config.tenants.get(owner_id) {
                    // Deleted through another replica: never written back.
                    Some(tenant) if tenant.persisted() => {
                        self.config.tenants.disconnect(owner_id);
                        return Ok(None);
                    }
                    Some(tenant) => (tenant.record(), None),
                    None => return Ok(None),
                },
            };
            let changed = change(&mut record);
            if !changed && expected.is_some() {
                self.config.tenants.apply(&record);
                return Ok(Some(record));
            }
            let put = match expected {
                Some(version) => PutTenant::replace(record.clone(), version),
                None => PutTenant::create(record.clone()),
            };
            match self.store.put_tenant(put).await {
                Ok(_) => {
                    self.config.tenants.apply(&record);
                    return Ok(Some(record));
                }
                Err(e) if *e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!(
            "the record of owner {owner_id} kept changing while being written"
        )))
    }

    /// Writes a new record of `owner_id`, made by `init`, when the
    /// directory knows no such owner. False when it does, or when another
    /// replica wrote one meanwhile: the caller changes it then.
    pub(super) async fn create_tenant(
        &self,
        owner_id: OwnerId,
        installation_id: InstallationId,
        login: &Owner,
        init: impl FnOnce(&mut TenantRecord),
    ) -> Result<bool> {
        if self.config.tenants.get(owner_id).is_some() {
            return Ok(false);
        }
        let mut record = TenantRecord::new(owner_id, installation_id, login.clone());
        init(&mut record);
        match self
            .store
            .put_tenant(PutTenant::create(record.clone()))
            .await
        {
            Ok(_) => {
                self.config.tenants.apply(&record);
                Ok(true)
            }
            Err(e) if *e.kind() == ErrorKind::Conflict => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Re-reads every owner's record: what another replica changed.
    pub(super) async fn sync_tenants(&self) -> Result<()> {
        let records: Vec<TenantRecord> = self
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect();
        let before: std::collections::HashMap<_, _> = self
            .config
            .tenants
            .all()
            .into_iter()
            .map(|t| (t.owner_id, t.policy))
            .collect();
        let missing = self.config.tenants.sync(&records);
        let changed = records
            .iter()
            .any(|r| before.get(&r.owner_id) != Some(&r.policy));
        if changed && self.limiter.has_waiters() {
            // A policy changed elsewhere: waiting launches look again.
            self.limiter.wake();
        }
        for missing in missing {
            // Listed before a write of this replica, or deleted elsewhere:
            // only the store's current answer drops an owner.
            match self.store.get_tenant(missing).await? {
                Some(current) => self.config.tenants.apply(&current.value),
                None => {
                    self.config.tenants.disconnect(missing);
                }
            }
        }
        Ok(())
    }

    /// Removes the owner. First it is marked uninstalled (nothing launches
    /// for it on any replica), then its waiting jobs are rejected with
    /// `message` and its instances ended while its credentials still
    /// resolve, and only then is it forgotten. A configured owner keeps its
    /// record, so that its login stays bound to its id across restarts.
    /// Safe to run again after an interruption.
    pub(super) async fn remove_owner(&self, owner_id: OwnerId, message: &str) -> Result<()> {
        let Some(record) = self
            .save_tenant(owner_id, |r| {
                let was = r.uninstalled;
                r.uninstalled = true;
                !was
            })
            .await?
        else {
            return Ok(());
        };
        tracing::warn!(owner_id = %owner_id, login = %record.login, %message, "owner disconnected");
        self.end_owner_jobs(owner_id, None, message).await?;
        let mut accounts = self
            .config
            .tenants
            .get(owner_id)
            .map(|t| t.configured)
            .unwrap_or_default();
        accounts.extend(
            record
                .connections
                .iter()
                .filter(|c| c.verified_at.is_some())
                .map(|c| c.account.clone()),
        );
        self.observer
            .owner_removed(&crate::observe::OwnerRemoved { owner_id, accounts });
        if record.configured_as.is_some() {
            return Ok(());
        }
        let mut deleted = false;
        for _ in 0..TRIES {
            match self.store.get_tenant(owner_id).await? {
                None => {
                    deleted = true;
                    break;
                }
                Some(stored) => match self.store.delete_tenant(owner_id, stored.version).await {
                    Ok(()) => {
                        deleted = true;
                        break;
                    }
                    Err(e) if *e.kind() == ErrorKind::Conflict => continue,
                    Err(e) => return Err(e),
                },
            }
        }
        if !deleted {
            return Err(Error::conflict(format!(
                "the record of owner {owner_id} kept changing while being deleted"
            )));
        }
        self.config.tenants.disconnect(owner_id);
        Ok(())
    }

    /// Rejects the waiting jobs of `owner_id` (in `account` only, if given)
    /// and ends their live instances.
    async fn end_owner_jobs(
        &self,
        owner_id: OwnerId,
        account: Option<&AccountId>,
        message: &str,
    ) -> Result<()> {
        let mut query = ListJobs::active(1000);
        query.owner_id = Some(owner_id);
        query.account = account.cloned();
        for record in self.list_all(query).await? {
            let key = record.value.key;
            let written = self
                .update_from(record, |r| {
                    if r.awaits_conclusion() {
                        // The owner left: GitHub will tell us nothing more
                        // about a job the engine had failed.
                        r.conclusion = Some(crate::events::Conclusion::Cancelled);
                        return true;
                    }
                    if !r.state.is_waiting() {
                        return false;
                    }
                    r.state = JobState::Rejected;
                    r.message = Some(message.to_owned());
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
}

impl Engine {
    /// The owners served. Changes made through the directory alone live
    /// in this process; the methods below keep them in the store too.
    pub fn tenants(&self) -> &Tenants {
        &self.inner.config.tenants
    }

    /// Re-reads every owner's record from the store (what [`Engine::run`]
    /// does every tick).
    pub async fn sync_tenants(&self) -> Result<()> {
        self.inner.sync_tenants().await
    }

    /// Binds the configured login `login` to the ids GitHub reports for
    /// its installation, and keeps the binding in the store. `Ok(false)`
    /// when no configured entry waits for the login; a `Config` error when
    /// the entry is pinned to another account id.
    pub async fn bind_owner(
        &self,
        login: &Owner,
        owner_id: OwnerId,
        installation_id: InstallationId,
    ) -> Result<bool> {
        self.inner
            .bind_owner(login, owner_id, installation_id)
            .await
    }

    /// Opens a connection of `account` to the owner `owner_id` (bound to
    /// `installation_id`, whose login is `login`) with a fresh external id,
    /// pending until [`Engine::confirm_connection`]. A `Conflict` if the
    /// owner already connects the account.
    pub async fn open_connection(
        &self,
        owner_id: OwnerId,
        installation_id: InstallationId,
        login: Owner,
        account: AccountId,
    ) -> Result<Connection> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let fresh = Connection::pending(account.clone(), now);
        let created = inner
            .create_tenant(owner_id, installation_id, &login, |r| {
                r.connections.push(fresh.clone())
            })
            .await?;
        if created {
            return Ok(fresh);
        }
        let configured = inner
            .config
            .tenants
            .get(owner_id)
            .is_some_and(|t| t.configured.contains(&account));
        if configured {
            return Err(Error::conflict(format!(
                "{login} connects AWS account {account} in the configuration already"
            )));
        }
        let mut already = false;
        let written = inner
            .save_tenant(owner_id, |r| {
                if r.installation_id != installation_id {
                    return false;
                }
                already = r.connection(&account).is_some();
                if already {
                    return false;
                }
                r.login = login.clone();
                r.connections.push(fresh.clone());
                true
            })
            .await?;
        match written {
            Some(r) if r.installation_id != installation_id => Err(Error::conflict(format!(
                "installation {installation_id} is not the installation of GitHub account {owner_id}"
            ))),
            _ if already => Err(Error::conflict(format!(
                "{login} connects AWS account {account} already; disconnect it first to make a new external id"
            ))),
            Some(_) => Ok(fresh),
            None => Err(Error::not_found(format!("no owner {owner_id}"))),
        }
    }

    /// Marks the connection verified with `role_arn` (the role was assumed
    /// with `external_id`, the connection's, and a dry-run launch allowed):
    /// jobs launch through it from now on, on every replica within a tick.
    /// A connection closed or made anew since (another external id) is not
    /// touched: `NotFound`.
    pub async fn confirm_connection(
        &self,
        owner_id: OwnerId,
        account: &AccountId,
        role_arn: &str,
        external_id: &crate::tenant::ExternalId,
    ) -> Result<Connection> {
        let now = self.inner.clock.now();
        let written = self
            .inner
            .save_tenant(owner_id, |r| {
                match r.connections.iter_mut().find(|c| {
                    &c.account == account
                        && &c.external_id == external_id
                        && c.state != ConnectionState::Closing
                }) {
                    Some(c) => {
                        c.role_arn = Some(role_arn.to_owned());
                        c.state = ConnectionState::Connected;
                        c.verified_at = Some(now);
                        true
                    }
                    None => false,
                }
            })
            .await?;
        written
            .and_then(|r| r.connection(account).cloned())
            .filter(|c| c.state == ConnectionState::Connected)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "owner {owner_id} has no connection to AWS account {account}"
                ))
            })
    }

    /// Closes the connection of `account` to `owner_id`. It is marked
    /// closing first (nothing launches there any more, on any replica), the
    /// owner's waiting jobs there are rejected and its instances there
    /// ended while its credentials still serve, and only then is it
    /// removed. Returns the connection as it was; `None` if there was none.
    /// Safe to run again after an interruption.
    pub async fn close_connection(
        &self,
        owner_id: OwnerId,
        account: &AccountId,
    ) -> Result<Option<Connection>> {
        let mut before = None;
        self.inner
            .save_tenant(owner_id, |r| {
                let Some(c) = r.connections.iter_mut().find(|c| &c.account == account) else {
                    return false;
                };
                before = Some(c.clone());
                let was = c.state;
                c.state = ConnectionState::Closing;
                was != ConnectionState::Closing
            })
            .await?;
        let Some(before) = before else {
            return Ok(None);
        };
        let message = format!("AWS account {account} was disconnected");
        self.inner
            .end_owner_jobs(owner_id, Some(account), &message)
            .await?;
        self.inner
            .save_tenant(owner_id, |r| {
                let n = r.connections.len();
                r.connections.retain(|c| &c.account != account);
                r.connections.len() != n
            })
            .await?;
        Ok(Some(before))
    }

    /// Disconnects the owner altogether (as uninstalling the App does).
    pub async fn remove_owner(&self, owner_id: OwnerId, message: &str) -> Result<()> {
        self.inner.remove_owner(owner_id, message).await
    }
}
