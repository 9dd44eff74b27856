//! Turns between owners sharing an AWS account. The account's cap is the
//! one place two tenants compete for slots (repository and owner caps
//! belong to one owner). While launches of several owners wait there, a
//! freed slot goes to the owner served least recently among those with a
//! waiting launch that could take it (round-robin), not to whichever
//! waiter's task runs first: one owner's backlog cannot take every slot
//! that frees.
//!
//! Kept per repository, not per job, so that deciding whose turn it is
//! costs the number of waiting owners and repositories, never the length
//! of a backlog.

use std::collections::HashMap;

use super::limits::Caps;
use crate::domain::{AccountId, OwnerId, Repository};

/// Who waits in which account, and when each owner was last served there.
#[derive(Debug, Default)]
pub(super) struct Turns {
    accounts: HashMap<AccountId, Account>,
}

#[derive(Debug, Default)]
struct Account {
    waiting: HashMap<OwnerId, HashMap<Repository, Waiters>>,
    /// When each owner last took a slot here while others waited: a
    /// sequence number, lowest first. Forgotten when nobody waits.
    served: HashMap<OwnerId, u64>,
    next: u64,
}

/// The launches of one repository waiting in one account, and the caps
/// they are held to (the same for all of them: the owner's and the
/// repository's).
#[derive(Debug)]
struct Waiters {
    count: usize,
    caps: Caps,
}

impl Turns {
    /// A launch of `owner`'s `repository` waits in `account` under `caps`.
    pub(super) fn wait(
        &mut self,
        account: &AccountId,
        owner: OwnerId,
        repository: &Repository,
        caps: Caps,
    ) {
        let account = self.accounts.entry(account.clone()).or_default();
        let waiters = account
            .waiting
            .entry(owner)
            .or_default()
            .entry(repository.clone())
            .or_insert(Waiters { count: 0, caps });
        waiters.count += 1;
        waiters.caps = caps;
    }

    /// The caps a waiting launch read again (a policy may have changed).
    pub(super) fn refresh(
        &mut self,
        account: &AccountId,
        owner: OwnerId,
        repository: &Repository,
        caps: Caps,
    ) {
        if let Some(waiters) = self
            .accounts
            .get_mut(account)
            .and_then(|a| a.waiting.get_mut(&owner))
            .and_then(|r| r.get_mut(repository))
        {
            waiters.caps = caps;
        }
    }

    /// A launch stopped waiting (it took a slot, or its task ended):
    /// whether launches of other owners still wait there, whose turn may
    /// have come.
    pub(super) fn leave(
        &mut self,
        account: &AccountId,
        owner: OwnerId,
        repository: &Repository,
    ) -> bool {
        let Some(entry) = self.accounts.get_mut(account) else {
            return false;
        };
        if let Some(repositories) = entry.waiting.get_mut(&owner) {
            if let Some(waiters) = repositories.get_mut(repository) {
                waiters.count = waiters.count.saturating_sub(1);
                if waiters.count == 0 {
                    repositories.remove(repository);
                }
            }
            if repositories.is_empty() {
                entry.waiting.remove(&owner);
            }
        }
        if entry.waiting.is_empty() {
            self.accounts.remove(account);
            return false;
        }
        entry.waiting.keys().any(|o| *o != owner)
    }

    /// `owner` took a slot in `account`: its turn goes to the back, if
    /// anyone waits there.
    pub(super) fn served(&mut self, account: &AccountId, owner: OwnerId) {
        if let Some(entry) = self.accounts.get_mut(account) {
            entry.next += 1;
            let next = entry.next;
            entry.served.insert(owner, next);
        }
    }

    /// How many other owners come before `owner` in `account` and have a
    /// waiting launch that `may_take` a slot (each is owed one before
    /// `owner` takes the last).
    pub(super) fn ahead(
        &self,
        account: &AccountId,
        owner: OwnerId,
        may_take: impl Fn(OwnerId, &Repository, Caps) -> bool,
    ) -> usize {
        let Some(entry) = self.accounts.get(account) else {
            return 0;
        };
        let turn = |o: OwnerId| (entry.served.get(&o).copied().unwrap_or(0), o);
        let mine = turn(owner);
        entry
            .waiting
            .iter()
            .filter(|(o, _)| **o != owner && turn(**o) < mine)
            .filter(|(o, repositories)| {
                repositories
                    .iter()
                    .any(|(repository, w)| may_take(**o, repository, w.caps))
            })
            .count()
    }

    /// The accounts where `owner` waits beside other owners: when it can
    /// take less (it took a slot elsewhere, or a cap of its was found
    /// full), the turn it held there may pass to them.
    pub(super) fn contended_by(&self, owner: OwnerId) -> Vec<AccountId> {
        self.accounts
            .iter()
            .filter(|(_, a)| a.waiting.contains_key(&owner) && a.waiting.len() > 1)
            .map(|(account, _)| account.clone())
            .collect()
    }
}
