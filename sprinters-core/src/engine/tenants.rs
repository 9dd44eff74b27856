//! Tenants: the GitHub owners one control plane serves, each bound to
//! GitHub's immutable ids, and the AWS accounts each has connected.
//!
//! A login is only a display name: GitHub lets anyone register a login
//! once its owner renamed itself. So an owner is its numeric account id
//! ([`OwnerId`]) bound to its App installation ([`InstallationId`]); an
//! event is resolved by both, and one whose login names an owner but whose
//! ids differ launches and ends nothing.
//!
//! This is the engine's directory in memory. Owners connected at run time
//! (and configured owners once bound) live in the store as
//! [`TenantRecord`]s; the engine re-reads them every tick, so a change made
//! through one replica is seen by every replica.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::domain::{AccountId, InstallationId, Owner, OwnerId, Repository};
use crate::policy::OwnerPolicy;
use crate::tenant::{Connection, ConnectionState, TenantRecord};

/// One owner, bound to its ids.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tenant {
    /// GitHub's account id: the tenant.
    pub owner_id: OwnerId,
    /// Its installation of the App.
    pub installation_id: InstallationId,
    /// Its login as last seen (renames update it).
    pub login: Owner,
    /// Accounts connected by configuration (the TOML, or
    /// [`Tenants::connect`]); the first is the owner's default.
    pub configured: Vec<AccountId>,
    /// Connections made at run time, kept in the store.
    pub connections: Vec<Connection>,
    /// Whether its installation is suspended: its jobs are rejected.
    pub suspended: bool,
    /// The login a configured entry named when it was bound.
    pub configured_as: Option<Owner>,
    /// The App was uninstalled: nothing launches for it.
    pub uninstalled: bool,
    /// Its own policy, over the platform's (see [`crate::policy`]).
    pub policy: Option<OwnerPolicy>,
    /// Repositories taken out of its installation (lower-cased `owner/name`).
    removed: BTreeSet<String>,
    /// Whether the store holds it: then the store is its truth, and an owner
    /// deleted there (by another replica) is deleted here.
    persisted: bool,
}

impl Tenant {
    fn new(owner_id: OwnerId, installation_id: InstallationId, login: Owner) -> Self {
        Self {
            owner_id,
            installation_id,
            login,
            configured: Vec::new(),
            connections: Vec::new(),
            suspended: false,
            configured_as: None,
            uninstalled: false,
            policy: None,
            removed: BTreeSet::new(),
            persisted: false,
        }
    }

    /// The accounts its jobs may launch in: configured ones first (the
    /// first is the default), then verified connections.
    pub fn accounts(&self) -> Vec<AccountId> {
        let mut all = self.configured.clone();
        for c in &self.connections {
            if c.state == ConnectionState::Connected && !all.contains(&c.account) {
                all.push(c.account.clone());
            }
        }
        all
    }

    /// Its run-time connection to `account`.
    pub fn connection(&self, account: &AccountId) -> Option<&Connection> {
        self.connections.iter().find(|c| &c.account == account)
    }

    /// Whether `repository` was taken out of the installation.
    pub fn repository_removed(&self, repository: &Repository) -> bool {
        self.removed
            .contains(&repository.to_string().to_ascii_lowercase())
    }

    /// Whether the store holds it.
    pub fn persisted(&self) -> bool {
        self.persisted
    }

    /// What the store keeps of it.
    pub fn record(&self) -> TenantRecord {
        let mut record = TenantRecord::new(self.owner_id, self.installation_id, self.login.clone());
        record.configured_as = self.configured_as.clone();
        record.suspended = self.suspended;
        record.removed_repositories = self
            .removed
            .iter()
            .filter_map(|r| Repository::parse(r).ok())
            .collect();
        record.connections = self.connections.clone();
        record.uninstalled = self.uninstalled;
        record.policy = self.policy.clone();
        record
    }
}

/// A configured owner known by its login only, until GitHub says which
/// account holds that login ([`Tenants::bind`]).
#[derive(Debug, Clone)]
struct Seed {
    login: Owner,
    accounts: Vec<AccountId>,
    // The operator may pin the id; a binding to any other is refused.
    pinned: Option<OwnerId>,
}

#[derive(Debug, Default)]
struct State {
    bound: BTreeMap<OwnerId, Tenant>,
    // The login each owner was configured or connected under (lower-cased)
    // and the id it was bound to then: what a token scoped to that login
    // sees, whoever holds the login now.
    configured: BTreeMap<String, OwnerId>,
    // By lower-cased login: logins are case-insensitive on GitHub.
    seeds: BTreeMap<String, Seed>,
}

impl State {
    /// Moves the seed of `login` (if any) into the owner `owner_id`,
    /// unless the seed is pinned to another id.
    fn absorb_seed(&mut self, login: &Owner, owner_id: OwnerId) {
        let key = login.as_str().to_ascii_lowercase();
        if self
            .seeds
            .get(&key)
            .is_some_and(|s| s.pinned.is_some_and(|p| p != owner_id))
        {
            return;
        }
        let Some(seed) = self.seeds.remove(&key) else {
            return;
        };
        self.configured.insert(key, owner_id);
        if let Some(tenant) = self.bound.get_mut(&owner_id) {
            tenant.configured_as = Some(seed.login);
            for account in seed.accounts {
                if !tenant.configured.contains(&account) {
                    tenant.configured.push(account);
                }
            }
        }
    }
}

/// Why an event's tenant may not launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The ids do not match the owner the login names, or the owner is not
    /// bound to its ids yet: nothing is recorded, launched or ended.
    Impostor(String),
    /// A tenant (or a stranger) the engine records as Rejected with this
    /// message: nothing connected, an account not connected.
    Rejected(String),
}

/// The owners served and their accounts. Cheap to clone: clones share one
/// directory, so a change made at run time (an installation event, an
/// operator's connection) is seen by the engine at once.
#[derive(Debug, Clone, Default)]
pub struct Tenants {
    state: Arc<RwLock<State>>,
}

impl Tenants {
    /// An empty directory: every job is rejected until owners connect.
    pub fn new() -> Self {
        Self::default()
    }

    // The lock is never held across an await; a panic while holding it
    // leaves a consistent map (every change is one insert or remove).
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects `account` to the owner GitHub knows by `owner_id`, bound to
    /// `installation_id`, in this process (the store is not written: an
    /// embedder's own configuration). The first account is the default.
    pub fn connect(
        &self,
        owner_id: OwnerId,
        installation_id: InstallationId,
        login: Owner,
        account: AccountId,
    ) -> &Self {
        let mut state = self.write();
        state
            .configured
            .insert(login.as_str().to_ascii_lowercase(), owner_id);
        let tenant = state
            .bound
            .entry(owner_id)
            .or_insert_with(|| Tenant::new(owner_id, installation_id, login));
        if !tenant.configured.contains(&account) {
            tenant.configured.push(account);
        }
        self
    }

    /// Connects `account` to the owner that holds `login` when
    /// [`Tenants::bind`] is called for it (at start, from GitHub's answer
    /// for the login's installation, or on `installation.created`). Until
    /// then its jobs launch nothing. With `pinned`, only that account id
    /// may bind.
    pub fn seed(&self, login: Owner, account: AccountId, pinned: Option<OwnerId>) -> &Self {
        let mut state = self.write();
        let seed = state
            .seeds
            .entry(login.as_str().to_ascii_lowercase())
            .or_insert_with(|| Seed {
                login,
                accounts: Vec::new(),
                pinned,
            });
        seed.pinned = seed.pinned.or(pinned);
        if !seed.accounts.contains(&account) {
            seed.accounts.push(account);
        }
        self
    }

    /// Logins configured but not bound yet.
    pub fn unbound(&self) -> Vec<Owner> {
        self.read()
            .seeds
            .values()
            .map(|s| s.login.clone())
            .collect()
    }

    /// The account id the login `login` was configured or connected under
    /// was bound to: a rename keeps it, and whoever registers the old login
    /// later gets none of it. `None` until bound.
    pub fn owner_id_of(&self, login: &Owner) -> Option<OwnerId> {
        self.read()
            .configured
            .get(&login.as_str().to_ascii_lowercase())
            .copied()
    }

    /// Binds the seed of `login` to the account GitHub reports for it.
    /// `Ok(true)` if a seed was bound, `Ok(false)` if none waits for
    /// `login`; an error if the seed is pinned to another id. Once bound,
    /// the id is authoritative: whoever holds the login later gets nothing.
    pub fn bind(
        &self,
        login: &Owner,
        owner_id: OwnerId,
        installation_id: InstallationId,
    ) -> Result<bool, String> {
        let mut state = self.write();
        let key = login.as_str().to_ascii_lowercase();
        let Some(seed) = state.seeds.get(&key) else {
            return Ok(false);
        };
        if let Some(pinned) = seed.pinned
            && pinned != owner_id
        {
            return Err(format!(
                "{login} is configured for GitHub account id {pinned}, but GitHub reports {owner_id} for that login; not bound"
            ));
        }
        let seed_login = seed.login.clone();
        let tenant = state
            .bound
            .entry(owner_id)
            .or_insert_with(|| Tenant::new(owner_id, installation_id, seed_login));
        tenant.installation_id = installation_id;
        state.absorb_seed(login, owner_id);
        Ok(true)
    }

    /// The owner bound to `owner_id`.
    pub fn get(&self, owner_id: OwnerId) -> Option<Tenant> {
        self.read().bound.get(&owner_id).cloned()
    }

    /// The bound owner whose current login is `login`.
    pub fn by_login(&self, login: &Owner) -> Option<Tenant> {
        self.read()
            .bound
            .values()
            .find(|t| t.login.eq_ignore_case(login))
            .cloned()
    }

    /// Every bound owner.
    pub fn all(&self) -> Vec<Tenant> {
        self.read().bound.values().cloned().collect()
    }

    /// Disconnects the owner: nothing launches for it any more. Returns it.
    /// A configured owner goes back to waiting for its binding, pinned to
    /// the id it had: the same account reinstalling the App binds again,
    /// whoever holds the login by then gets nothing.
    pub fn disconnect(&self, owner_id: OwnerId) -> Option<Tenant> {
        let mut state = self.write();
        state.configured.retain(|_, id| *id != owner_id);
        let tenant = state.bound.remove(&owner_id)?;
        if let Some(login) = &tenant.configured_as
            && !tenant.configured.is_empty()
        {
            state.seeds.insert(
                login.as_str().to_ascii_lowercase(),
                Seed {
                    login: login.clone(),
                    accounts: tenant.configured.clone(),
                    pinned: Some(owner_id),
                },
            );
        }
        Some(tenant)
    }

    /// Changes the bound owner `owner_id` with `change`, if it is bound
    /// to `installation_id`; false otherwise (nothing changed).
    pub(crate) fn update(
        &self,
        owner_id: OwnerId,
        installation_id: InstallationId,
        change: impl FnOnce(&mut Tenant),
    ) -> bool {
        let mut state = self.write();
        match state.bound.get_mut(&owner_id) {
            Some(t) if t.installation_id == installation_id => {
                change(t);
                true
            }
            _ => false,
        }
    }

    /// Takes in an owner's record as the store holds it: its installation,
    /// login, suspension, removed repositories and connections. A seed the
    /// record was bound from is bound to it again, without asking GitHub.
    pub fn apply(&self, record: &TenantRecord) {
        let mut state = self.write();
        let tenant = state.bound.entry(record.owner_id).or_insert_with(|| {
            Tenant::new(
                record.owner_id,
                record.installation_id,
                record.login.clone(),
            )
        });
        tenant.installation_id = record.installation_id;
        tenant.login = record.login.clone();
        tenant.suspended = record.suspended;
        tenant.removed = record
            .removed_repositories
            .iter()
            .map(|r| r.to_string().to_ascii_lowercase())
            .collect();
        tenant.connections = record.connections.clone();
        tenant.configured_as = record.configured_as.clone();
        tenant.uninstalled = record.uninstalled;
        tenant.policy = record.policy.clone();
        tenant.persisted = true;
        if let Some(login) = &record.configured_as {
            let key = login.as_str().to_ascii_lowercase();
            let pinned_elsewhere = state
                .seeds
                .get(&key)
                .is_some_and(|s| s.pinned.is_some_and(|p| p != record.owner_id));
            if !pinned_elsewhere {
                state.absorb_seed(login, record.owner_id);
                state.configured.insert(key, record.owner_id);
            }
        }
        if !record.connections.is_empty() {
            // An owner connected at run time: tokens name it by its login.
            state
                .configured
                .entry(record.login.as_str().to_ascii_lowercase())
                .or_insert(record.owner_id);
        }
    }

    /// Takes in every owner's record, and returns the owners the store
    /// held before but did not list: deleted elsewhere, or written after
    /// the list was read (the caller looks again before dropping them).
    pub fn sync(&self, records: &[TenantRecord]) -> Vec<OwnerId> {
        for record in records {
            self.apply(record);
        }
        let present: BTreeSet<OwnerId> = records.iter().map(|r| r.owner_id).collect();
        self.read()
            .bound
            .values()
            .filter(|t| t.persisted && !present.contains(&t.owner_id))
            .map(|t| t.owner_id)
            .collect()
    }

    /// The account a job launches in: the one its label names, if the
    /// owner connected it, or the owner's default. Checks the event's ids
    /// against the owner its login names, and learns a rename.
    pub fn resolve(
        &self,
        owner_id: OwnerId,
        installation_id: InstallationId,
        login: &Owner,
        named: Option<&AccountId>,
    ) -> Result<AccountId, Refusal> {
        let tenant = match self.get(owner_id) {
            Some(tenant) => tenant,
            None => {
                self.bind_pinned(owner_id, installation_id, login);
                self.get(owner_id)
                    .ok_or_else(|| self.stranger(owner_id, login))?
            }
        };
        if tenant.installation_id != installation_id {
            return Err(Refusal::Impostor(format!(
                "installation {installation_id} is not the installation {} of GitHub account {owner_id} ({})",
                tenant.installation_id, tenant.login
            )));
        }
        if tenant.login.as_str() != login.as_str() {
            // A rename: the id is the tenant, the login follows it.
            self.update(owner_id, installation_id, |t| t.login = login.clone());
        }
        let accounts = tenant.accounts();
        match (accounts.first(), named) {
            (_, Some(named)) if accounts.contains(named) => Ok(named.clone()),
            (_, Some(named))
                if tenant
                    .connection(named)
                    .is_some_and(|c| c.state == ConnectionState::Pending) =>
            {
                Err(Refusal::Rejected(format!(
                    "the connection of AWS account {named} to {login} is not verified yet; give its role to Sprinters to verify it"
                )))
            }
            (None, _) => Err(Refusal::Rejected(format!(
                "{login} has no AWS account connected; connect one before using Sprinters labels"
            ))),
            (Some(default), None) => Ok(default.clone()),
            (Some(_), Some(named)) => Err(Refusal::Rejected(format!(
                "AWS account {named} is not connected to {login}; use one of the owner's connected accounts or leave the account out of the label"
            ))),
        }
    }

    /// Binds a seed pinned to `owner_id` on GitHub's signed word that
    /// this account holds `login`.
    fn bind_pinned(&self, owner_id: OwnerId, installation_id: InstallationId, login: &Owner) {
        let key = login.as_str().to_ascii_lowercase();
        let pinned = self.read().seeds.get(&key).and_then(|s| s.pinned);
        if pinned == Some(owner_id) {
            // Cannot fail: the pin is the id being bound.
            let _ = self.bind(login, owner_id, installation_id);
        }
    }

    /// Why an owner with no binding for `owner_id` gets nothing.
    fn stranger(&self, owner_id: OwnerId, login: &Owner) -> Refusal {
        if let Some(holder) = self.by_login(login) {
            return Refusal::Impostor(format!(
                "login {login} belongs to GitHub account {} here, not {owner_id}: a login reused after a rename",
                holder.owner_id
            ));
        }
        if self
            .read()
            .seeds
            .contains_key(&login.as_str().to_ascii_lowercase())
        {
            return Refusal::Impostor(format!(
                "{login} is configured but not yet bound to its GitHub account id; events from account {owner_id} launch nothing until it is"
            ));
        }
        Refusal::Rejected(format!(
            "{login} has no AWS account connected; connect one before using Sprinters labels"
        ))
    }

    /// Every connected account, once each.
    pub fn accounts(&self) -> Vec<AccountId> {
        let state = self.read();
        let mut all: Vec<AccountId> = state
            .bound
            .values()
            .flat_map(Tenant::accounts)
            .chain(
                state
                    .seeds
                    .values()
                    .flat_map(|s| s.accounts.iter().cloned()),
            )
            .collect();
        all.sort();
        all.dedup();
        all
    }
}
